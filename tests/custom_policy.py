"""A third-party style policy used by the tests: least popular first, with a random tie-break."""

from __future__ import annotations

import numpy as np

from simrec.environments import Slates
from simrec.environments.base import excluded_mask, first_k


class LeastPopular:
    name = "least-popular"

    def __init__(self, jitter: float = 0.0) -> None:
        self.jitter = jitter

    def fit(self, interactions, catalog) -> None:
        counts = np.bincount(
            interactions.column("item_index").to_numpy(), minlength=catalog.n_items
        )
        self.order = np.argsort(counts, kind="stable")

    def recommend(self, users, k, *, exclude, rng):
        cand = np.broadcast_to(self.order, (users.size, self.order.size))
        items, _ = first_k(cand, ~excluded_mask(cand, exclude), k)
        n = users.size
        return Slates(items, np.zeros((n, k), np.float32), np.ones((n, k)), np.ones(n), True)


class WrongShape(LeastPopular):
    """Breaks the contract: one item too few per slate."""

    name = "wrong-shape"

    def recommend(self, users, k, *, exclude, rng):
        s = super().recommend(users, k, exclude=exclude, rng=rng)
        return Slates(s.items[:, :-1], s.scores, s.pscore_item_position, s.pscore_slate, True)


class NoRecommend:
    """Not a Recommender at all."""

    name = "no-recommend"

    def fit(self, interactions, catalog) -> None:
        pass


class ShuffledSessions(LeastPopular):
    """Breaks the session-ranking promise: declares it, yet logs its slates as drawn."""

    name = "shuffled-sessions"
    session_ranking = True

    def recommend(self, users, k, *, exclude, rng):
        s = super().recommend(users, k, exclude=exclude, rng=rng)
        return Slates(s.items, s.scores, s.pscore_item_position, s.pscore_slate, False)
