"""Running a simulation end to end: validate, load, calibrate, simulate, write, resume.

Run directory layout (``datasets_out/<run_id>/``)::

    events/part-00000.parquet ...   one part per checkpoint interval
    users.parquet items.parquet metrics.parquet schema.json
    manifest.json                   written last, atomically: the run is complete
    _state/                         config + checkpoint while the run is unfinished
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simrec import build, outputs
from simrec.agents.brains.base import LLMBackedBrain
from simrec.arrays import user_blocks_on
from simrec.config import EngineConfig, LLMConfig, RunConfig, identity_dump, validate_config
from simrec.data import Dataset
from simrec.environments.base import Recommender
from simrec.environments.social import SocialSignal, build_graph
from simrec.errors import ConfigError, InputError, OutputExistsError
from simrec.limits import check_memory
from simrec.llm.base import LLMBackend
from simrec.simulator.loop import simulate
from simrec.simulator.manifest import RunContext, saved_config
from simrec.simulator.model import SimulationModel
from simrec.simulator.recorder import EventRecorder
from simrec.simulator.resume import check_same_data, load_checkpoint, prepare_resume
from simrec.simulator.rundir import STATE_DIR, finish, init_run_dir, write_catalog
from simrec.simulator.shards import RemoteShards

__all__ = ["DEFAULT_OUT", "RunResult", "run", "run_id_for", "saved_config"]

logger = logging.getLogger(__name__)
DEFAULT_OUT = Path("datasets_out")


@dataclass
class RunResult:
    """What a run produced. ``metrics``: one row per tick."""

    run_dir: Path
    run_id: str
    counts: dict[str, int]
    metrics: pd.DataFrame
    manifest: dict[str, Any] = field(repr=False)

    @property
    def events_dir(self) -> Path | str:
        """The folder of the event parts (RUN/events), or the URI they went to."""
        return (self.manifest.get("outputs") or {}).get("events_uri") or self.run_dir / "events"

    @property
    def llm_problem(self) -> str | None:
        """Why this run's LLM users cannot be trusted (the server refused the key, or more
        than ``llm.max_fallback_share`` of the pages fell back to the statistical brain), or
        None. Everything is written either way; the CLI then exits with status 3."""
        llm = self.manifest.get("llm") or {}
        if not llm.get("pages_asked"):
            return None
        share, limit = llm["fallback_share"], self.manifest["config"]["llm"]["max_fallback_share"]
        if llm["auth_errors"]:
            return (
                f"the LLM server refused {llm['auth_errors']:,} requests as unauthorised (HTTP "
                f"401/403): check llm.api_key_env and --base-url; {share:.0%} of the LLM's pages "
                f"were decided by the statistical fallback"
            )
        if share > limit:
            return (
                f"{share:.0%} of the LLM's pages fell back to the statistical brain (more than "
                f"llm.max_fallback_share {limit:.0%}); see fallbacks in manifest.json"
            )
        return None

    def events(self) -> pd.DataFrame:
        """All events as a DataFrame (reads every part)."""
        return outputs.read_events(self.run_dir, manifest=self.manifest, own=True).to_pandas()


@dataclass(frozen=True)
class _Given:
    """Parts the caller passed as objects instead of naming them in the config."""

    data: Dataset | None = None
    policy: Recommender | None = None
    backend: LLMBackend | None = None


def run_id_for(cfg: RunConfig) -> str:
    """``cfg.name``, or ``run-<hash>`` of everything that shapes the events."""
    if cfg.name:
        return cfg.name
    # where things are written, the batch size and the cache file do not shape the events
    shaping = identity_dump(
        cfg,
        exclude={
            "output": True,
            "engine": True,
            "simulation": {"batch_size"},
            "llm": {"cache", "concurrency", "api_key_env", "max_fallback_share"},
        },
    )
    return "run-" + hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]


def _check_out_dir(run_dir: Path, overwrite: bool) -> None:
    """May a new run be written to ``run_dir``? (see :mod:`simrec.outputs`)."""
    if not outputs.check_out_dir(run_dir, "run"):
        return
    if outputs.is_run_manifest(run_dir / "manifest.json"):
        if not overwrite:
            raise OutputExistsError(
                f"{run_dir}: already holds a complete run; pass --overwrite to replace it "
                f"or choose another --out"
            )
    elif (run_dir / STATE_DIR).exists() and not overwrite:
        raise OutputExistsError(
            f"{run_dir}: holds an unfinished run; continue it with `simrec run --resume "
            f"{run_dir}`, or pass --overwrite to start over"
        )


def run(
    config: RunConfig | dict | str | Path | None = None,
    *,
    policy: Recommender | None = None,
    backend: LLMBackend | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
    per_agent: bool = False,
    data: Dataset | None = None,
    allow_import: Iterable[str] = (),
    base_url: str | list[str] | None = None,
    llm_cache: str | None = LLMConfig().cache,
    engine: EngineConfig | dict | None = None,
    locations: dict[str, str | None] | None = None,
) -> RunResult:
    """Run a simulation and write it to its run directory.

    ``config``: a RunConfig, a mapping, or a YAML/TOML path (None: defaults). ``resume``: the
    directory of an unfinished run to continue; its own saved config is used. ``data``: an
    already loaded dataset to calibrate on instead of the one ``config.data`` names (the
    fidelity report passes its training split; such runs cannot be resumed). On resume the
    saved config is data, not instructions (:func:`simrec.trust.config_from_run_dir`): a
    ``module:Class`` policy in it is imported only when named in ``allow_import``, and the LLM
    server is ``base_url`` and its response cache ``llm_cache``, never the ones saved, and
    every file, folder or URI the saved config names is the one in ``locations`` (field ->
    value, :data:`simrec.trust.LOCATIONS`: ``{"data.path": "ratings.csv"}``), passed again.
    The run directory is locked while it runs.

    ``policy``: a Recommender object to use instead of the one ``config.policy`` names (its
    ``name`` is recorded; exploration from the config still wraps it); ``backend``: an
    LLMBackend object for LLM brains instead of the one ``config.llm`` names. A run started
    with either is resumed by passing the same objects again.

    ``engine``: where a resumed run is simulated (default: local, whatever engine started it;
    the engine never changes the results). A new run's engine is ``config.engine``.
    """
    if data is not None and resume is not None:
        raise ValueError("run(): data= cannot be combined with resume=")
    t_start = time.perf_counter()
    if resume is not None:
        run_dir, cfg = Path(resume), None
        if not run_dir.is_dir() or run_dir.is_symlink():
            raise InputError(f"{run_dir}: no such run directory to resume (or a symbolic link)")
    else:
        cfg = build.as_config(config)
        if policy is not None:  # recorded under its own name
            policy = build.make_policy(policy)
            cfg = cfg.model_copy(deep=True)
            cfg.policy.name = str(policy.name)
        run_dir = Path(cfg.output.dir) if cfg.output.dir else DEFAULT_OUT / run_id_for(cfg)
        _check_out_dir(run_dir, cfg.output.overwrite)
    created = not run_dir.exists()
    try:
        with outputs.locked(run_dir):
            if resume is not None:
                cfg, checkpoint = prepare_resume(
                    run_dir, allow_import, base_url, llm_cache, _engine(engine), locations
                )
            else:
                _check_out_dir(run_dir, cfg.output.overwrite)  # again, now that it is ours
                checkpoint = None
            parts = _Given(data, policy, backend)
            return _run(
                run_dir, cfg, checkpoint, parts, resume is not None, progress, per_agent, t_start
            )
    finally:
        if created:  # failed before writing anything: leave no trace
            outputs.remove_if_bare(run_dir)


def _run(
    run_dir: Path,
    cfg: RunConfig,
    checkpoint: dict | None,
    given: _Given,
    resume: bool,
    progress: bool,
    per_agent: bool,
    t_start: float,
) -> RunResult:
    timings: dict[str, float] = {}
    if cfg.engine.kind == "ray":
        t = time.perf_counter()
        _check_ray(cfg, per_agent)  # starts or joins the Ray cluster
        timings["engine_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    check_memory(cfg)  # a synthetic world's size is known before it is made
    data = build.load_data(cfg) if given.data is None else given.data
    cfg = build.with_impressions(cfg, data)  # brain settings an impression log tells
    timings["load_s"] = time.perf_counter() - t
    check_memory(cfg, data.interactions.n_users, data.catalog.n_items)
    t = time.perf_counter()
    blocks = None
    if cfg.engine.kind == "ray":  # the per-user blocks of the calibration run as Ray tasks
        from simrec.simulator.ray_engine import RayBlocks, connect

        blocks = RayBlocks(connect(cfg.engine))
    with user_blocks_on(blocks):
        utility, personas = build.calibrate(cfg, data)
    brain, memory = build.make_brain(cfg, utility, data, backend=given.backend)
    policy = build.make_policy(
        cfg.policy if given.policy is None else given.policy,
        exploration=None if given.policy is None else cfg.policy.exploration,
    )
    social = None
    if cfg.social.graph != "none":
        graph = build_graph(cfg.social, data, personas, cfg.seed)
        if graph.file_sha256 is not None:  # an input like the data: resume checks it too
            data.file_hashes[str(cfg.social.path)] = graph.file_sha256
        social = SocialSignal(graph, cfg.social, data.catalog.n_items)
    timings["fit_s"] = time.perf_counter() - t

    if resume:
        check_same_data(run_dir, data)
    model = SimulationModel(
        data=data,
        personas=personas,
        brain=brain,
        policy=policy,
        sim=cfg.simulation,
        seed=cfg.seed,
        per_agent=per_agent,
        retrain_every=cfg.policy.retrain_every,
        social=social,
        memory=memory,
    )
    if checkpoint is not None:
        load_checkpoint(run_dir, model, checkpoint)
        logger.info(
            "%s: resuming at tick %d (event part %d)",
            run_dir,
            model.tick,
            int(checkpoint["part"][0]),
        )
    elif resume:
        logger.info("%s: no checkpoint yet; starting the run again from tick 0", run_dir)
    t = time.perf_counter()
    model.fit_policy()  # on resume: as it stood after the latest retraining
    timings["policy_fit_s"] = time.perf_counter() - t
    model.probe_policy()
    if cfg.engine.kind == "ray":
        from simrec.simulator.ray_engine import RayShards

        shard_parts: dict[str, Any] = {
            "data": data,
            "personas": personas,
            "brain": brain,
            "policy": policy,
            "sim": cfg.simulation,
            "seed": cfg.seed,
            "social": social,
            "memory": memory,
            "cwd": str(Path.cwd()),
        }
        if isinstance(brain, LLMBackedBrain):  # clients and caches are made in each shard
            shard_parts.update(brain=None, memory=None, llm=(cfg, utility, given.backend))
        model.shards = RayShards(model, cfg.engine, shard_parts, state=checkpoint)
        timings["shards_start_s"] = model.shards.start_s
        model.shards.calibration_tasks = blocks.tasks

    # everything validated: from here on the run directory is written
    store = outputs.EventsStore(run_dir, cfg.output.events_uri)
    store.claim()  # a URI: empty, or this run's own
    if resume:
        store.drop_from(int(checkpoint["part"][0]) if checkpoint is not None else 0)
    else:
        init_run_dir(run_dir, cfg, data)
        if cfg.output.overwrite:
            store.drop_from(0)  # the earlier run's parts at the URI (RUN/events: cleared)
    write_catalog(run_dir, data)  # also on resume: a kill may have come before it was written
    run_id = run_id_for(cfg)

    def new_recorder(part: int) -> EventRecorder:
        return EventRecorder(
            store,
            run_id=run_id,
            policy=policy.name,
            item_ids=data.catalog.item_ids,
            row_group_size=cfg.output.row_group_size,
            compression_level=cfg.output.compression_level,
            part=part,
        )

    model.recorder = new_recorder(0 if checkpoint is None else int(checkpoint["part"][0]))
    resumed_from = model.tick if resume else None
    t = time.perf_counter()
    try:
        simulate(model, cfg, run_dir, progress, new_recorder)
        if cfg.engine.kind == "ray":
            model.adopt_shards()
    finally:
        if isinstance(model.shards, RemoteShards):
            model.shards.close()
    timings["simulate_s"] = time.perf_counter() - t
    timings["policy_retrain_s"] = max(0.0, model.retrain_seconds - timings["policy_fit_s"])
    manifest, metrics = finish(
        RunContext(run_dir, cfg, data, model, utility, run_id, timings, resumed_from, t_start)
    )
    return RunResult(run_dir, run_id, dict(model.totals), metrics, manifest)


def _engine(engine: EngineConfig | dict | None) -> EngineConfig | None:
    if engine is None or isinstance(engine, EngineConfig):
        return engine
    return validate_config({"engine": engine}, "engine").engine


def _check_ray(cfg: RunConfig, per_agent: bool) -> None:
    """The ray engine can run this config: ray is installed, the cluster answers, and nothing
    asks for what only the local engine does."""
    from simrec.simulator.ray_engine import connect

    if per_agent:
        raise ConfigError(
            "engine.kind: 'ray' simulates agents in batches; the per-agent mode runs only with "
            "the local engine"
        )
    connect(cfg.engine)
