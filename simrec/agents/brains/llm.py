"""The LLM brain: one model call per page view, all views of a batch in one backend call.

Each view becomes a ChatRequest (persona system message, memory and page user message, the
answer schema, a seed derived from run seed, agent, tick and page). Every answer is validated by
the pydantic model that produced the schema and checked against the page (a watched position
must hold an item; one rating per watch). A view whose answer is unusable (transport error,
malformed or truncated JSON, schema-valid nonsense) is decided by the statistical brain instead,
marked ``decided_by = "fallback:utility"`` and counted by cause in ``fallbacks``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from string import Template

import numpy as np
from pydantic import ValidationError

from simrec.agents.brains import prompts
from simrec.agents.brains.base import BrainContext, PageBatch, PageDecisions
from simrec.agents.brains.utility import UtilityBrain
from simrec.domain import Domain
from simrec.llm.base import ChatRequest, ChatResult, ErrorKind, LLMBackend
from simrec.rng import derive_seed
from simrec.trust import redact, safe_text

logger = logging.getLogger(__name__)


def _refused(res: ChatResult) -> bool:
    """Whether a request failed because the server refused the key."""
    return res.error_kind is ErrorKind.AUTH


# the causes of a page decided by the fallback instead of the LLM
PAGE_CAUSES = (
    "auth_error",
    "backend_error",
    "truncated",
    "malformed_json",
    "schema_invalid",
    "nonsense_positions",
    "nonsense_ratings",
    "narration_failed",  # the hybrid brain's narrations
)

_FEELING_VALUE = {
    "delighted": 1.0,
    "satisfied": 0.75,
    "neutral": 0.5,
    "bored": 0.25,
    "annoyed": 0.0,
}


class LLMBrain:
    """Decides pages with ``backend``; ``fallback`` (a fitted, bound UtilityBrain) decides the
    views whose answers are unusable and also supplies arrivals, satisfaction and churn."""

    def __init__(
        self,
        backend: LLMBackend,
        fallback: UtilityBrain,
        *,
        seed: int,
        max_tokens: int = 200,
        temperature: float = 0.7,
        memory_items: int = 5,
        templates_dir: str | None = None,
    ) -> None:
        self.backend = backend
        self.fallback = fallback
        self.name = f"llm:{backend.name}"
        self.seed, self.max_tokens, self.temperature = seed, max_tokens, temperature
        self.memory_items = memory_items
        self.templates = prompts.load_templates(templates_dir)  # before the domain's words
        self._worded: dict[Domain, dict[str, Template]] = {}
        self.fallbacks: Counter[str] = Counter()
        self.pages = 0  # pages the LLM was asked to decide
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._models: dict[tuple[int, str], type] = {}
        self._genres: list[list[str]] | None = None

    def templates_for(self, domain: Domain) -> dict[str, Template]:
        """The templates in ``domain``'s words (:func:`prompts.in_words`), made once."""
        if domain not in self._worded:
            self._worded[domain] = prompts.in_words(self.templates, domain)
        return self._worded[domain]

    # the statistical brain's session dynamics are shared
    def arrivals(self, agents, tick, satisfaction):
        return self.fallback.arrivals(agents, tick, satisfaction)

    def session_value(self, watched_value, watched):
        return self.fallback.session_value(watched_value, watched)

    def end_sessions(self, agents, tick, value, satisfaction):
        return self.fallback.end_sessions(agents, tick, value, satisfaction)

    # ------------------------------------------------------------------ decisions

    def decide(self, views: PageBatch) -> PageDecisions:
        ctx = views.context
        if ctx is None:
            raise ValueError("LLMBrain.decide needs views.context (personas, catalog, memory)")
        n, k = views.items.shape
        scale = ctx.scale
        answer = self._answer_model(k, scale, ctx.catalog.domain.key)
        schema = prompts.answer_schema(answer)
        requests = [self._request(ctx, views, j, schema) for j in range(n)]
        results = self.backend.complete(requests)
        examined = np.zeros((n, k), bool)
        clicked = np.zeros((n, k), bool)
        rating = np.full((n, k), np.nan, np.float32)
        leave = np.zeros(n, bool)
        decided = np.full(n, self.name, dtype=object)
        feeling: list[str | None] = [None] * n
        reason: list[str | None] = [None] * n
        hashes = [prompts.prompt_hash(r.messages) for r in requests]
        p_tok = np.array([r.prompt_tokens for r in results], np.float64)
        c_tok = np.array([r.completion_tokens for r in results], np.float64)
        failed: list[int] = []
        causes: list[str] = []
        valid = views.items >= 0
        self.pages += n
        for j, res in enumerate(results):
            self.count_usage(res)
            cause = self._apply(
                j, res, answer, valid[j], examined, clicked, rating, leave, feeling, reason, scale
            )
            if cause is not None:
                self.fallbacks[cause] += 1
                failed.append(j)
                causes.append(cause)
        if failed:
            idx = np.array(failed)
            fb = self.fallback.decide(views.take(idx))
            examined[idx], clicked[idx], rating[idx], leave[idx] = (
                fb.examined,
                fb.clicked,
                fb.rating,
                fb.leave,
            )
            decided[idx] = f"fallback:{self.fallback.name}"
            logger.info(
                "%d of %d pages (tick %d, page %d) decided by the fallback: %s",
                idx.size,
                n,
                views.tick,
                views.page,
                ", ".join(f"{c} {k}" for c, k in sorted(Counter(causes).items())),
            )
        return PageDecisions(
            examined,
            clicked,
            rating,
            leave,
            decided,
            feeling,
            reason,
            llm_model=[self.backend.name] * n,
            prompt_hash=hashes,
            prompt_tokens=p_tok,
            completion_tokens=c_tok,
        )

    def _answer_model(self, k: int, scale, key: str) -> type:
        if (k, key) not in self._models:
            values = tuple(np.round(np.arange(scale.low, scale.high + 1e-9, scale.step), 3))
            self._models[k, key] = prompts.answer_model(k, values, key)
        return self._models[k, key]

    def _page_parts(
        self, ctx: BrainContext, views: PageBatch, j: int
    ) -> tuple[str, str, str, list[str]]:
        """View j's system message, retrieved memories, reflection line and item lines."""
        agent = int(views.agents[j])
        cat = ctx.catalog
        memory, reflection = remembered(ctx, agent, views.items[j], self.memory_items, views.tick)
        if self._genres is None:
            self._genres = cat.genre_lists()
        items = [
            f"{cat.display_titles[i]} ({', '.join(self._genres[i]) or 'no genre'})"
            if i >= 0
            else ""
            for i in views.items[j].tolist()
        ]
        return self.system_prompt(ctx, agent), memory, reflection, items

    def system_prompt(self, ctx: BrainContext, agent: int) -> str:
        """The system message for ``agent``: the instructions, its persona and the scale."""
        s = ctx.scale
        return prompts.system_message(
            self.templates_for(ctx.catalog.domain),
            f"user {agent}",
            str(ctx.personas.profiles[agent]),
            f"{s.low:g} to {s.high:g} in steps of {s.step:g}",
        )

    def _request(self, ctx: BrainContext, views: PageBatch, j: int, schema: dict) -> ChatRequest:
        system, memory, reflection, items = self._page_parts(ctx, views, j)
        user = prompts.page_message(
            self.templates_for(ctx.catalog.domain), memory, views.page, items, reflection=reflection
        )
        messages = ({"role": "system", "content": system}, {"role": "user", "content": user})
        return ChatRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            json_schema=schema,
            temperature=self.temperature,
            seed=derive_seed(self.seed, "llm", int(views.agents[j]), views.tick, views.page),
        )

    def reflect(
        self, context: BrainContext, agents: np.ndarray, tick: int
    ) -> tuple[list[str], list[str]]:
        """Reflections of ``agents`` (m,), one backend call: each agent's memories (by
        importance and recency) in, a "what I've learned" note out. An unusable answer gets
        the memory's template note instead (source ``template``, counted as
        ``reflection_failed``). Returns the notes and their sources."""
        ctx = context
        mem = ctx.episodic
        if mem is None:
            raise ValueError("LLMBrain.reflect needs context.episodic (an episodic memory)")
        schema = prompts.Reflection.model_json_schema()
        requests = []
        for agent in agents.tolist():
            entries = mem.retrieve(agent, tick, None, 2 * max(self.memory_items, 1))
            user = self.templates_for(ctx.catalog.domain)["reflect"].safe_substitute(
                memory=prompts.memory_lines(
                    entries, ctx.catalog.display_titles, tick, ctx.tick_seconds, ctx.catalog.domain
                ),
                reflection=prompts.reflection_line(mem.notes[agent]),
            )
            requests.append(
                ChatRequest(
                    messages=(
                        {"role": "system", "content": self.system_prompt(ctx, agent)},
                        {"role": "user", "content": user},
                    ),
                    max_tokens=self.max_tokens,
                    json_schema=schema,
                    temperature=self.temperature,
                    seed=derive_seed(self.seed, "reflect", agent, tick),
                )
            )
        notes, sources = [], []
        cat = ctx.catalog
        for agent, res in zip(agents.tolist(), self.backend.complete(requests), strict=True):
            self.count_usage(res)
            note, source = None, self.backend.name
            if res.ok:
                with contextlib.suppress(ValidationError):
                    note = prompts.Reflection.model_validate(res.parsed).note()
            if note is None:
                self.fallbacks["reflection_failed"] += 1
                note = mem.template_note(agent, cat.genre_names, cat.genres, ctx.scale, cat.domain)
                source = "template"
            notes.append(note)
            sources.append(source)
        return notes, sources

    def state(self) -> dict:
        """The counters a checkpoint keeps, so a resumed run's manifest counts the whole run."""
        return {
            "fallbacks": dict(self.fallbacks),
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "pages": self.pages,
        }

    @property
    def fallback_share(self) -> float:
        """The share of pages the LLM was asked to decide whose answer was unusable."""
        return sum(self.fallbacks[c] for c in PAGE_CAUSES) / self.pages if self.pages else 0.0

    def load_state(self, state: dict) -> None:
        self.fallbacks = Counter(state["fallbacks"])
        self.calls = int(state["calls"])
        self.prompt_tokens = int(state["prompt_tokens"])
        self.completion_tokens = int(state["completion_tokens"])
        self.pages = int(state.get("pages", 0))

    def count_usage(self, res: ChatResult) -> None:
        """Add one result's tokens (and, unless it came from the cache, its call) to the
        totals the manifest reports."""
        self.prompt_tokens += res.prompt_tokens
        self.completion_tokens += res.completion_tokens
        self.calls += 0 if res.cached else 1

    def _apply(
        self, j, res, answer, valid, examined, clicked, rating, leave, feeling, reason, scale
    ) -> str | None:
        """Write one answer into the arrays; the fallback cause when it is unusable."""
        if not res.ok:
            if _refused(res):
                return "auth_error"
            if res.error_kind is ErrorKind.TRUNCATED:
                return "truncated"
            if res.error_kind is ErrorKind.MALFORMED_JSON:
                return "malformed_json"
            return "backend_error"
        try:
            a = answer.model_validate(res.parsed)
        except ValidationError:
            return "schema_invalid"
        watch = [p - 1 for p in prompts.picked(a)]
        if len(set(watch)) != len(watch) or any(not valid[p] for p in watch):
            return "nonsense_positions"
        if len(a.ratings) != len(watch):
            return "nonsense_ratings"
        examined[j] = valid
        for p, r in zip(watch, a.ratings, strict=True):
            clicked[j, p] = True
            rating[j, p] = np.float32(scale.quantise(np.array([float(r)]))[0])
        leave[j] = a.next == "leave"
        feeling[j], reason[j] = a.feeling, safe_text(a.reason)
        return None


def remembered(
    ctx: BrainContext, agent: int, page: np.ndarray | None, n: int, tick: int
) -> tuple[str, str]:
    """The ``$memory`` and ``$reflection`` of a prompt for ``agent`` at ``tick``: its ``n``
    best memories for the page of items ``page`` (k,) (None: by recency and importance) and its
    latest note. Without an episodic memory, its ``n`` latest watches and no note."""
    mem = ctx.episodic
    if mem is not None:
        entries = mem.retrieve(agent, tick, page, n)
        note = mem.notes[agent]
    else:
        entries = [
            {"kind": "watched", **m, "rating": m["rating"] if np.isfinite(m["rating"]) else None}
            for m in ctx.memory.recent(agent, n)
        ]
        note = None
    cat = ctx.catalog
    lines = prompts.memory_lines(entries, cat.display_titles, tick, ctx.tick_seconds, cat.domain)
    return lines, prompts.reflection_line(note)


def interview(
    brain: LLMBrain, ctx: BrainContext, agents: np.ndarray, days: int, sessions: np.ndarray
) -> dict[str, list]:
    """Ask each of ``agents`` (m,) to rate the service 1-10 and say why, in one backend call,
    after ``days`` ticks (``sessions``: (n_agents,) sessions each agent had).
    Returns the columns of ``interviews.parquet``; an unusable answer leaves score and reason
    null and is counted as ``interview_failed``."""
    cols: dict[str, list] = {
        k: []
        for k in (
            "user_id",
            "score",
            "reason",
            "llm_model",
            "prompt_hash",
            "prompt_tokens",
            "completion_tokens",
            "error",
        )
    }
    if agents.size == 0:
        return cols
    schema = prompts.Interview.model_json_schema()
    requests = []
    for agent in agents.tolist():
        memory, reflection = remembered(ctx, agent, None, brain.memory_items, days)
        system = brain.system_prompt(ctx, agent)
        question = prompts.INTERVIEW_QUESTION.format(
            service=ctx.catalog.domain.service,
            days=days,
            sessions=int(sessions[agent]),
            memory=memory,
            reflection=reflection,
        )
        requests.append(
            ChatRequest(
                messages=(
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ),
                max_tokens=brain.max_tokens,
                json_schema=schema,
                temperature=brain.temperature,
                seed=derive_seed(brain.seed, "interview", agent),
            )
        )
    for agent, req, res in zip(
        agents.tolist(), requests, brain.backend.complete(requests), strict=True
    ):
        score, reason, error = None, None, res.error
        if res.ok:
            try:
                a = prompts.Interview.model_validate(res.parsed)
                score, reason = a.score, safe_text(a.reason, 300)
            except ValidationError as err:
                error = f"schema_invalid: {err.error_count()} errors"
        if score is None:
            brain.fallbacks["interview_failed"] += 1
        brain.count_usage(res)
        for key, val in (
            ("user_id", agent),
            ("score", score),
            ("reason", reason),
            ("llm_model", brain.backend.name),
            ("prompt_hash", prompts.prompt_hash(req.messages)),
            ("prompt_tokens", res.prompt_tokens),
            ("completion_tokens", res.completion_tokens),
            ("error", redact(error)),
        ):
            cols[key].append(val)
    return cols


class HybridBrain(LLMBrain):
    """The statistical brain decides every page; the LLM narrates a sample of them (the
    ``feeling`` and ``reason`` of pages drawn with probability ``narrate_fraction``, by the
    run's counter-based streams). Cheap: one call per narrated page, none on the rest. A
    narration that fails leaves that page's reason empty and is counted in ``fallbacks``."""

    def __init__(
        self,
        backend: LLMBackend,
        fallback: UtilityBrain,
        *,
        seed: int,
        narrate_fraction: float = 0.1,
        **kw,
    ) -> None:
        super().__init__(backend, fallback, seed=seed, **kw)
        if not 0 < narrate_fraction <= 1:
            raise ValueError(f"narrate_fraction: expected (0, 1], got {narrate_fraction!r}")
        self.narrate_fraction = narrate_fraction
        self.name = f"hybrid:{fallback.name}+{backend.name}"

    def decide(self, views: PageBatch) -> PageDecisions:
        ctx = views.context
        d = self.fallback.decide(views)
        n = len(views)
        u = self.fallback.streams.uniform("narrate", views.agents, views.tick, views.page, 1)
        chosen = np.flatnonzero(u[:, 0] < self.narrate_fraction)
        feeling: list[str | None] = [None] * n
        reason: list[str | None] = [None] * n
        llm_model: list[str | None] = [None] * n
        hashes: list[str | None] = [None] * n
        p_tok = np.full(n, np.nan)
        c_tok = np.full(n, np.nan)
        if chosen.size and ctx is not None:
            schema = prompts.Narration.model_json_schema()
            requests = [self._narration(ctx, views, int(j), d, schema) for j in chosen]
            results = self.backend.complete(requests)
            self.pages += chosen.size
            for j, req, res in zip(chosen.tolist(), requests, results, strict=True):
                llm_model[j], hashes[j] = self.backend.name, prompts.prompt_hash(req.messages)
                p_tok[j], c_tok[j] = res.prompt_tokens, res.completion_tokens
                self.count_usage(res)
                try:
                    if not res.ok:
                        raise ValueError(res.error)
                    a = prompts.Narration.model_validate(res.parsed)
                    feeling[j], reason[j] = a.feeling, safe_text(a.reason)
                except (ValueError, ValidationError):
                    cause = "auth_error" if _refused(res) else "narration_failed"
                    self.fallbacks[cause] += 1
        return PageDecisions(
            d.examined,
            d.clicked,
            d.rating,
            d.leave,
            np.full(n, self.fallback.name, dtype=object),
            feeling,
            reason,
            llm_model=llm_model,
            prompt_hash=hashes,
            prompt_tokens=p_tok,
            completion_tokens=c_tok,
        )

    def _narration(
        self, ctx: BrainContext, views: PageBatch, j: int, d: PageDecisions, schema: dict
    ) -> ChatRequest:
        system, memory, reflection, items = self._page_parts(ctx, views, j)
        cat = ctx.catalog
        watched = [
            str(cat.display_titles[i])
            + (f" (rated {d.rating[j, p]:g})" if np.isfinite(d.rating[j, p]) else "")
            for p, i in enumerate(views.items[j].tolist())
            if i >= 0 and d.clicked[j, p]
        ]
        past = cat.domain.verb_past
        did = f"You {past}: {'; '.join(watched)}." if watched else f"You {past} nothing."
        did += " Then you left." if d.leave[j] else " Then you went to the next page."
        user = prompts.page_message(
            self.templates_for(cat.domain),
            memory,
            views.page,
            items,
            template="narrate",
            reflection=reflection,
            did=did,
        )
        return ChatRequest(
            messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
            max_tokens=self.max_tokens,
            json_schema=schema,
            temperature=self.temperature,
            seed=derive_seed(self.seed, "narrate", int(views.agents[j]), views.tick, views.page),
        )
