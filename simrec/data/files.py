"""File checks every data reader makes before reading: the file is there, regular and not
empty, and its text is UTF-8 (named at the first bad byte)."""

from __future__ import annotations

import codecs
from pathlib import Path

from simrec.errors import InputError


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a non-empty file, else InputError saying what was expected there."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if path.is_dir():
        raise InputError(f"{path}: expected a file ({what}), found a directory")
    if not path.is_file():
        raise InputError(
            f"{path}: expected a regular file ({what}), found a device, pipe or socket"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty, expected {what}")
    return path


def require_dir(path: Path, fmt: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: data directory not found")
    if not path.is_dir():
        raise InputError(f"{path}: expected a {fmt} directory, found a file")
    return path


def check_utf8(path: Path) -> None:
    """Raise InputError at the first byte that is not valid UTF-8 (streamed, any file size)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                # err.object is the decoder's carried-over bytes of the previous block + this one
                carried = len(err.object) - len(block)
                line += err.object[carried : max(carried, err.start)].count(b"\n")
                raise InputError(
                    f"{path}: expected UTF-8 text, found byte {err.object[err.start]:#04x} "
                    f"at offset {offset - carried + err.start} (line {line})"
                ) from None
            line += block.count(b"\n")
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputError(
                f"{path}: expected UTF-8 text, found a truncated character at the end"
            ) from None
