"""Position bias and exposure read from an impression log, for the statistical brain.

The position-based click model (PBM; Richardson et al. 2007; Chuklin, Markov and de Rijke,
*Click Models for Web Search*, 2015), ``P(click | item i at position p) = examination[p] x
attractiveness[i]``, fitted by expectation-maximisation with each item's attractiveness shrunk
toward the log's mean by an empirical-Bayes Beta prior; the brain's ``position_decay`` fitted to
its examination curve; and the exposure exponent, the slope of log impressions on log
consumption (``brain.exposure``). ``simrec eval impressions`` reports them with intervals
(:mod:`simrec.evaluation.impressions`); a run given ``data.impressions_path`` calibrates with
them (:func:`estimates`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simrec.data.dataset import Dataset, Impressions

__all__ = [
    "MAX_POSITIONS",
    "PositionModel",
    "estimates",
    "fit_position_model",
    "position_decay",
    "slope",
]

ITERATIONS = 200  # EM steps at most
TOLERANCE = 1e-7  # stop when no probability moves more than this
MAX_POSITIONS = 50  # positions told apart; deeper ones are pooled into the last


@dataclasses.dataclass(frozen=True)
class PositionModel:
    """The fitted PBM. ``examination``: (n_positions,) P(examined) at positions 1..n (deeper
    positions share the last); ``attractiveness``: (n_items,) P(clicked | examined); ``prior``:
    the attractiveness of an item the log never showed (the Beta prior's mean)."""

    examination: np.ndarray
    attractiveness: np.ndarray
    prior: float

    def click_probability(self, item: np.ndarray, position: np.ndarray) -> np.ndarray:
        """item (n,) indices (-1: unknown to the fit log), position (n,) 1-based -> (n,)."""
        at = np.minimum(position, self.examination.size) - 1
        alpha = np.where(item >= 0, self.attractiveness[np.maximum(item, 0)], self.prior)
        return self.examination[at] * alpha

    @property
    def relative_examination(self) -> np.ndarray:
        """(n_positions,) examination over position 1's."""
        return self.examination / self.examination[0]


def fit_position_model(imp: Impressions, rows: np.ndarray | None = None) -> PositionModel:
    """The PBM of ``imp`` (its ``rows`` (m,) only, if given) by EM, attractiveness shrunk by
    a Beta prior fitted to the items' click-through by the method of moments."""
    rows = np.arange(len(imp)) if rows is None else rows
    item, clicked = imp.item[rows], imp.clicked[rows].astype(np.float64)
    pos = np.minimum(imp.position[rows], MAX_POSITIONS) - 1
    n_pos = int(pos.max()) + 1
    shown = np.bincount(item, minlength=imp.n_items).astype(np.float64)
    clicks = np.bincount(item, clicked, imp.n_items)
    strength = _prior_strength(clicks, shown)
    per_pos = np.bincount(pos, minlength=n_pos).astype(np.float64)
    theta = np.full(n_pos, 0.5)  # not 1: at 1 every unclicked row reads as examined, for good
    mean = min(2.0 * clicked.mean(), 1.0)
    alpha = (clicks + strength * mean) / (shown + strength)
    for _ in range(ITERATIONS):
        t, al = theta[pos], alpha[item]
        q = np.minimum(t * al, 1 - 1e-12)
        exam = np.where(clicked > 0, 1.0, t * (1 - al) / (1 - q))
        attr = np.where(clicked > 0, 1.0, (1 - t) * al / (1 - q))
        summed = np.bincount(item, attr, imp.n_items)
        mean = float(summed.sum() / max(shown.sum(), 1))  # the prior's mean, refitted each step
        new_theta = np.bincount(pos, exam, n_pos) / np.maximum(per_pos, 1)
        new_alpha = (summed + strength * mean) / (shown + strength)
        moved = max(np.abs(new_theta - theta).max(), np.abs(new_alpha - alpha).max())
        theta, alpha = new_theta, new_alpha
        if moved < TOLERANCE:
            break
    theta = np.where(per_pos > 0, theta, np.nan)
    return PositionModel(theta, alpha, mean)


def _prior_strength(clicks: np.ndarray, shown: np.ndarray) -> float:
    """The Beta prior's pseudo-count ``a + b``, by the method of moments: the items'
    click-through variance beyond binomial noise; none left (few clicks): a strong prior, so
    every item reads as the mean."""
    seen = shown > 0
    m = float(clicks.sum() / max(shown.sum(), 1))
    m = min(max(m, 1e-6), 1 - 1e-6)
    ctr = clicks[seen] / shown[seen]
    weights = shown[seen] / shown[seen].sum()
    observed = float((weights * (ctr - m) ** 2).sum())
    noise = float((weights * m * (1 - m) / shown[seen]).sum())
    true_var = observed - noise
    k = m * (1 - m) / true_var - 1 if true_var > 0 else 1e6
    return float(np.clip(k, 2.0, 1e6))


def position_decay(relative: np.ndarray, shown: np.ndarray) -> float:
    """The brain's ``position_decay``: minus the slope of log relative examination on log
    position, weighted by how often each position was shown; NaN with one position."""
    ok = np.flatnonzero((shown > 0) & np.isfinite(relative) & (relative > 0))
    if ok.size < 2:
        return float("nan")
    x, y, w = np.log(ok + 1.0), np.log(relative[ok]), shown[ok].astype(np.float64)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    return float(-np.average((x - xm) * (y - ym), weights=w) / np.average((x - xm) ** 2, weights=w))


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares slope of ``y`` on ``x`` along the last axis: (..., n) -> (...)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xc * yc).sum(axis=-1) / (xc * xc).sum(axis=-1)


def estimates(data: Dataset) -> dict[str, float]:
    """``exposure`` and ``position_decay`` read from ``data.impressions`` against ``data``'s
    log: impressions per item over the users who could still be shown it (those who had not
    consumed it, counting half of the clicks the impression log holds), against the log's
    interactions per item, matched by item id; the decay from the fitted examination curve
    (NaN with a single position). Also ``rows`` and ``items`` (the impression log's items found
    in the catalog)."""
    imp = data.impressions
    if imp is None:
        raise ValueError("estimates(): the dataset has no impression log")
    index = {str(v): i for i, v in enumerate(data.catalog.item_ids)}
    at = np.array([index.get(str(v), -1) for v in imp.item_ids], np.int64)
    found = at >= 0
    shown = imp.shown().astype(np.float64)[found]
    counts = data.catalog.popularity[at[found]].astype(np.float64)
    eligible = data.interactions.n_users - counts - imp.clicks()[found] / 2.0
    seen = shown > 0
    rate = shown[seen] / np.maximum(eligible[seen], 1.0)
    exposure = float(slope(np.log1p(counts[seen]), np.log(rate))) if seen.sum() > 2 else np.nan
    model = fit_position_model(imp)
    per_position = np.bincount(np.minimum(imp.position, MAX_POSITIONS) - 1)
    return {
        "exposure": exposure,
        "position_decay": position_decay(model.relative_examination, per_position),
        "rows": float(len(imp)),
        "items": float(found.sum()),
    }
