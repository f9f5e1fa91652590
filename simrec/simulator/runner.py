"""Running a simulation end to end: validate, load, calibrate, simulate, write, resume.

Run directory layout (``datasets_out/<run_id>/``)::

    events/part-00000.parquet ...   one part per checkpoint interval
    users.parquet items.parquet metrics.parquet schema.json
    manifest.json                   written last, atomically: the run is complete
    _state/                         config + checkpoint while the run is unfinished
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from simrec import build, outputs
from simrec.agents.brains.base import Brain, LLMBackedBrain
from simrec.agents.brains.utility import UtilityBrain
from simrec.arrays import user_blocks_on
from simrec.config import EngineConfig, LLMConfig, RunConfig, identity_dump, validate_config
from simrec.data import Dataset
from simrec.data.dataset import feedback_kind
from simrec.data.schemas import (
    arrow_id_type,
    items_schema,
    metrics_schema,
    schema_document,
    users_schema,
)
from simrec.environments.base import Recommender
from simrec.environments.social import SocialSignal, build_graph
from simrec.errors import ConfigError, InputError, OutputExistsError
from simrec.limits import check_memory
from simrec.llm.base import LLMBackend
from simrec.llm.cache import CachedBackend
from simrec.simulator.model import SimulationModel
from simrec.simulator.recorder import EventRecorder
from simrec.trust import config_from_run_dir, redact_url
from simrec.version import __version__

STATE_DIR = "_state"
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
                cfg, checkpoint = _prepare_resume(
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
        _check_same_data(run_dir, data)
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
        _load_checkpoint(run_dir, model, checkpoint)
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
        _init_run_dir(run_dir, cfg, data)
        if cfg.output.overwrite:
            store.drop_from(0)  # the earlier run's parts at the URI (RUN/events: cleared)
    _write_catalog(run_dir, data)  # also on resume: a kill may have come before it was written
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
        _simulate(model, cfg, run_dir, progress, new_recorder)
        if cfg.engine.kind == "ray":
            model.adopt_shards()
    finally:
        if hasattr(model.shards, "close"):
            model.shards.close()
    timings["simulate_s"] = time.perf_counter() - t
    timings["policy_retrain_s"] = max(0.0, model.retrain_seconds - timings["policy_fit_s"])
    manifest, metrics = _finish(
        run_dir, cfg, data, model, utility, run_id, timings, resumed_from, t_start
    )
    return RunResult(run_dir, run_id, dict(model.totals), metrics, manifest)


def _simulate(
    model: SimulationModel,
    cfg: RunConfig,
    run_dir: Path,
    progress: bool,
    new_recorder: Callable[[int], EventRecorder],
) -> None:
    """Step the model to the last tick, closing an events part and saving a checkpoint every
    ``checkpoint_every`` ticks. A lost shard (ray engine) sends the run back to the last
    checkpoint, held in memory: the driver, the shards and the open events part start again
    from there, up to ``engine.max_restarts`` times."""
    from tqdm import tqdm

    from simrec.simulator.ray_engine import ShardLost

    every, ticks = cfg.simulation.checkpoint_every, cfg.simulation.ticks
    bar = tqdm(
        total=ticks, initial=model.tick, unit="tick", disable=not progress, desc="simulating"
    )
    restartable = hasattr(model.shards, "restart")
    last = (_copied(model.state()), model.recorder.part) if restartable else None
    try:
        while model.tick < ticks:
            try:
                model.step()
            except ShardLost as err:
                if last is None or model.shards.restarts >= cfg.engine.max_restarts:
                    raise
                _go_back(model, last, new_recorder, err)
                bar.reset(total=ticks)
                bar.update(model.tick)
                continue
            bar.update(1)
            bar.set_postfix(impressions=model.totals["impressions"], refresh=False)
            if model.tick % every == 0 or model.tick == ticks:
                model.recorder.close_part()
                state = model.state()
                _save_checkpoint(run_dir, state, model.recorder.part)
                if restartable:  # a copy: the driver's arrays change in place
                    last = (_copied(state), model.recorder.part)
                logger.debug(
                    "checkpoint after tick %d (next part %d)", model.tick, model.recorder.part
                )
    finally:
        model.recorder.abort()
        bar.close()


def _copied(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _go_back(
    model: SimulationModel,
    last: tuple[dict, int],
    new_recorder: Callable[[int], EventRecorder],
    err: Exception,
) -> None:
    """Restart the run from the checkpoint ``last`` (state, next events part) after a lost
    shard: the open part is written again from its start."""
    state, part = last
    logger.warning(
        "%s at tick %d; restarting every shard from the checkpoint at tick %d",
        err,
        model.tick,
        int(json.loads(bytes(state["meta"]).decode())["tick"]),
    )
    model.recorder.abort()
    model.recorder = new_recorder(part)
    model.load_state(state)
    if model.retrain_every:
        model.fit_policy()  # as it stood after the latest retraining
    model.shards.restart(state)
    if model.retrain_every:
        model.shards.policy_changed()


def _init_run_dir(run_dir: Path, cfg: RunConfig, data: Dataset) -> None:
    if cfg.output.overwrite:
        outputs.clear_own(run_dir, "run")  # simrec's files only; anything else stays
    outputs.claim(run_dir, "run")
    state = run_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        state / "config.json",
        json.dumps({"config": saved_config(cfg), "data_hashes": data.file_hashes}, indent=2),
    )


def _write_catalog(run_dir: Path, data: Dataset) -> None:
    """schema.json and items.parquet: fixed by the data, so rewriting them changes nothing."""
    item_type = arrow_id_type(data.catalog.item_ids)
    source_type = arrow_id_type(data.interactions.user_ids)
    _atomic_write(
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


def _engine(engine: EngineConfig | dict | None) -> EngineConfig | None:
    if engine is None or isinstance(engine, EngineConfig):
        return engine
    return validate_config({"engine": engine}, "engine").engine


def _prepare_resume(
    run_dir: Path,
    allow_import: Iterable[str],
    base_url: str | list[str] | None,
    llm_cache: str | None,
    engine: EngineConfig | None = None,
    locations: dict[str, str | None] | None = None,
) -> tuple[RunConfig, dict | None]:
    """The saved config (made safe) and checkpoint of the unfinished run in ``run_dir``; checks
    everything and deletes nothing."""
    if outputs.is_run_manifest(run_dir / "manifest.json"):
        raise InputError(
            f"{run_dir}: the run is already complete (manifest.json exists); nothing to resume"
        )
    for sub in (STATE_DIR, "events"):
        if (run_dir / sub).is_symlink():
            raise InputError(
                f"{run_dir}: {sub}/ is a symbolic link; simrec resumes only a run directory it "
                f"wrote, and never writes or deletes through links"
            )
    state_file = run_dir / STATE_DIR / "config.json"
    if not state_file.is_file():
        raise InputError(
            f"{run_dir}: not an unfinished simrec run ({STATE_DIR}/config.json missing)"
        )
    saved = outputs.read_json(state_file, "a run's saved config")
    if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("data_hashes"), dict):
        raise InputError(f"{state_file}: expected the fields config and data_hashes")
    cfg = config_from_run_dir(
        saved["config"],
        str(state_file),
        allow_import=allow_import,
        base_url=base_url,
        cache=llm_cache,
        engine=engine,
        locations=locations,
    )
    cfg.output.dir = str(run_dir)  # where the run is, not where its saved config says
    ckpt_file = run_dir / STATE_DIR / "checkpoint.npz"
    checkpoint = None
    if ckpt_file.is_symlink() or (ckpt_file.exists() and not ckpt_file.is_file()):
        raise InputError(f"{ckpt_file}: expected a regular file")
    if ckpt_file.is_file():
        try:
            with np.load(ckpt_file, allow_pickle=False) as z:
                checkpoint = {k: z[k] for k in z.files}
            next_part = int(checkpoint["part"][0])
        except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as err:
            raise InputError(
                f"{ckpt_file}: truncated or corrupt checkpoint ({type(err).__name__}: {err}); "
                f"start over with --overwrite"
            ) from None
        if next_part < 0:
            raise InputError(f"{ckpt_file}: part: expected a part number >= 0, got {next_part}")
    return cfg, checkpoint


def _load_checkpoint(run_dir: Path, model: SimulationModel, checkpoint: dict) -> None:
    try:
        model.load_state(checkpoint)
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise InputError(
            f"{run_dir / STATE_DIR / 'checkpoint.npz'}: does not match this run's config and "
            f"data ({type(err).__name__}: {err}); start over with --overwrite"
        ) from None


def _check_same_data(run_dir: Path, data: Dataset) -> None:
    saved = json.loads((run_dir / STATE_DIR / "config.json").read_text())["data_hashes"]
    if saved != data.file_hashes:
        changed = sorted(set(saved.items()) ^ set(data.file_hashes.items()))
        raise InputError(
            f"{run_dir}: the input data changed since the run started "
            f"({', '.join(sorted({p for p, _ in changed}))}); cannot resume"
        )


def _save_checkpoint(run_dir: Path, state: dict[str, np.ndarray], next_part: int) -> None:
    with outputs.replacing(run_dir / STATE_DIR / "checkpoint.npz", ".tmp.npz") as f:
        np.savez(f, part=np.array([next_part]), **state)


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


def _finish(
    run_dir: Path,
    cfg: RunConfig,
    data: Dataset,
    model: SimulationModel,
    utility: UtilityBrain,
    run_id: str,
    timings: dict,
    resumed_from: int | None,
    started: float,
) -> tuple[dict, pd.DataFrame]:
    """Write metrics, users and, last, the manifest; returns the manifest and the metrics.
    ``utility``: the calibrated statistical brain (the LLM brains' fallback)."""
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
    manifest = _manifest(cfg, data, model, utility, run_id, timings, resumed_from, run_dir)
    _atomic_write(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    _remove_state(run_dir)
    return manifest, table.to_pandas()  # the typed columns that were written


def _manifest(
    cfg: RunConfig,
    data: Dataset,
    model: SimulationModel,
    utility: UtilityBrain,
    run_id: str,
    timings: dict,
    resumed_from: int | None,
    run_dir: Path,
) -> dict:
    import importlib.metadata as md

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
        if hasattr(model.shards, "summary")
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
    if isinstance(backend, CachedBackend):
        stats.update(cache_hits=int(backend.hits), cache_misses=int(backend.misses))
        backend = backend.backend
    if len(getattr(backend, "urls", ())) > 1:  # a pool of servers
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


def _remove_state(run_dir: Path) -> None:
    """The finished run's _state/: simrec's own files in it, then the folder if empty."""
    state = run_dir / STATE_DIR
    for name in ("config.json", "checkpoint.npz"):
        f = state / name
        if f.is_file() and not f.is_symlink():
            f.unlink()
    with contextlib.suppress(OSError):
        state.rmdir()


def _atomic_write(path: Path, text: str) -> None:
    outputs.atomic_write(path, text.encode("utf-8"))
