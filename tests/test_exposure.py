"""Exposure kept apart from taste: sessions from timestamps, leave-one-out genre taste, and a
watch model whose popularity bonus shrinks as more of popularity is taken for exposure."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import simrec
from simrec.agents.brains.utility import UtilityBrain
from simrec.agents.persona import mean_session_items
from simrec.agents.taste import GENRE_PRIOR, fit_genre_taste
from simrec.config import SyntheticWorldConfig, UtilityBrainConfig
from simrec.data import Interactions, make_world
from simrec.rng import Streams


def test_sessions_are_bursts_separated_by_the_gap():
    minute = 60
    ts = np.array([0, 10, 20, 100, 131, 0, 5000]) * minute
    log = Interactions(
        user=np.array([0, 0, 0, 0, 0, 1, 1], np.int32),
        item=np.arange(7, dtype=np.int32),
        rating=np.full(7, 4.0, np.float32),
        timestamp=ts.astype(np.int64),
        user_ids=np.array([10, 11]),
    )
    s = log.sessions()
    # user 0: 0-10-20 | 100 | 131 (gaps of 80 and 31 minutes); user 1: 0 | 5000
    assert s.size.tolist() == [3, 1, 1, 1, 1] and s.user.tolist() == [0, 0, 0, 1, 1]
    assert s.per_user.tolist() == [3, 2]
    np.testing.assert_allclose(s.tenure_days, [131 * minute / 86400, 5000 * minute / 86400])
    np.testing.assert_allclose(s.rate_per_day(30), [3 / 30, 2 / 30])


def test_genre_taste_leaves_the_interaction_out():
    world = make_world(SyntheticWorldConfig(users=60, items=50, interactions_per_user=8), 1)
    log, genres = world.interactions, world.catalog.genres
    taste = fit_genre_taste(log, genres)
    rows = np.arange(0, len(log), 37)
    got = taste.leave_one_out(log.user[rows].astype(np.int64), log.item[rows].astype(np.int64))
    for r, value in zip(rows, got, strict=True):
        keep = np.ones(len(log), bool)
        keep[r] = False
        counts = fit_genre_taste(log.take(np.flatnonzero(keep)), genres).counts[log.user[r]]
        prior = GENRE_PRIOR * taste.share  # the log's genre mix stays the whole log's
        lift = np.log((counts + prior) / (counts.sum() + GENRE_PRIOR)) - np.log(taste.share)
        assert abs(float(lift @ taste.items[log.item[r]]) - value) < 1e-5


def _popularity_pull(exposure: float, world) -> tuple[float, float]:
    brain = UtilityBrain(UtilityBrainConfig(taste_dim=8, exposure=exposure), seed=0)
    brain.bind(brain.fit(world), Streams(0))
    g = np.random.default_rng(0)
    users = g.integers(0, world.interactions.n_users, 3000)
    items = g.integers(0, world.catalog.n_items, 3000)
    pop = world.catalog.popularity[items]
    watch = brain.watch_logit(users, items[:, None])[:, 0]
    choice = brain.choice_logit(users, items[:, None])[:, 0]
    return stats.spearmanr(watch, pop).statistic, stats.spearmanr(choice, pop).statistic


def test_exposure_takes_popularity_out_of_the_watch_model():
    world = make_world(SyntheticWorldConfig(users=400, items=300), 2)
    none_watch, none_choice = _popularity_pull(0.0, world)
    full_watch, full_choice = _popularity_pull(1.0, world)
    # taken for exposure, popularity makes a shown item far less watchable ... (rank
    # correlation 0.43 against 0.63 measured: the collaborative scores carry item popularity,
    # as a topic model's P(item | user) does, and the regression takes out only what of it
    # is exposure)
    assert full_watch < none_watch - 0.15
    # ... but it still makes an item more likely to be picked on one's own (discrimination)
    assert full_choice > full_watch + 0.15
    # with exposure 0 the two are the same model (a uniform exposure is a constant)
    assert abs(none_choice - none_watch) < 1e-5


def testmean_session_items_are_each_users_mean_burst():
    minute = 60
    ts = np.array([0, 10, 20, 100, 131, 0, 5000]) * minute
    log = Interactions(
        user=np.array([0, 0, 0, 0, 0, 1, 1], np.int32),
        item=np.arange(7, dtype=np.int32),
        rating=np.full(7, 4.0, np.float32),
        timestamp=ts.astype(np.int64),
        user_ids=np.array([10, 11]),
    )
    # user 0: bursts of 3, 1 and 1; user 1: two of 1
    np.testing.assert_allclose(mean_session_items(log), [5 / 3, 1.0])


def test_log_sessions_consume_what_the_log_did_when_shown_its_exposure(tmp_path):
    """With uniform exposure (``exposure: 0``) a random policy's slates are the log's exposure,
    so sessions must hold as many items as the personas' log sessions, on average over the
    sessions that happen; the fatigue model, which knows nothing of the log, does not."""
    per_session = {}
    for kind in ("log", "fatigue"):
        cfg = {
            "seed": 3,
            "data": {"format": "synthetic", "synthetic": {"users": 300, "items": 400}},
            "brain": {"exposure": 0, "session_length": kind},
            "policy": {"name": "random"},
            "simulation": {"ticks": 10, "max_pages": 1000},
            "output": {"dir": str(tmp_path / kind)},
        }
        res = simrec.run(cfg)
        sessions = res.events().groupby(["user_id", "tick"]).clicked.sum()
        per_session[kind] = sessions.mean()
        users = pd.read_parquet(tmp_path / kind / "users.parquet")
    data = make_world(SyntheticWorldConfig(users=300, items=400), 3)
    index = np.searchsorted(data.interactions.user_ids, users.source_user_id.to_numpy())
    want = mean_session_items(data.interactions)[index]
    counts = sessions.groupby(level="user_id").size()
    expected = np.average(want[counts.index], weights=counts.to_numpy())
    assert abs(per_session["log"] / expected - 1) < 0.15, (per_session, expected)
    assert per_session["fatigue"] < 0.6 * expected
