"""Impression logs: what was shown, where, and whether it was clicked.

A consumption log says what people chose; an impression log also says what they were shown, so
how much of an item's popularity is exposure is observed, not assumed (``brain.exposure``), and
how attention falls off down a slate (position bias) can be told apart from preference. Three
layouts are read, each into :class:`Impressions`, one row per shown item:

* **a table** (``.csv``/``.tsv``/``.txt``/``.dat`` with a header, ``.jsonl``, ``.parquet``) with
  columns ``request`` (slate or request id), ``user``, ``item``, ``position`` (1 = first),
  ``clicked`` (0/1) and optionally ``propensity`` and ``timestamp``; other names are mapped with
  ``columns`` (``{"clicked": "click"}``). simrec's own event files (a folder or file with
  ``event_type``) are such a table: their impressions, by slate;
* **the Open Bandit Dataset's CSV** (Saito et al. 2021, ZOZOTOWN): ``timestamp, item_id,
  position, click, propensity_score, user_feature_0..`` with a leading index column; each row is
  its own request, and the user is told by the user features;
* **MIND behaviours** (``behaviors.tsv``, no header: impression id, user, time, history,
  impressions such as ``N41-1 N77-0``): position is the order within the impression list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simrec.data.dataset import Impressions
from simrec.data.files import require_file
from simrec.data.loaders import numeric_column, read_table, require_columns, timestamp_column
from simrec.errors import InputError

__all__ = ["FIELDS", "Impressions", "read_impressions"]

FIELDS = ("request", "user", "item", "position", "clicked", "propensity", "timestamp")
_REQUIRED = ("request", "item", "position", "clicked")
_OBD = ("item_id", "position", "click", "propensity_score")


def read_impressions(path: str | Path, columns: dict[str, str] | None = None) -> Impressions:
    """The impression log at ``path`` in any of the module's layouts (told by its columns or,
    for MIND, its shape); ``columns`` maps the table layout's fields (:data:`FIELDS`) to the
    file's column names. Bad input: :class:`~simrec.errors.InputError` naming the file, the
    field and what was found."""
    path = Path(path)
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise InputError(
            f"impression columns: unknown field(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(FIELDS)}"
        )
    if path.is_dir():
        return _simrec_events(path, _read_parquet_dir(path))
    require_file(path, "an impression log")
    if _is_mind(path):
        return _mind(path)
    df = read_table(path, "an impression log")
    if "event_type" in df.columns and not columns:
        return _simrec_events(path, df)
    if not columns and all(c in df.columns for c in _OBD):
        return _open_bandit(path, df)
    return _table(path, df, {f: columns.get(f, f) for f in FIELDS}, "table")


def _read_parquet_dir(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for what is not a dataset
        raise InputError(f"{path}: expected simrec's event files, could not read: {err}") from None


def _simrec_events(path: Path, df: pd.DataFrame) -> Impressions:
    names = {"request": "slate_id", "user": "user_id", "item": "item_id", "clicked": "clicked"}
    require_columns(df, ["event_type", *names.values(), "position", "timestamp"], path)
    imp = df[df.event_type == "impression"].copy()
    if imp.empty:
        raise InputError(f"{path}: expected impression events, found none")
    imp["request"] = imp.user_id.astype(str) + "/" + imp.slate_id.astype(str)
    imp["position"] = imp.position.astype(np.int64) + 1  # simrec counts positions from 0
    imp["clicked"] = imp.clicked.astype(bool).astype(np.int64)
    seconds = (imp.timestamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    imp["timestamp"] = seconds.astype(np.int64)
    mapping = {f: f for f in FIELDS} | {"user": "user_id", "item": "item_id"}
    mapping["propensity"] = "propensity" if "propensity" in imp.columns else "-"
    return _table(path, imp.reset_index(drop=True), mapping, "simrec-events")


def _open_bandit(path: Path, df: pd.DataFrame) -> Impressions:
    features = [c for c in df.columns if str(c).startswith("user_feature_")]
    df = df.copy()
    df["request"] = np.arange(len(df))  # each row is its own request
    df["user"] = df[features].astype(str).agg("|".join, axis=1) if features else "all"
    mapping = {
        "request": "request",
        "user": "user",
        "item": "item_id",
        "position": "position",
        "clicked": "click",
        "propensity": "propensity_score",
        "timestamp": "timestamp",
    }
    return _table(path, df, mapping, "open-bandit")


def _is_mind(path: Path) -> bool:
    """A headerless tab-separated file of five fields whose last is ``ITEM-0``/``ITEM-1`` tokens."""
    if path.suffix.lower() not in (".tsv", ".txt"):
        return False
    with open(path, "rb") as f:
        first = f.readline(1 << 16).decode("utf-8", errors="replace").rstrip("\r\n")
    fields = first.split("\t")
    tokens = fields[-1].split() if len(fields) == 5 else []
    return bool(tokens) and all(t.rsplit("-", 1)[-1] in ("0", "1") and "-" in t for t in tokens)


def _mind(path: Path) -> Impressions:
    names = ["request", "user", "time", "history", "impressions"]
    df = pd.read_csv(
        path, sep="\t", header=None, names=names, dtype=str, keep_default_na=False, quoting=3
    )
    tokens = df.impressions.str.split()
    lengths = tokens.str.len().to_numpy()
    flat = pd.Series(np.concatenate(tokens.to_numpy()) if len(df) else [], dtype=str)
    parts = flat.str.rsplit("-", n=1, expand=True)
    bad = np.flatnonzero(~parts[1].isin(["0", "1"]).to_numpy()) if len(flat) else []
    if len(bad):
        line = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right")) + 1
        raise InputError(
            f"{path}: column 'impressions': expected ITEM-0 or ITEM-1 tokens, found "
            f"{flat.iloc[bad[0]]!r} at line {line}"
        )
    times = pd.to_datetime(df.time, format="%m/%d/%Y %I:%M:%S %p", errors="coerce", utc=True)
    if times.isna().any():
        line = int(np.flatnonzero(times.isna().to_numpy())[0]) + 1
        raise InputError(
            f"{path}: column 'time': expected times like 11/15/2019 8:55:22 AM, found "
            f"{df.time.iloc[line - 1]!r} at line {line}"
        )
    seconds = ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    long = pd.DataFrame(
        {
            "request": np.repeat(df.request.to_numpy(), lengths),
            "user": np.repeat(df.user.to_numpy(), lengths),
            "item": parts[0].to_numpy(),
            "position": np.concatenate([np.arange(1, n + 1) for n in lengths]),
            "clicked": parts[1].astype(np.int64).to_numpy(),
            "timestamp": np.repeat(seconds, lengths),
        }
    )
    return _table(path, long, {f: f for f in FIELDS}, "mind")


def _checked(df: pd.DataFrame, column: str, path: Path, ok, expected: str) -> np.ndarray:
    """Column ``column`` as numbers, or InputError naming the first value ``ok`` refuses."""
    values = numeric_column(df, column, path, 1)
    bad = np.flatnonzero(~ok(values))
    if bad.size:
        raise InputError(
            f"{path}: column '{column}': expected {expected}, found "
            f"{df[column].iloc[bad[0]]!r} at line {int(bad[0]) + 2}"
        )
    return values


def _table(path: Path, df: pd.DataFrame, mapping: dict[str, str], layout: str) -> Impressions:
    """``df``'s columns named by ``mapping`` (field -> column) as :class:`Impressions`."""
    require_columns(df, [mapping[f] for f in _REQUIRED], path)
    position = _checked(
        df,
        mapping["position"],
        path,
        lambda v: (v >= 1) & (v == np.round(v)),
        "positions 1, 2, ... (1 = first)",
    )
    clicked = _checked(df, mapping["clicked"], path, lambda v: np.isin(v, (0.0, 1.0)), "0 or 1")
    propensity = np.full(len(df), np.nan)
    if mapping["propensity"] in df.columns:
        propensity = _checked(
            df,
            mapping["propensity"],
            path,
            lambda v: (v > 0) & (v <= 1),
            "probabilities in (0, 1]",
        )
    timestamp = np.zeros(len(df), np.int64)
    if mapping["timestamp"] in df.columns:
        timestamp = timestamp_column(df, mapping["timestamp"], path, 1)
    users = df[mapping["user"]] if mapping["user"] in df.columns else pd.Series(["all"] * len(df))
    user, user_ids = pd.factorize(users.astype(str), sort=True)
    items = df[mapping["item"]]
    as_numbers = pd.to_numeric(items, errors="coerce")
    if as_numbers.notna().all() and (as_numbers == as_numbers.round()).all():
        items = as_numbers.astype(np.int64)  # integer ids sort as numbers
    item, item_ids = pd.factorize(items if items.dtype != object else items.astype(str), sort=True)
    request, _ = pd.factorize(df[mapping["request"]].astype(str), sort=False)
    return Impressions(
        request.astype(np.int64),
        user.astype(np.int64),
        item.astype(np.int64),
        position.astype(np.int64),
        clicked.astype(bool),
        propensity.astype(np.float64),
        timestamp,
        np.asarray(user_ids, dtype=object),
        np.asarray(item_ids, dtype=object),
        str(path),
        layout,
    )
