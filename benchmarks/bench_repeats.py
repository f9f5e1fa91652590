"""Repeat consumption: the simulated share of consumption that repeats a user-item pair
against the log's, per policy, on play-count logs of growing replay (a synthetic world's pairs,
each played ``1 + Poisson(replays x exp(rating - 1))`` times, no ratings, no timestamps).

Per log it prints the log's repeat share, the share the calibrated replay pull reaches under the
log's exposure (``brain.replay_share``), the pull itself (``brain.replay``, at its bound where
slates alone cannot reach the log) and the simulated share under ``organic`` (the log's
exposure), ``popular`` and ``als``. Goal (issue "Any log"): within 10 points of the log's.

    python benchmarks/bench_repeats.py [--users 400] [--ticks 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import simrec
from simrec.config import SyntheticWorldConfig
from simrec.data import make_world


def play_counts(path: Path, users: int, replays: float, seed: int = 3) -> None:
    world = make_world(SyntheticWorldConfig(users=users, items=300, interactions_per_user=15), seed)
    log = world.interactions
    plays = np.random.default_rng(seed).poisson(replays * np.exp(log.rating - 1.0)) + 1
    frame = pd.DataFrame({"user": log.user_ids[log.user], "artist": log.item, "plays": plays})
    frame.drop_duplicates(["user", "artist"]).to_csv(path, sep="\t", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--ticks", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for replays in (0.05, 0.2, 3.0):
            data = Path(tmp) / f"plays-{replays}.tsv"
            play_counts(data, args.users, replays)
            shares = {}
            for policy in ("organic", "popular", "als"):
                cfg = {
                    "seed": 4,
                    "data": {
                        "format": "table",
                        "path": str(data),
                        "columns": {"user": "user", "item": "artist", "count": "plays"},
                    },
                    "population": {"visit_rate": 0.5},
                    "policy": {"name": policy},
                    "simulation": {"ticks": args.ticks},
                    "output": {"dir": str(Path(tmp) / f"{replays}-{policy}")},
                }
                res = simrec.run(cfg)
                brain = res.manifest["brain"]
                ev = res.events()
                watched = ev[(ev.event_type == "impression") & ev.clicked.astype(bool)]
                shares[policy] = watched.repeat.astype(bool).mean()
            real = brain["repeat_share"]
            within = abs(shares["organic"] - real) <= 0.10
            print(
                f"log repeat share {real:.3f}: reachable {brain['replay_share']:.3f} "
                f"(replay pull {brain['replay']:.2f}); simulated "
                + ", ".join(f"{p} {s:.3f}" for p, s in shares.items())
                + f"; organic within 10 points: {'met' if within else 'not met'}"
            )


if __name__ == "__main__":
    main()
