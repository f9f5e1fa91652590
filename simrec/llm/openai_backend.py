"""Any OpenAI-compatible server (OpenAI, vLLM's server, llama.cpp's server, Ollama) through
``openai.AsyncOpenAI``, with bounded concurrency.

Retries and timeouts are the client's own (``max_retries``, ``timeout``): 408/409/429/5xx and
connection errors are retried with backoff by the client; what still fails becomes that
request's ``error``. Structured output: ``response_format="json_schema"`` (OpenAI, vLLM) sends
``{"type": "json_schema", ...}``; ``"json_object"`` (llama.cpp, whose server answers json_schema
with HTTP 500) sends ``{"type": "json_object", "schema": ...}``; ``"auto"`` picks json_schema for
api.openai.com and for servers whose model list says ``owned_by: vllm``, json_object otherwise.
The API key comes from the environment (``OPENAI_API_KEY`` or the variable named by
``api_key_env``) and is never logged or written; local servers get ``"EMPTY"``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

from simrec.errors import ConfigError
from simrec.llm.base import ChatRequest, ChatResult, parse_json_answer

ResponseFormat = Literal["auto", "json_schema", "json_object"]


class OpenAIBackend:
    """``complete()`` sends every request concurrently (at most ``concurrency`` in flight)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
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
        self.name = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.timeout, self.max_retries = timeout, max_retries
        self._key = os.environ.get(api_key_env) or ("EMPTY" if base_url else None)
        if self._key is None:
            raise ConfigError(
                f"llm: no API key for {model}: set the environment variable {api_key_env} "
                f"(keys are read from the environment only)"
            )
        self._http_client = http_client
        self._format = response_format
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.name!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ structured output

    async def _resolve_format(self, client) -> str:
        if self._format != "auto":
            return self._format
        if self.base_url is None or "api.openai.com" in self.base_url:
            self._format = "json_schema"
            return self._format
        try:
            models = await client.models.list()
            owners = {getattr(m, "owned_by", "") for m in models.data}
            self._format = "json_schema" if "vllm" in owners else "json_object"
        except Exception:  # a server without /models: the safe choice works everywhere
            self._format = "json_object"
        return self._format

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

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        return asyncio.run(self._complete_all(list(requests)))

    async def _complete_all(self, requests: list[ChatRequest]) -> list[ChatResult]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            http_client=self._http_client,
        )
        try:
            fmt = await self._resolve_format(client)
            gate = asyncio.Semaphore(self.concurrency)
            results = await asyncio.gather(*(self._one(client, gate, r, fmt) for r in requests))
        finally:
            if self._http_client is None:
                await client.close()
        for r in results:
            self.calls += r.attempts
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens
        return list(results)

    async def _one(self, client, gate: asyncio.Semaphore, req: ChatRequest, fmt: str) -> ChatResult:
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
        async with gate:
            t = time.perf_counter()
            try:
                raw = await client.chat.completions.with_raw_response.create(**kwargs)
                resp = raw.parse()
            except Exception as err:  # the client already retried what is retryable
                return ChatResult(
                    error=f"{type(err).__name__}: {_short(err)}",
                    latency_s=time.perf_counter() - t,
                    attempts=1 + self.max_retries if _retryable(err) else 1,
                )
            latency = time.perf_counter() - t
        attempts = 1 + int(raw.retries_taken) if hasattr(raw, "retries_taken") else 1
        choice = resp.choices[0] if resp.choices else None
        text = choice.message.content if choice is not None else None
        usage = resp.usage
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        parsed, error = parse_json_answer(text, req.json_schema is not None)
        if error is not None and choice is not None and choice.finish_reason == "length":
            error = f"truncated at max_tokens={req.max_tokens}: {error}"
        return ChatResult(text, parsed, error, pt, ct, latency, attempts=attempts)


def _retryable(err: Exception) -> bool:
    status = getattr(err, "status_code", None)
    return status is None or status in (408, 409, 429) or status >= 500


def _short(err: Exception) -> str:
    text = str(err).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."
