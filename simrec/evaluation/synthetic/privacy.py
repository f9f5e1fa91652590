"""Privacy of a synthetic log: is a synthetic user a copy of the real person it came from?

Histories are compared as taste profiles: each item is its row of a truncated SVD of the real
training log (:func:`simrec.agents.taste.fit_choice_factors`), a history is the normalised sum
of its items' rows, and closeness is the cosine of two profiles (synthetic and held-out parts
never share items with the training part, so a set overlap would say nothing). The yardstick is
the real person's own held-out part: a synthetic user no closer to its source's training
history than that person's own later choices discloses no more than a fresh sample of the same
person would (the distance-to-closest-record view of tabular synthetic-data tools, SDMetrics'
DCR, made for interaction logs). The linkage view: how often the training history closest to a
synthetic user is its source's, against the same for the held-out parts.
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
    versus = hold_of[source[agents]]
    compared = np.isfinite(versus)
    closer = float((syn_close[compared] > versus[compared]).mean()) if compared.any() else np.nan
    return [
        ("privacy", "closeness_to_source", "median", _median(syn_close), "synthetic"),
        ("privacy", "closeness_to_source", "median", _median(hold_close), "held-out"),
        ("privacy", "closer_than_held_out", "share", closer, "synthetic"),
        ("privacy", "linkage", "rate", _linkage(synth[agents], real, source[agents]), "synthetic"),
        ("privacy", "linkage", "rate", _linkage(hold[holders], real, holders), "held-out"),
        ("privacy", "linkage", "chance", 1.0 / max(real.shape[0], 1), "real"),
        ("privacy", "users", "count", float(agents.size), "synthetic"),
    ]


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
