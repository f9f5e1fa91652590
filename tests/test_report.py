"""HTML reports: every plot the page references exists and is a valid PNG, and vice versa."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import pytest

import simrec
from simrec.cli import main
from simrec.evaluation.ope import ope

from .conftest import small_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_report(folder: Path, expected: int) -> str:
    page = (folder / "report.html").read_text()
    refs = re.findall(r"<img src='([^']+)'", page)
    assert len(refs) == expected, refs
    pngs = {p.name for p in folder.glob("*.png")}
    assert set(refs) == pngs, "the page must show every plot it ships, and only those"
    for ref in refs:
        data = (folder / ref).read_bytes()
        assert data.startswith(PNG_MAGIC)
        img = matplotlib.image.imread(folder / ref)
        assert img.shape[0] > 50 and img.shape[1] > 50
    assert "http" not in page.lower().replace("https://pypi", ""), "self-contained: no links"
    return page


def test_run_report(tmp_path, capsys):
    run = simrec.run(small_config(tmp_path / "r", ticks=3)).run_dir
    assert main(["report", str(run)]) == 0
    page = _check_report(run / "report", 4)
    assert "Metrics per tick" in page and "popular" in page


def test_ab_report(tmp_path):
    simrec.ab(
        small_config(None, ticks=3),
        {"A": "popular", "B": "random", "C": "genre"},
        out=tmp_path / "ab",
        n_resamples=200,
    )
    page = _check_report(tmp_path / "ab", 3)
    assert "Lifts with confidence intervals" in page and "novelty" in page
    # the verdict comes first: each arm against the control, in a sentence
    assert page.index("Verdict") < page.index("Lifts with confidence intervals")
    assert "B vs A: consumed per user" in page and "C vs A: consumed per user" in page


def test_ope_report(tmp_path):
    cfg = small_config(tmp_path / "log", ticks=1)
    cfg["policy"] = {"name": "popular", "exploration": {"kind": "epsilon-greedy", "epsilon": 0.5}}
    run = simrec.run(cfg).run_dir
    ope(run, "random", validate=True, n_resamples=100, out=tmp_path / "ope")
    page = _check_report(tmp_path / "ope", 2)  # the estimates and the weight histogram
    assert "simulated truth" in page and "Importance weights" in page


def test_report_of_an_incomplete_run_is_refused(tmp_path, capsys):
    run = simrec.run(small_config(tmp_path / "r", ticks=1)).run_dir
    (run / "manifest.json").unlink()
    assert main(["report", str(run)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert not (run / "report").exists()


@pytest.mark.parametrize("cmd", ["report", "export"])
def test_missing_run_dir(cmd, tmp_path, capsys):
    extra = ["--to", "csv"] if cmd == "export" else []
    assert main([cmd, str(tmp_path / "missing"), *extra]) == 2
