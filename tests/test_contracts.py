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


def test_the_contract_catches_a_false_session_ranking_promise():
    from simrec.environments import PopularPolicy

    class Swapped(PopularPolicy):  # longer lists put the second item first
        name = "swapped"

        def recommend(self, users, k, *, exclude, rng):
            s = super().recommend(users, k, exclude=exclude, rng=rng)
            if k > 10:
                s.items[:, [0, 1]] = s.items[:, [1, 0]]
            return s

    with pytest.raises(AssertionError, match="swapped: declares session_ranking"):
        check_recommender(Swapped)
    Swapped.session_ranking = False  # the same policy without the promise is asked per page
    check_recommender(Swapped)


def test_als_gives_the_same_factors_on_one_core_or_two():
    from simrec.testing import contract_world

    data = contract_world(users=300, items=120)
    fitted = []
    for threads in (1, 2):
        policy = make_policy("als", {"factors": 8, "iterations": 4, "threads": threads})
        policy.fit(data.interactions.to_arrow(), data.catalog)
        fitted.append((policy.user_factors, policy.item_factors))
    assert np.array_equal(fitted[0][0], fitted[1][0])
    assert np.array_equal(fitted[0][1], fitted[1][1])


@pytest.mark.parametrize("k", [1, 3, 10, 40, 99])
def test_top_k_keeps_the_lowest_indexed_of_tied_items_whatever_k(k):
    from simrec.environments.base import top_k_by_score

    scores = np.round(np.random.default_rng(k).random((2100, 100)) * 3).astype(np.float32)
    scores[::5] = 0.0  # whole rows of ties
    items, best = top_k_by_score(lambda u: scores[u], np.arange(2100), k, None)
    order = np.lexsort((np.broadcast_to(np.arange(100), scores.shape), -scores), axis=1)
    assert np.array_equal(items, order[:, :k])
    assert np.array_equal(best, np.take_along_axis(scores, order[:, :k], axis=1))


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


@pytest.mark.parametrize("name", ["itemknn", "als"])
def test_learned_policies_weigh_a_history_by_its_counts(name):
    """User 0 played item 0 a hundred times and item 1 once; item 0's companion (2) then ranks
    above item 1's (3) for them, where without counts the two histories weigh the same."""
    import pyarrow as pa

    from simrec.testing import contract_world

    catalog = contract_world(users=20, items=8).catalog
    users, items = [0, 0], [0, 1]
    for u in range(1, 41):  # others: 0 goes with 2, 1 with 3
        users += [u, u]
        items += [0, 2] if u % 2 else [1, 3]
    log = {
        "user_index": pa.array(users, pa.int32()),
        "item_index": pa.array(items, pa.int32()),
        "rating": pa.array([float("nan")] * len(users), pa.float32()),
        "timestamp": pa.array([0] * len(users), pa.int64()),
    }
    params = {"factors": 4, "iterations": 10} if name == "als" else {}
    ranked = {}
    for counts in (None, [100.0, 1.0] + [1.0] * (len(users) - 2)):
        table = pa.table(
            log if counts is None else {**log, "count": pa.array(counts, pa.float32())}
        )
        policy = make_policy(name, params)
        policy.fit(table, catalog)
        scores = policy.scores(np.array([0]))[0]
        ranked[counts is not None] = scores[2] - scores[3]
    assert ranked[True] > 0 and ranked[True] > ranked[False]


@pytest.mark.parametrize("wrap", ["epsilon-greedy", "softmax"])
def test_exploring_policies_keep_their_slate_probabilities_promise(wrap):
    """Both exploration wrappers declare SlateProbabilities, and the contract checks that the
    probabilities they give their own slates are the propensities they logged."""
    from simrec.environments.base import SlateProbabilities
    from simrec.environments.exploration import EpsilonGreedy, Softmax

    def factory():
        base = make_policy("popular", {})
        return EpsilonGreedy(base, 0.3) if wrap == "epsilon-greedy" else Softmax(base, 0.5, 20)

    assert isinstance(factory(), SlateProbabilities)
    check_recommender(factory)


def test_the_contract_catches_slate_probabilities_that_disagree_with_the_propensities():
    from simrec.environments import RandomPolicy

    class Overconfident(RandomPolicy):
        name = "overconfident"

        def slate_probabilities(self, users, k, *, exclude, rng, items):
            p_ip, p_prefix = super().slate_probabilities(
                users, k, exclude=exclude, rng=rng, items=items
            )
            return 2 * p_ip, p_prefix

    with pytest.raises(AssertionError, match="overconfident: slate_probabilities gives other"):
        check_recommender(Overconfident)
