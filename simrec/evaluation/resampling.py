"""The bootstrap both A/B tests and OPE use: resample unit indices (users, slates) with
``scipy.stats.bootstrap`` and let a vectorised statistic turn each resample into its figures."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import bootstrap


def bootstrap_units(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_units: int,
    *,
    n_resamples: int,
    alpha: float,
    seed: int,
    cells_per_unit: int = 1,
):
    """Point estimates and the percentile bootstrap of ``statistic``.

    ``statistic(idx)`` takes (b, n_units) resampled unit indices and returns (f, b) figures.
    Batches are sized so a batch holds about 4M (unit x cell) values. Returns
    ``(point (f,), scipy BootstrapResult)``; warnings about degenerate resamples (a figure that
    is NaN or constant on every resample) are silenced: the NaN or zero width says it.
    """
    units = np.arange(n_units)
    batch = max(1, min(n_resamples, 4_000_000 // max(n_units * cells_per_unit, 1)))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = statistic(units[None, :])[:, 0]
        res = bootstrap(
            (units,),
            lambda idx, axis=-1: statistic(idx),
            n_resamples=n_resamples,
            vectorized=True,
            method="percentile",
            confidence_level=1 - alpha,
            batch=batch,
            rng=np.random.default_rng(seed),
        )
    return point, res


def bootstrap_p_value(dist: np.ndarray) -> float:
    """Two-sided p-value of a difference being zero from its bootstrap distribution (B,):
    ``2 (min(#(d <= 0), #(d >= 0)) + 1) / (B + 1)``, capped at 1 (never exactly 0: B
    resamples cannot show a probability below 1 / (B + 1)); NaN values are left out, NaN
    when none is left.

    >>> bootstrap_p_value(np.array([0.1, 0.2, 0.3])), bootstrap_p_value(np.array([-1.0, 1.0]))
    (0.5, 1.0)
    """
    d = np.asarray(dist, np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return min(1.0, 2 * (tail + 1) / (d.size + 1))


def resample_weights(idx: np.ndarray, n_units: int) -> np.ndarray:
    """How often each unit is drawn in each resample: idx (b, n) unit indices -> (b, n_units)
    float64 counts, so that ``weights @ per_unit`` sums every resample at once."""
    idx = np.atleast_2d(np.asarray(idx, np.int64))
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * n_units + idx).ravel()
    return np.bincount(flat, minlength=b * n_units).reshape(b, n_units).astype(np.float64)


def order_kept(full: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """How firmly the data orders each pair: full (f,) differences on the full data, dist
    (f, B) their bootstrap distribution -> (f,) the share of the resamples whose difference
    has the sign of the full one (resamples that are not a number left out; 0 where the full
    difference is 0 or not a number: no order to keep).

    >>> dist = np.array([[1, 2, -1, 3], [-1, -2, 0, 1], [1, 1, 1, 1]])
    >>> order_kept(np.array([1.0, -1.0, 0.0]), dist)
    array([0.75, 0.5 , 0.  ])
    """
    full = np.asarray(full, np.float64)
    dist = np.asarray(dist, np.float64)
    finite = np.isfinite(dist)
    same = (np.sign(dist) == np.sign(full)[:, None]) & finite
    share = same.sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return np.where(np.isfinite(full) & (full != 0), share, 0.0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are left out and stay NaN.

    >>> holm(np.array([0.01, 0.04, np.nan, 0.03])).round(3).tolist()
    [0.03, 0.06, nan, 0.06]
    """
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out
