"""The Recommender contract and its helpers.

A recommender serves one slate of ``k`` items per user in a batch. Exclusions arrive as a CSR
matrix whose rows are aligned with ``users`` (row j belongs to ``users[j]``). Randomness arrives
as a :class:`PolicyRandomness`: draws keyed by (run seed, tick, page, user), so a stochastic
policy's slates do not depend on how users are batched. (DESIGN.md first named a
``np.random.Generator`` here; a shared generator would make each user's slate depend on its
batch-mates, which breaks byte-identical output across batch sizes.)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from simrec.data.dataset import Catalog
from simrec.errors import ConfigError
from simrec.rng import Streams

_DENSE_MASK_LIMIT = 64_000_000  # cells of the dense exclusion lookup (64 MB of bools)


@dataclass
class Slates:
    """items: (n, k) int64 item indices (-1 where the catalog ran out); scores: (n, k) float32;
    pscore_item_position: (n, k) float64 in (0, 1], the probability that the policy put this
    item at this position (1.0 for deterministic policies); pscore_slate: (n,) float64, the
    probability of the whole slate, NaN when unknown; deterministic: True when no draw was made.
    """

    items: np.ndarray
    scores: np.ndarray
    pscore_item_position: np.ndarray
    pscore_slate: np.ndarray
    deterministic: bool


@dataclass(frozen=True)
class PolicyRandomness:
    """Counter-based draws for one page of one tick: ``uniform(users, n) -> (len(users), n)``."""

    streams: Streams
    tick: int
    page: int
    purpose: str = "policy"

    def uniform(self, users: np.ndarray, n: int, round_: int = 0) -> np.ndarray:
        """Uniforms in (0, 1) for each user; ``round_`` gives fresh draws for retries."""
        return self.streams.uniform(f"{self.purpose}/{round_}", users, self.tick, self.page, n)


@runtime_checkable
class Recommender(Protocol):
    """What the simulator needs from a policy."""

    name: str

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        """Learn from a log with columns user_index, item_index, rating, timestamp."""

    def recommend(
        self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None, rng: PolicyRandomness
    ) -> Slates:
        """Slates for ``users`` (n,) int64; ``exclude``: (n, n_items) CSR aligned with users."""


def excluded_mask(candidates: np.ndarray, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Which candidates are excluded. candidates: (n, m) item indices -> (n, m) bool."""
    if exclude is None or exclude.nnz == 0:
        return np.zeros(candidates.shape, bool)
    ex = exclude.tocsr()
    n, n_items = ex.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(ex.indptr))
    if n > 1 and candidates.strides[0] == 0:  # one candidate list shared by every row
        shared = candidates[0]
        column = np.full(n_items, -1, np.int64)
        column[shared[shared >= 0]] = np.flatnonzero(shared >= 0)
        col = column[ex.indices]
        hit = col >= 0
        mask = np.zeros(candidates.shape, bool)
        mask[rows[hit], col[hit]] = True
        return mask
    if n * n_items <= _DENSE_MASK_LIMIT:  # a dense (n, n_items) lookup table is cheapest
        table = np.zeros((n, n_items), bool)
        table[rows, ex.indices] = True
        safe = np.maximum(candidates, 0)
        return table[np.arange(n)[:, None], safe] & (candidates >= 0)
    if not ex.has_sorted_indices:
        ex = ex.copy()
        ex.sort_indices()
    keys = rows * np.int64(n_items) + ex.indices.astype(np.int64)
    cand = np.arange(n, dtype=np.int64)[:, None] * np.int64(n_items) + candidates
    pos = np.minimum(np.searchsorted(keys, cand), keys.size - 1)
    return (keys[pos] == cand) & (candidates >= 0)


def first_k(candidates: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` allowed candidates per row, in order. (n, m), (n, m) -> (n, k) items with -1
    padding, and the (n,) count found.

    >>> first_k(np.array([[5, 6, 7, 8]]), np.array([[False, True, True, True]]), 2)
    (array([[6, 7]]), array([2]))
    """
    n, m = allowed.shape
    out = np.full((n, k), -1, np.int64)
    if m == 0:
        return out, np.zeros(n, np.int64)
    rank = np.cumsum(allowed, axis=1, dtype=np.int16 if m < 32_000 else np.int64)
    flat = np.flatnonzero(allowed & (rank <= k))  # row-major, so rows and ranks are in order
    row = flat // m
    col = flat - row * m
    picked = candidates[0, col] if n > 1 and candidates.strides[0] == 0 else candidates[row, col]
    out.ravel()[row * k + rank.ravel()[flat] - 1] = picked
    return out, np.minimum(rank[:, -1], k).astype(np.int64)


def resolve_class(spec: str, builtins: dict[str, type], what: str) -> type:
    """A built-in name or ``package.module:ClassName`` -> the class; ConfigError otherwise."""
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        raise ConfigError(
            f"unknown {what} '{spec}': expected one of {', '.join(sorted(builtins))} "
            f"or 'package.module:ClassName'"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{what} '{spec}': cannot import module '{module_name}': {err}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"{what} '{spec}': module '{module_name}' has no attribute '{attr}'")
    return cls
