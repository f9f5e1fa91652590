"""A run killed with SIGKILL anywhere leaves no manifest and resumes to identical output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import simrec
from simrec.cli import main

from .conftest import small_config

# the child process runs simrec.run and SIGKILLs itself on the n-th call of one internal step
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import simrec.outputs as outputs
    import simrec.simulator.resume as resume
    import simrec.simulator.rundir as rundir
    import simrec.simulator.runner as runner
    from simrec.simulator.recorder import EventRecorder
    target, n = sys.argv[2], int(sys.argv[3])
    owner = {"add_tick": EventRecorder, "close_part": EventRecorder,
             "write_parquet": outputs, "save_checkpoint": resume, "atomic_write": rundir}[target]
    name = {"atomic_write": "write_text"}.get(target, target)
    original = getattr(owner, name)
    calls = [0]
    def killing(*a, **k):
        out = original(*a, **k)
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, killing)
    runner.run(json.loads(open(sys.argv[1]).read()))
""")


def _config(out: Path) -> dict:
    """Checkpoints at ticks 2, 4, 6 and policy refits at 3 and 6: a resume must refit the policy
    as it stood after the latest refit, not at the checkpoint; friends' share signal carries
    over through the checkpoint."""
    cfg = small_config(out, ticks=7, checkpoint_every=2)
    cfg["policy"] = {
        "name": "als",
        "params": {"factors": 8, "iterations": 3},
        "retrain_every": 3,
        "exploration": {"kind": "epsilon-greedy", "epsilon": 0.2},
    }
    cfg["social"] = {"graph": "watts-strogatz", "degree": 4, "share_probability": 0.5}
    return cfg


def _outputs(run_dir: Path) -> dict[str, bytes]:
    files = sorted((run_dir / "events").glob("part-*.parquet"))
    files += [
        run_dir / n for n in ("users.parquet", "items.parquet", "metrics.parquet", "schema.json")
    ]
    return {f.name: f.read_bytes() for f in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    simrec.run(_config(out))
    return out


KILL_POINTS = [
    ("atomic_write", 1),  # run dir started: saved config only, no catalog or events yet
    ("add_tick", 1),  # inside the first part, before any checkpoint
    ("add_tick", 3),  # inside the second part
    ("close_part", 2),  # a part renamed, its checkpoint not yet written
    ("save_checkpoint", 2),  # right after a checkpoint (tick 4; the policy was refit at 3)
    ("save_checkpoint", 3),  # right after a checkpoint
    ("write_parquet", 2),  # while finishing: metrics written, users/manifest not
]


@pytest.mark.slow
@pytest.mark.parametrize("target,n", KILL_POINTS, ids=[f"{t}-{n}" for t, n in KILL_POINTS])
def test_sigkill_then_resume_matches_uninterrupted(target, n, reference, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(_config(out)))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(child), str(cfg), target, str(n)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "manifest.json").exists(), "a killed run must not look complete"
    # starting over into the same directory is refused and points to --resume
    assert main(["run", "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert (out / "manifest.json").exists()
    assert _outputs(out) == _outputs(reference)
    # resuming a complete run is an error
    assert main(["run", "--resume", str(out), "--quiet"]) == 2


def test_resume_refuses_changed_data(tmp_path, mllatest, capsys):
    out = tmp_path / "run"
    cfg = {
        "seed": 1,
        "data": {"format": "movielens-latest", "path": str(mllatest)},
        "simulation": {"ticks": 4, "checkpoint_every": 1},
        "brain": {"taste_dim": 4},
        "output": {"dir": str(out)},
    }
    simrec.run(cfg)
    (out / "manifest.json").unlink()  # pretend it was interrupted before finishing
    (out / "_state").mkdir()
    (out / "_state" / "config.json").write_text(
        json.dumps({"config": cfg, "data_hashes": {"x": "y"}})
    )
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "pass --data again" in capsys.readouterr().err  # never the saved location
    assert main(["run", "--resume", str(out), "--data", str(mllatest), "--quiet"]) == 2
    assert "input data changed since the run started" in capsys.readouterr().err
