"""Assembling a :class:`~simrec.data.dataset.Dataset` from a reader's columns, with the checks
every format shares (ids, rating scale, timestamps' range): the last step of each reader."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from simrec.data.dataset import (
    Catalog,
    Dataset,
    Interactions,
    RatingScale,
    file_sha256,
    item_texts,
)
from simrec.domain import DOMAINS, infer_domain
from simrec.errors import InputError

# Unix seconds that a timestamp can be (pandas' datetime64[ns] range: 1677 to 2262)
TIME_RANGE = (-9_223_372_036.0, 9_223_372_036.0)


MAX_SCALE_POINTS = 10_001  # distinct ratings a scale may have (0 to 100 in steps of 0.01)
USUAL_SCALE_POINTS = 101  # more steps than a 0 to 100 scale: counts, more likely than ratings


def build_dataset(
    *,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    catalog_ids: np.ndarray,
    titles: np.ndarray,
    genre_lists: list[list[str]],
    ratings_file: Path,
    items_file: Path | None,
    source: str,
    files: list[Path],
    years: np.ndarray | None = None,
    attributes: dict[str, np.ndarray] | None = None,
    counts: np.ndarray | None = None,
) -> Dataset:
    """Validate ids and assemble a :class:`Dataset`. Arrays of the log are (n_interactions,)
    (``counts``: the strength of each interaction, None without a count column);
    ``years`` and each of ``attributes`` are (n_catalog,) in catalog order (see
    :class:`Catalog`). The domain is inferred from ``source``
    (:func:`simrec.domain.infer_domain`)."""
    rated = ratings[np.isfinite(ratings)]
    scale = RatingScale.infer(rated) if rated.size else RatingScale(1.0, 1.0, 1.0)
    points = (scale.high - scale.low) / scale.step + 1
    if not points <= MAX_SCALE_POINTS:
        raise InputError(
            f"{ratings_file}: ratings: expected a rating scale of at most {MAX_SCALE_POINTS:,} "
            f"steps, found values from {scale.low:g} to {scale.high:g} in steps of "
            f"{scale.step:g} ({points:,.3g} steps); an outlier, or counts rather than ratings "
            f"(map such a column as something other than rating)"
        )
    if points > USUAL_SCALE_POINTS:
        logging.getLogger(__name__).warning(
            "%s: ratings run from %s to %s in steps of %s (%s steps), which no rating scale "
            "has; if they count plays, purchases or views, map the column as count "
            "(--columns ...,count=COL) and leave rating out",
            ratings_file,
            f"{scale.low:,g}",
            f"{scale.high:,g}",
            f"{scale.step:g}",
            f"{points:,.0f}",
        )
    catalog_ids = normalise_ids(catalog_ids)
    items = normalise_ids(items)
    users = normalise_ids(users)
    ids, copies = np.unique(catalog_ids, return_counts=True)
    if (copies > 1).any():
        dup = ids[copies > 1]
        raise InputError(
            f"{items_file}: duplicate item id(s): {', '.join(map(str, dup[:5]))}"
            f"{' ...' if dup.size > 5 else ''} ({dup.size} in all); expected each item once"
        )
    order = np.argsort(catalog_ids, kind="stable")
    sorted_ids = catalog_ids[order]
    pos = np.searchsorted(sorted_ids, items)
    pos_clipped = np.minimum(pos, sorted_ids.size - 1)
    known = sorted_ids[pos_clipped] == items
    if not known.all():
        unknown = np.unique(items[~known])
        raise InputError(
            f"{ratings_file}: {int((~known).sum())} rating(s) reference item id(s) not in "
            f"{items_file}: {', '.join(map(str, unknown[:5]))}{' ...' if unknown.size > 5 else ''}"
        )
    item_index = order[pos_clipped].astype(np.int32)
    user_ids, user_index = np.unique(users, return_inverse=True)
    vocab = sorted({g for gl in genre_lists for g in gl})
    gidx = {g: j for j, g in enumerate(vocab)}
    rows = np.repeat(np.arange(len(genre_lists)), [len(gl) for gl in genre_lists])
    cols = np.fromiter((gidx[g] for gl in genre_lists for g in gl), np.int64, rows.size)
    genres = sp.csr_matrix(
        (np.ones(rows.size, bool), (rows, cols)), shape=(len(genre_lists), max(len(vocab), 1))
    )
    attributes = attributes or {}
    domain = DOMAINS[infer_domain(source)]
    texts = item_texts(titles, genre_lists, attributes, domain)
    popularity = np.bincount(item_index, minlength=catalog_ids.size).astype(np.int64)
    catalog = Catalog(
        catalog_ids,
        titles.astype(object),
        vocab,
        genres,
        texts,
        popularity,
        domain=domain,
        years=years,
        attributes=attributes,
    )
    log = Interactions(
        user=user_index.astype(np.int32),
        item=item_index,
        rating=ratings.astype(np.float32),
        timestamp=timestamps.astype(np.int64),
        user_ids=user_ids,
        count=None if counts is None else np.asarray(counts, np.float32),
    )
    hashes = {str(f): file_sha256(str(f)) for f in files}
    return Dataset(catalog, log, scale, source, hashes)


def normalise_ids(ids: np.ndarray) -> np.ndarray:
    """Integer-looking ids become int64; anything else stays as str objects."""
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    s = pd.Series(arr, dtype=object).astype(str).str.strip()
    as_int = pd.to_numeric(s, errors="coerce")
    if as_int.notna().all() and (as_int == as_int.round()).all():
        return as_int.to_numpy(np.int64)
    return s.to_numpy(dtype=object)
