"""Overhead of the A/B machinery: a 3-arm ``simrec.ab`` against three plain ``simrec.run``s of
the same size, in the same process.

Synthetic world of ``--users`` (default 10,000) users and 3,000 items, ``--ticks`` (default 10)
ticks, arms ``popular``, ``random`` and ``itemknn``. The A/B time includes the three runs, the
per-user analysis, the bootstrap (``--bootstrap`` resamples, default 2,000) and the HTML report.
Best of ``--repeats``.

    python benchmarks/bench_ab.py [--users 10000] [--ticks 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import simrec

ARMS = {"pop": "popular", "rand": "random", "knn": "itemknn"}


def config(users: int, ticks: int, out: Path) -> dict:
    return {
        "seed": 1,
        "data": {"synthetic": {"users": users, "items": 3000}},
        "simulation": {"ticks": ticks},
        "output": {"dir": str(out), "overwrite": True},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain, ab_time, analysis = float("inf"), float("inf"), float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            for name, policy in ARMS.items():
                cfg = config(args.users, args.ticks, tmp / "plain" / name)
                cfg["policy"] = {"name": policy}
                simrec.run(cfg)
            plain = min(plain, time.perf_counter() - t)
            t = time.perf_counter()
            simrec.ab(
                config(args.users, args.ticks, tmp / "unused"),
                ARMS,
                out=tmp / "ab",
                n_resamples=args.bootstrap,
            )
            ab_time = min(ab_time, time.perf_counter() - t)
            t = time.perf_counter()
            from simrec.evaluation.ab import compare
            from simrec.evaluation.report import ab_report

            runs = {a: [tmp / "ab" / a / "rep-0"] for a in ARMS}
            table = compare(runs, "pop", n_resamples=args.bootstrap)
            ab_report(tmp / "ab", table, runs, "pop")
            analysis = min(analysis, time.perf_counter() - t)
    print(f"{args.users:,} users x {args.ticks} ticks, 3 arms, {args.bootstrap:,} resamples")
    print(f"  three plain simrec runs      {plain:8.2f} s")
    print(f"  simrec.ab (3 arms)           {ab_time:8.2f} s")
    print(f"  of which analysis + report   {analysis:8.2f} s")
    print(f"  A/B overhead                 {ab_time / plain - 1:+8.1%}   (target <= +15%)")


if __name__ == "__main__":
    main()
