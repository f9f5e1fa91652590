"""Output directories simrec owns: what it may write into, what it may delete, who holds one.

Every folder simrec writes (a run, an A/B test, an export, an augmentation, a report) carries a
marker, ``.simrec-output.json``, naming the kind of output. simrec writes only into a folder
that does not exist, is empty, or carries its own marker; ``--overwrite`` then deletes only the
files that kind of output consists of (regular files matched by name, never through a symbolic
link), so whatever else lives in the folder stays. A folder that only *looks* like a run (a
``manifest.json`` without simrec's fields) is not one.

Files are written to a hidden temporary name, flushed to disk (``fsync`` of the file and of its
folder) and renamed into place, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from simrec.errors import ConfigError, InputError, OutputExistsError
from simrec.version import __version__

MARKER = ".simrec-output.json"
LOCK = ".simrec.lock"

_TMP = r"(?:.*/)?\.[^/]+\.tmp(?:\.\w+)?"  # simrec's hidden temporaries: .NAME.tmp[.ext]
_PLOTS = r"report\.html|[\w.-]+\.png"
# per kind of output, the relative paths (posix) of the files it consists of
OWN_FILES: dict[str, re.Pattern[str]] = {
    kind: re.compile(rf"(?:{pattern}|{_TMP}|{re.escape(MARKER)}|{re.escape(LOCK)})")
    for kind, pattern in {
        "run": r"manifest\.json|(?:users|items|metrics|interviews|reflections)\.parquet"
        r"|schema\.json|events/part-\d+\.parquet|_state/(?:config\.json|checkpoint(?:\.tmp)?\.npz)",
        "export": r"[^/]+\.(?:inter|user|item)|bandit_feedback\.npz|meta\.json|dialogues\.jsonl"
        r"|(?:events|users|items|metrics)\.csv"
        r"|README\.md|(?:train|test)/events\.parquet|(?:users|items)\.parquet",
        "augment": r"manifest\.json|[\w-]+\.parquet",
        "ab": rf"ab_(?:results|exposure)\.parquet|ab_manifest\.json|{_PLOTS}",
        "fidelity": rf"fidelity\.parquet|{_PLOTS}",
        "synthetic": rf"synthetic\.parquet|{_PLOTS}",
        "impressions": rf"impressions\.parquet|{_PLOTS}",
        "ope": rf"ope_results\.parquet|{_PLOTS}",
        "converse": r"manifest\.json|(?:conversations|targets|personas)\.parquet"
        r"|crs_(?:metrics|comparison)\.parquet",
        "report": _PLOTS,
    }.items()
}
# a run's manifest has these fields; a manifest.json without them is somebody else's
RUN_MANIFEST_FIELDS = ("simrec_version", "run_id", "config", "counts", "outputs")


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path`` (a regular file), or InputError naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise InputError(
            f"{path}: expected {what} (a JSON object), could not read it: {err}"
        ) from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected {what} (a JSON object), got {type(value).__name__}")
    return value


def is_run_manifest(path: Path) -> bool:
    """Whether ``path`` is a regular file holding a simrec run's manifest."""
    if not _regular(path):
        return False
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(value, dict) and all(k in value for k in RUN_MANIFEST_FIELDS)


def owner_kind(path: Path) -> str | None:
    """The kind of simrec output ``path`` holds (its marker; a run's manifest for runs written
    before markers), or None when the folder is not simrec's."""
    marker = path / MARKER
    if _regular(marker):
        try:
            kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
        if kind in OWN_FILES:
            return kind
    if is_run_manifest(path / "manifest.json"):
        return "run"
    if path.name == "report" and is_run_manifest(path.parent / "manifest.json"):
        # a run's report from before markers: report.html and its plots, nothing else
        entries = list(path.iterdir())
        if entries and all(_regular(e) and OWN_FILES["report"].fullmatch(e.name) for e in entries):
            return "report"
    return None


def check_out_dir(path: Path, kind: str, flag: str = "--out") -> bool:
    """Before any work: may simrec write a ``kind`` output into ``path``? Returns whether the
    folder already holds simrec output of that kind. Refuses (OutputExistsError, naming the
    path) a symbolic link, a file, a folder holding anything else, a folder nobody can write."""
    if path.is_symlink():
        raise OutputExistsError(
            f"{flag} {path}: is a symbolic link; simrec writes only into a real directory "
            f"(pass the directory it points to)"
        )
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{flag} {path}: expected a directory, found a file")
    _check_writable(path, flag)
    if not path.exists():
        return False
    found = owner_kind(path)
    if found is None:
        if any(p.name != LOCK for p in path.iterdir()):
            raise OutputExistsError(
                f"{flag} {path}: exists, is not empty and was not written by simrec (no "
                f"{MARKER}); refusing to write into it or delete anything in it"
            )
        return False
    if found != kind:
        raise OutputExistsError(
            f"{flag} {path}: holds a simrec {found} output, expected a {kind} folder; "
            f"choose another {flag}"
        )
    for sub in ("events", "_state"):
        if (path / sub).is_symlink():
            raise OutputExistsError(
                f"{flag} {path}: {sub}/ is a symbolic link; simrec does not write or delete "
                f"through links"
            )
    return True


def _check_writable(path: Path, flag: str) -> None:
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link on the way
            raise OutputExistsError(f"{flag} {path}: {probe} is a dangling symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise OutputExistsError(f"{flag} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputExistsError(f"{flag} {path}: cannot write there ({probe} is not writable)")


def check_free(
    path: Path | None,
    kind: str,
    *,
    overwrite: bool,
    done: str | None = None,
    what: str = "output",
    flag: str = "--out",
) -> None:
    """May a ``kind`` output be written into ``path`` (None: nothing to check)?
    :func:`check_out_dir`, and a refusal (ConfigError) when the folder holds a finished one
    (its file ``done``) and ``overwrite`` is not set. Commands call it before any work, and
    :func:`owning` again once the folder is locked."""
    if path is None:
        return
    if check_out_dir(path, kind, flag) and done and (path / done).exists() and not overwrite:
        raise ConfigError(f"{path}: already holds a finished {what}; pass --overwrite")


@contextlib.contextmanager
def owning(
    path: Path | None,
    kind: str,
    *,
    overwrite: bool,
    done: str | None = None,
    what: str = "output",
    flag: str = "--out",
) -> Iterator[None]:
    """Hold ``path`` as simrec's ``kind`` output for the block, the one way every command
    takes its output folder: check it, lock it (before anything is deleted), check it again
    now that the lock is held (another command may have written it meanwhile), refuse when it
    holds a finished output (its file ``done``) and ``overwrite`` is not set, delete the
    earlier output's files when it is (never a nested output another process holds), and mark
    it. A folder this call created and left holding only its marker is removed again when the
    block fails. ``path`` None: nothing to hold (a report kept only in memory)."""
    if path is None:
        yield
        return
    check_out_dir(path, kind, flag)
    created = not path.exists()
    ok = False
    try:
        with locked(path, what):
            check_free(path, kind, overwrite=overwrite, done=done, what=what, flag=flag)
            if overwrite:
                clear_own(path, kind)
            claim(path, kind)
            yield
            ok = True
    finally:
        if created and not ok:
            remove_if_bare(path)


def remove_if_bare(path: Path) -> None:
    """Remove folder ``path`` when it holds nothing but simrec's marker and lock (a command
    that failed before writing anything leaves no trace)."""
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return
    if names <= {MARKER, LOCK}:
        for name in names:
            if _regular(path / name):
                (path / name).unlink()
        with contextlib.suppress(OSError):
            path.rmdir()


def claim(path: Path, kind: str) -> None:
    """Create ``path`` (and parents) and mark it as simrec's ``kind`` output."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputExistsError(
            f"{path}: cannot create the output directory: {err.strerror}"
        ) from None
    if not _regular(path / MARKER):
        atomic_write(
            path / MARKER,
            json.dumps({"kind": kind, "simrec_version": __version__}, indent=2).encode(),
        )


def clear_own(path: Path, kind: str | None = None) -> list[str]:
    """Delete the files of the simrec output in ``path`` (of its marker's kind): regular files
    whose relative paths are that kind's, in ``path`` and, by their own markers, in nested
    outputs; folders emptied by it go too. Nothing is followed through a symbolic link and
    nothing else is touched. Returns the relative paths deleted."""
    if not path.is_dir() or path.is_symlink():
        return []
    kind = kind or owner_kind(path)
    if kind is None:
        return []
    for folder, _, _ in os.walk(path):  # never follows links
        sub = Path(folder)
        if sub != path and is_locked(sub):
            raise OutputExistsError(
                f"{sub}: another simrec process is writing there; nothing was deleted"
            )
    deleted: list[str] = []
    _clear(path, path, OWN_FILES[kind], deleted)
    return deleted


def _clear(root: Path, folder: Path, own: re.Pattern[str], deleted: list[str]) -> None:
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        rel = Path(entry.path).relative_to(root).as_posix()
        if entry.is_dir(follow_symlinks=False):
            sub = Path(entry.path)
            nested = owner_kind(sub)
            if nested is not None:
                deleted += [f"{rel}/{p}" for p in clear_own(sub, nested)]
            else:
                _clear(root, sub, own, deleted)
            with contextlib.suppress(OSError):  # only when empty
                sub.rmdir()
        elif entry.is_file(follow_symlinks=False) and own.fullmatch(rel) and entry.name != LOCK:
            if entry.name == "README.md" and not _simrec_card(Path(entry.path)):
                continue  # somebody's own notes, not the dataset card simrec wrote
            os.unlink(entry.path)
            deleted.append(rel)


def _simrec_card(path: Path) -> bool:
    """Whether ``path`` is a dataset card simrec wrote (front matter, then simrec's title)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"---\nconfigs:\n") and b"simrec" in head


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# ---------------------------------------------------------------------------- locks


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock of output folder ``path`` right now."""
    import fcntl

    try:
        fd = os.open(path / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def locked(path: Path, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on output folder ``path`` (created if needed) for the block; a
    second holder gets OutputExistsError naming the first (pid, host, start, command)."""
    import fcntl

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise OutputExistsError(
            f"{path}: cannot write the {what} directory there: {err.strerror}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            raise OutputExistsError(
                f"{path}: another simrec process is writing this {what} ({holder}); wait for "
                f"it to finish or choose another --out"
            ) from None
        holder = (
            f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}: "
            f"{_command()}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# the command a lock names (the CLI sets it: ``simrec run``); the program's name otherwise
COMMAND: str | None = None


def _command() -> str:
    """The command holding a lock, never its command line: flags can hold secrets (a
    ``--base-url`` with a password or an ``api_key`` query)."""
    if COMMAND is not None:
        return COMMAND
    return Path(sys.argv[0]).name[:100] if sys.argv and sys.argv[0] else "python"


# ---------------------------------------------------------------------------- durable writes


# the process's umask, so files made by mkstemp (mode 0600) get the usual permissions
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def check_folder(folder: Path) -> None:
    """Refuse (OutputExistsError) to write into ``folder`` when it is a symbolic link: a link
    planted in an output folder (``report/``, ``events/``, ``_state/``) would carry the write
    somewhere else."""
    if folder.is_symlink():
        raise OutputExistsError(
            f"{folder}: is a symbolic link; simrec does not write or delete through links"
        )


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A new hidden temporary beside ``path``, open for writing (binary): renamed over
    ``path`` durably when the block ends, removed when it raises, so ``path`` is always either
    old or whole.

    The temporary is made by :func:`tempfile.mkstemp` (exclusive create, a random name), so no
    file or link planted in the folder is ever written through, and the folder itself must
    not be a link. ``suffix``: how the temporary's name ends (writers that look at the
    extension need theirs)."""
    check_folder(path.parent)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if _regular(tmp):  # the block failed before the rename
            tmp.unlink()


def create_new(path: Path) -> BinaryIO:
    """``path`` created for writing (binary), exclusively and never through a link: a stale
    regular file of that name (simrec's own temporary, from an interrupted run) is replaced;
    a link or anything else there is refused (OutputExistsError)."""
    check_folder(path.parent)
    if os.path.lexists(path):
        if not _regular(path):
            raise OutputExistsError(
                f"{path}: is a symbolic link or not a regular file; simrec does not write "
                f"through it"
            )
        path.unlink()
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
    except FileExistsError:
        raise OutputExistsError(f"{path}: appeared while simrec was writing it") from None
    return os.fdopen(fd, "wb")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: a new hidden temporary, fsync, rename, fsync of
    the folder."""
    with replacing(path) as f:
        f.write(data)


def write_parquet(table, path: Path) -> None:
    """Write a pyarrow ``table`` to ``path`` (zstd) atomically."""
    import pyarrow.parquet as pq

    with replacing(path) as f:
        pq.write_table(table, f, compression="zstd")


def durable_replace(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` (a regular file simrec made) to ``path``, after flushing it
    to disk, and flush the folder so the rename survives a crash."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    check_folder(path.parent)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- event parts

EVENTS_MARKER = ".simrec-events.json"
_EVENT_FILE = re.compile(r"\.?part-\d+\.parquet(?:\.tmp)?")


def part_name(part: int) -> str:
    """File name of events part ``part``.

    >>> part_name(3), part_index(part_name(3)), part_index("users.parquet")
    ('part-00003.parquet', 3, None)
    """
    return f"part-{part:05d}.parquet"


def part_index(name: str) -> int | None:
    """The part number in an events file name, or None for any other name."""
    stem = name.removeprefix("part-").removesuffix(".parquet")
    return int(stem) if stem != name and stem.isdigit() and name.startswith("part-") else None


class EventsStore:
    """Where a run's event parts live: ``RUN/events``, or any ``pyarrow.fs`` URI
    (``output.events_uri``: ``file:///shared/run1/events``, ``s3://bucket/run1/events``,
    ``gs://...``), for clusters where the run directory is not where the data should go.

    Parts are written to a hidden temporary and moved into place (renamed durably on a local
    filesystem; on object stores a move is a copy then a delete, and a reader sees whole
    objects only). A URI folder carries ``.simrec-events.json`` naming the run directory that
    owns it: simrec writes into, and deletes part files from, only an empty folder or its own.
    """

    def __init__(
        self, run_dir: Path, uri: str | None = None, *, folder: Path | None = None
    ) -> None:
        import pyarrow.fs as pafs

        self.run_dir, self.uri = run_dir, uri
        if uri is None:  # RUN/events, or a given local folder
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
            self.root = str(run_dir / "events" if folder is None else folder)
        else:
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(uri)
            except (ValueError, OSError) as err:
                raise InputError(f"output.events_uri {uri!r}: {err}") from None
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def of_run(
        cls,
        run_dir: Path,
        manifest: dict | None = None,
        events_uri: str | None = None,
        *,
        own: bool = False,
    ) -> EventsStore:
        """The store of a complete run: ``RUN/events``, or ``events_uri``, named again by the
        person running simrec (``--events-uri``). A URI recorded in a run directory is never
        used (a run directory can come from anyone, and a URI can point at any host); a run
        whose manifest records one needs ``events_uri``. ``own``: the run was written by this
        process and ``manifest`` is the one it wrote (the URI it recorded is its own)."""
        if manifest is None:
            manifest = read_json(run_dir / "manifest.json", "a run's manifest")
        outputs = manifest.get("outputs")
        recorded = outputs.get("events_uri") if isinstance(outputs, dict) else None
        if own:
            return cls(run_dir, recorded)
        if events_uri is None and recorded:
            shown = ascii(str(recorded)[:120])
            raise InputError(
                f"{run_dir}: its event parts were written to another location ({shown}); "
                f"simrec does not take locations from a run directory: pass --events-uri again"
            )
        if events_uri is None:
            check_folder(run_dir / "events")
        return cls(run_dir, events_uri)

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def where(self, name: str = "") -> str:
        """How to name a part (or the folder) in messages and the manifest."""
        if self.uri is None:
            return f"events/{name}" if name else "events"
        return f"{self.uri.rstrip('/')}/{name}" if name else self.uri

    def names(self) -> list[str]:
        """The names of the files in the folder (none when it does not exist)."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.root, allow_not_found=True)
        infos = self.fs.get_file_info(sel)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def parts(self) -> list[str]:
        return [n for n in self.names() if n.startswith("part-") and _EVENT_FILE.fullmatch(n)]

    def claim(self) -> None:
        """Before the first part: the URI folder is empty or this run's own (its marker names
        this run directory); then mark it. Nothing to check for ``RUN/events``."""
        if self.uri is None:
            return
        names = self.names()
        owner = None
        if EVENTS_MARKER in names:
            with (
                contextlib.suppress(OSError, ValueError),
                self.fs.open_input_stream(self.path(EVENTS_MARKER)) as f,
            ):
                owner = json.loads(f.read().decode()).get("run_dir")
        if names and owner != str(self.run_dir.resolve()):
            raise OutputExistsError(
                f"output.events_uri {self.uri}: holds files that are not this run's "
                f"({len(names)} of them; {EVENTS_MARKER} names "
                f"{owner or 'no simrec run'}); choose an empty location"
            )
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self.path(EVENTS_MARKER)) as f:
            f.write(json.dumps({"run_dir": str(self.run_dir.resolve())}).encode())

    def finish(self, tmp: str, final: str) -> None:
        """Move the finished temporary part ``tmp`` to ``final`` (both paths of :meth:`path`)."""
        if self.local:
            durable_replace(Path(tmp), Path(final))
        else:
            self.fs.move(tmp, final)

    def drop_from(self, next_part: int) -> None:
        """Delete the parts numbered ``next_part`` or more and every temporary part: files
        named as simrec names them, nothing else."""
        if self.local and (Path(self.root).is_symlink() or not Path(self.root).is_dir()):
            return
        for name in self.names():
            if not _EVENT_FILE.fullmatch(name):
                continue
            index = part_index(name.removeprefix(".").removesuffix(".tmp"))
            if index is not None and (name.endswith(".tmp") or index >= next_part):
                if self.local and not _regular(Path(self.path(name))):
                    continue
                self.fs.delete_file(self.path(name))

    def read(self, columns: list[str] | None = None):
        """Every part as one pyarrow Table (hidden files are not parts)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.root, filesystem=self.fs, columns=columns)


def read_events(
    run_dir: Path,
    columns: list[str] | None = None,
    manifest: dict | None = None,
    events_uri: str | None = None,
    *,
    own: bool = False,
):
    """A complete run's events (a pyarrow Table): from ``RUN/events`` or ``events_uri``
    (:meth:`EventsStore.of_run`)."""
    return EventsStore.of_run(run_dir, manifest, events_uri, own=own).read(columns)
