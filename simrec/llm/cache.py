"""A response cache wrapping any backend: a rerun with the same prompts and seeds makes no model
calls and returns the same answers, so LLM runs replay byte for byte.

Entries live in one SQLite file keyed by ``ChatRequest.key(model)`` (sha256 of model, messages,
schema, sampling parameters and seed). Every answer the model gave is stored, usable or not (a
malformed or truncated answer is the model's deterministic output for that seed, and replaying it
keeps reruns exact); transport failures (no answer at all: timeouts, HTTP errors) are not, so
they are retried on the next run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from simrec.llm.base import ChatRequest, ChatResult, LLMBackend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    error TEXT
)
"""


class CachedBackend:
    """``backend`` behind a persistent cache at ``path``. ``hits`` and ``misses`` count lookups."""

    def __init__(self, backend: LLMBackend, path: str | Path) -> None:
        self.backend = backend
        self.name = backend.name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        keys = [r.key(self.name) for r in requests]
        results: list[ChatResult | None] = [None] * len(requests)
        with self._lock:
            for j, key in enumerate(keys):
                row = self._db.execute(
                    "SELECT text, prompt_tokens, completion_tokens, error FROM responses "
                    "WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is not None:
                    text, pt, ct, error = row
                    parsed = None
                    if error is None and requests[j].json_schema is not None:
                        parsed = json.loads(text)
                    results[j] = ChatResult(text, parsed, error, pt, ct, 0.0, cached=True)
        missing = [j for j, r in enumerate(results) if r is None]
        self.hits += len(requests) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = self.backend.complete([requests[j] for j in missing])
            with self._lock:
                for j, res in zip(missing, fresh, strict=True):
                    results[j] = res
                    if res.text is not None:  # the model answered, usable or not
                        self._db.execute(
                            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                keys[j],
                                self.name,
                                res.text,
                                res.prompt_tokens,
                                res.completion_tokens,
                                res.error,
                            ),
                        )
                self._db.commit()
        return [r for r in results if r is not None]

    def close(self) -> None:
        with self._lock:
            self._db.close()
