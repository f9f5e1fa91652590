"""LLM backends: a real llama.cpp server on loopback, the embedded model in-process, the cache,
and HTTP faults injected below the client with httpx2.MockTransport."""

from __future__ import annotations

import json

import pytest

httpx2 = pytest.importorskip("httpx2")
pytest.importorskip("openai")

from simrec.errors import ConfigError  # noqa: E402
from simrec.llm import CachedBackend, ChatRequest, make_backend  # noqa: E402
from simrec.llm.openai_backend import OpenAIBackend  # noqa: E402

from .conftest import completion_body  # noqa: E402

# maxItems matters: without it the 135M model, constrained to the schema's grammar, loops
# "1, 2, 3, 1, 2, 3, ..." until max_tokens (seen in-process); schemas must bound every array
SCHEMA = {
    "type": "object",
    "properties": {
        "watch": {"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "maxItems": 3},
        "feeling": {"type": "string", "enum": ["happy", "bored", "curious"]},
    },
    "required": ["watch", "feeling"],
}


def _request(i: int = 0, max_tokens: int = 60) -> ChatRequest:
    return ChatRequest(
        messages=(
            {"role": "system", "content": "You are a movie fan. Answer in JSON."},
            {"role": "user", "content": f"Page {i}: 1. Alien 2. Heat 3. Up. Which do you watch?"},
        ),
        max_tokens=max_tokens,
        json_schema=SCHEMA,
        seed=i,
    )


def _backend(handler, **kw) -> OpenAIBackend:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OpenAIBackend(
        "m",
        base_url="http://127.0.0.1:9/v1",
        http_client=client,
        response_format="json_object",
        timeout=2.0,
        **kw,
    )


GOOD = json.dumps({"watch": [1, 3], "feeling": "happy"})


def test_valid_answers_are_parsed_in_order():
    def handler(request):
        body = json.loads(request.content)
        assert body["max_tokens"] == 60 and body["response_format"]["type"] == "json_object"
        assert body["response_format"]["schema"] == SCHEMA
        page = int(body["messages"][1]["content"].split()[1].rstrip(":"))
        answer = json.dumps({"watch": [page % 3 + 1], "feeling": "happy"})
        return httpx2.Response(200, json=completion_body(answer, "stop", 11, 7))

    b = _backend(handler, concurrency=3)
    results = b.complete([_request(i) for i in range(7)])
    assert [r.parsed["watch"] for r in results] == [[i % 3 + 1] for i in range(7)]
    assert all(r.ok and r.prompt_tokens == 11 and r.completion_tokens == 7 for r in results)
    assert b.prompt_tokens == 77


@pytest.mark.parametrize(
    "fault,expect",
    [
        ("429", "RateLimitError"),
        ("500", "InternalServerError"),
        ("reset", "APIConnectionError"),
        ("timeout", "APITimeoutError"),
        ("malformed", "malformed JSON"),
        ("truncated", "truncated at max_tokens=60"),
    ],
)
def test_faults_become_errors_not_exceptions(fault, expect):
    calls = []

    def handler(request):
        calls.append(1)
        page = json.loads(request.content)["messages"][1]["content"]
        if "Page 1:" not in page:  # only the second request is faulty
            return httpx2.Response(200, json=completion_body(GOOD))
        if fault in ("429", "500"):
            return httpx2.Response(int(fault), json={"error": {"message": "busy"}})
        if fault == "reset":
            raise httpx2.ConnectError("connection reset by peer")
        if fault == "timeout":
            raise httpx2.ReadTimeout("timed out")
        if fault == "malformed":
            return httpx2.Response(200, json=completion_body("{watch: [1,"))
        return httpx2.Response(200, json=completion_body('{"watch": [1', finish="length"))

    b = _backend(handler, max_retries=1)
    results = b.complete([_request(0), _request(1), _request(2)])
    assert results[0].ok and results[2].ok
    assert not results[1].ok and expect in results[1].error
    if fault in ("429", "500", "reset", "timeout"):
        assert len(calls) == 4  # the faulty request was retried once by the client


def test_cache_replays_without_calling_the_model(tmp_path):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx2.Response(200, json=completion_body(GOOD))

    first = CachedBackend(_backend(handler), tmp_path / "cache.sqlite")
    a = first.complete([_request(i) for i in range(4)])
    first.close()
    assert len(calls) == 4
    again = CachedBackend(_backend(handler), tmp_path / "cache.sqlite")
    b = again.complete([_request(i) for i in range(4)] + [_request(9)])
    assert len(calls) == 5 and again.hits == 4 and again.misses == 1
    assert [r.text for r in a] == [r.text for r in b[:4]] and all(r.cached for r in b[:4])
    # an unusable answer is the model's output for that seed: replayed with the same error
    bad = CachedBackend(
        _backend(lambda r: (calls.append(1), httpx2.Response(200, json=completion_body("{x")))[1]),
        tmp_path / "c3.sqlite",
    )
    before = len(calls)
    first_bad = bad.complete([_request(0)])[0]
    replay = bad.complete([_request(0)])[0]
    assert len(calls) == before + 1 and replay.cached and replay.error == first_bad.error
    # transport failures are not cached: they are retried on the next run
    fail = CachedBackend(_backend(lambda r: httpx2.Response(500)), tmp_path / "c2.sqlite")
    assert not fail.complete([_request(0)])[0].ok


def test_api_key_only_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    b = OpenAIBackend("gpt-4o-mini")
    assert "sk-secret" not in repr(b) and "sk-secret" not in str(vars(b).get("name"))
    with pytest.raises(ConfigError, match="openai:MODEL, vllm:MODEL or local"):
        make_backend("anthropic:claude")


# ---------------------------------------------------------------------------- the real thing


@pytest.mark.slow
def test_openai_backend_against_a_real_llama_cpp_server(llama_server):
    b = OpenAIBackend("smollm2", base_url=llama_server, concurrency=2, timeout=120)
    results = b.complete([_request(i, max_tokens=80) for i in range(3)])
    assert b._formats == ["json_object"]  # auto-detected: not a vLLM server
    for r in results:
        assert r.ok, r.error
        assert set(r.parsed) >= {"watch", "feeling"}
        assert set(r.parsed["watch"]) <= {1, 2, 3} and r.parsed["feeling"] in (
            "happy",
            "bored",
            "curious",
        )
        assert r.prompt_tokens > 0 and r.completion_tokens > 0


@pytest.mark.slow
def test_local_backend_in_process():
    pytest.importorskip("llama_cpp")
    b = make_backend("local")
    results = b.complete([_request(i, max_tokens=80) for i in range(2)])
    for r in results:
        assert r.ok, r.error
        assert r.parsed["feeling"] in ("happy", "bored", "curious")
    again = b.complete([_request(0, max_tokens=80)])
    assert again[0].text == results[0].text  # same seed, same answer
