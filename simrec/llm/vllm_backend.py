"""vLLM offline: the whole batch in one ``vllm.LLM.chat`` call (extra ``vllm``, GPU).

Structured output through ``SamplingParams(structured_outputs=StructuredOutputsParams(json=...))``
(the ``guided_json`` fields were removed in vLLM 0.12 and are silently ignored by older code
paths, so they are never sent). ``max_tokens`` and the per-request seed are always set.
vllm is imported when the backend is built, never at ``import simrec``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from simrec.errors import ConfigError
from simrec.llm.base import ChatRequest, ChatResult, parse_json_answer


class VLLMBackend:
    """``vllm.LLM(model, **engine_args)`` in this process."""

    def __init__(self, model: str, **engine_args) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "llm vllm: vllm is not installed; pip install 'simrec[vllm]' (needs a GPU)"
            ) from None
        self.name = model
        self._llm = LLM(model=model, **engine_args)
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def _params(self, req: ChatRequest):
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        structured = (
            StructuredOutputsParams(json=req.json_schema) if req.json_schema is not None else None
        )
        return SamplingParams(
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            seed=req.seed,
            structured_outputs=structured,
        )

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        t = time.perf_counter()
        try:
            outputs = self._llm.chat(
                [list(r.messages) for r in requests],
                sampling_params=[self._params(r) for r in requests],
                use_tqdm=False,
            )
        except Exception as err:  # the engine failed for the whole batch: every request says so
            msg = f"{type(err).__name__}: {err}"
            return [ChatResult(error=msg, latency_s=time.perf_counter() - t) for _ in requests]
        latency = (time.perf_counter() - t) / len(requests)
        results = []
        for req, out in zip(requests, outputs, strict=True):
            gen = out.outputs[0]
            text = gen.text
            pt = len(out.prompt_token_ids or [])
            ct = len(gen.token_ids or [])
            parsed, error = parse_json_answer(text, req.json_schema is not None)
            if error is not None and gen.finish_reason == "length":
                error = f"truncated at max_tokens={req.max_tokens}: {error}"
            self.calls += 1
            self.prompt_tokens += pt
            self.completion_tokens += ct
            results.append(ChatResult(text, parsed, error, pt, ct, latency))
        return results
