"""Ratings: the agents' expected and sampled ratings against held-out real ratings."""

from __future__ import annotations

import numpy as np
from scipy import stats

from simrec.agents.taste import damped_bias
from simrec.evaluation.fidelity_report.split import Split
from simrec.rng import Streams


def rating_fidelity(split: Split, brain, seed: int) -> tuple[list[tuple], dict]:
    """Rows of the rating section, and the real and sampled ratings for the plots."""
    test, train = split.test, split.train.interactions
    rated = np.isfinite(test.rating)
    if not rated.any() or not np.isfinite(train.rating).any():
        return [("rating", "held-out", "ratings", 0.0, "real")], {}
    u, i = test.user[rated].astype(np.int64), test.item[rated].astype(np.int64)
    real = test.rating[rated].astype(np.float64)
    rm = brain.rating_model
    expected = rm.expected(u, i).astype(np.float64)
    z = Streams(seed).generator("fidelity-ratings").standard_normal(real.size)
    sampled = rm.sample(expected, z)
    tr = np.isfinite(train.rating)
    mu = float(train.rating[tr].mean())
    n_items = split.train.catalog.n_items
    n_i = np.bincount(train.item[tr], minlength=n_items)
    item_mean = np.bincount(train.item[tr], train.rating[tr], n_items) / np.maximum(n_i, 1)
    item_mean = np.where(n_i > 0, item_mean, mu)[i]
    mu_b, b_u, b_i = damped_bias(split.train.interactions, n_items)
    span = float(rm.scale.high - rm.scale.low) or 1.0
    w = stats.wasserstein_distance(sampled, real)
    rows = [("rating", "held-out", "ratings", float(real.size), "real")]
    for name, pred, source in (
        ("expected", expected, "simrec"),
        ("sampled", sampled, "simrec"),
        ("expected", np.full(real.size, mu), "global_mean"),
        ("expected", item_mean, "item_mean"),
        ("expected", mu_b + b_u[u] + b_i[i], "damped_bias"),
    ):
        rows.append(("rating", "held-out", f"rmse_{name}", rmse(pred, real), source))
        rows.append(
            ("rating", "held-out", f"mae_{name}", float(np.abs(pred - real).mean()), source)
        )
    rows += [
        ("rating", "held-out", "wasserstein", float(w), "simrec"),
        ("rating", "held-out", "wasserstein_normalised", float(w / span), "simrec"),
        ("rating", "held-out", "mean", float(sampled.mean()), "simrec"),
        ("rating", "held-out", "mean", float(real.mean()), "real"),
    ]
    return rows, {"real": real, "sampled": sampled}


def rmse(pred: np.ndarray, real: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - real) ** 2)))
