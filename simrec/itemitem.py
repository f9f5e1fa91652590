"""Item-to-item collaborative models, shared by the policies and the users' preference model.

* :func:`ease_weights`: EASE (Steck, "Embarrassingly shallow autoencoders", WWW 2019), the
  closed-form item-to-item regression ``B = I - P diagMat(1 / diag P)``, ``P = (X^T X + l2
  I)^-1``: dense, one (n_items, n_items) inverse, so for catalogs up to EASE_MAX_ITEMS.
* :func:`cosine_neighbours`: item-kNN, cosine similarity of the items' user sets with
  shrinkage (``co / (sqrt(n_i n_j) + shrinkage)``), each item keeping its ``neighbours`` most
  similar items: sparse, for any catalog.
* :func:`top_per_row`: a sparse matrix's largest entries per row.

A user's score for item ``j`` is ``x_u @ W[:, j]``: the user's history ``x_u`` (binary) times
the item-to-item weights; the diagonal is zero, so an item never vouches for itself.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

EASE_MAX_ITEMS = 8_000  # a dense (n, n) inverse: about 10 s and 0.5 GB at this size
DENSE_ITEMS = 10_000  # catalogs up to this size hold item-to-item matrices dense


def gram(m: sp.csr_matrix) -> sp.csr_matrix:
    """(n_items, n_items) co-occurrence counts ``X^T X`` of the binary (n_users, n_items) ``m``."""
    x = m.tocsr().astype(np.float64)
    x.data[:] = 1.0
    return (x.T @ x).tocsr()


def ease_weights(m: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's item-to-item weights of the binary (n_users, n_items) history ``m``.

    -> B: (n_items, n_items) float32 with a zero diagonal; scores = ``m @ B``.

    >>> x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], float))
    >>> b = ease_weights(x, 1.0)
    >>> bool(np.all(np.diag(b) == 0)), bool(b[0, 1] > 0)
    (True, True)
    """
    g = gram(m).toarray()
    g[np.diag_indices_from(g)] += l2
    p = scipy.linalg.inv(g, overwrite_a=True, check_finite=False)
    b = p / -np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def cosine_neighbours(m: sp.csr_matrix, neighbours: int, shrinkage: float) -> sp.csr_matrix:
    """Item-kNN weights of the binary (n_users, n_items) history ``m``: ``W[i, j] = co_ij /
    (sqrt(n_i n_j) + shrinkage)`` for the ``neighbours`` largest of each row ``i`` (i != j).

    -> (n_items, n_items) float32 CSR; scores = ``m @ W``.

    >>> x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], float))
    >>> cosine_neighbours(x, 1, 0.0).toarray().round(3)
    array([[0. , 1. , 0. ],
           [1. , 0. , 0. ],
           [0.5, 0. , 0. ]], dtype=float32)
    """
    co = gram(m)
    n = co.diagonal() if co.shape[0] else np.zeros(0)
    if co.shape[0] <= DENSE_ITEMS:  # the whole similarity matrix fits: a top-k per row
        s = co.toarray()
        s /= np.sqrt(np.outer(n, n)) + shrinkage
        np.fill_diagonal(s, -np.inf)
        s[co.toarray() == 0] = -np.inf
        return top_of_dense(s, neighbours)
    co = co.tocoo()
    off = co.row != co.col
    rows, cols = co.row[off], co.col[off]
    values = co.data[off] / (np.sqrt(n[rows] * n[cols]) + shrinkage)
    w = sp.csr_matrix((values, (rows, cols)), shape=co.shape)
    return top_per_row(w, neighbours).astype(np.float32)


def top_of_dense(s: np.ndarray, n: int) -> sp.csr_matrix:
    """The ``n`` largest finite entries of each row of the dense ``s`` (among equal values at
    the cut, the ones numpy's introselect keeps: the same for the same input), as float32 CSR
    with sorted indices."""
    k = min(n, s.shape[1])
    if k == 0:
        return sp.csr_matrix(s.shape, dtype=np.float32)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.argsort(-s, axis=1)
    values = np.take_along_axis(s, top, axis=1)
    keep = np.isfinite(values)
    rows = np.repeat(np.arange(s.shape[0]), k).reshape(-1, k)
    out = sp.csr_matrix((values[keep].astype(np.float32), (rows[keep], top[keep])), shape=s.shape)
    out.sort_indices()
    return out


def top_per_row(w: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """The ``n`` largest stored entries of each row of ``w`` (ties: lower column first), as a
    CSR of the same shape with sorted indices."""
    w = w.tocsr()
    w.sum_duplicates()
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    order = np.lexsort((w.indices, -w.data, rows))
    starts = np.repeat(w.indptr[:-1], np.diff(w.indptr))
    keep = order[(np.arange(order.size) - starts) < n]
    out = sp.csr_matrix((w.data[keep], (rows[keep], w.indices[keep])), shape=w.shape)
    out.sort_indices()
    return out
