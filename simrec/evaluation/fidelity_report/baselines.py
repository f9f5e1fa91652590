"""Baselines a recommender-systems researcher respects, tuned on the training data only.

EASE (Steck 2019), item-kNN with neighbours and shrinkage, and implicit ALS with factors,
regularisation and confidence, each tuned over a small grid (:data:`GRIDS`) by Recall@20 on an
inner temporal split of the training log (each user's latest ``holdout`` share of the
training part): the held-out part of the real log is never seen by the tuning. Popularity has
nothing to tune. Untuned defaults are the wrong bar (Dacrema et al., RecSys 2019; Rendle et
al., RecSys 2022).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simrec.data.dataset import Dataset
from simrec.errors import ConfigError
from simrec.evaluation.fidelity_report.ranking import TOP_K, per_user_metrics
from simrec.evaluation.fidelity_report.split import temporal_split

GRIDS: dict[str, tuple[dict[str, Any], ...]] = {
    "ease": tuple({"l2": v} for v in (20.0, 100.0, 300.0, 1000.0, 3000.0)),
    "itemknn": tuple(
        {"neighbours": k, "shrinkage": s} for k in (20, 100, 400) for s in (1.0, 20.0, 100.0)
    ),
    "als": tuple(
        {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
        for f in (32, 128)
        for r in (0.1, 10.0)
        for a in (1.0, 10.0)
    ),
}
TUNED = tuple(GRIDS)  # the tuned baselines, by policy name


@dataclass(frozen=True)
class Tuned:
    """A baseline's chosen parameters, and each tried grid point's inner Recall@20."""

    name: str
    params: dict[str, Any]
    inner_recall: float
    scores: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``name(k=v, ...)``: the policy and its tuned parameters, for tables.

        >>> Tuned("ease", {"l2": 300.0}, 0.2).label
        'ease(l2=300)'
        """
        return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.params.items())})"


def fitted(name: str, params: dict[str, Any], data: Dataset):
    """The built-in policy ``name`` with ``params``, fitted on ``data``'s log (one agent per
    user)."""
    from simrec.data.agent_log import agent_log
    from simrec.environments.registry import make_policy

    policy = make_policy(name, params, None)
    policy.fit(agent_log(data, np.arange(data.interactions.n_users)), data.catalog)
    return policy


def tune(name: str, train: Dataset, holdout: float = 0.2) -> Tuned:
    """The grid point of :data:`GRIDS` ``[name]`` with the highest Recall@20 on the inner split
    of ``train`` (ties: the first). A log too small to split keeps the first grid point."""
    grid = GRIDS[name]
    try:
        inner = temporal_split(train, holdout)
    except ConfigError:  # nothing to hold out: no evidence to tune on
        return Tuned(name, dict(grid[0]), float("nan"))
    scores = []
    for params in grid:
        per = per_user_metrics(fitted(name, params, inner.train), inner, TOP_K)
        scores.append((dict(params), float(np.mean(per["recall"]))))
    best = max(range(len(scores)), key=lambda j: (scores[j][1], -j))
    return Tuned(name, scores[best][0], scores[best][1], scores)


def tuned_baselines(
    train: Dataset, holdout: float = 0.2, names: tuple[str, ...] = TUNED
) -> dict[str, Tuned]:
    """:func:`tune` for each of ``names``."""
    return {name: tune(name, train, holdout) for name in names}


def baseline_rows(baselines: dict[str, Tuned]) -> list[tuple]:
    """The report's rows of the tuning: per baseline, its inner Recall@20 and each tuned
    parameter (section ``baselines``, setting ``inner split``, source the policy)."""
    rows: list[tuple] = []
    for name, t in baselines.items():
        rows.append(("baselines", "inner split", f"recall@{TOP_K}", t.inner_recall, name))
        rows += [("baselines", "tuned", k, float(v), name) for k, v in t.params.items()]
    return rows
