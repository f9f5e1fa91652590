"""A response cache wrapping any backend: a rerun with the same prompts and seeds makes no model
calls and returns the same answers, so LLM runs replay byte for byte.

Entries live in one SQLite file keyed by ``ChatRequest.key(identity)``: sha256 of the backend's
identity (its kind, its server and its model: two servers serving a model of the same name do
not share answers), messages, schema, sampling parameters and seed. The file is opened in WAL
mode with a busy timeout, and answers are inserted with ``INSERT OR IGNORE``, so processes can
share one cache. A file that is not a cache is an error naming it; a row that cannot be decoded
is a miss. Every answer the model gave is stored, usable or not (a
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

from simrec.errors import InputError
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
        self.identity = getattr(backend, "cache_identity", f"{type(backend).__name__}|{self.name}")
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(responses)")]
        except (sqlite3.DatabaseError, OSError) as err:
            raise InputError(
                f"{self.path}: expected an LLM response cache (SQLite), could not open it: "
                f"{err}; point llm.cache (--llm-cache) at another file"
            ) from None
        if columns[:6] != ["key", "model", "text", "prompt_tokens", "completion_tokens", "error"]:
            raise InputError(
                f"{self.path}: expected an LLM response cache, found a SQLite file whose "
                f"responses table has the columns {columns}"
            )
        self.hits = 0
        self.misses = 0

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        keys = [r.key(self.identity) for r in requests]
        results: list[ChatResult | None] = [None] * len(requests)
        with self._lock:
            for j, key in enumerate(keys):
                row = self._db.execute(
                    "SELECT text, prompt_tokens, completion_tokens, error FROM responses "
                    "WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is not None:
                    results[j] = _decode(row, requests[j].json_schema is not None)
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
                            "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
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


def _decode(row: tuple, want_json: bool) -> ChatResult | None:
    """A cached answer, or None (a miss) when the row cannot be decoded."""
    text, pt, ct, error = row
    if not isinstance(text, str) or not isinstance(pt, int) or not isinstance(ct, int):
        return None
    if error is not None and not isinstance(error, str):
        return None
    parsed = None
    if error is None and want_json:
        try:
            parsed = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return None
    return ChatResult(text, parsed, error, pt, ct, 0.0, cached=True)
