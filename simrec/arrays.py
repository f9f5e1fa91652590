"""Small vectorised helpers shared across modules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

T = TypeVar("T")
R = TypeVar("R")

_CHUNK = 1 << 20


def rowwise_dot(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """``sum(a[ia] * b[ib], axis=1)`` in chunks, never materialising the (n, d) gathers.

    a: (n_a, d), ia: (n,) int; b: (n_b, d), ib: (n,) int -> (n,) float64.

    >>> a = np.arange(6.0).reshape(3, 2)
    >>> rowwise_dot(a, np.array([0, 2]), a, np.array([1, 1])).tolist()
    [3.0, 23.0]
    """
    out = np.empty(ia.shape[0], np.float64)
    for s in range(0, ia.shape[0], _CHUNK):
        e = min(s + _CHUNK, ia.shape[0])
        out[s:e] = np.einsum("nd,nd->n", a[ia[s:e]], b[ib[s:e]])
    return out


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """The distinct values of ``x`` (n,), sorted: ``np.unique(x)``, which on integer arrays in
    numpy 2.x takes a hash-based path about 100x slower than the sort this does.

    >>> sorted_unique(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    s = np.sort(x, axis=None, kind="stable")  # see lexsorted_ints
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def _packed(keys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, list[tuple[int, int, int]]] | None:
    """Integer keys of equal shape (n,), the first least significant, as one int64 key whose
    order is their lexicographic order, and each key's (low, shift, bits) to unpack it; None
    when their ranges do not fit 63 bits together."""
    packed = np.zeros(np.shape(keys[0]), np.int64)
    fields, shift = [], 0
    for k in keys:
        k = np.asarray(k, np.int64)
        low = int(k.min()) if k.size else 0
        bits = (int(k.max()) - low).bit_length() if k.size else 0
        if shift + bits > 63:
            return None
        packed |= (k - low) << shift
        fields.append((low, shift, bits))
        shift += bits
    return packed, fields


def lexsort_ints(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary, ties in input order) for integer keys of
    equal shape (n,): when their ranges fit one 63-bit key together, a stable argsort of that
    key, several times faster than lexsort on millions of rows; otherwise lexsort itself.

    >>> lexsort_ints((np.array([5, 1, 1]), np.array([0, 1, 0]))).tolist()
    [2, 0, 1]
    """
    packed = _packed(keys)
    return np.lexsort(keys) if packed is None else np.argsort(packed[0], kind="stable")


def lexsorted_ints(keys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The integer keys (n,) each reordered as ``np.lexsort(keys)`` orders them, as int64,
    when the order itself is not needed: one plain sort of the packed key (about 10x faster
    than lexsort on millions of rows) when it fits 63 bits.

    >>> [k.tolist() for k in lexsorted_ints((np.array([5, 1, 1]), np.array([0, 1, 0])))]
    [[1, 5, 1], [0, 0, 1]]
    """
    packed = _packed(keys)
    if packed is None:
        order = np.lexsort(keys)
        return tuple(np.asarray(k, np.int64)[order] for k in keys)
    # a stable sort (timsort): 5x faster than the default on keys already in runs (a log
    # grouped by user, or by time), 15% slower on keys in random order
    key, fields = np.sort(packed[0], kind="stable"), packed[1]
    return tuple(((key >> shift) & ((1 << bits) - 1)) + low for low, shift, bits in fields)


MAX_THREADS = 4  # threads for row-independent numpy work (each holds one block in memory)


def map_in_threads(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]`` on up to MAX_THREADS threads (numpy, scipy and BLAS release
    the GIL in the heavy calls), in order. For independent blocks whose results do not depend
    on which thread computed them, so the output is the same whatever the thread count."""
    items = list(items)
    workers = min(len(items), os.cpu_count() or 1, MAX_THREADS)
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="simrec") as pool:
        return list(pool.map(fn, items))


BlockMapper = Callable[[Callable[[T], R], list[T]], list[R]]
_USER_BLOCKS: ContextVar[BlockMapper | None] = ContextVar("simrec_user_blocks", default=None)


def map_user_blocks(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]`` over blocks of users, in order: on the engine's workers
    inside :func:`user_blocks_on` (the ray engine's calibration runs them as Ray tasks), on
    threads otherwise. The blocks are the caller's, never the engine's, so the result is the
    same wherever they run."""
    mapper = _USER_BLOCKS.get()
    return map_in_threads(fn, items) if mapper is None else mapper(fn, list(items))


@contextmanager
def user_blocks_on(mapper: BlockMapper | None) -> Iterator[None]:
    """Within the block, :func:`map_user_blocks` runs its blocks with ``mapper`` (None:
    threads). Threads started inside inherit it only through ``contextvars.copy_context``."""
    token = _USER_BLOCKS.set(mapper)
    try:
        yield
    finally:
        _USER_BLOCKS.reset(token)


def row_top(m: sp.csr_matrix, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The column indices and values of the ``n`` largest stored entries of CSR ``m``'s
    ``row`` (ties: lower column first), largest first.

    >>> row_top(sp.csr_matrix(np.array([[0.0, 0.5, 0.9, 0.5]])), 0, 2)
    (array([2, 1], dtype=int32), array([0.9, 0.5]))
    """
    idx = m.indices[m.indptr[row] : m.indptr[row + 1]]
    val = m.data[m.indptr[row] : m.indptr[row + 1]]
    order = np.lexsort((idx, -val))[:n]
    return idx[order], val[order]


_DENSE_MASK_LIMIT = 64_000_000  # cells of the dense exclusion lookup (64 MB of bools)


def excluded_mask(
    candidates: np.ndarray, exclude: sp.csr_matrix | None, of: np.ndarray | None = None
) -> np.ndarray:
    """Which candidates are excluded. candidates: (n, m) item indices -> (n, m) bool. Row j of
    ``candidates`` is checked against row j of ``exclude``, or against row ``of[j]`` when
    ``of`` (n,) is given (many candidate rows per row of ``exclude``, none copied)."""
    if exclude is None or exclude.nnz == 0:
        return np.zeros(candidates.shape, bool)
    ex = exclude.tocsr()
    n, n_items = ex.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(ex.indptr))
    if of is not None:
        return _excluded_by_keys(candidates, ex, rows, np.asarray(of, np.int64))
    if n > 1 and candidates.strides[0] == 0:  # one candidate list shared by every row
        shared = candidates[0]
        column = np.full(n_items, -1, np.int64)
        column[shared[shared >= 0]] = np.flatnonzero(shared >= 0)
        col = column[ex.indices]
        hit = col >= 0
        mask = np.zeros(candidates.shape, bool)
        mask[rows[hit], col[hit]] = True
        return mask
    if n * n_items <= _DENSE_MASK_LIMIT:  # a dense (n, n_items) lookup table is cheapest
        table = np.zeros((n, n_items), bool)
        table[rows, ex.indices] = True
        safe = np.maximum(candidates, 0)
        return table[np.arange(n)[:, None], safe] & (candidates >= 0)
    return _excluded_by_keys(candidates, ex, rows, np.arange(n, dtype=np.int64))


def _excluded_by_keys(
    candidates: np.ndarray, ex: sp.csr_matrix, rows: np.ndarray, of: np.ndarray
) -> np.ndarray:
    """excluded_mask by a binary search of (row, item) keys: ``rows`` (nnz,) the row of each
    of ``ex``'s entries, ``of`` (n,) the row of ``ex`` each candidate row is checked against."""
    if not ex.has_sorted_indices:
        ex = ex.copy()
        ex.sort_indices()
    n_items = ex.shape[1]
    keys = rows * np.int64(n_items) + ex.indices.astype(np.int64)
    cand = of[:, None] * np.int64(n_items) + candidates
    pos = np.minimum(np.searchsorted(keys, cand), keys.size - 1)
    return (keys[pos] == cand) & (candidates >= 0)


def stack_rows(
    parts: list[tuple[sp.csr_matrix, np.ndarray]], dense: np.ndarray, n_cols: int
) -> sp.csr_matrix:
    """Row-wise union of selected rows of CSR matrices and a dense (m, w) array of column
    indices (-1 = none). ``parts``: (matrix, rows) pairs, each ``rows`` of length m.

    The result's column indices are grouped by row (not sorted within a row); the inputs are
    assumed disjoint.

    >>> a = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]], np.float32))
    >>> stack_rows([(a, np.array([1, 0]))], np.array([[0, -1], [-1, 1]]), 3).toarray().tolist()
    [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    m = dense.shape[0]
    valid = dense >= 0
    counts = [p.indptr[r + 1] - p.indptr[r] for p, r in parts] + [valid.sum(axis=1)]
    indptr = np.zeros(m + 1, np.int64)
    np.cumsum(sum(counts), out=indptr[1:])
    indices = np.empty(indptr[-1], np.int32)
    offset = indptr[:-1].copy()
    for (p, r), c in zip(parts, counts, strict=False):
        total = int(c.sum())
        if total:  # copy each selected row's index run straight from the parent matrix
            shift = np.repeat(p.indptr[r] - offset, c)
            dest = np.arange(total) + np.repeat(offset - (np.cumsum(c) - c), c)
            indices[dest] = p.indices[dest + shift]
        offset += c
    if dense.size:
        flat = dense[valid]
        c = counts[-1]
        dest = np.arange(flat.size) + np.repeat(offset - (np.cumsum(c) - c), c)
        indices[dest] = flat
    data = np.ones(indices.size, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(m, n_cols))
