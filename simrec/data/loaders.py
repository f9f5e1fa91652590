"""Loaders for real interaction logs: MovieLens 100k / 1m / latest and generic tables.

Every loader validates at the door and raises :class:`~simrec.errors.InputError` with a message
naming the file (and column), what was expected and what was found.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from simrec.data.assembly import TIME_RANGE, build_dataset, normalise_ids
from simrec.data.dataset import (
    Dataset,
    years_from_dates,
    years_from_titles,
)
from simrec.data.files import check_utf8, require_dir, require_file
from simrec.errors import InputError

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
_RATING_DTYPES = {"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.int64}
FORMATS = ("movielens-100k", "movielens-1m", "movielens-latest", "recbole", "table")


def load(
    fmt: str,
    path: str | Path,
    *,
    columns: dict[str, str] | None = None,
    items_path: str | Path | None = None,
) -> Dataset:
    """Load ``fmt`` data from ``path`` (a directory for MovieLens, a file for table, a folder,
    ``.inter`` file or named dataset such as ``ml-100k`` for recbole)."""
    if fmt == "movielens-100k":
        return load_movielens_100k(path)
    if fmt == "movielens-1m":
        return load_movielens_1m(path)
    if fmt == "movielens-latest":
        return load_movielens_latest(path)
    if fmt == "recbole":
        from simrec.data.recbole import load_recbole
        from simrec.datasets import resolve_path

        return load_recbole(resolve_path(str(path)), columns)
    if fmt == "table":
        return load_table(path, columns or {}, items_path=items_path)
    raise InputError(f"unknown data format '{fmt}': expected one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- reading text safely


def _read_delimited(
    path: Path,
    sep: str,
    names: list[str] | None,
    encoding: str,
    what: str,
    dtypes: dict[str, type] | None = None,
) -> pd.DataFrame:
    """Read a delimited text file, streamed by pandas' C parser. ``names=None``: the file has a
    header. With ``dtypes`` the columns are parsed as those types directly (fast, little memory);
    if that fails the file is read again as strings so the caller can name the bad value."""
    require_file(path, what)
    if encoding == "utf-8":
        check_utf8(path)
    source: Path | io.BytesIO = path
    if sep == "::":
        source, sep = io.BytesIO(path.read_bytes().replace(b"::", b"\t")), "\t"
    options = {
        "sep": sep,
        "header": None if names else 0,
        "names": names,
        "keep_default_na": False,
        "quoting": csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
        "index_col": False,
        "engine": "c",
        "encoding": encoding,
    }
    df = None
    if dtypes:
        try:
            df = pd.read_csv(source, dtype=dtypes, **options)
        except (ValueError, TypeError, OverflowError, pd.errors.ParserError):
            df = None
        if isinstance(source, io.BytesIO):
            source.seek(0)
    if df is None:
        try:
            df = pd.read_csv(source, dtype=str, **options)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise InputError(
                f"{path}: expected {what} ({_sep_name(sep)}-separated), "
                f"could not parse: {str(err).strip()}"
            ) from None
    if df.empty:
        raise InputError(f"{path}: no rows, expected {what}")
    return df


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", "|": "pipe", ";": "semicolon"}.get(sep, repr(sep))


def _counts(df: pd.DataFrame, col: str | None, path: Path, header_lines: int):
    """Column ``col``'s counts (plays, purchases, views) as float32, or InputError naming the
    first value that is not a number >= 0; None without a count column."""
    if col is None:
        return None
    values = numeric_column(df, col, path, header_lines)
    bad = np.flatnonzero(values < 0)
    if bad.size:
        raise InputError(
            f"{path}: column '{col}': expected counts >= 0 (plays, purchases, views), found "
            f"{values[bad[0]]:g} at line {int(bad[0]) + 1 + header_lines}"
        )
    return values.astype(np.float32)


def numeric_column(df: pd.DataFrame, col: str, path: Path, header_lines: int) -> np.ndarray:
    """Column ``col`` as float64, or InputError naming the first bad row."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        raise InputError(
            f"{path}: column '{col}': expected numbers, found {str(raw.iloc[row])!r} "
            f"at line {row + 1 + header_lines} ({bad.size} bad value(s))"
        )
    return values


def timestamp_column(df: pd.DataFrame, col: str, path: Path, header_lines: int) -> np.ndarray:
    """Unix seconds from numbers (within :data:`TIME_RANGE`) or ISO-8601 strings."""
    numeric = pd.to_numeric(df[col], errors="coerce")
    if numeric.notna().all():
        values = numeric.to_numpy(np.float64)
        bad = np.flatnonzero(~((values >= TIME_RANGE[0]) & (values <= TIME_RANGE[1])))
        if bad.size:
            row = int(bad[0])
            hint = "; milliseconds? divide by 1,000" if abs(values[row]) < 1e16 else ""
            raise InputError(
                f"{path}: column '{col}': expected Unix seconds between 1677 and 2262, found "
                f"{str(df[col].iloc[row])[:40]!r} at line {row + 1 + header_lines} "
                f"({bad.size} such value(s){hint})"
            )
        return values.astype(np.int64)
    parsed = pd.to_datetime(df[col], errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise InputError(
            f"{path}: column '{col}': expected Unix seconds or ISO-8601 times, found "
            f"{str(df[col].iloc[row])!r} at line {row + 1 + header_lines}"
        )
    delta = parsed - pd.Timestamp(0, tz="UTC")
    return (delta // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def require_columns(df: pd.DataFrame, needed: list[str], path: Path) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in df.columns)}"
        )


# ---------------------------------------------------------------- MovieLens


def load_movielens_100k(path: str | Path) -> Dataset:
    """ml-100k: ``u.data`` (tab: user item rating timestamp), ``u.item`` (pipe, Latin-1)."""
    root = require_dir(Path(path), "movielens-100k")
    data_file, item_file = root / "u.data", root / "u.item"
    df = _read_delimited(
        data_file,
        "\t",
        ["user", "item", "rating", "timestamp"],
        "latin-1",
        "ratings (user item rating timestamp)",
        _RATING_DTYPES,
    )
    require_file(item_file, "item file u.item")
    text = item_file.read_bytes().decode("latin-1")
    genre_names = ML100K_GENRES
    genre_file = root / "u.genre"
    if genre_file.is_file():
        pairs = [ln.split("|") for ln in genre_file.read_text("latin-1").splitlines() if ln.strip()]
        genre_names = [p[0] for p in sorted(pairs, key=lambda p: int(p[1]))]
    ids, titles, genre_lists, released = [], [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(genre_names):
            raise InputError(
                f"{item_file}: line {n}: expected {5 + len(genre_names)} pipe-separated fields "
                f"(id|title|release|video release|url|{len(genre_names)} genre flags), "
                f"found {len(fields)}"
            )
        ids.append(fields[0])
        titles.append(fields[1])
        released.append(fields[2])
        flags = fields[5:]
        genre_lists.append([g for g, f in zip(genre_names, flags, strict=True) if f.strip() == "1"])
    if not ids:
        raise InputError(f"{item_file}: no rows, expected items")
    return build_dataset(
        users=df["user"].to_numpy(),
        items=df["item"].to_numpy(),
        ratings=numeric_column(df, "rating", data_file, 0),
        timestamps=timestamp_column(df, "timestamp", data_file, 0),
        catalog_ids=np.asarray(ids),
        titles=np.asarray(titles, dtype=object),
        genre_lists=genre_lists,
        years=years_from_dates(released),
        ratings_file=data_file,
        items_file=item_file,
        source="movielens-100k",
        files=[data_file, item_file],
    )


def load_movielens_1m(path: str | Path) -> Dataset:
    """ml-1m: ``ratings.dat`` and ``movies.dat``, ``::``-separated, Latin-1."""
    root = require_dir(Path(path), "movielens-1m")
    rfile, mfile = root / "ratings.dat", root / "movies.dat"
    df = _read_delimited(
        rfile,
        "::",
        ["user", "item", "rating", "timestamp"],
        "latin-1",
        "ratings (UserID::MovieID::Rating::Timestamp)",
        _RATING_DTYPES,
    )
    movies = _read_delimited(
        mfile, "::", ["item", "title", "genres"], "latin-1", "movies (MovieID::Title::Genres)"
    )
    return _movielens_assemble(df, movies, rfile, mfile, "movielens-1m", header_lines=0)


def load_movielens_latest(path: str | Path) -> Dataset:
    """ml-latest(-small), ml-25m, ml-32m: ``ratings.csv``, ``movies.csv`` with headers, UTF-8."""
    root = require_dir(Path(path), "movielens-latest")
    rfile, mfile = root / "ratings.csv", root / "movies.csv"
    df = _read_delimited(
        rfile,
        ",",
        None,
        "utf-8",
        "ratings (userId,movieId,rating,timestamp)",
        {"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64},
    )
    require_columns(df, ["userId", "movieId", "rating", "timestamp"], rfile)
    df = df.rename(columns={"userId": "user", "movieId": "item"})
    movies = _read_delimited(mfile, ",", None, "utf-8", "movies (movieId,title,genres)")
    require_columns(movies, ["movieId", "title", "genres"], mfile)
    movies = movies.rename(columns={"movieId": "item"})
    return _movielens_assemble(df, movies, rfile, mfile, "movielens-latest", header_lines=1)


def _movielens_assemble(
    df: pd.DataFrame, movies: pd.DataFrame, rfile: Path, mfile: Path, source: str, header_lines: int
) -> Dataset:
    genre_lists = [
        [] if g in ("", "(no genres listed)") else g.split("|") for g in movies["genres"].tolist()
    ]
    return build_dataset(
        users=df["user"].to_numpy(),
        items=df["item"].to_numpy(),
        ratings=numeric_column(df, "rating", rfile, header_lines),
        timestamps=timestamp_column(df, "timestamp", rfile, header_lines),
        catalog_ids=movies["item"].to_numpy(),
        titles=movies["title"].to_numpy(dtype=object),
        genre_lists=genre_lists,
        years=years_from_titles(movies["title"].tolist()),  # MovieLens: the release year
        ratings_file=rfile,
        items_file=mfile,
        source=source,
        files=[rfile, mfile],
    )


# ---------------------------------------------------------------- generic tables


DELIMITED = (".csv", ".tsv", ".txt", ".dat")  # text tables with a header line
_SEPARATORS = ("::", "\t", ",", ";", "|")  # in the order a header line is tried for them


def header_separator(path: Path, what: str) -> str:
    """The separator of a delimited text table, told by its header line: ``::``, tab, comma,
    semicolon or pipe, the first that the line contains (a comma for a one-column table)."""
    with open(path, "rb") as f:
        first = f.readline(1 << 16).decode("utf-8", errors="replace")
    if not first.strip():
        raise InputError(f"{path}: expected {what} with a header line, found an empty first line")
    return next((s for s in _SEPARATORS if s in first), ",")


def read_table(path: Path, what: str) -> pd.DataFrame:
    """A table file of any supported kind (delimited text with a header, JSON Lines, Parquet)
    as strings, or InputError naming the file and saying it should hold ``what``."""
    require_file(path, what)
    suffix = path.suffix.lower()
    if suffix in DELIMITED:
        sep = "\t" if suffix == ".tsv" else header_separator(path, what)
        return _read_delimited(path, sep, None, "utf-8", what)
    if suffix in (".jsonl", ".ndjson", ".json"):
        check_utf8(path)
        try:
            df = pd.read_json(path, lines=True, dtype=False)
        except ValueError as err:
            raise InputError(
                f"{path}: expected JSON Lines ({what}), could not parse: {err}"
            ) from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            df = pq.read_table(path).to_pandas()
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise InputError(
                f"{path}: expected a Parquet file ({what}), could not read: {err}"
            ) from None
    else:
        raise InputError(
            f"{path}: expected a {', '.join(DELIMITED)}, .jsonl or .parquet file, got '{suffix}'"
        )
    if df.empty:
        raise InputError(f"{path}: no rows, expected {what}")
    return df.astype({c: str for c in df.columns if df[c].dtype == object})


def load_table(
    path: str | Path, columns: dict[str, str], *, items_path: str | Path | None = None
) -> Dataset:
    """Any CSV/TSV/TXT/DAT (with a header line), Parquet or JSONL log. ``columns`` maps user,
    item (required), rating, timestamp (optional) and, for the items file, title, genres
    (``|``-separated) and its id column ``items_item`` (default: the item column's name) to
    column names."""
    p = Path(path)
    for key in ("user", "item"):
        if key not in columns:
            raise InputError(
                f"--columns: expected a mapping for '{key}' (e.g. {key}=<column>), "
                f"got {', '.join(f'{k}={v}' for k, v in columns.items()) or 'none'}"
            )
    df = read_table(p, "interactions")
    header = 1 if p.suffix.lower() in DELIMITED else 0
    log_cols = {
        k: v for k, v in columns.items() if k in ("user", "item", "rating", "timestamp", "count")
    }
    require_columns(df, list(log_cols.values()), p)
    for k in ("user", "item"):
        empty = np.flatnonzero(df[columns[k]].astype(str).str.strip().to_numpy() == "")
        if empty.size:
            raise InputError(
                f"{p}: column '{columns[k]}': expected an id, found an empty value "
                f"at line {int(empty[0]) + 1 + header}"
            )
    ratings = (
        numeric_column(df, columns["rating"], p, header)
        if "rating" in columns
        else np.full(len(df), np.nan)
    )
    counts = _counts(df, columns.get("count"), p, header)
    if "timestamp" in columns:
        timestamps = timestamp_column(df, columns["timestamp"], p, header)
    else:
        timestamps = np.zeros(len(df), np.int64)
        logging.getLogger(__name__).warning(
            "%s: no timestamp column (--columns ...,timestamp=COL): every interaction is at "
            "time 0, so held-out parts are drawn at random per user, the fidelity report "
            "compares no sessions or visits, and every persona gets the default visit rate",
            p,
        )
    files = [p]
    if items_path is not None:
        ip = Path(items_path)
        items = read_table(ip, "items")
        icol = columns.get("items_item", columns["item"])
        needed = [icol] + [columns[k] for k in ("title", "genres") if k in columns]
        require_columns(items, needed, ip)
        catalog_ids = items[icol].to_numpy()
        titles = (
            items[columns["title"]].astype(str).to_numpy(dtype=object)
            if "title" in columns
            else np.asarray([str(i) for i in catalog_ids], dtype=object)
        )
        genre_lists = (
            [
                [] if not g or g == "nan" else g.split("|")
                for g in items[columns["genres"]].astype(str)
            ]
            if "genres" in columns
            else [[] for _ in catalog_ids]
        )
        files.append(ip)
    else:
        ip = p
        catalog_ids = pd.unique(normalise_ids(df[columns["item"]].to_numpy()))
        titles = np.asarray([str(i) for i in catalog_ids], dtype=object)
        genre_lists = [[] for _ in catalog_ids]
    return build_dataset(
        users=df[columns["user"]].to_numpy(),
        items=df[columns["item"]].to_numpy(),
        ratings=ratings,
        timestamps=timestamps,
        counts=counts,
        catalog_ids=np.asarray(catalog_ids),
        titles=titles,
        genre_lists=genre_lists,
        ratings_file=p,
        items_file=ip,
        source="table",
        files=files,
    )
