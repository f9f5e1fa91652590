"""LLM backends behind one contract (``LLMBackend.complete``): any OpenAI-compatible server,
vLLM offline, and the embedded SmolLM2 model; plus a response cache for exact replays.

``make_backend("openai:gpt-4o-mini")``, ``make_backend("openai:MODEL", base_url=URL)``,
``make_backend("vllm:MODEL")``, ``make_backend("local")``.
"""

from __future__ import annotations

from typing import Any

from simrec.errors import ConfigError
from simrec.llm.base import ChatRequest, ChatResult, LLMBackend, parse_json_answer
from simrec.llm.cache import CachedBackend

__all__ = [
    "CachedBackend",
    "ChatRequest",
    "ChatResult",
    "LLMBackend",
    "make_backend",
    "parse_json_answer",
]


def make_backend(
    spec: str, *, base_url: str | list[str] | None = None, **options: Any
) -> LLMBackend:
    """A backend from ``openai:MODEL``, ``vllm:MODEL`` or ``local``."""
    kind, _, model = spec.partition(":")
    if kind == "openai" and model:
        from simrec.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(model, base_url=base_url, **options)
    if kind == "vllm" and model:
        from simrec.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    if kind == "local" and not model:
        from simrec.llm.local import LocalBackend

        return LocalBackend(**options)
    raise ConfigError(f"--llm: expected openai:MODEL, vllm:MODEL or local, got {spec!r}")
