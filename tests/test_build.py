"""The public build layer: calibration as the runner does it, policy and backend objects in
place of names, and what -v logs."""

from __future__ import annotations

import numpy as np
import pytest

import simrec
from simrec import build
from simrec.cli import main
from simrec.environments.policies import PopularPolicy, RandomPolicy
from simrec.errors import ConfigError
from simrec.testing import FakeBackend

from .conftest import small_config


def _parts(run_dir):
    return [p.read_bytes() for p in sorted((run_dir / "events").glob("part-*.parquet"))]


def test_calibrate_gives_the_configured_population_and_a_bound_brain():
    cfg = build.as_config({"seed": 2, "data": {"synthetic": {"users": 150, "items": 90}}})
    data = build.load_data(cfg)
    utility, personas = build.calibrate(cfg, data, users=40)
    assert len(personas) == 40 and utility.taste.shape[0] == 40
    again, same = build.calibrate(cfg, data, users=40)
    np.testing.assert_array_equal(personas.source_user, same.source_user)
    np.testing.assert_array_equal(utility.taste, again.taste)
    everyone = build.calibrate(cfg, data, users=None)[1]  # one agent per user, in log order
    np.testing.assert_array_equal(everyone.source_user, np.arange(data.interactions.n_users))
    brain, memory = build.make_brain(cfg, utility, data)
    assert brain is utility and memory is None


def test_make_policy_takes_names_configs_and_objects_and_rejects_the_unknown():
    assert build.make_policy("popular").name == "popular"
    assert build.make_policy({"name": "itemknn", "params": {"neighbours": 5}}).name == "itemknn"
    mine = PopularPolicy()
    assert build.make_policy(mine) is mine
    with pytest.raises(ConfigError, match="no-such-policy"):
        build.make_policy("no-such-policy")


def test_run_with_a_policy_object_matches_the_run_by_name(tmp_path):
    by_name = simrec.run({**small_config(tmp_path / "a"), "policy": {"name": "popular"}})
    by_object = simrec.run(small_config(tmp_path / "b"), policy=PopularPolicy())
    assert _parts(by_name.run_dir) == _parts(by_object.run_dir)
    assert by_object.manifest["config"]["policy"]["name"] == "popular"


def test_run_with_a_backend_object_asks_it(tmp_path):
    answer = {"watch": [2], "ratings": [5], "next": "leave", "feeling": "delighted", "reason": ""}
    fake = FakeBackend(lambda request: answer)
    cfg = small_config(tmp_path / "llm", ticks=1, page_size=4, max_pages=1)
    cfg["population"] = {"users": 20}
    cfg["brain"]["name"] = "llm"
    cfg["llm"] = {"cache": None, "interview_fraction": 0.0}
    result = simrec.run(cfg, backend=fake)
    events = result.events()
    asked = events[events["decided_by"] == "llm:fake"]
    assert len(fake.requests) > 0 and not asked.empty
    clicked = asked[asked["clicked"]]
    assert not clicked.empty and (clicked["position"] == 1).all()  # page position 2, from 0
    assert result.manifest["llm"]["calls"] == len(fake.requests)


def test_ab_takes_recommender_objects_as_arms(tmp_path):
    cfg = small_config(tmp_path / "unused", ticks=2)
    table = simrec.ab(
        cfg, {"pop": PopularPolicy(), "rand": RandomPolicy(), "knn": "itemknn"}, out=tmp_path
    )
    assert set(table["arm"]) == {"pop", "rand", "knn"}
    assert (tmp_path / "ab_results.parquet").exists()


def test_verbose_logs_refits_and_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--users", "150", "--ticks", "4", "--policy", "itemknn", "--quiet"]
    argv += ["--out", str(out), "--retrain-every", "2"]
    assert main(["-vv", *argv]) == 0
    err = capsys.readouterr().err
    assert "policy itemknn fitted at tick 2" in err
    assert "checkpoint after tick" in err
    assert main([*argv, "--overwrite"]) == 0  # without -v: quiet
    assert "fitted at tick" not in capsys.readouterr().err
