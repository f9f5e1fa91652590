"""Agent memory: a fixed-size ring buffer of recent watches per agent, held as arrays.

Writes for a whole tick are vectorised; reading one agent's memory (for a prompt or for
``UserAgent.memory``) returns the entries newest first.
"""

from __future__ import annotations

import numpy as np


class MemoryStore:
    """items: (n_agents, size) int32 item indices (-1 empty); ratings: (n_agents, size) float32;
    ticks: (n_agents, size) int32; head: (n_agents,) int64 watches written so far (the agent's
    total watches; the buffer keeps the last ``size``); seen: (n_agents,) int64 impressions seen."""

    def __init__(self, n_agents: int, size: int = 20) -> None:
        self.size = size
        self.items = np.full((n_agents, size), -1, np.int32)
        self.ratings = np.full((n_agents, size), np.nan, np.float32)
        self.ticks = np.zeros((n_agents, size), np.int32)
        self.head = np.zeros(n_agents, np.int64)
        self.seen = np.zeros(n_agents, np.int64)

    def record(self, agents: np.ndarray, items: np.ndarray, ratings: np.ndarray, tick: int) -> None:
        """Append watches. agents, items, ratings: (m,) in the order they happened per agent."""
        if agents.size == 0:
            return
        order = np.argsort(agents, kind="stable")
        a, it, r = agents[order], items[order], ratings[order]
        starts = np.r_[0, np.flatnonzero(a[1:] != a[:-1]) + 1]
        counts = np.diff(np.r_[starts, a.size])
        rank = np.arange(a.size) - np.repeat(starts, counts)
        slot = (self.head[a] + rank) % self.size
        self.items[a, slot] = it
        self.ratings[a, slot] = r
        self.ticks[a, slot] = tick
        uniq = a[starts]
        self.head[uniq] += counts

    def recent(self, agent: int, n: int | None = None) -> list[dict]:
        """The agent's remembered watches, newest first: dicts with item, rating, tick."""
        filled = int(min(self.head[agent], self.size))
        slots = (int(self.head[agent]) - 1 - np.arange(filled)) % self.size
        out = [
            {
                "item": int(self.items[agent, s]),
                "rating": None
                if np.isnan(self.ratings[agent, s])
                else float(self.ratings[agent, s]),
                "tick": int(self.ticks[agent, s]),
            }
            for s in slots
        ]
        return out[:n] if n is not None else out

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint."""
        return {
            f"memory_{k}": getattr(self, k) for k in ("items", "ratings", "ticks", "head", "seen")
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for k in ("items", "ratings", "ticks", "head", "seen"):
            setattr(self, k, state[f"memory_{k}"].copy())
