"""Personas derived from a seed log.

Traits follow Agent4Rec's definitions, kept continuous (percentile ranks in [0, 1]):

* activity: how many items the user interacted with;
* conformity: how close the user's ratings sit to each item's average rating (implicit data:
  how popular the consumed items are);
* diversity: the entropy of the genres the user consumed.

Each persona also has a taste vector, a rating bias, liked and disliked genres, favourite
items, a daily arrival rate, and a short written profile built from those facts, in the words
of the catalog's domain (a "shopper" who "buys", a "viewer" who "watches").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from simrec.arrays import lexsort_ints
from simrec.data.dataset import Catalog, Dataset, Interactions
from simrec.domain import Domain, and_list, article
from simrec.rng import Streams
from simrec.trust import quoted

MIN_TENURE_DAYS = 30
FAVOURITES = 3  # favourite items per persona
MIN_FAVOURITE_SHARE = 0.5  # an attribute value is a favourite on half the user's items or more


@dataclass
class Personas:
    """One row per agent. Arrays are (n_agents,) unless noted.

    source_user: int64 index of the data user the persona was derived from;
    source_user_ids: external id of that user; activity, conformity, diversity: float32 in [0, 1];
    arrival_rate: float32 P(session) per tick at neutral satisfaction; session_items: float32
    mean items the user consumed per session in the log (>= 1); rating_bias: float32 stars
    against the average; n_interactions: int64; liked_genres, disliked_genres: lists of genre
    names; favourite_items: per agent, up to FAVOURITES item indices (best rated first, ties
    the latest; without ratings the latest); profiles: the written profile per agent.
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
    favourite_items: list[list[int]]
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
            pick(self.favourite_items),
            pick(self.profiles),
        )


def _percentile(x: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share their mean rank)."""
    if x.size <= 1:
        return np.full(x.shape, 0.5, np.float32)
    return ((rankdata(x) - 1) / (x.size - 1)).astype(np.float32)


def derive_personas(data: Dataset, rating_bias: np.ndarray) -> Personas:
    """One persona per user of ``data``. ``rating_bias``: (n_users,) fitted user rating bias."""
    return with_profiles(data, persona_traits(data), rating_bias)


def persona_traits(data: Dataset) -> Personas:
    """Every field of the personas of ``data``'s users that the rating model does not decide:
    ``rating_bias`` is zero and ``profiles`` empty until :func:`with_profiles`. The fitting
    code derives these beside the rating model (they are independent fits of the log)."""
    log, cat = data.interactions, data.catalog
    n_users = log.n_users
    counts = np.bincount(log.user, minlength=n_users).astype(np.int64)
    g = cat.genres.astype(np.float32)
    user_genre = _user_genre(log.user, log.item, n_users, g)
    liked, disliked = _genre_preferences(data, user_genre)
    return Personas(
        np.arange(n_users, dtype=np.int64),
        log.user_ids,
        _percentile(np.log1p(counts)),
        _conformity(data),
        _percentile(_entropy(user_genre)) if g.nnz else np.full(n_users, 0.5, np.float32),
        _arrival_rate(log),
        mean_session_items(log),
        np.zeros(n_users, np.float32),
        counts,
        liked,
        disliked,
        favourite_items(log, n_items=cat.n_items),
        [],
    )


def with_profiles(data: Dataset, traits: Personas, rating_bias: np.ndarray) -> Personas:
    """``traits`` (:func:`persona_traits` of ``data``) with the fitted ``rating_bias``
    (n_users,) and each persona's written profile."""
    log, cat = data.interactions, data.catalog
    has_ratings = bool(np.isfinite(log.rating).any())
    named = cat.has_titles
    liked_values = _favourite_values(log, cat)
    t = traits
    profiles = [
        write_profile(
            cat.domain,
            n=int(t.n_interactions[u]),
            arrival=float(t.arrival_rate[u]),
            bias=float(rating_bias[u]) if has_ratings else None,
            conformity=float(t.conformity[u]),
            diversity=float(t.diversity[u]),
            liked=t.liked_genres[u],
            disliked=t.disliked_genres[u],
            favourites=[str(cat.display_titles[i]) for i in t.favourite_items[u]] if named else [],
            favourite_values=liked_values[u],
        )
        for u in range(len(t))
    ]
    return dataclasses.replace(t, rating_bias=rating_bias.astype(np.float32), profiles=profiles)


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
        every = bool(rated.all())  # no copies of the log when every row is rated
        u, i = (log.user, log.item) if every else (log.user[rated], log.item[rated])
        r = (log.rating if every else log.rating[rated]).astype(np.float64)
        user_mean = np.bincount(u, r, n_users) / np.maximum(np.bincount(u, minlength=n_users), 1)
        genres = data.catalog.genres.astype(np.float64)
        x = sp.csr_matrix((r - user_mean[u], (u, i)), shape=(n_users, data.catalog.n_items))
        dev_sum = np.asarray((x @ genres).todense())
        # rated rows per user and genre: user_genre itself when every row is rated
        n = user_genre.astype(np.float64) if every else _user_genre(u, i, n_users, genres)
        mean_dev = dev_sum / np.maximum(n, 1)
        score = n * (1.0 + mean_dev)
        disliked_mask = (n >= 2) & (mean_dev <= -0.5)
    k = min(3, score.shape[1])  # a catalog may have fewer than three genres
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    rows = np.arange(n_users)[:, None]
    keep = (score[rows, top] > 0) & ~disliked_mask[rows, top]
    # each user's first three disliked genres, in the catalog's order
    first = np.argsort(~disliked_mask, axis=1, kind="stable")[:, :k]
    n_disliked = np.minimum(disliked_mask.sum(axis=1), k)
    return (
        _label_lists(top, keep, names),
        _label_lists(first, np.arange(k) < n_disliked[:, None], names),
    )


def _label_lists(columns: np.ndarray, keep: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """Per row of ``columns`` (n, k) int, the ``names`` of its columns where ``keep`` (n, k)
    is true, in order. Rows repeat (a population has few distinct top-three genres), so each
    distinct row is spelled once and copied.

    >>> names = np.array(["Drama", "Comedy", "War"], dtype=object)
    >>> _label_lists(np.array([[2, 0, 1], [2, 0, 1], [1, 0, 2]]),
    ...     np.array([[True, False, True], [True, True, True], [False, False, False]]), names)
    [['War', 'Comedy'], ['War', 'Drama', 'Comedy'], []]
    """
    shape = (names.size + 1,) * columns.shape[1]  # a column, or 0 for one not kept
    row_code = np.ravel_multi_index(tuple(np.where(keep, columns + 1, 0).T), shape)
    inverse, distinct = pd.factorize(row_code)  # hashing: no sort of the rows
    spelled = [
        [str(names[j - 1]) for j in row if j > 0]
        for row in np.array(np.unravel_index(distinct, shape)).T.tolist()
    ]
    return [list(spelled[c]) for c in inverse.tolist()]


def _user_genre(users: np.ndarray, items: np.ndarray, n_users: int, genres) -> np.ndarray:
    """(n_users, n_genres) float32: rows of each user per genre (an item counts once per
    genre it has), from the rows' users and items (m,) and the (n_items, n_genres) genres."""
    m = sp.csr_matrix(
        (np.ones(users.size, np.float32), (users, items)), shape=(n_users, genres.shape[0])
    )
    out = m @ genres.astype(np.float32)
    return np.asarray(out.todense()) if sp.issparse(out) else np.asarray(out)


_OPENING_END = "visits a month) "


def _opening(domain: Domain, n: int, arrival: float) -> str:
    """A profile's first words: how often the user comes and how much they consumed."""
    kind = "devoted" if arrival > 0.2 else "regular" if arrival > 0.05 else "occasional"
    noun = domain.item if n == 1 else domain.items
    return (
        f"{article(kind).capitalize()} {kind} {domain.user} ({n} {noun} in the log, about "
        f"{arrival * 30:.1f} {_OPENING_END}"
    )


def reopened(text: str, domain: Domain, n: int, arrival: float) -> str:
    """A profile (:func:`write_profile`) whose first words say ``arrival`` visits per day.

    >>> from simrec.domain import DOMAINS
    >>> text = write_profile(DOMAINS["music"], n=3, arrival=1 / 30, bias=None,
    ...     conformity=0.5, diversity=0.5, liked=[], disliked=[])
    >>> text[:63]
    'An occasional listener (3 tracks in the log, about 1.0 visits a'
    >>> reopened(text, DOMAINS["music"], 3, 0.5)[:60]
    'A devoted listener (3 tracks in the log, about 15.0 visits a'
    """
    if _OPENING_END not in text:
        return text
    return _opening(domain, n, arrival) + text.split(_OPENING_END, 1)[1]


def with_visit_rate(personas: Personas, rate: float, domain: Domain) -> Personas:
    """``personas`` with every agent's visit chance per tick set to ``rate`` (not measured:
    ``population.visit_rate``), and their profiles saying so."""
    profiles = [
        reopened(text, domain, int(n), rate)
        for text, n in zip(personas.profiles, personas.n_interactions.tolist(), strict=True)
    ]
    arrival = np.full(len(personas), rate, np.float32)
    return dataclasses.replace(personas, arrival_rate=arrival, profiles=profiles)


def write_profile(
    domain: Domain,
    *,
    n: int,
    arrival: float,
    bias: float | None,
    conformity: float,
    diversity: float,
    liked: list[str],
    disliked: list[str],
    favourites: list[str] = (),
    favourite_values: list[tuple[str, str]] = (),
) -> str:
    r"""One persona's written profile, in ``domain``'s words. ``bias``: rating bias in points
    against the average (None: the data has no ratings); ``favourites``: display titles;
    ``favourite_values``: (attribute name, value) pairs the user keeps coming back to.

    >>> from simrec.domain import DOMAINS
    >>> text = write_profile(DOMAINS["products"], n=12, arrival=0.01, bias=-0.04,
    ...     conformity=0.5, diversity=0.5, liked=[], disliked=[],
    ...     favourite_values=[("brand", "Acme")])
    >>> print(text.replace(". ", ".\n").replace(") ", ")\n"))
    An occasional shopper (12 products in the log, about 0.3 visits a month)
    with no clear favourite category.
    An even-handed rater (about average).
    Partly swayed by what is popular and explores a little.
    Favourite brand: "Acme".
    """
    text = _opening(domain, n, arrival)
    text += (
        f"who mostly {domain.verb_3rd} {and_list(liked)}."
        if liked
        else f"with no clear favourite {domain.category}."
    )
    if bias is not None:
        mood = "generous" if bias > 0.2 else "harsh" if bias < -0.2 else "even-handed"
        against = "about average" if abs(bias) < 0.05 else f"{bias:+.1f} points against the average"
        text += f" {article(mood).capitalize()} {mood} rater ({against})."
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
        else f" and sticks to a few {domain.categories}."
        if diversity < 0.33
        else " and explores a little."
    )
    if disliked:
        text += f" Dislikes {and_list(disliked)}."
    if favourites:
        text += f" Favourites: {and_list([quoted(t) for t in favourites])}."
    for name, value in favourite_values:
        text += f" Favourite {name}: {quoted(value)}."
    return text


def favourite_items(
    log: Interactions, n: int = FAVOURITES, n_items: int | None = None
) -> list[list[int]]:
    """Per user of ``log``, up to ``n`` item indices: the highest rated (ties: the latest
    first), then, for users with fewer rated items, the latest unrated ones; each item once.
    ``n_items``: the catalog's size, whose interaction matrix (:meth:`Interactions.matrix`,
    cached) tells whether any item was consumed twice; default: the largest index + 1.

    >>> from simrec.data.dataset import Interactions
    >>> log = Interactions(np.array([0, 0, 0, 1], np.int32), np.array([4, 5, 4, 6]),
    ...     np.array([3, 5, np.nan, np.nan], np.float32), np.array([1, 2, 3, 4]),
    ...     np.array(["a", "b"], object))
    >>> favourite_items(log)
    [[5, 4], [6]]
    >>> favourite_items(log.take(np.array([3])), n_items=7)  # user 0 has no rows left
    [[], [6]]
    """
    rated = np.isfinite(log.rating)
    key = np.where(rated, -log.rating.astype(np.float64), np.inf)  # rated first, best first
    # the same order, as integers; a log has few distinct ratings, so they are found by
    # hashing rather than by sorting every row
    grade = np.searchsorted(np.sort(pd.unique(key)), key)
    order = lexsort_ints((-log.timestamp, grade, log.user))
    user, item = log.user[order].astype(np.int64), log.item[order].astype(np.int64)
    n_items = n_items or (int(item.max()) + 1 if item.size else 1)
    if log.matrix(n_items).nnz < len(log):  # an item consumed twice: keep its best row
        pair = user * n_items + item
        first = np.sort(np.unique(pair, return_index=True)[1])
        user, item = user[first], item[first]
    counts = np.bincount(user, minlength=log.n_users)
    ends = np.cumsum(counts)
    rank = np.arange(user.size) - np.repeat(ends - counts, counts)
    item = item[rank < n].tolist()
    ends = np.cumsum(np.minimum(counts, n)).tolist()
    return [item[a:b] for a, b in zip([0, *ends][: len(ends)], ends, strict=True)]


def _favourite_values(log: Interactions, cat: Catalog) -> list[list[tuple[str, str]]]:
    """Per user, the (attribute, value) pairs of the catalog's text attributes (brand, author,
    ...) found on at least MIN_FAVOURITE_SHARE of the user's items (3 or more of them), when
    the value is rarer than that in the catalog (a value nearly every item has says nothing)."""
    out: list[list[tuple[str, str]]] = [[] for _ in range(log.n_users)]
    counts = np.bincount(log.user, minlength=log.n_users)
    for name, values in cat.attributes.items():
        if values.dtype != object or (values.size and not isinstance(values[0], str)):
            continue  # numbers (price) and lists (token_seq) are not one value to favour
        codes, uniques = _codes(values)
        if uniques.size < 2:
            continue
        known = codes[log.item] >= 0
        mat = sp.csr_matrix(
            (np.ones(int(known.sum())), (log.user[known], codes[log.item][known])),
            shape=(log.n_users, uniques.size),
        )
        mat.sum_duplicates()
        top = np.asarray(mat.argmax(axis=1)).ravel()
        top_count = np.asarray(mat.max(axis=1).todense()).ravel()
        catalog_share = np.bincount(codes[codes >= 0], minlength=uniques.size) / codes.size
        good = (
            (top_count >= 3)
            & (top_count >= MIN_FAVOURITE_SHARE * np.maximum(counts, 1))
            & (catalog_share[top] < MIN_FAVOURITE_SHARE)
        )
        label = name.replace("_", " ")
        for u in np.flatnonzero(good).tolist():
            out[u].append((label, str(uniques[top[u]])))
    return out


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int64 codes of a text attribute (-1: empty) and its distinct values."""
    text = np.array([v if isinstance(v, str) else "" for v in values], dtype=object)
    uniques, codes = np.unique(text, return_inverse=True)
    if uniques.size and uniques[0] == "":
        return codes.astype(np.int64) - 1, uniques[1:]
    return codes.astype(np.int64), uniques
