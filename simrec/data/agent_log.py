"""The log a policy is fitted on, in agent space: what the simulator, the fidelity report, the
synthetic-data report and off-policy evaluation hand a recommender's ``fit``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simrec.data.dataset import Dataset

__all__ = ["agent_log"]


def agent_log(
    data: Dataset, source_user: np.ndarray, watched: dict[str, np.ndarray] | None = None
) -> pa.Table:
    """The log a policy is fitted on, in agent space (the ids ``recommend`` is called with).

    Agent ``a`` carries the seed-log rows of its source user (clones each get a copy); seed
    users that no agent represents follow as background users ``n_agents, n_agents + 1, ...``,
    so the policy still learns from the whole log. ``watched`` (columns agent, item, rating,
    timestamp) appends what agents watched during the run. Columns: user_index, item_index,
    rating, timestamp, and count for a log with counts (1 for each watch).
    """
    log = data.interactions
    n_agents = len(source_user)
    order = np.argsort(log.user, kind="stable")
    indptr = np.zeros(log.n_users + 1, np.int64)
    np.cumsum(np.bincount(log.user, minlength=log.n_users), out=indptr[1:])
    src = np.asarray(source_user, np.int64)
    counts = indptr[src + 1] - indptr[src]
    total = int(counts.sum())
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = [order[np.repeat(indptr[src], counts) + within]]
    users = [np.repeat(np.arange(n_agents, dtype=np.int64), counts)]
    background = np.setdiff1d(np.arange(log.n_users), src)
    if background.size:
        new_id = np.full(log.n_users, -1, np.int64)
        new_id[background] = n_agents + np.arange(background.size)
        bg_rows = order[np.isin(log.user[order], background)]
        rows.append(bg_rows)
        users.append(new_id[log.user[bg_rows]])
    rows_all = np.concatenate(rows)
    cols = {
        "user_index": np.concatenate(users),
        "item_index": log.item[rows_all].astype(np.int64),
        "rating": log.rating[rows_all].astype(np.float32),
        "timestamp": log.timestamp[rows_all].astype(np.int64),
    }
    n_watched = 0 if watched is None else watched["agent"].size
    if n_watched:
        for key, col in zip(cols, ("agent", "item", "rating", "timestamp"), strict=True):
            cols[key] = np.concatenate([cols[key], watched[col].astype(cols[key].dtype)])
    if log.count is not None:  # a log with counts: each watch counts once
        cols["count"] = np.r_[log.count[rows_all], np.ones(n_watched, np.float32)]
    return pa.table(cols)
