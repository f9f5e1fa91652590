"""Safety, through the CLI: simrec deletes only what it wrote, runs no code named only inside a
run directory, locks what it writes, and refuses impossible configs before any heavy work.

Each test here failed on the code before the safety work (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import simrec
from simrec.cli import main
from simrec.outputs import LOCK, MARKER, locked
from tests.conftest import small_config


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _someone_elses(folder: Path) -> dict[str, str]:
    """A folder of the user's own files, returned as {relative path: content}."""
    files = {"thesis.tex": "\\chapter{Intro}", "sub/data.csv": "a,b\n1,2\n", ".bashrc": "x=1"}
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return files


def _still_there(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        assert (folder / rel).read_text() == text, rel


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    return simrec.run(small_config(tmp_path_factory.mktemp("done") / "run", ticks=2)).run_dir


# ---------------------------------------------------------------------------- data loss


def test_export_overwrite_never_empties_a_foreign_folder(done_run, tmp_path, capsys):
    target = tmp_path / "papers"
    files = _someone_elses(target)
    code = main(["export", str(done_run), "--to", "csv", "--out", str(target), "--overwrite"])
    assert code == 2
    assert "was not written by simrec" in _err(capsys)
    _still_there(target, files)
    assert sorted(p.name for p in target.iterdir()) == [".bashrc", "sub", "thesis.tex"]


def test_export_overwrite_replaces_only_its_own_files(done_run, tmp_path):
    target = tmp_path / "exp"
    assert main(["export", str(done_run), "--to", "recbole", "--out", str(target)]) == 0
    (target / "notes.txt").write_text("mine")  # the user adds a file next to the export
    assert main(["export", str(done_run), "--to", "recbole", "--out", str(target)]) == 2
    assert (
        main(["export", str(done_run), "--to", "recbole", "--out", str(target), "--overwrite"]) == 0
    )
    assert (target / "notes.txt").read_text() == "mine"
    assert any(p.suffix == ".inter" for p in target.iterdir())
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_run_overwrite_needs_a_real_simrec_manifest(tmp_path, capsys):
    web = tmp_path / "webapp"
    files = _someone_elses(web)
    (web / "manifest.json").write_text(json.dumps({"name": "My PWA", "start_url": "/"}))
    files["manifest.json"] = (web / "manifest.json").read_text()
    code = main(
        ["run", "--ticks", "1", "--users", "50", "--out", str(web), "--overwrite", "--quiet"]
    )
    assert code == 2
    assert "was not written by simrec" in _err(capsys)
    _still_there(web, files)


def test_run_overwrite_deletes_only_simrec_outputs(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--ticks", "2", "--users", "60", "--items", "80", "--out", str(out), "--quiet"]
    assert main(args) == 0
    (out / "my-notes.md").write_text("keep")
    (out / "events" / "analysis.ipynb").write_text("{}")
    assert main(args + ["--overwrite"]) == 0
    assert (out / "my-notes.md").read_text() == "keep"
    assert (out / "events" / "analysis.ipynb").read_text() == "{}"
    assert (out / "manifest.json").is_file() and (out / MARKER).is_file()


@pytest.mark.parametrize("command", ["augment", "ab", "fidelity", "report"])
def test_every_output_refuses_a_foreign_folder(command, done_run, tmp_path, capsys):
    target = tmp_path / "mine"
    files = _someone_elses(target)
    argv = {
        "augment": ["augment", "items", "--items", "80", "--out", str(target)],
        "ab": ["ab", "--users", "60", "--ticks", "1", "--arm", "A=random", "--arm", "B=popular"],
        "fidelity": ["eval", "fidelity", "--users", "60", "--ticks", "1"],
        "report": ["report", str(done_run)],
    }[command]
    argv += ["--out", str(target)] if command != "augment" else []
    argv += ["--overwrite"] if command in ("augment", "ab", "fidelity") else []
    assert main(argv) == 2
    assert "was not written by simrec" in _err(capsys)
    _still_there(target, files)


def test_symlinked_out_is_refused(done_run, tmp_path, capsys):
    real = tmp_path / "real"
    files = _someone_elses(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert main(["run", "--ticks", "1", "--out", str(link), "--overwrite", "--quiet"]) == 2
    assert "symbolic link" in _err(capsys)
    assert main(["export", str(done_run), "--to", "csv", "--out", str(link), "--overwrite"]) == 2
    _still_there(real, files)


# ---------------------------------------------------------------------------- resume


def _unfinished(tmp_path: Path, **extra) -> Path:
    """An unfinished run (as if killed after its first checkpoint)."""
    cfg = small_config(tmp_path / "run", ticks=4, checkpoint_every=2)
    cfg.update(extra)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after_first_checkpoint(cfg)
    return tmp_path / "run"


def _interrupt_after_first_checkpoint(cfg):
    import simrec.simulator.resume as resume

    original = resume.save_checkpoint

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    resume.save_checkpoint = save_then_stop
    try:
        simrec.run(cfg)
    finally:
        resume.save_checkpoint = original


def test_resume_never_imports_a_class_named_only_in_the_run_dir(tmp_path, capsys):
    run_dir = _unfinished(tmp_path)
    state = run_dir / "_state" / "config.json"
    saved = json.loads(state.read_text())
    pwned = tmp_path / "pwned"
    saved["config"]["policy"] = {
        "name": "subprocess:Popen",
        "params": {"args": f"touch {pwned}", "shell": True},
    }
    state.write_text(json.dumps(saved))
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    err = _err(capsys)
    assert "subprocess:Popen" in err and "--policy" in err
    time.sleep(0.2)
    assert not pwned.exists()
    # even passed on the command line, a class that is no Recommender is never called
    assert main(["run", "--resume", str(run_dir), "--policy", "subprocess:Popen", "--quiet"]) == 2
    assert "expected a Recommender class" in _err(capsys)
    time.sleep(0.2)
    assert not pwned.exists()


def test_resume_of_a_trusted_custom_policy_runs(tmp_path):
    run_dir = _unfinished(tmp_path, policy={"name": "tests.custom_policy:LeastPopular"})
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    assert (
        main(
            [
                "run",
                "--resume",
                str(run_dir),
                "--policy",
                "tests.custom_policy:LeastPopular",
                "--quiet",
            ]
        )
        == 0
    )
    assert (run_dir / "manifest.json").is_file()


def test_resume_refuses_symlinked_events_and_deletes_nothing_there(tmp_path, capsys):
    run_dir = _unfinished(tmp_path)
    elsewhere = tmp_path / "home"
    files = _someone_elses(elsewhere)
    (elsewhere / "part-00007.parquet").write_text("not simrec's")
    files["part-00007.parquet"] = "not simrec's"
    for f in (run_dir / "events").iterdir():
        f.rename(elsewhere / f"moved-{f.name}")
    (run_dir / "events").rmdir()
    (run_dir / "events").symlink_to(elsewhere)
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    assert "symbolic link" in _err(capsys)
    _still_there(elsewhere, files)


def test_resume_deletes_only_its_own_part_files(tmp_path):
    run_dir = _unfinished(tmp_path)
    events = run_dir / "events"
    (events / ".hidden-notes").write_text("keep")
    (events / "part-00009.parquet.bak").write_text("keep")
    (events / "part-00005.parquet").write_text("stale part after the checkpoint")
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert (events / ".hidden-notes").read_text() == "keep"
    assert (events / "part-00009.parquet.bak").read_text() == "keep"
    assert not (events / "part-00005.parquet").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other-run"])
def test_resume_of_a_damaged_checkpoint_is_a_clear_error(damage, tmp_path, capsys):
    run_dir = _unfinished(tmp_path)
    ckpt = run_dir / "_state" / "checkpoint.npz"
    before = sorted(p.name for p in (run_dir / "events").iterdir())
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"PK\x03\x04 not a zip")
    else:  # a checkpoint of a run with another population
        other = _unfinished(tmp_path / "other", data={"synthetic": {"users": 120, "items": 200}})
        ckpt.write_bytes((other / "_state" / "checkpoint.npz").read_bytes())
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    err = _err(capsys)
    assert "checkpoint.npz" in err and "--overwrite" in err
    assert sorted(p.name for p in (run_dir / "events").iterdir()) == before  # nothing deleted


# ---------------------------------------------------------------------------- locks and names


def test_a_locked_run_directory_refuses_a_second_run(tmp_path, capsys):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from simrec.outputs import locked
                with locked(Path({str(out)!r})):
                    print("locked", flush=True)
                    time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", "--ticks", "1", "--users", "50", "--out", str(out), "--quiet"]) == 2
        err = _err(capsys)
        assert "another simrec process" in err and f"pid {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing of the second run
    finally:
        holder.kill()
        holder.wait()
    assert main(["run", "--ticks", "1", "--users", "50", "--out", str(out), "--quiet"]) == 0


def test_lock_is_released_and_reusable(tmp_path):
    with locked(tmp_path / "x"):
        pass
    with locked(tmp_path / "x"):
        pass


@pytest.mark.parametrize("name", ["../escaped-run", "/tmp/abs-run", "a/b", "..", "run name"])
def test_run_name_cannot_become_a_path(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"name": name, "simulation": {"ticks": 1}}))
    assert main(["run", str(tmp_path / "c.yaml"), "--quiet"]) == 2
    assert "name" in _err(capsys)
    assert not (tmp_path / "escaped-run").exists() and not Path("/tmp/abs-run").exists()


# ---------------------------------------------------------------------------- fail fast


def test_impossible_sizes_fail_fast(tmp_path, capsys):
    t = time.perf_counter()
    assert main(["run", "--users", "100000000", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "GiB" in _err(capsys)
    argv = ["run", "--policy", "als", "--param", "factors=100000000", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "b")]) == 2
    assert "policy" in _err(capsys)
    assert time.perf_counter() - t < 30
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unwritable_out_fails_before_the_work(tmp_path, capsys):
    if os.geteuid() == 0:
        blocked = Path("/proc/simrec-out")  # not writable even for root
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir()
        blocked.chmod(0o500)
    assert main(["run", "--ticks", "1", "--out", str(blocked / "run"), "--quiet"]) == 2
    assert "cannot write" in _err(capsys)


def test_out_that_is_a_file_fails_before_the_work(done_run, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert main(["export", str(done_run), "--to", "csv", "--out", str(f)]) == 2
    assert "found a file" in _err(capsys)
    argv = ["augment", "items", "--items", "80", "--out", str(f)]
    assert main(argv) == 2
    assert "found a file" in _err(capsys)
    assert f.read_text() == "mine"


@pytest.mark.parametrize("kind", ["bomb", "deep-yaml", "deep-toml"])
def test_hostile_config_files_fail_fast(kind, tmp_path, capsys):
    if kind == "bomb":
        lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
            lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
        path = tmp_path / "c.yaml"
        path.write_text("\n".join(lines))
    elif kind == "deep-yaml":
        path = tmp_path / "c.yaml"
        path.write_text("a: " + "[" * 3000 + "]" * 3000)
    else:
        path = tmp_path / "c.toml"
        path.write_text("a = " + "[" * 3000 + "]" * 3000)
    t = time.perf_counter()
    assert main(["run", str(path), "--quiet"]) == 2
    assert str(path) in _err(capsys)
    assert time.perf_counter() - t < 10


def test_checkpoint_and_manifest_writes_are_fsynced(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    simrec.run(small_config(tmp_path / "run", ticks=2, checkpoint_every=1))
    # per checkpoint and per manifest: the file and its folder
    assert len(synced) >= 2 * 2 + 2


def test_resume_never_loads_an_embedding_model_named_only_in_the_run_dir(tmp_path):
    from simrec.errors import InputError
    from simrec.trust import config_from_run_dir

    raw = small_config(tmp_path / "r")
    raw["brain"]["name"] = "llm"
    raw["memory"] = {"embedding": "sentence:/somewhere/evil-model"}
    with pytest.raises(InputError, match="--trust sentence:/somewhere/evil-model"):
        config_from_run_dir(raw, "saved")
    cfg = config_from_run_dir(raw, "saved", allow_import=["sentence:/somewhere/evil-model"])
    assert cfg.memory.embedding == "sentence:/somewhere/evil-model"


def test_csv_export_defuses_spreadsheet_formulas(done_run, tmp_path):
    import pandas as pd

    from simrec.export import _defuse_formulas

    items = pd.read_parquet(done_run / "items.parquet")
    assert main(["export", str(done_run), "--to", "csv", "--out", str(tmp_path / "csv")]) == 0
    written = pd.read_csv(tmp_path / "csv" / "items.csv")
    assert (written.title == items.title).all()  # ordinary titles untouched
    df = _defuse_formulas(pd.DataFrame({"title": ['=HYPERLINK("x")', "@SUM(A1)", "Up"]}))
    assert df.title.tolist() == ['\'=HYPERLINK("x")', "'@SUM(A1)", "Up"]


def test_a_report_written_before_markers_is_still_replaced(done_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    assert main(["report", str(run)]) == 0
    (run / "report" / MARKER).unlink()  # as an older simrec left it
    assert main(["report", str(run)]) == 0
    (run / "report" / "notes.txt").write_text("mine")  # then it is not only a report
    (run / "report" / MARKER).unlink()
    assert main(["report", str(run)]) == 2
    assert (run / "report" / "notes.txt").read_text() == "mine"
