"""Summary statistics of count vectors that the simulator's per-tick metrics and the fidelity
report share."""

from __future__ import annotations

import numpy as np

__all__ = ["entropy_bits", "gini"]


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of the distribution given by non-negative counts.

    >>> entropy_bits(np.array([1, 1, 1, 1])), entropy_bits(np.array([5, 0]))
    (2.0, 0.0)
    """
    c = np.asarray(counts, np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (n,); 0 = equal, -> 1 = concentrated.

    >>> round(gini(np.array([1, 1, 1, 1])), 3), round(gini(np.array([0, 0, 0, 8])), 3)
    (0.0, 0.75)
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))
