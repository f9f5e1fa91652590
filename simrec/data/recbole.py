"""RecBole atomic files: ``NAME.inter`` (+ ``NAME.item``, ``NAME.user``, ``NAME.kg``/``.link``).

Each file is tab-separated text whose first line names the fields as ``name:type``, with type
one of ``token``, ``token_seq``, ``float``, ``float_seq`` (sequences are space-separated).
RecBole's own field names are the defaults: ``user_id``, ``item_id``, ``rating``,
``timestamp``; a dataset that names them otherwise is mapped with ``columns`` (``--columns
user=uid,item=business_id``). The catalog's title is the first of ``title``, ``movie_title``,
``name``, ``item_name`` present (with ``release_year``/``year`` appended as ``(YYYY)`` when the
title has none), its genres the first of ``genres``, ``genre``, ``class``, ``categories``, its
years (the only source of eras) the first date or year field of :data:`YEAR_FIELDS`. Every
other ``.item`` field is kept as an item attribute (``Catalog.attributes``: brand, price,
author, ...): ``token`` as text, ``token_seq`` as a tuple of tokens, ``float`` as a number;
``float_seq`` fields (vectors) are not attributes.

An ``.inter`` file with a ``label`` field (as ``simrec export --to recbole`` writes: one row per
impression) contributes only its rows with ``label > 0``: the interactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simrec.data.assembly import TIME_RANGE, build_dataset
from simrec.data.dataset import Dataset, years_from_dates
from simrec.data.files import check_utf8, require_file
from simrec.errors import InputError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_FIELDS = ("title", "movie_title", "name", "item_name")
GENRE_FIELDS = ("genres", "genre", "class", "categories")
YEAR_FIELDS = (
    "release_year",
    "year",
    "publication_year",
    "year_of_publication",
    "release_date",
    "date",
)
ATTRIBUTE_LIMIT = 80  # characters of one attribute value, as it may reach a prompt
_DEFAULTS = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}


@dataclass
class AtomicFile:
    """One atomic file whose header was checked: ``frame`` holds every field as str, named
    without its type."""

    path: Path
    frame: pd.DataFrame
    types: dict[str, str]

    def require(self, field: str, what: str) -> pd.Series:
        if field not in self.frame.columns:
            raise InputError(
                f"{self.path}: line 1: expected a field '{field}' ({what}), found "
                f"{', '.join(repr(f) for f in self.frame.columns)}"
            )
        return self.frame[field]

    def numbers(self, field: str, allow_empty: bool = False) -> np.ndarray:
        """A float field as float64 (empty values NaN with ``allow_empty``), or InputError
        naming the line of the first bad value."""
        raw = self.frame[field]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if allow_empty:
            bad &= raw.str.strip().to_numpy() != ""
        bad = np.flatnonzero(bad)
        if bad.size:
            row = int(bad[0])
            raise InputError(
                f"{self.path}: line {row + 2}: field '{field}': expected a number, found "
                f"{raw.iloc[row]!r} ({bad.size} bad value(s))"
            )
        return values


def read_atomic(path: Path, what: str) -> AtomicFile:
    """Read one atomic file, checking the header's types and every line's field count."""
    require_file(path, what)
    check_utf8(path)
    raw = path.read_bytes()
    header_end = raw.find(b"\n")
    header = (raw if header_end < 0 else raw[:header_end]).decode("utf-8-sig").rstrip("\r")
    names: list[str] = []
    types: dict[str, str] = {}
    for j, spec in enumerate(header.split("\t"), 1):
        name, sep, kind = spec.strip().partition(":")
        if not sep or not name:
            raise InputError(
                f"{path}: line 1: field {j} {spec!r}: expected a 'name:type' header "
                f"(type one of {', '.join(FIELD_TYPES)})"
            )
        if kind not in FIELD_TYPES:
            raise InputError(
                f"{path}: line 1: field '{name}': unknown type {kind!r}, expected one of "
                f"{', '.join(FIELD_TYPES)}"
            )
        if name in names:
            raise InputError(f"{path}: line 1: field '{name}' appears twice")
        names.append(name)
        types[name] = kind
    body = b"" if header_end < 0 else raw[header_end + 1 :]
    _check_field_counts(path, body, len(names))
    if not body.strip():
        raise InputError(f"{path}: no rows after the header, expected {what}")
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        skiprows=1,
        names=names,
        dtype=str,
        keep_default_na=False,
        quoting=3,  # csv.QUOTE_NONE: quotes are data in atomic files
        engine="c",
        skip_blank_lines=True,
    )
    return AtomicFile(path, frame, types)


def _check_field_counts(path: Path, body: bytes, n_fields: int) -> None:
    """Every non-blank line of ``body`` has ``n_fields`` tab-separated fields (vectorised)."""
    buf = np.frombuffer(body, np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    ends = np.r_[newlines, buf.size] if (buf.size and buf[-1] != ord("\n")) else newlines
    starts = np.r_[0, ends[:-1] + 1] if ends.size else np.zeros(0, np.int64)
    tabs = np.bincount(
        np.searchsorted(ends, np.flatnonzero(buf == ord("\t"))), minlength=ends.size
    )[: ends.size]
    length = ends - starts - (buf[np.maximum(ends - 1, 0)] == ord("\r")) * (ends > starts)
    bad = np.flatnonzero((length > 0) & (tabs != n_fields - 1))
    if bad.size:
        line = int(bad[0])
        raise InputError(
            f"{path}: line {line + 2}: expected {n_fields} tab-separated fields as the header "
            f"names, found {int(tabs[line]) + 1} ({bad.size} such line(s))"
        )


def locate(path: str | Path) -> tuple[Path, str]:
    """The folder and NAME of a RecBole dataset: a folder holding ``NAME.inter`` (NAME the
    folder's name, or its only ``.inter`` file), or the ``.inter`` file itself."""
    p = Path(path)
    if p.is_file() and p.suffix == ".inter":
        return p.parent, p.stem
    if not p.exists():
        raise InputError(f"{p}: data directory not found")
    if not p.is_dir():
        raise InputError(f"{p}: expected a RecBole dataset folder or a .inter file")
    if (p / f"{p.name}.inter").is_file():
        return p, p.name
    inters = sorted(p.glob("*.inter"))
    if len(inters) == 1:
        return p, inters[0].stem
    raise InputError(
        f"{p}: expected one NAME.inter atomic file, found "
        f"{', '.join(f.name for f in inters) if inters else 'none'}"
    )


def load_recbole(path: str | Path, columns: dict[str, str] | None = None) -> Dataset:
    """A RecBole atomic-file dataset as a :class:`Dataset` (see the module docstring)."""
    root, name = locate(path)
    fields = {**_DEFAULTS, **(columns or {})}
    inter_path = root / f"{name}.inter"
    inter = read_atomic(inter_path, "interactions")
    users = inter.require(fields["user"], "the user id").str.strip().to_numpy()
    items = inter.require(fields["item"], "the item id").str.strip().to_numpy()
    keep = np.ones(len(inter.frame), bool)
    if "label" in inter.frame.columns:  # one row per impression: the positives interacted
        keep = inter.numbers("label") > 0
    rating = (
        inter.numbers(fields["rating"], allow_empty=True)
        if fields["rating"] in inter.frame.columns
        else np.full(keep.size, np.nan)
    )
    count = None
    if "count" in fields:  # the strength of each interaction (plays, views)
        inter.require(fields["count"], "the count: plays, purchases, views")
        count = inter.numbers(fields["count"])
        negative = np.flatnonzero(count < 0)
        if negative.size:
            raise InputError(
                f"{inter_path}: line {int(negative[0]) + 2}: field '{fields['count']}': "
                f"expected a count >= 0, found {count[negative[0]]:g}"
            )
    if fields["timestamp"] in inter.frame.columns:
        seconds = inter.numbers(fields["timestamp"])
        outside = np.flatnonzero(~((seconds >= TIME_RANGE[0]) & (seconds <= TIME_RANGE[1])))
        if outside.size:
            raise InputError(
                f"{inter.path}: field '{fields['timestamp']}': expected Unix seconds between "
                f"1677 and 2262, found {seconds[outside[0]]:g} at line {outside[0] + 2} "
                f"({outside.size} such value(s))"
            )
        timestamp = seconds.astype(np.int64)
    else:
        timestamp = np.zeros(keep.size, np.int64)
    for field, ids in (("user", users), ("item", items)):
        empty = np.flatnonzero(ids == "")
        if empty.size:
            raise InputError(
                f"{inter_path}: line {int(empty[0]) + 2}: field '{fields[field]}': expected an "
                f"id, found an empty value"
            )
    files = [inter_path]
    item_path = root / f"{name}.item"
    if item_path.is_file():
        catalog_ids, titles, genre_lists, years, attributes = _catalog(
            read_atomic(item_path, "items"), fields
        )
        _check_known(inter_path, items[keep], catalog_ids, fields["item"], np.flatnonzero(keep))
        files.append(item_path)
    else:
        item_path = inter_path
        catalog_ids = pd.unique(items[keep])
        titles = catalog_ids.astype(object)
        genre_lists = [[] for _ in catalog_ids]
        years, attributes = None, {}
    for extra in ("user", "kg", "link"):
        f = root / f"{name}.{extra}"
        if f.is_file():
            files.append(f)
    knowledge = None
    if (root / f"{name}.link").is_file():
        knowledge = _knowledge(root, name, catalog_ids, fields["item"])
    if (root / f"{name}.user").is_file():  # not used yet, but a malformed one is reported
        read_atomic(root / f"{name}.user", "user features")
    data = build_dataset(
        users=users[keep],
        items=items[keep],
        ratings=rating[keep],
        timestamps=timestamp[keep],
        counts=None if count is None else count[keep],
        catalog_ids=np.asarray(catalog_ids),
        titles=np.asarray(titles, dtype=object),
        genre_lists=genre_lists,
        ratings_file=inter_path,
        items_file=item_path,
        source=f"recbole:{name}",
        files=files,
        years=years,
        attributes=attributes,
    )
    if knowledge is not None:
        data.catalog.knowledge = knowledge.subset(_catalog_order(catalog_ids, data))
    return data


def _catalog_order(catalog_ids, data: Dataset) -> np.ndarray:
    """For each item index of ``data``'s catalog, its row in the file's ``catalog_ids``."""
    rows = pd.Series(
        np.arange(len(catalog_ids)), index=pd.Series(catalog_ids).astype(str).str.strip()
    )
    return rows[pd.Series(data.catalog.item_ids).astype(str).to_numpy()].to_numpy()


def _knowledge(root: Path, name: str, catalog_ids, item_field: str):
    """The item knowledge of ``NAME.link`` and ``NAME.kg`` (no facts without a ``.kg``)."""
    from simrec.data.knowledge import knowledge_from_frames

    link_path = root / f"{name}.link"
    link = read_atomic(link_path, "item-to-entity links")
    links = pd.DataFrame(
        {
            "item": link.require(item_field, "the item id"),
            "entity": link.require("entity_id", "the knowledge-graph entity"),
        }
    )
    kg_path = root / f"{name}.kg"
    if kg_path.is_file():
        kg = read_atomic(kg_path, "knowledge-graph triples")
        triples = pd.DataFrame(
            {
                "head": kg.require("head_id", "the head entity"),
                "relation": kg.require("relation_id", "the relation"),
                "tail": kg.require("tail_id", "the tail entity"),
            }
        )
    else:
        triples = pd.DataFrame({c: pd.Series([], dtype=str) for c in ("head", "relation", "tail")})
    return knowledge_from_frames(
        triples,
        links,
        np.asarray(catalog_ids),
        source=f"kg:{name}",
        links_file=str(link_path),
        item_field=item_field,
    )


def _catalog(item: AtomicFile, fields: dict[str, str]) -> tuple:
    """(ids, titles, genre lists, years or None, attributes) of an ``.item`` file."""
    ids = item.require(fields["item"], "the item id").str.strip().to_numpy()
    cols = item.frame.columns
    title_field = fields.get("title") or next((f for f in TITLE_FIELDS if f in cols), None)
    genre_field = fields.get("genres") or next((f for f in GENRE_FIELDS if f in cols), None)
    year_field = next((f for f in YEAR_FIELDS if f in cols), None)
    used = {fields["item"], title_field, genre_field, year_field}
    years = None if year_field is None else years_from_dates(item.frame[year_field].tolist())
    attributes = {
        re.sub(r"\W+", "_", f): _attribute(item, f)
        for f in cols
        if f not in used and item.types[f] != "float_seq"
    }
    titles = (
        item.require(title_field, "the title").str.strip().tolist()
        if title_field
        else [str(i) for i in ids]
    )
    if year_field in ("release_year", "year"):
        raw_years = item.frame[year_field].str.strip().tolist()
        titles = [
            f"{t} ({y})" if re.fullmatch(r"\d{4}", y) and not re.search(r"\(\d{4}\)", t) else t
            for t, y in zip(titles, raw_years, strict=True)
        ]
    genres = (
        [g.split() for g in item.require(genre_field, "the genres").tolist()]
        if genre_field
        else [[] for _ in ids]
    )
    return ids, titles, genres, years, attributes


def _attribute(item: AtomicFile, field: str) -> np.ndarray:
    """One ``.item`` field as an attribute array (n_items,): float64 for ``float`` (empty:
    NaN), tuples of cleaned tokens for ``token_seq``, cleaned text for ``token``."""
    from simrec.trust import clean_text

    kind = item.types[field]
    if kind == "float":
        return item.numbers(field, allow_empty=True)
    raw = item.frame[field].tolist()
    out = np.empty(len(raw), dtype=object)
    if kind == "token_seq":
        for i, v in enumerate(raw):
            out[i] = tuple(clean_text(t, ATTRIBUTE_LIMIT) for t in v.split())
    else:
        for i, v in enumerate(raw):
            out[i] = clean_text(v.strip(), ATTRIBUTE_LIMIT)
    return out


def _first_unknown(ids: np.ndarray, catalog_ids: np.ndarray) -> tuple[int, int] | None:
    """(row of the first of ``ids`` not in ``catalog_ids``, how many are not), or None."""
    unknown = ~pd.Series(ids).isin(catalog_ids).to_numpy()
    return (int(np.flatnonzero(unknown)[0]), int(unknown.sum())) if unknown.any() else None


def _check_known(path: Path, items: np.ndarray, catalog_ids: np.ndarray, field, rows) -> None:
    miss = _first_unknown(items, catalog_ids)
    if miss is not None:
        first, count = miss
        raise InputError(
            f"{path}: line {int(rows[first]) + 2}: field '{field}': item {items[first]!r} is not "
            f"in {path.with_suffix('.item').name} ({count} interaction(s) with unknown items)"
        )
