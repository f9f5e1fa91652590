"""Prompts and the answer schema of the LLM brain.

The system message is the instructions, the same for every user, then the persona: a stable
prefix that prefix caches (llama.cpp's KV cache in process, vLLM's and llama.cpp servers') reuse
across all requests for the instructions and across a user's pages for the persona. The user
message holds the retrieved memories and the latest reflection, then the page. Items are
referred to by their position on the page; the answer schema enumerates the allowed positions,
ratings, actions and feelings, so an answer can neither name an item that is not on the page nor
need title matching. One pydantic model gives the JSON schema sent for constrained decoding and
validates the answer.

Text that comes from data (titles, genres, descriptions) or from a model (reflections) is
never spliced in raw: each is one line of printable text (:func:`simrec.trust.clean_text`)
inside a JSON string, and the system prompts say that quoted text is data, not instructions.

Templates are ``string.Template`` files that a user can replace by pointing
``llm.templates_dir`` at a folder with their own versions: ``system.txt`` (``$name``,
``$profile``, ``$scale``), ``page.txt`` (``$memory``: the retrieved memories, one per line;
``$reflection``: the agent's latest "what I've learned" note, or nothing; ``$page_number``,
``$items``), ``narrate.txt`` for the hybrid brain (the same, and ``$did``), ``reflect.txt``
(``$memory``, ``$reflection``), and ``discriminate.txt`` (``$count``, ``$items``) and
``rate.txt`` (``$items``, ``$scale``) for the fidelity report, and ``enrich_item.txt``
(``$facts``, ``$attributes``), ``profile.txt`` (``$facts``) and ``choose.txt`` (``$facts``,
``$count``, ``$items``, ``$positives``, ``$negatives``) for ``simrec augment ... --llm``.
Every template may also use the catalog domain's words (:meth:`simrec.domain.Domain.words`:
``$item``, ``$items_noun``, ``$verb``, ``$verb_past``, ``$key``, ``$a_service``, ...), filled
in first by :func:`in_words`; the answer field that lists chosen positions is the domain's
``key`` (``watch`` for movies, ``buy`` for products).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from string import Template
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from simrec.domain import DOMAINS, Domain
from simrec.errors import ConfigError
from simrec.trust import NOTE_LIMIT, clean_text, quoted

FEELINGS = ("delighted", "satisfied", "neutral", "bored", "annoyed")
TEMPLATES = Path(__file__).with_name("templates")


def load_templates(directory: str | Path | None = None) -> dict[str, Template]:
    """The system and page templates, from ``directory`` where it has them."""
    out = {}
    names = ("system", "page", "narrate", "reflect", "discriminate", "rate")
    for name in (*names, "enrich_item", "profile", "choose"):
        path = TEMPLATES / f"{name}.txt"
        if directory is not None:
            custom = Path(directory) / f"{name}.txt"
            if not Path(directory).is_dir():
                raise ConfigError(f"llm.templates_dir: {directory} is not a directory")
            if custom.is_file():
                path = custom
        out[name] = Template(path.read_text(encoding="utf-8"))
    return out


def in_words(templates: dict[str, Template], domain: Domain) -> dict[str, Template]:
    """``templates`` with the domain's words filled in (the other variables left for later).

    >>> t = in_words({"x": Template("Which $items_noun would you $verb? $items")}, DOMAINS["books"])
    >>> t["x"].safe_substitute(items="1. Emma")
    'Which books would you read? 1. Emma'
    """
    words = {k: v.replace("$", "$$") for k, v in domain.words().items()}
    return {name: Template(t.safe_substitute(words)) for name, t in templates.items()}


def answer_model(k: int, ratings: tuple[float, ...], key: str = "watch") -> type[BaseModel]:
    """The pydantic model of one page's answer for a page of ``k`` slots and a rating scale;
    ``key`` names the field of chosen positions (the domain's :attr:`~Domain.key`)."""
    positions = Literal[tuple(range(1, k + 1))]  # type: ignore[valid-type]
    rating_values = _rating_values(ratings)
    return create_model(
        f"PageAnswer{k}_{key}",
        __config__=ConfigDict(extra="forbid"),
        **{key: (list[positions], Field(default_factory=list, max_length=k))},
        ratings=(list[rating_values], Field(default_factory=list, max_length=k)),
        next=(Literal["next_page", "leave"], ...),
        feeling=(Literal[FEELINGS], ...),
        reason=(str, Field(..., max_length=200)),
    )


def _rating_values(ratings: tuple[float, ...]):
    """A Literal of the scale's values (integers where they are whole)."""
    return Literal[tuple(int(r) if float(r).is_integer() else r for r in ratings)]  # type: ignore[valid-type]


def pick_model(k: int, key: str = "watch") -> type[BaseModel]:
    """The fidelity report's discrimination answer for a list of ``k`` items: the positions
    the user would choose (field ``key``: enumerated, bounded) and why."""
    positions = Literal[tuple(range(1, k + 1))]  # type: ignore[valid-type]
    return create_model(
        f"Pick{k}_{key}",
        __config__=ConfigDict(extra="forbid"),
        **{key: (list[positions], Field(default_factory=list, max_length=k))},
        reason=(str, Field(..., max_length=200)),
    )


def picked(answer: BaseModel) -> list[int]:
    """The chosen positions (1-based) of an :func:`answer_model` or :func:`pick_model` answer,
    whatever the domain named the field."""
    return list(getattr(answer, next(iter(type(answer).model_fields))))


def rate_model(n: int, ratings: tuple[float, ...]) -> type[BaseModel]:
    """The fidelity report's rating answer: exactly ``n`` ratings from the scale, and why."""
    rating_values = _rating_values(ratings)
    return create_model(
        f"Rate{n}",
        __config__=ConfigDict(extra="forbid"),
        ratings=(list[rating_values], Field(..., min_length=n, max_length=n)),
        reason=(str, Field(..., max_length=200)),
    )


class Narration(BaseModel):
    """The hybrid brain's answer: how the user felt about a page and why."""

    model_config = ConfigDict(extra="forbid")
    feeling: Literal[FEELINGS]  # type: ignore[valid-type]
    reason: str = Field(..., max_length=200)


class Reflection(BaseModel):
    """A reflection: what the user has learned about their taste and about the service."""

    model_config = ConfigDict(extra="forbid")
    taste: str = Field(..., min_length=1, max_length=200)
    service: str = Field(..., min_length=1, max_length=200)

    @field_validator("taste", "service")
    @classmethod
    def _a_sentence(cls, v: str) -> str:
        """Schema-valid nonsense (an echoed field name, a lone word) is not a reflection."""
        if len(v.split()) < 3:
            raise ValueError(f"expected a sentence, got {v!r}")
        return v

    def note(self) -> str:
        taste, service = clean_text(self.taste, 200), clean_text(self.service, 200)
        return f"About my taste: {taste} About this service: {service}"


class Interview(BaseModel):
    """Agent4Rec-style post-run interview: the service rated 1-10, and why."""

    model_config = ConfigDict(extra="forbid")
    score: Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    reason: str = Field(..., max_length=300)


INTERVIEW_QUESTION = (
    "You have used this {service} for {days} days and had {sessions} sessions. "
    "What you remember:\n{memory}\n{reflection}"
    "How would you rate the service's recommendations from 1 (useless) to 10 (excellent), "
    'and why? Answer with JSON: "score" and "reason" (one or two sentences).'
)


def answer_schema(model: type[BaseModel]) -> dict:
    """The JSON schema sent with each request (every array bounded: small models loop on
    unbounded arrays under constrained decoding)."""
    return model.model_json_schema()


def system_message(templates: dict[str, Template], name: str, profile: str, scale: str) -> str:
    return templates["system"].safe_substitute(name=name, profile=profile, scale=scale)


def memory_lines(
    entries: list[dict],
    titles: np.ndarray,
    now: int,
    tick_seconds: int,
    domain: Domain = DOMAINS["movies"],
) -> str:
    """Retrieved memories (dicts from ``EpisodicMemory.retrieve``, best first) as one line
    each, dated relative to tick ``now``, in ``domain``'s words ("you bought ...")."""
    if not entries:
        return "- nothing yet"
    out = []
    for e in entries:
        days = (now - e["tick"]) * tick_seconds // 86400
        when = "Today" if days == 0 else "Yesterday" if days == 1 else f"{days} days ago"
        title = quoted(str(titles[e["item"]])) if e["item"] >= 0 else "an empty page"
        if e["kind"] == "watched":
            what = f"you {domain.verb_past} {title}" + (
                f" and rated it {e['rating']:g}" if e["rating"] is not None else ""
            )
        elif e["kind"] == "recommended":
            what = f"you were shown {title} and skipped it"
        elif e["kind"] == "felt":
            what = f"a page that led with {title} left you {e['feeling']}"
        else:
            what = f"you shared {title} with your friends"
        out.append(f"- {when} {what}.")
    return "\n".join(out)


def reflection_line(note: str | None) -> str:
    """The ``$reflection`` of a prompt: the latest note, or nothing."""
    return f"What you have learned so far: {quoted(clean_text(note, NOTE_LIMIT))}\n" if note else ""


def page_message(
    templates: dict[str, Template],
    memory: str,
    page: int,
    items: list[str],
    template: str = "page",
    reflection: str = "",
    **extra: str,
) -> str:
    """The user message of a page (``template`` "page", or "narrate" with ``did``);
    ``memory`` from :func:`memory_lines`, ``reflection`` from :func:`reflection_line`."""
    lines = "\n".join(f"{j}. {quoted(text)}" for j, text in enumerate(items, 1) if text)
    return templates[template].safe_substitute(
        memory=memory, reflection=reflection, page_number=page + 1, items=lines, **extra
    )


def prompt_hash(messages: tuple[dict[str, str], ...]) -> str:
    """A short stable id of the exact prompt (sha256 prefix)."""
    blob = json.dumps(list(messages), ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
