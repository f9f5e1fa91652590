"""End-to-end through the `simrec` command on MovieLens-format files the tests write."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from simrec.cli import main
from simrec.config import RunConfig, load_config


@pytest.mark.parametrize(
    "fixture,fmt",
    [("ml100k", "movielens-100k"), ("ml1m", "movielens-1m"), ("mllatest", "movielens-latest")],
)
def test_cli_runs_on_movielens_fixture(fixture, fmt, request, tmp_path, capsys):
    data = request.getfixturevalue(fixture)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--data",
            str(data),
            "--ticks",
            "3",
            "--seed",
            "5",
            "--out",
            str(out),
            "--page-size",
            "6",
            "--max-pages",
            "2",
            "--policy",
            "random",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "impressions" in printed and str(out) in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["source"] == fmt and manifest["config"]["data"]["format"] == fmt
    assert manifest["config"]["simulation"]["page_size"] == 6 and manifest["policy"] == "random"
    ev = pq.read_table(out / "events").to_pandas()
    assert len(ev) == manifest["counts"]["impressions"] > 0
    assert ev["position"].max() <= 5 and ev["page"].max() <= 1
    items = pq.read_table(out / "items.parquet").to_pandas()
    assert set(ev["item_id"]) <= set(items["item_id"])
    users = pq.read_table(out / "users.parquet").to_pandas()
    assert len(users) == 120
    if fmt == "movielens-latest":
        assert set(ev["rating"].dropna()) <= {x / 2 for x in range(1, 11)}


def test_cli_table_format_with_columns(table_csv, tmp_path):
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--data",
            str(table_csv),
            "--columns",
            "user=uid,item=iid,rating=stars,timestamp=when",
            "--users",
            "60",
            "--items",
            "50",
            "--ticks",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    ev = pq.read_table(out / "events").to_pandas()
    assert ev["item_id"].str.startswith("m").all()
    assert len(pq.read_table(out / "items.parquet")) == 50
    assert len(pq.read_table(out / "users.parquet")) == 60


def test_print_config_round_trips_and_flags_override(tmp_path, capsys):
    cfg_file = tmp_path / "base.yaml"
    cfg_file.write_text(
        "seed: 3\nsimulation:\n  ticks: 9\n  page_size: 4\npolicy:\n  name: random\n"
    )
    assert main(["run", str(cfg_file), "--ticks", "2", "--max-pages", "7", "--print-config"]) == 0
    text = capsys.readouterr().out
    printed = tmp_path / "printed.yaml"
    printed.write_text(text)
    cfg = load_config(printed)
    assert cfg.seed == 3 and cfg.simulation.ticks == 2 and cfg.simulation.page_size == 4
    assert cfg.simulation.max_pages == 7 and cfg.policy.name == "random"
    assert main(["run", str(printed), "--print-config"]) == 0
    assert capsys.readouterr().out == text
    assert RunConfig.model_validate(yaml.safe_load(text)) == cfg


def test_toml_config_and_module_entry_point(tmp_path):
    cfg = tmp_path / "c.toml"
    out = tmp_path / "run"
    cfg.write_text(
        f"seed = 2\n[data.synthetic]\nusers = 80\nitems = 60\n[simulation]\nticks = 2\n"
        f'[output]\ndir = "{out}"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "simrec", "run", str(cfg), "--quiet"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "simrec", "run", "--policy", "nope", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip().splitlines()[0]]


@pytest.mark.parametrize(
    "rows,columns",
    [
        (["u,i", "1,a"], "user=u,item=i"),  # one user, one item, implicit feedback
        (["u,i,r", "1,a,4", "1,b,3", "2,a,5"], "user=u,item=i,rating=r"),
    ],
)
@pytest.mark.parametrize(
    "policy",
    [
        [],
        ["--policy", "itemknn", "--retrain-every", "1"],
        ["--policy", "als", "--explore", "softmax"],
        ["--policy", "bpr", "--explore", "epsilon-greedy"],
        ["--policy", "genre"],
    ],
    ids=["popular", "itemknn", "softmax-als", "epsilon-bpr", "genre"],
)
def test_tiny_logs_still_run(rows, columns, policy, tmp_path):
    data = tmp_path / "tiny.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--data",
                str(data),
                "--columns",
                columns,
                "--ticks",
                "3",
                "--out",
                str(out),
                "--quiet",
                *policy,
            ]
        )
        == 0
    )
    ev = pq.read_table(out / "events").to_pandas()
    if "rating" not in columns:
        assert ev["rating"].isna().all()
    assert set(ev["item_id"]) <= {"a", "b"}


def test_custom_policy_by_import_path(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "policy:\n  name: tests.custom_policy:LeastPopular\n  params: {jitter: 0.5}\n"
        "data:\n  synthetic: {users: 80, items: 60}\nsimulation: {ticks: 2}\n"
    )
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    ev = pq.read_table(out / "events").to_pandas()
    items = pq.read_table(out / "items.parquet").to_pandas().set_index("item_id")
    assert (ev["policy"] == "least-popular").all()
    # the least popular items lead the first pages
    first = ev[(ev["page"] == 0) & (ev["position"] == 0)]["item_id"]
    assert items.loc[first, "popularity"].mean() < items["popularity"].mean()


def test_version_is_printed(capsys):
    import simrec

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"simrec {simrec.__version__}"
