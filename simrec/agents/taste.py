"""Taste models fitted from a seed log, all vectorised over users.

* :func:`fit_choice_factors`: what a user would pick. Truncated SVD of the user-normalised
  binary interaction matrix; ``taste @ item_factors.T`` is the choice affinity.
* :func:`fit_topic_factors`: the same from LDA topics (affinity log P(item | user), batch
  variational Bayes vectorised over the interactions); the default, since no built-in policy
  is a topic model (see the fidelity report).
* :func:`fit_taste`: either of them, remembered across runs on the same log.
* :func:`select_taste_dim`: their number of dimensions, chosen by how well each predicts the
  log's users' latest choices from their earlier ones.
* :func:`world_factors`: a synthetic world's own choice utility, the ideal taste model.
* :func:`fit_rating_model`: how a user would rate. Biased matrix factorisation fitted by
  alternating least squares, each sweep solving all users (then all items) as one batched
  linear system.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from simrec.arrays import (
    MAX_THREADS,
    excluded_mask,
    map_in_threads,
    map_user_blocks,
    rowwise_dot,
)
from simrec.data.dataset import Interactions, RatingScale, WorldTruth
from simrec.rng import Streams

_SOLVE_CHUNK = 32768
LDA_BLOCK = 16384  # documents per threaded block of the mixture updates
LDA_FIT_USERS = 20_000  # larger logs: topics from a sample of this many users
ALS_FIT_USERS = 20_000  # larger logs: every ALS sweep but the last on a sample of this many


@dataclass
class ChoiceFactors:
    """taste: (n_users, d) float32; items: (n_items, d) float32; affinity = taste @ items.T,
    or its logarithm when ``log_affinity`` (a topic model: P(item | user))."""

    taste: np.ndarray
    items: np.ndarray
    log_affinity: bool = False

    def affinity(self, dots: np.ndarray) -> np.ndarray:
        """The affinity from the dot products ``taste[u] @ items[i]`` (any shape)."""
        return np.log(np.maximum(dots, 1e-12)) if self.log_affinity else dots


_FITS: OrderedDict[tuple, ChoiceFactors] = OrderedDict()  # the last few taste fits
_FIT_CACHE_SIZE = 4


@dataclass
class RatingModel:
    """r_hat[u, i] = mu + user_bias[u] + item_bias[i] + user_factors[u] @ item_factors[i].

    user_bias: (n_users,), item_bias: (n_items,), user_factors: (n_users, d),
    item_factors: (n_items, d), all float32; sigma: residual std of the training ratings.
    A sampled rating is ``expected + sigma * z`` cut into the scale's values at ``cuts`` (one
    fewer than the values): thresholds placed so that the training rows' sampled ratings have
    the training ratings' histogram (an ordinal link, as in ordinal regression; a rating scale
    is not an interval scale). None (too many values, or none rated): rounded to the nearest.
    """

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    sigma: float
    scale: RatingScale
    cuts: np.ndarray | None = None

    def sample(self, expected: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Ratings drawn around ``expected`` with standard-normal ``z`` (same shape)."""
        latent = np.asarray(expected, np.float64) + self.sigma * np.asarray(z, np.float64)
        if self.cuts is None:
            return self.scale.quantise(latent)
        values = _scale_values(self.scale)
        return values[np.searchsorted(self.cuts, latent, side="right")]

    def expected(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Expected ratings of (user, item) pairs, clipped to the scale. (n,), (n,) -> (n,)."""
        r = self.mu + self.user_bias[users] + self.item_bias[items]
        r += rowwise_dot(self.user_factors, users, self.item_factors, items)
        return np.clip(r, self.scale.low, self.scale.high)


def fit_taste(kind: str, log: Interactions, n_items: int, dim: int, seed: int) -> ChoiceFactors:
    """The ``kind`` ("svd" or "lda") taste model of ``log``, remembered for the process's last
    few distinct inputs: a fidelity report or an A/B test calibrates its runs on the same log,
    and an LDA fit of a MovieLens-1M-sized log takes about 20 s on 2 cores. The fit is a pure
    function of the key, so reuse cannot change a result; the arrays are read-only."""
    key = _log_key(kind, log, n_items, dim, seed)
    if key in _FITS:
        _FITS.move_to_end(key)
        return _FITS[key]
    fit = fit_topic_factors if kind == "lda" else fit_choice_factors
    factors = fit(log, n_items, dim, seed)
    factors.taste.setflags(write=False)
    factors.items.setflags(write=False)
    _FITS[key] = factors
    while len(_FITS) > _FIT_CACHE_SIZE:
        _FITS.popitem(last=False)
    return factors


def _log_key(kind: str, log: Interactions, n_items: int, dim: int, seed: int) -> tuple:
    """What a fit of ``log`` depends on: the model, sizes, seed and the log's pairs (and
    counts, where it has them)."""
    digest = hashlib.blake2b(digest_size=16)
    for a in (log.user, log.item) + (() if log.count is None else (log.count,)):
        digest.update(np.ascontiguousarray(a).view(np.uint8))
    return (kind, log.n_users, n_items, dim, seed, digest.hexdigest())


TASTE_DIMS = (8, 16, 32)  # the sizes taste_dim: auto chooses among, in this order
SELECT_USERS = LDA_FIT_USERS  # auto scores the sizes on a sample of this many users, as many as
# the topics of a larger log are learnt from (fewer would favour too few dimensions)
SELECT_HOLDOUT = 0.2  # each sampled user's latest share of interactions is what is predicted
SELECT_NEGATIVES = 20  # items each held-out choice is ranked against
SELECT_MIN_ROWS = 200  # fewer held-out choices than this: no choice, DEFAULT_TASTE_DIM
DEFAULT_TASTE_DIM = 16
_SELECT_BLOCK = 16384
_SELECTIONS: OrderedDict[tuple, tuple[int, dict[int, float]]] = OrderedDict()


def select_taste_dim(
    kind: str, log: Interactions, n_items: int, seed: int
) -> tuple[int, dict[int, float]]:
    """The number of dimensions of the ``kind`` ("svd" or "lda") taste model that best
    predicts unseen choices, and each tried dimension's score: on a seeded sample of at most
    SELECT_USERS users, a model of each size in TASTE_DIMS is fitted on every user's earlier
    interactions, and scored by the ROC AUC of its affinity for the user's latest
    SELECT_HOLDOUT share against SELECT_NEGATIVES items drawn uniformly from those the user had
    not consumed (ties count half). Sizes are tried smallest first and the search stops at the
    first that scores below the one before (more dimensions only fit the sample's noise
    better from there). With under SELECT_MIN_ROWS held-out choices: DEFAULT_TASTE_DIM and no
    scores. Remembered per log, as :func:`fit_taste` is."""
    key = _log_key(kind, log, n_items, 0, seed)  # (0: any size)
    if key in _SELECTIONS:
        return _SELECTIONS[key]
    g = Streams(seed).generator("taste-dim")
    sample = log
    if log.n_users > SELECT_USERS:
        sample = log.of_users(np.sort(g.choice(log.n_users, SELECT_USERS, replace=False)))
    early_rows, late_rows = sample.latest(SELECT_HOLDOUT)
    chosen: tuple[int, dict[int, float]] = (DEFAULT_TASTE_DIM, {})
    if late_rows.size >= SELECT_MIN_ROWS:
        early = sample.take(early_rows)
        users = sample.user[late_rows].astype(np.int64)
        positives = sample.item[late_rows].astype(np.int64)
        negatives = g.integers(0, n_items, (users.size, SELECT_NEGATIVES))
        fresh = ~excluded_mask(negatives, early.matrix(n_items), of=users)  # not yet consumed
        fit = fit_topic_factors if kind == "lda" else fit_choice_factors
        scores: dict[int, float] = {}
        previous = -np.inf
        for dim in TASTE_DIMS:
            f = fit(early, n_items, dim, seed)
            wins = 0.0
            for lo in range(0, users.size, _SELECT_BLOCK):  # (rows, negatives, d) in blocks
                b = slice(lo, lo + _SELECT_BLOCK)
                taste = f.taste[users[b]]
                pos = np.einsum("nd,nd->n", taste, f.items[positives[b]])[:, None]
                neg = np.einsum("nd,nkd->nk", taste, f.items[negatives[b]])
                wins += float((((pos > neg) + 0.5 * (pos == neg)) * fresh[b]).sum())
            scores[dim] = wins / max(int(fresh.sum()), 1)
            if scores[dim] < previous:
                break
            previous = scores[dim]
        chosen = (max(scores, key=scores.get), scores)
    _SELECTIONS[key] = chosen
    while len(_SELECTIONS) > _FIT_CACHE_SIZE:
        _SELECTIONS.popitem(last=False)
    return chosen


def fit_choice_factors(log: Interactions, n_items: int, dim: int, seed: int) -> ChoiceFactors:
    """Truncated SVD of the (n_users, n_items) interaction matrix (binary, or the log's
    confidence where it has counts) with rows scaled to unit norm."""
    m = log.confidence(n_items)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m = sp.diags(1.0 / np.maximum(norms, 1.0)) @ m
    if min(m.shape) <= dim + 1:  # tiny data: an exact dense SVD (svds needs k < min(shape))
        u, s, vt = np.linalg.svd(m.toarray().astype(np.float64), full_matrices=False)
        u, s, vt = u[:, :dim], s[:dim], vt[:dim]
    else:
        v0 = np.random.default_rng(seed).standard_normal(min(m.shape))
        u, s, vt = svds(m.astype(np.float64), k=dim, v0=v0, random_state=seed)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    root = np.sqrt(s)
    taste = (u * root).astype(np.float32)
    items = (vt.T * root).astype(np.float32)
    # the SVD sign is arbitrary: fix it so each component's item loadings sum to >= 0
    sign = np.where(items.sum(axis=0) < 0, -1.0, 1.0).astype(np.float32)
    return ChoiceFactors(taste * sign, items * sign)


def fit_topic_factors(log: Interactions, n_items: int, dim: int, seed: int) -> ChoiceFactors:
    """Latent Dirichlet allocation of the (n_users, n_items) interaction counts by batch
    variational Bayes, vectorised over every interaction at once (scikit-learn's
    implementation loops over users in Python: about 12x slower at 100,000 users, with the
    same held-out fit; benchmarks/bench_calibration.py): taste = each user's topic mixture,
    items = each topic's item distribution (transposed), so taste @ items.T = P(item | user).
    A probabilistic mixture, the family of no built-in recommender. With more than
    LDA_FIT_USERS users, the topics are learnt from a seeded sample of that many and every
    user's mixture is inferred from them."""
    m = log.confidence(n_items)  # counts: 1 per pair, or 1 + log count where the log has them
    if m.shape[0] <= LDA_FIT_USERS:
        taste, topics = _lda_vb(m, dim, seed)
    else:
        g = Streams(seed).generator("lda-fit-users")
        _, topics = _lda_vb(
            m[np.sort(g.choice(m.shape[0], LDA_FIT_USERS, replace=False))], dim, seed
        )
        taste = np.vstack(
            [_lda_vb(m[s : s + 65536], dim, seed, topics)[0] for s in range(0, m.shape[0], 65536)]
        )
    return ChoiceFactors(taste.astype(np.float32), topics.T.astype(np.float32), True)


LDA_SWEEPS, LDA_INNER = 12, 4  # topic updates, and mixture updates between two of them
LDA_INFER = 4  # mixture updates of the users whose mixtures are inferred from learnt topics


def _lda_vb(
    m: sp.csr_matrix, k: int, seed: int, topics: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Batch variational Bayes for LDA (Blei, Ng & Jordan 2003), priors 1/k as scikit-learn's.
    m: (n_docs, n_words) counts. Learns the topics, or with ``topics`` (k, n_words) only infers
    the mixtures. -> mixtures (n_docs, k), topics (k, n_words), rows summing to 1. Each
    mixture update is one pass over the nonzeros: phi_norm[d, w] = exp E[log theta_d] .
    exp E[log beta_w], gamma = alpha + exp E[log theta] * ((m / phi_norm) @ exp E[log beta]^T).
    Mixtures are warm-started across topic updates."""
    from scipy.special import digamma

    m = m.tocsr().astype(np.float32)
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))

    def exp_e_log(x: np.ndarray) -> np.ndarray:
        return np.exp(digamma(x) - digamma(x.sum(axis=1, keepdims=True))).astype(np.float32)

    def weighted(sub: sp.csr_matrix, sub_rows, theta_e, beta_t) -> sp.csr_matrix:
        """``sub / phi_norm``: rows of ``m`` weighted by their documents' mixtures."""
        norm = np.empty(sub.nnz, np.float32)
        for s in range(0, sub.nnz, 1 << 22):
            e = slice(s, s + (1 << 22))
            norm[e] = np.einsum("nk,nk->n", theta_e[sub_rows[e]], beta_t[sub.indices[e]])
        return sp.csr_matrix((sub.data / (norm + 1e-30), sub.indices, sub.indptr), shape=sub.shape)

    # the mixture updates are row by row: blocks of documents run on threads with the same
    # arithmetic per row, so the result does not depend on the blocks or the threads
    bounds = [*range(0, m.shape[0], LDA_BLOCK), m.shape[0]]
    blocks = [
        (lo, hi, m[lo:hi], rows[m.indptr[lo] : m.indptr[hi]] - lo)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]

    def update(gamma: np.ndarray, beta_t: np.ndarray) -> np.ndarray:
        def block(b) -> np.ndarray:
            lo, hi, sub, sub_rows = b
            theta_e = exp_e_log(gamma[lo:hi])
            return 1.0 / k + theta_e * (weighted(sub, sub_rows, theta_e, beta_t) @ beta_t)

        return np.concatenate(map_user_blocks(block, blocks))

    learn = topics is None
    lam = np.random.default_rng(seed).gamma(100.0, 0.01, (k, m.shape[1])) if learn else None
    beta = exp_e_log(lam) if learn else np.asarray(topics, np.float32)
    gamma = np.ones((m.shape[0], k), np.float32)
    for _ in range(LDA_SWEEPS if learn else 1):
        beta_t = np.ascontiguousarray(beta.T)
        for _ in range(LDA_INNER if learn else LDA_INFER):
            gamma = update(gamma, beta_t)
        if learn:
            theta_e = exp_e_log(gamma)
            w = weighted(m, rows, theta_e, beta_t)
            lam = 1.0 / k + beta * np.asarray((w.T @ theta_e).T)
            beta = exp_e_log(lam)
    mixtures = gamma / gamma.sum(axis=1, keepdims=True)
    return mixtures, (lam / lam.sum(axis=1, keepdims=True) if learn else topics)


@dataclass
class GenreTaste:
    """How much each user leans to each genre beyond the log's own genre mix.

    lift: (n_users, n_genres) float32, ``log(share_ug / share_g)`` with each user's genre
    shares shrunk towards the log's (``GENRE_PRIOR`` pseudo-interactions); items: (n_items,
    n_genres) float32, each item's genres as shares summing to 1 (0 without genres). A user's
    genre taste for an item is ``lift[u] @ items[i]``. counts: (n_users, n_genres) the genre
    shares summed over each user's items; share: (n_genres,) the log's genre mix."""

    lift: np.ndarray
    items: np.ndarray
    counts: np.ndarray
    share: np.ndarray

    def leave_one_out(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(m,), (m,) -> (m,) the genre taste of pairs from the log itself, each computed as
        if that interaction were not in the log (so a user's own choice does not vouch for
        itself)."""
        own = self.items[items]
        counts = self.counts[users] - own
        n = counts.sum(axis=1, keepdims=True)
        lift = np.log((np.maximum(counts, 0) + GENRE_PRIOR * self.share) / (n + GENRE_PRIOR))
        return ((lift - np.log(self.share)) * own).sum(axis=1)


GENRE_PRIOR = 5.0
MAX_GENRES = 64  # catalogs with more categories keep the most frequent ones


def fit_genre_taste(log: Interactions, genres: sp.csr_matrix) -> GenreTaste:
    """The :class:`GenreTaste` of ``log`` over the catalog's (n_items, n_genres) genres."""
    g = genres.astype(np.float64).tocsc()
    if g.shape[1] > MAX_GENRES:
        g = g[:, np.argsort(-np.asarray(g.sum(axis=0)).ravel(), kind="stable")[:MAX_GENRES]]
    per_item = np.asarray(g.sum(axis=1)).ravel()
    items = sp.diags(1.0 / np.maximum(per_item, 1.0)) @ g.tocsr()
    counts = np.asarray((log.matrix(g.shape[0]) @ items).todense())
    total = counts.sum(axis=0)
    share_g = (total + 1e-3) / (total.sum() + 1e-3 * total.size)
    share_ug = (counts + GENRE_PRIOR * share_g) / (counts.sum(axis=1, keepdims=True) + GENRE_PRIOR)
    lift = np.log(share_ug / share_g)
    return GenreTaste(
        lift.astype(np.float32),
        np.asarray(items.todense(), np.float32),
        counts.astype(np.float32),
        share_g.astype(np.float32),
    )


ITEM_DAMPING, USER_DAMPING = 25.0, 10.0  # Koren (2010)'s shrinkage of the baseline biases


def damped_bias(log: Interactions, n_items: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The damped baseline ``mu + b_u + b_i`` of the rated rows: ``b_i = sum(r - mu) / (n_i +
    25)``, then ``b_u = sum(r - mu - b_i) / (n_u + 10)``. -> mu, b_u (n_users,), b_i
    (n_items,); zeros when nothing is rated."""
    rated = np.isfinite(log.rating)
    if not rated.any():
        return 0.0, np.zeros(log.n_users), np.zeros(n_items)
    u, i, r = log.user[rated], log.item[rated], log.rating[rated].astype(np.float64)
    mu = float(r.mean())
    b_i = np.bincount(i, r - mu, n_items) / (np.bincount(i, minlength=n_items) + ITEM_DAMPING)
    n_u = np.bincount(u, minlength=log.n_users)
    b_u = np.bincount(u, r - mu - b_i[i], log.n_users) / (n_u + USER_DAMPING)
    return mu, b_u, b_i


def world_factors(truth: WorldTruth) -> ChoiceFactors:
    """A synthetic world's own choice model as factors: taste = [taste_scale * user_vecs, 1,
    -log_normaliser], items = [item_vecs, log_pop, 1], so the affinity is exactly the log
    probability the log was drawn with (:meth:`WorldTruth.log_choice`): the ideal taste model,
    for measuring what the rest of the simulation adds."""
    ones_u = np.ones((truth.user_vecs.shape[0], 1))
    ones_i = np.ones((truth.item_vecs.shape[0], 1))
    taste = np.hstack([truth.taste_scale * truth.user_vecs, ones_u, -truth.log_normaliser[:, None]])
    items = np.hstack([truth.item_vecs, truth.log_pop[:, None], ones_i])
    return ChoiceFactors(taste.astype(np.float32), items.astype(np.float32))


def fit_rating_model(
    log: Interactions,
    n_items: int,
    scale: RatingScale,
    *,
    dim: int,
    reg: float,
    sweeps: int,
    seed: int,
) -> RatingModel:
    """Biased MF by ALS on the observed (non-NaN) ratings. Past ALS_FIT_USERS users, every
    sweep but the last runs on a seeded sample of that many users, and the last on all."""
    rated = np.isfinite(log.rating)
    n_users = log.n_users
    if not rated.any():  # implicit data: a constant model that never rates
        z = np.zeros
        return RatingModel(
            float("nan"),
            z(n_users, np.float32),
            z(n_items, np.float32),
            z((n_users, dim), np.float32),
            z((n_items, dim), np.float32),
            0.0,
            scale,
        )
    u, i, r = log.user[rated], log.item[rated], log.rating[rated].astype(np.float64)
    mu = float(r.mean())
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(3):
        bi = _group_mean(i, r - mu - bu[u], n_items, reg)
        bu = _group_mean(u, r - mu - bi[i], n_users, reg)
    g = np.random.default_rng(seed)
    p = g.normal(0, 0.05, (n_users, dim))
    q = g.normal(0, 0.05, (n_items, dim))
    resid = r - mu
    resid -= bu[u]
    resid -= bi[i]
    r_ui = sp.csr_matrix((resid, (u, i)), shape=(n_users, n_items))
    r_ui.sum_duplicates()
    if r_ui.nnz < resid.size:  # a user rated an item more than once: use the mean residual
        times = sp.csr_matrix((np.ones(resid.size), (u, i)), shape=(n_users, n_items))
        times.sum_duplicates()
        r_ui.data /= times.data
    fit_rows = r_ui
    if n_users > ALS_FIT_USERS and sweeps > 1:  # all but the last sweep on a seeded sample
        sample = np.sort(
            Streams(seed).generator("als-fit-users").choice(n_users, ALS_FIT_USERS, False)
        )
        fit_rows = r_ui[sample]
    for sweep in range(sweeps):
        rows = r_ui if sweep == sweeps - 1 else fit_rows
        p = _solve_rows(rows, q, reg)
        q = _solve_columns(rows, p, reg)
    del resid, r_ui, fit_rows
    f32 = np.float32
    model = RatingModel(
        mu, bu.astype(f32), bi.astype(f32), p.astype(f32), q.astype(f32), 0.0, scale
    )
    sq = 0.0
    for s in range(0, r.size, 1 << 22):  # residual std, in chunks
        e = slice(s, s + (1 << 22))
        sq += float(((r[e] - model.expected(u[e], i[e])) ** 2).sum())
    model.sigma = float(np.sqrt(sq / r.size))
    model.cuts = _ordinal_cuts(model, u, i, r, seed)
    return model


MAX_ORDINAL_VALUES = 21  # scales with more values are treated as continuous


def _scale_values(scale: RatingScale) -> np.ndarray:
    n = int(round((scale.high - scale.low) / scale.step)) + 1 if scale.step > 0 else 1
    return scale.low + scale.step * np.arange(max(n, 1))


def _ordinal_cuts(model: RatingModel, u, i, r, seed: int) -> np.ndarray | None:
    """Thresholds on ``expected + sigma * z`` (z drawn once, seeded) at the training ratings'
    cumulative shares, so the sampled training ratings have their histogram."""
    values = _scale_values(model.scale)
    if not 2 <= values.size <= MAX_ORDINAL_VALUES or model.sigma <= 0:
        return None
    index = np.clip(np.round((r - model.scale.low) / model.scale.step), 0, values.size - 1)
    shares = np.cumsum(np.bincount(index.astype(np.int64), minlength=values.size))[:-1] / r.size
    g = np.random.default_rng([seed, 0x0D1A])
    take = g.choice(r.size, size=min(r.size, 1_000_000), replace=False)
    latent = model.expected(u[take], i[take]).astype(np.float64)
    latent += model.sigma * g.standard_normal(take.size)
    return np.quantile(latent, shares)


def _group_mean(group: np.ndarray, values: np.ndarray, n: int, reg: float) -> np.ndarray:
    """Shrunk mean per group: sum / (count + reg)."""
    return np.bincount(group, values, n) / (np.bincount(group, minlength=n) + reg)


def _packed_outer(x: np.ndarray) -> np.ndarray:
    """Upper triangles of the outer products of the rows. x: (n, d) -> (n, d(d+1)/2) float32."""
    iu = np.triu_indices(x.shape[1])
    x32 = x.astype(np.float32)
    return x32[:, iu[0]] * x32[:, iu[1]]


def _ridge_solve(packed: np.ndarray, rhs: np.ndarray, reg: float) -> np.ndarray:
    """Solve ``(A + reg I) x = rhs`` per row. packed: (n, d(d+1)/2), rhs: (n, d) -> (n, d)."""
    d = rhs.shape[1]
    iu = np.triu_indices(d)
    where = np.empty((d, d), np.int64)  # position of (i, j) in the packed upper triangle
    where[iu] = np.arange(iu[0].size)
    where[iu[1], iu[0]] = where[iu]
    a = packed.astype(np.float64)[:, where.ravel()].reshape(-1, d, d)
    a[:, np.arange(d), np.arange(d)] += reg
    return np.linalg.solve(a, rhs[:, :, None])[:, :, 0]


def _indicator(r: sp.csr_matrix) -> sp.csr_matrix:
    ind = r.astype(np.float32)
    ind.data[:] = 1.0
    return ind


def _solve_rows(r: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    """Each row's ridge regression ``(O_u^T O_u + reg I) x = O_u^T r_u``, in row chunks.

    r: (n_rows, n_other) CSR of residuals; other: (n_other, d) small -> (n_rows, d).
    """
    outer = _packed_outer(other)
    ind = _indicator(r)

    def solve(start: int) -> np.ndarray:  # rows are independent: chunks run on threads
        sl = slice(start, min(start + _SOLVE_CHUNK, r.shape[0]))
        return _ridge_solve(ind[sl] @ outer, r[sl] @ other, reg)

    parts = map_user_blocks(solve, range(0, r.shape[0], _SOLVE_CHUNK))
    return np.concatenate(parts) if parts else np.empty((0, other.shape[1]))


def _solve_columns(r: sp.csr_matrix, rows: np.ndarray, reg: float) -> np.ndarray:
    """The same for every column of ``r``, accumulating the normal equations over row chunks,
    so the (n_rows, d(d+1)/2) outer products are never held at once.

    r: (n_rows, n_cols) CSR; rows: (n_rows, d) -> (n_cols, d).
    """
    d = rows.shape[1]
    a = np.zeros((r.shape[1], d * (d + 1) // 2))
    b = np.zeros((r.shape[1], d))
    ind = _indicator(r)

    def normal(start: int) -> tuple[np.ndarray, np.ndarray]:
        sl = slice(start, min(start + 4 * _SOLVE_CHUNK, r.shape[0]))
        return ind[sl].T @ _packed_outer(rows[sl]), r[sl].T @ rows[sl]

    # chunks on threads, a wave at a time, summed in chunk order: the same sums whatever the
    # threads, and no more than a wave of (n_cols, d(d+1)/2) parts held at once
    starts = list(range(0, r.shape[0], 4 * _SOLVE_CHUNK))
    for w in range(0, len(starts), MAX_THREADS):
        for a_part, b_part in map_in_threads(normal, starts[w : w + MAX_THREADS]):
            a += a_part
            b += b_part
    return _ridge_solve(a, b, reg)
