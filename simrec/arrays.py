"""Small vectorised helpers shared across modules."""

from __future__ import annotations

import numpy as np

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
