"""The synthetic-data report: a synthetic log judged as training data for real recommenders
(utility, algorithm ranking, log fidelity, privacy), from Python and the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simrec.build import load_data
from simrec.cli import main
from simrec.config import RunConfig
from simrec.evaluation import synthetic
from simrec.evaluation.fidelity_report import temporal_split
from simrec.evaluation.fidelity_report.baselines import fitted
from simrec.evaluation.fidelity_report.ranking import per_user_metrics
from simrec.evaluation.synthetic import verdict
from simrec.evaluation.synthetic.foldin import FoldedIn, als_fold_in

WORLD = {"seed": 4, "data": {"synthetic": {"users": 250, "items": 150}}, "brain": {"taste_dim": 8}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "report"
    return synthetic(WORLD, ticks=15, volume=0.5, out=out), out


def _value(table, section, setting, metric, source):
    rows = table[
        (table.section == section)
        & (table.setting == setting)
        & (table.metric == metric)
        & (table.source == source)
    ]
    assert len(rows) == 1, (section, setting, metric, source)
    return float(rows.value.iloc[0])


def test_the_report_writes_its_files_and_the_synthetic_run(report):
    table, out = report
    assert set(table.section) == {"setup", "utility", "ranking", "log", "privacy"}
    for name in ("synthetic.parquet", "report.html", "run/manifest.json"):
        assert (out / name).stat().st_size > 0
    assert pd.read_parquet(out / "synthetic.parquet").equals(table)
    page = (out / "report.html").read_text()
    assert page.index("Is the synthetic log good training data?") < page.index("Privacy")
    assert "organic(exposure=1.0)" in page
    lines = verdict(table)
    assert len(lines) == 4 and lines[0].startswith("Trained on the synthetic log alone")


def test_utility_figures_come_with_intervals_and_ratios(report):
    table, _ = report
    for name in ("popular", "itemknn", "ease", "als"):
        real = _value(table, "utility", name, "recall@20", "real")
        syn = _value(table, "utility", name, "recall@20", "synthetic")
        for src, v in (("real", real), ("synthetic", syn)):
            lo = _value(table, "utility", name, "recall@20_low", src)
            hi = _value(table, "utility", name, "recall@20_high", src)
            assert 0 <= lo <= v <= hi <= 1
        ratio = _value(table, "utility", name, "recall@20_synthetic_over_real", "ratio")
        assert ratio == pytest.approx(syn / real)
    # the synthetic log is judged against the training log it was calibrated on
    agents = _value(table, "setup", "simulation", "agents", "synthetic")
    assert agents % 250 == 0 and agents >= 250  # whole clones of every user
    assert _value(table, "log", "interactions", "count", "synthetic") > 0
    tau = _value(table, "ranking", "models", "kendall_tau", "synthetic")
    assert -1 <= tau <= 1


def test_the_synthetic_log_is_the_runs_watches(report, tmp_path):
    table, out = report
    events = pd.read_parquet(out / "run" / "events")
    watched = events[(events.event_type == "impression") & events.clicked.astype(bool)]
    assert _value(table, "log", "interactions", "count", "synthetic") == len(watched)


def test_privacy_compares_with_the_persons_own_held_out_part(report):
    table, _ = report
    syn = _value(table, "privacy", "closeness_to_source", "median", "synthetic")
    held = _value(table, "privacy", "closeness_to_source", "median", "held-out")
    assert -1 <= syn <= 1 and -1 <= held <= 1
    assert 0 <= _value(table, "privacy", "linkage", "rate", "synthetic") <= 1
    assert _value(table, "privacy", "linkage", "chance", "real") == pytest.approx(1 / 250)


@pytest.mark.parametrize(
    "name,params",
    [("ease", {"l2": 50.0}), ("itemknn", {"neighbours": 20, "shrinkage": 5.0})],
)
def test_folding_in_the_training_log_is_the_policy_itself(name, params):
    """Trained on the real log and folded in to the same users, an item-to-item model
    recommends exactly what the policy fitted on that log does."""
    split = temporal_split(load_data(RunConfig.model_validate(WORLD)))
    history = split.train.interactions.matrix(split.train.catalog.n_items)
    folded = per_user_metrics(FoldedIn(name, params, split.train, history), split)
    direct = per_user_metrics(fitted(name, params, split.train), split)
    np.testing.assert_allclose(folded["recall"], direct["recall"])


def test_als_fold_in_solves_the_user_step():
    g = np.random.default_rng(0)
    y = g.normal(size=(30, 4))
    history = (g.random((5, 30)) < 0.2).astype(np.float32)
    import scipy.sparse as sp

    got = als_fold_in(sp.csr_matrix(history), y, 0.5, 3.0)
    for u in range(5):
        c = 1 + 3.0 * history[u]
        a = y.T @ (c[:, None] * y) + 0.5 * np.eye(4)
        b = y.T @ (c * history[u])
        np.testing.assert_allclose(got[u], np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)


def test_the_command_line_prints_the_verdict(tmp_path, capsys):
    out = tmp_path / "syn"
    args = ["eval", "synthetic", "--users", "150", "--items", "90", "--ticks", "8"]
    assert main([*args, "--seed", "2", "--volume", "0.3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("- Trained on the synthetic log alone")
    assert "recall@20" in printed and (out / "report.html").exists()
    # a second report into the same folder needs --overwrite
    assert main([*args, "--volume", "0.3", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--volume", "0"], "synthetic volume: expected a positive number, got 0.0"),
        (["--holdout", "1.5"], "fidelity holdout: expected a share in (0, 1), got 1.5"),
        (["--policy", "nosuch"], "unknown policy 'nosuch'"),
    ],
)
def test_bad_input_is_one_clear_error(extra, message, tmp_path, capsys):
    out = tmp_path / "bad"
    args = ["eval", "synthetic", "--users", "100", "--items", "60", "--ticks", "3"]
    assert main([*args, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists(), "nothing may be written for bad input"


@pytest.mark.slow
def test_synthetic_movielens_100k_trains_real_recommenders(tmp_path):
    """On real MovieLens-100k, item-kNN and EASE trained on the synthetic log alone beat
    popularity trained on the real log, and models rank alike within both logs."""
    table = synthetic({"data": {"format": "recbole", "path": "ml-100k"}}, out=tmp_path / "s")
    pop = _value(table, "utility", "popular", "recall@20", "real")
    for name in ("itemknn", "ease"):
        assert _value(table, "utility", name, "recall@20_low", "synthetic") > pop
    assert _value(table, "ranking", "models", "kendall_tau", "synthetic") >= 0.6


def test_the_synthetic_log_keeps_the_runs_clock(report):
    """Timestamps in seconds: the simulated days are days apart, so sessions are told apart."""
    table, out = report
    events = pd.read_parquet(out / "run" / "events")
    days = events.timestamp.dt.normalize().nunique()
    assert days > 1
    gap = _value(table, "log", "days_between_sessions", "mean", "synthetic")
    assert gap >= 1 - 1e-9  # one session a day at most, a day or more apart


def test_privacy_compares_like_with_like(report):
    """A synthetic user's first items, as many as its source's held-out part holds, are set
    against that part: the same-size comparison sits beside the whole history's."""
    table, _ = report
    same = _value(table, "privacy", "closeness_to_source_same_size", "median", "synthetic")
    assert -1 <= same <= 1
    share = _value(table, "privacy", "closer_than_held_out_same_size", "share", "synthetic")
    assert 0 <= share <= 1
    assert "as many as its source's held-out part" in verdict(table)[3]


def test_first_items_keeps_each_users_earliest():
    from simrec.data.dataset import Interactions
    from simrec.evaluation.synthetic.privacy import _first_items

    user = np.array([1, 0, 1, 1, 0, 2], np.int32)
    item = np.array([10, 20, 11, 12, 21, 30], np.int32)
    ts = np.array([5, 9, 1, 3, 2, 7], np.int64)
    log = Interactions(user, item, np.full(6, np.nan, np.float32), ts, np.arange(3))
    kept = _first_items(log, np.array([1, 2, 0]))
    pairs = zip(kept.user.tolist(), kept.item.tolist(), strict=True)
    assert sorted(pairs) == [(0, 21), (1, 11), (1, 12)]


@pytest.mark.parametrize("start", ["continue", "fresh"])
def test_a_fresh_start_may_consume_what_its_source_consumed(start):
    """Continuing users never consume what their source consumed in the log; fresh ones, new
    people with the same tastes, do."""
    from simrec.evaluation.synthetic import generate

    split = temporal_split(load_data(RunConfig.model_validate(WORLD)))
    gen = generate(WORLD, split.train, ticks=10, volume=0.5, start=start)
    n_items = split.train.catalog.n_items
    source_items = split.train.interactions.matrix(n_items)[gen.source]
    overlap = source_items.multiply(gen.log.matrix(n_items)).sum()
    assert gen.start == start and len(gen.log) > 0
    assert (overlap > 0) if start == "fresh" else (overlap == 0)


def test_an_unknown_start_is_a_clear_error(tmp_path, capsys):
    from simrec.errors import ConfigError
    from simrec.evaluation.synthetic import generate

    with pytest.raises(ConfigError, match="synthetic start: expected one of continue, fresh"):
        generate(WORLD, load_data(RunConfig.model_validate(WORLD)), start="reborn")
    args = ["eval", "synthetic", "--users", "100", "--items", "60", "--start", "reborn"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert "--start: invalid choice: 'reborn'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_fresh_synthetic_users_carry_movielens_item_structure(tmp_path):
    """On real MovieLens-100k, synthetic users who start fresh write a log on which item-kNN
    reaches 0.8 of its real-trained Recall@20 (interval's lower end), and disclose more than
    continuing users: the setup and the privacy rows say so."""
    data = {"data": {"format": "recbole", "path": "ml-100k"}}
    table = synthetic(data, start="fresh", out=tmp_path / "s")
    assert table[(table.metric == "start")].source.tolist() == ["fresh"]
    assert _value(table, "utility", "itemknn", "recall@20_synthetic_over_real_low", "ratio") >= 0.8
    assert _value(table, "utility", "ease", "recall@20_synthetic_over_real", "ratio") >= 0.75
