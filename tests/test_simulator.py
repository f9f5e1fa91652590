"""Simulator: outputs, determinism across batch sizes, the per-agent idiom, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.data.schemas import events_schema

from .conftest import small_config


def _parts(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "events").glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small run (300 users, 6 ticks) and its events as a DataFrame."""
    res = simrec.run(small_config(tmp_path_factory.mktemp("run") / "r"))
    return res, pq.read_table(res.run_dir / "events")


def test_run_writes_its_files_and_the_events_match_the_schema(small_run):
    res, ev = small_run
    d = res.run_dir
    for name in ("users.parquet", "items.parquet", "metrics.parquet", "schema.json"):
        assert (d / name).is_file(), name
    assert (d / "manifest.json").is_file() and not (d / "_state").exists()
    assert ev.schema.names == events_schema(ev.schema.field("item_id").type).names
    schema_doc = json.loads((d / "schema.json").read_text())
    assert [c["name"] for c in schema_doc["events"]] == ev.schema.names
    users = pq.read_table(d / "users.parquet").to_pandas()
    assert len(users) == 300 and users["profile"].str.len().min() > 20


def test_events_obey_the_behaviour_rules(small_run):
    res, ev = small_run
    df = ev.to_pandas()
    assert len(df) == res.counts["impressions"] > 0
    assert df["clicked"].sum() == res.counts["clicks"]
    assert (~df["clicked"] | df["examined"]).all(), "a click needs an examination"
    assert df.loc[df["clicked"], "rating"].notna().all()
    assert df.loc[~df["clicked"], "rating"].isna().all()
    assert set(df["rating"].dropna().unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (df["pscore_item_position"] == 1.0).all()
    assert (df["propensity_source"] == "deterministic").all()
    assert (df["decided_by"] == "utility").all() and df["reason"].isna().all()
    # no user sees the same item twice in a session, nor an item it consumed before
    assert not df.duplicated(["session_id", "item_id"]).any()
    assert not df[df["clicked"]].duplicated(["user_id", "item_id"]).any()


def test_events_are_in_canonical_order_and_sessions_end_once(small_run):
    _, ev = small_run
    df = ev.to_pandas()
    key = df[["tick", "user_id", "page", "position"]].to_numpy()  # tick, user, page, position
    assert (np.lexsort(key.T[::-1]) == np.arange(len(df))).all()
    # left_after is true on (and only on) the last page of each session
    last_page = df.groupby("session_id")["page"].transform("max")
    assert (df["left_after"] == (df["page"] == last_page)).all()


def test_metrics_and_manifest_agree_with_the_events(small_run):
    res, ev = small_run
    m = res.metrics
    assert list(m["tick"]) == list(range(6))
    assert m["impressions"].sum() == res.counts["impressions"] == ev.num_rows
    assert ((m["coverage"] > 0) & (m["coverage"] <= 1)).all()
    assert ((m["gini"] >= 0) & (m["gini"] < 1)).all()
    man = res.manifest
    assert man["counts"]["impressions"] == ev.num_rows and man["seed"] == 11
    assert man["config"]["simulation"]["ticks"] == 6 and man["failures"] == []
    # every timing is a non-negative number, never -0.0
    assert all(math.copysign(1.0, v) == 1.0 for v in man["timings"].values())


def test_same_seed_byte_identical_for_any_batch_size(tmp_path):
    a = simrec.run(small_config(tmp_path / "a", batch_size=7))
    b = simrec.run(small_config(tmp_path / "b", batch_size=4096))
    pa_, pb = _parts(a.run_dir), _parts(b.run_dir)
    assert pa_ and pa_ == pb
    assert (a.run_dir / "users.parquet").read_bytes() == (b.run_dir / "users.parquet").read_bytes()
    assert (a.run_dir / "metrics.parquet").read_bytes() == (
        b.run_dir / "metrics.parquet"
    ).read_bytes()


def test_per_agent_mesa_idiom_gives_the_same_events(tmp_path):
    a = simrec.run(small_config(tmp_path / "a", ticks=3))
    b = simrec.run(small_config(tmp_path / "b", ticks=3), per_agent=True)
    assert _parts(a.run_dir) == _parts(b.run_dir)


def test_different_seed_different_events(tmp_path):
    cfg = small_config(tmp_path / "a", ticks=2)
    a = simrec.run(cfg)
    cfg2 = small_config(tmp_path / "b", ticks=2)
    cfg2["seed"] = 12
    b = simrec.run(cfg2)
    assert _parts(a.run_dir) != _parts(b.run_dir)


def test_random_policy_logs_exact_propensities(tmp_path):
    cfg = small_config(tmp_path / "r", ticks=2)
    cfg["policy"] = {"name": "random"}
    res = simrec.run(cfg)
    df = res.events()
    assert (df["propensity_source"] == "exact").all()
    assert ((df["pscore_item_position"] > 0) & (df["pscore_item_position"] < 1)).all()
    # 1 / (items the user may still see): constant within a page, and each next page's
    # allowed set is smaller by exactly what the previous page showed
    page = df.groupby(["session_id", "page"]).agg(
        p=("pscore_item_position", "first"),
        spread=("pscore_item_position", "nunique"),
        shown=("item_id", "size"),
    )
    assert (page["spread"] == 1).all()
    allowed = 1 / page["p"]
    assert np.allclose(allowed.round(), allowed)
    nxt = page.groupby(level=0).shift(-1)
    more = nxt["p"].notna()
    assert np.allclose((1 / nxt["p"])[more], (allowed - page["shown"])[more])
    assert (allowed <= 200).all()
    assert (df["pscore_slate"] < df["pscore_item_position"]).all()


def test_mesa_agents_and_datacollector(tmp_path):
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.agents.persona import sample_population
    from simrec.config import SimulationConfig, SyntheticWorldConfig, UtilityBrainConfig
    from simrec.data import make_world
    from simrec.environments import PopularPolicy
    from simrec.rng import Streams
    from simrec.simulator import SimulationModel

    data = make_world(SyntheticWorldConfig(users=100, items=80), 1)
    brain = UtilityBrain(UtilityBrainConfig(taste_dim=6), seed=1)
    personas = sample_population(brain.fit(data), 150, Streams(1))  # 50 cloned personas
    brain.bind(personas, Streams(1))
    policy = PopularPolicy()
    policy.fit(data.interactions.to_arrow(), data.catalog)
    model = SimulationModel(
        data=data,
        personas=personas,
        brain=brain,
        policy=policy,
        sim=SimulationConfig(ticks=5),
        seed=1,
    )
    assert len(model.agents) == 150
    for _ in range(5):
        model.step()
    df = model.datacollector.get_model_vars_dataframe()
    assert len(df) == 5 and df["impressions"].sum() == model.totals["impressions"]
    remembered = [a for a in model.agents if a.memory]
    assert remembered, "agents who watched something remember it"
    entry = remembered[0].memory[0]
    assert set(entry) == {"item", "rating", "tick"} and 0 <= entry["item"] < 80
    assert remembered[0].persona.endswith(".")
