"""LLM sides of simrec converse: the llm user and the LLM CRS with scripted backends (title
resolution, fallbacks by cause, a user that names its target), and SmolLM2 as both over a real
llama.cpp server on loopback (the pipeline and its cached replay, not the quality)."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

import simrec
from simrec.cli import main
from simrec.conversation.llm import LLMCRS
from simrec.llm.base import ChatResult, ErrorKind
from simrec.testing import FakeBackend

from .conftest import small_config
from .test_converse import tiny  # noqa: F401  (the fixture)


def _crs_answer(req):
    """A CRS that always proposes two real titles (one without its year, one with a trailing
    article moved) and one that is not in the catalog."""
    return {"message": "Try these.", "titles": ["Toy Story", "The Fargo", "No Such Film (1999)"]}


def _user_answer(req):
    system, user = req.messages[0]["content"], req.messages[-1]["content"]
    target = re.search(r'in mind: "([^"]+)"', system).group(1)
    props = req.json_schema["properties"]
    if "rating" in props:
        return {"rating": 7, "reason": "It took a while."}
    if "verdicts" not in props:
        if "Casablanca" in target:  # this user gives its target away: the agenda answers
            return {"utterance": "I want Casablanca."}
        return {"utterance": "Something I would enjoy, please."}
    shown = re.findall(r'^\d+\. "([^"]+)"$', user, re.M)
    verdicts = ["accept" if t == target else "reject" for t in shown]
    if "Fargo" in target:
        return ChatResult(error="timed out", error_kind=ErrorKind.TIMEOUT)
    return {"verdicts": verdicts, "utterance": "Not quite.", "action": "continue"}


def test_llm_user_and_llm_crs_with_scripted_backends(tiny, tmp_path):  # noqa: F811
    user_backend, crs_backend = FakeBackend(_user_answer), FakeBackend(_crs_answer)
    crs = LLMCRS(crs_backend, "fake-crs")
    res = simrec.converse(
        tiny,
        {"L": crs},
        users=3,
        turns=3,
        cutoff=0.75,
        out=tmp_path / "c",
        user_brain="llm",
        backend=user_backend,
    )
    c = res.conversations
    crs_rows = c[c.speaker == "crs"]
    # "Toy Story" and "The Fargo" resolve to items 1 and 7; the third title matches nothing
    assert all(list(ids) == [1, 7] for ids in crs_rows.item_ids)
    assert crs_rows.prompt_hash.notna().all() and (crs_rows.decided_by == "fake-crs").all()
    comp = res.comparison.iloc[0]
    assert comp.unresolved_title_rate == pytest.approx(1 / 3)
    # user 1 (Toy Story) accepts it at turn 1; user 2's LLM times out (the agenda answers
    # and accepts Fargo); user 3 names Casablanca in its opening (the agenda opens instead)
    first = c[(c.conversation == 0) & (c.speaker == "user")]
    assert list(first.decided_by) == ["llm", "llm"] and list(first.verdicts.iloc[1]) == [
        "accept",
        "reject",
    ]
    assert first.prompt_hash.notna().all() and (first.prompt_tokens > 0).all()
    second = c[(c.conversation == 1) & (c.speaker == "user")]
    assert list(second.decided_by) == ["llm", "fallback:agenda"]
    third = c[(c.conversation == 2) & (c.speaker == "user")]
    assert third.decided_by.iloc[0] == "fallback:agenda"
    assert "Casablanca" not in third.text.iloc[0]
    stats = res.manifest["llm"]["L"]
    assert stats["user"]["fallbacks"] == {"named_target": 1, "timeout": 1}
    assert stats["crs"]["unresolved_titles"] == stats["crs"]["titles"] // 3
    assert res.manifest["outcomes"]["L"] == {"accepted": 2, "left": 1}
    # the closing ratings came from the LLM user: 7 for everyone
    assert comp.closing_rating == 7
    # every quoted thing the CRS said reached the user as a quoted JSON string
    asked = [r.messages[-1]["content"] for r in user_backend.requests]
    assert any(json.dumps("Try these.") in a for a in asked)


@pytest.mark.slow
def test_smollm2_as_user_and_crs_then_cached_replay(tiny, tmp_path, llama_server):  # noqa: F811
    """The whole LLM pipeline over a real llama.cpp server: both sides answer (or fall back,
    counted), the rows carry prompt hashes and tokens, and a rerun replays the cache with no
    calls and the same bytes."""
    cache = tmp_path / "cache.sqlite"
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["converse", "--data", tiny["data"]["path"], "--cutoff", "0.75"]
        args += ["--crs", "S=openai:smollm2", "--crs-base-url", llama_server]
        args += ["--user-brain", "llm", "--llm", "openai:smollm2", "--base-url", llama_server]
        args += ["--llm-cache", str(cache), "--users", "3", "--turns", "2", "--out", str(out)]
        assert main(args + ["--quiet"]) == 0
        outs.append(out)
    m = [json.loads((o / "manifest.json").read_text()) for o in outs]
    assert m[0]["llm"]["S"]["user"]["calls"] > 0 and m[0]["user_cache"]["misses"] > 0
    assert m[1]["user_cache"]["misses"] == 0 and m[1]["llm"]["S"]["crs"]["cache"]["misses"] == 0
    conv = pq.read_table(outs[0] / "conversations.parquet").to_pandas()
    assert conv[conv.speaker == "crs"].prompt_hash.notna().all()
    for f in ("conversations.parquet", "crs_metrics.parquet", "crs_comparison.parquet"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()


def test_dialogues_export_as_a_chat_corpus(tiny, tmp_path, capsys):  # noqa: F811
    """simrec export --to hf-chat: one line per conversation, messages with the simulated
    user as user and the CRS as assistant, the persona and the target as metadata."""
    res = simrec.converse(
        tiny,
        {"L": LLMCRS(FakeBackend(_crs_answer), "fake-crs")},
        users=3,
        turns=3,
        cutoff=0.75,
        out=tmp_path / "c",
        user_brain="llm",
        backend=FakeBackend(_user_answer),
    )
    out = tmp_path / "chat"
    assert main(["export", str(res.out_dir), "--to", "hf-chat", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    first = lines[0]
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert first["messages"][1]["content"] == "Try these."
    meta = first["metadata"]
    assert meta["target_title"] == "Toy Story (1995)" and meta["success"] is True
    assert meta["persona"] and meta["recommended"] == [[1, 7]]
    assert [x["metadata"]["success"] for x in lines] == [True, True, False]
    assert meta["closing_rating"] == 7 and meta["closing_reason"] == "It took a while."
    assert "dialogues.jsonl" in (out / "README.md").read_text()
    # a simulation run is not a conversation run
    capsys.readouterr()
    run = simrec.run(small_config(tmp_path / "run", ticks=1)).run_dir
    assert main(["export", str(run), "--to", "hf-chat"]) == 2
    assert "exports the output of simrec converse" in capsys.readouterr().err


CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import simrec
from simrec.llm.cache import CachedBackend
from simrec.testing import FakeBackend
from tests.test_converse_llm import _user_answer
calls = [0]
def answer(req):
    calls[0] += 1
    if calls[0] == 5:  # inside the second batch: the openings are cached, nothing else
        os.kill(os.getpid(), signal.SIGKILL)
    return _user_answer(req)
data, out, cache = sys.argv[2:5]
simrec.converse({"data": {"path": data, "format": "movielens-latest"}}, ["builtin"], users=3,
                turns=3, cutoff=0.75, out=out, user_brain="llm",
                backend=CachedBackend(FakeBackend(answer), cache))
"""


def test_a_killed_llm_conversation_run_reruns_from_the_cache(tiny, tmp_path):  # noqa: F811
    """SIGKILL mid-run leaves no manifest; the same command again replays what was answered
    from the response cache (no second call for it) and writes the uninterrupted bytes."""
    import subprocess
    import sys
    from pathlib import Path

    from simrec.llm.cache import CachedBackend

    files = ("conversations.parquet", "crs_metrics.parquet", "crs_comparison.parquet")
    kwargs = {"users": 3, "turns": 3, "cutoff": 0.75, "user_brain": "llm"}
    ref = simrec.converse(
        tiny, ["builtin"], out=tmp_path / "ref", backend=FakeBackend(_user_answer), **kwargs
    )
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, str(child), root, tiny["data"]["path"], str(out), str(cache)],
        capture_output=True,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (out / "manifest.json").exists()
    fresh = FakeBackend(_user_answer)
    res = simrec.converse(tiny, ["builtin"], out=out, backend=CachedBackend(fresh, cache), **kwargs)
    assert res.manifest["user_cache"]["hits"] == 3  # the three openings
    assert len(fresh.requests) == ref.manifest["llm"]["builtin"]["user"]["calls"] - 3
    for f in files:
        assert (out / f).read_bytes() == (ref.out_dir / f).read_bytes()


def test_conversation_report(tiny, tmp_path):  # noqa: F811
    res = simrec.converse(
        tiny, ["A=builtin", "B=builtin:itemknn"], users=3, turns=3, cutoff=0.75, out=tmp_path / "c"
    )
    assert main(["report", str(res.out_dir)]) == 0
    page = (res.out_dir / "report" / "report.html").read_text()
    assert "Success and Recall@10 by turn" in page and "A: a success" in page
    assert (res.out_dir / "report" / "by_turn.png").stat().st_size > 1000


def test_crs_server_faults_below_the_client_are_counted(tiny, tmp_path, monkeypatch):  # noqa: F811
    """An openai:MODEL CRS behind a server (MockTransport below the real client) that fails in
    three ways: every fault ends in an empty reply for that turn, counted by cause, and the
    conversations go on."""
    import httpx2

    from .conftest import completion, serve

    def handler(request):
        transcript = json.loads(request.content)["messages"][-1]["content"]
        if "Animation" in transcript:
            return httpx2.Response(500, json={"error": {"message": "boom"}})
        if "Comedy" in transcript:
            return completion('{"message": "Try", "titles": ["Fargo"')  # cut JSON
        if "Drama" in transcript:
            return completion('{"message": "Try', finish="length")
        return completion(json.dumps({"message": "Try", "titles": ["Fargo"]}))

    serve(monkeypatch, handler)
    cfg = {**tiny, "llm": {"max_retries": 0, "cache": None}}
    res = simrec.converse(
        cfg,
        ["M=openai:m"],
        users=3,
        turns=2,
        cutoff=0.75,
        out=tmp_path / "f",
        crs_base_url="http://127.0.0.1:9/v1",
    )
    crs = res.manifest["llm"]["M"]["crs"]
    assert crs["fallbacks"] == {"malformed_json": 2, "server": 2, "truncated": 2}
    c = res.conversations
    assert (c[c.speaker == "crs"].item_ids.map(len) == 0).all()
    assert res.manifest["outcomes"]["M"] == {"left": 3}
