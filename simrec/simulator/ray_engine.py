"""The ray engine: the population split into shards, each shard simulated by a Ray actor.

The driver (the run's :class:`~simrec.simulator.model.SimulationModel`) keeps the clock, the
policy (fitted once, put in Ray's object store, put again after each refit from the watches
the shards report), the social signal, the recorder and the metrics. Each actor holds a model
of its own that owns agents ``lo <= agent < hi``: their satisfaction, churn, memories, what
they watched. Per tick the driver asks every actor for its part (arrivals, pages,
satisfaction), joins the parts into the events one model would have made (randomness is keyed
by agent, tick and page, never by the process), decides the shares, then hands them back so
the agents write their memories.

A shard that dies (its actor killed, its node lost) raises :class:`ShardLost`; the runner
restarts every shard from the last checkpoint and simulates the lost ticks again, so the run
still ends with the same bytes.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.config import EngineConfig
from simrec.errors import ConfigError, SimrecError

if TYPE_CHECKING:
    from simrec.simulator.model import SimulationModel, TickPart

logger = logging.getLogger(__name__)

INSTALL = "pip install 'simrec[ray]'"


class ShardLost(SimrecError, RuntimeError):
    """A shard's actor died during a tick; the run goes back to its last checkpoint."""


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError with the install line."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"engine.kind: 'ray' needs the ray package, which is not installed; install it "
            f"with: {INSTALL}"
        ) from None
    return ray


def connect(cfg: EngineConfig) -> Any:
    """Ray, initialised as ``cfg`` says: an instance already initialised in this process is
    used as it is; ``address`` None starts a local instance (``num_cpus``), otherwise
    ``ray.init(address=...)`` joins that cluster. An unreachable cluster is a ConfigError
    naming the address."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {
        "include_dashboard": False,
        "configure_logging": False,
        "log_to_driver": False,
        # shards import simrec from the driver's path, without packaging the working dir
        "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(_python_path())}},
    }
    if cfg.address is None:
        options["num_cpus"] = cfg.num_cpus
    else:
        options["address"] = cfg.address
    try:
        ray.init(**options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = cfg.address or "a new local instance"
        raise ConfigError(
            f"engine.address: could not start or reach a Ray cluster at {where!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); start "
            f"one with `ray start --head`, or leave engine.address unset for a local instance"
        ) from None
    return ray


def _python_path() -> list[str]:
    import sys

    import simrec

    root = os.path.dirname(os.path.dirname(os.path.abspath(simrec.__file__)))
    return [root] + [p for p in sys.path if p and os.path.isdir(p) and p != root]


def shard_bounds(n_agents: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous agent ranges of near-equal size (at most ``n_agents`` of them).

    >>> shard_bounds(10, 3)
    [(0, 3), (3, 6), (6, 10)]
    """
    k = max(1, min(shards, n_agents))
    cuts = [n_agents * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


class _Shard:
    """One shard of the population (runs inside a Ray actor)."""

    def __init__(self, parts: dict, lo: int, hi: int, state: dict | None) -> None:
        from simrec.simulator.model import SimulationModel

        self.model = SimulationModel(**parts, owned=(lo, hi))
        if state is not None:
            self.model.load_state(state)

    def simulate_tick(self, tick: int) -> TickPart:
        m = self.model
        if m.tick != tick:
            raise RuntimeError(f"shard {m.owned} is at tick {m.tick}, the driver at {tick}")
        part = m.simulate_tick()
        part.columns = {k: [np.concatenate(v)] for k, v in part.columns.items()}
        return part

    def after_tick(self, shares: dict | None, signal: Any) -> None:
        m = self.model
        if signal is not None:
            m.social.signal = signal
        m.after_tick(shares)
        m.tick += 1

    def set_policy(self, policy: Any) -> None:
        self.model.policy = policy

    def agent_state(self) -> dict[str, np.ndarray]:
        return self.model.agent_state()

    def peak_rss(self) -> int:
        """This actor's peak resident memory in bytes."""
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def pid(self) -> int:
        return os.getpid()


class RayShards:
    """The :class:`~simrec.simulator.model.Shards` of a model on Ray actors.

    ``parts``: the keyword arguments each shard's model is made from (data, personas, brain,
    policy, sim, seed, social, memory...), put once in the object store; ``state``: a
    checkpoint to start the shards from (None: tick 0).
    """

    def __init__(
        self,
        model: SimulationModel,
        cfg: EngineConfig,
        parts: dict[str, Any],
        state: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.ray = connect(cfg)
        self.model, self.cfg = model, cfg
        self.bounds = shard_bounds(model.n_agents, cfg.shards)
        self._parts = self.ray.put(parts)
        self._actor = self.ray.remote(num_cpus=0)(_Shard)
        self.restarts = 0
        self.actors: list[Any] = []
        self._start(state)

    def _start(self, state: dict[str, np.ndarray] | None) -> None:
        ref = None if state is None else self.ray.put(state)
        self.actors = [
            self._actor.options(name=None, max_restarts=0).remote(self._parts, lo, hi, ref)
            for lo, hi in self.bounds
        ]

    def _get(self, refs: list) -> list:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(refs)
        except (exceptions.RayActorError, exceptions.ObjectLostError) as err:
            raise ShardLost(f"a shard's actor died: {type(err).__name__}") from err

    def simulate_tick(self) -> list[TickPart]:
        tick = self.model.tick
        return self._get([a.simulate_tick.remote(tick) for a in self.actors])

    def after_tick(self, shares: dict[str, np.ndarray] | None) -> None:
        social = self.model.social
        signal = None if social is None else self.ray.put(social.signal)
        ref = None if shares is None else self.ray.put(shares)
        self._get([a.after_tick.remote(ref, signal) for a in self.actors])

    def policy_changed(self) -> None:
        ref = self.ray.put(self.model.policy)
        self._get([a.set_policy.remote(ref) for a in self.actors])

    def agent_state(self) -> dict[str, np.ndarray]:
        from simrec.simulator.model import join_agent_states

        return join_agent_states(self._get([a.agent_state.remote() for a in self.actors]))

    def restart(self, state: dict[str, np.ndarray]) -> None:
        """Replace every actor by a new one started from ``state`` (a checkpoint)."""
        self.close()
        self.restarts += 1
        self._start(state)

    def peak_rss(self) -> list[int]:
        """Each actor's peak resident memory in bytes."""
        return self._get([a.peak_rss.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # already gone
                logger.debug("shard actor already gone")
        self.actors = []

    def summary(self) -> dict[str, Any]:
        """What the manifest records of the engine."""
        return {
            "kind": "ray",
            "shards": len(self.bounds),
            "address": self.cfg.address,
            "restarts": self.restarts,
        }
