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

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.config import EngineConfig
from simrec.errors import ConfigError, SimrecError

if TYPE_CHECKING:
    from simrec.simulator.model import SimulationModel
    from simrec.simulator.shards import TickPart

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
    """Ray, initialised as ``cfg`` says: an instance already initialised in this process (a
    notebook's ``ray.init``) is used as it is; otherwise ``address`` None starts a local
    instance (``num_cpus`` CPUs) and any other address is joined with
    ``ray.init(address=...)``. An address that takes no connection is a ConfigError naming
    it, whether or not Ray is initialised."""
    ray = require_ray()
    if cfg.address is not None:
        _check_reachable(cfg.address)
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


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ConfigError at once when ``address`` (HOST:PORT or ray://HOST:PORT) takes no TCP
    connection, or takes one but does not speak gRPC (HTTP/2) as Ray's GCS and Ray Client
    servers do; Ray itself would retry for minutes. 'auto' is Ray's to find."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep:
        return
    if not port.isdigit():
        raise ConfigError(
            f"engine.address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            grpc = _answers_http2(s)
    except OSError as err:
        raise ConfigError(
            f"engine.address: no Ray cluster answers at {address!r} ({err.strerror or err}); "
            f"start one with `ray start --head`, or leave engine.address unset for a local "
            f"instance"
        ) from None
    if not grpc:
        raise ConfigError(
            f"engine.address: something answers at {address!r}, but not a Ray cluster (no "
            f"gRPC there); give the address `ray start --head` printed (GCS, port 6379 by "
            f"default) or ray://HOST:10001"
        )


# an HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113, 3.4)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(sock) -> bool:
    """Whether the server on ``sock`` answers an HTTP/2 preface with a SETTINGS frame, as every
    gRPC server does (OSError, socket.timeout included, when it does not answer in time)."""
    sock.sendall(_H2_PREFACE)
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            return False
        head += chunk
    return head[3] == 4  # frame type SETTINGS


def _python_path() -> list[str]:
    import sys

    root = str(Path(__file__).resolve().parents[2])  # the folder that holds the package
    return [root] + [p for p in sys.path if p and os.path.isdir(p) and p != root]


def shard_bounds(n_agents: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous agent ranges of near-equal size (at most ``n_agents`` of them).

    >>> shard_bounds(10, 3)
    [(0, 3), (3, 6), (6, 10)]
    """
    k = max(1, min(shards, n_agents))
    cuts = [n_agents * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _run_block(fn: Any, item: Any) -> Any:
    return fn(item)


class RayBlocks:
    """A :data:`~simrec.arrays.BlockMapper` that runs each block of users as a Ray task (one
    CPU each): the function, with the arrays it closes over, goes into the object store once
    per call, and the results come back in block order. ``tasks`` counts the tasks run."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._task = ray.remote(num_cpus=1, max_retries=2)(_run_block)
        self.tasks = 0

    def __call__(self, fn: Any, items: list) -> list:
        ref = self.ray.put(fn)
        self.tasks += len(items)
        return self.ray.get([self._task.remote(ref, x) for x in items])


class _Shard:
    """One shard of the population (runs inside a Ray actor)."""

    def __init__(self, parts: dict, lo: int, hi: int, state: dict | None) -> None:
        from simrec import build
        from simrec.simulator.model import SimulationModel

        parts = dict(parts)
        cwd = parts.pop("cwd", None)
        if cwd is not None and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths in the config mean what they mean to the driver
        llm = parts.pop("llm", None)
        if llm is not None:  # an LLM brain: its backend (clients, cache) is made here
            cfg, utility, backend = llm
            parts["brain"], parts["memory"] = build.make_brain(
                cfg, utility, parts["data"], backend=backend
            )
        self.model = SimulationModel(**parts, owned=(lo, hi))
        if state is not None:
            self.model.load_state(state)
        self.base = self.model.brain_counters()  # counters of the run before this shard

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

    def brain_counters(self) -> dict[str, Any] | None:
        """What this shard's brain counted since the shard started."""
        now = self.model.brain_counters()
        return None if now is None else add_counters(now, self.base, -1)

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
        import time

        t = time.perf_counter()
        self.ray = connect(cfg)
        self.model, self.cfg = model, cfg
        self.bounds = shard_bounds(model.n_agents, cfg.shards)
        self._parts = self.ray.put(parts)
        self._actor = self.ray.remote(num_cpus=0)(_Shard)
        self.restarts = 0
        self.calibration_tasks = 0  # the calibration's user blocks run as Ray tasks
        self.bytes_from_shards = 0  # the tick parts' arrays, through the object store
        self.recovery_s = 0.0  # restarting shards from checkpoints
        self.actor_peak_rss: list[int] = []  # read when the actors close
        self.actors: list[Any] = []
        self._start(state)
        self.start_s = time.perf_counter() - t  # the parts put, the shards' models built

    def _start(self, state: dict[str, np.ndarray] | None) -> None:
        self._base = None  # the brain's counters before the shards started
        if state is not None:
            self._base = json.loads(bytes(state["meta"]).decode()).get("brain")
        ref = None if state is None else self.ray.put(state)
        self.actors = [
            self._actor.options(name=None, max_restarts=0).remote(self._parts, lo, hi, ref)
            for lo, hi in self.bounds
        ]
        self._get([a.pid.remote() for a in self.actors])  # every shard built (and loaded)

    def _get(self, refs: list) -> list:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(refs)
        except (exceptions.RayActorError, exceptions.ObjectLostError) as err:
            raise ShardLost(f"a shard's actor died: {type(err).__name__}") from err

    def simulate_tick(self) -> list[TickPart]:
        tick = self.model.tick
        parts = self._get([a.simulate_tick.remote(tick) for a in self.actors])
        self.bytes_from_shards += sum(
            int(a.nbytes) for p in parts for v in p.columns.values() for a in v
        )
        return parts

    def after_tick(self, shares: dict[str, np.ndarray] | None) -> None:
        social = self.model.social
        signal = None if social is None else self.ray.put(social.signal)
        ref = None if shares is None else self.ray.put(shares)
        self._get([a.after_tick.remote(ref, signal) for a in self.actors])

    def policy_changed(self) -> None:
        ref = self.ray.put(self.model.policy)
        self._get([a.set_policy.remote(ref) for a in self.actors])

    def agent_state(self) -> dict[str, np.ndarray]:
        from simrec.simulator.shards import join_agent_states

        return join_agent_states(self._get([a.agent_state.remote() for a in self.actors]))

    def brain_counters(self) -> dict[str, Any] | None:
        total = self._base
        for counted in self._get([a.brain_counters.remote() for a in self.actors]):
            if counted is not None:
                total = counted if total is None else add_counters(total, counted)
        return total

    def restart(self, state: dict[str, np.ndarray]) -> None:
        """Replace every actor by a new one started from ``state`` (a checkpoint)."""
        import time

        t = time.perf_counter()
        self.close()
        self.restarts += 1
        self._start(state)
        self.recovery_s += time.perf_counter() - t

    def peak_rss(self) -> list[int]:
        """Each actor's peak resident memory in bytes."""
        return self._get([a.peak_rss.remote() for a in self.actors])

    def close(self) -> None:
        """Kill the actors (their peak memory read first, for the manifest)."""
        with contextlib.suppress(ShardLost):
            self.actor_peak_rss = self.peak_rss()
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
            "calibration_tasks": self.calibration_tasks,
            "bytes_from_shards": self.bytes_from_shards,
            "recovery_s": round(self.recovery_s, 3),
            "actor_peak_rss_bytes": self.actor_peak_rss,
        }


def add_counters(a: dict[str, Any], b: dict[str, Any] | None, sign: int = 1) -> dict[str, Any]:
    """``a + sign * b`` for counters: numbers add, nested mappings add key by key.

    >>> add_counters({"calls": 3, "fallbacks": {"timeout": 1}}, {"calls": 1, "fallbacks": {}})
    {'calls': 4, 'fallbacks': {'timeout': 1}}
    """
    if b is None:
        return dict(a)
    out: dict[str, Any] = {}
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) or isinstance(y, dict):
            merged = add_counters(x or {}, y or {}, sign)
            out[key] = {k: v for k, v in merged.items() if v}
        else:
            out[key] = (x or 0) + sign * (y or 0)
    return dict(sorted(out.items()))
