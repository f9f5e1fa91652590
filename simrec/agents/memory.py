"""Agent memory: a fixed-size ring buffer of recent watches per agent, held as arrays.

Writes for a whole tick are vectorised; reading one agent's memory (for a prompt or for
``UserAgent.memory``) returns the entries newest first.
"""

from __future__ import annotations

import json

import numpy as np

from simrec.domain import DOMAINS, Domain


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


# ---------------------------------------------------------------------- episodic memory

KINDS = ("recommended", "watched", "felt", "shared")
FEELINGS = ("delighted", "satisfied", "neutral", "bored", "annoyed")
# how memorable a page's feeling is: strong feelings either way stick
_FEELING_IMPORTANCE = np.array([0.8, 0.5, 0.2, 0.5, 0.8], np.float32)
_SKIP_IMPORTANCE = np.float32(0.1)
_SHARE_IMPORTANCE = np.float32(0.9)
_FIELDS = ("kind", "item", "tick", "rating", "importance", "feeling")


class EpisodicMemory:
    """A bounded stream of what happened to each agent, retrieved by recency, importance and
    relevance (Park et al., 2023), with periodic reflections.

    Entries, per agent up to ``capacity``: ``recommended`` (an item the agent examined and
    skipped), ``watched`` (with its rating, if any), ``felt`` (the feeling a page left, anchored
    to the page's first watched item, else its first item) and ``shared`` (an item shared with
    friends). Arrays are (n_agents, capacity): kind int8 (-1 empty), item int32, tick int32,
    rating float32 (NaN: none), importance float32 in [0, 1], feeling int8 (-1: none).

    Importance: skipped 0.1; watched 0.4 + 0.6 x how far the rating is from the middle of the
    scale (0.4 unrated); felt by the feeling's strength; shared 0.9. Recency is a real
    exponential decay, ``2 ** (-age / half_life)`` with age in ticks. A full agent keeps the
    ``capacity`` entries with the highest importance x recency (newer first on ties).

    Retrieval for a page scores every entry as ``w_recency x recency + w_importance x
    importance + w_relevance x relevance`` (relevance: the entry item's best cosine with the
    page's items in ``embedding``) and returns the best ``n``.

    Reflection: once an agent has written ``reflect_every`` watched/felt/shared entries since
    its last reflection it is ``due``; its note ("what I've learned about my taste and about
    this service") is replaced by the brain's (``reflect_with="llm"``, when the brain can) or
    :meth:`template_note`'s.
    """

    def __init__(
        self,
        n_agents: int,
        embedding,
        *,
        capacity: int = 64,
        half_life: float = 7.0,
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        reflect_every: int = 10,
        reflect_with: str = "llm",
    ) -> None:
        self.embedding = embedding
        self.reflect_with = reflect_with
        self.capacity, self.half_life = capacity, float(half_life)
        self.weights = tuple(float(w) for w in weights)
        self.reflect_every = reflect_every
        shape = (n_agents, capacity)
        self.kind = np.full(shape, -1, np.int8)
        self.item = np.full(shape, -1, np.int32)
        self.tick = np.zeros(shape, np.int32)
        self.rating = np.full(shape, np.nan, np.float32)
        self.importance = np.zeros(shape, np.float32)
        self.feeling = np.full(shape, -1, np.int8)
        self.pending = np.zeros(n_agents, np.int64)  # reflectable entries since the last note
        self.written = np.zeros(n_agents, np.int64)
        self.reflections = np.zeros(n_agents, np.int64)
        self.note_tick = np.full(n_agents, -1, np.int32)
        self.notes: list[str | None] = [None] * n_agents
        self.note_source: list[str | None] = [None] * n_agents

    # ------------------------------------------------------------------ writing

    def recency(self, ticks: np.ndarray, now: int) -> np.ndarray:
        """2 ** (-(now - ticks) / half_life), float64, same shape as ``ticks``."""
        return np.exp2(-(now - ticks.astype(np.float64)) / self.half_life)

    def write(
        self,
        tick: int,
        agents: np.ndarray,
        kinds: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        importance: np.ndarray,
        feelings: np.ndarray,
    ) -> None:
        """Append entries, all (m,), in the order they happened per agent; full agents keep
        their ``capacity`` most important x recent entries."""
        if agents.size == 0:
            return
        order = np.argsort(agents, kind="stable")
        a = agents[order]
        starts = np.r_[0, np.flatnonzero(a[1:] != a[:-1]) + 1]
        counts = np.diff(np.r_[starts, a.size])
        uniq = a[starts]
        group = np.repeat(np.arange(uniq.size), counts)
        rank = np.arange(a.size) - np.repeat(starts, counts)
        width = self.capacity + int(counts.max())
        new = {
            "kind": kinds,
            "item": items,
            "tick": np.full(a.size, tick),
            "rating": ratings,
            "importance": importance,
            "feeling": feelings,
        }
        cand = {}
        for name in _FIELDS:
            old = getattr(self, name)
            block = np.empty((uniq.size, width), old.dtype)
            block[:, : self.capacity] = old[uniq]
            block[:, self.capacity :] = _empty(name, old.dtype)
            block[group, self.capacity + rank] = np.asarray(new[name])[order].astype(old.dtype)
            cand[name] = block
        score = np.where(
            cand["kind"] >= 0,
            cand["importance"] * self.recency(cand["tick"], tick),
            -np.inf,
        )
        # best first; among equals the later column (the newer entry) wins
        keep = width - 1 - np.argsort(-score[:, ::-1], axis=1, kind="stable")[:, : self.capacity]
        for name in _FIELDS:
            getattr(self, name)[uniq] = np.take_along_axis(cand[name], keep, axis=1)
        self.written[uniq] += counts
        reflectable = np.asarray(kinds)[order] > 0  # watched, felt, shared
        reflectable = np.bincount(group, weights=reflectable, minlength=uniq.size)
        self.pending[uniq] += reflectable.astype(np.int64)

    def record_tick(
        self,
        tick: int,
        agent: np.ndarray,
        item: np.ndarray,
        examined: np.ndarray,
        clicked: np.ndarray,
        rating: np.ndarray,
        scale,
        felt: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        shared: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """A tick's impressions (all (n,), in event order), the pages' feelings (agent,
        anchor item, feeling code) and shares (agent, item), as entries."""
        skipped = examined & ~clicked
        keep = skipped | clicked
        a, it, r = agent[keep], item[keep], rating[keep]
        c = clicked[keep]
        middle = (scale.low + scale.high) / 2
        strength = np.abs(scale.normalise(np.nan_to_num(r, nan=middle)) - 0.5) * 2
        imp = np.where(c, 0.4 + 0.6 * strength, _SKIP_IMPORTANCE)
        parts = [(a, np.where(c, 1, 0), it, np.where(c, r, np.nan), imp, np.full(a.size, -1))]
        if felt is not None and felt[0].size:
            fa, fi, fc = felt
            parts.append(
                (fa, np.full(fa.size, 2), fi, np.full(fa.size, np.nan), _FEELING_IMPORTANCE[fc], fc)
            )
        if shared is not None and shared[0].size:
            sa, si = shared
            parts.append(
                (
                    sa,
                    np.full(sa.size, 3),
                    si,
                    np.full(sa.size, np.nan),
                    np.full(sa.size, _SHARE_IMPORTANCE),
                    np.full(sa.size, -1),
                )
            )
        cols = [np.concatenate(p) for p in zip(*parts, strict=True)]
        self.write(tick, cols[0].astype(np.int64), *cols[1:])

    # ------------------------------------------------------------------ reading

    def retrieve(self, agent: int, now: int, page: np.ndarray | None, n: int) -> list[dict]:
        """The agent's ``n`` best entries for a page of items ``page`` (k,) (None: recency
        and importance only), best first: dicts with kind, item, tick, rating, feeling,
        importance, recency, relevance, score."""
        slots = np.flatnonzero(self.kind[agent] >= 0)
        if slots.size == 0 or n <= 0:
            return []
        rec = self.recency(self.tick[agent, slots], now)
        imp = self.importance[agent, slots].astype(np.float64)
        items = self.item[agent, slots].astype(np.int64)
        rel = (
            self.embedding.relevance(items, np.asarray(page, np.int64))
            if page is not None
            else np.zeros(slots.size)
        )
        wr, wi, wv = self.weights
        score = wr * rec + wi * imp + wv * rel
        order = np.lexsort((-self.tick[agent, slots], -score))[:n]
        out = []
        for o in order.tolist():
            s = slots[o]
            rating = float(self.rating[agent, s])
            f = int(self.feeling[agent, s])
            out.append(
                {
                    "kind": KINDS[int(self.kind[agent, s])],
                    "item": int(self.item[agent, s]),
                    "tick": int(self.tick[agent, s]),
                    "rating": None if np.isnan(rating) else rating,
                    "feeling": FEELINGS[f] if f >= 0 else None,
                    "importance": float(imp[o]),
                    "recency": float(rec[o]),
                    "relevance": float(rel[o]),
                    "score": float(score[o]),
                }
            )
        return out

    # ------------------------------------------------------------------ reflection

    def due(self) -> np.ndarray:
        """Agents (sorted int64) with ``reflect_every`` reflectable entries since their last
        reflection (none when ``reflect_every`` is 0)."""
        if self.reflect_every <= 0:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.pending >= self.reflect_every).astype(np.int64)

    def set_notes(self, agents: np.ndarray, notes: list[str], sources: list[str], tick: int):
        for agent, note, source in zip(agents.tolist(), notes, sources, strict=True):
            self.notes[agent], self.note_source[agent] = note, source
        self.note_tick[agents] = tick
        self.pending[agents] = 0
        self.reflections[agents] += 1

    def template_note(
        self, agent: int, genre_names, genres, scale, domain: Domain = DOMAINS["movies"]
    ) -> str:
        """A note written from the agent's memory alone, in ``domain``'s words: the genres it
        rated above and below its own average (or chose most, without ratings), how much of
        what the service showed it was worth choosing, and the genre it kept skipping.
        genres: (n_items, n_genres) CSR."""
        kind = self.kind[agent]
        watched = kind == 1
        skipped = kind == 0
        names = np.asarray(genre_names, dtype=object)
        taste = f"I have not {domain.verb_past} enough to know my taste yet."
        if watched.any():
            g = genres[self.item[agent, watched]].toarray().astype(np.float64)
            r = self.rating[agent, watched].astype(np.float64)
            if np.isfinite(r).any() and g.size:
                dev = np.nan_to_num(r - np.nanmean(r))
                score = dev @ g / np.maximum(g.sum(axis=0), 1)
                liked = [names[j] for j in np.argsort(-score, kind="stable")[:2] if score[j] > 0]
                disliked = [names[j] for j in np.argsort(score, kind="stable")[:1] if score[j] < 0]
                parts = []
                if liked:
                    parts.append(f"I enjoy {' and '.join(liked)}")
                if disliked:
                    parts.append(f"{disliked[0]} tends to disappoint me")
                if parts:
                    taste = "; ".join(parts) + "."
            elif g.size and g.sum():
                top = [names[j] for j in np.argsort(-g.sum(axis=0), kind="stable")[:2]]
                taste = f"I mostly {domain.verb} {' and '.join(top)}."
        shown = int(watched.sum() + skipped.sum())
        service = "I have not seen much of this service yet."
        if shown:
            service = (
                f"About {watched.sum() / shown:.0%} of what it shows me is worth {domain.verb_ing}"
            )
            if skipped.any() and genres.shape[1]:
                sg = np.asarray(genres[self.item[agent, skipped]].sum(axis=0)).ravel()
                if sg.max() > 0:
                    service += f"; it keeps suggesting {names[int(np.argmax(sg))]} I pass on"
            service += "."
        return f"About my taste: {taste} About this service: {service}"

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint (notes as UTF-8 JSON bytes)."""
        blob = json.dumps({"notes": self.notes, "sources": self.note_source}).encode()
        counters = ("pending", "written", "reflections")
        return {
            **{f"episodic_{k}": getattr(self, k) for k in (*_FIELDS, *counters)},
            "episodic_note_tick": self.note_tick,
            "episodic_notes": np.frombuffer(blob, np.uint8),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for k in (*_FIELDS, "pending", "written", "reflections", "note_tick"):
            setattr(self, k, state[f"episodic_{k}"].copy())
        blob = json.loads(bytes(state["episodic_notes"]).decode())
        self.notes, self.note_source = blob["notes"], blob["sources"]


def _empty(name: str, dtype) -> np.generic:
    """The value of an empty slot of field ``name``."""
    if name in ("kind", "item", "feeling"):
        return dtype.type(-1)
    if name == "rating":
        return dtype.type(np.nan)
    return dtype.type(0)
