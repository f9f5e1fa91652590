"""Any OpenAI-compatible server (OpenAI, vLLM's server, llama.cpp's server, Ollama) through
``openai.AsyncOpenAI``, with bounded concurrency.

Retries and timeouts are the client's own (``max_retries``, ``timeout``): 408/409/429/5xx and
connection errors are retried with backoff by the client; what still fails becomes that
request's ``error``. Structured output: ``response_format="json_schema"`` (OpenAI, vLLM) sends
``{"type": "json_schema", ...}``; ``"json_object"`` (llama.cpp, whose server answers json_schema
with HTTP 500) sends ``{"type": "json_object", "schema": ...}``; ``"auto"`` picks json_schema for
api.openai.com and for servers whose model list says ``owned_by: vllm``, json_object otherwise.
The API key comes from the environment and goes only where it belongs: ``OPENAI_API_KEY`` to
OpenAI's own endpoint (``https://api.openai.com``) and nowhere else; any other server gets the
variable the user names in ``api_key_env``, or no key (``"EMPTY"``). Keys are never logged or
written, and a failed request is recorded as its kind and HTTP status only (a server may echo
a key in its error text).

Several servers (``base_url`` a list: one vLLM or llama.cpp server per GPU, all serving the
same model) share the work: each gets ``concurrency`` requests in flight, pulling from one queue,
so a faster server answers more. A request that finds its server gone (a connection error, a
timeout, HTTP 502/503/504, after the client's own retries) is sent to another server, and that
server is skipped for DOWN_SECONDS before it is tried again; a request fails only when every
server failed it. ``failovers`` counts the re-sent requests. Answers do not depend on which
server gave them (each request carries its seed), so the response cache keys a pool's answers
by the model alone: a rerun replays them whichever servers are up.

Only the client's own errors (``openai.APIError`` and its kinds) become a request's error, typed
by :func:`classify`; any other exception is a bug and propagates. One client serves the
backend's whole life (its connection pool is reused from batch to batch), on an event loop of
its own in a daemon thread, so ``complete()`` also works where an event loop is already running
(Jupyter). ``close()`` ends both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import openai

from simrec.errors import ConfigError
from simrec.llm.base import ChatRequest, ChatResult, ErrorKind, parse_json_answer
from simrec.trust import is_openai_endpoint, redact_url

ResponseFormat = Literal["auto", "json_schema", "json_object"]
logger = logging.getLogger(__name__)
DOWN_SECONDS = 30.0  # a server that failed a request is skipped this long
_GONE = (ErrorKind.CONNECTION, ErrorKind.TIMEOUT)
_GONE_STATUS = (502, 503, 504)


# OpenAI's API, passed explicitly: the client would otherwise take OPENAI_BASE_URL from the
# environment, which could send OPENAI_API_KEY to any host
OPENAI_URL = "https://api.openai.com/v1"


class OpenAIBackend:
    """``complete()`` sends every request concurrently (at most ``concurrency`` in flight per
    server); ``base_url``: one server's URL, a list of servers that share the work, or None
    (api.openai.com)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 2,
        response_format: ResponseFormat = "auto",
        http_client: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"llm concurrency: expected a positive integer, got {concurrency}")
        if response_format not in ("auto", "json_schema", "json_object"):
            raise ConfigError(
                f"llm response_format: expected auto, json_schema or json_object, "
                f"got {response_format!r}"
            )
        urls = [base_url] if base_url is None or isinstance(base_url, str) else list(base_url)
        if urls == [None]:  # OpenAI's own API, named: no environment variable redirects it
            urls = [OPENAI_URL]
        if not urls or (len(urls) > 1 and None in urls):
            raise ConfigError(f"llm.base_url: expected one URL or a list of URLs, got {base_url!r}")
        if len(set(urls)) < len(urls):
            raise ConfigError(f"llm.base_url: a server is listed twice in {base_url!r}")
        self.name = model
        self.base_url = base_url
        self.urls = urls
        self.concurrency = concurrency
        self.timeout, self.max_retries = timeout, max_retries
        self._keys = [_api_key(model, u, api_key_env) for u in urls]
        self._http_client = http_client
        self._formats = [response_format] * len(urls)
        self._down_until = [0.0] * len(urls)
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.failovers = 0  # requests sent again to another server
        self._clients: list[Any] = [None] * len(urls)  # AsyncOpenAIs, made on the backend's loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.name!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ structured output

    async def _resolve_format(self, j: int) -> str:
        """Server ``j``'s structured-output style (asked once per server)."""
        if self._formats[j] != "auto":
            return self._formats[j]
        url = self.urls[j]
        if url is None or "api.openai.com" in url:
            self._formats[j] = "json_schema"
            return self._formats[j]
        try:
            models = await self._clients[j].models.list()
            owners = {getattr(m, "owned_by", "") for m in models.data}
            self._formats[j] = "json_schema" if "vllm" in owners else "json_object"
        except openai.APIError:  # a server without /models: the safe choice works everywhere
            return "json_object"  # (asked again next time: the server may be down just now)
        return self._formats[j]

    def _response_format(self, schema: dict | None, fmt: str) -> dict | None:
        if schema is None:
            return None
        if fmt == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": False},
            }
        return {"type": "json_object", "schema": schema}

    # ------------------------------------------------------------------ calls

    @property
    def cache_identity(self) -> str:
        """What the response cache keys answers by: the kind of backend, the server, the model
        (for a pool of servers, the model alone: any of them may answer)."""
        if len(self.urls) > 1:
            return f"openai|pool|{self.name}"
        return f"openai|{redact_url(self.urls[0]) or 'https://api.openai.com/v1'}|{self.name}"

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        work = self._complete_all(list(requests))
        return asyncio.run_coroutine_threadsafe(work, self._event_loop()).result()

    def close(self) -> None:
        """Close the client (unless the caller passed its own HTTP client) and stop the loop."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for client in self._clients:
            if client is not None and self._http_client is None:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result()
        self._clients = [None] * len(self.urls)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
        loop.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The backend's own event loop, running in a daemon thread (started on first use)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=f"simrec-llm-{self.name}", daemon=True
            )
            self._thread.start()
        return self._loop

    async def _complete_all(self, requests: list[ChatRequest]) -> list[ChatResult]:
        from openai import AsyncOpenAI

        for j, url in enumerate(self.urls):
            if self._clients[j] is None:
                self._clients[j] = AsyncOpenAI(
                    api_key=self._keys[j],
                    base_url=url,
                    timeout=self.timeout,
                    max_retries=self.max_retries,
                    http_client=self._http_client,
                )
        results: list[ChatResult | None] = [None] * len(requests)
        failed_on: list[set[int]] = [set() for _ in requests]
        pending = list(range(len(requests)))
        while pending:
            pending = await self._round(requests, pending, results, failed_on)
        return [r for r in results if r is not None]

    async def _round(
        self,
        requests: list[ChatRequest],
        pending: list[int],
        results: list[ChatResult | None],
        failed_on: list[set[int]],
    ) -> list[int]:
        """The servers that are up share the ``pending`` requests (every server, when none
        is up: each gets one more try); what a server that went down failed or left undone
        is returned for the next round, unless every server has failed it."""
        now = time.monotonic()
        up = [j for j in range(len(self.urls)) if self._down_until[j] <= now]
        force = not up
        queue, again = deque(pending), []

        async def serve(j: int) -> None:
            fmt = await self._resolve_format(j)
            while queue and (force or self._down_until[j] <= time.monotonic()):
                i = queue.popleft()
                res = await self._one(self._clients[j], requests[i], fmt)
                self._count(res)
                if self._gone(res) and len(self.urls) > 1:
                    self._down_until[j] = time.monotonic() + DOWN_SECONDS
                    logger.info("%s: server %d of %d is down", self.name, j + 1, len(self.urls))
                    if j not in failed_on[i] and len(failed_on[i]) + 1 < len(self.urls):
                        failed_on[i].add(j)
                        again.append(i)
                        self.failovers += 1
                        continue
                results[i] = res

        servers = up or list(range(len(self.urls)))
        await asyncio.gather(*(serve(j) for j in servers for _ in range(self.concurrency)))
        return sorted(again + list(queue))  # queue: left when its servers went down

    def _count(self, r: ChatResult) -> None:
        self.calls += r.attempts
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens

    @staticmethod
    def _gone(r: ChatResult) -> bool:
        """Whether a failed request says its server is gone (not that the request was bad)."""
        return r.error_kind in _GONE or (
            r.error_kind is ErrorKind.SERVER and r.status in _GONE_STATUS
        )

    async def _one(self, client, req: ChatRequest, fmt: str) -> ChatResult:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": list(req.messages),
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        }
        if req.seed is not None:
            kwargs["seed"] = req.seed
        rf = self._response_format(req.json_schema, fmt)
        if rf is not None:
            kwargs["response_format"] = rf
        t = time.perf_counter()
        try:
            raw = await client.chat.completions.with_raw_response.create(**kwargs)
            resp = raw.parse()
        except openai.APIError as err:  # the client already retried what is retryable
            kind, status = classify(err)
            logger.info("%s: request failed: %s", self.name, _error_kind(err))
            return ChatResult(
                error=_error_kind(err),
                latency_s=time.perf_counter() - t,
                attempts=1 + self.max_retries if _retryable(err) else 1,
                error_kind=kind,
                status=status,
            )
        latency = time.perf_counter() - t
        attempts = 1 + int(getattr(raw, "retries_taken", 0))
        if attempts > 1:
            logger.info("%s: answered after %d retries", self.name, attempts - 1)
        choice = resp.choices[0] if resp.choices else None
        text = choice.message.content if choice is not None else None
        usage = resp.usage
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        parsed, error = parse_json_answer(text, req.json_schema is not None)
        if error is not None and choice is not None and choice.finish_reason == "length":
            error = f"truncated at max_tokens={req.max_tokens}: {error}"
        return ChatResult(text, parsed, error, pt, ct, latency, attempts=attempts)


def classify(err: openai.APIError) -> tuple[ErrorKind, int | None]:
    """The kind of a failed request and its HTTP status (None without a response)."""
    status = getattr(err, "status_code", None)
    if isinstance(err, openai.APITimeoutError):
        return ErrorKind.TIMEOUT, None
    if isinstance(err, openai.APIConnectionError):
        return ErrorKind.CONNECTION, None
    if status in (401, 403):
        return ErrorKind.AUTH, status
    if status == 429:
        return ErrorKind.RATE_LIMIT, status
    if status is not None and status >= 500:
        return ErrorKind.SERVER, status
    if status is not None:
        return ErrorKind.BAD_REQUEST, status
    return ErrorKind.BACKEND, None


def _retryable(err: Exception) -> bool:
    status = getattr(err, "status_code", None)
    return status is None or status in (408, 409, 429) or status >= 500


def _error_kind(err: Exception) -> str:
    """A failed request as it is recorded: the error's kind and HTTP status, never its text."""
    status = getattr(err, "status_code", None)
    return type(err).__name__ + (f" (HTTP {status})" if status is not None else "")


def _api_key(model: str, base_url: str | None, api_key_env: str | None) -> str:
    """The key for ``base_url``'s server (see the module docstring)."""
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(
                f"llm.api_key_env: expected the environment variable {api_key_env} to hold the "
                f"key for {redact_url(base_url) or 'api.openai.com'}, found it unset or empty"
            )
        return key
    if is_openai_endpoint(base_url):
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(
                f"llm: no API key for {model} on api.openai.com: set the environment variable "
                f"OPENAI_API_KEY (keys are read from the environment only)"
            )
        return key
    return "EMPTY"  # another server: OPENAI_API_KEY is OpenAI's and is not sent to it
