"""Privacy of a synthetic log: is a synthetic user a copy of the real person it came from?

Histories are compared as taste profiles: each item is its row of a truncated SVD of the real
training log (:func:`simrec.agents.taste.fit_choice_factors`), a history is the normalised sum
of its items' rows, and closeness is the cosine of two profiles (synthetic and held-out parts
never share items with the training part, so a set overlap would say nothing). The yardstick is
the real person's own held-out part: a synthetic user no closer to its source's training
history than that person's own later choices discloses no more than a fresh sample of the same
person would (the distance-to-closest-record view of tabular synthetic-data tools, SDMetrics'
DCR, made for interaction logs). A longer history is a less noisy sample of a taste, so it lies
closer to its source by length alone: the like-for-like comparison takes each synthetic user's
first items, as many as its source's held-out part holds (``same_size``), beside the whole
history. The linkage view: how often the training history closest to a synthetic user is its
source's, against the same for the held-out parts. The plainest disclosure: the share of
synthetic interactions that are of an item in the source's own training history (none for users
who continue their source; see ``simrec eval synthetic --start``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from simrec.agents.taste import fit_choice_factors
from simrec.data.dataset import Interactions

PROFILE_DIM = 32


def profiles(history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """(n, n_items) binary histories, (n_items, d) item rows -> (n, d) unit profiles (zero
    rows stay zero)."""
    p = np.asarray(history @ items, np.float64)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    return p / np.where(norm > 0, norm, 1.0)


def privacy_rows(
    train: Interactions,
    held_out: Interactions,
    syn: Interactions,
    source: np.ndarray,
    n_items: int,
    seed: int,
) -> list[tuple]:
    """Rows (section ``privacy``) of the closeness of each synthetic user (``syn``'s users,
    ``source`` (n_agents,) their source users in ``train``) to its source's training history,
    and of each real user's held-out part to their own training history: medians, the share of
    synthetic users closer than their source's held-out part, and the linkage rates."""
    factors = fit_choice_factors(train, n_items, min(PROFILE_DIM, max(2, n_items - 2)), seed)
    items = factors.items.astype(np.float64)
    real = profiles(train.matrix(n_items), items)
    hold = profiles(held_out.matrix(n_items), items)
    synth = profiles(syn.matrix(n_items), items)
    agents = np.flatnonzero(np.linalg.norm(synth, axis=1) > 0)
    holders = np.flatnonzero(np.linalg.norm(hold, axis=1) > 0)
    syn_close = np.einsum("nd,nd->n", synth[agents], real[source[agents]])
    hold_close = np.einsum("nd,nd->n", hold[holders], real[holders])
    hold_of = np.full(real.shape[0], np.nan)
    hold_of[holders] = hold_close
    sizes = np.bincount(held_out.user, minlength=real.shape[0])
    first = profiles(_first_items(syn, sizes[source]).matrix(n_items), items)
    paired = np.flatnonzero((np.linalg.norm(first, axis=1) > 0) & (sizes[source] > 0))
    same_close = np.einsum("nd,nd->n", first[paired], real[source[paired]])
    train_m = train.matrix(n_items)
    copied = train_m[source[syn.user], syn.item].A1.sum() / max(len(syn), 1)
    return [
        ("privacy", "closeness_to_source", "median", _median(syn_close), "synthetic"),
        ("privacy", "closeness_to_source", "median", _median(hold_close), "held-out"),
        (
            "privacy",
            "closer_than_held_out",
            "share",
            _closer(syn_close, hold_of[source[agents]]),
            "synthetic",
        ),
        ("privacy", "closeness_to_source_same_size", "median", _median(same_close), "synthetic"),
        (
            "privacy",
            "closer_than_held_out_same_size",
            "share",
            _closer(same_close, hold_of[source[paired]]),
            "synthetic",
        ),
        ("privacy", "source_items", "share", float(copied), "synthetic"),
        ("privacy", "linkage", "rate", _linkage(synth[agents], real, source[agents]), "synthetic"),
        ("privacy", "linkage", "rate", _linkage(hold[holders], real, holders), "held-out"),
        ("privacy", "linkage", "chance", 1.0 / max(real.shape[0], 1), "real"),
        ("privacy", "users", "count", float(agents.size), "synthetic"),
    ]


def _first_items(log: Interactions, keep: np.ndarray) -> Interactions:
    """Each user's earliest ``keep[user]`` interactions (by time, then row): keep (n_users,)."""
    order = np.lexsort((np.arange(len(log)), log.timestamp, log.user))
    users = log.user[order]
    starts = np.searchsorted(users, users)  # each row's first row of its user, in order
    rank = np.arange(users.size) - starts
    return log.take(np.sort(order[rank < keep[users]]))


def _closer(close: np.ndarray, versus: np.ndarray) -> float:
    """The share of ``close`` (n,) above ``versus`` (n,) where ``versus`` is known."""
    known = np.isfinite(versus)
    return float((close[known] > versus[known]).mean()) if known.any() else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else float("nan")


def _linkage(queries: np.ndarray, real: np.ndarray, truth: np.ndarray) -> float:
    """The share of ``queries`` (m, d) whose closest row of ``real`` (n, d) is ``truth`` (m,)."""
    if queries.shape[0] == 0:
        return float("nan")
    hits = 0
    for lo in range(0, queries.shape[0], 2048):
        sims = queries[lo : lo + 2048] @ real.T
        hits += int((sims.argmax(axis=1) == truth[lo : lo + 2048]).sum())
    return hits / queries.shape[0]
