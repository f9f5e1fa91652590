"""Parquet recorder for events (impressions, then the tick's shares).

Rows arrive one tick at a time (already in canonical order) and are written in row groups of a
fixed size, so the files do not depend on how the simulator batched its work. Each checkpoint
interval is one part file, written as a hidden ``.tmp`` and renamed when the interval closes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simrec import outputs
from simrec.data.schemas import events_schema

_MAX_PENDING = 2  # ticks queued for the writer thread at most
_NULL_STRING_COLUMNS = ("reason", "feeling", "llm_model", "prompt_hash")
_NULL_INT_COLUMNS = ("prompt_tokens", "completion_tokens")


# dictionary-encode only the low-cardinality columns (ids of sessions and slates, times and
# floats gain nothing and cost time); keep min/max statistics where readers filter
DICTIONARY_COLUMNS = [
    "run_id",
    "event_type",
    "tick",
    "page",
    "position",
    "item_id",
    "policy",
    "propensity_source",
    "decided_by",
    "rating",
    "llm_model",
]
STATISTICS_COLUMNS = ["tick", "timestamp", "session_id", "user_id", "item_id"]


def writer_options(compression_level: int | None = None) -> dict:
    """Keyword arguments of every events ``ParquetWriter`` (the benchmark's baseline uses them)."""
    return {
        "compression": "zstd",
        "compression_level": compression_level,
        "use_dictionary": DICTIONARY_COLUMNS,
        "write_statistics": STATISTICS_COLUMNS,
    }


class EventRecorder:
    """Writes ``events/part-*.parquet``; ``add_tick`` takes numpy columns, one entry per row.

    Columns expected by ``add_tick``: tick, timestamp (int64 s), session_id, user_id, page,
    slate_id, position, item (item index), score, pscore_item_position, pscore_slate,
    exact (bool: propensity from a stochastic policy), examined, clicked, rating (NaN = none),
    left_after, decided_by (int codes into the list decided_by_vocab); optionally reason,
    feeling (object, None = null).
    """

    def __init__(
        self,
        events: Path | outputs.EventsStore,
        *,
        run_id: str,
        policy: str,
        item_ids: np.ndarray,
        row_group_size: int,
        compression_level: int | None,
        part: int = 0,
    ) -> None:
        # where the parts go: a folder, or a run's store (its events folder or a URI)
        self.store = (
            events
            if isinstance(events, outputs.EventsStore)
            else outputs.EventsStore(events.parent, None, folder=events)
        )
        self.store.fs.create_dir(self.store.root, recursive=True)
        self.item_ids = pa.array(item_ids)
        self.schema = events_schema(self.item_ids.type)
        self.run_id, self.policy = run_id, policy
        self.row_group_size = row_group_size
        self.compression_level = compression_level
        self.part = part
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: BinaryIO | None = None
        # one writer thread: Arrow conversion and Parquet encoding overlap with the simulation
        # (pyarrow releases the GIL); jobs run in submission order, so files are identical
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simrec-recorder")
        self._pending: deque[Future] = deque()

    @property
    def _tmp_path(self) -> str:
        return self.store.path(f".{outputs.part_name(self.part)}.tmp")

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            if self.store.local:  # created exclusively, never through a planted link
                self._file = outputs.create_new(Path(self._tmp_path))
                where, fs = self._file, None
            else:
                where, fs = self._tmp_path, self.store.fs
            self._writer = pq.ParquetWriter(
                where, self.schema, filesystem=fs, **writer_options(self.compression_level)
            )
        return self._writer

    def _close_writer(self) -> None:
        self._writer.close()
        self._writer = None
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    def add_tick(self, cols: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]]) -> None:
        """Queue one tick's rows: the columns, or a function returning them (run on the
        recorder's thread). The arrays must not be modified afterwards."""
        while len(self._pending) >= _MAX_PENDING:  # bound the memory held by queued ticks
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._append, cols))

    def close_part(self) -> str:
        """Write what is queued and buffered, close the part and move it into place."""
        self._drain()
        return self._pool.submit(self._close).result()

    def abort(self) -> None:
        """Stop after a failure: finish queued work if possible and close the open part (the
        hidden temp part is discarded on resume)."""
        try:
            self._drain()
        except Exception:  # the original failure is what the caller reports
            pass
        finally:
            self._pool.shutdown(wait=True)
            if self._writer is not None:
                self._close_writer()

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def _append(self, cols: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]]) -> None:
        if callable(cols):
            cols = cols()
        n = int(cols["tick"].shape[0])
        self._open()
        if n == 0:
            return
        self._buffer.append(self._to_table(cols, n))
        self._buffered += n
        if self._buffered >= self.row_group_size:
            table = pa.concat_tables(self._buffer)
            full = (self._buffered // self.row_group_size) * self.row_group_size
            self._writer.write_table(table.slice(0, full), row_group_size=self.row_group_size)
            rest = table.slice(full)
            self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def _close(self) -> str:
        writer = self._open()
        if self._buffered:
            writer.write_table(pa.concat_tables(self._buffer), row_group_size=self.row_group_size)
        self._close_writer()
        self._buffer, self._buffered = [], 0
        final = self.store.path(outputs.part_name(self.part))
        self.store.finish(self._tmp_path, final)
        self.part += 1
        return final

    def _to_table(self, c: dict[str, np.ndarray], n: int) -> pa.Table:
        def const(value: str) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array([value])
            )

        # decided_by arrives as codes into a vocabulary; write a sorted dictionary of the labels
        # present, so the file does not depend on the order labels first appeared
        vocab = np.asarray(c["decided_by_vocab"], dtype=object)
        present = np.flatnonzero(np.bincount(c["decided_by"], minlength=vocab.size))
        order = present[np.argsort(vocab[present].astype(str), kind="stable")]
        remap = np.zeros(vocab.size, np.int32)
        remap[order] = np.arange(order.size, dtype=np.int32)
        labels, codes = vocab[order], remap[c["decided_by"]]
        exact = c["exact"]
        source = pa.DictionaryArray.from_arrays(
            pa.array(exact.astype(np.int32)), pa.array(["deterministic", "exact"])
        )
        rating, pslate = c["rating"], c["pscore_slate"]
        arrays = {
            "run_id": const(self.run_id),
            "event_type": const("impression"),
            "tick": pa.array(c["tick"].astype(np.int32)),
            "timestamp": pa.array(
                c["timestamp"].astype("datetime64[s]"), pa.timestamp("s", tz="UTC")
            ),
            "session_id": pa.array(c["session_id"].astype(np.int64)),
            "user_id": pa.array(c["user_id"].astype(np.int64)),
            "page": pa.array(c["page"].astype(np.int16)),
            "slate_id": pa.array(c["slate_id"].astype(np.int64)),
            "position": pa.array(c["position"].astype(np.int16)),
            "item_id": pc.take(self.item_ids, pa.array(c["item"].astype(np.int64))),
            "policy": const(self.policy),
            "score": pa.array(c["score"].astype(np.float32)),
            "pscore_item_position": pa.array(c["pscore_item_position"].astype(np.float64)),
            "pscore_slate": pa.array(pslate.astype(np.float64), mask=np.isnan(pslate)),
            "pscore_cascade": pa.array(
                c["pscore_cascade"].astype(np.float64), mask=np.isnan(c["pscore_cascade"])
            ),
            "propensity_source": source,
            "examined": pa.array(c["examined"].astype(bool)),
            "clicked": pa.array(c["clicked"].astype(bool)),
            "rating": pa.array(rating.astype(np.float32), mask=np.isnan(rating)),
            "left_after": pa.array(c["left_after"].astype(bool)),
            "decided_by": pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int32)), pa.array(labels.astype(str).tolist())
            ),
        }
        for name in _NULL_STRING_COLUMNS:
            arrays[name] = pa.array(c[name], pa.string()) if name in c else pa.nulls(n, pa.string())
        for name in _NULL_INT_COLUMNS:
            if name in c:
                v = np.asarray(c[name], np.float64)
                arrays[name] = pa.array(np.nan_to_num(v).astype(np.int32), mask=np.isnan(v))
            else:
                arrays[name] = pa.nulls(n, pa.int32())
        arrays["social_signal"] = (
            pa.array(c["social"].astype(np.float32)) if "social" in c else pa.nulls(n, pa.float32())
        )
        arrays["share_recipients"] = pa.nulls(n, pa.int32())
        arrays["repeat"] = (
            pa.array(c["repeat"].astype(bool)) if "repeat" in c else pa.nulls(n, pa.bool_())
        )
        table = pa.Table.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)
        if "share_agent" in c:
            table = pa.concat_tables([table, self._share_table(c)])
        return table

    def _share_table(self, c: dict[str, np.ndarray]) -> pa.Table:
        """Share events: who shared which item with how many friends; slate columns null."""
        n = int(c["share_agent"].size)
        rating = c["share_rating"].astype(np.float32)
        arrays = {
            "run_id": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array([self.run_id])
            ),
            "event_type": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array(["share"])
            ),
            "tick": pa.array(np.full(n, c["tick"][0], np.int32)),
            "timestamp": pa.array(
                c["share_timestamp"].astype("datetime64[s]"), pa.timestamp("s", tz="UTC")
            ),
            "session_id": pa.array(c["share_session"].astype(np.int64)),
            "user_id": pa.array(c["share_agent"].astype(np.int64)),
            "item_id": pc.take(self.item_ids, pa.array(c["share_item"].astype(np.int64))),
            "rating": pa.array(rating, mask=np.isnan(rating)),
            "share_recipients": pa.array(c["share_recipients"].astype(np.int32)),
        }
        cols = [arrays[f.name] if f.name in arrays else pa.nulls(n, f.type) for f in self.schema]
        return pa.Table.from_arrays(cols, schema=self.schema)
