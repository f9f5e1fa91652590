"""LLMRec-style interaction augmentation: pseudo-positive and pseudo-negative items per user.

A base recommender (fitted on the interactions before the cutoff) proposes ``candidates``
unseen items per user; the calibrated simulator (the statistical brain fitted on the same
interactions) scores each candidate with its watch logit, and the best ``positives`` become
pseudo-positives, the worst ``negatives`` pseudo-negatives (items the recommender would show
that the user would pass over). Every row says where it came from (``source``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from simrec.augment.cutoff import Cutoff, visible
from simrec.config import RunConfig
from simrec.data.dataset import Dataset
from simrec.data.schemas import arrow_id_type
from simrec.errors import ConfigError


def pseudo_interactions(
    data: Dataset,
    cfg: RunConfig,
    *,
    cutoff: Cutoff | None = None,
    base: str = "itemknn",
    candidates: int = 50,
    positives: int = 1,
    negatives: int = 1,
) -> tuple[pa.Table, dict]:
    """(n_users x (positives + negatives)) rows: user_id, item_id, label (1: pseudo-positive,
    0: pseudo-negative), score (the simulator's watch logit), candidate_rank (the base
    recommender's rank, 1 = first), source (``simulator:utility``), base."""
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.environments.base import PolicyRandomness
    from simrec.environments.policies import make_policy
    from simrec.rng import Streams
    from simrec.simulator.model import agent_log

    if candidates < positives + negatives:
        raise ConfigError(
            f"--candidates: expected at least positives + negatives ({positives + negatives}), "
            f"got {candidates}"
        )
    if positives < 0 or negatives < 0 or positives + negatives == 0:
        raise ConfigError("--positives/--negatives: expected non-negative counts, not both 0")
    rows = visible(data.interactions, cutoff)
    log = data.interactions.take(rows)
    n_items = data.catalog.n_items
    view = dataclasses.replace(
        data,
        interactions=log,
        catalog=dataclasses.replace(
            data.catalog, popularity=np.bincount(log.item, minlength=n_items).astype(np.int64)
        ),
    )
    brain = UtilityBrain(cfg.brain, seed=cfg.seed)
    brain.bind(brain.fit(view), Streams(cfg.seed))
    policy = make_policy(base, {}, None)
    users = np.arange(log.n_users, dtype=np.int64)
    policy.fit(agent_log(view, users), view.catalog)
    seen = log.matrix(n_items)
    active = users[np.diff(seen.indptr) > 0]
    out = {k: [] for k in ("user", "item", "label", "score", "rank")}
    k = min(candidates, n_items)
    for start in range(0, active.size, 4096):
        u = active[start : start + 4096]
        slates = policy.recommend(
            u, k, exclude=seen[u], rng=PolicyRandomness(Streams(cfg.seed), 0, 0, "augment")
        )
        items = slates.items
        valid = items >= 0
        logit = brain.watch_logit(u, np.where(valid, items, 0)).astype(np.float64)
        logit[~valid] = np.nan
        for row in range(u.size):
            have = np.flatnonzero(valid[row])
            if have.size < positives + negatives:
                continue
            order = have[np.lexsort((have, -logit[row, have]))]  # best first, ties by rank
            picks = [(j, 1) for j in order[:positives]]
            picks += [(j, 0) for j in order[::-1][:negatives]]
            for j, label in picks:
                out["user"].append(u[row])
                out["item"].append(items[row, j])
                out["label"].append(label)
                out["score"].append(logit[row, j])
                out["rank"].append(j + 1)
    user_ids, item_ids = log.user_ids, data.catalog.item_ids
    uu, ii = np.asarray(out["user"], np.int64), np.asarray(out["item"], np.int64)
    table = pa.Table.from_pydict(
        {
            "user_id": pa.array(user_ids[uu], arrow_id_type(user_ids)),
            "item_id": pa.array(item_ids[ii], arrow_id_type(item_ids)),
            "label": pa.array(out["label"], pa.int8()),
            "score": pa.array(out["score"], pa.float64()),
            "candidate_rank": pa.array(out["rank"], pa.int32()),
            "source": pa.array(["simulator:utility"] * uu.size, pa.string()),
            "base": pa.array([base] * uu.size, pa.string()),
        }
    )
    stats = {
        "users": int(np.unique(uu).size),
        "pseudo_positives": int(np.sum(np.asarray(out["label"]) == 1)),
        "pseudo_negatives": int(np.sum(np.asarray(out["label"]) == 0)),
        "visible_interactions": int(rows.size),
        "interactions": len(data.interactions),
    }
    return table, stats


def merged(data: Dataset, pseudo: pa.Table, cutoff: Cutoff | None) -> pa.Table:
    """The visible original interactions (source ``original``) followed by the
    pseudo-positives (rating and timestamp null, source from ``pseudo``)."""
    log = data.interactions.take(visible(data.interactions, cutoff))
    user_type = arrow_id_type(log.user_ids)
    item_type = arrow_id_type(data.catalog.item_ids)
    pos = pseudo.filter(pa.compute.equal(pseudo.column("label"), 1))
    n = len(log)
    return pa.Table.from_pydict(
        {
            "user_id": pa.concat_arrays(
                [
                    pa.array(log.user_ids[log.user], user_type),
                    pos.column("user_id").combine_chunks(),
                ]
            ),
            "item_id": pa.concat_arrays(
                [
                    pa.array(data.catalog.item_ids[log.item], item_type),
                    pos.column("item_id").combine_chunks(),
                ]
            ),
            "rating": pa.array(
                np.r_[log.rating.astype(np.float64), np.full(pos.num_rows, np.nan)],
                pa.float64(),
                from_pandas=True,
            ),
            "timestamp": pa.array([*log.timestamp.tolist(), *([None] * pos.num_rows)], pa.int64()),
            "source": pa.array(["original"] * n + pos.column("source").to_pylist(), pa.string()),
        }
    )
