"""Refuse, before any heavy work, a run that cannot fit in this machine's memory.

The estimate counts what grows with the config: the seed log of a synthetic world, the
per-agent arrays of the population and the brain, one batch of pages, and the policy's model
(factor matrices, item neighbourhoods). It is a lower bound of the peak, so a refused config
certainly does not fit; the message names the figure, what dominates it and the limit.
"""

from __future__ import annotations

import os

from simrec.config import RunConfig
from simrec.errors import ConfigError

_GIB = 2**30


def available_memory() -> int:
    """Bytes this process may still allocate: MemAvailable of /proc/meminfo, else physical
    memory; ``SIMREC_MEMORY_LIMIT`` (bytes) caps it."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2**62
    cap = os.environ.get("SIMREC_MEMORY_LIMIT")
    if cap and cap.isdigit():
        avail = min(avail, int(cap))
    return avail


def estimate_memory(
    cfg: RunConfig, n_users: int | None = None, n_items: int | None = None
) -> dict[str, int]:
    """Bytes per part of a run of ``cfg`` on data of ``n_users`` users and ``n_items`` items
    (None: the synthetic world's sizes, or the config's)."""
    syn = cfg.data.synthetic
    synthetic = cfg.data.format == "synthetic"
    n_users = n_users if n_users is not None else (syn.users if synthetic else 0)
    n_items = n_items if n_items is not None else (syn.items if synthetic else 0)
    if cfg.population.items is not None:
        n_items = min(n_items, cfg.population.items)
    agents = cfg.population.users or n_users
    from simrec.agents.taste import TASTE_DIMS

    dim = max(TASTE_DIMS) if cfg.brain.taste_dim == "auto" else cfg.brain.taste_dim
    parts = {
        # the seed log (users x interactions, four columns) of a synthetic world
        "seed log": int(n_users * syn.interactions_per_user * 24) if synthetic else 0,
        # per agent: taste, genre lift, persona traits, satisfaction, sessions, seen items
        "agents": agents * (dim * 8 + 64 * 4 + 256),
        # the calibration's user factors (LDA, rating model, genre taste)
        "calibration": n_users * (3 * dim + 64) * 8 + n_items * (3 * dim + 64) * 8,
        # one batch of pages: items, scores, decisions and the event columns
        "pages": min(cfg.simulation.batch_size, max(agents, 1))
        * cfg.simulation.page_size
        * cfg.simulation.max_pages
        * 160,
    }
    params = cfg.policy.params
    factors = params.get("factors")
    if isinstance(factors, int | float) and factors > 0:
        parts["policy"] = int((agents + n_items) * factors * 4 * 3)
    neighbours = params.get("neighbours")
    if isinstance(neighbours, int | float) and neighbours > 0:
        parts["policy"] = int(n_items * min(neighbours, n_items) * 12)
    if cfg.brain.name in ("llm", "hybrid"):
        parts["memory"] = agents * cfg.memory.capacity * 48
    return parts


def check_memory(cfg: RunConfig, n_users: int | None = None, n_items: int | None = None) -> None:
    """ConfigError when the estimate exceeds the memory available (see module docstring)."""
    parts = estimate_memory(cfg, n_users, n_items)
    need, limit = sum(parts.values()), available_memory()
    if need > limit:
        biggest = max(parts, key=parts.get)
        raise ConfigError(
            f"config needs at least {need / _GIB:,.1f} GiB of memory ({biggest}: "
            f"{parts[biggest] / _GIB:,.1f} GiB) and {limit / _GIB:,.1f} GiB is available; "
            f"lower population.users, data.synthetic.users or the policy's size parameters"
        )


MAX_RESAMPLES = 1_000_000
MAX_TURNS = 1_000


def check_statistics(n_resamples: int, alpha: float, power: float | None = None) -> None:
    """Before any work: the bootstrap count and the significance level (and the power) are
    ones the statistics can use (ConfigError naming the flag otherwise).

    >>> check_statistics(2000, 0.05)
    >>> check_statistics(0, 0.05)
    Traceback (most recent call last):
    ...
    simrec.errors.ConfigError: --bootstrap: expected an integer from 10 to 1,000,000, got 0
    """
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, int)
        or not 10 <= n_resamples <= MAX_RESAMPLES
    ):
        raise ConfigError(
            f"--bootstrap: expected an integer from 10 to {MAX_RESAMPLES:,}, got {n_resamples!r}"
        )
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        raise ConfigError(f"--alpha: expected a number above 0 and below 0.5, got {alpha!r}")
    if power is not None and not (isinstance(power, (int, float)) and 0 < power < 1):
        raise ConfigError(f"--power: expected a number above 0 and below 1, got {power!r}")
