"""The whole command a user waits for, per policy: ``simrec run --users 100000 --items 5000
--ticks 10 --seed 3 --policy P`` for ``popular``, ``itemknn``, ``als`` and a user-defined policy
(``benchmarks.user_policy:PureSVD``), each cold (an empty calibration cache) and warm (the same
command again, the calibration read from the cache), each in a child process of its own.

Per run it prints the wall time of the whole child process (interpreter start, world,
calibration, policy fit, simulation, writing), its parts from the manifest, which part
dominates, and impressions/s over the whole command. Beside each policy, measured in this
process on the same world, is the floor of its arithmetic done once in plain numpy/scipy: the
scores of as many arriving users as the run had sessions (``history @ similarity`` for
item-kNN, ``U @ V.T`` in float32 for ALS and PureSVD, nothing per user for popularity) and one
top-k of every page of the session per user (``argpartition`` + ``argsort``), without exclusions.
The ratio printed is the run's simulation against the floor of the same work: popular's
simulation (the brain, events and writing, with the cheapest policy) plus the policy's scoring
floor. Goals (issue "Fast with real recommenders"): whole command >= 500k impressions/s cold with
popular, >= 300k/s with itemknn and als, >= 1M/s warm with popular; simulation within 2x of
the floor.

    python benchmarks/bench_commands.py [--users 100000] [--items 5000] [--ticks 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("popular", "itemknn", "als", "benchmarks.user_policy:PureSVD")
PARTS = ("load_s", "fit_s", "policy_fit_s", "simulate_s", "write_s")
GOALS = {("popular", "cold"): 500_000, ("itemknn", "cold"): 300_000, ("als", "cold"): 300_000}
GOALS[("popular", "warm")] = 1_000_000


def whole_command(args, policy: str, cache: Path, out: Path) -> dict:
    """One ``simrec run`` in a child process: its wall time and manifest."""
    cmd = [sys.executable, "-m", "simrec", "run", "--users", str(args.users)]
    cmd += ["--items", str(args.items), "--ticks", str(args.ticks), "--seed", "3"]
    cmd += ["--policy", policy, "--cache-dir", str(cache), "--out", str(out), "--quiet"]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall_s": wall, "manifest": manifest}


def top_k_floor(score_rows, n_users: int, sessions: int, k: int, block: int = 8192) -> float:
    """Seconds to score ``sessions`` users drawn from ``n_users`` and take each one's top k."""
    users = np.random.default_rng(0).integers(0, n_users, sessions)
    t = time.perf_counter()
    for start in range(0, sessions, block):
        s = score_rows(users[start : start + block])
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1)
        np.take_along_axis(top, order, axis=1)
    return time.perf_counter() - t


def floors(args, sessions: dict[str, int], k: int) -> dict[str, float]:
    """The plain numpy/scipy floor of each policy's scoring, on the run's world."""
    from implicit.nearest_neighbours import CosineRecommender
    from scipy.sparse.linalg import svds

    from simrec.config import SyntheticWorldConfig
    from simrec.data import make_world
    from simrec.environments.base import history_matrix
    from simrec.environments.learned import ALSPolicy, quiet_implicit

    world = make_world(
        SyntheticWorldConfig(users=args.users, items=args.items, interactions_per_user=20), 3
    )
    history = history_matrix(world.interactions.to_arrow(), args.items)
    n = history.shape[0]
    out = {"popular": 0.0}
    with quiet_implicit():
        knn = CosineRecommender(K=100)
        knn.fit(history, show_progress=False)
    similarity = knn.similarity.tocsr().astype(np.float32)
    out["itemknn"] = top_k_floor(
        lambda u: (history[u] @ similarity).toarray(), n, sessions["itemknn"], k
    )
    als = ALSPolicy()
    als.fit(world.interactions.to_arrow(), world.catalog)
    u, vt = als.user_factors, np.ascontiguousarray(als.item_factors.T)
    out["als"] = top_k_floor(lambda b: u[b] @ vt, n, sessions["als"], k)
    _, _, v = svds(history.astype(np.float64), k=64, random_state=0)
    us, vs = (history @ v.T).astype(np.float32), np.ascontiguousarray(v.astype(np.float32))
    name = POLICIES[3]
    out[name] = top_k_floor(lambda b: us[b] @ vs, n, sessions[name], k)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--ticks", type=int, default=10)
    args = ap.parse_args()
    print(f"simrec run: {args.users:,} users x {args.items:,} items x {args.ticks} ticks, seed 3")
    runs: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, policy in enumerate(POLICIES):
            cache = Path(tmp) / f"cache{i}"
            for state in ("cold", "warm"):
                r = whole_command(args, policy, cache, Path(tmp) / f"run{i}-{state}")
                runs[policy, state] = r
                m, wall = r["manifest"], r["wall_s"]
                t, imp = m["timings"], m["counts"]["impressions"]
                parts = {p[:-2]: t[p] for p in PARTS}
                parts["start and the rest"] = wall - sum(parts.values())  # imports, world checks
                goal = GOALS.get((policy, state))
                verdict = ""
                if goal:
                    verdict = f" (goal >= {goal:,}: {'met' if imp / wall >= goal else 'not met'})"
                print(
                    f"{policy:>32} {state}: whole command {wall:5.1f} s, "
                    f"{imp / wall:9,.0f} impressions/s{verdict}"
                )
                print(
                    f"{'':>32}   "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
                    + f"; dominant: {max(parts, key=parts.get)}; calibration "
                    + str(m["brain"]["calibration_cache"])
                )
    sim = runs["popular", "warm"]["manifest"]
    k = sim["config"]["simulation"]["page_size"] * sim["config"]["simulation"]["max_pages"]
    sessions = {p: runs[p, "warm"]["manifest"]["counts"]["sessions"] for p in POLICIES}
    floor = floors(args, sessions, k)
    base = runs["popular", "warm"]["manifest"]["timings"]["simulate_s"]
    print(f"scoring floor (plain numpy/scipy, this process; top {k} per session):")
    for policy in POLICIES:
        simulate = runs[policy, "warm"]["manifest"]["timings"]["simulate_s"]
        ratio = simulate / (base + floor[policy])
        verdict = (
            "" if policy == "popular" else f" (goal <= 2x: {'met' if ratio <= 2 else 'not met'})"
        )
        print(
            f"{policy:>32}: {sessions[policy]:,} sessions, floor {floor[policy]:.2f} s; "
            f"simulation {simulate:.2f} s = {ratio:.2f}x popular's simulation + floor{verdict}"
        )


if __name__ == "__main__":
    main()
