"""SimulationModel: a population of UserAgents browsing a recommender, one tick at a time.

Per tick: arrivals (activity x satisfaction), then pages for every agent in session, batched:
one ``recommend`` and one ``decide`` call per batch of agents per page. Events are buffered for
the tick, put in canonical order (user, page, position) and handed to the recorder; state
(satisfaction, churn, memory, what was consumed) is updated; the Mesa DataCollector records the
tick's aggregates.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import mesa
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from simrec.agents.brains.base import (
    Brain,
    BrainContext,
    PageBatch,
    ReflectiveBrain,
    StatefulBrain,
)
from simrec.agents.memory import FEELINGS, EpisodicMemory, MemoryStore
from simrec.agents.persona import Personas
from simrec.agents.user import UserAgent
from simrec.arrays import excluded_mask
from simrec.config import REPEAT_LOGS, SimulationConfig
from simrec.data.dataset import Dataset
from simrec.data.schemas import METRIC_COLUMNS
from simrec.environments.base import (
    PolicyRandomness,
    Recommender,
    Slates,
    check_slates,
    page_of,
    ranks_sessions,
)
from simrec.environments.social import SocialSignal
from simrec.errors import ConfigError
from simrec.metrics import entropy_bits, gini
from simrec.rng import Streams
from simrec.simulator.recorder import EventRecorder

_PAGE_SECONDS = 60
SESSION_RANK_MAX = 1000  # slots a session ranking may hold per agent (page_size x max_pages)
logger = logging.getLogger(__name__)


@dataclass
class _TickBuffer:
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pages: int = 0

    def add(self, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            self.columns.setdefault(k, []).append(v)


_SIM_LOG = {"agent": np.int64, "item": np.int64, "rating": np.float32, "tick": np.int32}


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


class _InProcess:
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


def agent_log(
    data: Dataset, source_user: np.ndarray, watched: dict[str, np.ndarray] | None = None
) -> pa.Table:
    """The log a policy is fitted on, in agent space (the ids ``recommend`` is called with).

    Agent ``a`` carries the seed-log rows of its source user (clones each get a copy); seed
    users that no agent represents follow as background users ``n_agents, n_agents + 1, ...``,
    so the policy still learns from the whole log. ``watched`` (columns agent, item, rating,
    timestamp) appends what agents watched during the run. Columns: user_index, item_index,
    rating, timestamp, and count for a log with counts (1 for each watch).
    """
    log = data.interactions
    n_agents = len(source_user)
    order = np.argsort(log.user, kind="stable")
    indptr = np.zeros(log.n_users + 1, np.int64)
    np.cumsum(np.bincount(log.user, minlength=log.n_users), out=indptr[1:])
    src = np.asarray(source_user, np.int64)
    counts = indptr[src + 1] - indptr[src]
    total = int(counts.sum())
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = [order[np.repeat(indptr[src], counts) + within]]
    users = [np.repeat(np.arange(n_agents, dtype=np.int64), counts)]
    background = np.setdiff1d(np.arange(log.n_users), src)
    if background.size:
        new_id = np.full(log.n_users, -1, np.int64)
        new_id[background] = n_agents + np.arange(background.size)
        bg_rows = order[np.isin(log.user[order], background)]
        rows.append(bg_rows)
        users.append(new_id[log.user[bg_rows]])
    rows_all = np.concatenate(rows)
    cols = {
        "user_index": np.concatenate(users),
        "item_index": log.item[rows_all].astype(np.int64),
        "rating": log.rating[rows_all].astype(np.float32),
        "timestamp": log.timestamp[rows_all].astype(np.int64),
    }
    n_watched = 0 if watched is None else watched["agent"].size
    if n_watched:
        for key, col in zip(cols, ("agent", "item", "rating", "timestamp"), strict=True):
            cols[key] = np.concatenate([cols[key], watched[col].astype(cols[key].dtype)])
    if log.count is not None:  # a log with counts: each watch counts once
        cols["count"] = np.r_[log.count[rows_all], np.ones(n_watched, np.float32)]
    return pa.table(cols)


class SimulationModel(mesa.Model):
    """The simulation. ``step()`` runs one tick; ``recorder`` (optional) receives the events.

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
        self.shards: Shards = _InProcess(self)
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
        self.sim_log: dict[str, list[np.ndarray]] = {k: [] for k in _SIM_LOG}
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
        self._buf = _TickBuffer()

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
        self._buf = _TickBuffer()
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
        self._tick_ev = _state_columns(chunks)
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
            k: np.concatenate(v) if v else np.zeros(0, _SIM_LOG[k]) for k, v in self.sim_log.items()
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

    def browse(self, agents: np.ndarray) -> None:
        """Sessions for ``agents`` (m,) sorted int64: pages until each one leaves."""
        m, k, max_pages = agents.size, self.sim.page_size, self.sim.max_pages
        if m == 0:
            return
        shown = np.full((m, max_pages * k), -1, np.int64)
        value = np.zeros(m)
        watched = np.zeros(m, np.int64)
        in_session = np.arange(m)
        # a policy that ranks whole sessions is asked once: every page is a block of its list
        # (up to SESSION_RANK_MAX slots: deeper sessions, which few users reach, go page by page)
        once = ranks_sessions(self.policy) and max_pages * k <= SESSION_RANK_MAX
        session = self._rank_sessions(agents) if once else None
        for page in range(max_pages):
            if in_session.size == 0:
                break
            leave = np.zeros(m, bool)
            for start in range(0, in_session.size, self.sim.batch_size):
                rows = in_session[start : start + self.sim.batch_size]
                ranked = None if session is None else page_of(session, rows, page, k)
                v, w, lv = self._page(
                    agents[rows], shown[rows, : page * k], page, shown, rows, ranked
                )
                value[rows] += v
                watched[rows] += w
                leave[rows] = lv
            in_session = in_session[~leave[in_session]]
        self._buf.add(session_agents=agents, session_value=value, session_watched=watched)

    def _page(
        self,
        agents: np.ndarray,
        earlier: np.ndarray,
        page: int,
        shown: np.ndarray,
        rows: np.ndarray,
        ranked: Slates | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One page for ``agents``: their slates (``ranked``, the page's block of a session
        ranking, or asked of the policy now), decisions and event rows."""
        k = self.sim.page_size
        if ranked is not None:
            slates = ranked
        else:
            exclude = self._exclusions(agents, earlier)
            slates = self.policy.recommend(
                agents, k, exclude=exclude, rng=PolicyRandomness(self.streams, self.tick, page)
            )
            check_slates(slates, agents.size, k, self.catalog.n_items, self._policy_name)
        shown[rows, page * k : (page + 1) * k] = slates.items
        social = None if self.social is None else self.social.lookup(agents, slates.items)
        repeat = self._consumed_before(agents, slates.items) if self.repeats else None
        batch = PageBatch(
            agents, slates.items, slates.scores, page, self.tick, social, self.context, repeat
        )
        d = self.brain.decide(batch)
        valid = slates.items >= 0
        leave = d.leave | ~valid.any(axis=1) | (page == self.sim.max_pages - 1)
        norm = self.scale.normalise(np.nan_to_num(d.rating, nan=self.scale.low))
        value = np.where(d.clicked, norm, 0.0).sum(axis=1)
        n = agents.size
        if len(set(d.decided_by)) > 1:
            codes = np.array(
                [
                    self._code(x, page, a)
                    for x, a in zip(d.decided_by, agents.tolist(), strict=True)
                ],
                np.int32,
            )
        else:
            codes = np.full(
                n, self._code(d.decided_by[0], page, int(agents[0])) if n else 0, np.int32
            )
        self._buf.pages += n
        sel = valid.ravel()
        full = bool(sel.all())  # the usual case: no empty slots, flat views need no copy

        def cells(x: np.ndarray) -> np.ndarray:  # (n, k) -> flat valid cells
            return x.ravel() if full else x.ravel()[sel]

        def per_cell(x: np.ndarray) -> np.ndarray:  # (n,) -> one entry per valid cell
            return cells(np.repeat(x, k))

        self._buf.add(
            agent=per_cell(agents),
            page=np.full(int(sel.sum()), page, np.int16),
            position=cells(np.tile(np.arange(k, dtype=np.int16), n)),
            item=cells(slates.items),
            score=cells(slates.scores),
            pscore_item_position=cells(slates.pscore_item_position),
            pscore_slate=per_cell(np.asarray(slates.pscore_slate, np.float64)),
            pscore_cascade=cells(_cascade(slates)),
            exact=np.full(int(sel.sum()), not slates.deterministic),
            examined=cells(d.examined),
            clicked=cells(d.clicked),
            rating=cells(d.rating),
            left_after=per_cell(leave),
            decided_by=per_cell(codes),
        )
        if social is not None:
            self._buf.add(social=cells(social))
        if repeat is not None:
            self._buf.add(repeat=cells(repeat))
        if self.episodic is not None and d.feeling is not None:
            self._buf.add(**_felt(agents, slates.items, d.clicked, d.feeling))
        if d.llm_model is not None:  # LLM brains: what decided each page, on each of its rows

            def per_row(values) -> np.ndarray:
                return per_cell(np.asarray(values, dtype=object))

            self._buf.add(
                reason=per_row(d.reason or [None] * n),
                feeling=per_row(d.feeling or [None] * n),
                llm_model=per_row(d.llm_model),
                prompt_hash=per_row(d.prompt_hash),
                prompt_tokens=per_cell(np.asarray(d.prompt_tokens, np.float64)),
                completion_tokens=per_cell(np.asarray(d.completion_tokens, np.float64)),
            )
        return value, d.clicked.sum(axis=1), leave

    def _rank_sessions(self, agents: np.ndarray) -> Slates:
        """Every page of ``agents``' sessions at once from a policy that ranks whole sessions
        (:class:`~simrec.environments.base.SessionRanking`): (m, k x max_pages) slates, asked
        in batches of ``sim.batch_size``, excluding what each agent consumed."""
        n = self.sim.page_size * self.sim.max_pages
        m, none = agents.size, np.zeros((agents.size, 0), np.int64)
        items, scores = np.full((m, n), -1, np.int64), np.zeros((m, n), np.float32)
        for start in range(0, m, self.sim.batch_size):
            rows = slice(start, min(m, start + self.sim.batch_size))
            batch = agents[rows]
            slates = self.policy.recommend(
                batch,
                n,
                exclude=self._exclusions(batch, none[rows]),
                rng=PolicyRandomness(self.streams, self.tick, 0),
            )
            check_slates(slates, batch.size, n, self.catalog.n_items, self._policy_name)
            if not slates.deterministic:
                raise ConfigError(
                    f"policy '{self._policy_name}': it declares session_ranking = True, so its "
                    f"slates must be deterministic; recommend() returned deterministic=False"
                )
            items[rows], scores[rows] = slates.items, slates.scores
        return Slates(items, scores, np.ones((m, n)), np.ones(m), True)

    def probe_policy(self) -> None:
        """Ask the policy for a few slates and check them, so a broken plug-in is reported
        before anything is written (a ConfigError naming what was wrong)."""
        agents = np.arange(min(8, self.n_agents), dtype=np.int64)
        k = self.sim.page_size
        slates = self.policy.recommend(
            agents,
            k,
            exclude=self._exclusions(agents, np.zeros((agents.size, 0), np.int64)),
            rng=PolicyRandomness(self.streams, 0, 0, purpose="policy-probe"),
        )
        check_slates(slates, agents.size, k, self.catalog.n_items, self._policy_name)

    def _code(self, label: str, page: int = 0, agent: int = 0) -> int:
        if label not in self._vocab_index:
            self._vocab_index[label] = len(self.decided_by_vocab)
            self.decided_by_vocab.append(label)
            self._new_labels.append((label, page, agent))
        return self._vocab_index[label]

    def _exclusions(self, agents: np.ndarray, earlier: np.ndarray) -> sp.csr_matrix:
        """(m, n_items) CSR: what this session already showed, and what each agent consumed
        unless ``simulation.repeats`` lets it be shown again."""
        parts = [] if self.repeats else self._consumed_parts(agents)
        return stack_rows(parts, earlier, self.catalog.n_items)

    def _consumed_parts(self, agents: np.ndarray) -> list[tuple[sp.csr_matrix, np.ndarray]]:
        """The (matrix, rows) pairs of what ``agents`` consumed: their source users' seed log
        and what they watched in the run."""
        parts = [(self.seed_consumed, self.personas.source_user[agents])]
        if self.watched.nnz:
            parts.append((self.watched, agents))
        return parts

    def _consumed_before(self, agents: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(m, k) bool: which of ``items`` (m, k) each agent consumed before (seed or run)."""
        none = np.zeros((agents.size, 0), np.int64)
        consumed = stack_rows(self._consumed_parts(agents), none, self.catalog.n_items)
        return excluded_mask(items, consumed) & (items >= 0)

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
        ev = _state_columns(chunks)
        n_rows = int(ev["agent"].size)
        if self.retrain_every:
            clicked = ev["clicked"]
            for key in ("agent", "item", "rating"):
                self.sim_log[key].append(ev[key][clicked].astype(_SIM_LOG[key]))
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

    # ------------------------------------------------------------------ checkpoints

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
                f"sim_log_{k}": np.concatenate(v) if v else np.zeros(0, _SIM_LOG[k])
                for k, v in self.sim_log.items()
            },
            **(self.social.state() if self.social is not None else {}),
        }

    def brain_counters(self) -> dict[str, Any] | None:
        """This model's brain's counters (None for a brain without state): its
        :meth:`StatefulBrain.state` and, for an LLM backend, the cache's hits and misses and
        the server pool's failovers."""
        if not isinstance(self.brain, StatefulBrain):
            return None
        out = dict(self.brain.state())
        backend = getattr(self.brain, "backend", None)
        if backend is not None:
            out["cache_hits"] = int(getattr(backend, "hits", 0))
            out["cache_misses"] = int(getattr(backend, "misses", 0))
            out["failovers"] = int(getattr(getattr(backend, "backend", backend), "failovers", 0))
        return out

    def load_brain_counters(self, counters: dict[str, Any] | None) -> None:
        """Set the brain's counters (from :meth:`brain_counters`, e.g. summed over shards)."""
        if counters is None or not isinstance(self.brain, StatefulBrain):
            return
        self.brain.load_state(counters)
        backend = getattr(self.brain, "backend", None)
        if backend is not None and hasattr(backend, "hits"):
            backend.hits = int(counters.get("cache_hits", 0))
            backend.misses = int(counters.get("cache_misses", 0))
        inner = getattr(backend, "backend", backend)
        if inner is not None and hasattr(inner, "failovers"):
            inner.failovers = int(counters.get("failovers", 0))

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
        self.sim_log = {k: [state[f"sim_log_{k}"].copy()] for k in _SIM_LOG}
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


_STATE_COLUMNS = {
    "agent": np.int64,
    "item": np.int64,
    "examined": bool,
    "clicked": bool,
    "rating": np.float32,
}


def _state_columns(chunks: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The event columns state and metrics need (agent, item, examined, clicked, rating),
    concatenated from per-page ``chunks``."""
    if not chunks.get("agent"):
        return {name: np.zeros(0, dtype) for name, dtype in _STATE_COLUMNS.items()}
    return {
        name: np.concatenate(chunks[name]).astype(dtype) for name, dtype in _STATE_COLUMNS.items()
    }


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


def _felt(
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


def _cascade(slates) -> np.ndarray:
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
    offset = (start * sim.tick_seconds * 0.9).astype(np.int64) + page * _PAGE_SECONDS
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


def stack_rows(
    parts: list[tuple[sp.csr_matrix, np.ndarray]], dense: np.ndarray, n_cols: int
) -> sp.csr_matrix:
    """Row-wise union of selected rows of CSR matrices and a dense (m, w) array of column
    indices (-1 = none). ``parts``: (matrix, rows) pairs, each ``rows`` of length m.

    The result's column indices are grouped by row (not sorted within a row); the inputs are
    assumed disjoint.

    >>> a = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]], np.float32))
    >>> stack_rows([(a, np.array([1, 0]))], np.array([[0, -1], [-1, 1]]), 3).toarray().tolist()
    [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    m = dense.shape[0]
    valid = dense >= 0
    counts = [p.indptr[r + 1] - p.indptr[r] for p, r in parts] + [valid.sum(axis=1)]
    indptr = np.zeros(m + 1, np.int64)
    np.cumsum(sum(counts), out=indptr[1:])
    indices = np.empty(indptr[-1], np.int32)
    offset = indptr[:-1].copy()
    for (p, r), c in zip(parts, counts, strict=False):
        total = int(c.sum())
        if total:  # copy each selected row's index run straight from the parent matrix
            shift = np.repeat(p.indptr[r] - offset, c)
            dest = np.arange(total) + np.repeat(offset - (np.cumsum(c) - c), c)
            indices[dest] = p.indices[dest + shift]
        offset += c
    if dense.size:
        flat = dense[valid]
        c = counts[-1]
        dest = np.arange(flat.size) + np.repeat(offset - (np.cumsum(c) - c), c)
        indices[dest] = flat
    data = np.ones(indices.size, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(m, n_cols))


def _reporter(key: str):
    return lambda model: model.last_metrics.get(key)
