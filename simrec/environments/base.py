"""The Recommender contract and its helpers.

A recommender serves one slate of ``k`` items per user in a batch. Exclusions arrive as a CSR
matrix whose rows are aligned with ``users`` (row j belongs to ``users[j]``). Randomness arrives
as a :class:`PolicyRandomness`: draws keyed by (run seed, tick, page, user), so a stochastic
policy's slates do not depend on how users are batched. (DESIGN.md first named a
``np.random.Generator`` here; a shared generator would make each user's slate depend on its
batch-mates, which breaks byte-identical output across batch sizes.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

# excluded_mask is re-exported: policies, and plug-in policies, import it from here
from simrec.arrays import excluded_mask as excluded_mask
from simrec.data.dataset import Catalog, confidence_matrix
from simrec.errors import ConfigError
from simrec.rng import Streams


@dataclass
class Slates:
    """items: (n, k) int64 item indices (-1 where the catalog ran out); scores: (n, k) float32;
    pscore_item_position: (n, k) float64 in (0, 1], the probability that the policy put this
    item at this position (1.0 for deterministic policies); pscore_slate: (n,) float64, the
    probability of the whole slate, NaN when unknown; deterministic: True when no draw was made;
    pscore_cascade: (n, k) float64, optional, the probability of the slate's first j+1 items in
    that order at position j (what cascade estimators such as RIPS need); None when unknown.
    """

    items: np.ndarray
    scores: np.ndarray
    pscore_item_position: np.ndarray
    pscore_slate: np.ndarray
    deterministic: bool
    pscore_cascade: np.ndarray | None = None


@dataclass(frozen=True)
class PolicyRandomness:
    """Counter-based draws for one page of one tick: ``uniform(users, n) -> (len(users), n)``."""

    streams: Streams
    tick: int
    page: int
    purpose: str = "policy"

    def uniform(self, users: np.ndarray, n: int, round_: int = 0) -> np.ndarray:
        """Uniforms in (0, 1) for each user; ``round_`` gives fresh draws for retries."""
        return self.streams.uniform(f"{self.purpose}/{round_}", users, self.tick, self.page, n)


@runtime_checkable
class Recommender(Protocol):
    """What the simulator needs from a policy: ``name``, ``fit`` and ``recommend``.

    Optional: ``family`` (str), the model family the policy belongs to ("popularity",
    "matrix factorisation", ...), which the fidelity report uses to flag policies that share
    the simulated users' taste model (``unknown`` when absent).
    :func:`simrec.testing.check_recommender` checks a policy against this contract.
    """

    name: str

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        """Learn from a log with columns user_index, item_index, rating, timestamp."""

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        """Slates for ``users`` (n,) int64; ``exclude``: (n, n_items) CSR aligned with users."""


@runtime_checkable
class SessionRanking(Protocol):
    """Optional ability of a deterministic Recommender: ``session_ranking = True`` promises
    that ``recommend`` ranks a user's allowed items the same way whatever ``k``, page or
    draws, and returns deterministic slates (propensities 1).

    The simulator then asks once per session for every page at once (``k x max_pages`` items,
    excluding what each user consumed) and shows the p-th block of ``k`` on page p: the same
    slates as asking page by page with the earlier pages excluded, for one scoring per session
    instead of one per page. :func:`simrec.testing.check_recommender` checks the promise;
    :func:`ranks_sessions` tells whether a policy makes it.
    """

    session_ranking: bool


@runtime_checkable
class SlateProbabilities(Protocol):
    """Optional ability of a stochastic Recommender: how likely it is to show any given slate.

    ``slate_probabilities(users, k, *, exclude, rng, items)`` -> ``(p_item_position,
    p_prefix)``, each (n, k): the probability that the policy, asked as ``recommend`` would be,
    puts ``items[u, j]`` at position j, and that it shows the slate's first j + 1 items in that
    order (the cascade); 0 from the first slot holding an item it could not show. Off-policy
    evaluation needs it to weigh logged slates by a stochastic target policy;
    :func:`simrec.testing.check_recommender` checks that it agrees with the propensities
    ``recommend`` gives its own slates.
    """

    def slate_probabilities(
        self,
        users: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        rng: PolicyRandomness,
        items: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]: ...


def ranks_sessions(policy: object) -> bool:
    """True when ``policy`` promises :class:`SessionRanking` (the attribute set to True)."""
    return isinstance(policy, SessionRanking) and policy.session_ranking is True


def page_of(session: Slates, rows: np.ndarray, page: int, k: int) -> Slates:
    """Page ``page`` (the block of ``k`` slots from ``page * k``) of the ``rows`` (n,) of a
    deterministic session ranking (m, k x pages), as a slate (n, k) of its own."""
    cols = slice(page * k, (page + 1) * k)
    n = rows.size
    items, scores = session.items[rows, cols], session.scores[rows, cols]
    return Slates(items, scores, np.ones((n, k)), np.ones(n), True)


def first_k(candidates: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` allowed candidates per row, in order. (n, m), (n, m) -> (n, k) items with -1
    padding, and the (n,) count found.

    >>> first_k(np.array([[5, 6, 7, 8]]), np.array([[False, True, True, True]]), 2)
    (array([[6, 7]]), array([2]))
    """
    n, m = allowed.shape
    out = np.full((n, k), -1, np.int64)
    if m == 0:
        return out, np.zeros(n, np.int64)
    rank = np.cumsum(allowed, axis=1, dtype=np.int16 if m < 32_000 else np.int64)
    flat = np.flatnonzero(allowed & (rank <= k))  # row-major, so rows and ranks are in order
    row = flat // m
    col = flat - row * m
    picked = candidates[0, col] if n > 1 and candidates.strides[0] == 0 else candidates[row, col]
    out.ravel()[row * k + rank.ravel()[flat] - 1] = picked
    return out, np.minimum(rank[:, -1], k).astype(np.int64)


def resolve_class(spec: str, builtins: dict[str, type], what: str) -> type:
    """A built-in name or ``package.module:ClassName`` -> the class; ConfigError otherwise."""
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        raise ConfigError(
            f"unknown {what} '{spec}': expected one of {', '.join(sorted(builtins))} "
            f"or 'package.module:ClassName'"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{what} '{spec}': cannot import module '{module_name}': {err}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"{what} '{spec}': module '{module_name}' has no attribute '{attr}'")
    return cls


def last_shown(prefix: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The prefix probability (n, k) at each row's last shown slot: the slate's probability.

    >>> last_shown(np.array([[0.5, 0.2, 1.0]]), np.array([[True, True, False]]))
    array([0.2])
    """
    last = np.maximum(valid.sum(axis=1) - 1, 0)
    return prefix[np.arange(prefix.shape[0]), last]


def with_propensities(
    items: np.ndarray, scores: np.ndarray, p_ip: np.ndarray, p_prefix: np.ndarray
) -> Slates:
    """Slates of a stochastic policy from its probabilities of the drawn slates (empty slots
    get 1.0, as every policy logs them)."""
    valid = items >= 0
    prefix = np.where(valid, p_prefix, 1.0)
    return Slates(
        items, scores, np.where(valid, p_ip, 1.0), last_shown(prefix, valid), False, prefix
    )


_CHUNK_ROWS = 1024  # users scored at once (bounds the (rows, n_items) score block)


def top_k_by_score(
    score_rows: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best-scoring allowed items per user, best first.

    ``score_rows(users_chunk)`` returns the (c, n_items) float32 scores of a chunk; a user's
    scores must not depend on the other users of the chunk (see :func:`exact_factors` for BLAS
    products). Returns items (n, k) int64 (-1 where fewer than k items are allowed) and their scores
    (n, k) float32 (0 where no item).
    """
    n = users.shape[0]
    items = np.full((n, k), -1, np.int64)
    scores = np.zeros((n, k), np.float32)
    for start in range(0, n, _CHUNK_ROWS):
        rows = np.arange(start, min(n, start + _CHUNK_ROWS))
        s = np.array(score_rows(users[rows]), dtype=np.float32)
        if exclude is not None and exclude.nnz:
            sub = exclude[rows[0] : rows[-1] + 1]
            r = np.repeat(np.arange(rows.size), np.diff(sub.indptr))
            s[r, sub.indices] = -np.inf
        kk = min(k, s.shape[1])
        if kk == 0:
            continue
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < s.shape[1] else None
        if part is None:
            part = np.broadcast_to(np.arange(s.shape[1]), s.shape)
        top = np.take_along_axis(s, part, axis=1)
        if part.shape[1] < s.shape[1]:
            _lowest_ties_first(s, part, top)
        # best first; equal scores by item index, so ties never depend on the partition
        order = np.lexsort((part, -top), axis=1)
        chosen = np.take_along_axis(part, order, axis=1)
        best = np.take_along_axis(top, order, axis=1)
        ok = np.isfinite(best)
        items[rows, :kk] = np.where(ok, chosen, -1)
        scores[rows, :kk] = np.where(ok, best, 0.0)
    return items, scores


def _lowest_ties_first(s: np.ndarray, part: np.ndarray, top: np.ndarray) -> None:
    """Where a row's k-th best score is shared by more items than the partition kept, keep the
    lowest-indexed of them (in place): the k best are then the same whatever k asks, never the
    partition's arbitrary pick. s: (c, n) scores; part, top: (c, k) kept items and scores."""
    kth = top.min(axis=1)
    tied_kept = top == kth[:, None]
    tied_all = s == kth[:, None]
    fix = np.flatnonzero(np.isfinite(kth) & (tied_all.sum(axis=1) > tied_kept.sum(axis=1)))
    if fix.size == 0:
        return
    need = tied_kept[fix].sum(axis=1)
    every = np.broadcast_to(np.arange(s.shape[1]), (fix.size, s.shape[1]))
    first, _ = first_k(every, tied_all[fix], int(need.max()))
    sub = part[fix]
    sub[tied_kept[fix]] = first[np.arange(first.shape[1])[None, :] < need[:, None]]
    part[fix] = sub


def ranked_slates(
    score_rows: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
) -> Slates:
    """Deterministic slates of the ``k`` best-scoring allowed items per user
    (:func:`top_k_by_score`), every propensity 1."""
    items, scores = top_k_by_score(score_rows, users, k, exclude)
    n = users.shape[0]
    return Slates(items, scores, np.ones((n, k)), np.ones(n), True)


class ScoreRanker:
    """A Recommender over a fixed score function, already fitted: ``score_rows(users)``
    gives the (c, n_items) scores of a chunk of users (each row independent of the others);
    it shows the ``k`` best allowed items. For evaluating anything that scores items (a
    population's choice probability, a model restricted to some items) as a recommender."""

    def __init__(self, score_rows: Callable[[np.ndarray], np.ndarray], name: str = "scores"):
        self.score_rows, self.name = score_rows, name

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        """Nothing to learn: the scores are given."""

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        return ranked_slates(self.score_rows, users, k, exclude)


def exact_factors(x: np.ndarray, n_factors: int) -> tuple[np.ndarray, float]:
    """Factors rounded to a fixed-point grid so that dot products are exact in float64.

    A BLAS matrix product sums in an order that depends on the matrix's shape and on the row's
    place in it, so a user's float scores could change in the last bits with the batch. With
    every entry an integer below 2**b, where ``2 * b + log2(n_factors) < 53``, each product and
    every partial sum is an exactly representable integer: any summation order gives the same
    result. x: (n, d) -> (integer-valued float64 (n, d), the scale to divide by).
    """
    bits = (52 - int(np.ceil(np.log2(max(n_factors, 2))))) // 2
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0:
        return np.zeros(x.shape), 1.0
    scale = 2.0 ** (bits - 1 - int(np.ceil(np.log2(peak))))
    return np.round(x.astype(np.float64) * scale), scale


def history_matrix(
    interactions: pa.Table, n_items: int, n_users: int | None = None, weights: str = "binary"
) -> sp.csr_matrix:
    """(n_users, n_items) float32 CSR of a fit log (columns user_index, item_index, rating).

    ``weights``: ``binary`` (1 per user-item pair), ``rating`` (the rating, 1 where missing;
    repeated pairs keep the last rating) or ``confidence`` (``1 + log`` of the pair's total
    ``count`` where the log has a count column, as :meth:`Interactions.confidence`; binary
    without one).
    """
    users = interactions.column("user_index").to_numpy().astype(np.int64)
    items = interactions.column("item_index").to_numpy().astype(np.int64)
    n_users = int(users.max()) + 1 if n_users is None and users.size else (n_users or 0)
    if weights == "confidence" and "count" in interactions.column_names:
        count = interactions.column("count").to_numpy(zero_copy_only=False)
        return confidence_matrix(users, items, count, (n_users, n_items))
    if weights == "rating":
        r = interactions.column("rating").to_numpy(zero_copy_only=False).astype(np.float32)
        value = np.where(np.isfinite(r), r, 1.0).astype(np.float32)
    else:
        value = np.ones(users.size, np.float32)
    key = users * n_items + items
    _, last = np.unique(key[::-1], return_index=True)  # one entry per pair: the latest row
    keep = users.size - 1 - last
    m = sp.csr_matrix((value[keep], (users[keep], items[keep])), shape=(n_users, n_items))
    m.sort_indices()
    return m


def check_slates(slates: object, n: int, k: int, n_items: int, who: str) -> None:
    """Raise ConfigError unless ``slates`` is a Slates of the promised shapes and ranges.

    Cheap enough for every page: shapes, dtypes and value ranges, no per-row work.
    """
    if not isinstance(slates, Slates):
        raise ConfigError(
            f"policy '{who}': recommend() must return simrec.environments.Slates, "
            f"got {type(slates).__name__}"
        )
    for field_name, shape in (
        ("items", (n, k)),
        ("scores", (n, k)),
        ("pscore_item_position", (n, k)),
        ("pscore_slate", (n,)),
    ):
        got = np.shape(getattr(slates, field_name))
        if got != shape:
            raise ConfigError(
                f"policy '{who}': recommend() returned {field_name} of shape {got}, "
                f"expected {shape}"
            )
    items = np.asarray(slates.items)
    if items.dtype.kind not in "iu":
        raise ConfigError(
            f"policy '{who}': recommend() returned items of dtype {items.dtype}, expected integers"
        )
    if items.size and (items.min() < -1 or items.max() >= n_items):
        bad = items.min() if items.min() < -1 else items.max()
        raise ConfigError(
            f"policy '{who}': recommend() returned item index {bad}, expected -1 (no item) or "
            f"0..{n_items - 1}"
        )
    p = np.asarray(slates.pscore_item_position, np.float64)[items >= 0]
    if p.size and not ((p > 0) & (p <= 1)).all():
        raise ConfigError(
            f"policy '{who}': pscore_item_position must lie in (0, 1], found "
            f"{p[~((p > 0) & (p <= 1))][0]!r}"
        )
