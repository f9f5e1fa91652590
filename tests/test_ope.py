"""Off-policy evaluation: target probabilities, convergence to the simulated truth, errors."""

from __future__ import annotations

import numpy as np
import pytest

import simrec
from simrec.cli import main
from simrec.config import ExplorationConfig
from simrec.environments import PolicyRandomness
from simrec.environments.registry import make_policy
from simrec.evaluation.ope import ope, target_probabilities
from simrec.rng import Streams
from simrec.testing import contract_world

from .conftest import small_config


@pytest.mark.parametrize(
    "name,exploration",
    [
        ("random", None),
        ("popular", ExplorationConfig(kind="epsilon-greedy", epsilon=0.3)),
        ("als", ExplorationConfig(kind="softmax", temperature=0.3, candidates=12)),
    ],
)
def test_target_probabilities_reproduce_the_policys_own_propensities(name, exploration):
    """Asked about the very slates a stochastic policy drew, the OPE replay (a fresh call with
    the same exclusions and draws) must give back the propensities the policy logged for them.
    Both go through the policy's slate_probabilities; that those are the true probabilities is
    pinned by tests/test_exploration.py (enumeration and Monte Carlo)."""
    world = contract_world()
    policy = make_policy(name, {}, exploration)
    policy.fit(world.interactions.to_arrow(), world.catalog)
    users = np.arange(world.interactions.n_users, dtype=np.int64)
    exclude = world.interactions.matrix(world.catalog.n_items)
    rng = PolicyRandomness(Streams(5), 2, 0)
    s = policy.recommend(users, 6, exclude=exclude, rng=rng)
    got = target_probabilities(policy, users, 6, exclude, rng, s.items)
    np.testing.assert_allclose(got["p_ip"], s.pscore_item_position, rtol=1e-9)
    np.testing.assert_allclose(got["p_slate"], s.pscore_slate, rtol=1e-9)
    np.testing.assert_allclose(got["p_prefix"], s.pscore_cascade, rtol=1e-9)
    # a slate the policy cannot produce (an excluded item first) has probability 0
    other = s.items.copy()
    other[:, 0] = exclude.indices[exclude.indptr[:-1]]
    zero = target_probabilities(policy, users, 6, exclude, rng, other)
    assert (zero["p_slate"] == 0).all() and (zero["p_prefix"] == 0).all()
    assert (zero["p_ip"][:, 0] == 0).all()


def _logged_run(tmp_path, users: int, base: str = "popular") -> dict:
    return {
        "seed": 5,
        "data": {"synthetic": {"users": 1500, "items": 200, "interactions_per_user": 20}},
        "population": {"users": users},
        "simulation": {"ticks": 1},
        "brain": {"taste_dim": 8},
        "policy": {"name": base, "exploration": {"kind": "epsilon-greedy", "epsilon": 0.5}},
        "output": {"dir": str(tmp_path / f"log-{users}")},
    }


@pytest.mark.slow
def test_estimators_converge_to_the_simulated_truth(tmp_path):
    """One tick: the logged page-0 contexts are exactly those the target meets when simulated,
    so the estimates must approach its simulated value as the log grows. The logging policy
    is personalised (als), whose value simulated users tell apart from random slates."""
    errors = {}
    for users in (3000, 60000):
        run = simrec.run(_logged_run(tmp_path, users, "als"))
        t = ope(run.run_dir, "random", validate=True, n_resamples=300, out=tmp_path / f"o{users}")
        t = t.set_index("estimator")
        errors[users] = t.relative_error.abs()
        big = t
    unbiased = ["ips", "snips", "iips", "rips", "dr", "sndr"]
    assert (errors[60000][unbiased] < 0.1).all(), errors[60000]
    assert errors[60000][unbiased].mean() < errors[3000][unbiased].mean()
    # the logging policy's own value is far from the target's: the estimators did work
    assert abs(big.loc["on_policy", "relative_error"]) > 0.3
    # the truth lies inside most confidence intervals
    inside = (big.ci_low <= big.truth) & (big.truth <= big.ci_high)
    assert inside[unbiased].sum() >= 4


def test_deterministic_target_and_clipping(tmp_path):
    run = simrec.run(_logged_run(tmp_path, 2000))
    t = ope(run.run_dir, {"name": "als", "params": {"factors": 8}}, clip=50, n_resamples=100)
    t = t.set_index("estimator")
    assert set(t.index) >= {"dm", "ips", "snips", "iips", "rips", "dr", "sndr", "on_policy"}
    assert (t["clip"] == 50).all()
    assert np.isfinite(t.loc[["dm", "iips", "dr"], "value"]).all()
    out = run.run_dir.with_name(run.run_dir.name + "-ope-als") / "ope_results.parquet"
    assert out.exists()


def test_ope_from_the_cli(tmp_path, capsys):
    run = simrec.run(_logged_run(tmp_path, 1500))
    code = main(
        [
            "ope",
            str(run.run_dir),
            "--target",
            "random",
            "--bootstrap",
            "100",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "snips" in printed and "sndr" in printed
    assert (tmp_path / "o" / "ope_results.parquet").exists()


def test_ope_bad_input(tmp_path, capsys):
    det = simrec.run(small_config(tmp_path / "det", ticks=1))
    assert main(["ope", str(det.run_dir), "--target", "random"]) == 2
    err = capsys.readouterr().err
    assert "deterministic policy" in err and "--explore" in err and "Traceback" not in err
    (det.run_dir / "manifest.json").unlink()
    assert main(["ope", str(det.run_dir), "--target", "random"]) == 2
    assert "incomplete run (no manifest.json)" in capsys.readouterr().err
    assert main(["ope", str(tmp_path / "nope"), "--target", "random"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    logged = simrec.run(_logged_run(tmp_path, 500))
    manifest_before = (logged.run_dir / "manifest.json").read_bytes()
    assert main(["ope", str(logged.run_dir), "--target", "nope"]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err
    assert main(["ope", str(logged.run_dir), "--target", "random", "--clip", "0"]) == 2
    assert "--clip" in capsys.readouterr().err
    assert (logged.run_dir / "manifest.json").read_bytes() == manifest_before  # untouched
    assert not logged.run_dir.with_name(logged.run_dir.name + "-ope-nope").exists()


def test_weight_diagnostics_and_the_support_warning(tmp_path, capsys):
    """Logged by epsilon-greedy(popular): a random target is covered (mean slate weight near
    1, half the slates effectively used); a deterministic als target almost never meets a
    logged slate, and the CLI says so above the table, and in the report."""
    from simrec.evaluation.ope import support_warning

    run = simrec.run(_logged_run(tmp_path, 1500))
    covered = ope(run.run_dir, "random", n_resamples=50, out=tmp_path / "r").set_index("estimator")
    assert covered.loc["ips", "support"] == pytest.approx(1.0, abs=0.15)
    assert 0.3 < covered.loc["ips", "ess_share"] <= 1.0
    assert np.isnan(covered.loc["dm", "support"])  # DM weighs nothing
    assert support_warning(covered.reset_index()) is None
    argv = ["ope", str(run.run_dir), "--target", "als", "--param", "factors=8"]
    assert main([*argv, "--bootstrap", "50", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "poorly supports target als" in captured.err
    assert "support" in captured.out and "max_weight" in captured.out
    assert "poorly supports" in (tmp_path / "a" / "report.html").read_text()
    assert (tmp_path / "a" / "ope_weights.png").exists()
