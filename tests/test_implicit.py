"""Logs of implicit feedback: play counts read as the strength of an interaction."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from simrec.cli import main
from simrec.config import SyntheticWorldConfig
from simrec.data import make_world


def _play_counts(path, seed: int = 0) -> None:
    """A music log: the synthetic world's pairs, each with a play count that grows with how
    much the user likes the artist (their rating), no ratings, no timestamps."""
    world = make_world(SyntheticWorldConfig(users=150, items=120, interactions_per_user=15), seed)
    log = world.interactions
    plays = np.random.default_rng(seed).poisson(np.exp(log.rating.astype(float) - 1.0)) + 1
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
