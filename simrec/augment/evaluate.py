"""How much augmentation recovers: genres hidden from a catalog and filled back from the
interaction graph, scored against the hidden truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from simrec.augment.cutoff import Cutoff
from simrec.augment.items import enrich_items
from simrec.data.dataset import Dataset
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
) -> dict[str, float]:
    """Hide the genres of ``share`` of the items, enrich, and score the recovered genres of
    the hidden items: coverage (items that got any genre), precision and recall of the
    recovered genre sets (micro-averaged over covered items), top-1 accuracy (the most
    confident recovered genre is a true one), and the same top-1 accuracy of guessing the
    catalog's most common genre, as a baseline."""
    stripped, hidden = hide_genres(data, share, seed)
    table, _ = enrich_items(
        stripped, cutoff=cutoff, neighbours=neighbours, genre_threshold=genre_threshold
    )
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
