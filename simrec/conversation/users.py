"""Simulated users of a conversational recommender.

The ``agenda`` user (after agenda-based simulators such as UserSimCRS) knows its target item
but never names it: it opens with the target's first fact (a category, the era, a
knowledge-graph fact), reveals one more fact each turn, accepts the target as soon as it is
shown, and turns down every other item it is shown with a reason (the first fact it has
revealed that the item lacks, or that it has seen it already). No LLM, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simrec.conversation.dialogue import Reply, Turn
from simrec.conversation.facts import Fact, ItemFacts

SHOWN = 3  # items of a reply the user looks at


@dataclass
class Seeker:
    """One user in one conversation: its target, its agenda (the target's facts in the order
    it reveals them), what it has revealed, what it has seen before, how it ended."""

    target: int
    agenda: list[Fact]
    seen: frozenset[int]
    revealed: int = 0
    status: str = "open"  # open | accepted | accepted_other (a wrong item) | left
    accepted_turn: int | None = None
    rejected: list[int] = field(default_factory=list)


class AgendaUser:
    """The deterministic agenda-based user; ``opening`` / ``answer`` work on many seekers."""

    name = "agenda"

    def __init__(self, facts: ItemFacts, shown: int = SHOWN) -> None:
        self.facts, self.shown = facts, shown
        self.catalog = facts.catalog

    def seeker(self, target: int, seen: frozenset[int]) -> Seeker:
        return Seeker(target, self.facts.of(target), seen)

    def opening(self, s: Seeker) -> Turn:
        noun = self.catalog.domain.item
        if not s.agenda:
            return Turn("user", f"Hi! Can you recommend a {noun}?", decided_by=self.name)
        s.revealed = 1
        return Turn("user", f"Hi! I'm looking for {s.agenda[0].phrase}.", decided_by=self.name)

    def answer(self, s: Seeker, reply: Reply, turn: int, last: bool) -> Turn:
        """The user's answer to ``reply`` at ``turn`` (1-based); ``last``: no turn follows."""
        shown = tuple(reply.items[: self.shown])
        titles = self.catalog.display_titles
        if s.target in shown:
            s.status, s.accepted_turn = "accepted", turn
            verdicts = tuple("accept" if i == s.target else "reject" for i in shown)
            s.rejected += [i for i in shown if i != s.target]
            return Turn(
                "user",
                f"Yes, {titles[s.target]} is exactly what I was looking for. Thanks!",
                shown,
                verdicts,
                self.name,
            )
        s.rejected += list(shown)
        reasons = [self._reason(s, i) for i in shown]
        text = " ".join(reasons) if reasons else "You did not suggest anything."
        if last:
            s.status = "left"
            return Turn(
                "user",
                f"{text} I'll look elsewhere, thanks.",
                shown,
                ("reject",) * len(shown),
                self.name,
            )
        if s.revealed < len(s.agenda):
            text += f" It should be {s.agenda[s.revealed].phrase}."
            s.revealed += 1
        else:
            text += " Something else, please."
        return Turn("user", text, shown, ("reject",) * len(shown), self.name)

    def _reason(self, s: Seeker, item: int) -> str:
        title = self.catalog.display_titles[item]
        if item in s.seen:
            return f"I have seen {title} already."
        for fact in s.agenda[: s.revealed]:
            if not self.facts.has(item, fact):
                return f"{title} is not {fact.phrase}."
        return f"{title} is not the one I have in mind."

    # batched forms, the interface the conversation loop uses (the LLM user's too)

    def openings(self, seekers: list[Seeker], dialogues) -> list[Turn]:
        return [self.opening(s) for s in seekers]

    def answers(self, seekers: list[Seeker], dialogues, replies, turn: int, last: bool):
        return [self.answer(s, r, turn, last) for s, r in zip(seekers, replies, strict=True)]

    def closing(self, seekers: list[Seeker], dialogues) -> list[tuple[int, str]]:
        return [self.closing_rating(s) for s in seekers]

    def closing_rating(self, s: Seeker) -> tuple[int, str]:
        """The user's rating of the conversation (1-10) and why."""
        if s.status == "accepted":
            score = max(5, 11 - int(s.accepted_turn or 1))
            return score, f"found it at turn {s.accepted_turn}"
        return 2, f"never shown it; turned down {len(s.rejected)} items"
