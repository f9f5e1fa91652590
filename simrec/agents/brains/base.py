"""The Brain contract: a whole page batch in, one decision per page view out.

``decide`` takes a :class:`PageBatch` (a ``Sequence[PageView]`` backed by arrays, so a
vectorised brain never builds per-agent objects) and returns :class:`PageDecisions` (a
``Sequence[PageDecision]`` backed by arrays). DESIGN.md's list-of-objects signature is kept as
the sequence interface; the arrays are what make 100k agents per page cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from simrec.simulator.model import SimulationModel


@dataclass(frozen=True)
class PageView:
    """What one agent sees on one page."""

    agent: int
    persona: str
    memory: list[dict]
    items: np.ndarray  # (k,) item indices, -1 for empty slots
    titles: list[str]
    page: int
    tick: int


@dataclass(frozen=True)
class PageDecision:
    """What one agent did on one page. Arrays are (k,); rating is NaN where not rated."""

    examined: np.ndarray
    clicked: np.ndarray
    rating: np.ndarray
    leave: bool
    decided_by: str
    feeling: str | None = None
    reason: str | None = None


@dataclass
class PageBatch(Sequence[PageView]):
    """Pages shown to ``n`` agents at once.

    agents: (n,) int64 agent indices; items: (n, k) int64 item indices (-1 = empty slot);
    scores: (n, k) float32 policy scores; social: (n, k) float32 friends' share signal in [0, 1].
    """

    agents: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    page: int
    tick: int
    social: np.ndarray | None = None
    model: SimulationModel | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.agents.shape[0])

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        agent = int(self.agents[j])
        items = self.items[j]
        persona, memory, titles = "", [], [""] * items.shape[0]
        if self.model is not None:
            persona = self.model.personas.profiles[agent]
            memory = self.model.memory.recent(agent)
            titles = [str(self.model.catalog.titles[i]) if i >= 0 else "" for i in items]
        return PageView(agent, persona, memory, items, titles, self.page, self.tick)


@dataclass
class PageDecisions(Sequence[PageDecision]):
    """Decisions for a batch. examined, clicked: (n, k) bool; rating: (n, k) float32 (NaN = none);
    leave: (n,) bool; decided_by: (n,) str; feeling, reason: per row or None; for LLM brains
    llm_model, prompt_hash (per row) and prompt_tokens, completion_tokens ((n,) float, NaN =
    none) describe the call that decided each page."""

    examined: np.ndarray
    clicked: np.ndarray
    rating: np.ndarray
    leave: np.ndarray
    decided_by: np.ndarray
    feeling: list[str | None] | None = None
    reason: list[str | None] | None = None
    llm_model: list[str | None] | None = None
    prompt_hash: list[str | None] | None = None
    prompt_tokens: np.ndarray | None = None
    completion_tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.leave.shape[0])

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        return PageDecision(
            self.examined[j],
            self.clicked[j],
            self.rating[j],
            bool(self.leave[j]),
            str(self.decided_by[j]),
            None if self.feeling is None else self.feeling[j],
            None if self.reason is None else self.reason[j],
        )


@runtime_checkable
class Brain(Protocol):
    """Decides what agents do on their pages."""

    name: str

    def decide(self, views: PageBatch) -> PageDecisions:
        """One decision per view, in order."""
