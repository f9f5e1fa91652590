"""Exploration wrappers: logged propensities equal the true probabilities of the logging policy.

Checked three ways: Plackett-Luce position marginals against brute-force enumeration; logged
item-position and slate propensities against Monte-Carlo frequencies over many i.i.d. users;
and the Recommender contract on wrapped built-ins.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from simrec.config import ExplorationConfig
from simrec.environments import PolicyRandomness, Slates
from simrec.environments.exploration import EpsilonGreedy, Softmax, position_marginals
from simrec.environments.policies import RandomPolicy
from simrec.environments.registry import make_policy
from simrec.errors import ConfigError
from simrec.rng import Streams
from simrec.testing import check_recommender


def _enumerate_pl(w: np.ndarray, k: int) -> np.ndarray:
    """P(item i at position j) by summing over every ordered k-subset. -> (m, k)."""
    out = np.zeros((w.size, k))
    for perm in itertools.permutations(range(w.size), k):
        p, left = 1.0, set(range(w.size))
        for i in perm:
            p *= w[i] / sum(w[sorted(left)])  # summed, not subtracted: no cancellation
            left.discard(i)
        for j, i in enumerate(perm):
            out[i, j] += p
    return out


@pytest.mark.parametrize("spread", [0.1, 1.0, 3.0, 8.0])
def test_plackett_luce_marginals_match_enumeration(spread):
    g = np.random.default_rng(int(spread * 10))
    m, k = 7, 4
    w = np.exp(g.normal(size=m) * spread)
    w = np.maximum(w, 1e-12 * w.max())  # the floor Softmax applies
    w /= w.sum()
    exact = _enumerate_pl(w, k)
    orders = np.array([g.permutation(m)[:k] for _ in range(5)])
    got = position_marginals(np.tile(w, (5, 1)), orders)
    want = exact[orders, np.arange(k)[None, :]]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


class FixedScores:
    """Deterministic base: the same ranked items and scores for every user."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, np.float32)

    def fit(self, interactions, catalog):
        pass

    def recommend(self, users, k, *, exclude, rng):
        n, m = users.size, self.scores.size
        items = np.full((n, k), -1, np.int64)
        scores = np.zeros((n, k), np.float32)
        take = min(k, m)
        items[:, :take] = np.arange(take)
        scores[:, :take] = self.scores[:take]
        return Slates(items, scores, np.ones((n, k)), np.ones(n), True)


N_USERS = 60_000


def _monte_carlo(policy, k: int, n_items: int, exclude=None):
    users = np.arange(N_USERS, dtype=np.int64)
    s = policy.recommend(users, k, exclude=exclude, rng=PolicyRandomness(Streams(7), 2, 0))
    freq = np.zeros((n_items, k))
    logged = np.full((n_items, k), np.nan)
    for j in range(k):
        col = s.items[:, j]
        ok = col >= 0
        freq[:, j] = np.bincount(col[ok], minlength=n_items) / N_USERS
        # every user faces the same policy: the logged value must be the same for an item/position
        for item in np.unique(col[ok]):
            p = s.pscore_item_position[ok & (col == item), j]
            assert np.ptp(p) < 1e-12
            logged[item, j] = p[0]
    return s, freq, logged


def _assert_frequencies_match(freq, logged):
    seen = ~np.isnan(logged)
    se = np.sqrt(logged[seen] * (1 - logged[seen]) / N_USERS) + 1e-12
    z = np.abs(freq[seen] - logged[seen]) / se
    assert z.max() < 4.5, f"max z-score {z.max():.2f}"
    # the logged values of a position add up to 1 over the items that can appear there
    assert np.all(np.nansum(logged, axis=0) <= 1 + 1e-9)
    np.testing.assert_allclose(freq.sum(axis=0), 1.0)


def _assert_prefix_probabilities_match(s: Slates):
    """pscore_cascade[:, 1]: the probability of the slate's first two items in order."""
    prefixes = Counter(map(tuple, s.items[:, :2].tolist()))
    first = {}
    for row, key in enumerate(map(tuple, s.items[:, :2].tolist())):
        first.setdefault(key, row)
    for key, c in prefixes.most_common(6):
        p = s.pscore_cascade[first[key], 1]
        se = np.sqrt(p * (1 - p) / N_USERS)
        assert abs(c / N_USERS - p) < 4.5 * se + 1e-9, (key, c / N_USERS, p)


def _assert_slate_probabilities_match(s: Slates):
    counts = Counter(map(tuple, s.items.tolist()))
    first = {}
    for row, key in enumerate(map(tuple, s.items.tolist())):
        first.setdefault(key, row)
    for key, c in counts.most_common(5):
        p = s.pscore_slate[first[key]]
        rows = [r for r, kk in enumerate(map(tuple, s.items[:2000].tolist())) if kk == key]
        assert all(abs(s.pscore_slate[r] - p) < 1e-12 for r in rows)
        se = np.sqrt(p * (1 - p) / N_USERS)
        assert abs(c / N_USERS - p) < 4.5 * se + 1e-9, (key, c / N_USERS, p)


@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_softmax_propensities_match_monte_carlo(temperature):
    scores = np.array([2.0, 1.7, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5])
    policy = Softmax(FixedScores(scores), temperature=temperature, candidates=8)
    s, freq, logged = _monte_carlo(policy, k=3, n_items=8)
    _assert_frequencies_match(freq, logged)
    _assert_slate_probabilities_match(s)
    _assert_prefix_probabilities_match(s)
    # position 1 has the closed form w_i / W
    w = np.exp(scores.astype(np.float32).astype(np.float64) / temperature)  # scores are float32
    np.testing.assert_allclose(logged[:, 0], w / w.sum(), rtol=1e-9)


def test_epsilon_greedy_propensities_match_monte_carlo():
    n_items, k, eps = 12, 3, 0.3
    policy = EpsilonGreedy(FixedScores(np.linspace(1, 0, n_items)), epsilon=eps)
    policy.fit(None, type("C", (), {"n_items": n_items})())
    s, freq, logged = _monte_carlo(policy, k=k, n_items=n_items)
    _assert_frequencies_match(freq, logged)
    # the closed form: base item j at position j, everything else eps / n_items
    want = np.full((n_items, k), eps / n_items)
    want[np.arange(k), np.arange(k)] += 1 - eps
    np.testing.assert_allclose(logged, want, rtol=1e-12)
    base_rows = (s.items == np.arange(k)).all(axis=1)
    expected = 1 - eps + eps / (n_items * (n_items - 1) * (n_items - 2))
    np.testing.assert_allclose(s.pscore_slate[base_rows], expected)
    _assert_slate_probabilities_match(s)
    _assert_prefix_probabilities_match(s)


@pytest.mark.parametrize(
    "base,exploration",
    [
        ("als", ExplorationConfig(kind="softmax", temperature=0.5, candidates=20)),
        ("itemknn", ExplorationConfig(kind="softmax", temperature=2.0, candidates=5)),
        ("popular", ExplorationConfig(kind="epsilon-greedy", epsilon=0.2)),
        ("genre", ExplorationConfig(kind="epsilon-greedy", epsilon=1.0)),
    ],
)
def test_wrapped_policies_pass_the_contract(base, exploration):
    check_recommender(lambda: make_policy(base, {}, exploration))


def test_wrapping_a_stochastic_policy_is_refused():
    policy = Softmax(RandomPolicy(), temperature=1.0)
    policy.fit(None, type("C", (), {"n_items": 30})())
    with pytest.raises(ConfigError, match="needs a deterministic base policy, but 'random'"):
        policy.recommend(np.arange(3), 5, exclude=None, rng=PolicyRandomness(Streams(0), 0, 0))
