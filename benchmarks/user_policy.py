"""A policy as a user would write one, for ``bench_commands.py``: PureSVD (Cremonesi et al.,
RecSys 2010), a truncated SVD of the binary history matrix with scipy; a user's scores are
their history times V V^T. It declares ``session_ranking`` (its ranking of a user does not
change within a session) and scores with :func:`simrec.environments.base.exact_factors`, so
its slates do not depend on how users are batched.

    simrec run --policy benchmarks.user_policy:PureSVD
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import svds

from simrec.environments.base import exact_factors, history_matrix, ranked_slates


class PureSVD:
    name = "pure-svd"
    session_ranking = True

    def __init__(self, factors: int = 64) -> None:
        self.factors = factors

    def fit(self, interactions, catalog) -> None:
        history = history_matrix(interactions, catalog.n_items).astype(np.float64)
        k = min(self.factors, min(history.shape) - 1)
        _, _, vt = svds(history, k=k, random_state=0)
        user_factors = history @ vt.T  # (n_users, k): the history projected on V
        self.n_users = history.shape[0]
        self._u, su = exact_factors(user_factors, k)
        v, sv = exact_factors(vt.T, k)
        self._vt, self._inv = np.ascontiguousarray(v.T), 1.0 / (su * sv)
        counts = np.asarray(history.sum(axis=0)).ravel()
        self._popular = (counts / max(counts.max(), 1.0)).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.empty((users.size, self._vt.shape[1]), np.float32)
        known = users < self.n_users
        out[~known] = self._popular
        out[known] = (self._u[users[known]] @ self._vt) * self._inv
        return out

    def recommend(self, users, k, *, exclude, rng):
        return ranked_slates(self._score, users, k, exclude)
