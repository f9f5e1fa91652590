"""UserAgent: one simulated user as a Mesa agent.

The hot path never loops over agents: the state a page decision reads (tastes, traits,
satisfaction) lives in arrays indexed by ``agent.index``. The agent object is the handle a person
(or an LLM prompt) uses to look at one user, and ``step()`` is the classic per-agent idiom:
the agent decides alone whether to visit and browses its pages by itself. It produces exactly
the events of the batched path (randomness is keyed by agent, not by call order); the
benchmark uses it as the baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import mesa
import numpy as np

if TYPE_CHECKING:
    from simrec.agents.brains.base import Brain
    from simrec.agents.memory import MemoryStore
    from simrec.agents.persona import Personas


class Population(Protocol):
    """What a UserAgent reads of the model it lives in (arrays indexed by agent)."""

    personas: Personas
    memory: MemoryStore
    satisfaction: np.ndarray
    churned: np.ndarray
    brain: Brain
    tick: int

    def browse(self, agents: np.ndarray) -> None:
        """Sessions for ``agents`` (m,) sorted int64: pages until each one leaves."""
        ...


class UserAgent(mesa.Agent):
    """A simulated user. ``index`` addresses its rows in the model's arrays."""

    model: Population  # type: ignore[assignment]

    def __init__(self, model: mesa.Model, index: int) -> None:
        super().__init__(model)
        self.index = int(index)

    @property
    def persona(self) -> str:
        """The written profile of this user."""
        return self.model.personas.profiles[self.index]

    @property
    def memory(self) -> list[dict]:
        """Remembered watches, newest first (item index, rating, tick)."""
        return self.model.memory.recent(self.index)

    @property
    def satisfaction(self) -> float:
        return float(self.model.satisfaction[self.index])

    @property
    def churned(self) -> bool:
        return bool(self.model.churned[self.index])

    def step(self) -> None:
        """Per-agent idiom: decide alone whether to visit; if so, browse page by page alone."""
        me = np.array([self.index], dtype=np.int64)
        m = self.model
        if m.churned[self.index]:
            return
        if m.brain.arrivals(me, m.tick, m.satisfaction)[0]:
            m.browse(me)
