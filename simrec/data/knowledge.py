"""What a knowledge graph says about catalog items.

A knowledge graph is a set of triples ``(head, relation, tail)`` over entities, and links from
catalog items to entities (RecBole's ``NAME.kg`` and ``NAME.link``, or any TSV, CSV or Parquet
table with ``head``, ``relation``, ``tail`` and ``item``, ``entity`` columns; RecBole's
``head_id:token``-style names are accepted too). An item's *facts* are the pairs (relation,
entity) of the triples its entity takes part in: ``(item, r, e)`` gives ``(r, e)``, ``(e, r,
item)`` gives ``(~r, e)``, and when both directions name the same entity (RecBole's graphs
carry ``film.film.directed_by`` and ``film.director.film``) only the outgoing fact is kept, so
a mirrored relation does not count twice. Entities stay opaque ids unless a label file names
them; nothing is invented.

Similarity between items comes from the facts they share, each weighted by how rare the entity
is among linked items (``log(n_linked / items with the fact)``: a director shared by three
films says more than the language English) and by its relation's weight (default 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from simrec.errors import InputError

TRIPLE_COLUMNS = ("head", "relation", "tail")
LINK_COLUMNS = ("item", "entity")


@dataclass
class ItemKnowledge:
    """Knowledge-graph facts per catalog item.

    entity: (n_items,) object, the item's entity id or None when the item has no link;
    facts: (n_items, n_facts) CSR float32, 1 where the item has the fact;
    relation: (n_facts,) object, each fact's relation (``~r`` when the item is the tail);
    value: (n_facts,) object, each fact's entity at the other end;
    labels: entity id -> a readable label, for the entities a label file names;
    source: where the graph came from (for provenance).
    """

    entity: np.ndarray
    facts: sp.csr_matrix
    relation: np.ndarray
    value: np.ndarray
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "kg"

    @property
    def linked(self) -> np.ndarray:
        """(n_items,) bool: the item has an entity."""
        return np.array([e is not None for e in self.entity], bool)

    @property
    def relations(self) -> list[str]:
        """The relations of the facts, sorted."""
        return sorted(set(self.relation.tolist()))

    def subset(self, keep: np.ndarray) -> ItemKnowledge:
        """The knowledge of items ``keep`` (in that order); facts no kept item has go."""
        facts = self.facts[keep]
        used = np.flatnonzero(np.asarray(facts.getnnz(axis=0)) > 0)
        return ItemKnowledge(
            self.entity[keep],
            facts[:, used].tocsr(),
            self.relation[used],
            self.value[used],
            self.labels,
            self.source,
        )

    def label(self, entity: str) -> str:
        """The entity's label, or its id."""
        return self.labels.get(entity, entity)

    def item_of_entity(self) -> dict[str, int]:
        """Entity id -> the (first) item index linked to it."""
        out: dict[str, int] = {}
        for i, e in enumerate(self.entity.tolist()):
            if e is not None and e not in out:
                out[e] = i
        return out

    def weighted(self, weights: dict[str, float] | None = None) -> sp.csr_matrix:
        """(n_items, n_facts) float64: each fact weighted by its rarity among linked items and
        its relation's weight (default 1), rows L2-normalised; facts only one item has carry
        nothing shared and are dropped (zero columns)."""
        f = self.facts.tocsc().astype(np.float64)
        df = np.asarray(f.getnnz(axis=0), np.float64)
        n_linked = max(int(self.linked.sum()), 1)
        idf = np.where(df >= 2, np.log(n_linked / np.maximum(df, 1)), 0.0)
        if weights:
            idf = idf * np.array([weights.get(r, 1.0) for r in self.relation.tolist()])
        x = (f @ sp.diags(idf)).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)) @ x
        x.eliminate_zeros()
        return x.tocsr()

    def alignment(
        self, vectors: sp.spmatrix | np.ndarray, known: np.ndarray, permutations: int = 20
    ) -> dict[str, float]:
        """Do the links point at the right entities? The lift of the mean cosine of
        ``vectors`` (n_items, d; genres, audiences) over the item pairs that share an entity,
        above the mean over all pairs and scaled to [0, 1], against the same statistic with
        the links shuffled among the ``known`` items ``permutations`` times (seeded):
        ``lift``, ``null_mean``, ``null_sd`` and ``z``.
        A knowledge graph linked to the wrong items scores no better than shuffled links."""
        rows = np.flatnonzero(known & self.linked)
        if rows.size < 3:
            return {"lift": 0.0, "null_mean": 0.0, "null_sd": 0.0, "z": 0.0}
        v = sp.csr_matrix(vectors, dtype=np.float64)[rows]
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
        v = (sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)) @ v).tocsr()
        f = self.facts[rows].tocsc().astype(np.float64)
        size = np.asarray(f.getnnz(axis=0), np.float64)
        # facts that tell items apart: shared, but by fewer than a tenth of the items
        keep = np.flatnonzero((size >= 2) & (size < max(0.1 * rows.size, 3)))
        f = f[:, keep]
        total = np.asarray(v.sum(axis=0)).ravel()
        n = v.shape[0]
        base = (total @ total - n) / max(n * (n - 1), 1)

        def lift(order: np.ndarray) -> float:
            per_fact = (f.T @ v[order]).tocsr()
            s = size[keep]
            agree = np.asarray(per_fact.multiply(per_fact).sum(axis=1)).ravel() - s
            pairs = (s * (s - 1)).sum()
            mean = agree.sum() / pairs if pairs > 0 else base
            return float((mean - base) / max(1.0 - base, 1e-12))

        observed = lift(np.arange(n))
        g = np.random.default_rng(0)
        null = np.array([lift(g.permutation(n)) for _ in range(permutations)])
        sd = float(null.std(ddof=1)) if permutations > 1 else 0.0
        z = (observed - float(null.mean())) / sd if sd > 0 else 0.0
        return {"lift": observed, "null_mean": float(null.mean()), "null_sd": sd, "z": z}

    def similarity(self, weights: dict[str, float] | None = None) -> sp.csr_matrix:
        """(n_items, n_items) CSR float64 cosine similarity of the weighted facts, diagonal 0."""
        x = self.weighted(weights)
        s = (x @ x.T).tocsr()
        s.setdiag(0.0)
        s.eliminate_zeros()
        return s


def knowledge_from_frames(
    triples: pd.DataFrame,
    links: pd.DataFrame,
    catalog_ids: np.ndarray,
    *,
    labels: dict[str, str] | None = None,
    source: str = "kg",
    links_file: str = "links",
    item_field: str = "item",
) -> ItemKnowledge:
    """Build :class:`ItemKnowledge` from ``triples`` (columns head, relation, tail, as str) and
    ``links`` (columns item, entity) for the catalog ``catalog_ids`` (n_items,). A link to an
    item the catalog lacks is an InputError naming ``links_file`` and its line."""
    key = pd.Series(catalog_ids).astype(str).str.strip()
    index = pd.Series(np.arange(key.size), index=key.to_numpy())
    index = index[~index.index.duplicated()]
    link_items = links["item"].astype(str).str.strip()
    known = link_items.isin(index.index).to_numpy()
    if not known.all():
        first = int(np.flatnonzero(~known)[0])
        item = link_items.iloc[first]
        raise InputError(
            f"{links_file}: line {first + 2}: field '{item_field}': links item {item!r}, "
            f"which is not in the catalog ({int((~known).sum())} such link(s))"
        )
    entity = np.full(key.size, None, dtype=object)
    link_entities = links["entity"].astype(str).str.strip().to_numpy()
    for i, e in zip(index[link_items].to_numpy(), link_entities, strict=True):
        if entity[i] is None:  # an item's first link wins
            entity[i] = e
    item_of = pd.Series(
        [i for i, e in enumerate(entity) if e is not None],
        index=[e for e in entity if e is not None],
        dtype=np.int64,
    )
    item_of = item_of[~item_of.index.duplicated()]
    t = triples[list(TRIPLE_COLUMNS)].astype(str).apply(lambda c: c.str.strip())
    out_rows = t[t["head"].isin(item_of.index)]
    in_rows = t[t["tail"].isin(item_of.index)]
    pairs = pd.concat(
        [
            pd.DataFrame(
                {
                    "item": item_of[out_rows["head"]].to_numpy(),
                    "relation": out_rows["relation"].to_numpy(),
                    "value": out_rows["tail"].to_numpy(),
                    "incoming": False,
                }
            ),
            pd.DataFrame(
                {
                    "item": item_of[in_rows["tail"]].to_numpy(),
                    "relation": "~" + in_rows["relation"].to_numpy().astype(object),
                    "value": in_rows["head"].to_numpy(),
                    "incoming": True,
                }
            ),
        ],
        ignore_index=True,
    )
    # a mirrored relation names the same entity from both sides: keep the outgoing fact
    pairs = pairs.sort_values(["item", "value", "incoming", "relation"], kind="stable")
    pairs = pairs.drop_duplicates(["item", "value"], keep="first")
    codes, uniques = pd.factorize(
        pd.MultiIndex.from_arrays([pairs["relation"], pairs["value"]]), sort=True
    )
    facts = sp.csr_matrix(
        (np.ones(codes.size, np.float32), (pairs["item"].to_numpy(), codes)),
        shape=(key.size, len(uniques)),
    )
    facts.sum_duplicates()
    facts.data[:] = 1.0
    # the graph's words are data that reach prompts and reports: one clean, capped line each
    # (entities and labels alike, so a label is still found by its entity)
    from simrec.trust import GENRE_LIMIT, TITLE_LIMIT, clean_text, clean_texts

    relation = clean_texts(np.array([r for r, _ in uniques], dtype=object), GENRE_LIMIT)
    value = clean_texts(np.array([v for _, v in uniques], dtype=object), TITLE_LIMIT)
    clean_labels = {
        clean_text(k, TITLE_LIMIT): clean_text(v, TITLE_LIMIT) for k, v in (labels or {}).items()
    }
    return ItemKnowledge(entity, facts, relation, value, clean_labels, source)


def read_table(path: str | Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """A TSV, CSV, Parquet or RecBole atomic file with ``columns`` (also accepted as
    ``NAME_id`` and with RecBole's ``:type`` suffixes), every value as str."""
    from simrec.data.files import require_file

    path = Path(path)
    require_file(path, what)
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path).astype(str)
        except Exception as err:  # pyarrow's errors vary; the message names the file
            raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    else:
        csv = path.suffix == ".csv"  # quotes are data in tab-separated (atomic) files
        try:  # header=None: a row with more fields than the header is an error, not a shift
            body = pd.read_csv(
                path,
                sep="," if csv else "\t",
                dtype=str,
                header=None,
                na_filter=False,
                quoting=0 if csv else 3,
            )
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not a readable table ({err})") from None
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: file is empty, expected {what}") from None
        frame = body.iloc[1:].reset_index(drop=True)
        frame.columns = list(body.iloc[0])
    names = {}
    for raw in frame.columns:
        name = str(raw).split(":", 1)[0].strip()
        name = name[:-3] if name.endswith("_id") else name
        names[raw] = name
    frame = frame.rename(columns=names)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: expected columns {', '.join(columns)} ({what}), missing "
            f"{', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )
    return frame[list(columns)]


def load_knowledge(
    triples_path: str | Path,
    links_path: str | Path,
    catalog_ids: np.ndarray,
    labels_path: str | Path | None = None,
) -> ItemKnowledge:
    """Read a knowledge graph's triples and item links (see the module docstring) for the
    catalog ``catalog_ids``; ``labels_path``: an optional table of ``entity, label``."""
    triples = read_table(triples_path, TRIPLE_COLUMNS, "knowledge-graph triples")
    links = read_table(links_path, LINK_COLUMNS, "item-to-entity links")
    labels = None
    if labels_path is not None:
        lab = read_table(labels_path, ("entity", "label"), "entity labels")
        labels = dict(zip(lab["entity"].str.strip(), lab["label"].str.strip(), strict=True))
    return knowledge_from_frames(
        triples,
        links,
        catalog_ids,
        labels=labels,
        source=f"kg:{Path(triples_path).name}",
        links_file=str(links_path),
    )
