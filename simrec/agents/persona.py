"""Personas derived from a seed log.

Traits follow Agent4Rec's definitions, kept continuous (percentile ranks in [0, 1]):

* activity: how many items the user interacted with;
* conformity: how close the user's ratings sit to each item's average rating (implicit data:
  how popular the consumed items are);
* diversity: the entropy of the genres the user consumed.

Each persona also has a taste vector, a rating bias, liked and disliked genres, a daily arrival
rate, and a short written profile built from those facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from simrec.data.dataset import Dataset, Interactions
from simrec.rng import Streams

MIN_TENURE_DAYS = 30


@dataclass
class Personas:
    """One row per agent. Arrays are (n_agents,) unless noted.

    source_user: int64 index of the data user the persona was derived from;
    source_user_ids: external id of that user; activity, conformity, diversity: float32 in [0, 1];
    arrival_rate: float32 P(session) per tick at neutral satisfaction; session_items: float32
    mean items the user consumed per session in the log (>= 1); rating_bias: float32 stars
    against the average; n_interactions: int64; liked_genres, disliked_genres: lists of genre
    names; profiles: the written profile per agent.
    """

    source_user: np.ndarray
    source_user_ids: np.ndarray
    activity: np.ndarray
    conformity: np.ndarray
    diversity: np.ndarray
    arrival_rate: np.ndarray
    session_items: np.ndarray
    rating_bias: np.ndarray
    n_interactions: np.ndarray
    liked_genres: list[list[str]]
    disliked_genres: list[list[str]]
    profiles: list[str]

    def __len__(self) -> int:
        return int(self.source_user.shape[0])

    def take(self, idx: np.ndarray) -> Personas:
        """Personas of rows ``idx`` (used to sample or clone a population)."""
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return Personas(
            self.source_user[idx],
            self.source_user_ids[idx],
            self.activity[idx],
            self.conformity[idx],
            self.diversity[idx],
            self.arrival_rate[idx],
            self.session_items[idx],
            self.rating_bias[idx],
            self.n_interactions[idx],
            pick(self.liked_genres),
            pick(self.disliked_genres),
            pick(self.profiles),
        )


def _percentile(x: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share their mean rank)."""
    if x.size <= 1:
        return np.full(x.shape, 0.5, np.float32)
    return ((rankdata(x) - 1) / (x.size - 1)).astype(np.float32)


def derive_personas(data: Dataset, rating_bias: np.ndarray) -> Personas:
    """One persona per user of ``data``. ``rating_bias``: (n_users,) fitted user rating bias."""
    log, cat = data.interactions, data.catalog
    n_users = log.n_users
    counts = np.bincount(log.user, minlength=n_users).astype(np.int64)
    activity = _percentile(np.log1p(counts))
    conformity = _conformity(data)
    g = cat.genres.astype(np.float32)
    user_genre = (
        sp.csr_matrix(
            (np.ones(len(log), np.float32), (log.user, log.item)), shape=(n_users, cat.n_items)
        )
        @ g
    )
    user_genre = (
        np.asarray(user_genre.todense()) if sp.issparse(user_genre) else np.asarray(user_genre)
    )
    diversity = _percentile(_entropy(user_genre)) if g.nnz else np.full(n_users, 0.5, np.float32)
    arrival = _arrival_rate(log)
    session_items = mean_session_items(log)
    liked, disliked = _genre_preferences(data, user_genre)
    has_ratings = bool(np.isfinite(log.rating).any())
    profiles = [
        _profile(
            int(counts[u]),
            float(arrival[u]),
            float(rating_bias[u]),
            float(conformity[u]),
            float(diversity[u]),
            liked[u],
            disliked[u],
            has_ratings,
        )
        for u in range(n_users)
    ]
    return Personas(
        np.arange(n_users, dtype=np.int64),
        log.user_ids,
        activity,
        conformity,
        diversity,
        arrival,
        session_items,
        rating_bias.astype(np.float32),
        counts,
        liked,
        disliked,
        profiles,
    )


def sample_population(personas: Personas, n_agents: int | None, streams: Streams) -> Personas:
    """``n_agents`` personas: all of them (None), a sample without replacement, or clones."""
    n = len(personas)
    if n_agents is None or n_agents == n:
        return personas
    g = streams.generator("population")
    idx = (
        np.sort(g.choice(n, size=n_agents, replace=False))
        if n_agents < n
        else np.concatenate([np.arange(n), np.sort(g.integers(0, n, n_agents - n))])
    )
    return personas.take(idx)


def _conformity(data: Dataset) -> np.ndarray:
    log, n_users = data.interactions, data.interactions.n_users
    rated = np.isfinite(log.rating)
    if rated.sum() >= 2:
        u, i, r = log.user[rated], log.item[rated], log.rating[rated].astype(np.float64)
        n_i = np.bincount(i, minlength=data.catalog.n_items)
        item_mean = np.bincount(i, r, data.catalog.n_items) / np.maximum(n_i, 1)
        dev = np.bincount(u, (r - item_mean[i]) ** 2, n_users) / np.maximum(
            np.bincount(u, minlength=n_users), 1
        )
        return (1.0 - _percentile(dev)).astype(np.float32)
    logpop = np.log1p(data.catalog.popularity[log.item]).astype(np.float64)
    mean_pop = np.bincount(log.user, logpop, n_users) / np.maximum(
        np.bincount(log.user, minlength=n_users), 1
    )
    return _percentile(mean_pop)


def _entropy(counts: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy (nats) of non-negative counts (n, m) -> (n,)."""
    total = counts.sum(axis=1, keepdims=True)
    p = counts / np.maximum(total, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def _arrival_rate(log: Interactions) -> np.ndarray:
    """Sessions (bursts separated by 30 minutes without interactions) per day of the user's
    own tenure (first to last interaction, at least ``MIN_TENURE_DAYS``), clipped to
    [0.01, 0.95].

    The user's own tenure, not the whole log's span: MovieLens-style logs span decades while
    each user is active for weeks, and a simulated user is one who is using the service now.
    """
    if len(log) == 0:
        return np.full(log.n_users, 0.01, np.float32)
    rate = log.sessions().rate_per_day(MIN_TENURE_DAYS)
    return np.clip(rate, 0.01, 0.95).astype(np.float32)


def mean_session_items(log: Interactions) -> np.ndarray:
    """(n_users,) float32: the mean number of interactions in the user's sessions (bursts
    separated by 30 minutes without interactions), at least 1; 1 for a user with none."""
    if len(log) == 0:
        return np.ones(log.n_users, np.float32)
    s = log.sessions()
    mean = np.bincount(s.user, s.size, log.n_users) / np.maximum(s.per_user, 1)
    return np.maximum(mean, 1.0).astype(np.float32)


def _genre_preferences(
    data: Dataset, user_genre: np.ndarray
) -> tuple[list[list[str]], list[list[str]]]:
    """Liked: most-consumed genres (rated above the user's mean when ratings exist); disliked:
    genres rated clearly below the user's mean."""
    names = np.asarray(data.catalog.genre_names, dtype=object)
    n_users = data.interactions.n_users
    if data.catalog.genres.nnz == 0:
        return [[] for _ in range(n_users)], [[] for _ in range(n_users)]
    log = data.interactions
    rated = np.isfinite(log.rating)
    score = user_genre.copy()
    disliked_mask = np.zeros_like(score, bool)
    if rated.any():
        u, i, r = log.user[rated], log.item[rated], log.rating[rated].astype(np.float64)
        user_mean = np.bincount(u, r, n_users) / np.maximum(np.bincount(u, minlength=n_users), 1)
        x = sp.csr_matrix((r - user_mean[u], (u, i)), shape=(n_users, data.catalog.n_items))
        dev_sum = np.asarray((x @ data.catalog.genres.astype(np.float64)).todense())
        n = np.asarray(
            (
                sp.csr_matrix((np.ones(u.size), (u, i)), shape=x.shape)
                @ data.catalog.genres.astype(np.float64)
            ).todense()
        )
        mean_dev = dev_sum / np.maximum(n, 1)
        score = n * (1.0 + mean_dev)
        disliked_mask = (n >= 2) & (mean_dev <= -0.5)
    top = np.argsort(-score, axis=1, kind="stable")[:, :3]
    liked = [
        [names[j] for j in row if score[u, j] > 0 and not disliked_mask[u, j]]
        for u, row in enumerate(top)
    ]
    disliked: list[list[str]] = [[] for _ in range(n_users)]
    for u in np.flatnonzero(disliked_mask.any(axis=1)):
        disliked[u] = list(names[np.flatnonzero(disliked_mask[u])][:3])
    return liked, disliked


def _profile(
    n: int,
    arrival: float,
    bias: float,
    conformity: float,
    diversity: float,
    liked: list[str],
    disliked: list[str],
    has_ratings: bool,
) -> str:
    kind = "A devoted" if arrival > 0.2 else "A regular" if arrival > 0.05 else "An occasional"
    parts = [f"{kind} viewer ({n} titles in the log, about {arrival * 30:.1f} visits a month)"]
    parts.append(
        f"who mostly watches {', '.join(liked)}" if liked else "with no clear favourite genre"
    )
    text = " ".join(parts) + "."
    if has_ratings:
        mood = "generous" if bias > 0.2 else "harsh" if bias < -0.2 else "even-handed"
        text += f" A {mood} rater ({bias:+.1f} stars against the average)."
    text += (
        " Follows the crowd"
        if conformity > 0.66
        else " Has independent tastes"
        if conformity < 0.33
        else " Partly swayed by what is popular"
    )
    text += (
        " and explores widely."
        if diversity > 0.66
        else " and sticks to a few genres."
        if diversity < 0.33
        else " and explores a little."
    )
    if disliked:
        text += f" Dislikes {', '.join(disliked)}."
    return text
