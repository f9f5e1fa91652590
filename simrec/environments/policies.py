"""Built-in policies: ``random`` and ``popular``. Both exclude what each user already consumed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from simrec.data.dataset import Catalog
from simrec.environments.base import (
    PolicyRandomness,
    Slates,
    excluded_mask,
    first_k,
    with_propensities,
)
from simrec.errors import ConfigError


class RandomPolicy:
    """Uniform without replacement over the items a user may still see.

    Exact propensities: with ``A`` allowed items, every item is at every position with
    probability ``1/A``; the slate's probability is ``prod_j 1/(A - j)``.
    """

    name = "random"
    family = "none"

    def __init__(self) -> None:
        self.n_items = 0

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        self.n_items = catalog.n_items

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        n = users.shape[0]
        n_excluded = np.zeros(n, np.int64) if exclude is None else np.diff(exclude.indptr)
        allowed_total = self.n_items - n_excluded
        items = np.full((n, k), -1, np.int64)
        todo = np.arange(n)
        width = 2 * k + 16
        for round_ in range(64):
            if todo.size == 0:
                break
            u = rng.uniform(users[todo], width, round_)
            cand = np.minimum((u * self.n_items).astype(np.int64), self.n_items - 1)
            # rejection sampling: drop excluded items and repeats, keep draw order
            ex = exclude[todo] if exclude is not None else None
            ok = ~excluded_mask(cand, ex) & _first_occurrence(cand)
            if round_ > 0:  # continue filling rows that ran short in an earlier round
                prev = items[todo]
                ok &= ~(cand[:, :, None] == prev[:, None, :]).any(axis=2)
                merged = np.concatenate([prev, np.where(ok, cand, -1)], axis=1)
                chosen, found = first_k(merged, merged >= 0, k)
            else:
                chosen, found = first_k(cand, ok, k)
            items[todo] = chosen
            need = np.minimum(k, allowed_total[todo])
            todo = todo[found < need]
            width *= 2
        p_ip, p_prefix = uniform_probabilities(allowed_total, items >= 0)
        return with_propensities(items, np.zeros((n, k), np.float32), p_ip, p_prefix)

    def slate_probabilities(
        self,
        users: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None,
        rng: PolicyRandomness,
        items: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities of given slates ``items`` (n, k): item at position and prefix
        (cascade), 0 from the first slot holding an item this policy could not show."""
        n_excluded = np.zeros(users.size, np.int64) if exclude is None else np.diff(exclude.indptr)
        possible = (items >= 0) & ~excluded_mask(items, exclude)
        return uniform_probabilities(self.n_items - n_excluded, possible)


def uniform_probabilities(
    allowed: np.ndarray, possible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drawing uniformly without replacement from ``allowed`` (n,) items: the probability of an
    item at a position (1/A) and of a slate's first j+1 items (prod_{l<=j} 1/(A - l)).
    ``possible`` (n, k): slots holding an item that could be drawn; 0 there and, for prefixes,
    from the first impossible slot on.

    >>> p, c = uniform_probabilities(np.array([4]), np.array([[True, True]]))
    >>> p.tolist(), c.round(4).tolist()
    ([[0.25, 0.25]], [[0.25, 0.0833]])
    """
    a = np.maximum(np.asarray(allowed, np.float64), 1.0)[:, None]
    k = possible.shape[1]
    reachable = np.cumprod(possible, axis=1).astype(bool)
    prefix = np.cumprod(1.0 / np.maximum(a - np.arange(k)[None, :], 1.0), axis=1)
    return np.where(possible, 1.0 / a, 0.0), np.where(reachable, prefix, 0.0)


def _first_occurrence(cand: np.ndarray) -> np.ndarray:
    """(n, m) -> (n, m) bool, True where the value did not occur earlier in its row."""
    order = np.argsort(cand, axis=1, kind="stable")
    s = np.take_along_axis(cand, order, axis=1)
    first_sorted = np.ones(cand.shape, bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    out = np.empty(cand.shape, bool)
    np.put_along_axis(out, order, first_sorted, axis=1)
    return out


class PopularPolicy:
    """Most-interacted items first (ties by item index); deterministic.

    Parameters
    ----------
    half_life_days:
        If set, each interaction counts ``0.5 ** (age / half_life)`` relative to the newest one.
    """

    name = "popular"
    family = "popularity"
    session_ranking = True  # one ranking for everyone: pages are its blocks (SessionRanking)

    def __init__(self, half_life_days: float | None = None) -> None:
        if half_life_days is not None and not half_life_days > 0:
            raise ConfigError(
                f"policy.params.half_life_days: expected a positive number, got {half_life_days!r}"
            )
        self.half_life_days = half_life_days
        self.ranking = np.zeros(0, np.int64)
        self.rank_of = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float32)

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        items = interactions.column("item_index").to_numpy().astype(np.int64)
        weights = None
        if self.half_life_days is not None and len(items):
            ts = interactions.column("timestamp").to_numpy().astype(np.float64)
            weights = 0.5 ** ((ts.max() - ts) / (self.half_life_days * 86400.0))
        counts = np.bincount(items, weights=weights, minlength=catalog.n_items).astype(np.float64)
        self.ranking = np.lexsort((np.arange(catalog.n_items), -counts))
        self.rank_of = np.empty_like(self.ranking)
        self.rank_of[self.ranking] = np.arange(self.ranking.size)
        self.scores = (counts / max(counts.max(), 1e-12)).astype(np.float32)

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        n, n_items = users.shape[0], self.ranking.size
        if exclude is None or exclude.nnz == 0:
            items = np.broadcast_to(self.ranking[:k], (n, min(k, n_items))).copy()
            items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
        else:
            items = self._first_allowed(exclude, k)
        valid = items >= 0
        scores = np.where(valid, self.scores[np.maximum(items, 0)], 0.0).astype(np.float32)
        return Slates(items, scores, np.ones((n, k)), np.ones(n), True)

    def _first_allowed(self, exclude: sp.csr_matrix, k: int) -> np.ndarray:
        """(n, k) most popular allowed items per row: one pass over the first W ranks, where W
        is k plus the most exclusions any row has among the top ranks; rarer rows with more
        exclusions than the cap fall back to a wider search."""
        n, n_items = exclude.shape[0], self.ranking.size
        cap = min(n_items, k + 128)
        rank = self.rank_of[exclude.indices]
        near = np.flatnonzero(rank < cap)  # exclusions further down cannot matter
        rows = np.searchsorted(exclude.indptr, near, side="right") - 1
        rank = rank[near]
        per_row = np.bincount(rows, minlength=n)
        # rows grouped by how many top-ranked items they exclude: each group is searched only
        # as wide as it needs (k plus its largest count), most rows in a narrow window
        items = np.full((n, k), -1, np.int64)
        group = np.searchsorted(np.array([16, 64]), per_row, side="left")
        entry_group = group[rows]
        local = np.empty(n, np.int64)
        for g in np.unique(group):
            members = np.flatnonzero(group == g)
            local[members] = np.arange(members.size)
            width = min(cap, k + int(per_row[members].max()))  # never past the cap
            mine = (entry_group == g) & (rank < width)
            blocked = np.zeros(members.size * width, bool)
            blocked[local[rows[mine]] * width + rank[mine]] = True
            blocked = blocked.reshape(members.size, width)
            cand = np.broadcast_to(self.ranking[:width], (members.size, width))
            chosen, found = first_k(cand, ~blocked, k)
            items[members] = chosen
            # rows with more exclusions than the window allows (past the cap): search wider
            short = members[found < k] if width < n_items else np.zeros(0, np.int64)
            if short.size:
                wide = np.broadcast_to(self.ranking, (short.size, n_items))
                items[short], _ = first_k(wide, ~excluded_mask(wide, exclude[short]), k)
        return items


class OrganicPolicy:
    """What a user comes across without a recommender: each item the user has not consumed is
    on the slate with probability proportional to ``(interactions + 1) ** exposure`` in the fit
    log (``brain.exposure``'s reading of the log: 0 uniform, 1 an item's share of the log is
    how often people meet it), in a random order.

    The slate is a systematic sample with probabilities proportional to size (Madow 1949):
    item i is included with probability ``pi_i = k w_i / W`` over the user's allowed weight W
    (items whose ``pi`` would exceed 1 are always included and the rest share the remaining
    slots), and the included items are shuffled, so P(item i at position j) = ``pi_i / k``
    exactly, at every position. The joint probability of a whole slate depends on the
    catalog's order, so ``pscore_slate`` is NaN (unknown). The synthetic-data report exposes
    its users this way by default: a log without impressions was written by people meeting
    items roughly so. The work per page grows with users x items (each user's own allowed
    weights), fine for catalogs of tens of thousands of items.
    """

    name = "organic"
    family = "popularity"

    def __init__(self, exposure: float = 1.0) -> None:
        if not (isinstance(exposure, int | float) and 0 <= exposure <= 2) or isinstance(
            exposure, bool
        ):
            raise ConfigError(
                f"policy.params.exposure: expected a number in [0, 2], got {exposure!r}"
            )
        self.exposure = float(exposure)
        self.weights = np.zeros(0)

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        items = interactions.column("item_index").to_numpy().astype(np.int64)
        counts = np.bincount(items, minlength=catalog.n_items).astype(np.float64)
        self.weights = (counts + 1.0) ** self.exposure

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        n, m = users.shape[0], self.weights.size
        items = np.full((n, k), -1, np.int64)
        p_ip = np.ones((n, k))
        u = rng.uniform(users, k + 1)  # the sample's start, then the shuffle's keys
        step = max(1, (1 << 22) // max(m, 1))
        for lo in range(0, n, step):
            rows = slice(lo, min(n, lo + step))
            ex = exclude[rows] if exclude is not None else None
            items[rows], p_ip[rows] = self._block(u[rows], ex, k)
        scores = np.where(items >= 0, p_ip, 0.0).astype(np.float32)
        return Slates(items, scores, p_ip, np.full(n, np.nan), False)

    def _block(
        self, u: np.ndarray, exclude: sp.csr_matrix | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Slates of one block of users: u (b, k + 1) uniforms -> items (b, k), P(item at its
        position) (b, k)."""
        b, m = u.shape[0], self.weights.size
        w = np.broadcast_to(self.weights, (b, m)).copy()
        if exclude is not None and exclude.nnz:
            w[np.repeat(np.arange(b), np.diff(exclude.indptr)), exclude.indices] = 0.0
        slots = np.minimum(k, (w > 0).sum(axis=1))  # (b,) items the slate can hold
        certain = np.zeros((b, m), bool)
        pi = np.zeros((b, m))
        for _ in range(k):  # items that would be drawn more than surely are always shown
            rest = np.where(certain, 0.0, w)
            left = slots - certain.sum(axis=1)
            total = rest.sum(axis=1, keepdims=True)
            pi = left[:, None] * rest / np.where(total > 0, total, 1.0)
            over = pi >= 1.0
            if not over.any():
                break
            certain |= over
        pi = np.where(certain, 0.0, np.minimum(pi, 1.0))
        left = slots - certain.sum(axis=1)
        # systematic sampling: points start + 0, 1, ..., left - 1 on each row's cumulative pi
        offset = np.arange(b, dtype=np.float64)[:, None] * (k + 1)
        cum = (np.cumsum(pi, axis=1) + offset).ravel()
        points = u[:, :1] + np.arange(k)[None, :]
        take = np.arange(k)[None, :] < left[:, None]
        hit = np.minimum(np.searchsorted(cum, (points + offset)[take], side="right"), cum.size - 1)
        chosen = np.zeros((b, m), bool)
        chosen.ravel()[hit] = True
        chosen |= certain
        inclusion = np.where(certain, 1.0, pi)
        # the included items (at most k per row) in the order of their shuffle keys
        r, c = np.nonzero(chosen)
        per_row = np.bincount(r, minlength=b)
        rank = np.arange(r.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        key = u[r, 1 + rank]
        order = np.lexsort((key, r))
        r, c = r[order], c[order]
        position = np.arange(r.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        items = np.full((b, k), -1, np.int64)
        p_ip = np.ones((b, k))
        items[r, position] = c
        p_ip[r, position] = inclusion[r, c] / np.maximum(slots[r], 1)
        return items, p_ip
