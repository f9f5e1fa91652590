"""Logs of implicit feedback: play counts read as the strength of an interaction."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.cli import main
from simrec.config import SyntheticWorldConfig
from simrec.data import make_world


def _play_counts(path, seed: int = 0, replays: float = 1.0) -> None:
    """A music log: the synthetic world's pairs, each with a play count that grows with how
    much the user likes the artist (their rating; ``replays`` scales the plays beyond the
    first), no ratings, no timestamps."""
    world = make_world(SyntheticWorldConfig(users=150, items=120, interactions_per_user=15), seed)
    log = world.interactions
    mean = replays * np.exp(log.rating.astype(float) - 1.0)
    plays = np.random.default_rng(seed).poisson(mean) + 1
    pd.DataFrame(
        {"userID": log.user_ids[log.user], "artistID": log.item, "weight": plays}
    ).drop_duplicates(["userID", "artistID"]).to_csv(path, sep="\t", index=False)


def test_a_play_count_log_runs_in_its_own_words(tmp_path):
    data = tmp_path / "user_artists.dat"
    _play_counts(data)
    out = tmp_path / "run"
    argv = ["run", "--data", str(data), "--columns", "user=userID,item=artistID,count=weight"]
    argv += ["--domain", "music", "--item-noun", "artist", "--visit-rate", "0.3"]
    assert main([*argv, "--policy", "als", "--ticks", "2", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["feedback"] == "counts" and manifest["data"]["rating_scale"] is None
    assert manifest["data"]["domain"]["items"] == "artists"
    profiles = pq.read_table(out / "users.parquet").column("profile").to_pylist()
    assert all("artists in the log" in p and "listener" in p for p in profiles)
    assert not any("rater" in p or "track" in p for p in profiles)
    events = pq.read_table(out / "events").to_pandas()
    assert events.clicked.astype(bool).sum() > 0
    assert main(["report", str(out)]) == 0
    html = (out / "report" / "report.html").read_text()
    assert "n/a: the log has no ratings (feedback: counts)" in html
    words = re.findall(r"[a-z]+", re.sub(r"<[^>]+>", " ", html).lower())
    assert not {"watch", "watched", "watches", "movie", "movies", "film", "blockbuster"} & set(
        words
    )


def test_a_log_that_repeats_is_simulated_with_replays_at_its_repeat_share(tmp_path, caplog):
    """Shown what they would come across without a recommender (organic exposure), users
    repeat the log's share of their consumption; impressions mark the replays."""
    data = tmp_path / "plays.tsv"
    _play_counts(data, seed=3, replays=0.05)
    cfg = {
        "seed": 4,
        "data": {
            "format": "table",
            "path": str(data),
            "columns": {"user": "userID", "item": "artistID", "count": "weight"},
        },
        "population": {"visit_rate": 0.5},
        "policy": {"name": "organic"},
        "simulation": {"ticks": 8},
        "output": {"dir": str(tmp_path / "run")},
    }
    res = simrec.run(cfg)
    brain = res.manifest["brain"]
    assert brain["repeats"] is True and 0.1 < brain["repeat_share"] < 0.6
    assert brain["replay_share"] == pytest.approx(brain["repeat_share"], abs=1e-6)
    events = res.events()
    watched = events[(events.event_type == "impression") & events.clicked.astype(bool)]
    simulated = watched.repeat.astype(bool).mean()
    assert abs(simulated - brain["repeat_share"]) < 0.1, (simulated, brain["repeat_share"])
    assert events.repeat.notna().all()
    # the same log with repeats off: never shown again, so never consumed again
    cfg["simulation"]["repeats"] = False
    cfg["output"]["dir"] = str(tmp_path / "off")
    off = simrec.run(cfg)
    assert off.manifest["brain"]["repeats"] is False and off.events().repeat.isna().all()
    pairs = off.events().query("clicked")[["user_id", "item_id"]]
    assert not pairs.duplicated().any()
    # a log of heavy replays: slates alone cannot reach its share, and the run says so
    _play_counts(data, seed=3, replays=3.0)
    cfg["simulation"]["repeats"] = None
    cfg["output"]["dir"] = str(tmp_path / "heavy")
    heavy = simrec.run(cfg).manifest["brain"]
    assert heavy["replay_share"] < heavy["repeat_share"] - 0.05
    assert "simulated users repeat less than its users" in caplog.text


def test_a_log_without_repeats_keeps_consumed_items_off_the_slates(tmp_path):
    cfg = {
        "seed": 1,
        "data": {"synthetic": {"users": 60, "items": 80}},
        "simulation": {"ticks": 3},
        "output": {"dir": str(tmp_path / "r")},
    }
    res = simrec.run(cfg)
    assert res.manifest["brain"]["repeats"] is False and res.manifest["brain"]["replay"] == 0.0
    assert res.events().repeat.isna().all()
    cfg["simulation"]["repeats"] = True  # asked for: consumed items come back on the slates
    cfg["output"]["dir"] = str(tmp_path / "on")
    on = simrec.run(cfg).events()
    assert on.repeat.astype(bool).any()


def test_an_ab_test_on_a_log_without_ratings_says_its_verdict_first(tmp_path, capsys):
    data = tmp_path / "plays.tsv"
    _play_counts(data)
    argv = ["ab", "--data", str(data), "--columns", "user=userID,item=artistID,count=weight"]
    argv += ["--visit-rate", "0.3", "--ticks", "3", "--arm", "A=popular", "--arm", "B=random"]
    assert main([*argv, "--bootstrap", "200", "--out", str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("B vs A: consumed per user ")
    assert "mean_rating n/a: nothing was rated (the log has no ratings)" in out
    assert "diversity n/a: the catalog has no genres to differ in" in out
    table = pd.read_parquet(tmp_path / "ab" / "ab_results.parquet")
    undefined = table[table.metric.isin(["mean_rating", "diversity"])]
    assert undefined.value.isna().all() and undefined.note.str.startswith("n/a").all()
    assert not (tmp_path / "ab" / "report.html").read_text().count("+nan%")
