"""Leakage control (KAR-style): only interactions before a cutoff may inform augmentation.

A cutoff is a moment (Unix seconds or an ISO-8601 date/time, UTC when no zone is given) or a
per-user fraction (``0.8``: each user's earliest 80% of interactions, by timestamp then item).
Everything ``simrec.augment`` computes (graph statistics, neighbours, fans, prompts) sees only
:func:`visible` rows, so evaluation on the later data stays honest.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np

from simrec.data.dataset import Interactions
from simrec.errors import ConfigError


@dataclass(frozen=True)
class Cutoff:
    """Exactly one of ``timestamp`` (Unix seconds; rows strictly before it are visible) and
    ``fraction`` (per user, the earliest ``floor(fraction * n)`` rows are visible)."""

    timestamp: int | None = None
    fraction: float | None = None

    def describe(self) -> str:
        if self.timestamp is not None:
            when = dt.datetime.fromtimestamp(self.timestamp, dt.UTC).isoformat()
            return f"before {when}"
        return f"each user's earliest {self.fraction:g}"


def parse_cutoff(text: str | float | int | None) -> Cutoff | None:
    """``None``; a fraction in (0, 1); Unix seconds; or an ISO-8601 date/time."""
    if text is None:
        return None
    raw = str(text).strip()
    expected = (
        "--cutoff: expected a per-user fraction in (0, 1), Unix seconds or an ISO-8601 "
        f"date/time, got {raw!r}"
    )
    if re.fullmatch(r"0?\.\d+|0|1(\.0*)?", raw):
        value = float(raw)
        if not 0 < value < 1:
            raise ConfigError(expected)
        return Cutoff(fraction=value)
    if re.fullmatch(r"-?\d+", raw):
        return Cutoff(timestamp=int(raw))
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(expected) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return Cutoff(timestamp=int(moment.timestamp()))


def visible(log: Interactions, cutoff: Cutoff | None) -> np.ndarray:
    """Sorted row indices of the interactions before ``cutoff`` (all rows without one)."""
    if cutoff is None:
        return np.arange(len(log))
    if cutoff.timestamp is not None:
        return np.flatnonzero(log.timestamp < cutoff.timestamp)
    early, _ = log.latest(1.0 - cutoff.fraction)
    return early
