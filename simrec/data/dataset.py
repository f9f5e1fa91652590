"""In-memory data: the item catalog, the interaction log and the rating scale.

Users and items are addressed internally by dense indices ``0..n-1``; the external ids of the
source data are kept beside them (``Catalog.item_ids``, ``Interactions.user_ids``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from simrec.arrays import lexsort_ints, lexsorted_ints
from simrec.domain import DOMAINS, Domain
from simrec.rng import Streams

if TYPE_CHECKING:
    from simrec.data.knowledge import ItemKnowledge

_TRAILING_ARTICLE = re.compile(
    r"^(?P<name>.+?), (?P<article>The|A|An|Les|La|Le|L'|Il|Lo|Das|Der|Die|El|Los|Las|Det|Den)"
    r"(?P<rest>(\s*\(.*\))?)$"
)


def display_title(title: str) -> str:
    """A title as people write it: MovieLens's trailing article moves to the front (the
    catalog's own title is never changed).

    >>> display_title("Empire Strikes Back, The (1980)"), display_title("Promesse, La (1996)")
    ('The Empire Strikes Back (1980)', 'La Promesse (1996)')
    >>> display_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    'The City of Lost Children (Cité des enfants perdus, La) (1995)'
    >>> display_title("Toy Story (1995)")
    'Toy Story (1995)'
    """
    m = _TRAILING_ARTICLE.match(title)
    if m is None:
        return title
    article = m["article"]
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{m['name']}{m['rest']}"


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")


def years_from_titles(titles) -> np.ndarray:
    """(n,) float64: the year a title ends with in parentheses (MovieLens writes the release
    year there), NaN where none.

    >>> years_from_titles(["Toy Story (1995)", "Heat"]).tolist()
    [1995.0, nan]
    """
    return _years(titles, _YEAR_IN_TITLE)


def years_from_dates(values) -> np.ndarray:
    """(n,) float64: the year in each value of a date or year field ("1995", "1995.0",
    "01-Jan-1995", "2004-05-12"), NaN where there is none.

    >>> years_from_dates(["1995", "2004-05-12", "1999.0", "", "n/a"]).tolist()
    [1995.0, 2004.0, 1999.0, nan, nan]
    """
    return _years(values, _YEAR)


def _years(values, pattern: re.Pattern) -> np.ndarray:
    """(n,) float64: the first group of ``pattern`` in each value, NaN where it is absent."""
    found = (pattern.search(str(v)) for v in values)
    return np.array([float(m.group(1)) if m else np.nan for m in found], np.float64)


def item_texts(titles, genre_lists, attributes: dict, domain: Domain) -> np.ndarray:
    """(n,) object: one short description per item, for content features and prompts: the
    title, the categories under the domain's word for them, then each attribute field
    (``Brand: Acme.``); a movie reads ``Heat (1995). Genres: Action, Crime.``."""
    label = domain.categories.capitalize()
    names = [(k, k.replace("_", " ").capitalize()) for k in attributes]
    out = np.empty(len(titles), dtype=object)
    for i, (t, gl) in enumerate(zip(titles, genre_lists, strict=True)):
        parts = [f"{t}. {label}: {', '.join(gl) if gl else 'none listed'}."]
        for key, name in names:
            value = attribute_text(attributes[key][i])
            if value:
                parts.append(f"{name}: {value}.")
        out[i] = " ".join(parts)
    return out


def attribute_text(value) -> str:
    """An attribute value as text: a list joined with commas, a number without trailing
    zeros, nothing for a missing value.

    >>> attribute_text(["Beauty", "Hair Care"]), attribute_text(19.5), attribute_text(float("nan"))
    ('Beauty, Hair Care', '19.5', '')
    """
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if str(v))
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:g}"
    return "" if value is None else str(value)


SESSION_GAP_SECONDS = 1800  # a new session after 30 minutes without interactions


@dataclass(frozen=True)
class RatingScale:
    """Ratings live on ``low, low + step, ..., high``.

    >>> RatingScale(1.0, 5.0, 1.0).quantise(np.array([0.2, 3.4, 3.6, 9.0]))
    array([1., 3., 4., 5.])
    """

    low: float
    high: float
    step: float

    def quantise(self, x: np.ndarray) -> np.ndarray:
        """Round ``x`` (any shape) to the nearest rating on the scale."""
        q = self.low + np.round((np.asarray(x) - self.low) / self.step) * self.step
        return np.clip(q, self.low, self.high)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Ratings (any shape) mapped to [0, 1]; a one-point scale (implicit data) gives 1.

        >>> RatingScale(1.0, 5.0, 1.0).normalise(np.array([1.0, 3.0, 5.0])).tolist()
        [0.0, 0.5, 1.0]
        """
        if self.high <= self.low:
            return np.ones(np.shape(x))
        return (np.asarray(x, np.float64) - self.low) / (self.high - self.low)

    @classmethod
    def infer(cls, ratings: np.ndarray) -> RatingScale:
        """The scale of observed ratings (the smallest gap between distinct values is the step)."""
        values = np.unique(np.asarray(ratings, dtype=np.float64))
        if values.size == 0:
            return cls(1.0, 5.0, 1.0)
        gaps = np.diff(values)
        step = float(np.round(gaps.min(), 6)) if gaps.size else 1.0
        return cls(float(values[0]), float(values[-1]), step)


@dataclass
class Catalog:
    """Items. Arrays are indexed by item index.

    item_ids: (n_items,) external ids (int64 or object of str)
    titles: (n_items,) object of str
    genre_names: the genre vocabulary, length n_genres
    genres: (n_items, n_genres) bool CSR matrix
    text: (n_items,) object of str, a short description used by content features and prompts
    popularity: (n_items,) int64, interactions per item in the seed log
    knowledge: knowledge-graph facts per item, when the data has a graph
    (:class:`~simrec.data.knowledge.ItemKnowledge`)
    domain: the catalog's vocabulary (:class:`simrec.domain.Domain`): movies, products, ...
    years: (n_items,) float64 year from the data's date field (NaN unknown), or None when the
    data has no date field; eras come only from it
    attributes: the data's other item fields by name, each (n_items,): object of str
    (categorical), object of tuples of str (lists) or float64 (numbers, NaN missing)

    Titles and texts come from data files and end up in LLM prompts: they are kept as single
    lines of printable text, at most TITLE_LIMIT and TEXT_LIMIT characters
    (:func:`simrec.trust.clean_text`).
    """

    item_ids: np.ndarray
    titles: np.ndarray
    genre_names: list[str]
    genres: sp.csr_matrix
    text: np.ndarray
    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    knowledge: ItemKnowledge | None = None
    domain: Domain = field(default_factory=lambda: DOMAINS["items"])
    years: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from simrec.trust import GENRE_LIMIT, TEXT_LIMIT, TITLE_LIMIT, clean_texts

        self.titles = clean_texts(self.titles, TITLE_LIMIT)
        self.text = clean_texts(self.text, TEXT_LIMIT)
        self.genre_names = [str(g) for g in clean_texts(self.genre_names, GENRE_LIMIT)]

    @property
    def has_titles(self) -> bool:
        """Whether the data named its items (not only ids)."""
        return any(str(t) != str(i) for t, i in zip(self.titles, self.item_ids, strict=True))

    def described(self, domain: Domain) -> Catalog:
        """The catalog in ``domain``'s words: its texts rewritten by :func:`item_texts`."""
        import dataclasses

        text = item_texts(self.titles, self.genre_lists(), self.attributes, domain)
        return dataclasses.replace(self, domain=domain, text=text)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @cached_property
    def display_titles(self) -> np.ndarray:
        """(n_items,) object: the titles as people write them (:func:`display_title`), for
        descriptions, prompts and reports; ``titles`` stays as the data has it."""
        return np.array([display_title(str(t)) for t in self.titles], dtype=object)

    def genre_lists(self) -> list[list[str]]:
        """Genre names per item."""
        names = np.asarray(self.genre_names, dtype=object)
        g = self.genres.tocsr()
        return [list(names[g.indices[g.indptr[i] : g.indptr[i + 1]]]) for i in range(self.n_items)]

    def documents(self, use_text: bool = True) -> list[str]:
        """One document per item for TF-IDF: genre tokens (``genre_<name>``), then the text."""
        g = self.genres.tocsr()
        tokens = ["genre_" + re.sub(r"\W+", "_", name.lower()) for name in self.genre_names]
        docs = []
        for i in range(self.n_items):
            parts = [tokens[j] for j in g.indices[g.indptr[i] : g.indptr[i + 1]]]
            if use_text:
                parts.append(str(self.text[i]))
            docs.append(" ".join(parts))
        return docs

    def subset(self, keep: np.ndarray) -> Catalog:
        """The catalog restricted to item indices ``keep`` (in that order)."""
        return Catalog(
            item_ids=self.item_ids[keep],
            titles=self.titles[keep],
            genre_names=self.genre_names,
            genres=self.genres[keep],
            text=self.text[keep],
            popularity=self.popularity[keep],
            knowledge=None if self.knowledge is None else self.knowledge.subset(keep),
            domain=self.domain,
            years=None if self.years is None else self.years[keep],
            attributes={k: v[keep] for k, v in self.attributes.items()},
        )


@dataclass
class Interactions:
    """The seed log. All arrays have shape (n_interactions,).

    user: int32 user index; item: int32 item index; rating: float32 (NaN when implicit);
    timestamp: int64 Unix seconds. user_ids: (n_users,) the external user ids. count: float32
    the strength of each interaction (plays, purchases, views; >= 0), or None for a log without
    a count column (every interaction counts once).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    count: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """(n_users, n_items) binary CSR (float32 ones) of who interacted with what, with
        sorted indices; computed once and cached."""
        cached = getattr(self, "_matrix", None)
        if cached is not None and cached.shape[1] == n_items:
            return cached
        m = sp.csr_matrix(
            (np.ones(len(self), np.float32), (self.user, self.item)), shape=(self.n_users, n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        self._matrix = m
        return m

    def confidence(self, n_items: int) -> sp.csr_matrix:
        """(n_users, n_items) float32 CSR: how strongly each user prefers each item they
        interacted with, ``1 + log(c)`` of the pair's total count ``c`` (at least 1), the log
        scaling of Hu, Koren & Volinsky's implicit-feedback confidence; the binary
        :meth:`matrix` for a log without counts, so such a log's fits are unchanged.

        >>> log = Interactions(np.array([0, 0, 1], np.int32), np.array([0, 0, 1], np.int32),
        ...     np.full(3, np.nan, np.float32), np.zeros(3, np.int64), np.arange(2),
        ...     np.array([2.0, 5.0, 1.0], np.float32))
        >>> np.round(log.confidence(2).toarray().astype(float), 3).tolist()
        [[2.946, 0.0], [0.0, 1.0]]
        """
        if self.count is None:
            return self.matrix(n_items)
        return confidence_matrix(self.user, self.item, self.count, (self.n_users, n_items))

    def repeat_share(self) -> float:
        """The share of the log's consumption that repeats an earlier consumption of the same
        item by the same user: plays beyond each pair's first over all plays (a row counts
        ``count`` times, at least once, in a log with counts; once otherwise). 0 for a log where
        every pair occurs once with no count above 1 (MovieLens).

        >>> log = Interactions(np.array([0, 0, 1], np.int32), np.array([0, 0, 1], np.int32),
        ...     np.full(3, np.nan, np.float32), np.zeros(3, np.int64), np.arange(2),
        ...     np.array([3.0, 1.0, 1.0], np.float32))
        >>> log.repeat_share()  # pair (0, 0): 4 plays, 3 of them repeats; pair (1, 1): 1 play
        0.6
        """
        cached = self.__dict__.get("_repeat_share")
        if cached is not None:
            return cached
        if len(self) == 0:
            return 0.0
        plays = (
            np.ones(len(self))
            if self.count is None
            else np.maximum(self.count, 1.0, dtype=np.float64)
        )
        pairs = np.unique(self.user.astype(np.int64) * (int(self.item.max()) + 1) + self.item)
        self._repeat_share = float(1.0 - pairs.size / plays.sum())
        return self._repeat_share

    def appended(
        self, user: np.ndarray, item: np.ndarray, rating: np.ndarray, timestamp: np.ndarray
    ) -> Interactions:
        """These rows followed by more (each array (m,), each counting once). Users at or past
        ``n_users`` are new ones; then every user's id becomes its index (the added users have
        no others)."""
        n_users = max(self.n_users, int(np.max(user, initial=-1)) + 1)
        count = None if self.count is None else np.r_[self.count, np.ones(len(user), np.float32)]
        return Interactions(
            np.r_[self.user, user].astype(np.int32),
            np.r_[self.item, item].astype(np.int32),
            np.r_[self.rating, rating].astype(np.float32),
            np.r_[self.timestamp, timestamp].astype(np.int64),
            self.user_ids if n_users == self.n_users else np.arange(n_users),
            None if count is None else count.astype(np.float32),
        )

    def take(self, rows: np.ndarray) -> Interactions:
        """The rows ``rows`` (same users and user ids)."""
        return Interactions(
            self.user[rows],
            self.item[rows],
            self.rating[rows],
            self.timestamp[rows],
            self.user_ids,
            None if self.count is None else self.count[rows],
        )

    def of_users(self, users: np.ndarray) -> Interactions:
        """The rows of ``users`` (sorted, distinct user indices), re-indexed 0..len(users)-1 in
        that order, with their user ids."""
        index = np.full(self.n_users, -1, np.int64)
        index[users] = np.arange(users.size)
        rows = np.flatnonzero(index[self.user] >= 0)
        return Interactions(
            index[self.user[rows]].astype(np.int32),
            self.item[rows],
            self.rating[rows],
            self.timestamp[rows],
            self.user_ids[users],
            None if self.count is None else self.count[rows],
        )

    @property
    def timed(self) -> bool:
        """Whether the log says when things happened: False when every interaction has the
        same timestamp (a log read without a timestamp column has 0 throughout)."""
        return len(self) > 0 and bool(self.timestamp.max() > self.timestamp.min())

    def latest(self, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (sorted) of each user's earlier and latest interactions: per user, the
        latest ``floor(share * n)`` by timestamp (then item) are the second array. In a log
        without times (not :attr:`timed`) "latest" means nothing, and that many are drawn at
        random per user (``seed``), never by file or item order (a log sorted by item would
        otherwise hold out each user's highest item ids)."""
        if self.timed:
            order = lexsort_ints((self.item, self.timestamp, self.user))
        else:
            draw = Streams(seed).generator("untimed-holdout").random(len(self))
            order = np.lexsort((draw, self.user))
        user = self.user[order]
        counts = np.bincount(user, minlength=self.n_users)
        rank = np.arange(len(self)) - np.repeat(np.cumsum(counts) - counts, counts)
        n_late = np.floor(share * counts + 1e-9).astype(np.int64)
        late = rank >= (counts - n_late)[user]
        return np.sort(order[~late]), np.sort(order[late])

    def sessions(self, gap_seconds: int = SESSION_GAP_SECONDS) -> Sessions:
        """The log's sessions: each user's bursts of interactions, a new one starting after
        more than ``gap_seconds`` without any (30 minutes by default, the usual web-analytics
        convention). Computed once per gap and cached, like :meth:`matrix` (the personas'
        arrival rates and session lengths both read them)."""
        cache = self.__dict__.setdefault("_sessions", {})
        if gap_seconds not in cache:
            cache[gap_seconds] = self._sessions_of(gap_seconds)
        return cache[gap_seconds]

    def _sessions_of(self, gap_seconds: int) -> Sessions:
        ts, user = lexsorted_ints((self.timestamp, self.user))
        first = np.r_[True, user[1:] != user[:-1]] if user.size else np.zeros(0, bool)
        new = first | np.r_[False, np.diff(ts) > gap_seconds]
        starts = np.flatnonzero(new)
        user_starts = np.flatnonzero(first)
        span = np.maximum.reduceat(ts, user_starts) - np.minimum.reduceat(ts, user_starts)
        tenure = np.zeros(self.n_users)
        tenure[user[user_starts]] = span / 86400.0
        return Sessions(
            size=np.diff(np.r_[starts, user.size]),
            user=user[starts],
            per_user=np.bincount(user[starts], minlength=self.n_users),
            tenure_days=tenure,
        )

    def to_arrow(self) -> pa.Table:
        """The log as an Arrow table with columns user_index, item_index, rating, timestamp
        and, for a log with counts, count."""
        columns = {
            "user_index": pa.array(self.user, pa.int32()),
            "item_index": pa.array(self.item, pa.int32()),
            "rating": pa.array(self.rating, pa.float32()),
            "timestamp": pa.array(self.timestamp, pa.int64()),
        }
        if self.count is not None:
            columns["count"] = pa.array(self.count, pa.float32())
        return pa.table(columns)


def confidence_matrix(
    user: np.ndarray, item: np.ndarray, count: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """(n_users, n_items) float32 CSR of ``1 + log(c)``, ``c`` each (user, item) pair's total
    ``count`` (at least 1): Hu, Koren & Volinsky's log-scaled implicit-feedback confidence.
    user, item, count: (n,) one entry per row of a log."""
    m = sp.csr_matrix((count.astype(np.float64), (user, item)), shape=shape)
    m.sum_duplicates()
    m.data = 1.0 + np.log(np.maximum(m.data, 1.0))
    m.sort_indices()
    return m.astype(np.float32)


def feedback_kind(log: Interactions) -> str:
    """What a log says of each interaction: ``ratings`` (some rows rated), ``counts``
    (consumption with a count column) or ``consumption`` (that it happened, no more)."""
    if np.isfinite(log.rating).any():
        return "ratings" + (" and counts" if log.count is not None else "")
    return "counts" if log.count is not None else "consumption"


@dataclass
class Sessions:
    """Sessions of a log. size, user: (n_sessions,) interactions in each and its user;
    per_user: (n_users,) sessions per user; tenure_days: (n_users,) days from each user's
    first to last interaction (0 for a single burst)."""

    size: np.ndarray
    user: np.ndarray
    per_user: np.ndarray
    tenure_days: np.ndarray

    def rate_per_day(self, min_tenure_days: float) -> np.ndarray:
        """(n_users,) sessions per day of each user's own tenure, at least ``min_tenure_days``
        (a user active for one evening is not taken to come back every day)."""
        return self.per_user / np.maximum(self.tenure_days, min_tenure_days)


@dataclass(frozen=True)
class Impressions:
    """One row per shown item; every array (n,). ``request`` int64 index of the slate or
    request, ``user`` int64 index into ``user_ids``, ``item`` int64 index into ``item_ids``,
    ``position`` int64 (1 = first), ``clicked`` bool, ``propensity`` float64 (NaN where not
    logged), ``timestamp`` int64 Unix seconds (0 where not logged). ``source``: where it came
    from; ``layout``: ``table``, ``open-bandit``, ``mind`` or ``simrec-events``."""

    request: np.ndarray
    user: np.ndarray
    item: np.ndarray
    position: np.ndarray
    clicked: np.ndarray
    propensity: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str
    layout: str

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """The positions that occur, ascending."""
        return np.unique(self.position)

    def shown(self) -> np.ndarray:
        """(n_items,) how often each item was shown."""
        return np.bincount(self.item, minlength=self.n_items)

    def clicks(self) -> np.ndarray:
        """(n_items,) how often each item was clicked."""
        return np.bincount(self.item, self.clicked, self.n_items).astype(np.int64)


@dataclass
class Dataset:
    """A catalog, a seed log over it, its rating scale and where it came from."""

    catalog: Catalog
    interactions: Interactions
    scale: RatingScale
    source: str
    file_hashes: dict[str, str] = field(default_factory=dict)
    # synthetic worlds only: the choice utility the log was drawn from, so evaluations can
    # report what a perfect model would reach (see :class:`WorldTruth`)
    truth: WorldTruth | None = None
    # an impression log of the same users and items (data.impressions_path), or None
    impressions: Impressions | None = None

    def with_log(self, log: Interactions, source: str | None = None) -> Dataset:
        """This dataset with ``log`` (over the same catalog) as its interactions, the
        catalog's popularity counted on ``log``, and named ``source`` (default: unchanged)."""
        popularity = np.bincount(log.item, minlength=self.catalog.n_items).astype(np.int64)
        return replace(
            self,
            interactions=log,
            catalog=replace(self.catalog, popularity=popularity),
            source=self.source if source is None else source,
        )


@dataclass
class WorldTruth:
    """The synthetic world's generating choice model: a user picks items with probability
    proportional to ``exp(taste_scale * user_vecs[u] @ item_vecs[i] + log_pop[i])``.
    user_vecs: (n_users, d), item_vecs: (n_items, d), log_pop: (n_items,), float64."""

    user_vecs: np.ndarray
    item_vecs: np.ndarray
    log_pop: np.ndarray
    taste_scale: float

    def utility(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,), (n,) -> (n,) the log-odds-like utility of each pair."""
        dot = np.einsum("nd,nd->n", self.user_vecs[users], self.item_vecs[items])
        return self.taste_scale * dot + self.log_pop[items]

    def log_choice(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,), (n,) -> (n,) log P(the user's next pick from the catalog is the item): the
        utility less the user's log normaliser, so scores compare across users (a user's
        utilities have their own level, which says nothing about how much they choose)."""
        return self.utility(users, items) - self.log_normaliser[users]

    @cached_property
    def log_normaliser(self) -> np.ndarray:
        """(n_users,) log sum over the catalog of exp(utility), computed in user chunks."""
        from scipy.special import logsumexp

        out = np.empty(self.user_vecs.shape[0])
        for s in range(0, out.size, 4096):
            out[s : s + 4096] = logsumexp(
                self.utility_matrix(np.arange(s, min(s + 4096, out.size))), axis=1
            )
        return out

    def utility_matrix(self, users: np.ndarray) -> np.ndarray:
        """(n,) -> (n, n_items) the utility of every item for each of ``users``."""
        return self.taste_scale * (self.user_vecs[users] @ self.item_vecs.T) + self.log_pop


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
