"""Catalog domains: a shop's catalog read from RecBole files is simulated, enriched, profiled
and reported on in a shop's words, from its own item fields; movies keep theirs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.agents.brains import prompts
from simrec.agents.persona import derive_personas, write_profile
from simrec.cli import main
from simrec.data import load
from simrec.domain import DOMAINS, domain, infer_domain
from simrec.errors import ConfigError

from .conftest import completion, serve

BRANDS = ("Acme", "Borealis", "Corvid", "Dynamo", "Evergreen")
CATEGORIES = ("Beauty", "Hair_Care", "Kitchen", "Garden", "Toys", "Audio")
FILM_WORDS = re.compile(r"\b(movies?|films?|watch\w*|viewers?|titles?)\b", re.IGNORECASE)


def write_shop(root: Path, name: str = "shop", users: int = 150, items: int = 60) -> Path:
    """A synthetic shop in RecBole atomic files: products with a name, a brand, a category
    path and a price (one price missing); shoppers who mostly buy one brand."""
    rng = np.random.default_rng(7)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    brand = np.arange(items) % len(BRANDS)
    rows = ["item_id:token\tname:token_seq\tbrand:token\tcategories:token_seq\tprice:float"]
    for i in range(items):
        cats = " ".join(CATEGORIES[j % len(CATEGORIES)] for j in (i, i + 2)[: 1 + i % 2])
        price = "" if i == 5 else f"{5 + (i * 7) % 90}.5"
        rows.append(f"p{i}\t{BRANDS[brand[i]]} gadget {i}\t{BRANDS[brand[i]]}\t{cats}\t{price}")
    (d / f"{name}.item").write_text("\n".join(rows) + "\n")
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(users):
        loyal = u % len(BRANDS)
        own = np.flatnonzero(brand == loyal)
        picks = np.r_[rng.choice(own, 6, replace=False), rng.choice(items, 6, replace=False)]
        for t, i in enumerate(dict.fromkeys(picks.tolist())):
            r = rng.integers(3, 6) if brand[i] == loyal else rng.integers(1, 4)
            lines.append(f"u{u}\tp{i}\t{r}\t{1_600_000_000 + 3600 * (24 * t + u % 24)}")
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture
def shop(tmp_path) -> Path:
    return write_shop(tmp_path / "data")


def test_domains_are_inferred_and_defined_in_config():
    assert infer_domain("movielens-100k") == infer_domain("synthetic") == "movies"
    assert infer_domain("recbole:Amazon_Beauty") == "products"
    assert infer_domain("recbole:lastfm") == "music"
    assert infer_domain("recbole:steam") == "games"
    assert infer_domain("table") == infer_domain("recbole:xyz") == "items"
    recipes = domain({"name": "recipes", "item": "recipe", "verb": "cook", "user": "cook"})
    assert (recipes.items, recipes.verb_past, recipes.key) == ("recipes", "cooked", "cook")
    music = DOMAINS["music"]
    assert (music.verb_past, music.verb_3rd, music.key) == ("listened to", "listens to", "listen")
    # the chosen-positions field never takes another answer field's name
    assert domain({"name": "x", "item": "x", "verb": "rate"}).key == "rate"
    assert domain({"name": "x", "item": "x", "verb": "skip"}).key == "picks"
    with pytest.raises(ConfigError, match="data.domain: expected one of movies"):
        domain("films")
    with pytest.raises(ConfigError, match="attributes"):
        domain({"name": "x", "item": "x", "verb": "y", "attributes": ["colour"]})


def test_a_built_in_domain_takes_words_of_ones_own():
    album = domain({"name": "music", "item": "album"})
    assert (album.items, album.verb, album.user) == ("albums", "listen to", "listener")
    assert album.service == "music recommendation service"
    shop = DOMAINS["products"].with_words(item="gadget", verb="rent")
    assert (shop.items, shop.verb_past, shop.verb_3rd) == ("gadgets", "rented", "rents")
    assert shop.user == "shopper"
    with pytest.raises(ConfigError, match="data.domain"):
        domain({"name": "music", "item": ""})


def test_the_item_noun_is_set_over_the_inferred_domain(shop, tmp_path):
    cfg = {
        "seed": 1,
        "data": {"format": "recbole", "path": str(shop), "item_noun": "gizmo"},
        "population": {"users": 10},
        "simulation": {"ticks": 1},
        "output": {"dir": str(tmp_path / "r")},
    }
    res = simrec.run(cfg)
    words = res.manifest["data"]["domain"]
    assert (words["name"], words["item"], words["items"]) == ("products", "gizmo", "gizmos")
    assert words["verb"] == "buy"


def test_a_shop_catalog_keeps_its_own_fields(shop):
    data = load("recbole", shop)
    cat = data.catalog
    assert cat.domain.name == "products" and cat.years is None
    assert set(cat.attributes) == {"brand", "price"}
    assert cat.attributes["brand"][0] == "Acme" and np.isnan(cat.attributes["price"][5])
    assert cat.genre_lists()[1] == ["Garden", "Hair_Care"]
    assert cat.text[0] == "Acme gadget 0. Categories: Beauty. Brand: Acme. Price: 5.5."
    assert cat.has_titles


def test_a_shop_is_simulated_in_a_shops_words(shop, tmp_path, monkeypatch):
    """The LLM brain on a shop: the prompts speak of products and buying (not one film word),
    the answer schema's chosen-positions field is "buy", and the answers decide the pages."""
    systems, pages = [], []

    def handler(request):
        body = json.loads(request.content)
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "recommendations:" in user:
            systems.append(system)
            pages.append((user, body["response_format"]["schema"]))
            answer = {"buy": [1], "ratings": [4], "next": "leave", "feeling": "satisfied"}
            answer["reason"] = "fits"
        else:  # an interview
            answer = {"score": 6, "reason": "fine"}
        return completion(json.dumps(answer), "stop", 30, 8)

    serve(monkeypatch, handler)
    cfg = {
        "seed": 5,
        "data": {"format": "recbole", "path": str(shop)},
        "population": {"users": 20},
        "simulation": {"ticks": 2, "page_size": 4, "max_pages": 1},
        "brain": {"name": "llm", "taste_dim": 4},
        "llm": {
            "backend": "openai:fake",
            "base_url": "http://127.0.0.1:9/v1",
            "cache": str(tmp_path / "c.sqlite"),
            "interview_fraction": 1.0,
        },
        "output": {"dir": str(tmp_path / "runs")},
    }
    res = simrec.run(cfg)
    assert systems and pages
    assert "a user of an online shop's recommendations" in systems[0]
    assert "shopper" in systems[0] and "buy" in systems[0]
    for text in systems + [p for p, _ in pages]:
        assert not FILM_WORDS.search(re.sub(r"Titles,\s+descriptions", "", text)), text
    assert set(pages[0][1]["properties"]) >= {"buy", "ratings"}
    assert "watch" not in pages[0][1]["properties"]
    ev = res.events()
    bought = ev[(ev.decided_by == "llm:fake") & ev.clicked]
    assert len(bought) and (bought.position == 0).all() and (bought.rating == 4).all()
    assert res.manifest["data"]["domain"]["name"] == "products"
    assert main(["report", str(res.run_dir)]) == 0
    html = (res.run_dir / "report" / "report.html").read_text()
    assert "Bought by position" in html and "Most bought products" in html


def test_movie_prompts_and_schema_keep_their_words():
    answer = prompts.answer_model(4, (1.0, 2.0, 3.0), DOMAINS["movies"].key)
    assert "watch" in answer.model_json_schema()["properties"]
    t = prompts.in_words(prompts.load_templates(), DOMAINS["movies"])
    system = t["system"].safe_substitute(name="u", profile="p", scale="1 to 5")
    assert system.startswith("You are a user of a movie recommendation service.")
    assert '"watch" (positions you watch' in t["page"].template
    # a domain word with a dollar sign stays a word, never a template variable
    odd = domain({"name": "x", "item": "$items", "verb": "get"})
    raw = prompts.in_words(prompts.load_templates(), odd)["rate"]
    assert "rating per $items," in raw.safe_substitute(items="1. x")


def test_enriching_a_shop_uses_its_fields_and_invents_no_era(shop, tmp_path, monkeypatch):
    """Graph enrichment writes the brand and price as catalog attributes and no era (the shop
    has no dates); the LLM is asked about products with those facts, for the products
    domain's attributes only; era on request is refused with a clear error."""
    asked = []

    def handler(request):
        body = json.loads(request.content)
        asked.append(body)
        answer = {"description": "A gadget by its brand.", "genres": [], "tags": []}
        answer["audience_group"] = "adults"
        return completion(json.dumps(answer), "stop", 40, 10)

    serve(monkeypatch, handler)
    monkeypatch.chdir(tmp_path)  # the default response cache is ./datasets_out/...
    out = tmp_path / "aug"
    argv = ["augment", "items", "--format", "recbole", "--data", str(shop)]
    argv += ["--llm", "openai:fake", "--base-url", "http://127.0.0.1:9/v1", "--out", str(out)]
    assert main(argv) == 0
    df = pq.read_table(out / "items_enriched.parquet").to_pandas()
    row = df[df.item_id == "p1"].iloc[0]
    attrs = {a["name"]: (a["value"], a["source"], a["confidence"]) for a in row.attributes}
    assert attrs == {"brand": ("Borealis", "catalog", 1.0), "price": ("12.5", "catalog", 1.0)}
    assert df.era.isna().all() and not any(re.fullmatch(r"\d{4}s", t["tag"]) for t in row.tags)
    assert df.description_source.eq("llm:fake").all() and (df.audience_group == "adults").all()
    props = asked[0]["response_format"]["schema"]["properties"]
    assert "era" not in props and "mood" not in props and "audience_group" in props
    facts = asked[1]["messages"][1]["content"]
    assert '- Brand: "Borealis"' in facts and "- Categories: Garden, Hair_Care" in facts
    assert "Bought by" in facts or "No one has bought it yet" in facts
    for body in asked:
        for m in body["messages"]:
            assert not re.search(r"\b(movies?|films?|watch\w*|cast)\b", m["content"], re.I)
    graph = tmp_path / "graph"
    assert main(argv[:6] + ["--out", str(graph)]) == 0
    text = pq.read_table(graph / "items_enriched.parquet").to_pandas().description[1]
    assert text.startswith("Borealis gadget 1 is a Garden, Hair_Care product. Brand: Borealis.")
    assert "people have bought it" in text
    code = main([*argv[:6], "--llm", "openai:fake", "--attributes", "era,mood"])
    assert code == 2


def test_profiles_read_well_for_extreme_personas(shop):
    words = DOMAINS["movies"]
    extremes = [
        dict(n=1, arrival=0.9, bias=2.0, conformity=1.0, diversity=1.0, liked=["Drama"]),
        dict(n=900, arrival=0.0, bias=-2.0, conformity=0.0, diversity=0.0, liked=[]),
        dict(n=12, arrival=0.1, bias=-0.04, conformity=0.5, diversity=0.5, liked=["A", "B", "C"]),
        dict(n=3, arrival=0.01, bias=None, conformity=0.5, diversity=0.2, liked=[]),
    ]
    texts = [write_profile(words, disliked=[], **e) for e in extremes]
    assert texts[0].startswith("A devoted viewer (1 movie in the log")
    assert "A generous rater (+2.0 points against the average)" in texts[0]
    assert texts[1].startswith("An occasional viewer (900 movies")
    assert "A harsh rater (-2.0 points" in texts[1] and "sticks to a few genres" in texts[1]
    assert "An even-handed rater (about average)" in texts[2] and "A, B and C" in texts[2]
    assert "rater" not in texts[3]  # no ratings, nothing said about rating
    for t in texts:
        assert "-0.0" not in t and "+0.0" not in t and " a even" not in t and ".." not in t
    personas = derive_personas(load("recbole", shop), np.zeros(150))
    assert all(p.startswith(("A ", "An ")) and "shopper" in p for p in personas.profiles)
    assert not any(FILM_WORDS.search(p) for p in personas.profiles)
    assert all('Favourites: "' in p for p in personas.profiles)
    loyal = [p for p in personas.profiles if "Favourite brand: " in p]
    assert len(loyal) > 100  # the shoppers mostly buy one brand
    assert personas.profiles[0].count('"Acme gadget') >= 2  # user 0 is loyal to Acme


def test_a_domain_is_chosen_on_the_command_line_and_refused_when_unknown(shop, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", "--format", "recbole", "--data", str(shop), "--users", "15", "--ticks", "1"]
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--domain", "films", "--out", str(out)])
    assert refused.value.code == 2
    assert "invalid choice: 'films'" in capsys.readouterr().err
    assert main([*argv, "--domain", "books", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["domain"]["item"] == "book"
    users = pq.read_table(out / "users.parquet").to_pandas()
    assert users.profile.str.contains("reader").all()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data:\n  format: recbole\n  path: {shop}\n  domain: {{item: x}}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.domain" in err and "Traceback" not in err
