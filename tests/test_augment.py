"""Catalog enrichment from the interaction graph: leakage control, genre recovery,
provenance of every field, the CLI, and bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from simrec.augment import enrich_items, genre_recovery, hide_genres, parse_cutoff, visible
from simrec.build import load_data
from simrec.cli import main
from simrec.config import RunConfig
from simrec.data.loaders import load
from simrec.errors import ConfigError

WORLD = {"seed": 1, "data": {"synthetic": {"users": 600, "items": 300}}}


@pytest.fixture(scope="module")
def world():
    return load_data(RunConfig.model_validate(WORLD))


def test_cutoffs_parse_and_select_rows(world):
    log = world.interactions
    assert parse_cutoff(None) is None
    assert parse_cutoff("0.8").fraction == 0.8
    assert parse_cutoff("1700000000").timestamp == 1_700_000_000
    assert parse_cutoff("2024-01-01").timestamp == 1_704_067_200
    assert parse_cutoff("2024-01-01T02:00:00+02:00").timestamp == 1_704_067_200
    for bad in ("1.5", "0", "yesterday", "2024-13-01"):
        with pytest.raises(ConfigError, match="--cutoff: expected"):
            parse_cutoff(bad)
    t = int(np.median(log.timestamp))
    rows = visible(log, parse_cutoff(str(t)))
    assert (log.timestamp[rows] < t).all() and rows.size == int((log.timestamp < t).sum())
    rows = visible(log, parse_cutoff("0.75"))
    counts = np.bincount(log.user, minlength=log.n_users)
    kept = np.bincount(log.user[rows], minlength=log.n_users)
    np.testing.assert_array_equal(kept, counts - np.floor(0.25 * counts + 1e-9))


def _without_rows(data, keep):
    log = data.interactions.take(np.sort(keep))
    return dataclasses.replace(data, interactions=log)


@pytest.mark.parametrize("kind", ["timestamp", "fraction"])
def test_nothing_after_the_cutoff_informs_the_output(world, kind):
    """Enriching with a cutoff gives exactly what enriching the log with every later row
    deleted gives: a held-out interaction reaches no statistic, neighbour or description."""
    log = world.interactions
    spec = str(int(np.quantile(log.timestamp, 0.7))) if kind == "timestamp" else "0.7"
    cut = parse_cutoff(spec)
    with_cutoff, counts = enrich_items(world, cutoff=cut)
    truncated, _ = enrich_items(_without_rows(world, visible(log, cut)))
    assert with_cutoff.equals(truncated)
    full, _ = enrich_items(world)
    assert not with_cutoff.equals(full)  # the later rows would have changed it
    assert counts["visible_interactions"] < counts["interactions"]


def test_hidden_genres_are_recovered_from_the_graph(world):
    stripped, hidden = hide_genres(world, 0.3, seed=0)
    assert hidden.size == round(0.3 * world.catalog.n_items)
    assert all(not stripped.catalog.genre_lists()[i] for i in hidden)
    table, counts = enrich_items(stripped)
    added = table.column("genres_added").to_pylist()
    conf = table.column("genres_added_confidence").to_pylist()
    source = table.column("genres_added_source").to_pylist()
    assert counts["genres_added"] + counts["genres_unknown"] == hidden.size
    for i in range(world.catalog.n_items):
        if i not in set(hidden.tolist()):
            assert added[i] == [] and source[i] is None  # known genres are never touched
        elif added[i]:
            assert source[i] == "graph" and all(0.5 <= c <= 1 for c in conf[i])
            assert conf[i] == sorted(conf[i], reverse=True)
    r = genre_recovery(world, share=0.3, seed=0)
    assert r["coverage"] > 0.5
    assert r["top1_accuracy"] > r["top1_accuracy_most_common_genre"] + 0.3
    assert r["precision"] > 0.6


def test_every_generated_field_carries_provenance(world):
    table, _ = enrich_items(world)
    df = table.to_pandas()
    cat = world.catalog
    assert df.item_id.tolist() == cat.item_ids.tolist()
    assert df.title.tolist() == cat.titles.tolist() and df.text.tolist() == cat.text.tolist()
    assert [list(g) for g in df.genres] == cat.genre_lists()
    for field in ("era", "popularity_band", "audience", "description"):
        has = df[field].notna()
        assert has.any()
        assert set(df.loc[has, f"{field}_source"]) <= {"catalog", "graph"}
        assert df.loc[has, f"{field}_confidence"].between(0, 1).all()
        assert df[f"{field}_prompt_hash"].isna().all()  # no LLM wrote anything
        assert df.loc[~has, f"{field}_source"].isna().all()
    vocab = set()
    for tags in df.tags:
        for t in tags:
            assert t["source"] in {"catalog", "graph"} and 0 < t["confidence"] <= 1
            vocab.add(t["tag"])
    from simrec.augment import vocabulary

    assert vocab <= set(vocabulary(world))
    # neighbours are other items, most similar first; an unwatched item has none
    for i, (nb, sim) in enumerate(zip(df.neighbours, df.neighbour_similarity, strict=True)):
        assert cat.item_ids[i] not in set(nb) and list(sim) == sorted(sim, reverse=True)
    quiet = df[df.n_interactions == 0]
    assert (quiet.neighbours.map(len) == 0).all()
    assert quiet.description.str.contains("No one has watched it yet").all()


def test_augment_items_cli_on_movielens_files(ml1m, tmp_path, capsys):
    out = tmp_path / "aug"
    argv = ["augment", "items", "--data", str(ml1m), "--cutoff", "0.8", "--out", str(out)]
    assert main(argv) == 0
    assert "items_enriched" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["cutoff"] == "each user's earliest 0.8"
    assert manifest["data"]["file_sha256"] and manifest["counts"]["items"] > 0
    first = (out / "items_enriched.parquet").read_bytes()
    table = pq.read_table(out / "items_enriched.parquet")
    data = load("movielens-1m", str(ml1m))
    assert table.num_rows == data.catalog.n_items
    # the same again is refused, then replaced byte for byte with --overwrite
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "items_enriched.parquet").read_bytes() == first
    # --only-missing: items with genres and text keep null generated fields
    only = tmp_path / "only"
    assert (
        main(["augment", "items", "--data", str(ml1m), "--only-missing", "--out", str(only)]) == 0
    )
    df = pq.read_table(only / "items_enriched.parquet").to_pandas()
    complete = df.genres.map(len).gt(0) & df.text.str.strip().ne("")
    assert df.loc[complete, "description"].isna().all()


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--cutoff", "tomorrow"], "--cutoff"),
        (["--neighbours", "0"], "--neighbours"),
        (["--genre-threshold", "1.5"], "--genre-threshold"),
    ],
)
def test_bad_augment_input_exits_2(flags, needle, ml100k, tmp_path, capsys):
    out = tmp_path / "aug"
    code = main(["augment", "items", "--data", str(ml100k), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_profiles_come_from_history_before_the_cutoff(world):
    from simrec.augment import write_profiles

    cut = parse_cutoff("0.7")
    with_cutoff, counts = write_profiles(world, cutoff=cut)
    truncated, _ = write_profiles(_without_rows(world, visible(world.interactions, cut)))
    assert with_cutoff.equals(truncated)
    df = with_cutoff.to_pandas()
    assert counts["users"] == len(df) == world.interactions.n_users
    assert (df.profile_source == "history").all() and df.profile_prompt_hash.isna().all()
    assert df.profile_confidence.between(0, 1).all()
    # favourites are the user's best-rated visible items, named in the profile
    log = world.interactions.take(visible(world.interactions, cut))
    titles = dict(zip(world.catalog.item_ids.tolist(), world.catalog.titles.tolist(), strict=True))
    for _, row in df.head(30).iterrows():
        u = int(np.flatnonzero(world.interactions.user_ids == row.user_id)[0])
        mine = log.rating[log.user == u]
        ids = world.catalog.item_ids
        fav_ratings = [
            float(log.rating[(log.user == u) & (ids[log.item] == i)].max())
            for i in row.favourite_items
        ]
        assert fav_ratings == sorted(fav_ratings, reverse=True)
        assert fav_ratings[0] == mine.max()
        assert all(titles[i] in row.profile for i in row.favourite_items)
    for word in ("age", "gender", "occupation", "male", "female"):
        assert not df.profile.str.contains(rf"\b{word}\b", case=False).any()


def test_pseudo_interactions_are_unseen_candidates_picked_by_the_simulator(world):
    from simrec.augment import merged, pseudo_interactions

    cfg = RunConfig.model_validate(WORLD)
    cut = parse_cutoff("0.8")
    table, counts = pseudo_interactions(world, cfg, cutoff=cut, positives=2, negatives=1)
    truncated, _ = pseudo_interactions(
        _without_rows(world, visible(world.interactions, cut)), cfg, positives=2, negatives=1
    )
    assert table.equals(truncated)  # nothing after the cutoff informs the choice
    df = table.to_pandas()
    assert set(df.source) == {"simulator:utility"} and set(df.base) == {"itemknn"}
    assert counts["pseudo_positives"] == 2 * counts["users"]
    assert counts["pseudo_negatives"] == counts["users"]
    log = world.interactions.take(visible(world.interactions, cut))
    seen = set(
        zip(
            world.interactions.user_ids[log.user].tolist(),
            world.catalog.item_ids[log.item].tolist(),
            strict=True,
        )
    )
    assert not any((u, i) in seen for u, i in zip(df.user_id, df.item_id, strict=True))
    for _, g in df.groupby("user_id"):
        assert g[g.label == 1].score.min() >= g[g.label == 0].score.max()
        assert g.candidate_rank.between(1, 50).all() and g.item_id.is_unique
    m = merged(world, table, cut).to_pandas()
    assert (m.source == "original").sum() == len(log)
    assert (m.source == "simulator:utility").sum() == counts["pseudo_positives"]
    assert m[m.source != "original"].rating.isna().all()


def test_downstream_lift_measures_each_arm_against_a_tuned_model(world):
    from simrec.augment import downstream_lift

    cfg = RunConfig.model_validate(WORLD)
    r = downstream_lift(world, cfg, positives=2, ticks=60)
    # ALS tuned on the subsample's inner split, the bar an augmentation has to clear: far above
    # its defaults on this sparse log
    untuned = downstream_lift(world, cfg, tuned=False, positives=0, volume=None)
    assert r["recall@20"] > 1.5 * untuned["recall@20"] > 0
    assert r["param_factors"] in (32, 128) and "param_factors" not in untuned
    assert "pseudo_recall@20" not in untuned and "synthetic_recall@20" not in untuned
    assert r["pseudo_positives"] == 2 * r["users"] == 1200
    # the synthetic log is about as large as the subsample (volume 1)
    assert 0.5 < r["synthetic_interactions"] / r["train_interactions"] < 2
    for arm in ("pseudo", "synthetic"):
        assert 0 < r[f"{arm}_recall@20"] < 1
        # each lift comes with its paired bootstrap interval over the 600 users
        assert r[f"{arm}_recall_low"] < r[f"{arm}_recall_lift"] < r[f"{arm}_recall_high"]
        assert r[f"{arm}_recall_lift"] == pytest.approx(r[f"{arm}_recall@20"] / r["recall@20"] - 1)
    assert 0 <= r["cold_users"] <= r["users"] == 600


def test_cold_item_lift_ranks_only_the_cold_items_by_content(world):
    from simrec.augment import cold_item_lift

    r = cold_item_lift(world, share=0.1)
    assert r["cold_items"] == 30 and r["random_recall@20"] == pytest.approx(20 / 30)
    assert r["described_with_kg"] == 0.0  # this world has no graph
    # genres and text tell a user's cold items from the other cold ones well above chance
    assert r["raw_recall@20"] > r["random_recall@20"] + 0.1
    assert 0 < r["enriched_recall@20"] <= 1
    assert r["recall_low"] < r["recall_lift"] < r["recall_high"]
    assert r["recall_lift"] == pytest.approx(r["enriched_recall@20"] / r["raw_recall@20"] - 1)


def test_augment_profiles_and_interactions_cli(ml100k, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["augment", "profiles", "--data", str(ml100k), "--out", str(out)]) == 0
    assert pq.read_table(out / "profiles.parquet").num_rows > 0
    out = tmp_path / "i"
    argv = ["augment", "interactions", "--data", str(ml100k), "--cutoff", "0.8", "--merge"]
    assert main([*argv, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"interactions_augmented", "interactions_merged"}
    assert manifest["parameters"]["cutoff"] == "each user's earliest 0.8"
    bad = tmp_path / "bad"
    assert main([*argv, "--candidates", "1", "--out", str(bad)]) == 2
    assert "--candidates" in capsys.readouterr().err and not bad.exists()


def test_llm_enrichment_is_checked_counted_and_replayed(tmp_path, monkeypatch):
    """A fake OpenAI-compatible server (MockTransport below the real client) answers every
    item: some with an era or genres that contradict the catalog (rejected and counted), some
    malformed (the graph's fields stay), the rest usable (kept with the model as source and the
    prompt's hash). A rerun replays from the cache into the same file with no calls."""
    import re

    from .conftest import completion, serve

    calls = []

    def handler(request):
        body = json.loads(request.content)
        calls.append(body)
        facts = body["messages"][1]["content"]
        title = re.search(r"^- Title: (.*)$", facts, re.M).group(1)
        props = body["response_format"]["schema"]["properties"]
        genres = props["genres"]["items"]["enum"]
        known = re.search(r"^- Genres: (.*)$", facts, re.M)
        answer = {
            "description": f"{title}, as the facts say.",
            "genres": known.group(1).split(", ")[:1] if known else [genres[0]],
            "era": "unknown",
            "mood": "dark",
            "audience_group": "adults",
            "tags": ["niche"],
        }
        n = len(calls)
        if n % 5 == 0:
            answer["genres"] = [g for g in genres if not known or g not in known.group(1)][:1]
        elif n % 5 == 1:
            answer["era"] = "1900s" if "1900s" in props["era"]["enum"] else props["era"]["enum"][0]
        elif n % 5 == 2:
            return completion('{"description": "trunc', "length", 50, 5)
        return completion(json.dumps(answer), "stop", 50, 20)

    serve(monkeypatch, handler)
    raw = {
        **WORLD,
        "data": {"synthetic": {"users": 200, "items": 40}},
        "llm": {"cache": str(tmp_path / "c.sqlite")},
    }
    kw = {"llm": "openai:fake", "base_url": "http://127.0.0.1:9/v1", "overwrite": True}
    from simrec.augment import augment_items

    out = augment_items(raw, out=tmp_path / "a", **kw)
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert len(calls) == counts["llm_requests"] == 40
    df = pq.read_table(out / "items_enriched.parquet").to_pandas()
    kept = df[df.description_source == "llm:fake"]
    assert counts["llm_descriptions"] == len(kept) > 0
    assert counts["llm_failed"] == 8  # calls 2, 7, 12, ...: truncated JSON
    # era answers that contradict the title's year and genres that share nothing with the
    # catalog's are rejected with the whole answer
    assert counts["llm_genres_rejected"] + counts["llm_era_rejected"] > 0
    assert (
        counts["llm_descriptions"]
        + counts["llm_failed"]
        + counts["llm_genres_rejected"]
        + counts["llm_era_rejected"]
        == 40
    )
    assert kept.description.str.endswith("as the facts say.").all()
    assert kept.description_prompt_hash.str.len().eq(16).all()
    assert (kept.mood == "dark").all() and (kept.mood_confidence == 0.5).all()
    rest = df[df.description_source != "llm:fake"]
    assert (rest.description_source == "graph").all() and rest.mood.isna().all()
    assert "llm:fake" in manifest["sources"]
    # a rerun replays every answer from the cache: no calls, the same bytes
    before = len(calls)
    again = augment_items(raw, out=tmp_path / "b", **kw)
    assert len(calls) == before
    assert (again / "items_enriched.parquet").read_bytes() == (
        out / "items_enriched.parquet"
    ).read_bytes()


def test_llm_profiles_and_choices_are_checked_and_fall_back(tmp_path, monkeypatch):
    """Profiles: a fake server's answers that mention demographics or come back truncated
    keep the profile written from the history (counted); the rest are the LLM's. Choices:
    overlapping positions are unusable and the simulator chooses for that user (counted)."""
    from simrec.augment import augment_interactions, augment_profiles

    from .conftest import completion, serve

    seen = {"profile": 0, "choose": 0}

    def handler(request):
        body = json.loads(request.content)
        props = set(body["response_format"]["schema"]["properties"])
        if props == {"profile"}:
            seen["profile"] += 1
            n = seen["profile"]
            if n % 4 == 0:
                return completion('{"profile": "cut', "length", 40, 5)
            text = "A 30-year-old woman who loves drama." if n % 4 == 1 else "Loves drama."
            return completion(json.dumps({"profile": text}), "stop", 40, 8)
        seen["choose"] += 1
        k = len(body["response_format"]["schema"]["properties"]["watch"]["items"]["enum"])
        answer = {"watch": [1, 2], "skip": [k]}
        if seen["choose"] % 3 == 0:
            answer = {"watch": [1], "skip": [1]}  # overlapping: unusable
        return completion(json.dumps(answer), "stop", 40, 8)

    serve(monkeypatch, handler)
    raw = {**WORLD, "data": {"synthetic": {"users": 30, "items": 60}}, "llm": {"cache": None}}
    kw = {"llm": "openai:fake", "base_url": "http://127.0.0.1:9/v1"}
    out = augment_profiles(raw, out=tmp_path / "p", **kw)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    df = pq.read_table(out / "profiles.parquet").to_pandas()
    assert counts["llm_requests"] == len(df) == 30
    assert counts["llm_demographics_rejected"] == 8 and counts["llm_failed"] == 7
    llm_rows = df[df.profile_source == "llm:fake"]
    assert len(llm_rows) == counts["llm_profiles"] == 15
    assert (llm_rows.profile == "Loves drama.").all() and llm_rows.profile_prompt_hash.notna().all()
    assert (df[df.profile_source == "history"].profile.str.contains("viewer")).all()
    out = augment_interactions(raw, out=tmp_path / "i", positives=2, negatives=1, **kw)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    df = pq.read_table(out / "interactions_augmented.parquet").to_pandas()
    assert counts["llm_failed"] == seen["choose"] // 3 > 0
    by = df.groupby("user_id").source.first()
    assert (by == "llm:fake").sum() == counts["llm_choices"]
    assert (by == "simulator:utility").sum() == counts["llm_failed"]
    llm_rows = df[df.source == "llm:fake"]
    assert set(llm_rows[llm_rows.label == 1].candidate_rank) == {1, 2}
    assert set(llm_rows[llm_rows.label == 0].candidate_rank) == {20}  # the last of 20 shown


def _prompt_server(monkeypatch, prompts_seen):
    """A fake OpenAI server answering every augmentation schema, recording each prompt."""
    from .conftest import completion, serve

    def handler(request):
        body = json.loads(request.content)
        prompts_seen.append(json.dumps(body["messages"]))
        props = body["response_format"]["schema"]["properties"]
        if "profile" in props:
            answer = {"profile": "Likes what the facts say."}
        elif "skip" in props:
            answer = {"watch": [1], "skip": [2]}
        else:
            answer = {"description": "As the facts say.", "tags": []}
            answer |= {a: "unknown" for a in ("era", "mood", "audience_group") if a in props}
            if "free_tags" in props:
                answer["free_tags"] = ["Slow Burn", "slow burn"]  # the same tag twice
        return completion(json.dumps(answer), "stop", 30, 8)

    serve(monkeypatch, handler)


def test_no_held_out_interaction_reaches_a_prompt(tmp_path, monkeypatch):
    """Every prompt sent with a cutoff is exactly a prompt sent for the log with the later
    rows deleted: nothing after the cutoff reaches the LLM (items, profiles, choices)."""
    from simrec.augment import enrich_items, pseudo_interactions, write_profiles
    from simrec.build import make_backend

    world = {"users": 60, "items": 80}
    data = load_data(RunConfig.model_validate({**WORLD, "data": {"synthetic": world}}))
    cfg = RunConfig.model_validate(
        {
            **WORLD,
            "llm": {"backend": "openai:fake", "base_url": "http://127.0.0.1:9/v1", "cache": None},
        }
    )
    cut = parse_cutoff("0.7")
    truncated = _without_rows(data, visible(data.interactions, cut))
    seen: list[str] = []
    _prompt_server(monkeypatch, seen)
    runs = []
    for d, c in ((data, cut), (truncated, None)):
        seen.clear()
        backend = make_backend(cfg)
        enrich_items(d, cutoff=c, llm=backend)
        write_profiles(d, cutoff=c, llm=backend)
        pseudo_interactions(d, cfg, cutoff=c, llm=backend)
        runs.append(sorted(seen))
    assert len(runs[0]) == 80 + 2 * 60 and runs[0] == runs[1]
    seen.clear()
    enrich_items(data, llm=make_backend(cfg))
    assert set(seen) - set(runs[0])  # without the cutoff, the later rows would have shown


def test_interrupted_llm_enrichment_resumes_from_the_cache(tmp_path, monkeypatch):
    import simrec.augment.llm as augment_llm
    from simrec.augment import augment_items
    from simrec.llm.cache import CachedBackend

    seen: list[str] = []
    _prompt_server(monkeypatch, seen)
    monkeypatch.setattr(augment_llm, "CHUNK", 10)
    raw = {**WORLD, "data": {"synthetic": {"users": 100, "items": 40}}}
    raw["llm"] = {"cache": str(tmp_path / "c.sqlite")}
    kw = {"llm": "openai:fake", "base_url": "http://127.0.0.1:9/v1", "free_tags": 2}
    real = CachedBackend.complete
    calls = [0]

    def dies_on_the_third_chunk(self, requests):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(self, requests)

    monkeypatch.setattr(CachedBackend, "complete", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        augment_items(raw, out=tmp_path / "a", **kw)
    assert len(seen) == 20 and not (tmp_path / "a" / "manifest.json").exists()
    monkeypatch.setattr(CachedBackend, "complete", real)
    out = augment_items(raw, out=tmp_path / "a", **kw)
    assert len(seen) == 40  # only the 20 unanswered items were asked again
    df = pq.read_table(out / "items_enriched.parquet").to_pandas()
    free = [t for tags in df.tags for t in tags if t["source"] == "llm:fake:free"]
    assert {t["tag"] for t in free} == {"slow burn"} and len(free) == len(df)
    assert all(sum(t["tag"] == "slow burn" for t in tags) <= 1 for tags in df.tags)


@pytest.mark.slow
def test_embedded_model_enriches_items_through_the_cli(tmp_path):
    """The embedded SmolLM2 writes descriptions and attributes for 6 items from the command
    line; whatever it says passes the same checks (135M parameters: the path is what is
    tested, not the prose)."""
    pytest.importorskip("llama_cpp")
    out = tmp_path / "aug"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  synthetic: {users: 40, items: 6}\n"
        f"llm:\n  cache: {tmp_path / 'cache.sqlite'}\n  max_tokens: 200\n"
    )
    assert main(["augment", "items", str(cfg), "--llm", "local", "--out", str(out)]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["llm_requests"] == 6
    kept = counts.get("llm_descriptions", 0)
    assert (
        kept
        + counts.get("llm_failed", 0)
        + counts.get("llm_genres_rejected", 0)
        + counts.get("llm_era_rejected", 0)
        == 6
    )
    df = pq.read_table(out / "items_enriched.parquet").to_pandas()
    llm = df[df.description_source.str.startswith("llm:")]
    assert len(llm) == kept and llm.description_prompt_hash.notna().all()
    from simrec.augment.llm import MOODS

    assert df.mood.dropna().isin(MOODS).all()
