"""Social influence: graphs, shares as events, the signal the brain weighs, bad edge lists."""

from __future__ import annotations

import numpy as np
import pytest

import simrec
from simrec.cli import main

from .conftest import small_config


def _cfg(out, social, brain=None, **sim):
    cfg = small_config(out, **sim)
    cfg["social"] = social
    if brain:
        cfg["brain"].update(brain)
    return cfg


def _impressions(res):
    ev = res.events()
    cols = ["user_id", "page", "position", "item_id", "clicked", "rating", "left_after"]
    imp = ev[ev.event_type == "impression"][cols].reset_index(drop=True)
    return imp.astype({"page": "int16", "position": "int16", "clicked": bool, "left_after": bool})


@pytest.mark.parametrize("graph", ["watts-strogatz", "barabasi-albert"])
def test_shares_are_events_and_reach_friends(graph, tmp_path):
    social = {"graph": graph, "degree": 6, "share_probability": 1.0, "share_threshold": 0.5}
    res = simrec.run(_cfg(tmp_path / "s", social, ticks=4))
    ev = res.events()
    shares = ev[ev.event_type == "share"]
    imp = ev[ev.event_type == "impression"]
    assert len(shares) == res.metrics["shares"].sum() > 0
    # every share is of an item the sharer watched that tick and rated highly
    watched = imp[imp.clicked][["tick", "user_id", "item_id", "rating"]]
    merged = shares.merge(watched, on=["tick", "user_id", "item_id"], suffixes=("", "_w"))
    assert len(merged) == len(shares) and (merged.rating == merged.rating_w).all()
    assert (shares.rating >= 3).all()  # 0.5 of the 1..5 scale
    assert shares[["page", "position", "slate_id", "clicked"]].isna().all().all()
    summary = res.manifest["social"]
    assert summary["graph"] == graph and summary["nodes"] == 300
    assert (shares.share_recipients >= 1).all()
    # friends see the signal: impressions after tick 0 carry it, tick 0 cannot
    assert (imp[imp.tick == 0].social_signal == 0).all()
    assert (imp[imp.tick > 0].social_signal > 0).any()
    assert imp.social_signal.between(0, 1, inclusive="left").all()


def test_friends_shares_change_choices_only_through_the_weight(tmp_path):
    social = {"graph": "barabasi-albert", "degree": 8, "share_probability": 1.0}
    plain = simrec.run(small_config(tmp_path / "plain", ticks=4))
    unweighted = simrec.run(_cfg(tmp_path / "w0", social, {"social_weight": 0.0}, ticks=4))
    assert _impressions(plain).equals(_impressions(unweighted))
    assert plain.events().social_signal.isna().all()
    strong = simrec.run(_cfg(tmp_path / "w8", social, {"social_weight": 8.0}, ticks=4))
    imp = strong.events()
    imp = imp[(imp.event_type == "impression") & imp.examined]
    with_signal = imp[imp.social_signal > 0].clicked.mean()
    without = imp[imp.social_signal == 0].clicked.mean()
    assert with_signal > 2 * without, (with_signal, without)


def test_social_runs_are_byte_identical_for_any_batch_size(tmp_path):
    social = {"graph": "watts-strogatz", "degree": 4, "share_probability": 0.8}
    a = simrec.run(_cfg(tmp_path / "a", social, ticks=4, batch_size=5))
    b = simrec.run(_cfg(tmp_path / "b", social, ticks=4, batch_size=4096))
    pa_ = [p.read_bytes() for p in sorted((a.run_dir / "events").glob("*.parquet"))]
    pb = [p.read_bytes() for p in sorted((b.run_dir / "events").glob("*.parquet"))]
    assert pa_ == pb


def test_edge_list_links_the_agents_of_data_users(tmp_path, ml100k):
    edges = tmp_path / "friends.txt"
    edges.write_text("# who follows whom\n1 2\n2,3\n3\t4  # trailing comment\n\n1 5\n")
    out = tmp_path / "e"
    args = ["run", "--data", str(ml100k), "--ticks", "2", "--out", str(out), "--quiet"]
    assert main([*args, "--social", str(edges)]) == 0
    res_manifest = (out / "manifest.json").read_text()
    assert '"graph": "edges"' in res_manifest and '"edges": 4' in res_manifest
    assert str(edges) in res_manifest  # its hash is recorded like the data's


def test_an_edge_list_with_a_header_line_is_read(tmp_path, ml100k):
    edges = tmp_path / "user_friends.dat"
    edges.write_text("userID\tfriendID\n1\t2\n2\t3\n")
    out = tmp_path / "h"
    args = ["run", "--data", str(ml100k), "--ticks", "1", "--out", str(out), "--quiet"]
    assert main([*args, "--social", str(edges)]) == 0
    assert '"edges": 2' in (out / "manifest.json").read_text()


EDGE_CASES = [
    ("userID friendID\n1 2\nuserID 3\n", "line 3: user 'userID' is not a user of the data"),
    ("1 2\n1 2 3\n", "line 2: expected two user ids"),
    ("1 2\n2 99999\n", "line 2: user '99999' is not a user of the data"),
    ("1 2\n7 7\n", "line 2: self loop on user '7'"),
    ("# nothing\n\n", "expected at least one edge"),
    (b"1 2\n\xff 3\n", "expected UTF-8 text"),
]


@pytest.mark.parametrize("content,message", EDGE_CASES, ids=[m for _, m in EDGE_CASES])
def test_malformed_edge_list_is_a_clear_error(content, message, tmp_path, ml100k, capsys):
    edges = tmp_path / "edges.txt"
    edges.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "bad"
    code = main(["run", "--data", str(ml100k), "--out", str(out), "--social", str(edges)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(edges) in err and "Traceback" not in err
    assert not out.exists()


def test_bad_graph_settings_are_clear_errors(tmp_path, capsys):
    out = tmp_path / "bad"
    base = ["run", "--users", "20", "--items", "30", "--out", str(out)]
    assert main([*base, "--social", str(tmp_path / "missing.txt")]) == 2
    assert "edge list file not found" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("social: {graph: watts-strogatz, degree: 50}\n")
    assert main([*base, str(cfg)]) == 2
    assert "social.degree: watts-strogatz needs 2 <= degree < agents (20)" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_signal_lookup_matches_a_dense_reference():
    import scipy.sparse as sp

    from simrec.config import SocialConfig
    from simrec.environments.social import SocialGraph, SocialSignal

    g = np.random.default_rng(0)
    adj = sp.csr_matrix(np.ones((6, 6)) - np.eye(6), dtype=np.float32)
    sig = SocialSignal(SocialGraph(None, adj, "test"), SocialConfig(), n_items=9)
    dense = (g.random((6, 9)) < 0.4) * g.random((6, 9)) * 3
    sig.signal = sp.csr_matrix(dense.astype(np.float32))
    agents = np.array([4, 0, 4, 2])
    items = np.array([[0, 1, 2, -1], [8, 7, 6, 5], [3, 3, 0, 1], [-1, -1, 4, 2]])
    want = np.where(items >= 0, -np.expm1(-dense[agents[:, None], np.maximum(items, 0)]), 0)
    np.testing.assert_allclose(sig.lookup(agents, items), want, rtol=1e-6)
