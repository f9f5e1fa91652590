"""How much augmentation recovers: genres hidden from a catalog and filled back from the
interaction graph, scored against the hidden truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from simrec.augment.cutoff import Cutoff
from simrec.augment.items import enrich_items
from simrec.data.dataset import Dataset, Interactions
from simrec.rng import Streams


def hide_genres(data: Dataset, share: float, seed: int) -> tuple[Dataset, np.ndarray]:
    """A copy of ``data`` whose catalog lost the genres of a random ``share`` of the items
    that have any; returns it and those items' indices (sorted)."""
    g = data.catalog.genres.tocsr()
    have = np.flatnonzero(np.diff(g.indptr) > 0)
    rng = Streams(seed).generator("hide-genres")
    hidden = np.sort(rng.choice(have, size=int(round(share * have.size)), replace=False))
    keep = np.ones(data.catalog.n_items, bool)
    keep[hidden] = False
    stripped = sp.diags(keep.astype(np.float64)) @ g.astype(np.float64)
    stripped = sp.csr_matrix(stripped, dtype=bool)
    stripped.eliminate_zeros()
    text = data.catalog.text.copy()
    for i in hidden:  # the text must not give the genres away either
        text[i] = str(data.catalog.titles[i])
    catalog = dataclasses.replace(data.catalog, genres=stripped, text=text)
    return dataclasses.replace(data, catalog=catalog), hidden


def genre_recovery(
    data: Dataset,
    *,
    share: float = 0.3,
    seed: int = 0,
    cutoff: Cutoff | None = None,
    neighbours: int = 10,
    genre_threshold: float = 0.5,
    genre_from: str = "interactions",
    cold: int | None = None,
) -> dict[str, float]:
    """Hide the genres of ``share`` of the items, enrich, and score the recovered genres of
    the hidden items: coverage (items that got any genre), precision and recall of the
    recovered genre sets (micro-averaged over covered items), top-1 accuracy (the most
    confident recovered genre is a true one), and the same top-1 accuracy of guessing the
    catalog's most common genre, as a baseline. ``genre_from``: whose neighbours vote
    (``interactions``, ``kg``, ``both``); ``cold``: score only the hidden items with at most
    this many interactions before the cutoff."""
    stripped, hidden = hide_genres(data, share, seed)
    table, _ = enrich_items(
        stripped,
        cutoff=cutoff,
        neighbours=neighbours,
        genre_threshold=genre_threshold,
        genre_from=genre_from,
    )
    if cold is not None:
        seen = table.column("n_interactions").to_numpy()
        hidden = hidden[seen[hidden] <= cold]
    truth = data.catalog.genre_lists()
    added = table.column("genres_added").to_pylist()
    tp = n_pred = n_true = top1 = covered = 0
    for i in hidden.tolist():
        pred, real = added[i], set(truth[i])
        if not pred:
            continue
        covered += 1
        tp += len(real & set(pred))
        n_pred += len(pred)
        n_true += len(real)
        top1 += pred[0] in real
    counts = np.asarray(data.catalog.genres.sum(axis=0)).ravel()
    common = data.catalog.genre_names[int(np.argmax(counts))]
    baseline = float(np.mean([common in truth[i] for i in hidden])) if hidden.size else 0.0
    return {
        "hidden_items": float(hidden.size),
        "coverage": covered / max(hidden.size, 1),
        "precision": tp / max(n_pred, 1),
        "recall": tp / max(n_true, 1),
        "top1_accuracy": top1 / max(covered, 1),
        "top1_accuracy_most_common_genre": baseline,
    }


def downstream_lift(
    data: Dataset,
    cfg,
    *,
    share: float = 0.2,
    holdout: float = 0.2,
    policy: str = "als",
    positives: int = 2,
    negatives: int = 0,
    candidates: int = 50,
    base: str = "itemknn",
    cold: int = 5,
    n_resamples: int = 2000,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Recall@20 and NDCG@20 on each user's latest ``holdout`` interactions of ``policy``
    trained on a sparse subsample (``share`` of each user's earlier interactions, at least
    one) without and with the simulator's pseudo-positives from ``base``'s candidates (see
    :func:`simrec.augment.interactions.pseudo_interactions`; ``base="kg"`` proposes by the
    knowledge graph). The lifts (``recall_lift``, ``ndcg_lift``: augmented mean over plain
    mean, minus 1) come with paired percentile-bootstrap intervals over users
    (``..._low``/``..._high``, level ``1 - alpha``), overall and ``cold_...`` for the users
    most of whose held-out items have at most ``cold`` interactions in the subsample."""
    from simrec.augment.interactions import pseudo_interactions
    from simrec.environments.registry import make_policy
    from simrec.evaluation.fidelity_report import Split, temporal_split
    from simrec.evaluation.fidelity_report.ranking import per_user_metrics
    from simrec.simulator.model import agent_log

    split = temporal_split(data, holdout)
    train = split.train.interactions
    rng = Streams(cfg.seed).generator("sparse-subsample")
    u = rng.random(len(train))
    order = np.lexsort((u, train.user))
    counts = np.bincount(train.user, minlength=train.n_users)
    rank = np.arange(len(train)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep_n = np.maximum(1, np.floor(share * counts)).astype(np.int64)
    keep = np.sort(order[rank < keep_n[train.user[order]]])
    sparse_log = train.take(keep)
    n_items = data.catalog.n_items
    item_counts = np.bincount(sparse_log.item, minlength=n_items).astype(np.int64)
    sparse = dataclasses.replace(
        split.train,
        interactions=sparse_log,
        catalog=dataclasses.replace(split.train.catalog, popularity=item_counts),
    )
    users = np.arange(train.n_users, dtype=np.int64)

    def score(d: Dataset) -> dict[str, np.ndarray]:
        p = make_policy(policy, {}, None)
        p.fit(agent_log(d, users), d.catalog)
        return per_user_metrics(p, Split(sparse, split.test))

    plain = score(sparse)
    pseudo, stats = pseudo_interactions(
        sparse, cfg, base=base, candidates=candidates, positives=positives, negatives=negatives
    )
    pos = pseudo.filter(pseudo.column("label").to_numpy() == 1)
    index = {v: i for i, v in enumerate(data.catalog.item_ids.tolist())}
    uid = {v: i for i, v in enumerate(train.user_ids.tolist())}
    pu = np.array([uid[x] for x in pos.column("user_id").to_pylist()], np.int32)
    pi = np.array([index[x] for x in pos.column("item_id").to_pylist()], np.int32)
    augmented_log = Interactions(
        np.r_[sparse_log.user, pu].astype(np.int32),
        np.r_[sparse_log.item, pi].astype(np.int32),
        np.r_[sparse_log.rating, np.full(pu.size, np.nan, np.float32)].astype(np.float32),
        np.r_[sparse_log.timestamp, np.full(pu.size, sparse_log.timestamp.max())].astype(np.int64),
        sparse_log.user_ids,
    )
    augmented = score(dataclasses.replace(sparse, interactions=augmented_log))
    # a user is cold when most of their held-out items are cold in the subsample
    test = split.test
    cold_item = item_counts[test.item] <= cold
    cold_share = np.bincount(test.user, cold_item, train.n_users) / np.maximum(
        np.bincount(test.user, minlength=train.n_users), 1
    )
    out = {
        "train_interactions": float(len(sparse_log)),
        "pseudo_positives": float(stats["pseudo_positives"]),
        "recall@20": float(plain["recall"].mean()),
        "ndcg@20": float(plain["ndcg"].mean()),
        "recall@20_augmented": float(augmented["recall"].mean()),
        "ndcg@20_augmented": float(augmented["ndcg"].mean()),
    }
    for prefix, mask in (
        ("", np.ones(plain["users"].size, bool)),
        ("cold_", cold_share[plain["users"]] > 0.5),
    ):
        out[f"{prefix}users"] = float(mask.sum())
        for metric in ("recall", "ndcg"):
            lift = _paired_lift(
                plain[metric][mask], augmented[metric][mask], n_resamples, alpha, cfg.seed
            )
            out.update({f"{prefix}{metric}_{k}": v for k, v in lift.items()})
    return out


def _paired_lift(
    before: np.ndarray, after: np.ndarray, n_resamples: int, alpha: float, seed: int
) -> dict[str, float]:
    """``lift`` = mean(after) / mean(before) - 1 over the same users (n,), with its paired
    percentile-bootstrap interval ``low``/``high`` (NaN without users or a zero mean)."""
    from simrec.evaluation.resampling import bootstrap_units

    if before.size < 2 or before.mean() == 0:
        return {"lift": float("nan"), "low": float("nan"), "high": float("nan")}

    def statistic(idx: np.ndarray) -> np.ndarray:  # (b, n) -> (1, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (after[idx].mean(axis=-1) / before[idx].mean(axis=-1) - 1.0)[None, :]

    point, res = bootstrap_units(
        statistic, before.size, n_resamples=n_resamples, alpha=alpha, seed=seed
    )
    ci = res.confidence_interval
    return {"lift": float(point[0]), "low": float(ci.low[0]), "high": float(ci.high[0])}
