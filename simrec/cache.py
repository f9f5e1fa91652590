"""The calibration cache: a calibrated population, paid for once.

Calibrating the statistical brain on a log (taste model, genre taste, collaborative scores,
rating model, click weights, personas) is what every command on the same data repeats: about
10 s at 100,000 users and most of a minute at 1,000,000. The cache keeps each calibration, keyed
by everything it depends on: the loaded data's content (every array of the log and catalog,
and the data files' hashes), the ``brain`` settings, the seed and simrec's version. A command
that calibrates the same data with the same settings again reads it back instead, and gets the
same bytes: the arrays are stored exactly.

What is stored is plain data, never code: arrays in an ``.npz`` read with
``allow_pickle=False``, everything else in JSON, and only the calibration's own dataclasses are
rebuilt from it (:data:`_TYPES`). An entry whose key, checksum or layout does not match is
ignored with a warning and recalibrated (a corrupt, truncated or foreign entry is never
trusted).

Where: ``$SIMREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/simrec``, else ``~/.cache/simrec``;
:func:`configure` (the CLI's ``--cache-dir DIR`` and ``--no-cache``) overrides it for the
process, and ``SIMREC_NO_CACHE=1`` turns it off. ``simrec cache info`` lists the entries,
``simrec cache clear`` removes them (only what simrec wrote there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from simrec.version import __version__

__all__ = ["configure", "entries", "clear", "folder", "calibration_key", "fetch", "keep"]

ENV_DIR = "SIMREC_CACHE_DIR"
ENV_OFF = "SIMREC_NO_CACHE"
ENV_MAX = "SIMREC_CACHE_MAX_GB"
MAX_GB = 4.0  # past this, the least recently used entries go (SIMREC_CACHE_MAX_GB to change)
KIND = "calibration"  # the only kind of entry so far: a subfolder of the cache folder
LAYOUT = 2  # the entry layout: an entry of another layout is not read
_MARK = "simrec-cache.json"  # in the cache folder: simrec made it (clear removes nothing else)

_folder: Path | None = None
_enabled: bool | None = None  # None: from the environment
_log = logging.getLogger(__name__)


def configure(path: str | Path | None = None, *, enabled: bool | None = True) -> None:
    """Use ``path`` as the cache folder (None: the default) with the cache ``enabled`` (None:
    as ``SIMREC_NO_CACHE`` says), for the rest of the process."""
    global _folder, _enabled
    _folder = Path(path).expanduser() if path is not None else None
    _enabled = enabled


def folder() -> Path | None:
    """The cache folder in use, or None when the cache is off."""
    enabled = _enabled if _enabled is not None else os.environ.get(ENV_OFF, "") in ("", "0")
    if not enabled:
        return None
    if _folder is not None:
        return _folder
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "simrec"


# ---------------------------------------------------------------------------------- the key


def calibration_key(data, brain_settings: dict, seed: int) -> str:
    """The hex digest of everything a calibration depends on: ``data``'s content (each field
    of the Dataset, arrays by their bytes), the brain settings, the seed and the version."""
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([__version__, LAYOUT, seed, brain_settings], sort_keys=True).encode())
    _digest(data, h)
    return h.hexdigest()


def _digest(x: Any, h) -> None:
    """Feed ``x`` to the hash ``h``: its type and content, recursively."""
    h.update(type(x).__qualname__.encode())
    if isinstance(x, np.ndarray):
        h.update(f"{x.dtype.str}{x.shape}".encode())
        if x.dtype == object:  # ids, titles, texts: by their JSON, anything else by repr
            h.update(json.dumps([_plain(v) for v in x.ravel().tolist()], default=repr).encode())
        else:
            h.update(np.ascontiguousarray(x).view(np.uint8).ravel())
    elif sp.issparse(x):
        m = x.tocsr()
        for part in (m.data, m.indices, m.indptr, np.asarray(m.shape)):
            _digest(part, h)
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        for f in dataclasses.fields(x):
            h.update(f.name.encode())
            _digest(getattr(x, f.name), h)
    elif hasattr(x, "model_dump_json"):  # a pydantic model (the catalog's domain)
        h.update(x.model_dump_json().encode())
    elif isinstance(x, dict):
        for k in sorted(x, key=str):
            h.update(str(k).encode())
            _digest(x[k], h)
    elif isinstance(x, (list, tuple)):
        h.update(str(len(x)).encode())
        for v in x:
            _digest(v, h)
    else:  # numbers, strings, None: by value
        h.update(repr(_plain(x)).encode())


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# ------------------------------------------------------------------------- encoding


def _types() -> dict[str, type]:
    """The dataclasses a cache entry may rebuild, by name: the calibration's own, nothing
    else (a name outside this list makes the entry foreign)."""
    from simrec.agents.brains.utility import ClickWeights, _Evidence
    from simrec.agents.collaborative import CollaborativeTaste
    from simrec.agents.persona import Personas
    from simrec.agents.taste import ChoiceFactors, GenreTaste, RatingModel
    from simrec.data.dataset import RatingScale

    kinds = (
        ClickWeights,
        _Evidence,
        CollaborativeTaste,
        Personas,
        ChoiceFactors,
        GenreTaste,
        RatingModel,
        RatingScale,
    )
    return {k.__name__: k for k in kinds}


class _Foreign(ValueError):
    """An entry that is not what simrec writes."""


def _encode(x: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``x`` as JSON-able data, its numeric arrays moved into ``arrays``."""
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return {"__objects__": [_plain(v) for v in x.tolist()], "shape": list(x.shape)}
        name = f"a{len(arrays)}"
        arrays[name] = x
        return {"__array__": name}
    if sp.issparse(x):
        m = x.tocsr()
        parts = [_encode(p, arrays) for p in (m.data, m.indices, m.indptr)]
        return {"__csr__": parts, "shape": list(m.shape)}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        fields = {f.name: _encode(getattr(x, f.name), arrays) for f in dataclasses.fields(x)}
        return {"__dataclass__": type(x).__name__, "fields": fields}
    if isinstance(x, np.generic):
        return {"__scalar__": x.dtype.str, "value": x.item()}
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"__dict__": {k: _encode(v, arrays) for k, v in x.items()}}
    if isinstance(x, dict):  # other keys (taste_dim_scores: int -> score) as pairs
        return {"__pairs__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in x]}
    if isinstance(x, list):
        return [_encode(v, arrays) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"calibration cache: cannot store a {type(x).__name__}")


def _decode(x: Any, arrays, types: dict[str, type]) -> Any:
    if isinstance(x, list):
        return [_decode(v, arrays, types) for v in x]
    if not isinstance(x, dict):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise _Foreign(f"unexpected {type(x).__name__}")
    if "__array__" in x:
        return arrays[str(x["__array__"])]
    if "__objects__" in x:
        out = np.empty(len(x["__objects__"]), object)
        out[:] = x["__objects__"]
        return out.reshape(x["shape"])
    if "__csr__" in x:
        data, indices, indptr = (_decode(p, arrays, types) for p in x["__csr__"])
        return sp.csr_matrix((data, indices, indptr), shape=tuple(x["shape"]))
    if "__dataclass__" in x:
        kind = types.get(str(x["__dataclass__"]))
        if kind is None:
            raise _Foreign(f"unknown type {x['__dataclass__']!r}")
        fields = {k: _decode(v, arrays, types) for k, v in x["fields"].items()}
        return kind(**fields)
    if "__scalar__" in x:
        return np.dtype(str(x["__scalar__"])).type(x["value"])
    if "__dict__" in x:
        return {str(k): _decode(v, arrays, types) for k, v in x["__dict__"].items()}
    if "__pairs__" in x:
        return {_decode(k, arrays, types): _decode(v, arrays, types) for k, v in x["__pairs__"]}
    if "__tuple__" in x:
        return tuple(_decode(v, arrays, types) for v in x["__tuple__"])
    raise _Foreign("unexpected mapping")


# --------------------------------------------------------------------------- entries


def fetch(key: str) -> tuple[dict | None, str]:
    """The stored calibration of ``key`` and how it went: (state, "hit"), (None, "miss"),
    (None, "off"), or (None, "ignored: WHY") for an entry that could not be trusted (it is
    then recalibrated and replaced)."""
    root = folder()
    if root is None:
        return None, "off"
    entry = root / KIND / key
    if not entry.is_dir():
        return None, "miss"
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("layout") != LAYOUT or meta.get("key") != key:
            raise _Foreign("written for another key or layout")
        blob = (entry / "arrays.npz").read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("arrays_sha256"):
            raise _Foreign("its arrays do not match their checksum")
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        state = _decode(meta["state"], arrays, _types())
        if not isinstance(state, dict):
            raise _Foreign("no calibration in it")
    except Exception as err:  # noqa: BLE001 - whatever a damaged or foreign entry raises
        reason = str(err) if isinstance(err, _Foreign) else f"unreadable ({err})"
        _log.warning("calibration cache entry %s %s; recalibrating", entry, reason)
        return None, f"ignored: {reason}"
    with contextlib.suppress(OSError):  # a read-only cache is still read
        os.utime(entry / "meta.json")  # used now: the last to go when the cache is trimmed
    return state, "hit"


def keep(key: str, state: dict, summary: dict) -> bool:
    """Store ``state`` (the calibration: a dict of arrays, dataclasses and plain values) under
    ``key``, with ``summary`` (what ``simrec cache info`` shows). Written beside and renamed
    into place, so a reader never sees half an entry. False when the cache is off or the
    folder cannot be written (a warning; the command goes on)."""
    root = folder()
    if root is None:
        return False
    try:
        _claim(root)
        kind = root / KIND
        kind.mkdir(exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        encoded = _encode(state, arrays)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        blob = buf.getvalue()
        meta = {
            "layout": LAYOUT,
            "key": key,
            "simrec_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "summary": summary,
            "arrays_sha256": hashlib.sha256(blob).hexdigest(),
            "state": encoded,
        }
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=kind))
        try:
            (scratch / "arrays.npz").write_bytes(blob)
            (scratch / "meta.json").write_text(json.dumps(meta))
            final = kind / key
            if final.exists():  # an entry found untrustworthy: replaced
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(scratch, final)
            except OSError:
                if not final.is_dir():
                    raise
                # another command stored the same calibration first: the same content, kept
        finally:
            if scratch.exists():
                shutil.rmtree(scratch)
        _trim(kind, keep=final)
    except (OSError, TypeError, ValueError) as err:  # a full disk, a value JSON cannot hold
        _log.warning("calibration cache: cannot store in %s (%s); not cached", root, err)
        return False
    return True


def _trim(kind: Path, keep: Path) -> None:
    """Remove the least recently used entries of ``kind`` until they fit in MAX_GB (or
    ``$SIMREC_CACHE_MAX_GB``), never ``keep`` (the entry just written)."""
    raw = os.environ.get(ENV_MAX) or str(MAX_GB)
    try:
        limit = float(raw) * 1e9
    except ValueError:
        _log.warning("%s: expected a number of gigabytes, got %r; using %s", ENV_MAX, raw, MAX_GB)
        limit = MAX_GB * 1e9
    found = []
    for entry in kind.iterdir():
        if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            files = [p for p in entry.iterdir() if p.is_file()]
            used = max((p.stat().st_mtime for p in files), default=0.0)
            found.append((used, sum(p.stat().st_size for p in files), entry))
    total = sum(size for _, size, _ in found)
    for _, size, entry in sorted(found, key=lambda f: f[0]):
        if total <= limit:
            break
        if entry != keep:
            shutil.rmtree(entry)
            total -= size


def _claim(root: Path) -> None:
    """Create the cache folder, marked as simrec's; an existing folder without the mark that
    holds anything is refused (the cache never writes into, or clears, a folder it did not
    make)."""
    mark = root / _MARK
    if mark.is_file():
        return
    if root.exists() and any(root.iterdir()):
        raise OSError(f"{root} holds files simrec did not write (no {_MARK})")
    root.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"simrec_cache": True, "layout": LAYOUT}))


def entries() -> list[dict]:
    """Each stored entry: ``key``, ``bytes``, ``created``, ``simrec_version`` and its summary
    (data source, users, items, interactions, seed), newest first."""
    root = folder()
    if root is None or not (root / KIND).is_dir():
        return []
    out = []
    for entry in (root / KIND).iterdir():
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
        try:
            with (entry / "meta.json").open() as f:
                meta = json.load(f)
            row = {k: meta.get(k) for k in ("created", "simrec_version")}
            row.update(meta.get("summary") or {})
        except (OSError, ValueError):
            row = {"created": None, "simrec_version": None, "problem": "unreadable"}
        out.append({"key": entry.name, "bytes": size, **row})
    return sorted(out, key=lambda r: str(r.get("created")), reverse=True)


def clear() -> tuple[int, int]:
    """Remove every entry simrec wrote in the cache folder -> (entries, bytes) removed. A
    folder without simrec's mark is left alone."""
    root = folder()
    if root is None or not (root / _MARK).is_file() or not (root / KIND).is_dir():
        return 0, 0
    n = size = 0
    for entry in (root / KIND).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            size += sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
            shutil.rmtree(entry)
            n += 1
    return n, size
