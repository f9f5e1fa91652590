"""The ray engine on a real local Ray instance: any shard count writes the bytes the local
engine writes; a lost shard and a killed driver both end in the same bytes."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simrec
from simrec.cli import main
from simrec.errors import ConfigError
from simrec.testing import FakeBackend

from .conftest import llm_config, small_config
from .test_resume import CHILD
from .test_resume import _config as resume_world

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module (2 CPUs, no dashboard)."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def _world(out: Path, **engine) -> dict:
    """ALS refitted every 3 ticks, epsilon-greedy exploration and a social graph, with
    checkpoints at ticks 2, 4, 6."""
    cfg = resume_world(out)
    if engine:
        cfg["engine"] = {"kind": "ray", **engine}
    return cfg


def _outputs(run_dir: Path) -> dict[str, bytes]:
    files = sorted((run_dir / "events").glob("part-*.parquet"))
    files += [
        run_dir / n for n in ("users.parquet", "items.parquet", "metrics.parquet", "schema.json")
    ]
    files += sorted(run_dir.glob("reflections.parquet"))
    return {f.name: f.read_bytes() for f in files}


def _manifest(run_dir: Path) -> dict:
    """The manifest less what may differ between engines: timings and the engine itself."""
    m = json.loads((run_dir / "manifest.json").read_text())
    for key in ("timings", "engine"):
        m.pop(key)
    m["config"].pop("engine")
    m["config"]["output"].pop("dir")
    return m


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    simrec.run(_world(out))
    return out


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_any_shard_count_writes_the_local_engines_bytes(shards, local_run, tmp_path):
    out = tmp_path / "run"
    res = simrec.run(_world(out, shards=shards))
    engine = res.manifest["engine"]
    assert {k: engine[k] for k in ("kind", "shards", "address", "restarts")} == {
        "kind": "ray",
        "shards": shards,
        "address": None,
        "restarts": 0,
    }
    assert engine["calibration_tasks"] > 0  # the user blocks ran as tasks
    assert engine["bytes_from_shards"] > 0 and engine["recovery_s"] == 0
    assert len(engine["actor_peak_rss_bytes"]) == shards
    assert _outputs(out) == _outputs(local_run)
    assert _manifest(out) == _manifest(local_run)
    assert res.counts["impressions"] > 0 and res.metrics["shares"].sum() > 0


def _fake_answer(request) -> dict | str:
    """A deterministic function of the prompt: which item is watched, and now and then an
    answer that cannot be used (counted as a fallback)."""
    text = json.dumps(request.messages, sort_keys=True)
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    if h % 7 == 0:
        return "{watch: [1"  # malformed: the statistical brain decides that page
    return {
        "watch": [1 + h % 3],
        "ratings": [1 + h % 5],
        "next": "next_page" if h % 2 else "leave",
        "feeling": "satisfied",
        "reason": f"reason {h % 100}",
        "note": "I like what I like.",
    }


def test_llm_brain_with_memory_on_three_shards_matches_local(tmp_path):
    """The LLM brain, its episodic memory and reflections: the same events, reflections and
    counted calls and fallbacks on three shards as in one process."""
    outs = {}
    for label, engine in (("local", None), ("ray", {"kind": "ray", "shards": 3})):
        cfg = llm_config(tmp_path / label, None)
        cfg["simulation"]["ticks"] = 3
        cfg["memory"] = {"reflect_every": 2, "reflect_with": "llm"}
        if engine:
            cfg["engine"] = engine
        res = simrec.run(cfg, backend=FakeBackend(_fake_answer))
        outs[label] = res
    local, sharded = outs["local"], outs["ray"]
    assert _outputs(sharded.run_dir) == _outputs(local.run_dir)
    for key in ("llm", "fallbacks", "memory", "counts"):
        assert sharded.manifest[key] == local.manifest[key], key
    assert local.manifest["llm"]["calls"] > 0 and sum(local.manifest["fallbacks"].values()) > 0


@pytest.mark.slow
def test_llm_run_through_the_cache_on_shards_makes_no_calls(tmp_path, llama_server):
    """SmolLM2 on a real llama.cpp server: a local run fills the response cache; the same run
    on two shards replays it with zero calls and writes the same bytes."""
    cache = tmp_path / "cache.sqlite"
    runs = {}
    for label, engine in (("local", None), ("ray", {"kind": "ray", "shards": 2})):
        cfg = llm_config(tmp_path / label, cache, backend="openai:smollm2", base_url=llama_server)
        if engine:
            cfg["engine"] = engine
        runs[label] = simrec.run(cfg)
    assert runs["local"].manifest["llm"]["calls"] > 0
    assert runs["ray"].manifest["llm"]["calls"] == 0
    assert (
        runs["ray"].manifest["llm"]["cache_hits"] == runs["local"].manifest["llm"]["cache_misses"]
    )
    assert _outputs(runs["ray"].run_dir) == _outputs(runs["local"].run_dir)


class DiesOnce:
    """The ``als`` policy, except that the shard of agents 0-99 kills its own process
    (SIGKILL) in the middle of tick 3, once (``marker`` records that it happened)."""

    def __init__(self, marker: str) -> None:
        from simrec.environments.registry import make_policy

        self.inner = make_policy({"name": "als", "params": {"factors": 8, "iterations": 3}})
        self.name = self.inner.name
        self.marker = marker

    def fit(self, interactions, catalog) -> None:
        self.inner.fit(interactions, catalog)

    def recommend(self, users, k, *, exclude, rng):
        import os

        first_shard = users.size and users[0] < 100
        if rng.tick == 3 and rng.page == 0 and first_shard and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.recommend(users, k, exclude=exclude, rng=rng)


def test_a_shard_killed_mid_tick_restarts_from_the_checkpoint(tmp_path):
    """Agent 0's shard dies during tick 3 (after the checkpoint at tick 2): every shard starts
    again from that checkpoint, and the run ends with the bytes of an uninterrupted run."""
    marker = tmp_path / "killed"
    runs = {}
    for label, engine in (("local", None), ("ray", {"kind": "ray", "shards": 3})):
        cfg = _world(tmp_path / label)
        cfg["policy"].pop("name")
        cfg["policy"].pop("params")
        if engine:
            cfg["engine"] = engine
        policy = DiesOnce(str(marker)) if engine else DiesOnce(str(tmp_path / "never"))
        if not engine:
            Path(policy.marker).write_text("a local run never dies")
        runs[label] = simrec.run(cfg, policy=policy)
    assert marker.exists(), "the shard was never killed"
    assert runs["ray"].manifest["engine"]["restarts"] == 1
    assert runs["ray"].manifest["engine"]["recovery_s"] > 0
    assert _outputs(runs["ray"].run_dir) == _outputs(runs["local"].run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("resume_engine", ["local", "ray"])
def test_driver_killed_then_resumed_with_either_engine(resume_engine, local_run, tmp_path):
    """The driver of a 2-shard run is SIGKILLed right after its second checkpoint; --resume
    finishes it with the local engine or on Ray, with the same bytes as an uninterrupted run."""
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(_world(out, shards=2, num_cpus=1)))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(child), str(cfg), "save_checkpoint", "2"],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "manifest.json").exists()
    flags = ["--engine", "ray", "--shards", "3"] if resume_engine == "ray" else []
    assert main(["run", "--resume", str(out), "--quiet", *flags]) == 0
    assert _outputs(out) == _outputs(local_run)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from_tick"] == 4
    assert manifest["engine"]["kind"] == resume_engine


def test_checkpoint_state_joins_shards_into_one_models_state(tmp_path):
    """The checkpoint a sharded run saves is the one a local run saves at the same tick."""
    states = {}
    for label, engine in (("local", None), ("ray", {"kind": "ray", "shards": 3})):
        cfg = _world(tmp_path / label)
        cfg["memory"] = {"reflect_every": 1, "reflect_with": "template"}
        cfg["simulation"]["ticks"] = 2
        if engine:
            cfg["engine"] = engine
        from simrec.simulator import resume

        saved = {}
        original = resume.save_checkpoint

        def keep(run_dir, state, part, saved=saved, original=original):
            saved.update({k: np.array(v, copy=True) for k, v in state.items()})
            original(run_dir, state, part)

        resume.save_checkpoint = keep
        try:
            simrec.run(cfg)
        finally:
            resume.save_checkpoint = original
        states[label] = saved
    local, sharded = states["local"], states["ray"]
    assert local.keys() == sharded.keys()
    for key in local:
        np.testing.assert_array_equal(local[key], sharded[key], err_msg=key)


def test_bad_engine_settings_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="per-agent mode runs only with the local engine"):
        simrec.run(_world(tmp_path / "a", shards=2), per_agent=True)
    assert not (tmp_path / "a").exists()
    code = main(
        [
            "run",
            "--users",
            "50",
            "--items",
            "40",
            "--ticks",
            "1",
            "--engine",
            "ray",
            "--ray-address",
            "127.0.0.1:9",
            "--out",
            str(tmp_path / "b"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "engine.address" in err and "127.0.0.1:9" in err
    assert "Traceback" not in err and not (tmp_path / "b").exists()
    assert main(["run", "--shards", "0", "--engine", "ray", "--quiet"]) == 2
    assert "engine.shards" in capsys.readouterr().err


def test_without_ray_installed_the_engine_names_the_install_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = tmp_path / "run"
    code = main(["run", "--users", "50", "--engine", "ray", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'simrec[ray]'" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("taste_model", ["lda", "svd"])
def test_calibration_on_ray_tasks_matches_threads(taste_model, tmp_path):
    """The per-user blocks of the calibration (the rating model's user solves, the topic
    mixtures) as Ray tasks: the same brain and personas as on threads, to the bit."""
    from simrec import build
    from simrec.arrays import user_blocks_on
    from simrec.simulator.ray_engine import RayBlocks

    raw = small_config(tmp_path / "run")
    raw["brain"] = {"taste_model": taste_model}
    cfg = build.as_config(raw)
    data = build.load_data(cfg)
    local, local_personas = build.calibrate(cfg, data)
    blocks = RayBlocks(ray)
    with user_blocks_on(blocks):
        remote, remote_personas = build.calibrate(cfg, data)
    assert blocks.tasks > 0
    for name in ("taste", "genre_lift", "item_term", "session_rate"):
        np.testing.assert_array_equal(getattr(remote, name), getattr(local, name), err_msg=name)
    for name in ("user_bias", "item_bias", "user_factors", "item_factors"):
        a, b = getattr(remote.rating_model, name), getattr(local.rating_model, name)
        np.testing.assert_array_equal(a, b, err_msg=name)
    for name, value in vars(local_personas).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(vars(remote_personas)[name], value, err_msg=name)


def test_ray_run_writes_its_parts_to_a_file_uri(local_run, tmp_path):
    """On a cluster the shards write nothing: the driver joins their parts and writes them
    wherever output.events_uri says, here a file:// URI outside the run directory."""
    out, elsewhere = tmp_path / "run", tmp_path / "shared" / "events"
    cfg = _world(out, shards=2)
    cfg["output"]["events_uri"] = elsewhere.as_uri()
    res = simrec.run(cfg)
    parts = {p.name: p.read_bytes() for p in sorted(elsewhere.glob("part-*.parquet"))}
    reference = _outputs(local_run)
    assert parts == {k: v for k, v in reference.items() if k.startswith("part-")}
    assert res.manifest["outputs"]["events_uri"] == elsewhere.as_uri()


def test_ab_arms_on_ray_shards_give_the_local_comparison(tmp_path):
    """simrec ab with --engine ray: every arm's run on 2 shards, the same comparison table
    (bytes) as the local engine's, and each arm's event parts at their own URI folder."""
    tables = {}
    for label in ("local", "ray"):
        args = ["ab", "--users", "120", "--items", "80", "--ticks", "3", "--seed", "5"]
        args += ["--arm", "A=popular", "--arm", "B=random", "--out", str(tmp_path / label)]
        args += ["--quiet"]
        if label == "ray":
            uri = (tmp_path / "shared").as_uri()
            args += ["--engine", "ray", "--shards", "2", "--events-uri", uri]
        assert main(args) == 0
        tables[label] = [
            (tmp_path / label / name).read_bytes()
            for name in ("ab_results.parquet", "ab_exposure.parquet")
        ]
    assert tables["ray"] == tables["local"]
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["A", "B"]
    # the exposure-0 reading's parts beside the main reading's, in the arm's folder
    assert sorted(p.name for p in (tmp_path / "shared" / "A").iterdir()) == [
        "rep-0",
        "rep-0-exposure-0",
    ]
