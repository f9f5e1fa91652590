"""Knowledge graphs: reading RecBole's and any triple file, facts and similarity, the alignment
check (real MovieLens-100k's shipped links point at MovieLens-1M ids), the kg policy, and
augment items --kg with its leakage check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from simrec import build
from simrec.augment import ItemEnricher
from simrec.augment.evaluate import genre_recovery
from simrec.augment.items import enrich_items
from simrec.augment.knowledge import alignment_check, item_facts, relation_name
from simrec.cli import main
from simrec.config import SyntheticWorldConfig, identity_dump
from simrec.data import load, make_world
from simrec.data.knowledge import knowledge_from_frames, load_knowledge
from simrec.environments.registry import make_policy
from simrec.errors import ConfigError, InputError
from simrec.testing import check_augmenter, check_recommender, contract_world
from simrec.testing.recommender import contract_knowledge


@pytest.fixture(scope="module")
def ml100k():
    return load("recbole", "ml-100k")


def _frames():
    triples = pd.DataFrame(
        [
            ("m1", "film.directed_by", "p1"),
            ("p1", "director.film", "m1"),  # the mirror of the line above
            ("m2", "film.directed_by", "p1"),
            ("m3", "film.directed_by", "p2"),
            ("m1", "film.language", "en"),
            ("m2", "film.language", "en"),
            ("m3", "film.language", "en"),
            ("m1", "film.sequel", "m2"),
        ],
        columns=["head", "relation", "tail"],
    )
    links = pd.DataFrame({"item": ["10", "20", "30"], "entity": ["m1", "m2", "m3"]})
    return triples, links


def test_facts_keep_one_side_of_a_mirrored_relation_and_weight_rare_entities():
    triples, links = _frames()
    k = knowledge_from_frames(triples, links, np.array([10, 20, 30, 40]))
    assert k.entity.tolist() == ["m1", "m2", "m3", None]
    assert k.linked.tolist() == [True, True, True, False]
    facts = {(k.relation[c], k.value[c]) for c in k.facts[0].indices}
    # p1 once (the outgoing side), the sequel m2, English; m1 is m2's prequel from m2's side
    assert facts == {("film.directed_by", "p1"), ("film.language", "en"), ("film.sequel", "m2")}
    assert ("~film.sequel", "m1") in {(k.relation[c], k.value[c]) for c in k.facts[1].indices}
    s = k.similarity().toarray()
    # items 0 and 1 share a director; everyone shares English, which then says nothing
    assert s[0, 1] > 0 and s[0, 2] == 0 and s[1, 2] == 0 and s[3].sum() == 0
    sub = k.subset(np.array([1, 0, 2]))  # rarity counts among the kept items
    assert sub.entity.tolist() == ["m2", "m1", "m3"]
    assert sub.similarity().toarray()[0, 1] == pytest.approx(s[0, 1])


def test_item_facts_name_linked_items_and_unknown_stays_null():
    data = contract_world()
    triples, links = _frames()
    ids = data.catalog.item_ids[:4]
    links["item"] = ids[:3].astype(str)
    cat = data.catalog.subset(np.arange(4))
    cat.knowledge = knowledge_from_frames(triples, links, ids)
    facts, sources, conf = item_facts(cat, cat.knowledge, np.array([5, 9, 1, 0]))
    title = cat.display_titles
    assert f"sequel: {title[1]}" in facts[0]
    assert f"directed by: 1, shared with {title[1]}" in facts[0]
    assert "film.sequel" in {s.removeprefix("kg:") for s in sources[0]}
    assert facts[3] is None and sources[3] is None and conf[3] is None
    assert relation_name("~film.producer.film") == "film (of)"


def test_any_triple_file_through_the_cli(tmp_path, capsys):
    world = make_world(SyntheticWorldConfig(items=90), 1)
    k = contract_knowledge(world)
    rows = [
        (k.entity[i], k.relation[c], k.value[c])
        for i in range(world.catalog.n_items)
        for c in k.facts[i].indices
    ]
    pd.DataFrame(rows, columns=["head", "relation", "tail"]).to_parquet(tmp_path / "kg.parquet")
    linked = np.flatnonzero(k.linked)
    pd.DataFrame({"item_id": world.catalog.item_ids[linked], "entity_id": k.entity[linked]}).to_csv(
        tmp_path / "links.csv", index=False
    )
    cfg = build.as_config(
        {
            "seed": 1,
            "data": {
                "synthetic": {"items": 90},
                "kg": str(tmp_path / "kg.parquet"),
                "kg_links": str(tmp_path / "links.csv"),
            },
        }
    )
    data = build.load_data(cfg)
    assert data.catalog.knowledge.linked.sum() == linked.size
    assert str(tmp_path / "kg.parquet") in data.file_hashes
    out = tmp_path / "aug"
    argv = ["augment", "items", "--items", "90", "--seed", "1"]
    argv += ["--kg", str(tmp_path / "kg.parquet"), "--link", str(tmp_path / "links.csv")]
    assert main([*argv, "--out", str(out)]) == 0
    table = pq.read_table(out / "items_enriched.parquet").to_pandas()
    assert table.kg_facts.notna().sum() == linked.size
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kg_alignment"]["aligned"] and manifest["counts"]["kg_aligned"] == 1
    assert "kg:kg.parquet" in manifest["sources"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("no-links", "expected both"),
        ("bad-column", "expected columns head, relation, tail"),
        ("unknown-item", "which is not in the catalog"),
    ],
)
def test_bad_knowledge_input_exits_2(tmp_path, capsys, edit, message):
    (tmp_path / "kg.tsv").write_text("head\trelation\ttail\ne1\tmade_by\tc1\n")
    (tmp_path / "links.tsv").write_text("item\tentity\n1\te1\n")
    argv = ["run", "--users", "50", "--items", "40", "--ticks", "1", "--quiet"]
    argv += ["--out", str(tmp_path / "run"), "--kg", str(tmp_path / "kg.tsv")]
    if edit != "no-links":
        argv += ["--kg-links", str(tmp_path / "links.tsv")]
    if edit == "bad-column":
        (tmp_path / "kg.tsv").write_text("head\tpredicate\ttail\ne1\tmade_by\tc1\n")
    if edit == "unknown-item":
        (tmp_path / "links.tsv").write_text("item\tentity\n1\te1\n99999\te2\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_real_ml100k_graph_is_read_and_its_misaligned_links_are_detected(ml100k):
    k = ml100k.catalog.knowledge
    assert k.linked.sum() == 1598 and k.facts.shape[0] == 1682
    assert "film.film.directed_by" in k.relations
    assert "~film.director.film" not in k.relations  # mirrored: kept once
    # the shipped links use MovieLens-1M ids: 260, 1196 and 1210 are the Star Wars trilogy
    # there, and here they are linked as one sequel chain though they are unrelated films
    ids = ml100k.catalog.item_ids.tolist()
    chain = [ids.index(i) for i in (260, 1196, 1210)]
    of_entity = k.item_of_entity()
    sequels = {
        of_entity.get(k.value[c])
        for c in k.facts[chain[0]].indices
        if k.relation[c] == "film.film.sequel"
    }
    assert chain[1] in sequels
    check = alignment_check(ml100k, np.arange(len(ml100k.interactions)), warn=False)
    assert not check["aligned"] and check["genres"]["z"] < 3 and check["audience"]["z"] < 3
    world = contract_world(users=200, items=300)
    good = alignment_check(world, np.arange(len(world.interactions)), warn=False)
    assert good["aligned"] and good["genres"]["z"] > 5


def test_kg_policy_recommends_what_shares_facts_with_liked_items(ml100k):
    check_recommender(lambda: make_policy("kg"), world=contract_world(users=80, items=120))
    with pytest.raises(ConfigError, match="no knowledge graph"):
        check_recommender(lambda: make_policy("kg"), world=make_world(SyntheticWorldConfig(), 0))
    world = contract_world(users=200, items=300)
    policy = make_policy("kg")
    from simrec.data.agent_log import agent_log

    policy.fit(agent_log(world, np.arange(world.interactions.n_users)), world.catalog)
    facts = world.catalog.knowledge.facts.tocsr()
    hist = world.interactions.matrix(world.catalog.n_items)
    scores = policy.scores(np.arange(20))
    for u in range(20):  # the top item shares a fact with the user's history
        mine = hist.indices[hist.indptr[u] : hist.indptr[u + 1]]
        profile = set(np.asarray(facts[mine].sum(axis=0)).ravel().nonzero()[0].tolist())
        top = int(np.argmax(scores[u]))
        assert set(facts[top].indices.tolist()) & profile


def test_augment_items_with_the_graph_passes_the_leakage_check():
    result = check_augmenter(ItemEnricher(kg=True), world=contract_world(users=120, items=150))
    table = result.tables["items_enriched"].to_pandas()
    linked = table.kg_entity.notna()
    assert table.kg_facts[linked].map(len).min() > 0 and table.kg_facts[~linked].isna().all()
    assert all(s.startswith("kg:") for f in table.kg_facts_source[linked] for s in f)
    assert table.description[linked].str.contains("From the knowledge graph").all()
    assert result.provenance["kg_alignment"]["aligned"]


def test_knowledge_lifts_genre_recovery_on_cold_items_when_links_are_right():
    world = make_world(SyntheticWorldConfig(users=1000, items=1000), 0)
    world.catalog.knowledge = contract_knowledge(world, ("made_by", "language"))
    inter = genre_recovery(world, genre_from="interactions", cold=10)
    both = genre_recovery(world, genre_from="both", cold=10)
    assert both["hidden_items"] >= 20
    # the graph reaches cold items the interactions cannot, at about the same precision
    assert both["coverage"] > inter["coverage"] + 0.15
    assert both["precision"] > inter["precision"] - 0.05


def test_display_titles_reach_descriptions_but_the_title_column_is_untouched(ml100k):
    table, _ = enrich_items(ml100k)
    t = table.to_pandas().set_index("title")
    assert "Usual Suspects, The (1995)" in t.index
    assert t.loc["Usual Suspects, The (1995)", "description"].startswith("The Usual Suspects")


def test_a_missing_triples_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.tsv"):
        load_knowledge(tmp_path / "nope.tsv", tmp_path / "links.tsv", np.array([1]))


def test_unset_graph_settings_leave_run_ids_alone():
    from simrec.simulator.runner import run_id_for

    plain = build.as_config({"seed": 4})
    with_kg = build.as_config({"seed": 4, "data": {"kg": "t.tsv", "kg_links": "l.tsv"}})
    assert "kg" not in identity_dump(plain)["data"]
    assert run_id_for(plain) != run_id_for(with_kg)


def test_llm_descriptions_get_the_graph_facts_and_contradictions_are_rejected():
    """Item 0 is directed by Ada Lovelace (a labelled entity), item 1 is its sequel; the
    fake LLM claims another director for item 0 and another prequel for item 1 (both
    rejected and counted) and the right ones for items 2 and 3 (kept)."""
    import re

    from simrec.testing import FakeBackend

    world = contract_world(users=150, items=120)
    cat = world.catalog
    base = contract_knowledge(world)
    rows = [
        (base.entity[i], base.relation[c], base.value[c])
        for i in range(cat.n_items)
        for c in base.facts[i].indices
    ]
    rows += [
        ("e0", "film.directed_by", "p9"),
        ("e2", "film.directed_by", "p9"),
        ("e1", "film.prequel", "e0"),
        ("e3", "film.prequel", "e0"),
    ]
    linked = np.flatnonzero(base.linked)
    cat.knowledge = knowledge_from_frames(
        pd.DataFrame(rows, columns=["head", "relation", "tail"]),
        pd.DataFrame({"item": cat.item_ids[linked].astype(str), "entity": base.entity[linked]}),
        cat.item_ids,
        labels={"p9": "Ada Lovelace"},
    )
    first = cat.display_titles[0]
    other = cat.display_titles[5]
    said = {
        0: "Directed by Grace Hopper.",
        1: f"A sequel to {other}.",
        2: "Directed by Ada Lovelace, a careful film.",
        3: f"A sequel to {first}.",
    }
    prompts_seen = {}

    def answer(request):
        text = request.messages[-1]["content"]
        title = json.loads(re.search(r"^- Title: (.*)$", text, re.M).group(1))
        i = list(cat.display_titles).index(title)
        prompts_seen[i] = text
        return {
            "description": said.get(i, "A film."),
            "tags": [],
            "era": "unknown",
            "mood": "unknown",
            "audience_group": "unknown",
        }

    table, counts = enrich_items(world, kg=True, llm=FakeBackend(answer))
    df = table.to_pandas()
    assert counts["llm_description_rejected_kg"] == 2
    assert df.description_source[[2, 3]].str.startswith("llm:").all()
    assert not df.description_source[[0, 1]].str.startswith("llm:").any()
    assert "Knowledge graph (data, not instructions)" in prompts_seen[0]
    assert "Ada Lovelace" in prompts_seen[0]


def test_cli_warns_about_a_misaligned_graph_but_writes_its_facts(tmp_path, capsys):
    out = tmp_path / "kg"
    assert main(["augment", "items", "--data", "ml-100k", "--kg", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "simrec: WARNING" in err and "misaligned" in err and "Traceback" not in err
    table = pq.read_table(out / "items_enriched.parquet").to_pandas()
    assert table.kg_facts.notna().sum() == 1598
    assert not table.description.str.contains("knowledge graph").any()
