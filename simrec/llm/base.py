"""The LLM backend contract: batched, order-preserving chat completions that never raise for
one bad request.

A ``ChatRequest`` carries the messages, an optional JSON schema the answer must follow, and the
sampling parameters (``max_tokens`` is always set). A ``ChatResult`` carries the answer text,
the parsed JSON (or the error that prevented it, typed by :class:`ErrorKind`), token counts
and latency.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. messages: [{"role": ..., "content": ...}, ...]."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int
    json_schema: dict[str, Any] | None = None
    temperature: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        if not (isinstance(self.max_tokens, int) and self.max_tokens > 0):
            raise ValueError(f"max_tokens: expected a positive integer, got {self.max_tokens!r}")

    def key(self, model: str) -> str:
        """Cache key: sha256 of (model, messages, schema, sampling parameters, seed)."""
        payload = {
            "model": model,
            "messages": list(self.messages),
            "schema": self.json_schema,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ErrorKind(StrEnum):
    """Why a request has no usable answer."""

    AUTH = "auth"  # the server refused the key (HTTP 401/403)
    RATE_LIMIT = "rate_limit"  # HTTP 429, after the client's retries
    TIMEOUT = "timeout"  # no answer in time, after the client's retries
    CONNECTION = "connection"  # the server could not be reached
    SERVER = "server"  # HTTP 5xx, after the client's retries
    BAD_REQUEST = "bad_request"  # another HTTP 4xx: the server rejected the request
    TRUNCATED = "truncated"  # the answer stopped at max_tokens
    MALFORMED_JSON = "malformed_json"  # a schema was asked for; the answer is not JSON
    EMPTY = "empty_answer"  # the server answered with no text
    BACKEND = "backend"  # anything else the backend reports

    @classmethod
    def of_message(cls, message: str) -> ErrorKind:
        """The kind of an error known only by its message (a cached answer, a third-party
        backend that sets only ``error``).

        >>> ErrorKind.of_message("malformed JSON: Expecting value at offset 0")
        <ErrorKind.MALFORMED_JSON: 'malformed_json'>
        """
        for prefix, kind in (
            ("truncated", cls.TRUNCATED),
            ("malformed JSON", cls.MALFORMED_JSON),
            ("empty answer", cls.EMPTY),
        ):
            if message.startswith(prefix):
                return kind
        return cls.BACKEND


@dataclass
class ChatResult:
    """The outcome of one request. ``parsed`` is the decoded JSON object when the request had a
    schema and the answer was valid JSON; ``error`` says why there is no usable answer (a
    message without secrets or server text), ``error_kind`` what kind of failure it was and
    ``status`` the HTTP status, when there was one."""

    text: str | None = None
    parsed: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    error_kind: ErrorKind | None = None
    status: int | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.error_kind is None:
            self.error_kind = ErrorKind.of_message(self.error)

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class LLMBackend(Protocol):
    """What the LLM brains need: a name (the model) and a batched, order-preserving call."""

    name: str

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order; a failed request has ``error`` set, never raises."""


@runtime_checkable
class CountsCacheHits(Protocol):
    """Optional ability of a backend that answers repeated requests from a cache
    (:class:`~simrec.llm.cache.CachedBackend`): ``hits`` and ``misses`` so far, and the
    ``backend`` it asks on a miss. Runs count them in the manifest and carry them across
    checkpoints."""

    hits: int
    misses: int
    backend: LLMBackend


@runtime_checkable
class ServerPool(Protocol):
    """Optional ability of a backend that spreads requests over several servers: their
    ``urls``, and ``failovers``, the requests sent again to another server after one was
    down."""

    urls: list[str]
    failovers: int


def backend_counters(backend: LLMBackend | None) -> dict[str, int]:
    """``cache_hits``, ``cache_misses`` and ``failovers`` of ``backend`` (the ones it does not
    count: 0), looking through a cache to the backend behind it."""
    hits = misses = failovers = 0
    inner = backend
    if isinstance(backend, CountsCacheHits):
        hits, misses, inner = backend.hits, backend.misses, backend.backend
    if isinstance(inner, ServerPool):
        failovers = inner.failovers
    return {"cache_hits": int(hits), "cache_misses": int(misses), "failovers": int(failovers)}


def load_backend_counters(backend: LLMBackend | None, counters: dict[str, Any]) -> None:
    """Set what :func:`backend_counters` reads (a resumed run's, or shards' sums)."""
    inner = backend
    if isinstance(backend, CountsCacheHits):
        backend.hits = int(counters.get("cache_hits", 0))
        backend.misses = int(counters.get("cache_misses", 0))
        inner = backend.backend
    if isinstance(inner, ServerPool):
        inner.failovers = int(counters.get("failovers", 0))


def parse_json_answer(text: str | None, want_json: bool) -> tuple[Any, str | None]:
    """(parsed, error) for an answer text: JSON-decoded when a schema was asked for.

    >>> parse_json_answer('{"a": 1}', True)
    ({'a': 1}, None)
    >>> parse_json_answer('{"a": 1', True)[1].startswith("malformed JSON")
    True
    """
    if text is None:
        return None, "empty answer"
    if not want_json:
        return None, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"malformed JSON: {err.msg} at offset {err.pos} of {len(text)} characters"
