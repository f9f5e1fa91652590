"""A run directory's files outside the events: the saved config while the run is unfinished
(``_state/``), the catalog and schema, and at the end metrics, users, interviews, reflections and,
last, the manifest that says the run is complete."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from simrec import outputs
from simrec.agents.brains.base import LLMBackedBrain
from simrec.config import RunConfig
from simrec.data import Dataset
from simrec.data.schemas import (
    arrow_id_type,
    items_schema,
    metrics_schema,
    schema_document,
    users_schema,
)
from simrec.simulator.manifest import RunContext, run_manifest, saved_config
from simrec.simulator.model import SimulationModel

__all__ = ["STATE_DIR", "finish", "init_run_dir", "remove_state", "write_catalog", "write_text"]

STATE_DIR = "_state"


def init_run_dir(run_dir: Path, cfg: RunConfig, data: Dataset) -> None:
    if cfg.output.overwrite:
        outputs.clear_own(run_dir, "run")  # simrec's files only; anything else stays
    outputs.claim(run_dir, "run")
    state = run_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    write_text(
        state / "config.json",
        json.dumps({"config": saved_config(cfg), "data_hashes": data.file_hashes}, indent=2),
    )


def write_catalog(run_dir: Path, data: Dataset) -> None:
    """schema.json and items.parquet: fixed by the data, so rewriting them changes nothing."""
    item_type = arrow_id_type(data.catalog.item_ids)
    source_type = arrow_id_type(data.interactions.user_ids)
    write_text(
        run_dir / "schema.json", json.dumps(schema_document(item_type, source_type), indent=2)
    )
    cat = data.catalog
    items = pa.Table.from_pydict(
        {
            "item_id": pa.array(cat.item_ids, item_type),
            "title": pa.array(cat.titles.astype(str)),
            "genres": cat.genre_lists(),
            "text": pa.array(cat.text.astype(str)),
            "popularity": pa.array(cat.popularity, pa.int64()),
        },
        schema=items_schema(item_type),
    )
    outputs.write_parquet(items, run_dir / "items.parquet")


def finish(ctx: RunContext) -> tuple[dict, pd.DataFrame]:
    """Write metrics, users and, last, the manifest; returns the manifest and the metrics."""
    run_dir, cfg, data, model, utility = ctx.run_dir, ctx.cfg, ctx.data, ctx.model, ctx.utility
    timings, started = ctx.timings, ctx.started
    t = time.perf_counter()
    personas = model.personas
    metrics = pd.DataFrame(model.datacollector.get_model_vars_dataframe())
    table = pa.Table.from_pandas(
        metrics[list(metrics_schema().names)], schema=metrics_schema(), preserve_index=False
    )
    outputs.write_parquet(table, run_dir / "metrics.parquet")
    source_type = arrow_id_type(data.interactions.user_ids)
    users = pa.Table.from_pydict(
        {
            "user_id": pa.array(np.arange(len(personas)), pa.int64()),
            "source_user_id": pa.array(personas.source_user_ids, source_type),
            "activity": personas.activity,
            "conformity": personas.conformity,
            "diversity": personas.diversity,
            "arrival_rate": personas.arrival_rate,
            "rating_bias": personas.rating_bias,
            "n_interactions": personas.n_interactions,
            "taste": pa.ListArray.from_arrays(
                pa.array(
                    np.arange(0, utility.taste.size + 1, utility.taste.shape[1], dtype=np.int32)
                ),
                pa.array(utility.taste.ravel()),
            ),
            "liked_genres": personas.liked_genres,
            "disliked_genres": personas.disliked_genres,
            "profile": personas.profiles,
            "final_satisfaction": model.satisfaction,
            "churned": model.churned,
        },
        schema=users_schema(source_type),
    )
    outputs.write_parquet(users, run_dir / "users.parquet")
    if isinstance(model.brain, LLMBackedBrain) and cfg.llm.interview_fraction > 0:
        t_i = time.perf_counter()
        _write_interviews(run_dir, cfg, model)
        timings["interview_s"] = time.perf_counter() - t_i
    if model.episodic is not None:
        _write_reflections(run_dir, model)
    timings["write_s"] = time.perf_counter() - t  # users and metrics; the manifest is next
    timings["total_s"] = time.perf_counter() - started
    manifest = run_manifest(ctx)
    write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    remove_state(run_dir)
    return manifest, table.to_pandas()  # the typed columns that were written


def _write_interviews(run_dir: Path, cfg: RunConfig, model: SimulationModel) -> None:
    """Agent4Rec-style interviews of a sample of the agents who had a session."""
    from simrec.agents.brains.llm import interview
    from simrec.data.schemas import interviews_schema

    sessions = model.session_count
    had = np.flatnonzero(sessions > 0)
    u = model.streams.uniform("interview", had, 0, 0, 1)[:, 0]
    chosen = had[u < cfg.llm.interview_fraction]
    cols = interview(model.brain, model.context, chosen, model.tick, sessions)
    table = pa.Table.from_pydict(cols, schema=interviews_schema())
    outputs.write_parquet(table, run_dir / "interviews.parquet")


def _write_reflections(run_dir: Path, model: SimulationModel) -> None:
    """Each agent's latest reflection, for the agents that reflected."""
    from simrec.data.schemas import reflections_schema

    mem = model.episodic
    agents = np.flatnonzero(mem.note_tick >= 0)
    table = pa.Table.from_pydict(
        {
            "user_id": agents,
            "tick": mem.note_tick[agents],
            "note": [mem.notes[a] for a in agents],
            "source": [mem.note_source[a] for a in agents],
            "memory_entries": (mem.kind[agents] >= 0).sum(axis=1),
            "memories_written": mem.written[agents],
        },
        schema=reflections_schema(),
    )
    outputs.write_parquet(table, run_dir / "reflections.parquet")


def remove_state(run_dir: Path) -> None:
    """The finished run's _state/: simrec's own files in it, then the folder if empty."""
    state = run_dir / STATE_DIR
    for name in ("config.json", "checkpoint.npz"):
        f = state / name
        if f.is_file() and not f.is_symlink():
            f.unlink()
    with contextlib.suppress(OSError):
        state.rmdir()


def write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` as UTF-8, atomically (:func:`simrec.outputs.atomic_write`)."""
    outputs.atomic_write(path, text.encode("utf-8"))
