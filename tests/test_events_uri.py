"""Event parts written to a pyarrow.fs URI (output.events_uri) instead of RUN/events: the same
bytes, every reader finds them, a SIGKILLed run resumes there, and simrec writes into or
deletes from only an empty location or its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import simrec
from simrec.cli import main

from .conftest import small_config
from .test_resume import CHILD, _config


def _parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    simrec.run(_config(out))
    return out


def test_parts_at_a_file_uri_are_the_run_dirs_bytes(reference, tmp_path, capsys):
    out, elsewhere = tmp_path / "run", tmp_path / "shared" / "events"
    cfg = _config(out)
    cfg["output"]["events_uri"] = elsewhere.as_uri()
    res = simrec.run(cfg)
    assert not (out / "events").exists() or not any((out / "events").iterdir())
    assert _parts(elsewhere) == _parts(reference / "events")
    m = res.manifest["outputs"]
    assert m["events_uri"] == elsewhere.as_uri()
    assert m["events"] == [f"{elsewhere.as_uri()}/{p}" for p in _parts(elsewhere)]
    assert res.events().equals(simrec.RunResult.events(_result(reference)))
    # the readers of a run take the location from their command line, never from the run
    assert main(["report", str(out)]) == 2
    assert "pass --events-uri again" in capsys.readouterr().err
    again = ["--events-uri", elsewhere.as_uri()]
    assert main(["report", str(out), *again]) == 0
    assert main(["export", str(out), "--to", "csv", "--out", str(tmp_path / "csv"), *again]) == 0
    rows = (tmp_path / "csv" / "events.csv").read_text().count("\n") - 1
    assert rows == len(res.events())
    # --overwrite with fewer ticks: the earlier run's parts at the URI go, the marker stays
    cfg["simulation"]["ticks"] = 2
    cfg["output"]["overwrite"] = True
    simrec.run(cfg)
    assert sorted(_parts(elsewhere)) == ["part-00000.parquet"]
    assert (elsewhere / ".simrec-events.json").is_file()


def _result(run_dir: Path) -> simrec.RunResult:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return simrec.RunResult(run_dir, manifest["run_id"], manifest["counts"], None, manifest)


@pytest.mark.slow
def test_sigkill_then_resume_with_parts_at_a_uri(reference, tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "shared" / "events"
    raw = _config(out)
    raw["output"]["events_uri"] = elsewhere.as_uri()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(raw))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    # killed right after the second part moved into place, before its checkpoint: the resume
    # starts from the checkpoint at tick 2 and must replace that part at the URI
    proc = subprocess.run(
        [sys.executable, str(child), str(cfg), "close_part", "2"], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert "part-00001.parquet" in _parts(elsewhere)
    assert main(["run", "--resume", str(out), "--quiet"]) == 2  # the location is asked again
    again = ["--events-uri", elsewhere.as_uri()]
    assert main(["run", "--resume", str(out), "--quiet", *again]) == 0
    assert _parts(elsewhere) == _parts(reference / "events")
    assert not any(p.name.endswith(".tmp") for p in elsewhere.iterdir())


def test_a_location_holding_other_files_is_refused_and_left_alone(tmp_path, capsys):
    elsewhere = tmp_path / "bucket"
    elsewhere.mkdir()
    (elsewhere / "part-00000.parquet").write_text("somebody else's")
    out = tmp_path / "run"
    code = main(
        ["run", "--out", str(out), "--events-uri", elsewhere.as_uri(), "--quiet"]
        + ["--users", "50", "--items", "40", "--ticks", "1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "output.events_uri" in err and "not this run's" in err and "Traceback" not in err
    assert (elsewhere / "part-00000.parquet").read_text() == "somebody else's"
    # a second run directory may not take over the first one's location either
    first = small_config(tmp_path / "first", ticks=1)
    first["output"]["events_uri"] = (tmp_path / "mine").as_uri()
    simrec.run(first)
    second = small_config(tmp_path / "second", ticks=1)
    second["output"]["events_uri"] = (tmp_path / "mine").as_uri()
    with pytest.raises(simrec.errors.OutputExistsError, match="not this run's"):
        simrec.run(second)
    assert (tmp_path / "first" / "manifest.json").is_file()
    assert _parts(tmp_path / "mine")


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("relative/events", "expected a URI with a scheme"),
        ("s3://AKIAEXAMPLE:s3cr3t-value@bucket/events", "holds credentials"),
        ("s3://bucket/events?secret_key=s3cr3t-value", "holds credentials"),
    ],
)
def test_bad_uris_are_clear_errors(uri, expected, tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path / "run"), "--events-uri", uri, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "output.events_uri" in err
    assert "s3cr3t-value" not in err  # a secret is never echoed back
    assert not (tmp_path / "run").exists()
