"""Logs without timestamps: nothing is latest, so held-out parts are seeded random draws."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from simrec.data.dataset import Interactions
from simrec.data.loaders import load_table
from simrec.evaluation.fidelity_report.split import temporal_split


def _sorted_by_item(n_users: int = 200, per_user: int = 30) -> Interactions:
    """Every user's rows in ascending item order (a file sorted by item id), all at time 0."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(n_users):
        items.append(np.sort(rng.choice(500, per_user, replace=False)))
        users.append(np.full(per_user, u))
    user, item = np.concatenate(users), np.concatenate(items)
    n = user.size
    return Interactions(
        user.astype(np.int32),
        item.astype(np.int32),
        np.full(n, np.nan, np.float32),
        np.zeros(n, np.int64),
        np.arange(n_users),
    )


def test_without_times_the_held_out_part_is_a_random_draw_per_user():
    log = _sorted_by_item()
    assert not log.timed
    early, late = log.latest(0.2, seed=1)
    assert late.size == 200 * 6 and np.union1d(early, late).size == len(log)
    assert np.array_equal(np.bincount(log.user[late]), np.full(200, 6))
    # by item order, the held-out rows would be each user's 6 highest items (rank 24..29 of 30);
    # a random draw takes every rank alike
    rank = np.arange(len(log)) % 30
    assert abs(rank[late].mean() - 14.5) < 1.5
    assert np.array_equal(log.latest(0.2, seed=1)[1], late)  # seeded
    assert not np.array_equal(log.latest(0.2, seed=2)[1], late)


def test_with_times_the_held_out_part_is_the_latest():
    log = _sorted_by_item()
    log.timestamp[:] = np.arange(len(log))[::-1]  # earlier rows are later in time
    assert log.timed
    _, late = log.latest(0.2, seed=1)
    assert (np.arange(len(log)) % 30)[late].max() == 5  # each user's first 6 rows
    assert np.array_equal(log.latest(0.2, seed=2)[1], late)  # no draw: the seed is unused


def test_a_table_without_a_timestamp_column_warns_and_splits_at_random(tmp_path, caplog):
    log = _sorted_by_item(50, 10)
    path = tmp_path / "plays.csv"
    pd.DataFrame({"u": log.user, "a": log.item, "plays": 1 + log.item % 7}).to_csv(
        path, index=False
    )
    with caplog.at_level(logging.WARNING):
        data = load_table(path, {"user": "u", "item": "a"})
    assert "no timestamp column" in caplog.text and str(path) in caplog.text
    split = temporal_split(data, 0.2, seed=3)
    assert not split.timed and "random draw" in split.holdout_kind
    assert len(split.test) == 50 * 2


def test_the_visit_rate_can_be_set_for_every_agent(capsys):
    from simrec import build
    from simrec.cli import main, parser
    from simrec.cli.flags import build_config
    from simrec.simulator.runner import run_id_for

    world = {"seed": 2, "data": {"synthetic": {"users": 120, "items": 60}}}
    cfg = build.as_config(world)
    data = build.load_data(cfg)
    measured = build.calibrate(cfg, data)[1].arrival_rate
    assert np.unique(measured).size > 1  # each user's own, from the log's sessions
    set_cfg = build.as_config({**world, "population": {"visit_rate": 0.3}})
    brain, personas = build.calibrate(set_cfg, data)
    assert np.all(personas.arrival_rate == np.float32(0.3))
    assert np.all(brain.arrival_rate == np.float32(0.3))
    # the profiles say the rate that was set, not the log's
    assert all("about 9.0 visits a month" in p for p in personas.profiles)
    # unset, it leaves run ids as they were; set, it shapes the events and the id
    assert run_id_for(cfg) == run_id_for(build.as_config(world))
    assert run_id_for(set_cfg) != run_id_for(cfg)

    args = parser().parse_args(["run", "--users", "50", "--visit-rate", "0.25"])
    assert build_config(args).population.visit_rate == 0.25
    assert main(["run", "--users", "50", "--ticks", "1", "--visit-rate", "2"]) == 2
    assert "visit_rate" in capsys.readouterr().err
