"""Sessions page by page: the part of :class:`~simrec.simulator.model.SimulationModel` that
asks the policy for slates (a whole session at once for a policy that ranks sessions), has the
brain decide each page, and buffers the page's event rows; and what each agent may not be
shown again."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from simrec.agents.brains.base import PageBatch
from simrec.arrays import excluded_mask, stack_rows
from simrec.environments.base import (
    PolicyRandomness,
    Slates,
    check_slates,
    page_of,
    ranks_sessions,
)
from simrec.errors import ConfigError
from simrec.simulator.events import cascade_propensities, felt_entries

__all__ = ["SESSION_RANK_MAX", "Browsing"]

SESSION_RANK_MAX = 1000  # slots a session ranking may hold per agent (page_size x max_pages)


class Browsing:
    """Sessions for :class:`~simrec.simulator.model.SimulationModel`, which holds what these
    methods read: ``sim``, ``policy``, ``brain``, ``catalog``, ``scale``, ``streams``,
    ``tick``, ``social``, ``context``, ``episodic``, ``repeats``, ``personas``,
    ``seed_consumed``, ``watched``, the tick's buffer ``_buf``, ``_policy_name`` and
    ``_code`` (a decided-by label's code)."""

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
            pscore_cascade=cells(cascade_propensities(slates)),
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
            self._buf.add(**felt_entries(agents, slates.items, d.clicked, d.feeling))
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
