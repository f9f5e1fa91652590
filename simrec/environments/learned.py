"""Learned policies: ``itemknn``, ``als`` and ``bpr`` (the ``implicit`` library), ``ease``
(Steck's closed-form item-to-item regression), ``genre`` (content-based, scikit-learn TF-IDF
over catalog genres and text) and ``kg`` (knowledge-graph facts shared with liked items).

All six are deterministic given their fit log: they rank every item for a user, drop what
``exclude`` names and show the ``k`` best. Users the fit log does not know (or who have no
history) are shown the most popular items. Propensities are 1.0 (``deterministic``); wrap a
policy in ``softmax`` or ``epsilon-greedy`` (``simrec.environments.exploration``) to log
exploration with exact propensities.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from simrec.data.dataset import Catalog
from simrec.environments.base import (
    PolicyRandomness,
    Slates,
    exact_factors,
    history_matrix,
    ranked_slates,
)
from simrec.errors import ConfigError
from simrec.itemitem import EASE_MAX_ITEMS, cosine_neighbours, ease_weights


@contextlib.contextmanager
def quiet_implicit():
    """Single-threaded BLAS (what implicit asks for) and none of its format warnings."""
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="implicit")
        yield


def _positive(name: str, value: float, integer: bool = False) -> None:
    ok = value > 0 and (not integer or float(value).is_integer())
    if not ok or isinstance(value, bool):
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"policy.params.{name}: expected {kind}, got {value!r}")


class _Ranker:
    """Shared plumbing: popularity fallback, padding, Slates. A fitted ranker's scores
    depend on the user alone, so it ranks whole sessions at once (``SessionRanking``)."""

    name = "ranker"
    session_ranking = True

    def __init__(self) -> None:
        self.n_items = 0
        self.n_users = 0
        self.popularity = np.zeros(0, np.float32)

    def _fit_common(self, interactions: pa.Table, catalog: Catalog) -> sp.csr_matrix:
        self.n_items = catalog.n_items
        hist = history_matrix(interactions, catalog.n_items)
        self.n_users = hist.shape[0]
        counts = np.asarray(hist.sum(axis=0)).ravel()
        self.popularity = (counts / max(counts.max(), 1.0)).astype(np.float32)
        return hist

    def _score(self, users: np.ndarray) -> np.ndarray:
        """(c,) users -> (c, n_items) float32 scores; users unknown to the fit are padded."""
        raise NotImplementedError

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(c,) users -> (c, n_items) float32 scores of every item (consumed ones included);
        users the fit never saw get the popularity fallback."""
        return self._scores_with_fallback(users)

    def _scores_with_fallback(self, users: np.ndarray) -> np.ndarray:
        known = (users >= 0) & (users < self.n_users)
        out = np.empty((users.size, self.n_items), np.float32)
        out[:] = self.popularity  # unknown users: most popular first
        if known.any():
            out[known] = self._score(users[known])
        return out

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        return ranked_slates(self._scores_with_fallback, users, k, exclude)


class ItemKNNPolicy(_Ranker):
    """Item-based nearest neighbours on co-occurrence cosine similarity.

    A user's score for item j is the sum of similarities between j and the items in the
    user's history, each item keeping only its ``neighbours`` most similar items. In a log
    with counts, each history entry weighs ``1 + log(count)``. With
    ``shrinkage`` > 0 the similarity is ``co_ij / (sqrt(n_i n_j) + shrinkage)``
    (:func:`simrec.itemitem.cosine_neighbours`), which discounts pairs of rarely consumed
    items; 0 is ``implicit``'s plain cosine.
    """

    name = "itemknn"
    family = "neighbourhood"

    def __init__(self, neighbours: int = 100, shrinkage: float = 0.0) -> None:
        super().__init__()
        _positive("neighbours", neighbours, integer=True)
        if not shrinkage >= 0 or isinstance(shrinkage, bool):
            raise ConfigError(f"policy.params.shrinkage: expected a number >= 0, got {shrinkage!r}")
        self.neighbours = int(neighbours)
        self.shrinkage = float(shrinkage)
        self.history = sp.csr_matrix((0, 0), dtype=np.float32)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        # a log with counts: co-occurrence and scores weighted by confidence (1 + log count)
        self.history = _confidence(interactions, self._fit_common(interactions, catalog))
        if self.shrinkage > 0:
            self.similarity = cosine_neighbours(self.history, self.neighbours, self.shrinkage)
            return
        from implicit.nearest_neighbours import CosineRecommender

        with quiet_implicit():
            model = CosineRecommender(K=self.neighbours)
            model.fit(self.history, show_progress=False)
        # similarity[i, j]: how much having i in one's history recommends j
        self.similarity = model.similarity.tocsr().astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.history[users] @ self.similarity).toarray()


class EASEPolicy(_Ranker):
    """EASE (Steck, WWW 2019): a user's score for item j is ``x_u @ B[:, j]``, B the
    closed-form ridge regression of every item on all the others (zero diagonal), ``l2`` its
    penalty (:func:`simrec.itemitem.ease_weights`). B is dense: on catalogs of more than
    ``max_items`` items it covers the ``max_items`` most consumed, and the rest rank below
    them by popularity."""

    name = "ease"
    family = "neighbourhood"

    def __init__(self, l2: float = 500.0, max_items: int = EASE_MAX_ITEMS) -> None:
        super().__init__()
        _positive("l2", l2)
        _positive("max_items", max_items, integer=True)
        self.l2, self.max_items = float(l2), int(max_items)
        self.history = sp.csr_matrix((0, 0), dtype=np.float32)
        self.covered = np.zeros(0, np.int64)
        self.weights = np.zeros((0, 0), np.float32)

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        self.history = self._fit_common(interactions, catalog)
        order = np.argsort(-self.popularity, kind="stable")
        self.covered = np.sort(order[: self.max_items])
        self.weights = ease_weights(self.history[:, self.covered], self.l2)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.scores_of_histories(self.history)(users)

    def scores_of_histories(self, history: sp.csr_matrix):
        """A scorer of the rows of ``history`` (n, n_items) binary: (c,) row indices -> (c,
        n_items) float32 scores under this fit's weights."""

        def score(rows: np.ndarray) -> np.ndarray:
            covered = np.asarray(history[rows][:, self.covered] @ self.weights, np.float32)
            if self.covered.size == self.n_items:
                return covered
            # the rest below the row's lowest covered score, by popularity (each row alone)
            floor = covered.min(axis=1, initial=0.0, keepdims=True) - 2.0
            out = floor + self.popularity[None, :]
            out[:, self.covered] = covered
            return out

        return score


class _FactorPolicy(_Ranker):
    """Matrix factorisation from ``implicit``: score = user factors . item factors."""

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _positive("factors", factors, integer=True)
        _positive("regularization", regularization)
        _positive("iterations", iterations, integer=True)
        self.factors, self.regularization = int(factors), float(regularization)
        self.iterations, self.seed = int(iterations), int(seed)
        self.user_factors = np.zeros((0, 0), np.float32)
        self.item_factors = np.zeros((0, 0), np.float32)

    def _model(self):
        raise NotImplementedError

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        # confidence: 1 + log count where the log has counts (binary otherwise)
        hist = _confidence(interactions, self._fit_common(interactions, catalog))
        # implicit asks for single-threaded BLAS; BPR runs on one thread (its updates are
        # Hogwild-parallel, not reproducible with more), ALS on ``threads``
        with quiet_implicit():
            model = self._model()
            model.fit(hist, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, np.float32)
        d = self.item_factors.shape[1]
        self._uq, su = exact_factors(self.user_factors, d)
        self._vq_t, sv = exact_factors(self.item_factors, d)
        self._vq_t = np.ascontiguousarray(self._vq_t.T)
        self._inv_scale = 1.0 / (su * sv)

    def _score(self, users: np.ndarray) -> np.ndarray:
        # exact integer arithmetic in float64: the same scores whatever the batch
        return ((self._uq[users] @ self._vq_t) * self._inv_scale).astype(np.float32)


class ALSPolicy(_FactorPolicy):
    """Implicit-feedback ALS (Hu, Koren & Volinsky) with confidence ``1 + alpha`` per
    interaction (``1 + alpha (1 + log count)`` in a log with counts). ``threads``: the cores
    the fit uses (0: all of them); each half-step solves every user (item) alone against fixed
    factors, so any thread count gives the same factors."""

    name = "als"
    family = "matrix factorisation"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
        threads: int = 0,
    ) -> None:
        super().__init__(factors, regularization, iterations, seed)
        _positive("alpha", alpha)
        if not (isinstance(threads, int) and threads >= 0) or isinstance(threads, bool):
            raise ConfigError(
                f"policy.params.threads: expected an integer >= 0 (0: every core), got {threads!r}"
            )
        self.alpha, self.threads = float(alpha), threads

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.threads,
        )


class BPRPolicy(_FactorPolicy):
    """Bayesian Personalised Ranking (Rendle et al.) by SGD over sampled item pairs."""

    name = "bpr"
    family = "matrix factorisation"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 100,
        learning_rate: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__(factors, regularization, iterations, seed)
        _positive("learning_rate", learning_rate)
        self.learning_rate = float(learning_rate)

    def _model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=1,
        )


class _ProfileRanker(_Ranker):
    """Items as feature vectors, users as normalised weighted sums of their history's vectors;
    score = profile . item features, ties broken by ``popularity_tiebreak`` x popularity."""

    def __init__(self, popularity_tiebreak: float = 1e-3) -> None:
        super().__init__()
        if not popularity_tiebreak >= 0:
            raise ConfigError(
                f"policy.params.popularity_tiebreak: expected a number >= 0, "
                f"got {popularity_tiebreak!r}"
            )
        self.popularity_tiebreak = float(popularity_tiebreak)
        self.features = sp.csr_matrix((0, 0), dtype=np.float32)
        self.profiles = sp.csr_matrix((0, 0), dtype=np.float32)

    def _set_profiles(self, history: sp.csr_matrix, features: sp.csr_matrix) -> None:
        """history: (n_users, n_items) weights; features: (n_items, n_features) float32."""
        from sklearn.preprocessing import normalize

        self.features = features
        self.profiles = normalize(history @ features).astype(np.float32).tocsr()
        # (n_features, n_items): dense when it fits, since sparse profiles times a dense matrix
        # is several times faster than a sparse-sparse product with a nearly dense result
        ft = features.T.tocsr()
        self._features_t = ft.toarray() if ft.shape[0] * ft.shape[1] <= _DENSE_CELLS else ft

    def _score(self, users: np.ndarray) -> np.ndarray:
        s = self.profiles[users] @ self._features_t
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        s += self.popularity_tiebreak * self.popularity
        return s


class GenrePolicy(_ProfileRanker):
    """Content-based: TF-IDF vectors of each item's genres (and, with ``use_text``, its text);
    a user's profile is the rating-weighted mean of their history's vectors; items are ranked
    by cosine similarity to the profile, ties (items with the same genres) by popularity."""

    name = "genre"
    family = "content"

    def __init__(self, use_text: bool = True, popularity_tiebreak: float = 1e-3) -> None:
        if not isinstance(use_text, bool):
            raise ConfigError(f"policy.params.use_text: expected true or false, got {use_text!r}")
        super().__init__(popularity_tiebreak)
        self.use_text = use_text

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._fit_common(interactions, catalog)
        docs = catalog.documents(self.use_text)
        if any(docs):
            vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, dtype=np.float32)
            features = vec.fit_transform(docs).tocsr()
        else:  # a catalog with neither genres nor text: popularity only
            features = sp.csr_matrix((catalog.n_items, 1), dtype=np.float32)
        ratings = history_matrix(interactions, catalog.n_items, weights="rating")
        if ratings.nnz:  # weight 0.5..1.5 from the user's lowest to highest rating
            lo = ratings.data.min()
            span = max(float(ratings.data.max() - lo), 1e-9)
            ratings.data = (0.5 + (ratings.data - lo) / span).astype(np.float32)
        self._set_profiles(ratings, features)


_DENSE_CELLS = 50_000_000  # 200 MB of float32


class KnowledgePolicy(_ProfileRanker):
    """Knowledge-based: items ranked by the knowledge-graph facts they share with what the user
    liked (rated at or above their own mean rating; everything without ratings). Each fact is
    weighted by its rarity among linked items (:meth:`ItemKnowledge.weighted`); a user's
    profile is the sum of their liked items' weighted facts, an item's score the cosine of its
    facts with the profile, ties (items with nothing shared, cold items among them) broken by
    popularity. Needs data with a knowledge graph (RecBole ``NAME.kg``/``.link``, or
    ``--kg``/``--kg-links``)."""

    name = "kg"
    family = "knowledge"

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        if catalog.knowledge is None:
            raise ConfigError(
                "policy kg: the data has no knowledge graph (a RecBole dataset with NAME.kg and "
                "NAME.link, or --kg TRIPLES --kg-links LINKS)"
            )
        self._fit_common(interactions, catalog)
        ratings = history_matrix(interactions, catalog.n_items, self.n_users, weights="rating")
        self._set_profiles(_liked(ratings), catalog.knowledge.weighted().astype(np.float32))


def _confidence(interactions: pa.Table, binary: sp.csr_matrix) -> sp.csr_matrix:
    """The fit log's confidence matrix (:func:`history_matrix` ``confidence``): ``binary``
    itself for a log without counts."""
    if "count" not in interactions.column_names:
        return binary
    return history_matrix(interactions, binary.shape[1], binary.shape[0], weights="confidence")


def _liked(ratings: sp.csr_matrix) -> sp.csr_matrix:
    """(n_users, n_items) 0/1 float32: the items each user rated at or above their own mean."""
    r = ratings.tocsr().astype(np.float64)
    counts = np.maximum(np.diff(r.indptr), 1)
    means = np.asarray(r.sum(axis=1)).ravel() / counts
    row_of = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
    keep = r.data >= means[row_of] - 1e-9
    out = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (row_of[keep], r.indices[keep])), shape=r.shape
    )
    out.sort_indices()
    return out
