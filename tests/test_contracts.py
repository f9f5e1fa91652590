"""Every built-in Recommender passes the reusable contract check in simrec.testing."""

from __future__ import annotations

import numpy as np
import pytest

from simrec.environments import Slates
from simrec.environments.registry import POLICIES, make_policy
from simrec.testing import check_recommender


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_builtin_policies_pass_the_contract(name):
    check_recommender(lambda: make_policy(name, {}))


def test_the_contract_catches_a_policy_that_shows_excluded_items():
    class Careless:
        name = "careless"

        def fit(self, interactions, catalog):
            self.n_items = catalog.n_items

        def recommend(self, users, k, *, exclude, rng):
            n = users.size
            items = np.tile(np.arange(k), (n, 1))
            return Slates(items, np.zeros((n, k)), np.ones((n, k)), np.ones(n), True)

    with pytest.raises(AssertionError, match="careless"):
        check_recommender(Careless)
