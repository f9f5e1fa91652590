"""Discrimination: can each simulated user tell its held-out items from items it never met?
(Agent4Rec's protocol; see :mod:`simrec.evaluation.fidelity_report`.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from scipy.special import logsumexp

from simrec import build
from simrec.agents.brains.utility import UtilityBrain
from simrec.agents.persona import Personas
from simrec.config import RunConfig
from simrec.data.dataset import Dataset, Interactions
from simrec.evaluation.fidelity_report.baselines import Tuned, fitted
from simrec.evaluation.fidelity_report.split import Split, temporal_split
from simrec.rng import Streams

RATIOS = (1, 2, 3, 9)


MAX_POSITIVES = 50  # held-out items per user in the discrimination sets


@dataclass
class Sets:
    """users, items, labels: (n,) of every (user, item) shown, for the largest ratio; rank:
    (n,) the negative's draw rank within its user (positives -1); n_pos: (n,) positives of
    that user. A ratio r uses the positives and the negatives with rank < r * n_pos."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    rank: np.ndarray
    n_pos: np.ndarray

    def select(self, ratio: int) -> np.ndarray:
        return self.labels | (self.rank < ratio * self.n_pos)


def discrimination_sets(
    test: Interactions, consumed: sp.csr_matrix, n_items: int, seed: int, purpose: str
) -> Sets:
    """Held-out items (up to MAX_POSITIVES per user, latest first) and max(RATIOS) times as many
    items the user never interacted with (``consumed``: (n_users, n_items)), drawn uniformly."""
    g = Streams(seed).generator(purpose)
    order = np.lexsort((test.item, -test.timestamp, test.user))
    cols: dict[str, list] = {k: [] for k in ("users", "items", "labels", "rank", "n_pos")}
    top = max(RATIOS)
    users, starts = np.unique(test.user[order], return_index=True)
    ends = np.r_[starts[1:], order.size]
    for u, a, b in zip(users.tolist(), starts.tolist(), ends.tolist(), strict=True):
        pos = pd.unique(test.item[order[a:b]])[:MAX_POSITIVES]
        seen = consumed.indices[consumed.indptr[u] : consumed.indptr[u + 1]]
        free = n_items - np.union1d(seen, pos).size
        need = min(top * pos.size, free)
        neg = np.zeros(0, np.int64)
        while neg.size < need:
            draw = g.integers(0, n_items, 2 * need + 16)
            draw = draw[~np.isin(draw, seen) & ~np.isin(draw, pos)]
            neg = pd.unique(np.concatenate([neg, draw]))[:need]
        n = pos.size + neg.size
        cols["users"].append(np.full(n, u, np.int64))
        cols["items"].append(np.concatenate([pos, neg]).astype(np.int64))
        cols["labels"].append(np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)])
        cols["rank"].append(np.r_[np.full(pos.size, -1), np.arange(neg.size)])
        cols["n_pos"].append(np.full(n, pos.size))
    return Sets(**{k: np.concatenate(v) for k, v in cols.items()})


def calibrated_brain(data: Dataset, cfg: RunConfig) -> tuple[UtilityBrain, Personas]:
    """The statistical brain calibrated on ``data``, one agent per user, and its personas."""
    return build.calibrate(cfg, data, users=None)


_SCORE_BLOCK = 1024  # users whose whole-catalog choice logits are held at once


def brain_scores_of(brain, s: Sets, consumed: sp.csr_matrix) -> np.ndarray:
    """(n,) float64: the log probability that each pair's item is its user's next choice among
    the items the user has not consumed (``consumed``: (n_users, n_items), the log the brain
    was calibrated on): the brain's choice logit less the user's log-sum-exp of it over those
    items. A user's logits have their own level, which says nothing about how much the user
    chooses, so one threshold can only serve every user once each is normalised (as the
    synthetic worlds' oracle is, :meth:`~simrec.data.dataset.WorldTruth.log_choice`)."""
    n_items = consumed.shape[1]
    users = np.unique(s.users)
    log_norm = np.zeros(users.size)
    everything = np.arange(n_items)
    for lo in range(0, users.size, _SCORE_BLOCK):
        block = users[lo : lo + _SCORE_BLOCK]
        logits = brain.choice_logit(block, np.broadcast_to(everything, (block.size, n_items)))
        logits = logits.astype(np.float64)
        logits[consumed[block].toarray() > 0] = -np.inf
        log_norm[lo : lo + block.size] = logsumexp(logits, axis=1)
    own = brain.choice_logit(s.users, s.items[:, None])[:, 0].astype(np.float64)
    return own - log_norm[np.searchsorted(users, s.users)]


def _picker_scores(tuned: Tuned, data: Dataset, s: Sets) -> np.ndarray:
    """The built-in policy ``tuned.name`` with its tuned parameters, fitted on ``data``, as a
    picker: each pair scored by the policy's own score of the item for the user. -> (n,)
    float64."""
    policy = fitted(tuned.name, tuned.params, data)
    out = np.empty(s.users.size)
    users = np.unique(s.users)
    for start in range(0, users.size, 2048):
        chunk = users[start : start + 2048]
        rows = np.flatnonzero((s.users >= chunk[0]) & (s.users <= chunk[-1]))
        table = policy.scores(chunk)
        out[rows] = table[np.searchsorted(chunk, s.users[rows]), s.items[rows]]
    return out


def _popularity_scores(data: Dataset, s: Sets) -> np.ndarray:
    """The item's popularity percentile in the training data (comparable across data sizes)."""
    pct = stats.rankdata(data.catalog.popularity) / data.catalog.n_items
    return pct[s.items]


def confusion(scores, s: Sets, ratio: int, threshold: float) -> tuple[int, int, int, int]:
    sel = s.select(ratio)
    pick = scores[sel] >= threshold
    y = s.labels[sel]
    tp = int((pick & y).sum())
    fp = int((pick & ~y).sum())
    fn = int((~pick & y).sum())
    return tp, fp, fn, int(sel.sum()) - tp - fp - fn


def calibrate_threshold(scores: np.ndarray, s: Sets) -> float:
    """The threshold maximising the mean F1 over RATIOS (ties: the highest threshold)."""
    grid = np.unique(np.quantile(scores, np.linspace(0, 1, 1025)))
    f1 = np.zeros(grid.size)
    for ratio in RATIOS:
        sel = s.select(ratio)
        pos = np.sort(scores[sel & s.labels])
        neg = np.sort(scores[sel & ~s.labels])
        tp = pos.size - np.searchsorted(pos, grid, side="left")
        fp = neg.size - np.searchsorted(neg, grid, side="left")
        f1 += 2 * tp / np.maximum(2 * tp + fp + (pos.size - tp), 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]
    return float(grid[best])


def scores_table(rows: list, ratio: int, source: str, tp, fp, fn, tn) -> None:
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    for metric, value in (
        ("accuracy", (tp + tn) / n),
        ("precision", precision),
        ("recall", recall),
        ("f1", f1),
    ):
        rows.append(("discrimination", f"1:{ratio}", metric, value, source))


def discrimination(
    split: Split, cfg: RunConfig, brain, holdout: float, baselines: dict[str, Tuned]
) -> tuple[list, tuple]:
    """Rows of the discrimination section (see the module docstring), and the sets, the
    brain's scores and its threshold (for the LLM's fallback). ``baselines``: the tuned
    pickers (:func:`simrec.evaluation.baselines.tuned_baselines` of ``split.train``)."""
    n_items = split.train.catalog.n_items
    inner = temporal_split(split.train, holdout)
    inner_brain, _ = calibrated_brain(inner.train, cfg)
    inner_sets = discrimination_sets(
        inner.test, split.train.interactions.matrix(n_items), n_items, cfg.seed, "fid-inner"
    )
    inner_scores = brain_scores_of(
        inner_brain, inner_sets, inner.train.interactions.matrix(n_items)
    )
    theta = calibrate_threshold(inner_scores, inner_sets)
    full = split.train.interactions.matrix(n_items) + split.test.matrix(n_items)
    sets = discrimination_sets(split.test, full.tocsr(), n_items, cfg.seed, "fid-test")
    brain_scores = brain_scores_of(brain, sets, split.train.interactions.matrix(n_items))
    # every picker: (its scores on the test sets, its threshold from the inner split)
    pickers = {"simrec": (brain_scores, theta)}
    pop_inner = _popularity_scores(inner.train, inner_sets)
    pickers["popularity"] = (
        _popularity_scores(split.train, sets),
        calibrate_threshold(pop_inner, inner_sets),
    )
    for name, tuned in baselines.items():
        inner_scores = _picker_scores(tuned, inner.train, inner_sets)
        pickers[name] = (
            _picker_scores(tuned, split.train, sets),
            calibrate_threshold(inner_scores, inner_sets),
        )
    truth = split.train.truth
    if truth is not None:  # a synthetic world: what its own choice model reaches, same protocol
        inner_truth = truth.log_choice(inner_sets.users, inner_sets.items)
        pickers["oracle"] = (
            truth.log_choice(sets.users, sets.items),
            calibrate_threshold(inner_truth, inner_sets),
        )
    rows: list[tuple] = [
        ("discrimination", "calibration", "threshold", th, source)
        for source, (_, th) in pickers.items()
    ]
    for ratio in RATIOS:
        for source, (scores, th) in pickers.items():
            scores_table(rows, ratio, source, *confusion(scores, sets, ratio, th))
        scores_table(rows, ratio, "always_no", *confusion(brain_scores, sets, ratio, np.inf))
        rows.append(
            ("discrimination", f"1:{ratio}", "pairs", float(sets.select(ratio).sum()), "real")
        )
    # the threshold-free view: how well each score separates held-out from unseen items
    from sklearn.metrics import roc_auc_score

    sel = sets.select(1)
    for source, (scores, _) in pickers.items():
        auc = roc_auc_score(sets.labels[sel], scores[sel])
        rows.append(("discrimination", "1:1", "roc_auc", float(auc), source))
    return rows, (sets, brain_scores, theta)
