"""How much augmentation recovers: genres hidden from a catalog and filled back from the
interaction graph, scored against the hidden truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp

from simrec.augment.cutoff import Cutoff
from simrec.augment.items import enrich_items
from simrec.data.dataset import Dataset
from simrec.environments.base import ScoreRanker
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


def subsample(train: Dataset, share: float, seed: int) -> Dataset:
    """``train`` with a seeded random ``share`` of each user's interactions (at least one),
    in log order, and the catalog's popularity counted on them."""
    log = train.interactions
    rng = Streams(seed).generator("sparse-subsample")
    u = rng.random(len(log))
    order = np.lexsort((u, log.user))
    counts = np.bincount(log.user, minlength=log.n_users)
    rank = np.arange(len(log)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep_n = np.maximum(1, np.floor(share * counts)).astype(np.int64)
    return train.with_log(log.take(np.sort(order[rank < keep_n[log.user[order]]])))


def downstream_lift(
    data: Dataset,
    cfg,
    *,
    share: float = 0.2,
    holdout: float = 0.2,
    policy: str = "als",
    tuned: bool = True,
    positives: int = 1,
    negatives: int = 0,
    candidates: int = 50,
    base: str = "itemknn",
    volume: float | None = 1.0,
    ticks: int | None = None,
    start: str = "continue",
    cold: int = 5,
    n_resamples: int = 2000,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Recall@20 and NDCG@20 on each user's latest ``holdout`` interactions of ``policy``
    trained on a sparse subsample (``share`` of each user's earlier interactions, at least
    one; :func:`subsample`) alone and with each of these added:

    * ``pseudo``: the simulator's ``positives`` pseudo-positives per user from ``base``'s
      ``candidates`` (:func:`simrec.augment.interactions.pseudo_interactions`; ``base="kg"``
      proposes by the knowledge graph), in the users' own rows (0 positives: no such arm);
    * ``synthetic``: a synthetic log of ``volume`` times the subsample's size, written by the
      population calibrated on the subsample (:func:`simrec.evaluation.synthetic.generate`:
      ``organic`` exposure for ``ticks`` days; ``start``: whether its users continue their
      sources or start fresh), as users of its own (None: no such arm).

    With ``tuned``, ``policy``'s parameters are tuned on the subsample's inner split
    (:func:`~simrec.evaluation.fidelity_report.baselines.tune`; the held-out part is never
    seen) and kept for every arm; otherwise its defaults. Keys: ``recall@20``, ``ndcg@20``
    (the subsample alone), ``ARM_recall@20``, ``ARM_ndcg@20``, and the lifts
    ``ARM_recall_lift``/``_low``/``_high`` (``ndcg`` alike; arm mean over plain mean, minus 1,
    with a paired percentile-bootstrap interval over users at level ``1 - alpha``), overall and
    ``cold_ARM_...`` for the users most of whose held-out items have at most ``cold``
    interactions in the subsample; ``pseudo_positives``, ``synthetic_interactions``,
    ``train_interactions``, ``users``, ``cold_users``, ``param_NAME``."""
    from simrec.augment.interactions import pseudo_interactions
    from simrec.evaluation.fidelity_report import Split, temporal_split
    from simrec.evaluation.fidelity_report.baselines import TUNED, fitted, tune
    from simrec.evaluation.fidelity_report.ranking import per_user_metrics
    from simrec.evaluation.synthetic import generate

    split = temporal_split(data, holdout)
    train = split.train.interactions
    sparse = subsample(split.train, share, cfg.seed)
    sparse_log = sparse.interactions
    item_counts = sparse.catalog.popularity
    params = tune(policy, sparse).params if tuned and policy in TUNED else {}

    def score(d: Dataset) -> dict[str, np.ndarray]:  # the real users are d's first rows
        return per_user_metrics(fitted(policy, params, d), Split(sparse, split.test))

    def adding(u: np.ndarray, i: np.ndarray, r: np.ndarray, t: np.ndarray) -> Dataset:
        return dataclasses.replace(sparse, interactions=sparse_log.appended(u, i, r, t))

    plain = score(sparse)
    out = {
        "train_interactions": float(len(sparse_log)),
        "recall@20": float(plain["recall"].mean()),
        "ndcg@20": float(plain["ndcg"].mean()),
        **{f"param_{k}": float(v) for k, v in params.items()},
    }
    arms: dict[str, dict[str, np.ndarray]] = {}
    if positives > 0:
        pseudo, stats = pseudo_interactions(
            sparse, cfg, base=base, candidates=candidates, positives=positives, negatives=negatives
        )
        pos = pseudo.filter(pseudo.column("label").to_numpy() == 1)
        pu = pd.Index(train.user_ids).get_indexer(pos.column("user_id").to_numpy())
        pi = pd.Index(data.catalog.item_ids).get_indexer(pos.column("item_id").to_numpy())
        last = np.full(pu.size, sparse_log.timestamp.max())
        arms["pseudo"] = score(adding(pu, pi, np.full(pu.size, np.nan), last))
        out["pseudo_positives"] = float(stats["pseudo_positives"])
    if volume is not None:
        syn = generate(cfg, sparse, ticks=ticks, volume=volume, start=start).log
        arms["synthetic"] = score(
            adding(syn.user + train.n_users, syn.item, syn.rating, syn.timestamp)
        )
        out["synthetic_interactions"] = float(len(syn))
    # a user is cold when most of their held-out items are cold in the subsample
    test = split.test
    cold_item = item_counts[test.item] <= cold
    cold_share = np.bincount(test.user, cold_item, train.n_users) / np.maximum(
        np.bincount(test.user, minlength=train.n_users), 1
    )
    groups = (("", np.ones(plain["users"].size, bool)), ("cold_", cold_share[plain["users"]] > 0.5))
    for prefix, mask in groups:
        out[f"{prefix}users"] = float(mask.sum())
    for arm, per in arms.items():
        for metric in ("recall", "ndcg"):
            out[f"{arm}_{metric}@20"] = float(per[metric].mean())
        for prefix, mask in groups:
            for metric in ("recall", "ndcg"):
                lift = _paired_lift(
                    plain[metric][mask], per[metric][mask], n_resamples, alpha, cfg.seed
                )
                out.update({f"{prefix}{arm}_{metric}_{k}": v for k, v in lift.items()})
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


def cold_item_lift(
    data: Dataset,
    *,
    share: float = 0.1,
    seed: int = 0,
    kg: bool | None = None,
    n_resamples: int = 2000,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Do enriched descriptions help recommend items nobody has consumed yet? A seeded
    ``share`` of the items with interactions is made cold: every interaction with them is
    held out, the rest is the training log. The content-based ``genre`` policy (TF-IDF of
    genres and text; the profile of a user's training items) ranks the cold items only, once
    with the catalog's own text and once with :func:`enrich_items`' descriptions of the training
    log (``kg``: with the knowledge graph's facts; None: when the data has a graph); Recall@20
    and NDCG@20 on each user's held-out cold items. Keys: ``raw_recall@20``,
    ``enriched_recall@20`` (``ndcg`` alike), ``random_recall@20`` (the expected Recall@20 of
    a random order of the cold items), the lifts ``recall_lift``/``_low``/``_high`` (enriched
    over raw, minus 1; paired percentile-bootstrap interval over users at level ``1 -
    alpha``), ``cold_items``, ``users``, ``described_with_kg`` (1.0 when the graph's facts
    reached the descriptions)."""
    from simrec.evaluation.fidelity_report import Split
    from simrec.evaluation.fidelity_report.baselines import fitted
    from simrec.evaluation.fidelity_report.ranking import per_user_metrics

    log = data.interactions
    n_items = data.catalog.n_items
    have = np.flatnonzero(np.bincount(log.item, minlength=n_items) > 0)
    rng = Streams(seed).generator("cold-items")
    cold = np.zeros(n_items, bool)
    cold[rng.choice(have, size=max(1, int(round(share * have.size))), replace=False)] = True
    held = cold[log.item]
    train = data.with_log(log.take(np.flatnonzero(~held)))
    split = Split(train, log.take(np.flatnonzero(held)))
    kg = data.catalog.knowledge is not None if kg is None else kg
    table, counts = enrich_items(train, kg=kg)
    descriptions = np.array(
        [
            d or t
            for d, t in zip(table.column("description").to_pylist(), data.catalog.text, strict=True)
        ],
        dtype=object,
    )
    enriched = dataclasses.replace(
        train, catalog=dataclasses.replace(train.catalog, text=descriptions)
    )

    def cold_only(d: Dataset) -> dict[str, np.ndarray]:
        policy = fitted("genre", {}, d)

        def rows(u: np.ndarray) -> np.ndarray:  # the policy's scores, every warm item disallowed
            s = policy.scores(u)
            s[:, ~cold] = -np.inf
            return s

        return per_user_metrics(ScoreRanker(rows, "genre, cold items only"), split)

    raw, rich = cold_only(train), cold_only(enriched)
    n_cold = int(cold.sum())
    out = {
        "cold_items": float(n_cold),
        "users": float(raw["users"].size),
        "described_with_kg": float(counts.get("kg_aligned", 0)),
        # a random order of the cold items holds each held-out one in its top 20 with this chance
        "random_recall@20": min(20, n_cold) / n_cold,
    }
    for metric in ("recall", "ndcg"):
        out[f"raw_{metric}@20"] = float(raw[metric].mean())
        out[f"enriched_{metric}@20"] = float(rich[metric].mean())
        lift = _paired_lift(raw[metric], rich[metric], n_resamples, alpha, seed)
        out.update({f"{metric}_{k}": v for k, v in lift.items()})
    return out
