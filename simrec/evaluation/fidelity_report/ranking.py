"""Ranking: do simulated engagement and held-out offline metrics order policies alike?"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats

from simrec.data.dataset import Dataset
from simrec.environments.registry import policy_family
from simrec.evaluation.ab import order_changes
from simrec.evaluation.fidelity_report.split import Split
from simrec.evaluation.resampling import bootstrap_units, order_kept, resample_weights
from simrec.rng import Streams

POLICIES = ("random", "popular", "itemknn", "als", "bpr", "genre")


BRAIN_FAMILIES = {  # brain.taste_model -> its family
    "lda": "topic model",
    "svd": "matrix factorisation",
    "oracle": "the world's own",
}


TOP_K = 20


def offline_metrics(policy, split: Split, k: int = TOP_K) -> dict[str, float]:
    """Mean ``recall@k`` and ``ndcg@k`` of ``policy`` (already fitted on the training log, one
    agent per user) on the held-out items, training items excluded. On a synthetic world also
    ``choice_share@k``: the share of the world's choice probability over the user's unseen items
    that the slate holds, the noise-free quantity Recall@k estimates from a finite sample."""
    return metric_means(per_user_metrics(policy, split, k), k)


def metric_means(per: dict[str, np.ndarray], k: int = TOP_K) -> dict[str, float]:
    """:func:`offline_metrics` from :func:`per_user_metrics`' arrays."""
    out = {f"recall@{k}": float(np.mean(per["recall"])), f"ndcg@{k}": float(np.mean(per["ndcg"]))}
    if "choice_share" in per:
        out[f"choice_share@{k}"] = float(per["choice_share"].mean())
    return out


def policy_offline_metrics(name: str, split: Split, k: int = TOP_K) -> dict[str, float]:
    """:func:`offline_metrics` of the built-in policy ``name`` (default parameters) fitted on
    ``split``'s training log, one agent per user."""
    return metric_means(policy_per_user_metrics(name, split, k), k)


def policy_per_user_metrics(name: str, split: Split, k: int = TOP_K) -> dict[str, np.ndarray]:
    """:func:`per_user_metrics` of the built-in policy ``name``, fitted as in
    :func:`policy_offline_metrics`."""
    from simrec.data.agent_log import agent_log
    from simrec.environments.registry import make_policy

    policy = make_policy(name, {}, None)
    policy.fit(
        agent_log(split.train, np.arange(split.train.interactions.n_users)), split.train.catalog
    )
    return per_user_metrics(policy, split, k)


def per_user_metrics(policy, split: Split, k: int = TOP_K) -> dict[str, np.ndarray]:
    """:func:`offline_metrics` per user: ``users`` (n,) the users with held-out items, and
    ``recall``, ``ndcg`` (and on a synthetic world ``choice_share``), each (n,)."""
    from simrec.environments.base import PolicyRandomness

    n_items = split.train.catalog.n_items
    train_m = split.train.interactions.matrix(n_items)
    test_m = split.test.matrix(n_items)
    truth = split.train.truth
    users = np.flatnonzero(np.diff(test_m.indptr) > 0).astype(np.int64)
    streams = Streams(0)
    recall, ndcg, share = [], [], []
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for start in range(0, users.size, 1024):
        u = users[start : start + 1024]
        seen = train_m[u]
        slates = policy.recommend(
            u, k, exclude=seen, rng=PolicyRandomness(streams, 0, 0, purpose="fidelity")
        )
        rel_m = test_m[u]
        for row, items in enumerate(slates.items):
            rel = rel_m.indices[rel_m.indptr[row] : rel_m.indptr[row + 1]]
            hit = np.isin(items, rel) & (items >= 0)
            recall.append(hit.sum() / rel.size)
            ideal = discount[: min(rel.size, k)].sum()
            ndcg.append(float((hit * discount).sum() / ideal))
        if truth is not None:
            share.append(_choice_share(truth, u, seen, slates.items))
    out = {"users": users, "recall": np.asarray(recall), "ndcg": np.asarray(ndcg)}
    if truth is not None:
        out["choice_share"] = np.concatenate(share)
    return out


def _choice_share(truth, users: np.ndarray, seen: sp.csr_matrix, slates: np.ndarray):
    """Per user, the world's choice probability (softmax of its utility over the items the user
    has not seen) summed over the slate. users: (n,), seen: (n, n_items), slates: (n, k) with -1
    for empty slots -> (n,)."""
    n_items = truth.item_vecs.shape[0]
    util = truth.utility_matrix(users)
    util[seen.nonzero()] = -np.inf
    util -= util.max(axis=1, keepdims=True)
    p = np.exp(util)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(users.size)[:, None]
    return np.where(slates >= 0, p[rows, np.clip(slates, 0, n_items - 1)], 0.0).sum(axis=1)


def ranking(
    engagement: dict[str, float],
    offline: dict[str, dict[str, float]],
    brain_family: str = BRAIN_FAMILIES["svd"],
    ideal: dict[str, float] | None = None,
) -> list:
    """Rows of the ranking section from per-policy simulated engagement and offline metrics
    (:func:`offline_metrics`); policies of ``brain_family`` (the brain's taste model's) are
    flagged. ``rank_shift`` is a policy's rank by Recall@20 minus its simulated rank (positive:
    the simulation flatters it). On a synthetic world, ``ideal`` is each policy's engagement
    simulated with the world's own taste model (source ``oracle``): the correlations with it,
    and ``rank_shift_vs_oracle``, are what the brain's taste model alone changes, the protocol
    (examination, sessions, return) being the same; its own correlations with the offline
    metrics (source ``oracle``) are the most any taste model can reach under that protocol."""
    rows: list[tuple] = []
    names = list(engagement)
    sim = np.array([engagement[p] for p in names])
    sim_rank = stats.rankdata(-sim)
    against = {m: np.array([offline[p][m] for p in names]) for m in offline[names[0]]}
    if ideal is not None:
        against["oracle_simulation"] = np.array([ideal[p] for p in names])
    shifts = {"recall@20": "rank_shift", "oracle_simulation": "rank_shift_vs_oracle"}
    for j, p in enumerate(names):
        rows.append(("ranking", p, "consumed_per_user", engagement[p], "simrec"))
        for metric, values in against.items():
            if metric == "oracle_simulation":
                rows.append(("ranking", p, "consumed_per_user", values[j], "oracle"))
            else:
                source = "oracle" if metric.startswith("choice_share") else "real"
                rows.append(("ranking", p, metric, values[j], source))
        family = float(policy_family(p) == brain_family)
        rows.append(("ranking", p, "shares_brain_family", family, "simrec"))
    keep = np.array([policy_family(p) != brain_family for p in names])
    for metric, values in against.items():
        if metric in shifts:
            for p, a, b in zip(names, sim_rank, stats.rankdata(-values), strict=True):
                rows.append(("ranking", p, shifts[metric], float(b - a), "simrec"))
        for suffix, mask in (("", np.ones(len(names), bool)), ("_without_brain_family", keep)):
            tau = rho = float("nan")
            if mask.sum() >= 3:
                tau = float(stats.kendalltau(sim[mask], values[mask]).statistic)
                rho = float(stats.spearmanr(sim[mask], values[mask]).statistic)
            rows += [
                ("ranking", metric, f"kendall_tau{suffix}", tau, "simrec"),
                ("ranking", metric, f"spearman_rho{suffix}", rho, "simrec"),
            ]
        if ideal is not None and metric != "oracle_simulation":  # the protocol's ceiling
            best = against["oracle_simulation"]
            tau = float(stats.kendalltau(best, values).statistic)
            rho = float(stats.spearmanr(best, values).statistic)
            rows += [
                ("ranking", metric, "kendall_tau", tau, "oracle"),
                ("ranking", metric, "spearman_rho", rho, "oracle"),
            ]
    rows.append(("ranking", "policies", "count", float(len(names)), "simrec"))
    return rows


RANKING_RESAMPLES = 1000  # resamples of the users behind the ranking's interval
RESOLVED = 0.95  # a pair's order is resolved when this share of the resamples keeps it


def ranking_uncertainty(
    watches: dict[str, np.ndarray],
    recall: dict[str, np.ndarray],
    held_out: np.ndarray,
    seed: int,
    resamples: int = RANKING_RESAMPLES,
) -> list:
    """Rows saying how much of the ranking's agreement the data can vouch for, from one
    bootstrap of the users (:func:`~simrec.evaluation.resampling.bootstrap_units`,
    ``resamples`` times; the same users for every policy and both sides, so their pairing is
    kept): per policy, ``watches`` (n_users,) each simulated user's watches (agent i is user
    i) and ``recall`` (n_held,) Recall@20 of the users ``held_out`` (n_held,) with held-out
    items.

    Rows: ``resamples`` (setting ``users``); ``kendall_tau_low`` and ``kendall_tau_high``
    (setting ``recall@20``), the 2.5th and 97.5th percentiles of Kendall's tau-b over the
    resamples; per side (source ``real``: held-out Recall@20, ``simrec``: simulated
    engagement) ``resolved_share``, the share of policy pairs ordered as in the full data by
    at least RESOLVED of the resamples, and ``order_unresolved`` 1 for each pair that is not
    (setting ``A|B``); ``resolved_by_both``, how many pairs both sides resolve, and
    ``agree_resolved``, on how many of those they agree. A held-out log of a few hundred users
    may not tell close policies apart, nor a small simulation: a swap of such a pair says
    nothing about the simulator."""
    names = list(watches)
    n_users = next(iter(watches.values())).size
    sim = np.stack([np.asarray(watches[p], np.float64) for p in names], axis=1)  # (n, P)
    rec = np.zeros((n_users, len(names)))
    rec[held_out] = np.stack([np.asarray(recall[p], np.float64) for p in names], axis=1)
    has = np.zeros(n_users)
    has[held_out] = 1.0
    a, b = np.triu_indices(len(names), 1)

    def statistic(idx: np.ndarray) -> np.ndarray:
        """(b, n) resampled users -> (1 + 2 pairs, b): tau-b, then each pair's difference in
        simulated watches, then in held-out Recall@20."""
        w = resample_weights(idx, n_users)
        s_mean = w @ sim / w.sum(axis=1, keepdims=True)  # (b, P)
        r_mean = (w @ rec) / np.maximum(w @ has, 1.0)[:, None]
        s_diff, r_diff = s_mean[:, a] - s_mean[:, b], r_mean[:, a] - r_mean[:, b]
        # Kendall's tau-b: concordant less discordant pairs over the pairs untied on each side
        s_sign, r_sign = np.sign(s_diff), np.sign(r_diff)
        denom = np.sqrt((s_sign**2).sum(axis=1) * (r_sign**2).sum(axis=1))
        tau = np.where(denom > 0, (s_sign * r_sign).sum(axis=1) / np.maximum(denom, 1e-12), 0.0)
        return np.vstack([tau, s_diff.T, r_diff.T])

    point, res = bootstrap_units(
        statistic, n_users, n_resamples=resamples, alpha=0.05, seed=seed, cells_per_unit=3
    )
    low, high = res.confidence_interval.low[0], res.confidence_interval.high[0]
    rows: list[tuple] = [
        ("ranking", "users", "resamples", float(resamples), "simrec"),
        ("ranking", f"recall@{TOP_K}", "kendall_tau_low", float(low), "simrec"),
        ("ranking", f"recall@{TOP_K}", "kendall_tau_high", float(high), "simrec"),
    ]
    sides = {"real": slice(1 + a.size, None), "simrec": slice(1, 1 + a.size)}
    resolved = {}
    for source, sl in sides.items():
        kept = order_kept(point[sl], res.bootstrap_distribution[sl])
        resolved[source] = kept >= RESOLVED
        rows.append(("ranking", "pairs", "resolved_share", float(resolved[source].mean()), source))
        rows += [
            ("ranking", f"{names[i]}|{names[j]}", "order_unresolved", 1.0, source)
            for i, j, ok in zip(a, b, resolved[source], strict=True)
            if not ok
        ]
    agree = np.sign(point[sides["simrec"]]) == np.sign(point[sides["real"]])
    both = resolved["real"] & resolved["simrec"]
    rows += [
        ("ranking", "pairs", "resolved_by_both", float(both.sum()), "simrec"),
        ("ranking", "pairs", "agree_resolved", float(agree[both].sum()), "simrec"),
    ]
    return rows


def reading(exposure: float) -> str:
    """The source label of simulated engagement read with ``brain.exposure`` = ``exposure``."""
    return f"simrec, exposure {exposure:g}"


def exposure_rows(
    engagement: dict[str, float],
    readings: dict[float, dict[str, float]],
    offline: dict[str, dict[str, float]],
    configured: float,
) -> list:
    """Rows of the ranking section that say how far the simulated order of policies depends on
    how much of the log's popularity is exposure (``brain.exposure``), which a log without
    impressions cannot tell. ``engagement``: watches per user under the config's brain;
    ``readings``: exposure -> watches per user, each policy simulated with that exposure;
    ``configured``: the config's ``brain.exposure`` (row ``brain``, ``exposure``).

    Per reading: each policy's watches per user and Kendall's tau against held-out Recall@20
    (source :func:`reading`); then ``stable_share``, the share of policy pairs whose simulated
    order is the same under the config's brain and every reading, ``stable_agree``, how many of
    those held-out Recall@20 orders the same way, and per pair that is not (setting ``A|B``),
    ``order_depends_on_exposure`` 1."""
    rows: list[tuple] = [("ranking", "brain", "exposure", configured, "simrec")]
    names = list(engagement)
    recall = np.array([offline[p][f"recall@{TOP_K}"] for p in names])
    orders = [np.array([engagement[p] for p in names])]
    for exposure, values in readings.items():
        sim = np.array([values[p] for p in names])
        orders.append(sim)
        label = reading(exposure)
        rows += [("ranking", p, "consumed_per_user", values[p], label) for p in names]
        tau = float(stats.kendalltau(sim, recall).statistic)
        rows.append(("ranking", f"recall@{TOP_K}", "kendall_tau", tau, label))
    a, b = np.triu_indices(len(names), 1)
    unstable = order_changes(np.stack(orders))[a, b]  # (pairs,)
    rows += [
        ("ranking", f"{names[i]}|{names[j]}", "order_depends_on_exposure", 1.0, "simrec")
        for i, j in zip(a[unstable], b[unstable], strict=True)
    ]
    rows.append(("ranking", "pairs", "stable_share", float(1 - unstable.mean()), "simrec"))
    agrees = np.sign(orders[0][a] - orders[0][b]) == np.sign(recall[a] - recall[b])
    agree = (agrees & ~unstable).sum()
    rows.append(("ranking", "pairs", "stable_agree", float(agree), "simrec"))
    return rows


MIN_RATINGS_PER_ITEM = 10  # items with fewer ratings are left out of popularity_vs_rating
_MIN_ITEMS = 20


def popularity_rating_rows(data: Dataset) -> list:
    """Rows saying whether the log's popularity goes with its ratings: Pearson's r between an
    item's log(1 + interactions) and its mean rating, over the items with at least
    MIN_RATINGS_PER_ITEM ratings (setting ``popularity_vs_rating``, metrics ``correlation``
    and ``items``, source ``real``). A clue to how much of the popularity is taste, which the
    exposure readings bracket: where people came across items regardless of how much they
    like them, popular items are rated no better than others. No rows without ratings or with
    under _MIN_ITEMS such items."""
    log, n_items = data.interactions, data.catalog.n_items
    rated = np.isfinite(log.rating)
    counts = np.bincount(log.item, minlength=n_items)
    n_rated = np.bincount(log.item[rated], minlength=n_items)
    keep = n_rated >= MIN_RATINGS_PER_ITEM
    if keep.sum() < _MIN_ITEMS:
        return []
    mean = np.bincount(log.item[rated], log.rating[rated].astype(np.float64), n_items)[keep]
    mean /= n_rated[keep]
    pop = np.log1p(counts[keep].astype(np.float64))
    if mean.std() == 0 or pop.std() == 0:
        return []
    r = float(np.corrcoef(pop, mean)[0, 1])
    return [
        ("ranking", "popularity_vs_rating", "correlation", r, "real"),
        ("ranking", "popularity_vs_rating", "items", float(keep.sum()), "real"),
    ]
