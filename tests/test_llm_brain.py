"""The LLM brain inside the simulator: the embedded model, a real server, replay from the
cache, and faults that end in fallbacks with every event still logged."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec.agents.brains import prompts

from .conftest import completion, llm_config, serve

httpx2 = pytest.importorskip("httpx2")


def _parts(run_dir):
    return [p.read_bytes() for p in sorted((run_dir / "events").glob("part-*.parquet"))]


def test_answer_schema_enumerates_positions_ratings_and_bounds_arrays():
    model = prompts.answer_model(4, (1.0, 2.0, 3.0, 4.0, 5.0))
    schema = prompts.answer_schema(model)
    watch = schema["properties"]["watch"]
    assert watch["maxItems"] == 4 and watch["items"]["enum"] == [1, 2, 3, 4]
    assert schema["properties"]["ratings"]["items"]["enum"] == [1, 2, 3, 4, 5]
    assert set(schema["required"]) == {"next", "feeling", "reason"}
    ok = model.model_validate(
        {"watch": [2], "ratings": [4], "next": "leave", "feeling": "bored", "reason": "meh"}
    )
    assert ok.watch == [2]
    with pytest.raises(ValueError):
        model.model_validate(
            {"watch": [5], "ratings": [4], "next": "leave", "feeling": "bored", "reason": "x"}
        )


@pytest.mark.slow
def test_embedded_model_run_and_exact_replay_from_the_cache(tmp_path):
    pytest.importorskip("llama_cpp")
    cache = tmp_path / "cache.sqlite"

    def config(out):  # reflections after every 2 watched/felt entries: the model writes them
        cfg = llm_config(out, cache, backend="local", interview_fraction=0.5)
        cfg["memory"] = {"reflect_every": 2}
        return cfg

    first = simrec.run(config(tmp_path / "a"))
    ev = first.events()
    llm_rows = ev[ev.decided_by.str.startswith("llm:")]
    assert len(llm_rows) > 0
    assert llm_rows.reason.notna().all() and llm_rows.feeling.notna().all()
    assert llm_rows.prompt_hash.notna().all() and (llm_rows.prompt_tokens > 0).all()
    assert set(ev.decided_by) <= {"llm:SmolLM2-135M-Instruct-Q4_1", "fallback:utility"}
    m1 = first.manifest
    assert m1["llm"]["calls"] > 0 and m1["llm"]["prompt_tokens"] > 0
    page_fallbacks = sum(
        v for k, v in m1["fallbacks"].items() if k not in ("interview_failed", "reflection_failed")
    )
    pages = ev.drop_duplicates("slate_id")
    assert page_fallbacks == (pages.decided_by == "fallback:utility").sum()
    # same seed and config: every answer comes from the cache, the Parquet is identical
    second = simrec.run(config(tmp_path / "b"))
    assert second.manifest["llm"]["calls"] == 0
    assert second.manifest["llm"]["cache_hits"] == m1["llm"]["cache_misses"]
    assert _parts(first.run_dir) == _parts(second.run_dir)
    # the post-run interviews: the embedded model rates the service 1-10 and says why
    iv = pq.read_table(first.run_dir / "interviews.parquet").to_pandas()
    assert len(iv) > 0 and iv.score.dropna().between(1, 10).all()
    assert (iv.score.notna() | iv.error.notna()).all()
    assert (first.run_dir / "interviews.parquet").read_bytes() == (
        second.run_dir / "interviews.parquet"
    ).read_bytes()
    assert "interviews" in m1["outputs"]
    # reflections by the embedded model (or the template note where its answer was unusable)
    refl = pq.read_table(first.run_dir / "reflections.parquet").to_pandas()
    assert len(refl) > 0 and refl.note.str.startswith("About my taste: ").all()
    assert set(refl.source) <= {"SmolLM2-135M-Instruct-Q4_1", "template"}
    assert m1["memory"]["reflections"] >= len(refl)
    assert (first.run_dir / "reflections.parquet").read_bytes() == (
        second.run_dir / "reflections.parquet"
    ).read_bytes()


@pytest.mark.slow
def test_openai_backend_run_against_the_llama_cpp_server(tmp_path, llama_server):
    cfg = llm_config(
        tmp_path / "s", tmp_path / "c.sqlite", backend="openai:smollm2", base_url=llama_server
    )
    res = simrec.run(cfg)
    ev = res.events()
    assert (ev.decided_by == "llm:smollm2").any()
    assert res.manifest["llm"]["model"] == "smollm2" and res.manifest["llm"]["calls"] > 0


FAULTS = ["malformed", "truncated", "500", "nonsense", "wrong_schema"]


def test_faulty_answers_fall_back_and_every_event_is_logged(tmp_path, monkeypatch):
    """Every third page gets a broken answer: those pages are decided by the statistical
    brain, counted by cause in the manifest, and the run logs every impression."""
    calls = {"n": 0}

    def handler(request):
        body = json.loads(request.content)
        calls["n"] += 1
        fault = FAULTS[calls["n"] % len(FAULTS)] if calls["n"] % 3 == 0 else None
        good = {
            "watch": [1],
            "ratings": [4],
            "next": "next_page",
            "feeling": "satisfied",
            "reason": "looks good",
        }
        content, finish = json.dumps(good), "stop"
        if fault == "500":
            return httpx2.Response(500, json={"error": {"message": "boom"}})
        if fault == "malformed":
            content = "{watch: [1"
        elif fault == "truncated":
            content, finish = '{"watch": [1], "ratings": [', "length"
        elif fault == "nonsense":
            content = json.dumps({**good, "watch": [1, 2], "ratings": [4]})
        elif fault == "wrong_schema":
            content = json.dumps({**good, "feeling": "ecstatic"})
        assert body["max_tokens"] == 120 and body["response_format"]["type"] == "json_object"
        return completion(content, finish, 50, 20)

    serve(monkeypatch, handler)
    cfg = llm_config(
        tmp_path / "f",
        tmp_path / "c.sqlite",
        backend="openai:fake",
        base_url="http://127.0.0.1:9/v1",
        response_format="json_object",
        max_retries=0,
    )
    cfg["population"] = {"users": 60}
    res = simrec.run(cfg)
    ev = res.events()
    pages = ev.drop_duplicates("slate_id")
    fallbacks = res.manifest["fallbacks"]
    assert (pages.decided_by == "fallback:utility").sum() == sum(fallbacks.values()) > 0
    assert set(fallbacks) <= {
        "malformed_json",
        "truncated",
        "backend_error",
        "nonsense_ratings",
        "nonsense_positions",
        "schema_invalid",
    }
    assert len(fallbacks) >= 3
    # every impression of every page is logged, decided one way or the other
    assert len(ev) == res.counts["impressions"] == pages.shape[0] * 4 - (ev.item_id.isna().sum())
    llm_pages = pages[pages.decided_by == "llm:fake"]
    assert (llm_pages.feeling == "satisfied").all()
    watched = ev[(ev.decided_by == "llm:fake") & ev.clicked]
    assert (watched.position == 0).all() and (watched.rating == 4).all()
    assert pq.read_table(res.run_dir / "events").num_rows == len(ev)


def test_hybrid_brain_keeps_statistical_decisions_and_narrates_a_sample(tmp_path, monkeypatch):
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append(body)
        assert set(body["response_format"]["schema"]["properties"]) == {"feeling", "reason"}
        answer = {"feeling": "bored", "reason": "nothing new"}
        if len(seen) % 4 == 0:
            answer = {"feeling": "furious", "reason": "x"}  # not an allowed feeling
        return completion(json.dumps(answer), "stop", 40, 9)

    serve(monkeypatch, handler)
    base = llm_config(tmp_path / "u", tmp_path / "c.sqlite")
    base["brain"]["name"] = "utility"
    base["population"] = {"users": 80}
    plain = simrec.run(base)
    hybrid_cfg = llm_config(
        tmp_path / "h",
        tmp_path / "c.sqlite",
        backend="openai:fake",
        base_url="http://127.0.0.1:9/v1",
        narrate_fraction=0.5,
    )
    hybrid_cfg["brain"]["name"] = "hybrid"
    hybrid_cfg["population"] = {"users": 80}
    hybrid = simrec.run(hybrid_cfg)
    cols = ["user_id", "page", "position", "item_id", "examined", "clicked", "rating"]
    a, b = plain.events(), hybrid.events()
    pd.testing.assert_frame_equal(a[cols], b[cols])  # decisions untouched
    pages = b.drop_duplicates("slate_id")
    narrated = pages[pages.llm_model.notna()]
    assert 0.3 < len(narrated) / len(pages) < 0.7 and len(seen) == len(narrated)
    good = narrated[narrated.reason.notna()]
    assert (good.feeling == "bored").all() and (good.reason == "nothing new").all()
    failed = hybrid.manifest["fallbacks"]["narration_failed"]
    assert failed == len(narrated) - len(good) > 0
    assert hybrid.manifest["llm"]["prompt_tokens"] == 40 * len(narrated)


def test_interviews_are_written_and_failures_counted(tmp_path, monkeypatch):
    asked = []

    def handler(request):
        body = json.loads(request.content)
        question = body["messages"][1]["content"]
        if "rate the service" in question:
            asked.append(question)
            answer = {"score": 7, "reason": "decent picks"}
            if len(asked) % 3 == 0:
                answer = {"score": 11, "reason": "off the scale"}  # schema-invalid
        else:
            answer = {
                "watch": [],
                "ratings": [],
                "next": "leave",
                "feeling": "neutral",
                "reason": "nothing for me",
            }
        return completion(json.dumps(answer), "stop", 30, 8)

    serve(monkeypatch, handler)
    cfg = llm_config(
        tmp_path / "i",
        tmp_path / "c.sqlite",
        backend="openai:fake",
        base_url="http://127.0.0.1:9/v1",
        interview_fraction=1.0,
    )
    cfg["population"] = {"users": 60}
    res = simrec.run(cfg)
    iv = pq.read_table(res.run_dir / "interviews.parquet").to_pandas()
    had_session = res.events().user_id.unique()
    assert sorted(iv.user_id) == sorted(had_session) and len(asked) == len(iv)
    ok = iv[iv.score.notna()]
    assert (ok.score == 7).all() and (ok.reason == "decent picks").all()
    assert res.manifest["fallbacks"]["interview_failed"] == iv.score.isna().sum() > 0
    assert iv[iv.score.isna()].error.str.startswith("schema_invalid").all()
