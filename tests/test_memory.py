"""Episodic memory: bounded stream, exact recency decay, importance, relevance from offline
embeddings, reflections (LLM-written, template fallback), prompts, determinism and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import types

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

import simrec
from simrec.agents.embeddings import ItemEmbedding, make_embedding
from simrec.agents.memory import EpisodicMemory
from simrec.cli import main
from simrec.data.dataset import Catalog, RatingScale
from simrec.errors import ConfigError

from .conftest import completion, serve, small_config

SCALE = RatingScale(1.0, 5.0, 1.0)
GENRES = ["Horror", "Comedy", "Drama"]


def _catalog(genre_of: list[int]) -> Catalog:
    n = len(genre_of)
    g = sp.csr_matrix((np.ones(n, bool), (np.arange(n), genre_of)), shape=(n, len(GENRES)))
    return Catalog(
        item_ids=np.arange(n),
        titles=np.array([f"Film {i}" for i in range(n)], dtype=object),
        genre_names=GENRES,
        genres=g,
        text=np.array([""] * n, dtype=object),
    )


def _write(mem, tick, agents, kinds, items, importance, ratings=None):
    n = len(agents)
    mem.write(
        tick,
        np.asarray(agents, np.int64),
        np.asarray(kinds),
        np.asarray(items),
        np.full(n, np.nan) if ratings is None else np.asarray(ratings, float),
        np.asarray(importance, float),
        np.full(n, -1),
    )


def _identity_embedding(n: int) -> ItemEmbedding:
    return ItemEmbedding(sp.identity(n, format="csr", dtype=np.float32), "identity")


def test_full_memory_keeps_the_most_important_recent_entries():
    mem = EpisodicMemory(2, _identity_embedding(20), capacity=4, half_life=1.0)
    _write(mem, 0, [0] * 4, [1, 0, 1, 0], [0, 1, 2, 3], [0.9, 0.1, 0.5, 0.1])
    # a tick later: importance x 2**-1 for the old ones (0.45, 0.05, 0.25, 0.05)
    _write(mem, 1, [0, 0, 1], [1, 0, 1], [4, 5, 6], [0.3, 0.05, 0.6])
    kept = sorted(mem.item[0][mem.kind[0] >= 0].tolist())
    # 0.45 (item 0), 0.3 (4), 0.25 (2) and, of the three tied at 0.05, the newest (5)
    assert kept == [0, 2, 4, 5]
    assert mem.item[1][mem.kind[1] >= 0].tolist() == [6]
    assert mem.written.tolist() == [6, 1]
    # skipped recommendations do not count towards a reflection; watched/felt/shared do
    assert mem.pending.tolist() == [3, 1]


def test_recency_is_an_exact_exponential_decay_and_importance_breaks_ties():
    mem = EpisodicMemory(1, _identity_embedding(10), capacity=8, half_life=3.0)
    for t in range(4):
        _write(mem, t, [0], [1], [t], [0.5])
    got = mem.retrieve(0, 9, None, 10)
    assert [e["item"] for e in got] == [3, 2, 1, 0]
    for e in got:
        assert e["recency"] == pytest.approx(2 ** (-(9 - e["tick"]) / 3.0), rel=1e-12)
        assert e["score"] == pytest.approx(e["recency"] + 0.5, rel=1e-12)
    mem2 = EpisodicMemory(1, _identity_embedding(10), capacity=8, weights=(0, 1, 0))
    _write(mem2, 0, [0, 0, 0], [0, 1, 3], [7, 8, 9], [0.1, 0.7, 0.9])
    assert [e["item"] for e in mem2.retrieve(0, 5, None, 2)] == [9, 8]


def test_relevance_brings_up_memories_like_the_page():
    cat = _catalog([0, 0, 0, 1, 1, 1, 2, 2, 2])  # Horror 0-2, Comedy 3-5, Drama 6-8
    emb = make_embedding("tfidf", cat)
    mem = EpisodicMemory(1, emb, capacity=8, weights=(0, 0, 1))
    _write(mem, 0, [0, 0, 0], [1, 1, 1], [0, 3, 6], [0.5, 0.5, 0.5])
    assert mem.retrieve(0, 1, np.array([1, 2, -1]), 1)[0]["item"] == 0  # a Horror page
    assert mem.retrieve(0, 1, np.array([7]), 1)[0]["item"] == 6  # a Drama page
    top = mem.retrieve(0, 1, np.array([4, 5]), 3)
    assert top[0]["item"] == 3 and top[0]["relevance"] == pytest.approx(1.0)
    assert top[1]["relevance"] == 0.0
    # default = TF-IDF and the brain's item vectors, a cosine the mean of the two
    factors = np.eye(9, 4, dtype=np.float32)
    both = make_embedding("default", cat, factors).relevance(np.array([0]), np.array([0]))
    assert both[0] == pytest.approx(1.0, rel=1e-6)
    half = make_embedding("default", cat, factors).relevance(np.array([0]), np.array([1]))
    assert half[0] == pytest.approx(0.5, rel=1e-6)  # same genre, orthogonal item vectors


def test_template_note_reads_the_memory():
    cat = _catalog([0, 0, 1, 1, 2, 2])
    mem = EpisodicMemory(1, make_embedding("tfidf", cat), capacity=16)
    _write(mem, 0, [0] * 4, [1] * 4, [0, 1, 2, 3], [0.7] * 4, ratings=[5, 5, 1, 2])
    _write(mem, 0, [0] * 3, [0] * 3, [4, 5, 3], [0.1] * 3)
    note = mem.template_note(0, cat.genre_names, cat.genres, SCALE)
    assert "I enjoy Horror" in note and "Comedy tends to disappoint me" in note
    assert "About 57% of what it shows me is worth watching" in note  # 4 of 7
    assert "it keeps suggesting Drama I pass on" in note


def test_state_round_trips(tmp_path):
    mem = EpisodicMemory(3, _identity_embedding(10), capacity=4, reflect_every=2)
    _write(mem, 2, [0, 1, 1, 2], [1, 3, 2, 0], [1, 2, 3, 4], [0.5, 0.9, 0.8, 0.1])
    due = mem.due()
    assert due.tolist() == [1]
    mem.set_notes(due, ["I like Film 2 — très bien"], ["fake"], 2)
    np.savez(tmp_path / "s.npz", **mem.state())
    other = EpisodicMemory(3, _identity_embedding(10), capacity=4, reflect_every=2)
    other.load_state(dict(np.load(tmp_path / "s.npz")))
    for k in ("kind", "item", "tick", "rating", "importance", "pending", "reflections"):
        np.testing.assert_array_equal(getattr(other, k), getattr(mem, k))
    assert other.notes == mem.notes and other.note_source == mem.note_source
    assert other.due().size == 0


def test_bad_embedding_specs_are_config_errors(tmp_path, monkeypatch, capsys):
    cat = _catalog([0, 1])
    with pytest.raises(ConfigError, match="memory.embedding: expected one of"):
        make_embedding("glove", cat)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not installed
    with pytest.raises(ConfigError, match="needs the sentence-transformers package"):
        make_embedding("sentence:all-MiniLM-L6-v2", cat)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("memory:\n  embedding: glove\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "memory.embedding" in err and "glove" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_sentence_model_embeddings_are_used_when_installed(monkeypatch):
    """A stand-in for the sentence-transformers package (a test double at the library
    boundary: no model can be downloaded here) checks the plumbing: texts in, normalised
    vectors out, loaded from disk only."""
    calls = {}

    class FakeModel:
        def __init__(self, name, device=None, local_files_only=False):
            calls["init"] = (name, device, local_files_only)

        def encode(self, texts, batch_size=32, normalize_embeddings=False, convert_to_numpy=True):
            calls["texts"], calls["normalize"] = list(texts), normalize_embeddings
            return np.array([[1.0, 0.0] if "Horror" in t else [0.0, 1.0] for t in texts])

    monkeypatch.setitem(
        sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=FakeModel)
    )
    emb = make_embedding("sentence:/models/mini", _catalog([0, 1, 0]))
    assert calls["init"] == ("/models/mini", "cpu", True) and calls["normalize"] is True
    assert calls["texts"][0] == "Film 0. Horror"
    assert emb.relevance(np.array([0, 1]), np.array([2])).tolist() == [1.0, 0.0]


# ------------------------------------------------------------------ in a run (mock server)


def _answers(request):
    """Answers by the schema asked for: reflections, interviews, pages."""
    body = json.loads(request.content)
    props = set(body["response_format"]["schema"]["properties"])
    if "taste" in props:
        user = body["messages"][1]["content"]
        if len(user) % 3 == 0:  # some reflections come back unusable
            ans = {"taste": "", "service": "x"}
        else:
            ans = {"taste": "I like dark films.", "service": "It shows me too much comedy."}
    elif "score" in props:
        ans = {"score": 6, "reason": "fine"}
    else:
        ans = {
            "watch": [1],
            "ratings": [4],
            "next": "next_page",
            "feeling": "annoyed",
            "reason": "meh",
        }
    return completion(json.dumps(ans), "stop", 30, 8)


def _memory_config(out, cache, **sim):
    cfg = small_config(out, ticks=20, checkpoint_every=8, page_size=4, max_pages=2, **sim)
    cfg["data"]["synthetic"].update(users=40, items=60)
    cfg["population"] = {"users": 30}
    cfg["brain"]["name"] = "llm"
    cfg["llm"] = {
        "backend": "openai:fake",
        "base_url": "http://127.0.0.1:9/v1",
        "cache": str(cache),
        "interview_fraction": 0.0,
        "max_retries": 0,
    }
    cfg["memory"] = {"reflect_every": 4, "retrieve": 4}
    return cfg


def _outputs(run_dir) -> dict[str, bytes]:
    files = sorted((run_dir / "events").glob("part-*.parquet"))
    files += [run_dir / n for n in ("users.parquet", "metrics.parquet", "reflections.parquet")]
    return {f.name: f.read_bytes() for f in files}


def test_run_retrieves_memories_into_prompts_and_reflects(tmp_path, monkeypatch):
    seen = []

    def handler(request):
        seen.append(json.loads(request.content)["messages"][1]["content"])
        return _answers(request)

    serve(monkeypatch, handler)
    res = simrec.run(_memory_config(tmp_path / "a", tmp_path / "c.sqlite"))
    pages = [p for p in seen if p.startswith("What you remember:")]
    reflect = [p for p in seen if p.startswith("Your memories of using")]
    assert reflect and all("- nothing yet" not in p for p in reflect)
    # the first tick knows nothing; later pages carry up to 4 memories and, once an agent
    # has reflected, its note
    assert "- nothing yet" in pages[0]
    later = [p for p in pages if "- nothing yet" not in p]
    assert later and max(p.count("\n- ") for p in later) == 4
    noted = [p for p in pages if 'What you have learned so far: "About my taste:' in p]
    assert noted and any("I like dark films." in p for p in noted)
    m = res.manifest
    refl = pq.read_table(res.run_dir / "reflections.parquet").to_pandas()
    assert m["outputs"]["reflections"] == "reflections.parquet"
    assert m["memory"]["reflections"] == len(reflect)
    assert len(refl) == m["memory"]["agents_with_reflection"] > 0
    assert set(refl.source) <= {"fake", "template"}
    failed = m["fallbacks"].get("reflection_failed", 0)
    assert failed > 0 and (refl.source == "template").sum() <= failed
    tmpl = refl[refl.source == "template"]
    assert tmpl.note.str.startswith("About my taste: ").all()
    llm = refl[refl.source == "fake"]
    assert (
        llm.note == "About my taste: I like dark films. About this service: "
        "It shows me too much comedy."
    ).all()
    assert (refl.memory_entries <= 64).all() and (refl.memories_written >= 4).all()
    # the same run again replays every answer (memory and reflections included) from the cache
    again = simrec.run(_memory_config(tmp_path / "b", tmp_path / "c.sqlite"))
    assert again.manifest["llm"]["calls"] == 0
    assert _outputs(res.run_dir) == _outputs(again.run_dir)


def test_memory_does_not_depend_on_batch_size(tmp_path, monkeypatch):
    serve(monkeypatch, _answers)
    a = simrec.run(_memory_config(tmp_path / "a", tmp_path / "a.sqlite", batch_size=7))
    b = simrec.run(_memory_config(tmp_path / "b", tmp_path / "b.sqlite", batch_size=4096))
    assert _outputs(a.run_dir) == _outputs(b.run_dir)
    assert a.manifest["memory"] == b.manifest["memory"]


def test_template_reflections_make_no_model_calls(tmp_path, monkeypatch, mllatest):
    """On MovieLens-format data, with reflections written from memory alone."""
    asked = []

    def handler(request):
        asked.append(set(json.loads(request.content)["response_format"]["schema"]["properties"]))
        return _answers(request)

    serve(monkeypatch, handler)
    cfg = _memory_config(tmp_path / "t", tmp_path / "c.sqlite")
    cfg["data"] = {"format": "movielens-latest", "path": str(mllatest)}
    cfg["memory"].update(reflect_with="template", embedding="tfidf")
    res = simrec.run(cfg)
    assert asked and not any("taste" in a for a in asked)
    refl = pq.read_table(res.run_dir / "reflections.parquet").to_pandas()
    assert len(refl) > 0 and (refl.source == "template").all()
    assert refl.note.str.contains("About this service: About ").all()
    assert res.manifest["memory"]["embedding"] == "tfidf"


CHILD = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[3])
import simrec.simulator.resume as resume
import simrec.simulator.runner as runner
original, calls = resume.save_checkpoint, [0]
def killing(*a, **k):
    original(*a, **k)
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
resume.save_checkpoint = killing
runner.run(json.loads(open(sys.argv[1]).read()))
"""


@pytest.mark.slow
def test_killed_llm_run_resumes_with_its_memory(tmp_path, monkeypatch):
    """The reference run fills the response cache; the killed run and its resume must ask
    exactly the same prompts (so memory and notes came back from the checkpoint) and so
    replay from the cache into identical files. The fake server is unreachable there: any
    prompt that differs becomes a fallback and the files differ."""
    serve(monkeypatch, _answers)
    cache = tmp_path / "c.sqlite"
    ref = simrec.run(_memory_config(tmp_path / "ref", cache))
    monkeypatch.undo()  # from here on http://127.0.0.1:9/v1 is unreachable: only the cache answers
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(_memory_config(out, cache)))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(child), str(cfg), "2", str(tmp_path)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    resume = ["run", "--resume", str(out), "--quiet", "--llm-cache", str(cache)]
    assert main(resume) == 2  # the server is never taken from the run directory
    assert main([*resume, "--base-url", "http://127.0.0.1:9/v1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from_tick"] == 16 and manifest["llm"]["calls"] == 0
    # counters and memory carried over the checkpoint: the manifest counts the whole run
    assert manifest["fallbacks"] == ref.manifest["fallbacks"]
    assert manifest["llm"]["prompt_tokens"] == ref.manifest["llm"]["prompt_tokens"]
    assert manifest["memory"] == ref.manifest["memory"]
    assert _outputs(out) == _outputs(ref.run_dir)
