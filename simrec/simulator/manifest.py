"""A finished run's manifest: the config (credentials redacted), the data it was calibrated on,
the counts, the calibrated brain, the LLM's and the memory's statistics, the engine, the timings
and the outputs; and the context every finished run's outputs are written from."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simrec import outputs
from simrec.agents.brains.base import Brain, LLMBackedBrain
from simrec.config import RunConfig
from simrec.data import Dataset
from simrec.data.dataset import feedback_kind
from simrec.llm.base import CountsCacheHits, ServerPool
from simrec.simulator.shards import RemoteShards
from simrec.trust import redact_url
from simrec.version import __version__

if TYPE_CHECKING:
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.simulator.model import SimulationModel

__all__ = ["RunContext", "run_manifest", "saved_config"]


@dataclass
class RunContext:
    """What a finished run's outputs are written from: where (``run_dir``), its config and
    data, the model after its last tick, the calibrated statistical brain (``utility``, the LLM
    brains' fallback), its id, the timings so far (seconds by part; the writing adds its own),
    the tick a resumed run went on from (None: not resumed) and when it started
    (``time.perf_counter()``)."""

    run_dir: Path
    cfg: RunConfig
    data: Dataset
    model: SimulationModel
    utility: UtilityBrain
    run_id: str
    timings: dict[str, float]
    resumed_from: int | None
    started: float


def run_manifest(ctx: RunContext) -> dict:
    """The finished run's manifest.json: what was run on what, what it produced and how long
    each part took."""
    import importlib.metadata as md

    cfg, data, model, utility = ctx.cfg, ctx.data, ctx.model, ctx.utility
    run_id, timings, resumed_from, run_dir = ctx.run_id, ctx.timings, ctx.resumed_from, ctx.run_dir

    store = outputs.EventsStore(run_dir, cfg.output.events_uri)
    return {
        "simrec_version": __version__,
        "run_id": run_id,
        "seed": cfg.seed,
        "config": saved_config(cfg),
        "data": {
            "source": data.source,
            "path": cfg.data.path,
            "file_sha256": data.file_hashes,
            "users": data.interactions.n_users,
            "items": data.catalog.n_items,
            "interactions": len(data.interactions),
            # null for a log without ratings (implicit feedback: consumption, maybe counted)
            "rating_scale": [data.scale.low, data.scale.high, data.scale.step]
            if np.isfinite(data.interactions.rating).any()
            else None,
            "feedback": feedback_kind(data.interactions),
            # the impression log brain.exposure and brain.position_decay were read from
            "impressions": None
            if data.impressions is None
            else {
                "path": cfg.data.impressions_path,
                "layout": data.impressions.layout,
                "rows": len(data.impressions),
                "clicks": int(data.impressions.clicked.sum()),
            },
            "domain": data.catalog.domain.model_dump(mode="json"),
        },
        "counts": {
            "agents": model.n_agents,
            "ticks": model.tick,
            **model.totals,
            "churned_users": int(model.churned.sum()),
        },
        "brain": {
            "name": model.brain.name,
            "click_weights": vars(utility.weights),
            "click_calibration": utility.click_calibration,
            # hit: read back from the calibration cache (simrec.cache); miss: fitted, stored
            "calibration_cache": utility.calibration_cache,
            # the item-to-item model behind the collaborative evidence, or why there is none
            "collaborative": utility.evidence.collab.model,
            "taste_dim": utility.taste_dim,
            # taste_dim: auto: each tried dimension's held-out ROC AUC (empty when fixed)
            "taste_dim_scores": {str(d): round(v, 5) for d, v in utility.taste_dim_scores.items()},
            "rating_sigma": utility.rating_model.sigma,
            # simulation.repeats as resolved; the log's repeat share and the replay's pull
            "repeats": bool(model.repeats),
            "repeat_share": utility.repeat_share,
            "replay": utility.replay,
            # the repeat share the replay gives under the log's exposure (below repeat_share
            # when shown items alone cannot reach it)
            "replay_share": utility.replay_share,
        },
        "policy": model.policy.name,
        "social": None if model.social is None else model.social.graph.summary(),
        "llm": _llm_stats(model.brain),
        "failures": [],
        "fallbacks": dict(model.brain.fallbacks) if isinstance(model.brain, LLMBackedBrain) else {},
        "memory": _memory_stats(model.episodic),
        "resumed_from_tick": resumed_from,
        "engine": model.shards.summary()
        if isinstance(model.shards, RemoteShards)
        else {"kind": "local", "shards": 1},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "outputs": {
            "events": [store.where(p) for p in store.parts()],
            **({"events_uri": store.uri} if store.uri else {}),
            "users": "users.parquet",
            "items": "items.parquet",
            "metrics": "metrics.parquet",
            "schema": "schema.json",
            **(
                {"interviews": "interviews.parquet"}
                if (run_dir / "interviews.parquet").exists()
                else {}
            ),
            **(
                {"reflections": "reflections.parquet"}
                if (run_dir / "reflections.parquet").exists()
                else {}
            ),
        },
        "environment": {
            "python": platform.python_version(),
            **{p: md.version(p) for p in ("numpy", "pyarrow", "mesa", "scipy")},
        },
    }


def _memory_stats(mem) -> dict | None:
    """What the episodic memory holds at the end (None without one)."""
    if mem is None:
        return None
    sources: dict[str, int] = {}
    for s in mem.note_source:
        if s is not None:
            sources[s] = sources.get(s, 0) + 1
    return {
        "embedding": mem.embedding.name,
        "entries": int((mem.kind >= 0).sum()),
        "written": int(mem.written.sum()),
        "reflections": int(mem.reflections.sum()),
        "agents_with_reflection": int((mem.note_tick >= 0).sum()),
        "latest_reflection_sources": sources,
    }


def _llm_stats(brain: Brain) -> dict:
    """Token and call totals of an LLM brain (zeros for the statistical brain)."""
    if not isinstance(brain, LLMBackedBrain):
        return {"model": None, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    backend = brain.backend
    stats = {
        "model": backend.name,
        "calls": int(brain.calls),
        "prompt_tokens": int(brain.prompt_tokens),
        "completion_tokens": int(brain.completion_tokens),
    }
    if isinstance(backend, CountsCacheHits):
        stats.update(cache_hits=int(backend.hits), cache_misses=int(backend.misses))
        backend = backend.backend
    if isinstance(backend, ServerPool) and len(backend.urls) > 1:  # a pool of servers
        stats.update(servers=len(backend.urls), failovers=int(backend.failovers))
    stats.update(
        pages_asked=int(brain.pages),
        fallback_share=round(float(brain.fallback_share), 6),
        auth_errors=int(brain.fallbacks.get("auth_error", 0)),
    )
    return stats


def saved_config(cfg: RunConfig) -> dict:
    """``cfg`` as written into a run directory: without credentials in the LLM server's URL."""
    raw = cfg.model_dump(mode="json")
    raw["llm"]["base_url"] = redact_url(raw["llm"]["base_url"])
    return raw
