"""Item facts and neighbours from a knowledge graph (``simrec augment items --kg``).

The graph is static catalog knowledge (:mod:`simrec.data.knowledge`); what is derived from
interactions (which linked items are named first: the most interacted with) uses only the
interactions before the cutoff.

Facts per linked item, one per relation, each with ``source`` ``kg:<relation>`` and a
confidence (1.0: the graph says so):

* a relation to another catalog item (``sequel``, ``prequel``): that item's title;
* an *attribute* relation (one of its entities is shared by at least a tenth of the linked
  items, and at least five: language, country, content rating, broad genres): the entity, as
  its label when a label file names it, else as its id with how many items share it;
* any other relation (people, companies, awards, subjects): the labelled entities (up to
  three) or how many entities the item has, and the (at most two) items that share the most
  of them, by title ("directed by: 1, shared with Star Wars (1977) and Return of the Jedi
  (1983)").

An item without a link has no facts (null): unknown, never guessed.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp

from simrec.arrays import row_top
from simrec.data.dataset import Catalog, display_title
from simrec.data.knowledge import ItemKnowledge

ATTRIBUTE_SHARE = 0.1  # an entity shared by this share of linked items marks an attribute
ATTRIBUTE_MIN = 5  # ... and by at least this many items
PRIOR_INTERACTIONS = 10.0  # interactions at which both similarities count the same


def relation_name(relation: str) -> str:
    """A readable relation name: the last dotted part, underscores as spaces; ``~r`` (the item
    is the tail) reads as ``r (of)``.

    >>> relation_name("film.film.directed_by"), relation_name("~film.producer.film")
    ('directed by', 'film (of)')
    """
    inverse = relation.startswith("~")
    name = relation.lstrip("~").rsplit(".", 1)[-1].replace("_", " ").strip() or relation
    return f"{name} (of)" if inverse else name


def top_similar(similarity: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """``similarity`` keeping each row's ``n`` largest entries (ties: lower index first)."""
    s = similarity.tocsr()
    rows, cols, vals = [], [], []
    for i in range(s.shape[0]):
        idx, val = row_top(s, i, n)
        rows.append(np.full(idx.size, i))
        cols.append(idx)
        vals.append(val)
    if not rows:
        return sp.csr_matrix(s.shape, dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=s.shape,
    )


def combined_similarity(
    interactions: sp.csr_matrix,
    knowledge: sp.csr_matrix,
    n: int,
    counts: np.ndarray,
    prior: float = PRIOR_INTERACTIONS,
) -> sp.csr_matrix:
    """Two item similarities (each (n_items, n_items), values in [0, 1]) mixed per item by
    how much its interactions say: row i is ``w_i * interactions + (1 - w_i) * knowledge``
    with ``w_i = counts_i / (counts_i + prior)`` (``counts``: (n_items,) interactions before
    the cutoff), top ``n`` per row. A cold item leans on the graph, a popular one on its
    audience."""
    w = counts.astype(np.float64) / (counts + prior)
    mixed = sp.diags(w) @ interactions + sp.diags(1.0 - w) @ knowledge
    return top_similar(mixed.tocsr(), n)


def item_facts(
    catalog: Catalog, knowledge: ItemKnowledge, counts: np.ndarray
) -> tuple[list[list[str] | None], list[list[str] | None], list[list[float] | None]]:
    """Facts, sources and confidences per item (module docstring); ``counts``: (n_items,)
    interactions before the cutoff, which order the items named in a fact."""
    facts = knowledge.facts.tocsr()
    by_fact = facts.T.tocsr()  # (n_facts, n_items)
    df = np.diff(by_fact.indptr)
    n_linked = max(int(knowledge.linked.sum()), 1)
    relations = knowledge.relation
    attribute = {
        r
        for r, d in zip(relations.tolist(), df.tolist(), strict=True)
        if d >= max(ATTRIBUTE_SHARE * n_linked, ATTRIBUTE_MIN)
    }
    item_of = knowledge.item_of_entity()
    order = np.lexsort((np.arange(catalog.n_items), -counts))  # most interacted first
    rank = np.empty(catalog.n_items, np.int64)
    rank[order] = np.arange(catalog.n_items)
    titles = [display_title(t) for t in catalog.titles.tolist()]
    out_f: list[list[str] | None] = []
    out_s: list[list[str] | None] = []
    out_c: list[list[float] | None] = []
    for i in range(catalog.n_items):
        if knowledge.entity[i] is None:
            out_f.append(None)
            out_s.append(None)
            out_c.append(None)
            continue
        cols = facts.indices[facts.indptr[i] : facts.indptr[i + 1]]
        mine: dict[str, list[int]] = {}
        for c in cols.tolist():
            mine.setdefault(relations[c], []).append(c)
        texts, sources = [], []
        for r in sorted(mine):
            name, cs = relation_name(r), mine[r]
            items = sorted(
                {item_of[knowledge.value[c]] for c in cs if knowledge.value[c] in item_of} - {i},
                key=lambda j: rank[j],
            )
            if items:
                text = f"{name}: {' and '.join(titles[j] for j in items[:2])}"
            elif r in attribute:
                text = f"{name}: " + ", ".join(
                    knowledge.labels.get(knowledge.value[c])
                    or f"{knowledge.value[c]} ({int(df[c])} items)"
                    for c in sorted(cs, key=lambda c: (-df[c], knowledge.value[c]))[:3]
                )
            else:
                named = sorted(
                    knowledge.labels[v] for v in knowledge.value[cs] if v in knowledge.labels
                )
                what = ", ".join(named[:3]) if named else str(len(cs))
                text = f"{name}: {what}" + _shared_with(by_fact, cs, i, rank, titles)
            texts.append(text)
            sources.append(f"kg:{r}")
        out_f.append(texts)
        out_s.append(sources)
        out_c.append([1.0] * len(texts))
    return out_f, out_s, out_c


def _shared_with(by_fact: sp.csr_matrix, cols: list[int], item: int, rank, titles) -> str:
    """', shared with A and B': the two items sharing the most of ``cols`` with ``item``
    (ties: the most interacted with), or ', none shared'."""
    others: dict[int, int] = {}
    for c in cols:
        for j in by_fact.indices[by_fact.indptr[c] : by_fact.indptr[c + 1]].tolist():
            if j != item:
                others[j] = others.get(j, 0) + 1
    if not others:
        return ", none shared in the catalog"
    best = sorted(others, key=lambda j: (-others[j], rank[j]))[:2]
    return ", shared with " + " and ".join(titles[j] for j in best)


def alignment_check(data, rows: np.ndarray, *, warn: bool = True) -> dict:
    """Whether ``data``'s knowledge graph is linked to the right items: the alignment
    (:meth:`ItemKnowledge.alignment`) against the catalog's genres and against the audiences of
    the interactions ``rows`` (before the cutoff), and ``aligned``: either z-score is at least
    :data:`ALIGNED_Z`. A misaligned graph is logged as a warning; its facts are still written,
    since the graph is the user's data, but they describe other items."""
    import logging

    k = data.catalog.knowledge
    n_items = data.catalog.n_items
    genres = data.catalog.genres
    has_genres = np.diff(genres.tocsr().indptr) > 0
    log = data.interactions.take(rows)
    audience = log.matrix(n_items).T.tocsr()
    has_audience = np.diff(audience.indptr) > 0
    out = {
        "genres": k.alignment(genres, has_genres),
        "audience": k.alignment(audience, has_audience),
    }
    z = max(out["genres"]["z"], out["audience"]["z"])
    out["aligned"] = bool(z >= ALIGNED_Z)
    if warn and not out["aligned"]:
        logging.getLogger(__name__).warning(
            "%s: the knowledge graph's links look misaligned with the catalog: items that share "
            "an entity are no more alike (genres z=%.1f, audiences z=%.1f) than with the links "
            "shuffled; its facts likely describe other items (RecBole's ml-100k .link, for one, "
            "uses MovieLens-1M item ids)",
            k.source,
            out["genres"]["z"],
            out["audience"]["z"],
        )
    return out


ALIGNED_Z = 3.0  # standard deviations above shuffled links


# the claims a description can make that the graph can contradict: a word in the relation's
# name -> the phrase a description uses ("A is a sequel to X": X is A's prequel)
CLAIMS = {
    "prequel": r"sequel to",
    "sequel": r"prequel to",
    "directed": r"directed by",
    "written": r"written by",
    "produced": r"produced by",
}


def _norm(name: str) -> str:
    """A title or a name compared loosely: display form, no year, lower case, letters and
    digits only."""
    name = re.sub(r"\s*\(\d{4}\)\s*$", "", display_title(name))
    return re.sub(r"[^0-9a-z]+", " ", name.lower()).strip()


def item_claims(catalog: Catalog, knowledge: ItemKnowledge) -> list[dict[str, set[str]]]:
    """Per item, for each claim of :data:`CLAIMS` the graph can check, the names it allows:
    the titles of the linked items (sequel, prequel) or the labels of the entities (people;
    only when a label file names them). An item without such facts allows anything."""
    item_of = knowledge.item_of_entity()
    facts = knowledge.facts.tocsr()
    out: list[dict[str, set[str]]] = []
    for i in range(catalog.n_items):
        claims: dict[str, set[str]] = {}
        for c in facts.indices[facts.indptr[i] : facts.indptr[i + 1]].tolist():
            rel, value = knowledge.relation[c], knowledge.value[c]
            if rel.startswith("~"):
                continue  # the other side of a fact: its direction is not the item's
            for word in CLAIMS:
                if word not in rel.rsplit(".", 1)[-1]:
                    continue
                if value in item_of:
                    claims.setdefault(word, set()).add(_norm(str(catalog.titles[item_of[value]])))
                elif value in knowledge.labels:
                    claims.setdefault(word, set()).add(_norm(knowledge.labels[value]))
        out.append(claims)
    return out


def contradiction(description: str, claims: dict[str, set[str]]) -> str | None:
    """The claim of ``description`` the graph contradicts (``sequel``, ``directed``, ...), or
    None: it says "sequel to X" or "directed by X" where the graph names others."""
    for word, allowed in claims.items():
        pattern = CLAIMS[word] + r"\s+([^.,;:!?()]+)"
        for m in re.finditer(pattern, description, flags=re.IGNORECASE):
            said = _norm(m.group(1))
            if said and not any(said.startswith(a) or a.startswith(said) for a in allowed):
                return word
    return None
