"""The tick loop of a run: step the model to its last tick, closing an events part and saving
a checkpoint every ``checkpoint_every`` ticks, and going back to the last checkpoint when a Ray
shard is lost."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simrec.config import RunConfig
from simrec.simulator import resume
from simrec.simulator.model import SimulationModel
from simrec.simulator.recorder import EventRecorder
from simrec.simulator.shards import RemoteShards

__all__ = ["simulate"]

logger = logging.getLogger(__name__)


def simulate(
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
    restartable = isinstance(model.shards, RemoteShards)
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
                resume.save_checkpoint(run_dir, state, model.recorder.part)
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
