"""What a run saves at each checkpoint and loads to resume: the part of
:class:`~simrec.simulator.model.SimulationModel` that gathers the driver's state, every shard's
agent state and the brain's counters, and puts them back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import scipy.sparse as sp

from simrec.agents.brains.base import LLMBackedBrain, StatefulBrain
from simrec.llm.base import backend_counters, load_backend_counters
from simrec.simulator.events import SIM_LOG

__all__ = ["Checkpointing"]


class Checkpointing:
    """Checkpoints for :class:`~simrec.simulator.model.SimulationModel`, which holds what these
    methods read and set: ``tick``, ``totals``, ``decided_by_vocab``, ``datacollector``,
    ``shards``, ``satisfaction``, ``churned``, ``session_count``, ``sim_log``, ``social``,
    ``brain``, ``owned``, ``watched``, ``memory``, ``episodic`` and ``_code``."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue after this tick (randomness has no state to save):
        the driver's state and every shard's :meth:`agent_state`, whichever engine ran."""
        meta = {
            "tick": self.tick,
            "totals": self.totals,
            "vocab": self.decided_by_vocab,
            "metrics": self.datacollector.model_vars,
            "brain": self.shards.brain_counters(),
        }
        return {
            "satisfaction": self.satisfaction,
            "churned": self.churned,
            "session_count": self.session_count,
            "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
            **self.shards.agent_state(),
            **{
                f"sim_log_{k}": np.concatenate(v) if v else np.zeros(0, SIM_LOG[k])
                for k, v in self.sim_log.items()
            },
            **(self.social.state() if self.social is not None else {}),
        }

    def brain_counters(self) -> dict[str, Any] | None:
        """This model's brain's counters (None for a brain without state): its
        :meth:`StatefulBrain.state` and, for an LLM brain, its backend's cache hits and misses
        and the server pool's failovers (:func:`~simrec.llm.base.backend_counters`)."""
        if not isinstance(self.brain, StatefulBrain):
            return None
        out = dict(self.brain.state())
        if isinstance(self.brain, LLMBackedBrain):
            out.update(backend_counters(self.brain.backend))
        return out

    def load_brain_counters(self, counters: dict[str, Any] | None) -> None:
        """Set the brain's counters (from :meth:`brain_counters`, e.g. summed over shards)."""
        if counters is None or not isinstance(self.brain, StatefulBrain):
            return
        self.brain.load_state(counters)
        if isinstance(self.brain, LLMBackedBrain):
            load_backend_counters(self.brain.backend, counters)

    def agent_state(self) -> dict[str, np.ndarray]:
        """The state of the agents this model owns (rows ``lo:hi`` of each per-agent array):
        what they watched (CSR rows), their memories and episodic memories. Shards' states
        join into one model's with :func:`join_agent_states`."""
        lo, hi = self.owned
        c = self.watched[lo:hi]
        out = {"watched_indptr": c.indptr, "watched_indices": c.indices}
        rows = {**self.memory.state(), **(self.episodic.state() if self.episodic else {})}
        for key, value in rows.items():
            if key == "episodic_notes":
                blob = json.loads(bytes(value).decode())
                mine = {k: v[lo:hi] for k, v in blob.items()}
                out[key] = np.frombuffer(json.dumps(mine).encode(), np.uint8)
            else:
                out[key] = value[lo:hi]
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        meta = json.loads(bytes(state["meta"]).decode())
        self.tick = int(meta["tick"])
        self.totals = {k: int(v) for k, v in meta["totals"].items()}
        self.decided_by_vocab, self._vocab_index = [], {}
        for label in meta["vocab"]:
            self._code(label)
        self.datacollector.model_vars = {k: list(v) for k, v in meta["metrics"].items()}
        self.load_brain_counters(meta.get("brain"))
        self.satisfaction = state["satisfaction"].copy()
        self.churned = state["churned"].copy()
        self.session_count = state["session_count"].copy()
        self.load_agent_state(state)
        self.sim_log = {k: [state[f"sim_log_{k}"].copy()] for k in SIM_LOG}
        if self.social is not None:
            self.social.load_state(state)

    def load_agent_state(self, state: dict[str, np.ndarray]) -> None:
        """Set every agent's own state (what was watched, memories) from a checkpoint or from
        the shards' joined :meth:`agent_state`."""
        idx = state["watched_indices"]
        self.watched = sp.csr_matrix(
            (np.ones(idx.size, np.float32), idx.copy(), state["watched_indptr"].copy()),
            shape=self.watched.shape,
        )
        self.memory.load_state(state)
        if self.episodic is not None:
            self.episodic.load_state(state)

    def adopt_shards(self) -> None:
        """Take the agents' state and the brain's counters from the shards, so that what is
        written at the end (users, reflections, interviews, the manifest) sees them."""
        self.load_agent_state(self.shards.agent_state())
        self.load_brain_counters(self.shards.brain_counters())
