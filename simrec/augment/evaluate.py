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
) -> dict[str, float]:
    """Recall@20 and NDCG@20 on each user's latest ``holdout`` interactions of ``policy``
    trained on a sparse subsample (``share`` of each user's earlier interactions, at least
    one) without and with the simulator's pseudo-positives (see
    :func:`simrec.augment.interactions.pseudo_interactions`)."""
    from simrec.augment.interactions import pseudo_interactions
    from simrec.environments.registry import make_policy
    from simrec.evaluation.fidelity_report import Split, offline_metrics, temporal_split
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
    sparse = dataclasses.replace(
        split.train,
        interactions=sparse_log,
        catalog=dataclasses.replace(
            split.train.catalog,
            popularity=np.bincount(sparse_log.item, minlength=n_items).astype(np.int64),
        ),
    )
    users = np.arange(train.n_users, dtype=np.int64)

    def score(d: Dataset) -> tuple[float, float]:
        p = make_policy(policy, {}, None)
        p.fit(agent_log(d, users), d.catalog)
        m = offline_metrics(p, Split(sparse, split.test))
        return m["recall@20"], m["ndcg@20"]

    recall0, ndcg0 = score(sparse)
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
    recall1, ndcg1 = score(dataclasses.replace(sparse, interactions=augmented_log))
    return {
        "train_interactions": float(len(sparse_log)),
        "pseudo_positives": float(stats["pseudo_positives"]),
        "recall@20": recall0,
        "ndcg@20": ndcg0,
        "recall@20_augmented": recall1,
        "ndcg@20_augmented": ndcg1,
        "recall_lift": recall1 / recall0 - 1 if recall0 else float("nan"),
        "ndcg_lift": ndcg1 / ndcg0 - 1 if ndcg0 else float("nan"),
    }
