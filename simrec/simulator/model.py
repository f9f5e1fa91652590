"""SimulationModel: a population of UserAgents browsing a recommender, one tick at a time.

Per tick: arrivals (activity x satisfaction), then pages for every agent in session, batched:
one ``recommend`` and one ``decide`` call per batch of agents per page. Events are buffered for
the tick, put in canonical order (user, page, position) and handed to the recorder; state
(satisfaction, churn, memory, what was consumed) is updated; the Mesa DataCollector records the
tick's aggregates.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import mesa
import numpy as np
import scipy.sparse as sp

from simrec.agents.brains.base import Brain, BrainContext, ReflectiveBrain
from simrec.agents.memory import EpisodicMemory, MemoryStore
from simrec.agents.persona import Personas
from simrec.agents.user import UserAgent
from simrec.config import REPEAT_LOGS, SimulationConfig
from simrec.data.agent_log import agent_log
from simrec.data.dataset import Dataset
from simrec.data.schemas import METRIC_COLUMNS
from simrec.environments.base import Recommender
from simrec.environments.social import SocialSignal
from simrec.metrics import entropy_bits, gini
from simrec.rng import Streams
from simrec.simulator.browsing import Browsing
from simrec.simulator.checkpoint import Checkpointing
from simrec.simulator.events import SIM_LOG, TickBuffer, state_columns, tick_events
from simrec.simulator.recorder import EventRecorder
from simrec.simulator.shards import Shards, TickPart

__all__ = ["SimulationModel"]

logger = logging.getLogger(__name__)


class InProcess:
    """The local engine: the model simulates all its agents itself."""

    def __init__(self, model: SimulationModel) -> None:
        self.model = model

    def simulate_tick(self) -> list[TickPart]:
        return [self.model.simulate_tick()]

    def after_tick(self, shares: dict[str, np.ndarray] | None) -> None:
        self.model.after_tick(shares)

    def policy_changed(self) -> None:
        pass

    def agent_state(self) -> dict[str, np.ndarray]:
        return self.model.agent_state()

    def brain_counters(self) -> dict[str, Any] | None:
        return self.model.brain_counters()


class SimulationModel(Browsing, Checkpointing, mesa.Model):
    """The simulation. ``step()`` runs one tick; ``recorder`` (optional) receives the events.
    Sessions page by page are :class:`~simrec.simulator.browsing.Browsing`'s; checkpoints
    :class:`~simrec.simulator.checkpoint.Checkpointing`'s.

    data: the dataset the personas came from (what each persona's source user already consumed
    is excluded from recommendations); personas: one row per agent.
    """

    def __init__(
        self,
        *,
        data: Dataset,
        personas: Personas,
        brain: Brain,
        policy: Recommender,
        sim: SimulationConfig,
        seed: int,
        recorder: EventRecorder | None = None,
        per_agent: bool = False,
        retrain_every: int | None = None,
        social: SocialSignal | None = None,
        memory: EpisodicMemory | None = None,
        owned: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.data = data
        self.retrain_every = retrain_every
        self.social = social
        self.retrain_seconds = 0.0
        self.streams = Streams(seed)
        self.personas, self.catalog, self.scale = personas, data.catalog, data.scale
        self.brain, self.policy, self.sim = brain, policy, sim
        self.recorder = recorder
        self._policy_name = getattr(policy, "name", type(policy).__name__)
        self.per_agent = per_agent
        self.n_agents = len(personas)
        # the agents this model simulates itself (a shard's range); the rest are elsewhere
        self.owned = (0, self.n_agents) if owned is None else (int(owned[0]), int(owned[1]))
        lo, hi = self.owned
        self.shards: Shards = InProcess(self)
        self.tick = 0
        self.satisfaction = np.full(self.n_agents, 0.5, np.float32)
        self.churned = np.zeros(self.n_agents, bool)
        self.session_count = np.zeros(self.n_agents, np.int64)  # sessions each agent had
        self.memory = MemoryStore(self.n_agents)
        self.episodic = memory  # LLM brains: what each agent remembers, retrieved for prompts
        self.context = BrainContext(
            personas, data.catalog, data.scale, self.memory, memory, sim.tick_seconds
        )
        self._item_genres = self.catalog.genres.astype(np.float64).tocsr()
        # (n_source_users, n_items): rows addressed by source user, not by agent; agents
        # that start as new people (simulation.inherit_history false) have consumed nothing
        self.seed_consumed = data.interactions.matrix(self.catalog.n_items)
        if sim.inherit_history is False:
            self.seed_consumed = sp.csr_matrix(self.seed_consumed.shape, dtype=np.float32)
        # simulation.repeats (None: on for a log that repeats): consumed items may be shown
        self.repeats = (
            sim.repeats
            if sim.repeats is not None
            else data.interactions.repeat_share() >= REPEAT_LOGS
        )
        self.watched = sp.csr_matrix((self.n_agents, self.catalog.n_items), dtype=np.float32)
        # what agents watched, in order: the feedback loop refits the policy on it
        self.sim_log: dict[str, list[np.ndarray]] = {k: [] for k in SIM_LOG}
        self.decided_by_vocab: list[str] = []
        self._vocab_index: dict[str, int] = {}
        self._new_labels: list[tuple[str, int, int]] = []  # labels first used this tick
        self._tick_ev: dict[str, np.ndarray] = {}  # the shard's rows, for after_tick
        self.totals = {k: 0 for k in ("sessions", "pages", "impressions", "clicks", "ratings")}
        # Mesa agents for the owned range only (a shard's model needs none of the others')
        UserAgent.create_agents(self, hi - lo, np.arange(lo, hi))
        self.datacollector = mesa.DataCollector(
            model_reporters={k: _reporter(k) for k in METRIC_COLUMNS}
        )
        self.last_metrics: dict[str, float] = {}
        self._buf = TickBuffer()

    # ------------------------------------------------------------------ a tick

    def step(self) -> None:
        """One tick: the shards' sessions (arrivals, pages, satisfaction), then the driver's
        bookkeeping (shares, events, metrics), the agents' memories, and a refit when due."""
        shares = self.close_tick(self.shards.simulate_tick())
        self.shards.after_tick(shares)
        self.tick += 1
        retrain = bool(self.retrain_every) and self.tick % self.retrain_every == 0
        if retrain and self.tick < self.sim.ticks:
            self.fit_policy()
            self.shards.policy_changed()
        self.last_metrics["retrained"] = retrain and self.tick < self.sim.ticks
        self.datacollector.collect(self)

    def simulate_tick(self) -> TickPart:
        """The shard's part of a tick: arrivals and sessions (batched or per agent) of the
        agents this model owns, their satisfaction and churn, what they watched."""
        self._buf = TickBuffer()
        self._new_labels = []
        lo, hi = self.owned
        if self.per_agent:
            self.agents.shuffle_do("step")
        else:
            alive = lo + np.flatnonzero(~self.churned[lo:hi])
            arriving = alive[self.brain.arrivals(alive, self.tick, self.satisfaction)]
            self.browse(arriving)
        chunks = self._buf.columns
        if chunks.get("session_agents"):
            sessions = np.concatenate(chunks["session_agents"])
            s_order = np.argsort(sessions, kind="stable")
            sessions = sessions[s_order]
            value = np.concatenate(chunks["session_value"])[s_order]
            watched = np.concatenate(chunks["session_watched"])[s_order]
            sat, churn = self.brain.end_sessions(
                sessions, self.tick, self.brain.session_value(value, watched), self.satisfaction
            )
            self.satisfaction[sessions] = sat
            self.churned[sessions] |= churn
            self.session_count[sessions] += 1
        else:
            sessions = np.zeros(0, np.int64)
        self._tick_ev = state_columns(chunks)
        self._watch(self._tick_ev)
        return TickPart(
            lo,
            hi,
            {k: v for k, v in chunks.items() if not k.startswith(("session_", "felt_"))},
            self.decided_by_vocab,
            self._new_labels,
            self._buf.pages,
            sessions,
            self.satisfaction[lo:hi],
            self.churned[lo:hi],
            self.session_count[lo:hi],
        )

    def after_tick(self, shares: dict[str, np.ndarray] | None) -> None:
        """The shard's end of a tick, once the driver has decided the shares: the agents
        write the tick into their episodic memories and reflect when due."""
        if self.episodic is not None:
            if shares is not None:
                lo, hi = self.owned
                mine = (shares["agent"] >= lo) & (shares["agent"] < hi)
                shares = {k: v[mine] for k, v in shares.items()}
            self._remember(self._tick_ev, self._buf.columns, shares)
        self._tick_ev = {}

    def fit_policy(self) -> None:
        """Fit the policy on the seed log plus what agents watched before the latest retraining
        point (tick 0 without ``retrain_every``), all in agent space (see :func:`agent_log`)."""
        t = time.perf_counter()
        cut = (self.tick // self.retrain_every) * self.retrain_every if self.retrain_every else 0
        log = {
            k: np.concatenate(v) if v else np.zeros(0, SIM_LOG[k]) for k, v in self.sim_log.items()
        }
        before = log["tick"] < cut
        t0 = int(self.sim.start_time.timestamp())
        watched = {
            "agent": log["agent"][before],
            "item": log["item"][before],
            "rating": log["rating"][before],
            "timestamp": t0 + log["tick"][before].astype(np.int64) * self.sim.tick_seconds,
        }
        self.policy.fit(agent_log(self.data, self.personas.source_user, watched), self.catalog)
        took = time.perf_counter() - t
        self.retrain_seconds += took
        logger.info(
            "policy %s fitted at tick %d on the seed log and %d watches (%.2f s)",
            self._policy_name,
            self.tick,
            int(before.sum()),
            took,
        )

    def _code(self, label: str, page: int = 0, agent: int = 0) -> int:
        if label not in self._vocab_index:
            self._vocab_index[label] = len(self.decided_by_vocab)
            self.decided_by_vocab.append(label)
            self._new_labels.append((label, page, agent))
        return self._vocab_index[label]

    # ------------------------------------------------------------------ end of tick

    def close_tick(self, parts: list[TickPart]) -> dict[str, np.ndarray] | None:
        """The driver's end of a tick over every shard's part: satisfaction and churn, the
        feedback-loop log, shares, the events (to the recorder) and the tick's metrics.
        Returns the shares (agent, item, recipients), or None without a social graph."""
        t, n_items = self.tick, self.catalog.n_items
        if len(parts) == 1 and parts[0].vocab is self.decided_by_vocab:
            chunks = parts[0].columns  # this model's own agents: codes are already ours
        else:
            chunks = self._merge(parts)
        for part in parts:
            lo, hi = part.lo, part.hi
            self.satisfaction[lo:hi] = part.satisfaction
            self.churned[lo:hi] = part.churned
            self.session_count[lo:hi] = part.session_count
        sessions = np.concatenate([p.sessions for p in parts]) if parts else np.zeros(0, np.int64)
        pages = sum(p.pages for p in parts)
        # state and metrics need only a few columns, in any order; putting every column in
        # canonical order and encoding it happens on the recorder's thread
        ev = state_columns(chunks)
        n_rows = int(ev["agent"].size)
        if self.retrain_every:
            clicked = ev["clicked"]
            for key in ("agent", "item", "rating"):
                self.sim_log[key].append(ev[key][clicked].astype(SIM_LOG[key]))
            self.sim_log["tick"].append(np.full(int(clicked.sum()), t, np.int32))
        shares = None
        if self.social is not None:
            watched = ev["clicked"]
            value = self.scale.normalise(ev["rating"][watched].astype(np.float64))
            sharer, item, recipients = self.social.share(
                ev["agent"][watched], ev["item"][watched], value, self.streams, t
            )
            shares = {"agent": sharer, "item": item, "recipients": recipients}
        if self.recorder is not None:
            self.recorder.add_tick(
                functools.partial(
                    tick_events,
                    chunks,
                    tick=t,
                    n_agents=self.n_agents,
                    sim=self.sim,
                    streams=self.streams,
                    vocab=list(self.decided_by_vocab),
                    shares=shares,
                )
            )
        clicks = int(ev["clicked"].sum())
        rated = ev["rating"][np.isfinite(ev["rating"])]
        n_shown_items = int(np.count_nonzero(np.bincount(ev["item"], minlength=n_items)))
        click_counts = np.bincount(ev["item"][ev["clicked"]], minlength=n_items)
        genre_counts = click_counts @ self._item_genres  # (n_genres,)
        self.last_metrics = {
            "tick": t,
            "active_users": int(sessions.size),
            "sessions": int(sessions.size),
            "pages": int(pages),
            "impressions": n_rows,
            "clicks": clicks,
            "ctr": clicks / n_rows if n_rows else 0.0,
            "mean_rating": float(rated.mean()) if rated.size else None,
            "coverage": n_shown_items / n_items,
            "consumed_coverage": int(np.count_nonzero(click_counts)) / n_items,
            "gini": gini(click_counts),
            "genre_entropy": entropy_bits(genre_counts),
            "mean_satisfaction": float(self.satisfaction[~self.churned].mean())
            if (~self.churned).any()
            else 0.0,
            "churned_users": int(self.churned.sum()),
            "shares": 0 if shares is None else int(shares["agent"].size),
        }
        for key, val in (
            ("sessions", sessions.size),
            ("pages", pages),
            ("impressions", n_rows),
            ("clicks", clicks),
            ("ratings", rated.size),
        ):
            self.totals[key] += int(val)
        return shares

    def _merge(self, parts: list[TickPart]) -> dict[str, list[np.ndarray]]:
        """Several shards' event columns as one model's would be: decided_by codes into this
        model's vocabulary (new labels numbered in the order one model would meet them, by
        page, then agent), rows in (page, agent, position) order."""
        new = sorted(
            {lab: (pg, a) for p in parts for lab, pg, a in p.new_labels}.items(),
            key=lambda kv: kv[1],
        )
        for label, _ in new:
            self._code(label)
        with_rows = [p for p in parts if p.columns.get("agent")]
        if not with_rows:
            return {}
        cols: dict[str, list[np.ndarray]] = {}
        for p in with_rows:
            lookup = np.array([self._vocab_index[x] for x in p.vocab], np.int32)
            for name, arrays in p.columns.items():
                col = np.concatenate(arrays)
                cols.setdefault(name, []).append(lookup[col] if name == "decided_by" else col)
        joined = {name: np.concatenate(arrays) for name, arrays in cols.items()}
        order = np.argsort(joined["page"], kind="stable")  # shards hold ascending agent ranges
        return {name: [col[order]] for name, col in joined.items()}

    def _remember(self, ev: dict[str, np.ndarray], chunks: dict, shares: dict | None) -> None:
        """Write the tick into the episodic memory, then let the agents that are due reflect
        (the brain's ``reflect`` when it has one and ``memory.reflect_with`` asks for it)."""
        felt = None
        if chunks.get("felt_agent"):
            felt = tuple(np.concatenate(chunks[f"felt_{c}"]) for c in ("agent", "item", "code"))
        shared = None if shares is None else (shares["agent"], shares["item"])
        mem = self.episodic
        mem.record_tick(
            self.tick,
            ev["agent"],
            ev["item"],
            ev["examined"],
            ev["clicked"],
            ev["rating"],
            self.scale,
            felt=felt,
            shared=shared,
        )
        due = mem.due()
        if due.size == 0:
            return
        if isinstance(self.brain, ReflectiveBrain) and mem.reflect_with == "llm":
            notes, sources = self.brain.reflect(self.context, due, self.tick)
        else:
            cat = self.catalog
            notes = [
                mem.template_note(a, cat.genre_names, cat.genres, self.scale, cat.domain)
                for a in due
            ]
            sources = ["template"] * due.size
        mem.set_notes(due, notes, sources, self.tick)

    def _watch(self, ev: dict[str, np.ndarray]) -> None:
        """The shard's own state after a tick: memories of what was watched, the views
        counted, and what each agent watched (excluded from later recommendations)."""
        clicked = ev["clicked"]
        a, items = ev["agent"][clicked], ev["item"][clicked]
        self.memory.record(a, items.astype(np.int32), ev["rating"][clicked], self.tick)
        self.memory.seen += np.bincount(ev["agent"], minlength=self.n_agents)
        if a.size:
            new = sp.csr_matrix((np.ones(a.size, np.float32), (a, items)), shape=self.watched.shape)
            self.watched = (self.watched + new).tocsr()


def _reporter(key: str):
    return lambda model: model.last_metrics.get(key)
