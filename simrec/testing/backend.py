"""The LLMBackend contract as a reusable check, and a scripted backend for your own tests.

``check_backend(backend)`` sends small batches and checks what the LLM brains rely on: one
:class:`~simrec.llm.base.ChatResult` per request, in request order (told apart by their
``max_tokens`` and schemas); an empty batch gives an empty list; a request that cannot be
answered well (one token for a JSON object) comes back as a result, never an exception, and
every failed result has an ``error`` message and a typed ``error_kind``; token counts are
non-negative and never above ``max_tokens``. Raises AssertionError naming the broken promise.

:class:`FakeBackend` answers from a script, so a test of a brain, an augmenter or a prompt
template needs no server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from simrec.llm.base import ChatRequest, ChatResult, ErrorKind, LLMBackend, parse_json_answer

Answer = str | dict | ChatResult
Script = Callable[[ChatRequest], Answer] | Sequence[Answer]


class FakeBackend:
    """An LLMBackend that answers from ``script``: a function of the request, or a sequence of
    answers used in turn (cycling). An answer is the reply text, a dict (sent as its JSON) or a
    ready ChatResult (e.g. ``ChatResult(error="...", error_kind=ErrorKind.TIMEOUT)``). Every
    request is kept in ``requests``; token counts are the words of the prompt and the answer.

    >>> fake = FakeBackend(lambda req: {"watch": [1]})
    >>> fake.complete([ChatRequest(messages=({"role": "user", "content": "hi"},),
    ...                            max_tokens=20, json_schema={})])[0].parsed
    {'watch': [1]}
    """

    def __init__(self, script: Script, *, name: str = "fake") -> None:
        self.name = name
        self._script = script
        self.requests: list[ChatRequest] = []

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        out = []
        for req in requests:
            turn = len(self.requests)
            self.requests.append(req)
            if callable(self._script):
                answer = self._script(req)
            else:
                answer = self._script[turn % len(self._script)]
            out.append(self._result(req, answer))
        return out

    @staticmethod
    def _result(req: ChatRequest, answer: Answer) -> ChatResult:
        if isinstance(answer, ChatResult):
            return answer
        text = json.dumps(answer) if isinstance(answer, dict) else str(answer)
        prompt = sum(len(str(m.get("content", "")).split()) for m in req.messages)
        words = text.split()
        if len(words) > req.max_tokens:  # as a server would: stop at max_tokens
            text = " ".join(words[: req.max_tokens])
            return ChatResult(
                text,
                None,
                f"truncated at max_tokens={req.max_tokens}",
                prompt,
                req.max_tokens,
                error_kind=ErrorKind.TRUNCATED,
            )
        parsed, error = parse_json_answer(text, req.json_schema is not None)
        return ChatResult(text, parsed, error, prompt, len(words))


_SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["colour", "count"],
}


def check_backend(backend: LLMBackend) -> None:
    """Check ``backend`` against the LLMBackend contract (module docstring). It makes a few
    short requests (at most 48 tokens each)."""
    assert isinstance(backend, LLMBackend), (
        f"{type(backend).__name__}: an LLMBackend needs a name and complete()"
    )
    name = backend.name
    assert isinstance(name, str) and name, "an LLMBackend needs a non-empty str attribute 'name'"
    assert backend.complete([]) == [], f"{name}: complete([]) must return []"

    def ask(text: str, max_tokens: int, schema: dict | None) -> ChatRequest:
        messages = ({"role": "user", "content": text},)
        return ChatRequest(messages, max_tokens=max_tokens, json_schema=schema, seed=7)

    requests = [
        ask("Name a colour and a count, as JSON.", 48, _SCHEMA),
        ask("Say hello.", 5, None),
        ask("Name a colour and a count, as JSON.", 1, _SCHEMA),  # cannot fit: must not raise
        ask("Say goodbye.", 12, None),
    ]
    try:
        results = backend.complete(requests)
    except Exception as err:  # the contract: failures come back as results
        raise AssertionError(
            f"{name}: complete() raised {type(err).__name__}: {err} (a failed request must come "
            f"back as a ChatResult with error and error_kind, never as an exception)"
        ) from err
    assert isinstance(results, list) and len(results) == len(requests), (
        f"{name}: complete() must return one result per request, got {len(results)} for "
        f"{len(requests)}"
    )
    for j, (req, res) in enumerate(zip(requests, results, strict=True)):
        where = f"{name}: result {j}"
        assert isinstance(res, ChatResult), f"{where} is a {type(res).__name__}, not ChatResult"
        assert res.prompt_tokens >= 0 and res.completion_tokens >= 0, f"{where}: negative tokens"
        assert res.completion_tokens <= req.max_tokens, (
            f"{where}: {res.completion_tokens} completion tokens for max_tokens="
            f"{req.max_tokens} (results out of request order?)"
        )
    for j, (req, res) in enumerate(zip(requests, results, strict=True)):
        where = f"{name}: result {j}"
        if res.ok:
            if req.json_schema is None:
                assert res.parsed is None, f"{where}: parsed JSON for a request without schema"
            else:
                assert res.parsed is not None, f"{where}: no parsed JSON though ok"
        else:
            assert isinstance(res.error, str) and res.error, f"{where}: error must be a message"
            assert isinstance(res.error_kind, ErrorKind), (
                f"{where}: a failed result needs a typed error_kind, got {res.error_kind!r}"
            )
