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
