"""Small vectorised helpers shared across modules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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
    s = np.sort(x, axis=None)
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def lexsort_ints(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary, ties in input order) for integer keys of
    equal shape (n,): when their ranges fit one 63-bit key together, a stable argsort of that
    key, several times faster than lexsort on millions of rows; otherwise lexsort itself.

    >>> lexsort_ints((np.array([5, 1, 1]), np.array([0, 1, 0]))).tolist()
    [2, 0, 1]
    """
    packed = np.zeros(np.shape(keys[0]), np.int64)
    shift = 0
    for k in keys:
        k = np.asarray(k, np.int64)
        if not k.size:
            return np.zeros(0, np.int64)
        low = int(k.min())
        bits = (int(k.max()) - low).bit_length()
        if shift + bits > 63:
            return np.lexsort(keys)
        packed |= (k - low) << shift
        shift += bits
    return np.argsort(packed, kind="stable")


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
