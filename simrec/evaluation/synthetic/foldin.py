"""Train on one log, recommend to the users of another: the utility test of a synthetic log.

A model is fitted on a log (synthetic, real, or both) and recommends to the real users from their
own real training histories, folded in (the "strong generalisation" protocol of Marlin 2004 and
Liang et al. 2018): what the model learnt is item-level (popularity, item-to-item weights, item
factors), so a synthetic log is useful when it carries the real log's item structure, not when
its users copy real ones.

* ``popular``: the fit log's item counts;
* ``itemknn``, ``ease``: the fit log's item-to-item weights times the real history;
* ``als``: the fit log's item factors; each real user's factors solved from their history by
  the same weighted ridge regression as ALS's user step (Hu, Koren & Volinsky 2008).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from simrec.data.dataset import Dataset
from simrec.environments.base import PolicyRandomness, Slates, ranked_slates
from simrec.evaluation.fidelity_report.baselines import fitted

FOLD_IN = ("popular", "itemknn", "ease", "als")  # the models that can be folded in


class FoldedIn:
    """A Recommender over the real users: ``history`` (n_users, n_items) binary CSR of their
    real training items, scored by what ``name`` (with ``params``) learnt from ``fit_on``."""

    def __init__(
        self, name: str, params: dict[str, Any], fit_on: Dataset, history: sp.csr_matrix
    ) -> None:
        self.name = name
        self.history = history.tocsr().astype(np.float32)
        policy = fitted(name, params, fit_on)
        n_items = history.shape[1]
        if name == "popular":
            counts = np.bincount(fit_on.interactions.item, minlength=n_items).astype(np.float32)
            self._score = lambda users: np.broadcast_to(counts, (users.size, n_items)).copy()
        elif name == "itemknn":
            w = policy.similarity
            self._score = lambda users: (self.history[users] @ w).toarray()
        elif name == "ease":
            self._score = policy.scores_of_histories(self.history)
        elif name == "als":
            users_f = als_fold_in(
                self.history, policy.item_factors, policy.regularization, policy.alpha
            )
            items_f = policy.item_factors
            self._score = lambda users: users_f[users] @ items_f.T
        else:
            raise ValueError(f"expected one of {FOLD_IN}, got {name!r}")

    def fit(self, interactions, catalog) -> None:  # fitted at construction
        pass

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        return ranked_slates(self._score, users, k, exclude)


def als_fold_in(
    history: sp.csr_matrix, item_factors: np.ndarray, regularization: float, alpha: float
) -> np.ndarray:
    """Each row's implicit-ALS user factors given fixed item factors: ``(Y^T Y + alpha Y_u^T
    Y_u + reg I) x = (1 + alpha) Y_u^T 1``. history: (n, n_items) binary; item_factors:
    (n_items, f) -> (n, f) float32."""
    y = item_factors.astype(np.float64)
    f = y.shape[1]
    yty = y.T @ y + regularization * np.eye(f)
    h = history.tocsr()
    out = np.zeros((h.shape[0], f))
    for lo in range(0, h.shape[0], 2048):
        block = h[lo : lo + 2048]
        a = np.empty((block.shape[0], f, f))
        for r in range(block.shape[0]):
            yu = y[block.indices[block.indptr[r] : block.indptr[r + 1]]]
            a[r] = yty + alpha * (yu.T @ yu)
        b = (1.0 + alpha) * np.asarray(block @ y)
        out[lo : lo + block.shape[0]] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    return out.astype(np.float32)
