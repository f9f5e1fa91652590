"""The Brain contract: a whole page batch in, one decision per page view out.

:class:`Brain` declares everything the simulator calls on every brain: ``arrivals`` (who
starts a session this tick), ``decide`` (a :class:`PageBatch` in, :class:`PageDecisions` out),
``session_value`` and ``end_sessions`` (satisfaction and churn after the tick's sessions).
What only some brains can do is a small protocol of its own, checked with ``isinstance``:
:class:`StatefulBrain` (state saved in checkpoints), :class:`ReflectiveBrain` (writes memory
notes itself) and :class:`LLMBackedBrain` (asks a language model; its calls and fallbacks are
counted in the manifest).

A brain sees the simulation only through a :class:`BrainContext` (personas, catalog, rating
scale, memories, the tick length) carried by each batch, never the model itself.
``PageBatch`` is a ``Sequence[PageView]`` backed by arrays, so a vectorised brain never builds
per-agent objects; ``PageDecisions`` is a ``Sequence[PageDecision]`` backed by arrays.
DESIGN.md's list-of-objects signature is kept as the sequence interface; the arrays are what
make 100k agents per page cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from simrec.agents.memory import EpisodicMemory, MemoryStore
    from simrec.agents.persona import Personas
    from simrec.data.dataset import Catalog, RatingScale


@dataclass(frozen=True)
class BrainContext:
    """What a brain may read about the simulation besides the page itself.

    personas: one row per agent; catalog, scale: the items and the rating scale; memory: each
    agent's recent watches; episodic: the LLM brains' episodic memory (None without one);
    tick_seconds: the simulated length of a tick (to say "3 days ago" in prompts).
    """

    personas: Personas
    catalog: Catalog
    scale: RatingScale
    memory: MemoryStore
    episodic: EpisodicMemory | None = None
    tick_seconds: int = 86400


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
    consumed: (n, k) bool, the items each agent consumed before (only where
    ``simulation.repeats`` lets a slate show them; None otherwise).
    """

    agents: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    page: int
    tick: int
    social: np.ndarray | None = None
    context: BrainContext | None = field(default=None, repr=False)
    consumed: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.agents.shape[0])

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        agent = int(self.agents[j])
        items = self.items[j]
        persona, memory, titles = "", [], [""] * items.shape[0]
        if self.context is not None:
            persona = self.context.personas.profiles[agent]
            memory = self.context.memory.recent(agent)
            titles = [str(self.context.catalog.display_titles[i]) if i >= 0 else "" for i in items]
        return PageView(agent, persona, memory, items, titles, self.page, self.tick)

    def take(self, rows: np.ndarray) -> PageBatch:
        """The views at ``rows`` (r,) int, in that order, as a batch of their own."""
        return PageBatch(
            self.agents[rows],
            self.items[rows],
            self.scores[rows],
            self.page,
            self.tick,
            social=None if self.social is None else self.social[rows],
            context=self.context,
            consumed=None if self.consumed is None else self.consumed[rows],
        )


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
    """Decides what agents do; every method here is called by the simulator.

    Required: ``name`` (recorded as ``decided_by``) and the four methods below. Brains hold
    their own randomness (keyed by agent, tick and page, never by call order), so splitting a
    batch in two gives the same decisions: :func:`simrec.testing.check_brain` checks it.
    Arrays are indexed by agent; ``satisfaction`` (n_agents,) float32 in [0, 1].
    """

    name: str

    def arrivals(self, agents: np.ndarray, tick: int, satisfaction: np.ndarray) -> np.ndarray:
        """Which of ``agents`` (m,) int64 start a session at ``tick`` -> (m,) bool."""
        ...

    def decide(self, views: PageBatch) -> PageDecisions:
        """One decision per view, in order: clicked within examined, ratings only where
        clicked."""
        ...

    def session_value(self, watched_value: np.ndarray, watched: np.ndarray) -> np.ndarray:
        """What a session was worth (m,) float from the summed normalised ratings of what was
        watched (m,) and the number of items watched (m,)."""
        ...

    def end_sessions(
        self, agents: np.ndarray, tick: int, value: np.ndarray, satisfaction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """New satisfaction (m,) float32 and churn (m,) bool of ``agents`` (m,) sorted, after
        sessions worth ``value`` (m,)."""
        ...


@runtime_checkable
class StatefulBrain(Protocol):
    """A brain with state that changes during a run (counters, caches): saved in each
    checkpoint as JSON-able data and restored on resume."""

    def state(self) -> dict[str, Any]:
        """What to save; ``load_state(state())`` on a fresh brain restores it."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ReflectiveBrain(Protocol):
    """A brain that writes its agents' memory notes itself (``memory.reflect_with: llm``)."""

    def reflect(
        self, context: BrainContext, agents: np.ndarray, tick: int
    ) -> tuple[list[str], list[str]]:
        """A note (what the agent has learned) and its source per agent of ``agents`` (m,)."""
        ...


@runtime_checkable
class LLMBackedBrain(Protocol):
    """A brain that asks a language model: what the manifest counts about it.

    backend: the :class:`simrec.llm.LLMBackend` it asks; calls, prompt_tokens,
    completion_tokens: totals so far; pages: page views it was asked to decide; fallbacks:
    cause -> pages decided by the statistical fallback instead; fallback_share: their share.
    """

    backend: Any
    calls: int
    prompt_tokens: int
    completion_tokens: int
    pages: int
    fallbacks: dict[str, int]

    @property
    def fallback_share(self) -> float: ...
