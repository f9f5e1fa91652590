"""simrec converse: agenda users against conversational recommenders (exact dialogues on a
small catalog, real MovieLens-100k, plug-in CRSs, bad input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.cli import main
from simrec.conversation import Reply

MOVIES = """movieId,title,genres
1,Toy Story (1995),Animation|Comedy
2,Heat (1995),Action|Crime
3,Casablanca (1942),Drama|Romance
4,Aladdin (1992),Animation|Musical
5,Jumanji (1995),Adventure|Comedy
6,Alien (1979),Horror|Sci-Fi
7,Fargo (1996),Comedy|Crime
8,Pinocchio (1940),Animation|Children
9,Fantasia (1940),Animation|Musical
10,Dumbo (1941),Animation|Children
"""
# user 1 holds out Toy Story, user 2 Fargo (rated 5) and Casablanca (rated 1), user 3
# Casablanca: each user's latest quarter is after the cutoff 0.75
RATINGS = """userId,movieId,rating,timestamp
1,2,4.0,100
1,3,3.0,200
1,6,4.0,300
1,1,5.0,1000
2,4,4.0,100
2,5,3.0,200
2,8,2.0,250
2,9,2.0,260
2,10,2.0,270
2,2,2.0,300
2,7,5.0,1000
2,3,1.0,1001
3,5,4.0,100
3,4,5.0,200
3,8,4.0,210
3,9,4.0,220
3,2,4.0,300
3,3,4.0,1000
"""


@pytest.fixture
def tiny(tmp_path) -> dict:
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "movies.csv").write_text(MOVIES)
    (d / "ratings.csv").write_text(RATINGS)
    return {"data": {"path": str(d), "format": "movielens-latest"}}


def test_agenda_users_and_the_builtin_crs_exact_dialogues(tiny, tmp_path):
    res = simrec.converse(tiny, ["builtin"], users=3, turns=4, cutoff=0.75, out=tmp_path / "c")
    c = res.conversations
    first = c[c.conversation == 0]
    assert list(first.target_item_id.unique()) == [1]  # Toy Story, held out for user 1
    said = [
        (int(t), s, x, [int(i) for i in ids])
        for t, s, x, ids in first[["turn", "speaker", "text", "item_ids"]].itertuples(index=False)
    ]
    # Toy Story's only rating is after the cutoff: to the CRS it is an unknown animation, so
    # the popular animations come first; the user turns them down (they are animations, so
    # "not the one"), reveals the next fact, and the CRS's words match Toy Story alone
    assert said[:3] == [
        (0, "user", "Hi! I'm looking for an Animation movie.", []),
        (
            1,
            "crs",
            "How about Aladdin (1992), Pinocchio (1940) or Fantasia (1940)?",
            [4, 8, 9, 10, 1, 5, 7],
        ),
        (
            1,
            "user",
            "Aladdin (1992) is not the one I have in mind. Pinocchio (1940) is not the "
            "one I have in mind. Fantasia (1940) is not the one I have in mind. It should be a "
            "Comedy movie.",
            [4, 8, 9],
        ),
    ]
    assert said[3][:3] == (2, "crs", "How about Toy Story (1995), Jumanji (1995) or Fargo (1996)?")
    assert said[4] == (
        2,
        "user",
        "Yes, Toy Story (1995) is exactly what I was looking for. Thanks!",
        [1, 5, 7],
    )
    assert len(said) == 6  # accepted: the conversation ends, then the user rates it
    assert said[5][:3] == (2, "rating", "found it at turn 2")
    assert first.rating.iloc[-1] == 9 and first.rating.iloc[:-1].isna().all()
    # user 2 wants Fargo (its best-rated held-out item, not Casablanca)
    second = c[(c.conversation == 1) & (c.speaker != "rating")]
    assert list(second.target_item_id.unique()) == [7]
    assert list(second.verdicts.iloc[-1]) == ["reject", "accept", "reject"]
    m = res.metrics.set_index("turn")
    assert m.loc[1, "success_rate"] == pytest.approx(2 / 3)
    assert m.loc[2, "success_rate"] == 1.0
    assert m.loc[1, "recall_at_1"] == pytest.approx(1 / 3)  # only Casablanca ranked first
    assert m.loc[1, "recall_at_10"] == 1.0
    comp = res.comparison.iloc[0]
    assert comp.success_rate == 1.0 and comp.turns_to_success == pytest.approx(4 / 3)
    assert comp.items_rejected == pytest.approx((3 + 2 + 2 + 2) / 3)


def test_reruns_write_the_same_bytes(tiny, tmp_path):
    files = ("conversations.parquet", "crs_metrics.parquet", "crs_comparison.parquet")
    runs = []
    for name in ("a", "b"):
        simrec.converse(
            tiny,
            ["A=builtin", "B=builtin:itemknn"],
            users=3,
            turns=3,
            cutoff=0.75,
            out=tmp_path / name,
        )
        runs.append({f: (tmp_path / name / f).read_bytes() for f in files})
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_real_movielens_held_out_targets_leak_nothing(tmp_path, capsys):
    """On real MovieLens-100k: targets come only from after the cutoff, the user never names
    its target before the CRS shows it, and a CRS that knows the user's past (item-kNN prior)
    finds more targets than the popularity prior."""
    out = tmp_path / "ml"
    args = ["converse", "--data", "ml-100k", "--crs", "A=builtin", "--crs", "B=builtin:itemknn"]
    assert main(args + ["--users", "300", "--turns", "5", "--out", str(out)]) == 0
    assert "success_rate" in capsys.readouterr().out
    conv = pq.read_table(out / "conversations.parquet").to_pandas()
    data = simrec.build.load_data(simrec.build.as_config({"data": {"path": "ml-100k"}}))
    log = data.interactions
    early, late = log.latest(0.2)
    uid = {u: i for i, u in enumerate(log.user_ids.tolist())}
    iid = {v: i for i, v in enumerate(data.catalog.item_ids.tolist())}
    pairs = conv.drop_duplicates(["conversation"])[["user_id", "target_item_id"]]
    late_pairs = set(zip(log.user[late].tolist(), log.item[late].tolist(), strict=True))
    early_pairs = set(zip(log.user[early].tolist(), log.item[early].tolist(), strict=True))
    for u, i in pairs.itertuples(index=False):
        assert (uid[u], iid[i]) in late_pairs and (uid[u], iid[i]) not in early_pairs
    titles = data.catalog.display_titles
    for _, d in conv[conv.arm == "A"].groupby("conversation"):
        title = titles[iid[d.target_item_id.iloc[0]]]
        shown = False
        for row in d.itertuples():
            if row.speaker == "crs":
                shown = shown or d.target_item_id.iloc[0] in list(row.item_ids)[:3]
            elif not shown:
                assert title not in row.text
    comp = pq.read_table(out / "crs_comparison.parquet").to_pandas().set_index("arm")
    assert comp.loc["B", "success_rate"] > comp.loc["A", "success_rate"] > 0.2
    assert np.isfinite(comp.loc["B", "p_holm"])


def test_taste_targets_are_unseen_items(tiny, tmp_path):
    res = simrec.converse(
        tiny, ["builtin"], users=3, turns=2, targets="taste", cutoff=0.75, out=tmp_path / "t"
    )
    seen = {1: {2, 3, 6}, 2: {4, 5, 8, 9, 10, 2}, 3: {5, 4, 8, 9, 2}}
    for u, target in res.conversations.drop_duplicates("conversation")[
        ["user_id", "target_item_id"]
    ].itertuples(index=False):
        assert target not in seen[u]


class ShowsEverything:
    """A plug-in CRS: the whole catalog in index order, whatever was said."""

    name = "everything"

    def fit(self, interactions, catalog) -> None:
        self.n = catalog.n_items

    def respond(self, dialogues):
        return [Reply("Here is everything.", tuple(range(min(self.n, 50)))) for _ in dialogues]


class Broken(ShowsEverything):
    def respond(self, dialogues):
        return [Reply("one reply for all", (0,))] if dialogues else []


def test_plug_in_crs_and_its_contract(tiny, tmp_path, capsys):
    from simrec.testing import check_crs

    check_crs(ShowsEverything)
    res = simrec.converse(
        tiny, [f"{__name__}:ShowsEverything"], users=3, turns=4, cutoff=0.75, out=tmp_path / "p"
    )
    assert res.manifest["arms"][f"{__name__}:ShowsEverything"]["name"] == "everything"
    with pytest.raises(AssertionError, match="one reply per dialogue"):
        check_crs(Broken)
    code = main(
        [
            "converse",
            "--data",
            str(Path(tiny["data"]["path"])),
            "--crs",
            f"{__name__}:Broken",
            "--cutoff",
            "0.75",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "respond() must return a list of 3 replies, got 1" in err
    assert not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--crs", "nope"], "expected builtin, builtin:POLICY or package.module:Class"),
        (["--crs", "builtin:nope"], "unknown policy 'nope'"),
        (["--crs", "no.such.module:X"], "cannot import module"),
        (["--turns", "0"], "--turns: expected an integer from 1 to 1,000, got 0"),
        (["--turns", str(10**9)], "--turns: expected an integer from 1 to 1,000"),
        (["--bootstrap", "0"], "--bootstrap: expected an integer from 10"),
        (["--alpha", "7"], "--alpha: expected a number above 0 and below 0.5, got 7"),
        (["--alpha", "nan"], "--alpha: expected a number above 0 and below 0.5, got nan"),
        (["--cutoff", "1.5"], "--cutoff: expected a per-user fraction"),
        (["--crs", "A=builtin", "--crs", "A=builtin"], "arm 'A' given twice"),
    ],
)
def test_bad_input_is_a_clear_error(flags, expected, tiny, tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["converse", "--data", tiny["data"]["path"], *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_comparison_p_value_is_the_ab_tests_bootstrap_p_value():
    """An arm that wins every conversation its control loses: every bootstrap difference is
    positive, so the p-value is the smallest B resamples can show, 2 / (B + 1), as in simrec ab
    (never exactly 0)."""
    from simrec.conversation.run import _comparison

    n = 40

    def arm(success_turn):
        return {
            "success_turn": np.full(n, success_turn),
            "rejected": np.zeros(n),
            "rating": np.full(n, 5.0),
            "status": np.full(n, "found", object),
            "unresolved_rate": 0.0,
        }

    comp = _comparison({"A": arm(0), "B": arm(2)}, "A", 199, 0.05, 0).set_index("arm")
    assert comp.loc["B", "diff_vs_control"] == 1.0
    assert comp.loc["B", "p_value"] == comp.loc["B", "p_holm"] == 2 / 200
