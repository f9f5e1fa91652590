"""The users' collaborative preference and the strong baselines: EASE and item-kNN weights,
per-user score tables, the organic exposure policy, and tuning on the inner split only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

import simrec
from simrec.agents import collaborative
from simrec.agents.collaborative import fit_collaborative
from simrec.config import SyntheticWorldConfig
from simrec.data import make_world
from simrec.environments.base import PolicyRandomness
from simrec.environments.policies import OrganicPolicy
from simrec.evaluation.fidelity_report import baselines, temporal_split
from simrec.itemitem import cosine_neighbours, ease_weights, top_per_row
from simrec.rng import Streams

from .conftest import small_config


def _random_history(seed=0, users=60, items=25, density=0.2):
    g = np.random.default_rng(seed)
    return sp.csr_matrix((g.random((users, items)) < density).astype(np.float32))


def test_ease_weights_are_the_closed_form():
    x = _random_history()
    b = ease_weights(x, 7.0)
    g = (x.T @ x).toarray().astype(np.float64) + 7.0 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    expected = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(b, expected, atol=1e-5)
    # EASE's B solves the ridge regression of every item on the others
    for j in (0, 7):
        others = np.delete(np.arange(x.shape[1]), j)
        xo = x.toarray()[:, others].astype(np.float64)
        w = np.linalg.solve(xo.T @ xo + 7.0 * np.eye(others.size), xo.T @ x.toarray()[:, j])
        np.testing.assert_allclose(b[others, j], w, atol=1e-4)


def test_cosine_neighbours_shrink_and_keep_the_best():
    x = _random_history(1)
    w = cosine_neighbours(x, 3, 5.0).toarray()
    dense = x.toarray().astype(np.float64)
    co = dense.T @ dense
    n = np.diag(co)
    full = co / (np.sqrt(np.outer(n, n)) + 5.0)
    np.fill_diagonal(full, 0.0)
    assert (np.count_nonzero(w, axis=1) <= 3).all()
    for i in range(x.shape[1]):
        kept = np.flatnonzero(w[i])
        np.testing.assert_allclose(w[i, kept], full[i, kept], rtol=1e-5)
        assert full[i, kept].min() >= np.sort(full[i])[::-1][2] - 1e-9


def test_top_per_row_breaks_ties_by_column():
    m = sp.csr_matrix(np.array([[0.5, 0.9, 0.5, 0.1], [0.0, 0.0, 0.0, 0.3]]))
    assert top_per_row(m, 2).toarray().tolist() == [[0.5, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.3]]


@pytest.fixture(scope="module")
def world():
    return make_world(SyntheticWorldConfig(users=300, items=150, interactions_per_user=20), 5)


def test_a_truncated_score_table_agrees_with_the_whole_one(world, monkeypatch):
    log, n_items = world.interactions, world.catalog.n_items
    whole = fit_collaborative(log, n_items)
    assert whole.items is None and whole.model.startswith("ease")
    monkeypatch.setattr(collaborative, "COLLAB_CELLS", 300 * 40)
    monkeypatch.setattr(collaborative, "MIN_WIDTH", 40)
    part = fit_collaborative(log, n_items)
    assert part.scores.shape == (300, 40)
    users = np.arange(300)
    items = np.random.default_rng(0).integers(0, n_items, (300, 12))
    a, b = whole.score(users, items), part.score(users, items)
    held = (part.items[users][:, None, :] == items[:, :, None]).any(axis=2)
    assert held.any() and (~held).any()
    np.testing.assert_array_equal(a[held], b[held])
    np.testing.assert_allclose(b[~held], np.broadcast_to(part.floor[:, None], b.shape)[~held])
    # each row keeps its best items: a dropped item never scores above a kept one
    dense = whole.scores
    for u in (0, 17, 299):
        kept = part.items[u]
        assert dense[u, kept].min() >= np.delete(dense[u], kept).max() - 1e-6


def test_large_catalogs_use_sparse_neighbours(world, monkeypatch):
    monkeypatch.setattr(collaborative, "EASE_WORK", 0)
    knn = fit_collaborative(world.interactions, world.catalog.n_items)
    assert knn.model.startswith("itemknn")
    assert np.isfinite(knn.scores).all()


def test_simulated_users_prefer_what_their_neighbours_consumed(tmp_path):
    """The watch model weighs the collaborative evidence, and it predicts: calibrated on a
    world's log, its weight is positive."""
    res = simrec.run(small_config(tmp_path / "run", ticks=2))
    weights = res.manifest["brain"]["click_weights"]
    assert weights["collaborative"] > 0


def _organic(exposure=1.0, counts=(3, 1, 2, 0, 0)):
    items = np.repeat(np.arange(len(counts)), counts)
    table = pa.table({"user_index": np.zeros(items.size, int), "item_index": items})

    class Catalog:
        n_items = len(counts)

    policy = OrganicPolicy(exposure)
    policy.fit(table, Catalog)
    return policy


def test_organic_propensities_match_the_draws():
    policy = _organic(counts=(30, 1, 2, 0, 0, 5, 9, 1))
    n = 40_000
    exclude = sp.csr_matrix(np.tile([0, 1, 0, 0, 0, 0, 0, 0], (n, 1)))
    s = policy.recommend(np.arange(n), 3, exclude=exclude, rng=PolicyRandomness(Streams(2), 0, 0))
    assert (s.items >= 0).all() and not (s.items == 1).any(), "full slates, nothing consumed"
    ordered = np.sort(s.items, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all(), "no item twice on a slate"
    assert np.isnan(s.pscore_slate).all() and not s.deterministic
    # item 0 holds 31 of 69 units of weight: 3 x 31 / 69 > 1, so it is always shown, and the
    # other two slots are shared in proportion to (count + 1) among the rest
    w = np.array([0, 0, 3, 1, 1, 6, 10, 2]) / 23 * 2
    w[0] = 1.0
    for j in range(3):
        for i in (0, 2, 3, 5, 6, 7):
            shown = s.items[:, j] == i
            assert shown.mean() == pytest.approx(w[i] / 3, abs=0.008), (i, j)
            assert np.allclose(s.pscore_item_position[shown, j], w[i] / 3)


def test_organic_is_the_same_whatever_the_batch():
    policy = _organic()
    users = np.arange(50)
    rng = PolicyRandomness(Streams(4), 3, 1)
    whole = policy.recommend(users, 2, exclude=None, rng=rng)
    halves = [
        policy.recommend(users[h], 2, exclude=None, rng=rng)
        for h in (slice(0, 20), slice(20, None))
    ]
    np.testing.assert_array_equal(whole.items, np.vstack([h.items for h in halves]))


def test_organic_with_exposure_zero_is_uniform():
    policy = _organic(exposure=0.0)
    s = policy.recommend(np.arange(5000), 1, exclude=None, rng=PolicyRandomness(Streams(0), 0, 0))
    assert np.allclose(s.pscore_item_position, 0.2)
    assert np.bincount(s.items[:, 0], minlength=5) / 5000 == pytest.approx(
        np.full(5, 0.2), abs=0.02
    )


def test_tuning_picks_the_best_point_on_the_inner_split(world, monkeypatch):
    grid = ({"l2": 1.0}, {"l2": 30.0}, {"l2": 3000.0})
    monkeypatch.setitem(baselines.GRIDS, "ease", grid)
    split = temporal_split(world)
    tuned = baselines.tune("ease", split.train)
    recalls = [score for _, score in tuned.scores]
    assert len(recalls) == 3 and tuned.inner_recall == max(recalls)
    assert tuned.params == grid[int(np.argmax(recalls))]
    assert tuned.label == f"ease(l2={tuned.params['l2']:g})"


def test_ease_recommends_what_co_occurs():
    x = np.zeros((40, 6), np.float32)
    x[:20, [0, 1]] = 1  # items 0 and 1 go together
    x[20:, [2, 3]] = 1
    x[0, 1] = 0  # user 0 has item 0 only
    u, i = np.nonzero(x)
    table = pa.table({"user_index": u, "item_index": i, "rating": np.full(u.size, np.nan)})

    class Catalog:
        n_items = 6

    from simrec.environments.learned import EASEPolicy

    policy = EASEPolicy(l2=1.0)
    policy.fit(table, Catalog)
    slate = policy.recommend(
        np.array([0]), 1, exclude=sp.csr_matrix(x[:1]), rng=PolicyRandomness(Streams(0), 0, 0)
    )
    assert slate.items[0, 0] == 1


def test_pair_scores_are_the_score_table_entries(world):
    m = world.interactions.matrix(world.catalog.n_items)
    g = np.random.default_rng(1)
    users, items = g.integers(0, m.shape[0], 500), g.integers(0, m.shape[1], 500)
    for w in (ease_weights(m, 50.0), cosine_neighbours(m, 10, 5.0)):
        full = m @ w
        full = full.toarray() if sp.issparse(full) else np.asarray(full)
        got = collaborative.pair_scores(m, w, users, items)
        np.testing.assert_allclose(got, full[users, items], rtol=1e-4, atol=1e-5)


def test_out_of_fold_scores_leave_the_user_out(world, monkeypatch):
    """With as many folds as users, out-of-fold is leave-one-user-out: each pair is scored by
    weights fitted on every other user."""
    log, n_items = world.interactions, world.catalog.n_items
    fitted = fit_collaborative(log, n_items)
    monkeypatch.setattr(collaborative, "FOLDS", log.n_users)
    users = np.array([3, 3, 120, 299])
    items = np.array([5, 40, 7, 149])
    got = collaborative.out_of_fold_scores(log, n_items, fitted, users, items)
    m = log.matrix(n_items)
    for p, (u, i) in enumerate(zip(users, items, strict=True)):
        others = np.delete(np.arange(m.shape[0]), u)
        w = collaborative.item_weights(m[others], fitted.l2)
        assert got[p] == pytest.approx(float((m[u] @ w)[0, i]), rel=1e-4, abs=1e-6)
