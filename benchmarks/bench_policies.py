"""Time per tick of ``recommend()`` for every built-in policy, against plain numpy top-k.

A "tick" here is one page for every user: ``recommend(users, k=10)`` over all users in batches of
8,192 (the simulator's default batch size), each user excluding what they already consumed.
The world is synthetic: ``--users`` (default 100,000) users x ``--items`` (default 10,000) items,
20 seed interactions per user. The baseline, in the same process, is the least a matrix-
factorisation recommender must do: ``scores = U[batch] @ V.T`` (64 float32 factors) then
``argpartition`` + ``argsort`` for the top 10, with no exclusions. Fit time is reported beside.
Recommend timings are the best of ``--repeats`` (one run for softmax, whose exact propensities
dominate its cost).

    python benchmarks/bench_policies.py [--users 100000] [--items 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simrec.config import ExplorationConfig, SyntheticWorldConfig
from simrec.data import make_world
from simrec.environments import PolicyRandomness
from simrec.environments.registry import make_policy
from simrec.rng import Streams

K = 10
BATCH = 8192

POLICIES = [
    ("random", {}, None),
    ("popular", {}, None),
    ("itemknn", {}, None),
    ("als", {}, None),
    ("bpr", {}, None),
    ("genre", {}, None),
    ("als", {}, ExplorationConfig(kind="epsilon-greedy", epsilon=0.1)),
    ("als", {}, ExplorationConfig(kind="softmax", temperature=0.1, candidates=50)),
]


def numpy_top_k(users: int, items: int, repeats: int) -> float:
    g = np.random.default_rng(0)
    u = g.standard_normal((users, 64), dtype=np.float32)
    v = g.standard_normal((items, 64), dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for start in range(0, users, BATCH):
            s = u[start : start + BATCH] @ v.T
            top = np.argpartition(-s, K - 1, axis=1)[:, :K]
            order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1)
            np.take_along_axis(top, order, axis=1)
        best = min(best, time.perf_counter() - t)
    return best


def one_tick(policy, users: np.ndarray, consumed, streams: Streams) -> float:
    t = time.perf_counter()
    for start in range(0, users.size, BATCH):
        batch = users[start : start + BATCH]
        policy.recommend(
            batch, K, exclude=consumed[start : start + BATCH], rng=PolicyRandomness(streams, 0, 0)
        )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t = time.perf_counter()
    world = make_world(
        SyntheticWorldConfig(users=args.users, items=args.items, interactions_per_user=20), 0
    )
    log = world.interactions.to_arrow()
    consumed = world.interactions.matrix(world.catalog.n_items)
    users = np.arange(world.interactions.n_users, dtype=np.int64)
    streams = Streams(0)
    print(
        f"world: {users.size:,} users x {world.catalog.n_items:,} items, "
        f"{len(world.interactions):,} interactions ({time.perf_counter() - t:.1f} s)"
    )
    base = numpy_top_k(users.size, world.catalog.n_items, args.repeats)
    print(f"\nbaseline numpy top-{K} (U @ V.T, 64 factors, no exclusions): {base:.3f} s per tick\n")
    print(f"{'policy':<24}{'fit s':>9}{'tick s':>10}{'users/s':>13}{'x baseline':>12}")
    for name, params, exploration in POLICIES:
        policy = make_policy(name, params, exploration)
        t = time.perf_counter()
        policy.fit(log, world.catalog)
        fit_s = time.perf_counter() - t
        reps = 1 if exploration is not None and exploration.kind == "softmax" else args.repeats
        tick = min(one_tick(policy, users, consumed, streams) for _ in range(reps))
        print(
            f"{policy.name:<24}{fit_s:>9.2f}{tick:>10.3f}{users.size / tick:>13,.0f}"
            f"{tick / base:>12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
