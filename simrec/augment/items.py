"""Item enrichment from the interaction graph, without an LLM (offline, seconds).

Every fact comes from the catalog or from the interactions before the cutoff:

* ``neighbours``: "people who liked X also liked Y", the items with the highest co-occurrence
  cosine among the users who liked X (implicit's CosineRecommender over the liked matrix; a
  user likes the items they rated at or above their own mean, or everything without ratings);
* statistics: interactions, mean rating, share of high ratings (top quarter of the scale),
  rating spread;
* ``genres`` for items that have none: a similarity-weighted vote of the neighbours' genres;
  a genre is added when at least ``genre_threshold`` of the neighbour weight carries it (its
  confidence is that share); an item without rated neighbours stays unknown;
* ``attributes``: the data's own item fields (brand, author, price, ...: ``Catalog.attributes``)
  as (name, value, source ``catalog``, confidence 1.0);
* ``era`` from the data's date field (the release date, a year column, MovieLens's title
  year; never guessed: a catalog without dates has no eras), ``popularity_band`` from the
  item's interaction-count percentile, ``audience`` from its fans (the genres they like
  beyond the item's own, and whether they rate generously or critically);
* ``tags`` from a closed vocabulary built from the catalog (its genres, eras, bands and rating
  labels), each with its source and confidence;
* ``description``: the facts above composed into sentences, in the catalog domain's words
  ("a 1990s Action movie", "12 people have bought it").

Each generated field has ``<field>_source`` (``catalog`` or ``graph``), ``<field>_confidence``
and ``<field>_prompt_hash`` (null here; set by the LLM path). Unknown stays null; nothing is
guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from simrec.arrays import row_top
from simrec.augment.cutoff import Cutoff, visible
from simrec.data.dataset import Dataset
from simrec.data.schemas import arrow_id_type
from simrec.domain import and_list, article
from simrec.errors import ConfigError

FIELDS = (
    "genres_added",
    "era",
    "popularity_band",
    "audience",
    "description",
    "mood",
    "audience_group",
)
# popularity bands, most consumed first: (the share of items at or below the band's floor, name)
BANDS = ((0.95, "very popular"), (0.75, "popular"), (0.25, "mid-range"), (0.0, "niche"))
MIN_FANS = 5


@dataclass
class Graph:
    """What the visible interactions say about items. counts, mean, high, spread: (n_items,)
    (mean/high/spread NaN without ratings); similarity: (n_items, n_items) CSR, top
    ``neighbours`` per row; liked: (n_users, n_items) CSR of liked interactions."""

    counts: np.ndarray
    mean: np.ndarray
    high: np.ndarray
    spread: np.ndarray
    similarity: sp.csr_matrix
    liked: sp.csr_matrix
    user_bias: np.ndarray


def build_graph(data: Dataset, rows: np.ndarray, neighbours: int) -> Graph:
    """The item graph of ``data``'s interactions ``rows`` (the visible ones)."""
    from implicit.nearest_neighbours import CosineRecommender

    from simrec.environments.learned import quiet_implicit

    log = data.interactions.take(rows)
    n_users, n_items = log.n_users, data.catalog.n_items
    counts = np.bincount(log.item, minlength=n_items).astype(np.int64)
    rated = np.isfinite(log.rating)
    r = log.rating.astype(np.float64)
    n_r = np.bincount(log.item[rated], minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(log.item[rated], r[rated], n_items) / n_r
        sq = np.bincount(log.item[rated], r[rated] ** 2, n_items) / n_r
        spread = np.sqrt(np.maximum(sq - mean**2, 0.0))
        scale = data.scale
        high_cut = scale.low + 0.75 * (scale.high - scale.low)
        high = np.bincount(log.item[rated], (r[rated] >= high_cut - 1e-9), n_items) / n_r
        user_mean = np.bincount(log.user[rated], r[rated], n_users) / np.bincount(
            log.user[rated], minlength=n_users
        )
    global_mean = float(r[rated].mean()) if rated.any() else float("nan")
    user_bias = np.nan_to_num(user_mean - global_mean)
    like = ~rated | (r >= np.nan_to_num(user_mean[log.user], nan=-np.inf) - 1e-9)
    liked = sp.csr_matrix(
        (np.ones(int(like.sum()), np.float32), (log.user[like], log.item[like])),
        shape=(n_users, n_items),
    )
    liked.sum_duplicates()
    liked.data[:] = 1.0
    if liked.nnz:
        with quiet_implicit():
            model = CosineRecommender(K=neighbours + 1)
            model.fit(liked, show_progress=False)
        sim = model.similarity.tocsr().astype(np.float32)
        sim.setdiag(0)
        sim.eliminate_zeros()
    else:
        sim = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return Graph(counts, mean, high, spread, sim, liked, user_bias)


def top_neighbours(graph: Graph, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most similar items to ``item`` (ties by index) and their similarities."""
    return row_top(graph.similarity, item, n)


def enrich_items(
    data: Dataset,
    *,
    cutoff: Cutoff | None = None,
    neighbours: int = 10,
    genre_threshold: float = 0.5,
    only_missing: bool = False,
    llm=None,
    attributes: tuple[str, ...] | None = None,
    seed: int = 0,
    templates_dir: str | None = None,
    max_tokens: int = 300,
    temperature: float = 0.7,
    free_tags: int = 0,
    kg: bool = False,
    genre_from: str | None = None,
    alignment: dict | None = None,
) -> tuple[pa.Table, dict]:
    """``items_enriched`` as an Arrow table (original catalog columns first, untouched) and
    counts for the manifest. ``only_missing``: leave items that already have genres and text
    without generated fields (their rows stay, with nulls). ``llm``: an LLMBackend that then
    writes the descriptions and answers ``attributes`` (see :mod:`simrec.augment.llm`; default:
    the domain's, without ``era`` where the catalog has no dates); ``mood`` and
    ``audience_group`` come only from it. ``kg``: add the knowledge graph's facts
    and neighbours (:mod:`simrec.augment.knowledge`; the data must have a graph).
    ``genre_from``: whose neighbours vote the missing genres, ``interactions``, ``kg`` or
    ``both`` (default: ``both`` with ``kg`` when the graph's links look right, else
    ``interactions``). A graph whose links look wrong
    (:func:`simrec.augment.knowledge.alignment_check`) is logged as a warning and its facts
    stay out of the descriptions (they are still written, in ``kg_facts``). ``alignment``:
    that check's result when the caller already has it."""
    cat, scale = data.catalog, data.scale
    if genre_from not in (None, "interactions", "kg", "both"):
        raise ConfigError(f"--genre-from: expected interactions, kg or both, got {genre_from!r}")
    if (kg or genre_from not in (None, "interactions")) and cat.knowledge is None:
        raise ConfigError(
            f"{data.source}: --kg needs a knowledge graph (a RecBole dataset with NAME.kg and "
            f"NAME.link, or --kg TRIPLES --kg-links LINKS), found none"
        )
    rows = visible(data.interactions, cutoff)
    graph = build_graph(data, rows, neighbours)
    voters = graph.similarity
    kg_sim = kg_facts = None
    aligned = False
    if cat.knowledge is not None and (kg or genre_from not in (None, "interactions")):
        from simrec.augment.knowledge import (
            alignment_check,
            combined_similarity,
            item_facts,
            top_similar,
        )

        alignment = alignment or alignment_check(data, rows)
        aligned = alignment["aligned"]
        genre_from = genre_from or ("both" if aligned else "interactions")
        kg_sim = top_similar(cat.knowledge.similarity(), neighbours)
        voters = {
            "interactions": graph.similarity,
            "kg": kg_sim,
            "both": combined_similarity(graph.similarity, kg_sim, neighbours, graph.counts),
        }[genre_from]
        if kg:
            kg_facts = item_facts(cat, cat.knowledge, graph.counts)
    genre_lists = cat.genre_lists()
    names = list(cat.genre_names)
    eras = _eras(cat)
    attrs = _attribute_pairs(cat)
    g = cat.genres.tocsr().astype(np.float64)
    n_items = cat.n_items
    bands = popularity_bands(graph.counts)
    # every item's fans at once: (n_items, n_users) @ (n_users, ...) products
    fans = graph.liked.T.tocsr()
    n_fans = np.diff(fans.indptr)
    fan_genres = np.asarray((fans @ (graph.liked @ g)).todense())  # (n_items, n_genres)
    fan_bias = (fans @ graph.user_bias) / np.maximum(n_fans, 1)  # (n_items,)
    columns = _columns(arrow_id_type(cat.item_ids))
    out: dict[str, list] = {k: [] for k in columns}
    counts = {"items": n_items, "genres_added": 0, "genres_unknown": 0, "with_neighbours": 0}
    for i in range(n_items):
        known = genre_lists[i]
        skip = only_missing and _complete(cat, genre_lists, i)
        nb, nb_sim = top_neighbours(graph, i, neighbours)
        counts["with_neighbours"] += bool(nb.size)
        added, added_conf = [], []
        if not known and not skip:
            voter, voter_sim = (
                (nb, nb_sim) if voters is graph.similarity else row_top(voters, i, neighbours)
            )
            added, added_conf = _vote_genres(g, names, voter, voter_sim, genre_threshold)
            counts["genres_added" if added else "genres_unknown"] += 1
        era = eras[i]
        band = bands[i]
        audience, audience_conf = _audience(
            n_fans[i], fan_genres[i].copy(), fan_bias[i], names, known
        )
        genres_all = known + added
        description = _describe(cat, i, era, genres_all, graph, nb[:3], scale, audience, attrs[i])
        if aligned and kg_facts is not None and kg_facts[0][i]:
            description += " From the knowledge graph: " + "; ".join(kg_facts[0][i][:3]) + "."
        tags = _tags(known, added, added_conf, era, band, graph, i, scale)
        if skip:
            era = band = audience = description = None
            tags = []
        for key, value in (
            ("neighbours", cat.item_ids[nb].tolist() if not skip else []),
            ("neighbour_similarity", nb_sim.astype(np.float64).tolist() if not skip else []),
            (
                "attributes",
                [
                    {"name": k, "value": v, "source": "catalog", "confidence": 1.0}
                    for k, v in attrs[i]
                ],
            ),
            ("n_interactions", int(graph.counts[i])),
            ("mean_rating", _nan_to_none(graph.mean[i])),
            ("high_rating_share", _nan_to_none(graph.high[i])),
            ("rating_spread", _nan_to_none(graph.spread[i])),
            ("genres_added", added),
            ("genres_added_confidence", added_conf),
            ("genres_added_source", "graph" if added else None),
            ("era", era),
            ("era_source", "catalog" if era else None),
            ("era_confidence", 1.0 if era else None),
            ("popularity_band", band),
            ("popularity_band_source", "graph" if band else None),
            ("popularity_band_confidence", 1.0 if band else None),
            ("audience", audience),
            ("audience_source", "graph" if audience else None),
            ("audience_confidence", audience_conf if audience else None),
            ("description", description),
            ("description_source", "graph" if description else None),
            ("description_confidence", 1.0 if description else None),
            ("mood", None),
            ("mood_source", None),
            ("mood_confidence", None),
            ("audience_group", None),
            ("audience_group_source", None),
            ("audience_group_confidence", None),
            ("tags", tags),
        ):
            out[key].append(value)
    for f in FIELDS:
        out[f"{f}_prompt_hash"] = [None] * n_items
    extra: dict[str, pa.Array] = {}
    if kg and kg_sim is not None and kg_facts is not None:
        near = [row_top(kg_sim, i, neighbours) for i in range(n_items)]
        item_type_kg = arrow_id_type(cat.item_ids)
        extra = {
            "kg_entity": pa.array(cat.knowledge.entity.tolist(), pa.string()),
            "kg_neighbours": pa.array(
                [cat.item_ids[j].tolist() for j, _ in near], pa.list_(item_type_kg)
            ),
            "kg_neighbour_similarity": pa.array(
                [v.astype(np.float64).tolist() for _, v in near], pa.list_(pa.float64())
            ),
            "kg_facts": pa.array(kg_facts[0], pa.list_(pa.string())),
            "kg_facts_source": pa.array(kg_facts[1], pa.list_(pa.string())),
            "kg_facts_confidence": pa.array(kg_facts[2], pa.list_(pa.float64())),
        }
        counts["kg_linked"] = int(cat.knowledge.linked.sum())
        counts["kg_unknown"] = n_items - counts["kg_linked"]
        counts["kg_aligned"] = int(aligned)
    item_type = arrow_id_type(cat.item_ids)
    base = {
        "item_id": pa.array(cat.item_ids, item_type),
        "title": pa.array(cat.titles.astype(str)),
        "genres": pa.array(genre_lists, pa.list_(pa.string())),
        "text": pa.array(cat.text.astype(str)),
    }
    table = pa.Table.from_pydict(
        {**base, **{k: pa.array(out[k], t) for k, t in columns.items()}}
        | {f"{f}_prompt_hash": pa.array(out[f"{f}_prompt_hash"], pa.string()) for f in FIELDS}
        | extra
    )
    counts["visible_interactions"] = int(rows.size)
    counts["interactions"] = len(data.interactions)
    if llm is not None:
        from simrec.agents.brains.prompts import in_words, load_templates
        from simrec.augment.llm import ATTRIBUTES, enrich_with_llm

        era_list = sorted({e for e in eras if e})
        if attributes is None:
            attributes = tuple(a for a in cat.domain.attributes if a != "era" or era_list)
        unknown = sorted(set(attributes) - set(ATTRIBUTES))
        if unknown:
            raise ConfigError(
                f"--attributes: expected some of {', '.join(ATTRIBUTES)}, got {unknown}"
            )
        if "era" in attributes and not era_list:
            raise ConfigError(
                f"--attributes: era needs dates, and {data.source} has no date or year field "
                f"for its items (eras are never guessed); leave era out"
            )
        from simrec.augment.knowledge import item_claims

        df = table.to_pandas()
        todo = np.array(
            [i for i in range(n_items) if not (only_missing and _complete(cat, genre_lists, i))],
            np.int64,
        )
        found = enrich_with_llm(
            df,
            todo,
            backend=llm,
            genre_names=names,
            eras=era_list,
            vocab=vocabulary(data),
            attributes=tuple(attributes),
            templates=in_words(load_templates(templates_dir), cat.domain),
            domain=cat.domain,
            seed=seed,
            max_tokens=max_tokens,
            temperature=temperature,
            titles_by_id=dict(zip(cat.item_ids.tolist(), cat.display_titles.tolist(), strict=True)),
            free_tags=free_tags,
            kg_claims=item_claims(cat, cat.knowledge) if kg_facts is not None and aligned else None,
        )
        counts.update({f"llm_{k}" if not k.startswith("llm_") else k: v for k, v in found.items()})
        table = pa.Table.from_pandas(df, schema=table.schema, preserve_index=False)
    return table, counts


def _complete(cat, genre_lists, i: int) -> bool:
    return bool(genre_lists[i]) and bool(str(cat.text[i]).strip())


_TAG = pa.struct([("tag", pa.string()), ("source", pa.string()), ("confidence", pa.float64())])
_ATTRIBUTE = pa.struct(
    [
        ("name", pa.string()),
        ("value", pa.string()),
        ("source", pa.string()),
        ("confidence", pa.float64()),
    ]
)


def _columns(item_type: pa.DataType) -> dict[str, pa.DataType]:
    """The generated columns of ``items_enriched`` and their types (``item_type``: the
    data's id type, for the neighbours)."""
    return {"attributes": pa.list_(_ATTRIBUTE), "neighbours": pa.list_(item_type), **_TYPES}


_TYPES: dict[str, pa.DataType] = {
    "neighbour_similarity": pa.list_(pa.float64()),
    "n_interactions": pa.int64(),
    "mean_rating": pa.float64(),
    "high_rating_share": pa.float64(),
    "rating_spread": pa.float64(),
    "genres_added": pa.list_(pa.string()),
    "genres_added_confidence": pa.list_(pa.float64()),
    "genres_added_source": pa.string(),
    "era": pa.string(),
    "era_source": pa.string(),
    "era_confidence": pa.float64(),
    "popularity_band": pa.string(),
    "popularity_band_source": pa.string(),
    "popularity_band_confidence": pa.float64(),
    "audience": pa.string(),
    "audience_source": pa.string(),
    "audience_confidence": pa.float64(),
    "description": pa.string(),
    "description_source": pa.string(),
    "description_confidence": pa.float64(),
    "mood": pa.string(),
    "mood_source": pa.string(),
    "mood_confidence": pa.float64(),
    "audience_group": pa.string(),
    "audience_group_source": pa.string(),
    "audience_group_confidence": pa.float64(),
    "tags": pa.list_(_TAG),
}


def _nan_to_none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def popularity_bands(counts: np.ndarray) -> list[str | None]:
    """Each item's popularity band (:data:`BANDS`) by its interaction count against the
    quantiles of the consumed items' counts: above the 95% quantile ``very popular``, above the
    75% ``popular``, above the 25% ``mid-range``, else ``niche``; None for unconsumed items.
    Ties stay together and the least consumed are always niche, however many share a count.

    >>> popularity_bands(np.array([3, 3, 3, 3, 3, 3, 9, 40, 0]))
    ['niche', 'niche', 'niche', 'niche', 'niche', 'niche', 'popular', 'very popular', None]
    """
    consumed = counts[counts > 0]
    if consumed.size == 0:
        return [None] * counts.size
    floors = [(np.quantile(consumed, share) if share else -np.inf, name) for share, name in BANDS]
    return [
        None if c == 0 else next(name for floor, name in floors if c > floor)
        for c in counts.tolist()
    ]


def _eras(cat) -> list[str | None]:
    """Per item, its decade ("1990s") from the catalog's years; None where unknown (every
    item of a catalog without a date field)."""
    if cat.years is None:
        return [None] * cat.n_items
    return [f"{int(y) // 10 * 10}s" if np.isfinite(y) else None for y in cat.years.tolist()]


def _attribute_pairs(cat) -> list[list[tuple[str, str]]]:
    """Per item, the (name, text value) of each of the catalog's attributes it has."""
    from simrec.data.dataset import attribute_text

    out: list[list[tuple[str, str]]] = [[] for _ in range(cat.n_items)]
    for name, values in cat.attributes.items():
        label = name.replace("_", " ")
        for i, v in enumerate(values.tolist()):
            text = attribute_text(v)
            if text:
                out[i].append((label, text))
    return out


def _vote_genres(g, names, nb, nb_sim, threshold) -> tuple[list[str], list[float]]:
    """Genres carried by at least ``threshold`` of the neighbours' similarity weight (only
    neighbours with genres vote)."""
    if nb.size == 0:
        return [], []
    votes = g[nb].toarray()  # (k, n_genres)
    has = votes.sum(axis=1) > 0
    weight = nb_sim[has].astype(np.float64)
    if weight.sum() <= 0:
        return [], []
    share = weight @ votes[has] / weight.sum()
    picked = np.flatnonzero(share >= threshold)
    picked = picked[np.lexsort((picked, -share[picked]))]
    return [names[j] for j in picked], [round(float(share[j]), 6) for j in picked]


def _audience(n_fans, profile, bias, names, known) -> tuple[str | None, float]:
    """The audience line from an item's fan count, the genres its fans like (n_genres,) and
    their mean rating bias."""
    if n_fans < MIN_FANS:
        return None, 0.0
    for name in known:
        profile[names.index(name)] = 0
    text = []
    if profile.sum() > 0:
        top = [names[j] for j in np.lexsort((np.arange(profile.size), -profile))[:2] if profile[j]]
        text.append(f"its fans also like {' and '.join(top)}")
    style = "generous" if bias > 0.15 else "critical" if bias < -0.15 else "typical"
    text.append(f"they are {style} raters")
    confidence = round(1.0 - 1.0 / np.sqrt(n_fans), 6)
    line = "; ".join(text)
    return line[0].upper() + line[1:] + ".", confidence


def _describe(cat, i, era, genres, graph, nb, scale, audience, attrs=()) -> str:
    d = cat.domain
    kind = " ".join(p for p in (era, ", ".join(genres) if genres else None) if p)
    first = (
        f"{cat.display_titles[i]} is {article(kind)} {kind} {d.item}."
        if kind
        else f"{cat.display_titles[i]}."
    )
    parts = [first]
    parts += [f"{name.capitalize()}: {value}." for name, value in attrs]
    n = int(graph.counts[i])
    if n == 0:
        parts.append(f"No one has {d.verb_past} it yet.")
    else:
        line = f"{n} {'person has' if n == 1 else 'people have'} {d.verb_past} it"
        if np.isfinite(graph.mean[i]):
            line += (
                f", rating it {graph.mean[i]:.1f} out of {scale.high:g} on average "
                f"({graph.high[i]:.0%} rated it highly)"
            )
        parts.append(line + ".")
    if nb.size:
        parts.append(f"People who liked it also liked {and_list(cat.display_titles[nb])}.")
    if audience:
        parts.append(audience)
    return " ".join(parts)


def _tags(known, added, added_conf, era, band, graph, i, scale) -> list[dict]:
    tags = [{"tag": g.lower(), "source": "catalog", "confidence": 1.0} for g in known]
    tags += [
        {"tag": g.lower(), "source": "graph", "confidence": c}
        for g, c in zip(added, added_conf, strict=True)
    ]
    if era:
        tags.append({"tag": era, "source": "catalog", "confidence": 1.0})
    if band:
        tags.append({"tag": band, "source": "graph", "confidence": 1.0})
    n = int(graph.counts[i])
    if n >= 20 and np.isfinite(graph.mean[i]):
        confidence = round(1.0 - 1.0 / np.sqrt(n), 6)
        top = scale.low + 0.8 * (scale.high - scale.low)
        if graph.mean[i] >= top:
            tags.append({"tag": "highly-rated", "source": "graph", "confidence": confidence})
        if graph.spread[i] >= 0.3 * (scale.high - scale.low):
            tags.append({"tag": "divisive", "source": "graph", "confidence": confidence})
    return tags


def vocabulary(data: Dataset) -> list[str]:
    """The closed tag vocabulary of a catalog: its genres, the eras of its dates, the
    popularity bands and the rating labels."""
    eras = sorted({e for e in _eras(data.catalog) if e})
    return (
        [g.lower() for g in data.catalog.genre_names]
        + eras
        + [name for _, name in BANDS]
        + ["highly-rated", "divisive"]
    )
