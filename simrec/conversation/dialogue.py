"""What a conversation is made of, and what a conversational recommender (CRS) must do.

A CRS is fitted once on the log the users' visible past comes from, then answers every open
dialogue of a turn in one batched call: ``respond(dialogues) -> replies``, one
:class:`Reply` (a text and a ranked list of catalog item indices) per dialogue, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from simrec.data.dataset import Catalog

MAX_ITEMS = 50  # the most items a reply may rank (Recall@50 needs 50)


@dataclass(frozen=True)
class Turn:
    """One utterance. ``speaker``: ``user`` or ``crs``; ``items``: for the CRS, the item
    indices it recommended (ranked); for the user, the items its ``verdicts`` (``accept`` or
    ``reject``) are about, the ones it was shown."""

    speaker: str
    text: str
    items: tuple[int, ...] = ()
    verdicts: tuple[str, ...] = ()
    decided_by: str = ""  # who produced it: the user brain, the CRS, or fallback:<brain>
    prompt_hash: str | None = None  # LLM turns: the prompt's hash and the tokens it took
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Dialogue:
    """An open conversation as the CRS sees it: ``user`` is the user's index in the log the
    CRS was fitted on (its visible past), ``turns`` everything said so far, oldest first."""

    conversation: int
    user: int
    turns: list[Turn] = field(default_factory=list)

    def rejected(self) -> set[int]:
        """The items the user has turned down in this conversation."""
        return {
            i
            for t in self.turns
            if t.speaker == "user"
            for i, v in zip(t.items, t.verdicts, strict=True)
            if v == "reject"
        }

    def user_text(self) -> str:
        return " ".join(t.text for t in self.turns if t.speaker == "user")


@dataclass(frozen=True)
class Reply:
    """A CRS's answer: what it says and the catalog item indices it recommends, best first
    (at most MAX_ITEMS; the user is shown the first few)."""

    text: str
    items: tuple[int, ...]
    prompt_hash: str | None = None  # an LLM-driven CRS: its prompt's hash and tokens
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class ConversationalRecommender(Protocol):
    """What ``simrec converse`` needs from a CRS: ``name``, ``fit`` and a batched ``respond``.
    :func:`simrec.testing.check_crs` checks a class against this contract."""

    name: str

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        """Learn from the visible log (columns user_index, item_index, rating, timestamp)."""

    def respond(self, dialogues: list[Dialogue]) -> list[Reply]:
        """One reply per dialogue, in order."""


@runtime_checkable
class ReportsStats(Protocol):
    """Optional ability of a CRS: ``stats()``, what it counted while it talked (LLM calls,
    tokens, cache hits, titles named), which ``simrec converse`` writes into its manifest."""

    def stats(self) -> dict[str, Any]: ...


@runtime_checkable
class NamesTitles(Protocol):
    """Optional ability of a CRS that names items by title: ``titles`` named so far and
    ``unresolved``, those no catalog item matched (the report's unresolved rate)."""

    titles: int
    unresolved: int


@runtime_checkable
class CountsLLMCalls(Protocol):
    """What a simulated user backed by a language model counts: ``calls``, ``prompt_tokens``,
    ``completion_tokens`` and ``fallbacks`` (cause -> turns decided without the model)."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    fallbacks: dict[str, int]
