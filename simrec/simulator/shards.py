"""Where a model's agents are simulated: the ``Shards`` contract between the driver model and
its engine, the part of a tick each shard hands back, and how shards' agent states join into
one model's (the local engine, the model itself, is in :mod:`simrec.simulator.model`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["RemoteShards", "Shards", "TickPart", "join_agent_states"]


@dataclass
class TickPart:
    """What one shard's agents (``lo <= agent < hi``) did in a tick, for the driver.

    columns: event columns, each a list of arrays whose concatenation has one entry per row,
    rows in (page, agent, position) order; decided_by holds codes into ``vocab``, and
    ``new_labels`` are the labels first used this tick as (label, page, first agent).
    sessions: (s,) sorted agents who had a session; satisfaction, churned, session_count:
    (hi - lo,) the shard's state after the tick.
    """

    lo: int
    hi: int
    columns: dict[str, list[np.ndarray]]
    vocab: list[str]
    new_labels: list[tuple[str, int, int]]
    pages: int
    sessions: np.ndarray
    satisfaction: np.ndarray
    churned: np.ndarray
    session_count: np.ndarray


class Shards(Protocol):
    """Where a model's agents are simulated: in the model itself (the local engine) or in
    shards elsewhere (:mod:`simrec.engines`). The model is the driver either way: it owns the
    clock, the policy, the social signal, the recorder and the metrics."""

    def simulate_tick(self) -> list[TickPart]:
        """Every shard's tick, in agent order."""
        ...

    def after_tick(self, shares: dict[str, np.ndarray] | None) -> None:
        """Hand the tick's shares (and the social signal) back; agents write their memories;
        every shard's clock moves to the next tick."""
        ...

    def policy_changed(self) -> None:
        """The driver refitted its policy: the shards must use it from now on."""
        ...

    def agent_state(self) -> dict[str, np.ndarray]:
        """The agents' own state (what was watched, memories) for all agents, as
        :meth:`SimulationModel.agent_state` gives it for one shard."""
        ...

    def brain_counters(self) -> dict[str, Any] | None:
        """A stateful brain's counters over every shard (:meth:`StatefulBrain.state`, with
        the backend's ``cache_hits``, ``cache_misses`` and ``failovers``), or None."""
        ...


@runtime_checkable
class RemoteShards(Shards, Protocol):
    """Shards that live outside the driver's process (the ray engine): ``restarts`` so far,
    ``restart(state)`` every shard from a checkpoint after one was lost, ``close()`` their
    workers when the run ends, and ``summary()``, the manifest's ``engine``."""

    restarts: int

    def restart(self, state: dict[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...


def join_agent_states(states: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Shards' :meth:`SimulationModel.agent_state`, in agent order, as one model's."""
    if len(states) == 1:
        return states[0]
    out: dict[str, np.ndarray] = {}
    for key in states[0]:
        parts = [st[key] for st in states]
        if key == "watched_indptr":
            ends = np.cumsum([0] + [int(x[-1]) for x in parts[:-1]])
            out[key] = np.concatenate(
                [parts[0][:1]] + [x[1:] + e for x, e in zip(parts, ends, strict=True)]
            )
        elif key == "episodic_notes":
            blobs = [json.loads(bytes(x).decode()) for x in parts]
            joined = {k: [v for b in blobs for v in b[k]] for k in blobs[0]}
            out[key] = np.frombuffer(json.dumps(joined).encode(), np.uint8)
        else:
            out[key] = np.concatenate(parts)
    return out
