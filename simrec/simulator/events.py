"""A tick's event rows: buffered page by page, then put in canonical order (user, page,
position) with timestamps and session and slate ids for the recorder; the few columns that state
and metrics need; and the columns the feedback loop keeps of what agents watched."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simrec.agents.memory import FEELINGS
from simrec.config import SimulationConfig
from simrec.rng import Streams

__all__ = [
    "PAGE_SECONDS",
    "SIM_LOG",
    "STATE_COLUMNS",
    "TickBuffer",
    "cascade_propensities",
    "felt_entries",
    "state_columns",
    "tick_events",
]

PAGE_SECONDS = 60  # a page's share of a session's clock
# what agents watched, in order, for the feedback loop's refits
SIM_LOG = {"agent": np.int64, "item": np.int64, "rating": np.float32, "tick": np.int32}


@dataclass
class TickBuffer:
    """A tick's event columns, each a list of per-page arrays, and the pages viewed."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pages: int = 0

    def add(self, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            self.columns.setdefault(k, []).append(v)


STATE_COLUMNS = {
    "agent": np.int64,
    "item": np.int64,
    "examined": bool,
    "clicked": bool,
    "rating": np.float32,
}


def state_columns(chunks: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The event columns state and metrics need (agent, item, examined, clicked, rating),
    concatenated from per-page ``chunks``."""
    if not chunks.get("agent"):
        return {name: np.zeros(0, dtype) for name, dtype in STATE_COLUMNS.items()}
    return {
        name: np.concatenate(chunks[name]).astype(dtype) for name, dtype in STATE_COLUMNS.items()
    }


def felt_entries(
    agents: np.ndarray, items: np.ndarray, clicked: np.ndarray, feeling: list
) -> dict[str, np.ndarray]:
    """The pages' feelings as memory entries: agent, anchor item (the page's first watched
    item, else its first item) and feeling code, for the views that have a feeling."""
    rows = np.array([j for j, f in enumerate(feeling) if f is not None], np.int64)
    first = np.where(clicked.any(axis=1), clicked.argmax(axis=1), 0)
    return {
        "felt_agent": agents[rows].astype(np.int64),
        "felt_item": items[rows, first[rows]].astype(np.int64),
        "felt_code": np.array([FEELINGS.index(feeling[j]) for j in rows], np.int64),
    }


def cascade_propensities(slates) -> np.ndarray:
    """(n, k) prefix propensities: as given, 1.0 for deterministic policies, NaN if unknown."""
    if slates.pscore_cascade is not None:
        return np.asarray(slates.pscore_cascade, np.float64)
    fill = 1.0 if slates.deterministic else np.nan
    return np.full(np.shape(slates.items), fill)


def tick_events(
    chunks: dict[str, list[np.ndarray]],
    *,
    tick: int,
    n_agents: int,
    sim: SimulationConfig,
    streams: Streams,
    vocab: list[str],
    shares: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """One tick's event columns in canonical order (user, page, position), with timestamps and
    session/slate ids. ``chunks``: per column, the arrays appended page by page. ``shares``
    (agent, item, recipients; sorted by agent, item) become ``share_*`` columns, each share
    stamped one second after the impression of the item it shares."""
    if not chunks.get("agent"):
        return {"tick": np.zeros(0, np.int32)}
    ev = {name: np.concatenate(parts) for name, parts in chunks.items()}
    order = np.argsort(ev["agent"], kind="stable")  # pages were appended in order: stable
    ev = {name: col[order] for name, col in ev.items()}
    agents = ev["agent"].astype(np.int64)
    start = streams.uniform("session-start", agents, tick, 0, 1)[:, 0]
    t0 = int(sim.start_time.timestamp()) + tick * sim.tick_seconds
    page = ev["page"].astype(np.int64)
    offset = (start * sim.tick_seconds * 0.9).astype(np.int64) + page * PAGE_SECONDS
    session = np.int64(tick) * n_agents + agents
    ev.update(
        tick=np.full(agents.size, tick, np.int32),
        timestamp=t0 + np.minimum(offset, sim.tick_seconds - 1),
        session_id=session,
        user_id=agents,
        slate_id=session * sim.max_pages + page,
        decided_by_vocab=np.asarray(vocab, dtype=object),
    )
    if shares is not None and shares["agent"].size:
        n_items = int(max(ev["item"].max(), shares["item"].max())) + 1
        shown = agents * n_items + ev["item"]
        order = np.argsort(shown, kind="stable")
        want = shares["agent"] * n_items + shares["item"]
        row = order[np.searchsorted(shown, want, sorter=order)]
        ev.update(
            share_agent=shares["agent"],
            share_item=shares["item"],
            share_recipients=shares["recipients"],
            share_timestamp=np.minimum(ev["timestamp"][row] + 1, t0 + sim.tick_seconds - 1),
            share_rating=ev["rating"][row],
            share_session=session[row],
        )
    return ev
