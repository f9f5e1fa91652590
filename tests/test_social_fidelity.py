"""Friends' co-consumption in the fidelity report: measured on the log, its held-out part and
the simulation, where a friend graph of the log's users comes with it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from simrec.build import as_config, load_data
from simrec.evaluation.fidelity_report import fidelity
from simrec.evaluation.fidelity_report.social import co_consumption_lift, social_verdict

WORLD = {"seed": 3, "data": {"synthetic": {"users": 300, "items": 400}}}


def test_the_lift_is_how_much_more_alike_friends_are_than_random_users():
    g = np.random.default_rng(0)
    m = sp.csr_matrix((g.random((200, 300)) < 0.05).astype(np.float32))
    pairs = np.column_stack([np.arange(0, 200, 2), np.arange(1, 200, 2)])
    lift, low, high = co_consumption_lift(m, pairs)
    assert low <= 1.0 <= high and 0.7 < lift < 1.3  # random friends: no lift
    twins = m.tolil()
    for a, b in pairs:
        twins[b] = twins[a]  # each pair consumed the very same items
    lift, low, high = co_consumption_lift(twins.tocsr(), pairs)
    assert low > 5 and low <= lift <= high


def _taste_friends(tmp_path) -> str:
    """Each user befriends the 3 users whose true tastes are closest (homophily)."""
    world = load_data(as_config(WORLD))
    vecs = world.truth.user_vecs / np.linalg.norm(world.truth.user_vecs, axis=1, keepdims=True)
    near = np.argsort(-(vecs @ vecs.T), axis=1)[:, 1:4]
    ids = world.interactions.user_ids
    lines = ["userID friendID"] + [f"{ids[u]} {ids[v]}" for u in range(len(ids)) for v in near[u]]
    path = tmp_path / "friends.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_report_compares_friends_co_consumption_real_and_simulated(tmp_path):
    cfg = {
        **WORLD,
        "simulation": {"ticks": 6},
        "social": {"graph": "edges", "path": _taste_friends(tmp_path)},
    }
    table = fidelity(cfg, policies=["random", "popular", "itemknn"], exposures=())
    social = table[table.section == "social"].set_index(["setting", "metric", "source"]).value
    assert social[("friends", "pairs", "real")] > 300
    # friends chosen for their tastes consume alike, in the log and afterwards
    assert social[("co_consumption_lift", "low", "real-training")] > 1
    assert social[("co_consumption_lift", "low", "real-held-out")] > 1
    sim = social[("co_consumption_lift", "value", "simrec")]
    assert np.isfinite(sim) and sim > 0
    low, high = (social[("co_consumption_lift", x, "real-held-out")] for x in ("low", "high"))
    sentence = social_verdict(table)
    assert sentence.startswith("Of ") and "times as alike as random users'" in sentence
    assert ("within" if low <= sim <= high else "outside") + " the real interval" in sentence


def test_no_friend_graph_no_social_rows():
    table = fidelity(
        {**WORLD, "simulation": {"ticks": 2}},
        policies=["random", "popular", "itemknn"],
        exposures=(),
    )
    assert not (table.section == "social").any() and social_verdict(table) is None


@pytest.mark.parametrize("graph", ["watts-strogatz"])
def test_a_made_up_graph_is_not_compared_with_the_log(graph):
    """A generated graph says nothing about the log's users: no social rows."""
    cfg = {**WORLD, "simulation": {"ticks": 2}, "social": {"graph": graph, "degree": 4}}
    table = fidelity(cfg, policies=["random", "popular", "itemknn"], exposures=())
    assert not (table.section == "social").any()
