"""Unit tests: counter-based randomness, policies, personas, the statistical brain."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from simrec.agents.brains.base import PageBatch
from simrec.agents.brains.utility import UtilityBrain
from simrec.agents.persona import sample_population
from simrec.config import SyntheticWorldConfig, UtilityBrainConfig
from simrec.data import make_world
from simrec.environments import PolicyRandomness, PopularPolicy, RandomPolicy, make_policy
from simrec.errors import ConfigError
from simrec.rng import Streams


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=40, unique=True), st.integers(0, 2**40))
def test_draws_depend_only_on_the_agent_not_the_batch(agents, seed):
    s = Streams(seed)
    a = np.array(agents)
    whole = s.uniform("x", a, tick=3, page=1, n=5)
    perm = np.random.default_rng(0).permutation(a.size)
    assert np.array_equal(s.uniform("x", a[perm], tick=3, page=1, n=5), whole[perm])
    assert np.array_equal(s.uniform("x", a[:1], tick=3, page=1, n=5), whole[:1])
    assert ((whole > 0) & (whole < 1)).all()


def test_streams_differ_by_purpose_tick_page_and_are_uniform():
    s, a = Streams(1), np.arange(20000)
    u = s.uniform("p", a, 0, 0, 1)[:, 0]
    for other in (
        s.uniform("q", a, 0, 0, 1),
        s.uniform("p", a, 1, 0, 1),
        s.uniform("p", a, 0, 1, 1),
    ):
        assert abs(np.corrcoef(u, other[:, 0])[0, 1]) < 0.03
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert hist.min() > 1800 and hist.max() < 2200


@pytest.fixture(scope="module")
def world():
    return make_world(SyntheticWorldConfig(users=400, items=300), 2)


def _fit(policy, world):
    policy.fit(world.interactions.to_arrow(), world.catalog)
    return policy


def test_popular_policy_orders_by_popularity_and_excludes(world):
    p = _fit(PopularPolicy(), world)
    users = np.arange(3)
    ex = sp.csr_matrix((np.ones(2), ([1, 1], p.ranking[:2])), shape=(3, world.catalog.n_items))
    s = p.recommend(users, 5, exclude=ex, rng=PolicyRandomness(Streams(0), 0, 0))
    assert s.items[0].tolist() == p.ranking[:5].tolist()
    assert s.items[1].tolist() == p.ranking[2:7].tolist()
    assert s.deterministic and (s.pscore_item_position == 1).all()


def test_popular_runs_out_of_items_gracefully():
    w = make_world(SyntheticWorldConfig(users=20, items=12, interactions_per_user=3), 0)
    p = _fit(PopularPolicy(), w)
    ex = sp.csr_matrix(np.eye(1, 12, dtype=np.float32).repeat(1, 0))
    ex = sp.csr_matrix(np.ones((1, 12), np.float32))
    ex[0, 3] = 0
    ex.eliminate_zeros()
    s = p.recommend(np.array([0]), 5, exclude=ex, rng=PolicyRandomness(Streams(0), 0, 0))
    assert s.items[0].tolist() == [3, -1, -1, -1, -1]


def test_random_policy_propensities_match_monte_carlo(world):
    """Empirical P(item at position) over many independent draws equals the logged 1/A."""
    p = _fit(RandomPolicy(), world)
    n_items = world.catalog.n_items
    excluded = np.arange(0, n_items, 3)  # a third of the catalog is excluded
    draws = 4000
    users = np.arange(draws)
    ex = sp.csr_matrix(
        (
            np.ones(draws * excluded.size),
            (np.repeat(users, excluded.size), np.tile(excluded, draws)),
        ),
        shape=(draws, n_items),
    )
    s = p.recommend(users, 4, exclude=ex, rng=PolicyRandomness(Streams(9), 0, 0))
    allowed = n_items - excluded.size
    assert np.allclose(s.pscore_item_position, 1 / allowed)
    assert not np.isin(s.items, excluded).any()
    assert all(len(set(row)) == 4 for row in s.items)
    counts = np.bincount(s.items[:, 2], minlength=n_items)[
        np.setdiff1d(np.arange(n_items), excluded)
    ]
    expected = draws / allowed
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < allowed + 4 * np.sqrt(2 * allowed)  # chi-square with allowed-1 dof, ~4 sigma
    assert np.allclose(
        s.pscore_slate, 1 / (allowed * (allowed - 1) * (allowed - 2) * (allowed - 3))
    )


def test_random_policy_is_deterministic_per_user_and_page(world):
    p = _fit(RandomPolicy(), world)
    rng = PolicyRandomness(Streams(4), 2, 1)
    a = p.recommend(np.array([5, 9, 11]), 6, exclude=None, rng=rng)
    b = p.recommend(np.array([11]), 6, exclude=None, rng=rng)
    assert np.array_equal(a.items[2], b.items[0])
    c = p.recommend(np.array([11]), 6, exclude=None, rng=PolicyRandomness(Streams(4), 2, 2))
    assert not np.array_equal(c.items[0], b.items[0])


def test_make_policy_errors():
    with pytest.raises(
        ConfigError,
        match="unknown policy 'x': expected one of als, bpr, ease, genre, itemknn, kg, organic, "
        "popular, random",
    ):
        make_policy("x", {})
    with pytest.raises(ConfigError, match="policy.params for 'popular'"):
        make_policy("popular", {"alpha": 1})
    with pytest.raises(ConfigError, match="half_life_days: expected a positive number, got -1"):
        make_policy("popular", {"half_life_days": -1})
    with pytest.raises(ConfigError, match="expected a Recommender"):
        make_policy("simrec.config:RunConfig", {})


def test_time_decayed_popularity_prefers_recent(world):
    """Item 5 was consumed three times a hundred days ago, item 9 twice yesterday: plain counts
    rank 5 first, a one-day half-life ranks the recent 9 first."""
    day, now = 86400, 1_700_000_000
    log = pa.table(
        {
            "user_index": np.arange(5, dtype=np.int64),
            "item_index": np.array([5, 5, 5, 9, 9], np.int64),
            "rating": np.full(5, 4.0, np.float32),
            "timestamp": np.array([now - 100 * day] * 3 + [now - day, now], np.int64),
        }
    )
    plain, decayed = PopularPolicy(), PopularPolicy(half_life_days=1.0)
    plain.fit(log, world.catalog)
    decayed.fit(log, world.catalog)
    assert plain.ranking[:2].tolist() == [5, 9]
    assert decayed.ranking[:2].tolist() == [9, 5]


@pytest.fixture(scope="module")
def fitted(world):
    brain = UtilityBrain(UtilityBrainConfig(taste_dim=8), seed=2)
    personas = brain.fit(world)
    brain.bind(personas, Streams(2))
    return brain, personas


def test_personas_traits_and_profiles(fitted, world):
    _, personas = fitted
    assert len(personas) == world.interactions.n_users
    for trait in (personas.activity, personas.conformity, personas.diversity):
        assert trait.min() >= 0 and trait.max() <= 1 and trait.std() > 0.1
    # activity follows the number of interactions
    counts = np.bincount(world.interactions.user)
    assert np.corrcoef(personas.activity, np.log(counts))[0, 1] > 0.9
    has_liked = [i for i, g in enumerate(personas.liked_genres) if g]
    assert len(has_liked) > 0.9 * len(personas)
    u = has_liked[0]
    assert personas.liked_genres[u][0] in personas.profiles[u]
    assert ((personas.arrival_rate > 0) & (personas.arrival_rate < 1)).all()


def test_population_sampling_and_cloning(fitted):
    _, personas = fitted
    s = Streams(0)
    small = sample_population(personas, 50, s)
    big = sample_population(personas, 1000, s)
    assert len(small) == 50 and len(set(small.source_user)) == 50
    assert len(big) == 1000 and set(big.source_user) == set(range(len(personas)))
    assert np.array_equal(sample_population(personas, 50, s).source_user, small.source_user)


def test_brain_prefers_what_users_actually_watched(fitted, world):
    """The calibrated choice model (watch logit plus log exposure: what a user picks on its own)
    ranks a user's held items above random ones (AUC)."""
    brain, _ = fitted
    log = world.interactions
    g = np.random.default_rng(0)
    pick = g.choice(len(log), 3000, replace=False)
    users, pos = log.user[pick].astype(np.int64), log.item[pick].astype(np.int64)
    neg = g.integers(0, world.catalog.n_items, pos.size)

    def logit(items):
        return brain.choice_logit(users, items[:, None])[:, 0]

    auc = (logit(pos)[:, None] > logit(neg)[None, :]).mean()
    assert auc > 0.75


def test_brain_decisions_are_consistent(fitted, world):
    brain, _ = fitted
    n, k = 400, 10
    items = np.tile(np.arange(k), (n, 1))
    items[0, 7:] = -1
    batch = PageBatch(np.arange(n), items, np.zeros((n, k), np.float32), page=0, tick=0)
    d = brain.decide(batch)
    assert d.examined.shape == (n, k) and d.leave.shape == (n,)
    assert not d.examined[0, 7:].any()
    assert (d.examined | ~d.clicked).all()
    assert np.isfinite(d.rating[d.clicked]).all() and np.isnan(d.rating[~d.clicked]).all()
    assert d.examined[:, 0].mean() > d.examined[:, -1].mean()  # position bias
    again = brain.decide(batch)
    assert np.array_equal(d.clicked, again.clicked)
    later = PageBatch(np.arange(n), items, np.zeros((n, k), np.float32), page=3, tick=0)
    # sessions from the log: the same chance of leaving after every page
    assert abs(brain.decide(later).leave.mean() - d.leave.mean()) < 0.1
    tired = copy.copy(brain)
    tired.config = brain.config.model_copy(update={"session_length": "fatigue"})
    assert tired.decide(later).leave.mean() > tired.decide(batch).leave.mean() + 0.2
    view = batch[3]
    assert view.agent == 3 and view.page == 0 and len(d[3].examined) == k


@pytest.mark.parametrize("fit_users", [None, 300])
def test_rating_model_beats_the_global_mean_on_held_out_ratings(monkeypatch, fit_users):
    """Backs the README's held-out claim: biased MF clearly beats predicting the mean, also
    when past ALS_FIT_USERS users every sweep but the last runs on a sample of them (then
    still deterministic)."""
    import simrec.agents.taste as taste
    from simrec.data.dataset import Interactions

    if fit_users is not None:
        monkeypatch.setattr(taste, "ALS_FIT_USERS", fit_users)

    w = make_world(SyntheticWorldConfig(users=2000, items=1000, interactions_per_user=30), 3)
    log = w.interactions
    test = np.random.default_rng(0).random(len(log)) < 0.1
    train = Interactions(
        log.user[~test], log.item[~test], log.rating[~test], log.timestamp[~test], log.user_ids
    )
    brain = UtilityBrain(UtilityBrainConfig(), seed=0)  # the default rating model
    rm = brain.fit_rating(w, train)
    pred = rm.expected(log.user[test].astype(np.int64), log.item[test].astype(np.int64))
    rmse = np.sqrt(np.mean((pred - log.rating[test]) ** 2))
    baseline = np.sqrt(np.mean((log.rating[~test].mean() - log.rating[test]) ** 2))
    assert rmse < 0.9 * baseline
    assert abs(rm.sigma - rmse) < 0.15  # the noise it samples is close to its held-out error
    again = brain.fit_rating(w, train)
    np.testing.assert_array_equal(again.user_factors, rm.user_factors)


def test_popular_matches_brute_force_for_any_exclusions(world):
    p = _fit(PopularPolicy(), world)
    g = np.random.default_rng(5)
    n_items, n, k = world.catalog.n_items, 60, 7
    rows, cols = [], []
    for r in range(n):
        m = [0, 3, 40, 200, n_items - 3, n_items][r % 6]  # light, heavy, past the cap, all
        chosen = p.ranking[:m] if r % 2 else g.choice(n_items, m, replace=False)
        rows += [r] * len(chosen)
        cols += list(chosen)
    ex = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n_items))
    got = p.recommend(np.arange(n), k, exclude=ex, rng=PolicyRandomness(Streams(0), 0, 0)).items
    for r in range(n):
        blocked = set(ex.indices[ex.indptr[r] : ex.indptr[r + 1]])
        want = [i for i in p.ranking if i not in blocked][:k]
        assert got[r].tolist() == want + [-1] * (k - len(want))


def test_unhappy_users_come_back_less_and_can_churn(fitted):
    brain, personas = fitted
    agents = np.arange(len(personas))
    happy = np.full(len(personas), 0.9, np.float32)
    sad = np.full(len(personas), 0.1, np.float32)
    assert brain.arrivals(agents, 0, happy).mean() > 1.5 * brain.arrivals(agents, 0, sad).mean()
    empty = brain.session_value(np.zeros(agents.size), np.zeros(agents.size))
    assert (empty == 0).all()
    s = np.full(len(personas), 0.5, np.float32)
    churned = np.zeros(agents.size, bool)
    for tick in range(15):  # nothing found, session after session
        s[agents], churn = brain.end_sessions(agents, tick, empty, s)
        churned |= churn
    assert s.max() < brain.config.churn_threshold and 0 < churned.mean() < 1


def test_memory_ring_buffer_keeps_the_newest_in_order():
    from simrec.agents.memory import MemoryStore

    m = MemoryStore(3, size=4)
    m.record(np.array([1, 1, 2]), np.array([10, 11, 20]), np.array([5.0, np.nan, 3.0]), tick=0)
    m.record(np.array([1, 1, 1, 1]), np.array([12, 13, 14, 15]), np.full(4, 4.0), tick=1)
    assert [e["item"] for e in m.recent(1)] == [15, 14, 13, 12]  # newest first, oldest dropped
    assert m.head[1] == 6 and m.recent(0) == []
    assert m.recent(2) == [{"item": 20, "rating": 3.0, "tick": 0}]
    m2 = MemoryStore(3, size=4)
    m2.load_state(m.state())
    assert m2.recent(1, 2) == m.recent(1, 2)


@pytest.mark.parametrize("fit_users", [100, 10_000])
def test_topic_taste_from_a_user_sample_still_separates_choices(world, monkeypatch, fit_users):
    """LDA tastes (the default) are topic mixtures; past LDA_FIT_USERS users the topics are
    learnt from a seeded sample and every user's mixture is inferred: still deterministic, and
    still scoring each user's own items above random ones."""
    import simrec.agents.taste as taste

    monkeypatch.setattr(taste, "LDA_FIT_USERS", fit_users)
    log, n_items = world.interactions, world.catalog.n_items
    a = taste.fit_topic_factors(log, n_items, 8, seed=1)
    b = taste.fit_topic_factors(log, n_items, 8, seed=1)
    np.testing.assert_array_equal(a.taste, b.taste)
    assert a.taste.shape == (log.n_users, 8) and a.items.shape == (n_items, 8)
    np.testing.assert_allclose(a.taste.sum(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(a.items.sum(axis=0), 1.0, rtol=1e-4)  # P(item | topic)
    g = np.random.default_rng(0)
    pick = g.choice(len(log), 2000, replace=False)
    users, pos = log.user[pick], log.item[pick]
    neg = g.integers(0, n_items, pos.size)

    def aff(items):
        return a.affinity(np.einsum("nd,nd->n", a.taste[users], a.items[items]))

    assert (aff(pos) > aff(neg)).mean() > 0.7


def test_auto_taste_dim_takes_the_dimension_that_predicts_held_out_choices(world, monkeypatch):
    """select_taste_dim scores each size on choices its model has not seen: a model that
    knows every user's whole log (offered only at the second size) wins against random ones,
    and the search stops at the first size that scores below the best before it."""
    from collections import OrderedDict

    import simrec.agents.taste as taste

    log, n = world.interactions, world.catalog.n_items
    knows_all = log.matrix(n).toarray().astype(np.float32)  # (users, items): 1 if consumed
    first, best, third = taste.TASTE_DIMS[:3]
    tried = []

    def fake_fit(early, n_items, dim, seed):
        tried.append(dim)
        if dim == best:
            return taste.ChoiceFactors(knows_all, np.eye(n_items, dtype=np.float32))
        g = np.random.default_rng(dim)
        return taste.ChoiceFactors(
            g.random((early.n_users, dim), np.float32), g.random((n_items, dim), np.float32)
        )

    monkeypatch.setattr(taste, "fit_choice_factors", fake_fit)
    monkeypatch.setattr(taste, "_SELECTIONS", OrderedDict())
    dim, scores = taste.select_taste_dim("svd", log, n, seed=0)
    assert dim == best and tried == [first, best, third] and list(scores) == tried
    # (negatives the user consumed later tie with the held-out choice: not quite 1)
    assert scores[best] > 0.95 and abs(scores[first] - 0.5) < 0.05
    assert scores[third] < scores[best]
    assert taste.select_taste_dim("svd", log, n, seed=0) == (dim, scores)  # remembered
    assert tried == [first, best, third]

    # too few held-out choices to tell the sizes apart: the default size, no scores
    monkeypatch.setattr(taste, "SELECT_MIN_ROWS", 10**9)
    assert taste.select_taste_dim("svd", log, n, seed=1) == (taste.DEFAULT_TASTE_DIM, {})


def test_auto_taste_dim_on_a_user_sample_is_seeded_and_recorded(world, monkeypatch, tmp_path):
    """Past SELECT_USERS users the sizes are scored on a seeded sample; the run's manifest
    records the size used and every score; a fixed taste_dim records no scores."""
    import json
    from collections import OrderedDict

    import simrec
    import simrec.agents.taste as taste

    log, n = world.interactions, world.catalog.n_items
    monkeypatch.setattr(taste, "SELECT_USERS", log.n_users // 2)
    monkeypatch.setattr(taste, "SELECT_MIN_ROWS", 20)
    monkeypatch.setattr(taste, "_SELECTIONS", OrderedDict())
    first = taste.select_taste_dim("lda", log, n, seed=3)
    taste._SELECTIONS.clear()
    assert taste.select_taste_dim("lda", log, n, seed=3) == first
    dim, scores = first
    assert dim in taste.TASTE_DIMS and scores[dim] == max(scores.values())
    assert all(0.5 < v <= 1.0 for v in scores.values())  # better than chance: real choices

    cfg = {"data": {"synthetic": {"users": 120, "items": 90}}, "simulation": {"ticks": 1}}
    for name, brain in (("auto", {}), ("fixed", {"taste_dim": 6})):
        simrec.run({**cfg, "brain": brain, "output": {"dir": str(tmp_path / name)}})
    auto = json.loads((tmp_path / "auto" / "manifest.json").read_text())["brain"]
    assert auto["taste_dim"] in taste.TASTE_DIMS
    assert auto["taste_dim_scores"][str(auto["taste_dim"])] == max(
        auto["taste_dim_scores"].values()
    )
    fixed = json.loads((tmp_path / "fixed" / "manifest.json").read_text())["brain"]
    assert fixed["taste_dim"] == 6 and fixed["taste_dim_scores"] == {}


def test_taste_fits_are_reused_only_for_the_same_log(world, monkeypatch, tmp_path):
    """fit_taste remembers a fit by its inputs: the same log (even reloaded by a second run)
    is fitted once, and a different log, seed or kind is fitted anew; reused arrays are
    read-only so no run can change another's."""
    from collections import OrderedDict

    import simrec
    import simrec.agents.taste as taste

    calls = []
    real = taste.fit_topic_factors
    monkeypatch.setattr(taste, "fit_topic_factors", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(taste, "_FITS", OrderedDict())
    log, n = world.interactions, world.catalog.n_items
    a = taste.fit_taste("lda", log, n, 8, 0)
    assert taste.fit_taste("lda", log, n, 8, 0) is a and len(calls) == 1
    assert not a.taste.flags.writeable and not a.items.flags.writeable
    assert taste.fit_taste("lda", log.take(np.arange(len(log) - 1)), n, 8, 0) is not a
    assert taste.fit_taste("lda", log, n, 8, 1) is not a and len(calls) == 3
    assert not taste.fit_taste("svd", log, n, 8, 0).log_affinity and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(taste, "_SELECTIONS", OrderedDict())
    cfg = {"data": {"synthetic": {"users": 120, "items": 90}}, "simulation": {"ticks": 1}}
    simrec.run({**cfg, "output": {"dir": str(tmp_path / "a")}})
    first = len(calls)
    assert first >= 2  # taste_dim: auto's candidates on part of the log, then the final fit
    simrec.run({**cfg, "output": {"dir": str(tmp_path / "b")}})
    assert len(calls) == first  # the second run loads the same world: the choice and the fit
    # are both reused
