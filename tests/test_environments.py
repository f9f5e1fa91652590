"""Policies inside the simulator: determinism, the feedback loop, exploration logs, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.cli import main

from .conftest import small_config

ALS = {"name": "als", "params": {"factors": 8, "iterations": 3}}

POLICY_CASES = {
    "itemknn-retrain": {"name": "itemknn", "retrain_every": 2},
    "als-softmax-retrain": {
        **ALS,
        "retrain_every": 3,
        "exploration": {"kind": "softmax", "temperature": 0.2, "candidates": 15},
    },
    "bpr-epsilon": {
        "name": "bpr",
        "params": {"factors": 8, "iterations": 5},
        "exploration": {"kind": "epsilon-greedy", "epsilon": 0.3},
    },
    "genre": {"name": "genre"},
}


def _parts(run_dir):
    return [p.read_bytes() for p in sorted((run_dir / "events").glob("part-*.parquet"))]


def _config(out, policy, **sim):
    cfg = small_config(out, **sim)
    cfg["policy"] = policy
    return cfg


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_byte_identical_for_any_batch_size(case, tmp_path):
    a = simrec.run(_config(tmp_path / "a", POLICY_CASES[case], ticks=4, batch_size=7))
    b = simrec.run(_config(tmp_path / "b", POLICY_CASES[case], ticks=4, batch_size=4096))
    assert _parts(a.run_dir) and _parts(a.run_dir) == _parts(b.run_dir)
    assert (a.run_dir / "metrics.parquet").read_bytes() == (
        b.run_dir / "metrics.parquet"
    ).read_bytes()


@pytest.mark.parametrize("case", ["itemknn-retrain", "genre", "als"])
def test_ranking_a_session_once_gives_the_bytes_of_asking_page_by_page(case, tmp_path, monkeypatch):
    import simrec.simulator.browsing as browsing

    policy = POLICY_CASES.get(case, ALS)
    once = simrec.run(_config(tmp_path / "once", policy, ticks=4, batch_size=37))
    monkeypatch.setattr(browsing, "ranks_sessions", lambda p: False)
    paged = simrec.run(_config(tmp_path / "paged", policy, ticks=4, batch_size=37))
    assert _parts(once.run_dir) and _parts(once.run_dir) == _parts(paged.run_dir)
    assert (once.run_dir / "metrics.parquet").read_bytes() == (
        paged.run_dir / "metrics.parquet"
    ).read_bytes()


def test_deep_sessions_are_asked_page_by_page_with_the_same_bytes(tmp_path, monkeypatch):
    import simrec.simulator.browsing as browsing

    deep = {"name": "itemknn"}
    paged = simrec.run(_config(tmp_path / "paged", deep, ticks=2, max_pages=120))
    monkeypatch.setattr(browsing, "SESSION_RANK_MAX", 10**6)  # 1,200 slots ranked at once
    once = simrec.run(_config(tmp_path / "once", deep, ticks=2, max_pages=120))
    assert _parts(paged.run_dir) and _parts(paged.run_dir) == _parts(once.run_dir)


def test_a_session_ranking_that_is_not_deterministic_is_refused(tmp_path, capsys):
    cfg = _config(tmp_path / "r", {"name": "tests.custom_policy:ShuffledSessions"}, ticks=1)
    with pytest.raises(simrec.ConfigError, match="session_ranking = True.*deterministic"):
        simrec.run(cfg)


def test_feedback_loop_refits_the_policy_on_what_was_watched(tmp_path):
    ticks, every = 6, 2
    fixed = simrec.run(_config(tmp_path / "fixed", ALS, ticks=ticks))
    loop = simrec.run(_config(tmp_path / "loop", {**ALS, "retrain_every": every}, ticks=ticks))
    m = loop.metrics
    assert m["retrained"].tolist() == [False, True, False, True, False, False]
    assert not fixed.metrics["retrained"].any()
    ev_fixed, ev_loop = fixed.events(), loop.events()
    # identical until the first refit, different afterwards
    cols = ["user_id", "page", "position", "item_id", "clicked"]
    before_f = ev_fixed[ev_fixed.tick < every][cols].reset_index(drop=True)
    before_l = ev_loop[ev_loop.tick < every][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(before_f, before_l)
    after_f = ev_fixed[ev_fixed.tick >= every]
    after_l = ev_loop[ev_loop.tick >= every]
    assert not after_f[cols].reset_index(drop=True).equals(after_l[cols].reset_index(drop=True))
    # the per-tick consumption metrics a filter-bubble study reads
    for col in ("gini", "coverage", "consumed_coverage"):
        assert m[col].between(0, 1).all()
    n_genres = 18
    assert (m["genre_entropy"] > 0).all() and (m["genre_entropy"] <= np.log2(n_genres)).all()
    assert loop.manifest["timings"]["policy_retrain_s"] > 0


def test_a_refit_policy_recommends_what_the_run_made_popular(tmp_path):
    """popular, refit every tick: the items watched in the run climb its ranking."""
    cfg = _config(tmp_path / "p", {"name": "popular", "retrain_every": 1}, ticks=4)
    res = simrec.run(cfg)
    ev = res.events()
    first = set(ev[ev.tick == 0].item_id)
    later = set(ev[ev.tick == 3].item_id)
    assert later != first


def test_exploration_from_the_cli_logs_exact_propensities(tmp_path, capsys):
    out = tmp_path / "x"
    args = ["run", "--users", "200", "--items", "150", "--ticks", "2", "--out", str(out)]
    args += ["--policy", "als", "--param", "factors=8", "--param", "iterations=2"]
    assert main([*args, "--explore", "softmax", "--temperature", "0.5", "--quiet"]) == 0
    ev = pq.read_table(out / "events").to_pandas()
    assert set(ev.propensity_source) == {"exact"} and set(ev.policy) == {"softmax(als)"}
    assert ev.pscore_item_position.between(0, 1, inclusive="right").all()
    assert ev.pscore_slate.between(0, 1, inclusive="right").all()
    # a slate's probability is at most that of any of its items at their positions
    worst = ev.groupby("slate_id").agg(
        p=("pscore_slate", "first"), q=("pscore_item_position", "min")
    )
    assert (worst.p <= worst.q + 1e-12).all()


BAD = [
    (["--epsilon", "0.1"], "--epsilon: only meaningful with --explore"),
    (["--policy", "als", "--param", "factor=8"], "policy.params for 'als'"),
    (["--policy", "als", "--param", "factors=-3"], "policy.params.factors: expected a positive"),
    (["--param", "oops"], "--param: expected KEY=VALUE"),
    (["--explore", "softmax", "--temperature", "0"], "exploration.temperature"),
    (["--policy", "tests.custom_policy:WrongShape"], "returned items of shape (8, 9)"),
    (["--policy", "tests.custom_policy:NoRecommend"], "missing recommend"),
    (["--retrain-every", "0"], "policy.retrain_every"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_policy_input_is_a_clear_error(extra, message, tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(
        ["run", "--users", "50", "--items", "40", "--ticks", "1", "--out", str(out), *extra]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not out.exists(), "nothing may be written for bad input"


@pytest.mark.parametrize("policy", ["itemknn", "als", "bpr", "genre"])
def test_learned_policies_on_movielens_files(policy, mllatest, tmp_path):
    """ml-latest files as the tests write them (UTF-8 titles, '(no genres listed)', an item
    nobody rated): each learned policy fits, explores, refits and logs exact propensities."""
    out = tmp_path / policy
    args = ["run", "--data", str(mllatest), "--ticks", "3", "--out", str(out), "--quiet"]
    args += ["--policy", policy, "--retrain-every", "2", "--explore", "softmax"]
    assert main(args) == 0
    ev = pq.read_table(out / "events").to_pandas()
    items = pq.read_table(out / "items.parquet").to_pandas()
    assert set(ev.item_id) <= set(items.item_id)
    assert set(ev.propensity_source) == {"exact"}
    assert ev.pscore_item_position.between(0, 1, inclusive="right").all()
