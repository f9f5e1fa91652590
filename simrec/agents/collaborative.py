"""The users' collaborative preference: the log's item-to-item structure, per user.

A user's collaborative score for item ``i`` is ``x_u @ W[:, i]``: their history ``x_u`` times
item-to-item weights ``W`` fitted on the log (:mod:`simrec.itemitem`): EASE on catalogs and logs
where its dense arithmetic fits (:data:`EASE_WORK`), its penalty chosen by how well it predicts
the log's latest choices, as a recommender's would be tuned; item-kNN with shrinkage beyond. Topic
tastes say which *kind* of item a user likes; this says which *items* people with the same
history went on to consume, the structure that collaborative recommenders learn and that a
synthetic log must carry to train them.

Scores are computed once per user at calibration, in blocks of users on threads. Where the
(n_users, n_items) table fits in :data:`COLLAB_CELLS` it is kept whole; beyond, each user keeps
their ``width`` best items (at least :data:`MIN_WIDTH`) and every other item gets the mean
score of the items dropped from that user's row (``floor``), so memory grows with users, not
with users x items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from simrec.agents.taste import SELECT_HOLDOUT, SELECT_MIN_ROWS, SELECT_USERS
from simrec.arrays import map_user_blocks
from simrec.data.dataset import Interactions
from simrec.itemitem import DENSE_ITEMS, EASE_MAX_ITEMS, cosine_neighbours, ease_weights
from simrec.rng import Streams

COLLAB_CELLS = 50_000_000  # stored (user, item) scores at most (200 MB of float32)
MIN_WIDTH = 64  # items kept per user when the whole table does not fit
EASE_WORK = 3e9  # multiply-adds of the dense EASE scores (interactions x items); above: kNN
EASE_L2S = (30.0, 100.0, 300.0, 1000.0, 3000.0)  # EASE's penalties tried (Steck: 200-3000)
DEFAULT_EASE_L2 = 300.0
TOP_K = 20  # the recall cut-off the penalty is chosen by
KNN_NEIGHBOURS, KNN_SHRINKAGE = 100, 20.0
TABLE_WORK = 3e9  # larger logs get no collaborative evidence (yet): 1M users x 5k items is 9e9
FOLDS = 5  # folds of users behind the out-of-fold scores
FIT_USERS = 20_000  # larger logs: the item-to-item weights from a seeded sample of this many
EPS_SHARE = 0.01  # the log feature's floor: this share of the mean positive score
_CELLS_PER_BLOCK = 1 << 24  # dense scores held per block of users


@dataclass
class CollaborativeTaste:
    """Per-user collaborative scores. ``scores``: (n_users, width) float32; ``items``:
    (n_users, width) int32, each row ascending, the items ``scores`` holds (None: every item,
    width = n_items); ``floor``: (n_users,) float32, the score of an item not held; ``model``:
    which item-to-item model, with its parameters; ``l2``: EASE's penalty (None: item-kNN);
    ``eps``: the smallest score the log
    feature tells apart (:meth:`log_score`)."""

    scores: np.ndarray
    items: np.ndarray | None
    floor: np.ndarray
    model: str
    eps: float = 1e-3
    l2: float | None = None  # EASE's penalty (None: item-kNN)

    def log_score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``log(max(score, eps))``, the watch model's collaborative evidence: a score
        estimates how likely the user is to consume the item (EASE regresses the history on
        itself), so its logarithm is on the scale of a logit, as the topic model's log
        P(item | user) is."""
        return np.log(np.maximum(self.score(users, items), np.float32(self.eps)))

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """users (n,), items (n, ...) valid item indices -> (n, ...) float32."""
        users = np.asarray(users, np.int64).reshape((-1,) + (1,) * (np.ndim(items) - 1))
        if self.items is None:
            return self.scores[users, items]
        held = self.items
        width = held.shape[1]
        lo = np.zeros(np.shape(items), np.int64)
        hi = np.full(np.shape(items), width, np.int64)
        while True:  # a binary search of each row, all queries at once
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            below = held[users, np.minimum(mid, width - 1)] < items
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        at = np.minimum(lo, width - 1)
        found = held[users, at] == items
        return np.where(found, self.scores[users, at], self.floor[users]).astype(np.float32)

    def rows(self, users: np.ndarray) -> CollaborativeTaste:
        """The scores of ``users`` (m,), as a table of m rows (one per agent)."""
        items = None if self.items is None else np.ascontiguousarray(self.items[users])
        return CollaborativeTaste(
            np.ascontiguousarray(self.scores[users]),
            items,
            self.floor[users],
            self.model,
            self.eps,
            self.l2,
        )


def item_weights(m: sp.csr_matrix, l2: float | None) -> np.ndarray | sp.csr_matrix:
    """Item-to-item weights of the binary (n_users, n_items) ``m``: EASE with penalty ``l2``, or
    item-kNN (KNN_NEIGHBOURS neighbours, shrinkage KNN_SHRINKAGE) when ``l2`` is None."""
    if l2 is not None:
        return ease_weights(m, l2)
    return cosine_neighbours(m, KNN_NEIGHBOURS, KNN_SHRINKAGE)


def uses_ease(m: sp.csr_matrix) -> bool:
    """Whether EASE's dense arithmetic fits: at most EASE_MAX_ITEMS items and EASE_WORK."""
    return m.shape[1] <= EASE_MAX_ITEMS and m.nnz * float(m.shape[1]) <= EASE_WORK


def select_ease_l2(log: Interactions, n_items: int, seed: int) -> float:
    """EASE's penalty, chosen as a recommender's is tuned: the one of EASE_L2S whose model of
    each user's earlier interactions has the highest Recall@TOP_K on the user's latest
    SELECT_HOLDOUT share (earlier items excluded), on a seeded sample of at most SELECT_USERS
    users; ties to the larger penalty. Too few held-out choices (under SELECT_MIN_ROWS):
    DEFAULT_EASE_L2."""
    sample = log
    if log.n_users > SELECT_USERS:
        g = Streams(seed).generator("ease-l2")
        sample = log.of_users(np.sort(g.choice(log.n_users, SELECT_USERS, replace=False)))
    early_rows, late_rows = sample.latest(SELECT_HOLDOUT)
    if late_rows.size < SELECT_MIN_ROWS:
        return DEFAULT_EASE_L2
    early = sample.take(early_rows).matrix(n_items)
    late = sample.take(late_rows).matrix(n_items)
    users = np.flatnonzero(np.diff(late.indptr) > 0)
    scores = {}
    for l2 in EASE_L2S:
        b = ease_weights(early, l2)
        hits = 0.0
        for lo in range(0, users.size, 1024):
            u = users[lo : lo + 1024]
            s = np.asarray(early[u] @ b)
            s[early[u].toarray() > 0] = -np.inf
            top = np.argpartition(-s, TOP_K - 1, axis=1)[:, :TOP_K] if n_items > TOP_K else None
            shown = np.zeros(s.shape, bool)
            if top is None:
                shown[:] = True
            else:
                np.put_along_axis(shown, top, True, axis=1)
            rel = late[u].toarray() > 0
            hits += float(((shown & rel).sum(axis=1) / rel.sum(axis=1)).sum())
        scores[l2] = hits / users.size
    return max(EASE_L2S, key=lambda l2: (scores[l2], l2))


def fit_collaborative(log: Interactions, n_items: int, seed: int = 0) -> CollaborativeTaste:
    """Every user's collaborative scores: EASE with the penalty :func:`select_ease_l2`
    chooses where :func:`uses_ease`, else item-kNN; past FIT_USERS users the weights are
    fitted on a seeded sample of that many (co-occurrence estimates settle long before)."""
    m = log.confidence(n_items)  # binary without counts
    n_users = m.shape[0]
    if uses_ease(m):
        l2 = select_ease_l2(log, n_items, seed)
        label = f"ease(l2={l2:g})"
    else:
        l2, label = None, f"itemknn(neighbours={KNN_NEIGHBOURS}, shrinkage={KNN_SHRINKAGE:g})"
    dense = n_users * n_items <= COLLAB_CELLS
    width = n_items if dense else min(n_items, max(MIN_WIDTH, COLLAB_CELLS // max(n_users, 1)))
    scores, items, floor = _table(m, item_weights(m[fit_rows(n_users, seed)], l2), width, dense)
    positive = scores[scores > 0]
    eps = EPS_SHARE * float(positive.mean()) if positive.size else 1.0
    return CollaborativeTaste(scores, items, floor, label, eps, l2)


def fit_rows(n_users: int, seed: int) -> np.ndarray | slice:
    """The users the weights are fitted on: all, or a seeded sample of FIT_USERS."""
    if n_users <= FIT_USERS:
        return slice(None)
    g = Streams(seed).generator("collab-fit-users")
    return np.sort(g.choice(n_users, FIT_USERS, replace=False))


def out_of_fold_scores(
    log: Interactions, n_items: int, fitted: CollaborativeTaste, users, items, seed: int = 0
) -> np.ndarray:
    """The collaborative scores of pairs (users (m,), items (m,)) from weights that never saw
    the pair's user: what the watch model is calibrated on in sample, so that no user's own
    interactions vouch for their items (as the genre taste leaves each interaction out). A
    log whose weights were fitted on every user: FOLDS seeded folds of users, each scored by
    weights fitted on the others. A larger log, whose weights were fitted on a sample: users
    outside it are scored by those weights, and the sample's users by weights fitted on up to
    FIT_USERS users outside it. -> (m,) float32."""
    m = log.confidence(n_items)  # binary without counts
    n_users = m.shape[0]
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    fitting = np.zeros(n_users, bool)
    fitting[fit_rows(n_users, seed)] = True
    if fitting.all():
        group = Streams(seed).generator("collab-folds").permutation(n_users) % FOLDS
        fits = [(group == f, ~(group == f)) for f in range(FOLDS)]
    else:
        outside = np.flatnonzero(~fitting)
        g = Streams(seed).generator("collab-complement")
        other = np.zeros(n_users, bool)
        other[g.choice(outside, min(FIT_USERS, outside.size), replace=False)] = True
        fits = [(~fitting, fitting), (fitting, other)]
    out = np.zeros(users.size, np.float32)
    for scored, train in fits:
        pairs = np.flatnonzero(scored[users])
        if pairs.size:
            w = item_weights(m[np.flatnonzero(train)], fitted.l2)
            out[pairs] = pair_scores(m, w, users[pairs], items[pairs])
    return out


def pair_scores(
    m: sp.csr_matrix, w: np.ndarray | sp.csr_matrix, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """``m[u] @ w[:, i]`` for each pair: m (n_users, n_items) CSR (binary, or a log's
    confidence), w (n_items, n_items) dense or CSR, users and items (p,) -> (p,) float32,
    summed over each user's history."""
    counts = np.diff(m.indptr)[users]
    starts = np.repeat(m.indptr[users], counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    history = m.indices[starts + within].astype(np.int64)
    target = np.repeat(items, counts)
    if sp.issparse(w) and w.shape[0] <= DENSE_ITEMS:
        w = w.toarray()
    if sp.issparse(w):
        w = w.tocsr()
        w.sort_indices()
        keys = np.repeat(np.arange(w.shape[0], dtype=np.int64), np.diff(w.indptr)) * w.shape[1]
        keys += w.indices
        query = history * w.shape[1] + target
        values = np.zeros(query.size)
        if keys.size:
            at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            values = np.where(keys[at] == query, w.data[at], 0.0)
    else:
        values = w[history, target]
    pair = np.repeat(np.arange(users.size), counts)
    values = values * m.data[starts + within]  # 1 in a binary history
    return np.bincount(pair, values, users.size).astype(np.float32)


def no_collaborative(n_users: int, why: str = "none") -> CollaborativeTaste:
    """Scores of 0 for every user and item (``brain.collaborative: none``, or a log past
    TABLE_WORK, ``why`` says): a constant feature, which the watch model's regression gives
    no weight."""
    zeros = np.zeros((n_users, 1), np.float32)
    return CollaborativeTaste(zeros, np.zeros((n_users, 1), np.int32), zeros[:, 0], why)


def table_work(m: sp.csr_matrix) -> float:
    """Multiply-adds and cells of the score table of the binary (n_users, n_items) ``m``."""
    per_interaction = m.shape[1] if uses_ease(m) else KNN_NEIGHBOURS
    return m.nnz * float(per_interaction) + m.shape[0] * float(m.shape[1])


def _table(
    m: sp.csr_matrix, w: np.ndarray | sp.csr_matrix, width: int, dense: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The score table of the rows of ``m`` under weights ``w``, in blocks of rows on threads:
    scores (n, width), the items they are of (None: dense), and the floor (n,)."""
    n, n_items = m.shape
    step = max(64, _CELLS_PER_BLOCK // max(n_items, 1))

    def block(lo: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        s = m[lo : lo + step] @ w
        s = np.asarray(s.toarray() if sp.issparse(s) else s, np.float32)
        if dense:
            return s, None, np.zeros(s.shape[0], np.float32)
        top = np.sort(np.argpartition(-s, width - 1, axis=1)[:, :width], axis=1)
        kept = np.take_along_axis(s, top, axis=1)
        rest = (s.sum(axis=1) - kept.sum(axis=1)) / max(n_items - width, 1)
        return kept, top.astype(np.int32), rest.astype(np.float32)

    parts = map_user_blocks(block, range(0, n, step))
    if not parts:
        return np.zeros((0, width), np.float32), None, np.zeros(0, np.float32)
    scores = np.concatenate([p[0] for p in parts])
    items = None if dense else np.concatenate([p[1] for p in parts])
    return scores, items, np.concatenate([p[2] for p in parts]).astype(np.float32)
