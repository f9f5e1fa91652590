"""What a simulated user can say about an item it is looking for, without naming it: its
categories (genres), its era (from the data's date field) and its knowledge-graph facts whose
entity has a readable label. Each fact is a (kind, value) pair with a phrase in the catalog
domain's words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simrec.data.dataset import Catalog


@dataclass(frozen=True)
class Fact:
    """One attribute of an item: ``kind`` is ``category``, ``era`` or ``kg:<relation>``;
    ``value`` the attribute's value as text; ``phrase`` how a user says it."""

    kind: str
    value: str
    phrase: str


def era_of(year: float) -> str | None:
    """The decade of a year, as people say it.

    >>> era_of(1994.0), era_of(float("nan"))
    ('1990s', None)
    """
    if not np.isfinite(year):
        return None
    return f"{int(year) // 10 * 10}s"


def article(word: str) -> str:
    """'a' or 'an' before ``word`` (by its first letter).

    >>> article("Animation"), article("Comedy")
    ('an', 'a')
    """
    return "an" if word[:1].lower() in "aeiou" else "a"


def _relation_words(relation: str) -> str:
    """``film.film.directed_by`` -> ``directed by``; ``~r`` (the item is the tail) -> ``r of``.

    >>> _relation_words("film.film.directed_by"), _relation_words("~film.actor.film")
    ('directed by', 'film of')
    """
    tail = relation.startswith("~")
    words = relation.lstrip("~").rsplit(".", 1)[-1].replace("_", " ").strip()
    return f"{words} of" if tail else words


class ItemFacts:
    """Facts per catalog item, computed once: ``of(i)`` -> the item's facts, categories first
    (in the catalog's genre order), then its era, then its labelled knowledge-graph facts
    (sorted by relation, then value)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._genres = catalog.genre_lists()
        kg = catalog.knowledge
        self._kg = None
        self._cache: dict[int, list[Fact]] = {}
        if kg is not None and kg.labels:
            self._kg = kg.facts.tocsr()

    def of(self, item: int) -> list[Fact]:
        if item not in self._cache:
            self._cache[item] = self._facts(item)
        return self._cache[item]

    def _facts(self, item: int) -> list[Fact]:
        c = self.catalog
        noun = c.domain.item
        out = [Fact("category", g, f"{article(g)} {g} {noun}") for g in self._genres[item]]
        if c.years is not None:
            era = era_of(float(c.years[item]))
            if era is not None:
                out.append(Fact("era", era, f"from the {era}"))
        if self._kg is not None:
            kg = c.knowledge
            row = self._kg.indices[self._kg.indptr[item] : self._kg.indptr[item + 1]]
            labelled = [
                (str(kg.relation[j]), kg.labels[str(kg.value[j])])
                for j in row
                if str(kg.value[j]) in kg.labels
            ]
            for rel, label in sorted(labelled):
                out.append(Fact(f"kg:{rel}", label, f"{_relation_words(rel)} {label}"))
        return out

    def has(self, item: int, fact: Fact) -> bool:
        """Whether ``item`` shares ``fact`` (same kind and value)."""
        return fact in self.of(item)
