"""Exports: RecBole atomic files, the OBP bundle, the Hugging Face layout, CSV; bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.cli import main

from .conftest import small_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "run"
    cfg = small_config(out, ticks=5)
    cfg["policy"] = {"name": "popular", "exploration": {"kind": "softmax", "temperature": 0.2}}
    cfg["social"] = {"graph": "watts-strogatz", "degree": 4, "share_probability": 0.5}
    return simrec.run(cfg).run_dir


def _impressions(run_dir):
    ev = pq.read_table(run_dir / "events").to_pandas()
    return ev[ev.event_type == "impression"]


def test_recbole_atomic_files(run_dir):
    assert main(["export", str(run_dir), "--to", "recbole"]) == 0
    name = "recbole"  # RecBole's dataset name: the export folder's
    out = run_dir / "export" / "recbole"
    inter = pd.read_csv(out / f"{name}.inter", sep="\t")
    assert all(":" in c for c in inter.columns)
    assert {"user_id:token", "item_id:token", "label:float", "pscore_item_position:float"} <= set(
        inter.columns
    )
    imp = _impressions(run_dir)
    assert len(inter) == len(imp) and inter["label:float"].sum() == imp.clicked.sum()
    np.testing.assert_allclose(inter["pscore_item_position:float"], imp.pscore_item_position)
    user = pd.read_csv(out / f"{name}.user", sep="\t")
    item = pd.read_csv(out / f"{name}.item", sep="\t", keep_default_na=False)
    assert len(user) == 300 and len(item) == 200
    assert item["genres:token_seq"].str.len().gt(0).all()
    # every line has exactly as many fields as the header
    for f in (".inter", ".user", ".item"):
        lines = (out / f"{name}{f}").read_text().splitlines()
        assert {ln.count("\t") for ln in lines} == {lines[0].count("\t")}


def test_obp_bundle(run_dir):
    assert main(["export", str(run_dir), "--to", "obp"]) == 0
    bf = dict(np.load(run_dir / "export" / "obp" / "bandit_feedback.npz"))
    n = int(bf["n_rounds"])
    imp = _impressions(run_dir)
    assert n == len(imp)
    assert bf["action"].shape == (n,) and bf["context"].shape[0] == n
    assert ((bf["action"] >= 0) & (bf["action"] < bf["n_actions"])).all()
    assert ((bf["pscore"] > 0) & (bf["pscore"] <= 1)).all()
    assert bf["action_context"].shape[0] == bf["n_actions"]
    assert bf["reward"].sum() == imp.clicked.sum() and int(bf["len_list"]) == 10
    meta = json.loads((run_dir / "export" / "obp" / "meta.json").read_text())
    assert len(meta["context_columns"]) == bf["context"].shape[1]


def test_hugging_face_layout_loads_with_datasets(run_dir, tmp_path):
    datasets = pytest.importorskip("datasets")  # a dev dependency: present in make test
    before = sorted(p.name for p in run_dir.iterdir())
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), "--to", "hf", "--out", str(out)]) == 0
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing added to the run
    ds = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test"}
    n_events = pq.read_table(run_dir / "events").num_rows
    assert ds["train"].num_rows + ds["test"].num_rows == n_events
    assert max(ds["train"]["tick"]) < min(ds["test"]["tick"])
    assert pq.read_table(out / "users.parquet").equals(pq.read_table(run_dir / "users.parquet"))
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "pscore_item_position" in card
    assert "pypi.org" not in card and "http" not in card
    assert "simrec export" in card and "simrec run" in card
    # a second export needs --overwrite, and replaces the first in place
    assert main(["export", str(run_dir), "--to", "hf", "--out", str(out)]) == 2
    assert main(["export", str(run_dir), "--to", "hf", "--out", str(out), "--overwrite"]) == 0
    assert (out / "train" / "events.parquet").exists()
    # without --out: under the run's export/ folder, like every format
    assert main(["export", str(run_dir), "--to", "hf"]) == 0
    assert (run_dir / "export" / "hf" / "README.md").exists() and not (run_dir / "train").exists()


def test_csv(run_dir):
    assert main(["export", str(run_dir), "--to", "csv"]) == 0
    out = run_dir / "export" / "csv"
    ev = pd.read_csv(out / "events.csv")
    assert len(ev) == pq.read_table(run_dir / "events").num_rows
    users = pd.read_csv(out / "users.csv")
    assert users.taste.str.count(r"\|").eq(7).all()  # 8 taste dimensions
    assert main(["export", str(run_dir), "--to", "csv"]) == 2  # exists


def test_export_bad_input(tmp_path, capsys):
    run = simrec.run(small_config(tmp_path / "r", ticks=1)).run_dir
    (run / "manifest.json").unlink()
    assert main(["export", str(run), "--to", "csv"]) == 2
    err = capsys.readouterr().err
    assert "incomplete run (no manifest.json)" in err and "Traceback" not in err
    assert not (run / "export").exists()
    assert main(["export", str(tmp_path / "none"), "--to", "csv"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--to", "xlsx"])
    assert exc.value.code == 2
