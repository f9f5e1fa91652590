"""Counter-based randomness.

Every random number in a run is a pure function of ``(root seed, purpose, agent, tick, page,
draw index)``: a SplitMix64-style hash over ``uint64`` arrays. A batch of agents gets all its
uniforms in one vectorised call, and the numbers an agent sees do not depend on which other
agents share its batch, on the batch size, on the processing order or on where a resumed run
restarted.

>>> s = Streams(seed=7)
>>> u = s.uniform("click", agents=np.array([3, 1, 2]), tick=0, n=4)
>>> u.shape
(3, 4)
>>> bool(np.all((u > 0) & (u < 1)))
True
>>> v = s.uniform("click", agents=np.array([2]), tick=0, n=4)
>>> bool(np.array_equal(u[2], v[0]))
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / float(1 << 53)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser applied elementwise. ``x``: any shape, uint64 -> same shape, uint64."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def purpose_key(seed: int, purpose: str) -> np.uint64:
    """A 64-bit key for one (root seed, purpose) pair."""
    digest = hashlib.blake2b(f"{int(seed)}:{purpose}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def derive_seed(seed: int, *parts: object) -> int:
    """A derived integer seed (0 <= s < 2**63) for sub-components, e.g. an LLM call."""
    digest = hashlib.blake2b(":".join(map(str, (seed, *parts))).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


@dataclass(frozen=True)
class Streams:
    """All random streams of one run, addressed by counters instead of generator state."""

    seed: int

    def bits(
        self, purpose: str, agents: np.ndarray, tick: int = 0, page: int = 0, n: int = 1
    ) -> np.ndarray:
        """Raw 64-bit draws. ``agents``: (m,) int -> (m, n) uint64."""
        key = purpose_key(self.seed, purpose)
        a = np.asarray(agents, dtype=np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            h = mix64(a ^ key)
            h = mix64(
                h ^ np.uint64(tick & 0xFFFFFFFF) ^ (np.uint64(page & 0xFFFF) << np.uint64(40))
            )
            draws = np.arange(n, dtype=np.uint64) * _GOLDEN
            return mix64(h[:, None] ^ draws[None, :])

    def uniform(
        self, purpose: str, agents: np.ndarray, tick: int = 0, page: int = 0, n: int = 1
    ) -> np.ndarray:
        """Uniforms in the open interval (0, 1). ``agents``: (m,) -> (m, n) float64."""
        b = self.bits(purpose, agents, tick, page, n)
        return ((b >> _S11).astype(np.float64) + 0.5) * _INV53

    def normal(
        self, purpose: str, agents: np.ndarray, tick: int = 0, page: int = 0, n: int = 1
    ) -> np.ndarray:
        """Standard normals by inverse CDF. ``agents``: (m,) -> (m, n) float64."""
        return ndtri(self.uniform(purpose, agents, tick, page, n))

    def generator(self, purpose: str, *parts: object) -> np.random.Generator:
        """A numpy Generator for one-off work that is not per agent (e.g. world generation)."""
        return np.random.default_rng(derive_seed(self.seed, purpose, *parts))
