"""A synthetic world for the demo and the benchmarks: latent tastes with genre structure,
power-law popularity, generated titles, and a seed log sampled from those tastes.

The world goes through the same calibration as real data: the simulator never peeks at the
generating tastes, it fits personas from the seed log like it would from MovieLens.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from simrec.arrays import lexsort_ints, map_in_threads, rowwise_dot
from simrec.config import SyntheticWorldConfig
from simrec.data.dataset import (
    Catalog,
    Dataset,
    Interactions,
    RatingScale,
    WorldTruth,
    years_from_titles,
)
from simrec.data.loaders import ML100K_GENRES
from simrec.domain import DOMAINS
from simrec.rng import Streams

# MovieLens genre names (as ml-latest spells them), without ml-100k's "unknown"
GENRES = [g.replace("'s", "") for g in ML100K_GENRES[1:]]
_ADJ = [
    "Silent",
    "Crimson",
    "Last",
    "Hidden",
    "Broken",
    "Golden",
    "Midnight",
    "Lost",
    "Wild",
    "Frozen",
    "Electric",
    "Quiet",
    "Savage",
    "Distant",
    "Secret",
    "Burning",
    "Hollow",
    "Iron",
]
_NOUN = [
    "Harbor",
    "Kingdom",
    "Signal",
    "Garden",
    "Frontier",
    "Mirror",
    "Empire",
    "River",
    "Station",
    "Orchard",
    "Machine",
    "Carnival",
    "Horizon",
    "Letter",
    "Summer",
    "Witness",
    "Lighthouse",
    "Passage",
]
_TASTE_SCALE = 2.5  # weight of taste against log popularity in the log's choice model
_CHUNK = 4096  # users per sampling chunk; fixed so the world never depends on batch sizes
_KEY_BLOCKS = 256  # blocks of items whose maxima bound each user's best keys (_best_keys)


def make_world(cfg: SyntheticWorldConfig, seed: int) -> Dataset:
    """Generate a catalog and a seed log (ratings 1-5) from latent tastes."""
    streams = Streams(seed)
    g = streams.generator("world")
    n_g = cfg.genres
    names = (
        GENRES[:n_g]
        if n_g <= len(GENRES)
        else GENRES + [f"Genre-{j}" for j in range(len(GENRES), n_g)]
    )
    centroids = g.normal(size=(n_g, cfg.dim)) / np.sqrt(cfg.dim) * 1.6
    genre_weight = 1.0 / np.arange(1, n_g + 1) ** 0.7
    genre_weight /= genre_weight.sum()

    item_genres, item_vecs = _items(g, cfg, centroids, genre_weight)
    user_vecs = _users(g, cfg, centroids, genre_weight)
    pop_rank = g.permutation(cfg.items)
    log_pop = -cfg.popularity_exponent * np.log1p(pop_rank).astype(np.float64)
    item_bias = g.normal(0, 0.35, cfg.items) + 0.15 * (log_pop - log_pop.mean())
    user_bias = g.normal(0, 0.35, cfg.users)
    activity = np.exp(g.normal(0, 0.8, cfg.users))
    n_per_user = np.clip(
        np.round(activity / activity.mean() * cfg.interactions_per_user), 5, max(5, cfg.items // 3)
    ).astype(np.int64)

    users, items = _sample_log(streams, user_vecs, item_vecs, log_pop, n_per_user)
    affinity = rowwise_dot(user_vecs, users, item_vecs, items)
    affinity -= affinity.mean()
    affinity *= 0.8
    affinity += 3.55 + user_bias[users] + item_bias[items]
    affinity += 0.8 * g.standard_normal(users.size)
    scale = RatingScale(1.0, 5.0, 1.0)
    ratings = scale.quantise(affinity).astype(np.float32)
    del affinity
    timestamps = _timestamps(g, users, n_per_user, cfg.log_days)

    titles = _titles(g, cfg.items)
    rows = np.repeat(np.arange(cfg.items), [len(x) for x in item_genres])
    cols = np.concatenate(item_genres)
    genres = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(cfg.items, n_g))
    genre_lists = [[names[j] for j in gl] for gl in item_genres]
    text = np.array(
        [f"{t}. Genres: {', '.join(gl)}." for t, gl in zip(titles, genre_lists, strict=True)],
        dtype=object,
    )
    catalog = Catalog(
        item_ids=np.arange(1, cfg.items + 1, dtype=np.int64),
        titles=titles,
        genre_names=names,
        genres=genres,
        text=text,
        popularity=np.bincount(items, minlength=cfg.items).astype(np.int64),
        domain=DOMAINS["movies"],
        years=years_from_titles(titles),
    )
    log = Interactions(
        users.astype(np.int32, copy=False),
        items.astype(np.int32, copy=False),
        ratings,
        timestamps,
        np.arange(1, cfg.users + 1, dtype=np.int64),
    )
    truth = WorldTruth(user_vecs, item_vecs, log_pop, _TASTE_SCALE)
    return Dataset(catalog, log, scale, source="synthetic", truth=truth)


def _items(
    g: np.random.Generator,
    cfg: SyntheticWorldConfig,
    centroids: np.ndarray,
    genre_weight: np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray]:
    n_genres = np.minimum(g.choice([1, 2, 3], size=cfg.items, p=[0.45, 0.4, 0.15]), cfg.genres)
    item_genres = [
        np.sort(g.choice(cfg.genres, size=k, replace=False, p=genre_weight)) for k in n_genres
    ]
    vecs = np.stack([centroids[gl].mean(axis=0) for gl in item_genres])
    vecs += g.normal(0, 0.5 / np.sqrt(cfg.dim), size=vecs.shape)
    return item_genres, vecs


def _users(
    g: np.random.Generator,
    cfg: SyntheticWorldConfig,
    centroids: np.ndarray,
    genre_weight: np.ndarray,
) -> np.ndarray:
    k = min(3, cfg.genres)
    # k genres per user without replacement, weighted: Gumbel top-k over log weights
    keys = np.log(genre_weight)[None, :] + g.gumbel(size=(cfg.users, cfg.genres))
    favourite = np.argsort(-keys, axis=1)[:, :k]
    mix = g.dirichlet(np.ones(k), size=cfg.users)
    vecs = np.einsum("uk,ukd->ud", mix, centroids[favourite])
    return vecs + g.normal(0, 0.6 / np.sqrt(cfg.dim), size=vecs.shape)


def _sample_log(
    streams: Streams,
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    log_pop: np.ndarray,
    n_per_user: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's items: n draws without replacement, P(item) proportional to
    exp(2.5 * taste . item + log popularity): the top-n of ``utility - log(Exp(1))`` keys."""
    n_users = user_vecs.shape[0]
    items32 = item_vecs.T.astype(np.float32)
    pop32 = log_pop.astype(np.float32)[None, :]

    def chunk(start: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(start, min(start + _CHUNK, n_users))
        util = (_TASTE_SCALE * user_vecs[idx]).astype(np.float32) @ items32
        util += pop32
        # a fixed chunk size keeps the draws independent of anything the user configures
        e = streams.generator("world-log", start).standard_exponential(util.shape, np.float32)
        with np.errstate(divide="ignore"):
            np.log(e, out=e)
        util -= e
        del e
        users, items = _best_keys(util, n_per_user[idx])
        return idx[users].astype(np.int32), items.astype(np.int32)

    # each chunk has its own generator, so chunks run on threads, joined in order: the same
    # world whatever the threads
    parts = map_in_threads(chunk, range(0, n_users, _CHUNK))
    return np.concatenate([u for u, _ in parts]), np.concatenate([i for _, i in parts])


def _best_keys(keys: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n`` largest keys, largest first, equal keys in column order: keys (r, m)
    float32, n (r,) -> (rows, columns) of the picks, row by row.

    Only keys at or above a threshold per row are sorted. With ``b`` block maxima per row
    (``_KEY_BLOCKS`` blocks of adjacent columns), the row's ``n``-th largest block maximum
    has ``n`` keys at or above it, so the row's ``n`` best are there too; a row whose ``n``
    is over ``b`` takes its exact ``n``-th largest key instead."""
    r, m = keys.shape
    b = min(_KEY_BLOCKS, m)
    w = m // b
    block_max = np.sort(keys[:, : b * w].reshape(r, b, w).max(axis=2), axis=1)
    threshold = block_max[np.arange(r), np.maximum(b - n, 0)]
    heavy = np.flatnonzero(n > b)
    for kth in np.unique(n[heavy]):
        rows = heavy[n[heavy] == kth]
        threshold[rows] = np.partition(keys[rows], m - kth, axis=1)[:, m - kth]
    flat = np.flatnonzero(keys >= threshold[:, None])  # row by row, columns ascending
    rows, cols = np.divmod(flat, m)
    order = _descending_within_rows(rows, cols, keys.ravel()[flat])
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, np.arange(r))[rows]
    keep = rank < n[rows]
    return rows[keep], cols[keep]


def _descending_within_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The order of (rows, cols, values) (m,) by row, then value descending, then column:
    the float32 values' bits as integers in the values' order, then one packed integer sort
    (:func:`~simrec.arrays.lexsort_ints`). Pairs (row, column) are distinct."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 as +0.0
    # the IEEE bits in ascending order of the value: negatives flipped, positives marked
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.int64)
    return lexsort_ints((cols, -ascending, rows))


def _timestamps(
    g: np.random.Generator, users: np.ndarray, n_per_user: np.ndarray, days: int
) -> np.ndarray:
    """Interactions in bursts: a user's activity clusters on about n/4 session days."""
    start = 1_700_000_000
    jitter = g.integers(0, 3, users.size)
    u = g.random(users.size, np.float32)
    sessions = np.maximum(1, n_per_user[users] // 4)
    day = (np.floor(u * sessions).astype(np.int64) * days) // sessions + jitter
    return start + day * 86400 + (u * 3600).astype(np.int64)


def _titles(g: np.random.Generator, n: int) -> np.ndarray:
    adj = g.integers(0, len(_ADJ), n)
    noun = g.integers(0, len(_NOUN), n)
    year = g.integers(1950, 2025, n)
    sequel = g.random(n) < 0.12
    return np.array(
        [
            f"The {_ADJ[a]} {_NOUN[b]}{' II' if s else ''} ({y})"
            for a, b, s, y in zip(adj, noun, sequel, year, strict=True)
        ],
        dtype=object,
    )
