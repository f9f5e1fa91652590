"""The calibration cache: a hit gives the same bytes; anything untrustworthy is recalibrated."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import simrec
from simrec import cache
from simrec.cli import main

WORLD = {"seed": 1, "data": {"synthetic": {"users": 200, "items": 100}}, "simulation": {"ticks": 3}}


@pytest.fixture
def folder(tmp_path):
    cache.configure(tmp_path / "cache")
    yield tmp_path / "cache"
    cache.configure(None, enabled=None)


def _run(tmp_path: Path, name: str, **changes) -> tuple[str, list]:
    cfg = {**WORLD, **changes, "output": {"dir": str(tmp_path / name), "overwrite": True}}
    res = simrec.run(cfg)
    parts = sorted(
        (p.relative_to(res.run_dir).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in Path(res.run_dir).rglob("*.parquet")
    )
    return res.manifest["brain"]["calibration_cache"], parts


def _entry(folder: Path) -> Path:
    (entry,) = (folder / cache.KIND).iterdir()
    return entry


def test_a_cached_calibration_gives_the_same_bytes(folder, tmp_path):
    first, cold = _run(tmp_path, "a")
    second, warm = _run(tmp_path, "b")
    assert (first, second) == ("miss", "hit")
    assert warm == cold and len(cold) >= 4  # events, users, items, metrics
    (row,) = cache.entries()
    assert row["users"] == 200 and row["items"] == 100 and row["seed"] == 1
    assert row["bytes"] > 0 and row["simrec_version"] == simrec.__version__
    # off: the same bytes again, nothing read or stored
    cache.configure(enabled=False)
    off, bytes_off = _run(tmp_path, "c")
    assert off == "off" and bytes_off == cold


def test_the_key_follows_the_data_the_settings_and_the_seed(folder, tmp_path):
    data = simrec.build.load_data(simrec.build.as_config(WORLD))
    brain = simrec.RunConfig().brain.model_dump(mode="json")
    key = cache.calibration_key(data, brain, 1)
    assert cache.calibration_key(data, dict(brain), 1) == key
    assert cache.calibration_key(data, brain, 2) != key
    assert cache.calibration_key(data, {**brain, "exposure": 0.5}, 1) != key
    data.interactions.rating[0] += 1  # one rating changed
    assert cache.calibration_key(data, brain, 1) != key
    assert _run(tmp_path, "a")[0] == "miss"
    assert _run(tmp_path, "b", seed=2)[0] == "miss"
    assert _run(tmp_path, "c", brain={"exposure": 0.5})[0] == "miss"
    assert _run(tmp_path, "d", brain={"exposure": 0.5})[0] == "hit"
    assert len(cache.entries()) == 3


def test_the_least_recently_used_entries_go_past_the_size_limit(folder, tmp_path, monkeypatch):
    _run(tmp_path, "a")
    _run(tmp_path, "b", seed=2)
    assert len(cache.entries()) == 2
    assert _run(tmp_path, "c")[0] == "hit"  # seed 1 is now the most recently used
    monkeypatch.setenv(cache.ENV_MAX, str(2.5 * cache.entries()[0]["bytes"] / 1e9))
    _run(tmp_path, "d", seed=3)  # a third does not fit: seed 2, the least recently used, goes
    assert sorted(r["seed"] for r in cache.entries()) == [1, 3]
    monkeypatch.setenv(cache.ENV_MAX, "lots")  # not a number: the default limit, a warning
    assert _run(tmp_path, "e", seed=4)[0] == "miss" and len(cache.entries()) == 3


def _tamper_arrays(entry: Path) -> None:
    blob = (entry / "arrays.npz").read_bytes()
    (entry / "arrays.npz").write_bytes(blob[: len(blob) // 2])


def _foreign_type(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["state"]["__dict__"]["weights"]["__dataclass__"] = (
        "Path"  # not one of the calibration's types
    )
    (entry / "meta.json").write_text(json.dumps(meta))


def _pickled_arrays(entry: Path) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, a0=np.array([{"x": 1}], dtype=object))  # only readable by unpickling
    blob = buf.getvalue()
    (entry / "arrays.npz").write_bytes(blob)
    meta = json.loads((entry / "meta.json").read_text())
    meta["arrays_sha256"] = hashlib.sha256(blob).hexdigest()
    (entry / "meta.json").write_text(json.dumps(meta))


def _other_key(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["key"] = "0" * 40
    (entry / "meta.json").write_text(json.dumps(meta))


def _wrong_sizes(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    people = meta["state"]["__dict__"]["personas"]["fields"]
    people["profiles"] = people["profiles"][:3]
    people["source_user"] = {"__objects__": [0, 1, 2], "shape": [3]}
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "tamper", [_tamper_arrays, _foreign_type, _pickled_arrays, _other_key, _wrong_sizes]
)
def test_an_untrustworthy_entry_is_recalibrated_and_replaced(folder, tmp_path, tamper, caplog):
    _, cold = _run(tmp_path, "a")
    tamper(_entry(folder))
    how, again = _run(tmp_path, "b")
    assert how.startswith("ignored: ") and again == cold
    assert "recalibrating" in caplog.text or "calibration cache entry" in caplog.text
    assert _run(tmp_path, "c") == ("hit", cold)  # the entry was written anew


def test_the_cache_never_writes_into_or_clears_a_folder_it_did_not_make(tmp_path, caplog):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    cache.configure(theirs)
    try:
        how, _ = _run(tmp_path, "a")
        assert how == "miss (not stored)" and "did not write" in caplog.text
        # nor does a state that is not plain data reach it (the command goes on)
        cache.configure(tmp_path / "mine")
        odd = np.array([b"raw bytes"], dtype=object)
        assert not cache.keep("k" * 40, {"odd": odd}, {}) and "not cached" in caplog.text
        assert cache.entries() == []
        cache.configure(theirs)
        assert cache.clear() == (0, 0)
        assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    finally:
        cache.configure(None, enabled=None)


def test_cache_cli_info_clear_and_flags(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "cache"
    argv = ["run", "--users", "200", "--items", "100", "--ticks", "3", "--seed", "1"]
    try:
        assert main([*argv, "--cache-dir", str(folder), "--out", str(tmp_path / "r1")]) == 0
        assert "(cache: miss)" in capsys.readouterr().out
        assert main([*argv, "--cache-dir", str(folder), "--out", str(tmp_path / "r2")]) == 0
        assert "(cache: hit)" in capsys.readouterr().out
        manifest = json.loads((tmp_path / "r2" / "manifest.json").read_text())
        assert manifest["brain"]["calibration_cache"] == "hit"
        assert main([*argv, "--no-cache", "--out", str(tmp_path / "r3")]) == 0
        assert "(cache: off)" in capsys.readouterr().out
        assert main(["cache", "info", "--cache-dir", str(folder)]) == 0
        out = capsys.readouterr().out
        assert "1 calibration(s)" in out and "200 users, 100 items" in out
        assert main(["cache", "clear", "--cache-dir", str(folder)]) == 0
        assert "removed 1 calibration(s)" in capsys.readouterr().out
        assert not any((folder / cache.KIND).iterdir())
        assert (folder / "simrec-cache.json").is_file()  # the folder stays simrec's
    finally:
        cache.configure(None, enabled=None)
