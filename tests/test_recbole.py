"""RecBole atomic files and the named datasets: real MovieLens-100k from RecBole's wheel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec import datasets as registry
from simrec.cli import main
from simrec.data import load

from .conftest import small_config, write_recbole


def test_recbole_files_read_what_was_written(tiny_world, tmp_path):
    data = load("recbole", write_recbole(tiny_world, tmp_path))
    log, want = data.interactions, tiny_world.interactions
    assert len(log) == len(want) and log.n_users == want.n_users
    assert data.source == "recbole:tiny"
    assert data.catalog.n_items == tiny_world.catalog.n_items
    np.testing.assert_array_equal(np.sort(log.timestamp), np.sort(want.timestamp))
    np.testing.assert_array_equal(np.sort(log.rating), np.sort(want.rating))
    # the year field goes back into the title; token_seq genres are split on spaces
    assert all(t.endswith("(1995)") for t in data.catalog.titles)
    assert any("Thé " in t for t in data.catalog.titles)
    got = [sorted(g) for g in data.catalog.genre_lists()]
    assert got == [sorted(g) for g in tiny_world.catalog.genre_lists()]
    assert {p.rsplit(".", 1)[1] for p in data.file_hashes} == {
        "inter",
        "item",
        "user",
        "kg",
        "link",
    }


def test_recbole_files_with_a_byte_order_mark_and_crlf_lines(tiny_world, tmp_path):
    d = write_recbole(tiny_world, tmp_path)
    inter = d / "tiny.inter"
    inter.write_bytes(b"\xef\xbb\xbf" + inter.read_bytes().replace(b"\n", b"\r\n"))
    data = load("recbole", d)
    assert len(data.interactions) == len(tiny_world.interactions)
    np.testing.assert_array_equal(
        np.sort(data.interactions.timestamp), np.sort(tiny_world.interactions.timestamp)
    )


def test_recbole_field_names_are_mapped_with_columns(tiny_world, tmp_path):
    d = write_recbole(tiny_world, tmp_path, "shop")
    inter = d / "shop.inter"
    inter.write_text(
        inter.read_text().replace("user_id:token\titem_id:token", "uid:token\titem_id:token", 1)
    )
    data = load("recbole", d, columns={"user": "uid"})
    assert len(data.interactions) == len(tiny_world.interactions)
    out = str(tmp_path / "out")
    assert main(["run", "--data", str(d), "--ticks", "1", "--quiet", "--out", out]) == 2


def test_real_movielens_100k_is_built_in():
    ml = registry.NAMED["ml-100k"]
    assert ml.path() is not None, "make test installs recbole (--no-deps); it is missing"
    data = load("recbole", "ml-100k")
    log = data.interactions
    assert (len(log), log.n_users, data.catalog.n_items) == (100_000, 943, 1682)
    assert data.catalog.titles[0] == "Toy Story (1995)"
    assert {"Animation", "Children's", "Comedy"} == set(data.catalog.genre_lists()[0])
    # real timestamps: September 1997 to April 1998
    assert pd.Timestamp(log.timestamp.min(), unit="s").year == 1997
    assert pd.Timestamp(log.timestamp.max(), unit="s").year == 1998
    same = load("recbole", "recbole:ml-100k")
    np.testing.assert_array_equal(same.interactions.item, log.item)


def test_datasets_command_lists_the_named_datasets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "installed: yes" in out and "recbole" in out


def test_missing_named_dataset_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    gone = registry.NamedDataset(
        "ml-100k", "recbole", "no-such-dist", "x", "pip install --no-deps recbole==1.2.1", ""
    )
    monkeypatch.setitem(registry.NAMED, "ml-100k", gone)
    out = str(tmp_path / "out")
    assert main(["run", "--data", "ml-100k", "--ticks", "1", "--quiet", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "dataset 'ml-100k' is not installed" in err
    assert "pip install --no-deps recbole==1.2.1" in err and "Traceback" not in err


def test_unknown_recbole_name_is_refused(capsys, tmp_path):
    out = str(tmp_path / "out")
    assert main(["run", "--data", "recbole:ml-20m", "--ticks", "1", "--quiet", "--out", out]) == 2
    assert "unknown named dataset" in capsys.readouterr().err


def test_export_to_recbole_reads_back_as_the_same_interactions(tmp_path):
    run = simrec.run(small_config(tmp_path / "run", ticks=3)).run_dir
    assert main(["export", str(run), "--to", "recbole", "--out", str(tmp_path / "rb")]) == 0
    back = load("recbole", tmp_path / "rb")
    ev = pq.read_table(run / "events").to_pandas()
    watched = ev[(ev.event_type == "impression") & ev.clicked]
    want = pd.DataFrame(
        {
            "user": watched.user_id.to_numpy(np.int64),
            "item": watched.item_id.to_numpy(np.int64),
            "rating": watched.rating.to_numpy(np.float64),
            "timestamp": watched.timestamp.astype("int64").to_numpy() // 10**9,
        }
    )
    log = back.interactions
    got = pd.DataFrame(
        {
            "user": log.user_ids[log.user].astype(np.int64),
            "item": back.catalog.item_ids[log.item].astype(np.int64),
            "rating": log.rating.astype(np.float64),
            "timestamp": log.timestamp,
        }
    )
    key = ["user", "item", "timestamp"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    )


def test_format_is_inferred_from_inter_files(tiny_world, tmp_path):
    from simrec.cli import infer_format as _infer_format

    d = write_recbole(tiny_world, tmp_path)
    assert _infer_format(str(d)) == "recbole"
    assert _infer_format(str(d / "tiny.inter")) == "recbole"
    assert _infer_format("ml-100k") == "recbole"
    # a config naming only the path reads it: the format is inferred there too, not taken
    # to be the synthetic world's
    from simrec.config import RunConfig

    assert RunConfig.model_validate({"data": {"path": str(d)}}).data.format == "recbole"
    explicit = {"data": {"path": str(d), "format": "table"}}
    assert RunConfig.model_validate(explicit).data.format == "table"
    with pytest.raises(ValueError, match="data path not found"):
        RunConfig.model_validate({"data": {"path": str(tmp_path / "nowhere")}})
