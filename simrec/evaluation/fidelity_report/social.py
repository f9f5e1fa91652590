"""Do friends consume alike, in the log and in the simulation?

Where a friend graph comes with the log (``social.graph: edges``), the co-consumption lift is
how much more alike friends' item sets are than those of users drawn at random: the mean
Jaccard similarity of friend pairs over that of random pairs (as many as
:data:`RANDOM_PAIRS_PER_FRIEND` per friend pair, seeded), with a 95% percentile-bootstrap
interval over friend pairs. It is measured on the training log (homophily and influence
together), on the held-out part (what friends went on to consume) and on what the simulated users
consumed (one agent per user), so the report can say whether simulated friends co-consume as
the real ones went on to, and, where the log shows no lift, say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from simrec.config import RunConfig
from simrec.environments.social import read_edge_list
from simrec.evaluation.fidelity_report.split import Split
from simrec.evaluation.resampling import bootstrap_units
from simrec.rng import Streams

__all__ = ["RANDOM_PAIRS_PER_FRIEND", "co_consumption_lift", "social_rows"]

RANDOM_PAIRS_PER_FRIEND = 20
RESAMPLES = 1000


def _jaccard(m: sp.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the item sets of rows ``a`` and ``b`` (p,) of the binary ``m``
    (0 where both are empty)."""
    both = np.asarray(m[a].multiply(m[b]).sum(axis=1)).ravel()
    sizes = np.diff(m.indptr)
    union = sizes[a] + sizes[b] - both
    return np.where(union > 0, both / np.maximum(union, 1), 0.0)


def co_consumption_lift(
    m: sp.csr_matrix, pairs: np.ndarray, seed: int = 0
) -> tuple[float, float, float]:
    """The friends' co-consumption lift on ``m`` (n_users, n_items) binary CSR for friend
    ``pairs`` (p, 2): (lift, low, high); NaN where random pairs share nothing."""
    m = (m > 0).astype(np.float32).tocsr()
    n = m.shape[0]
    g = Streams(seed).generator("social-random-pairs")
    k = RANDOM_PAIRS_PER_FRIEND * len(pairs)
    a, b = g.integers(0, n, k), g.integers(0, n - 1, k)
    b = np.where(b >= a, b + 1, b)  # never a user with themself
    base = float(_jaccard(m, a, b).mean())
    friends = _jaccard(m, pairs[:, 0], pairs[:, 1])
    if base == 0 or len(pairs) < 2:
        return float("nan"), float("nan"), float("nan")

    def statistic(idx: np.ndarray) -> np.ndarray:
        return (friends[idx].mean(axis=-1) / base)[None, :]

    point, res = bootstrap_units(
        statistic, len(pairs), n_resamples=RESAMPLES, alpha=0.05, seed=seed
    )
    ci = res.confidence_interval
    return float(point[0]), float(ci.low[0]), float(ci.high[0])


def social_rows(
    cfg: RunConfig, split: Split, simulated: sp.csr_matrix | None, seed: int
) -> list[tuple]:
    """Rows (section ``social``) of the friends' co-consumption lift in the training log, the
    held-out part and the simulation (``simulated``: (n_users, n_items) what each user's agent
    consumed); none without a friend graph of the log's users."""
    if cfg.social.graph != "edges" or cfg.social.path is None:
        return []
    n_users = split.train.interactions.n_users
    graph = read_edge_list(Path(cfg.social.path), split.train, np.arange(n_users))
    upper = sp.triu(graph.adjacency, k=1).tocoo()
    pairs = np.column_stack([upper.row, upper.col]).astype(np.int64)
    n_items = split.train.catalog.n_items
    logs = {
        "real-training": split.train.interactions.matrix(n_items),
        "real-held-out": split.test.matrix(n_items),
    }
    if simulated is not None:
        logs["simrec"] = simulated
    rows: list[tuple] = [("social", "friends", "pairs", float(len(pairs)), "real")]
    for source, m in logs.items():
        lift, low, high = co_consumption_lift(m, pairs, seed)
        rows += [
            ("social", "co_consumption_lift", "value", lift, source),
            ("social", "co_consumption_lift", "low", low, source),
            ("social", "co_consumption_lift", "high", high, source),
        ]
    return rows


def social_verdict(table) -> str | None:
    """One sentence on the friends' co-consumption, or None without a friend graph."""
    t = table[table.section == "social"].set_index(["setting", "metric", "source"]).value
    if t.empty:
        return None
    get = lambda *k: float(t.get(k, np.nan))  # noqa: E731
    held = [get("co_consumption_lift", x, "real-held-out") for x in ("value", "low", "high")]
    sim = get("co_consumption_lift", "value", "simrec")
    train = get("co_consumption_lift", "value", "real-training")
    pairs = int(get("friends", "pairs", "real"))
    shows = held[1] > 1
    inside = held[1] <= sim <= held[2]
    return (
        f"Of {pairs:,} friend pairs, friends' later choices are {held[0]:.2f} times as alike as "
        f"random users' [{held[1]:.2f}, {held[2]:.2f}]"
        + ("" if shows else " (the log shows no lift)")
        + f" ({train:.2f} in the training log); simulated friends {sim:.2f} times, "
        + ("within" if inside else "outside")
        + " the real interval"
    )
