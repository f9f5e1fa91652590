"""Throughput and memory of the simulator with the statistical brain.

Prints, for each population size: logged impressions per second (simulation + Parquet
writing, calibration excluded), and in the same process two baselines on the same work:

* per-agent: the classic Mesa idiom, each agent deciding alone in ``step()``
  (``model.agents.shuffle_do("step")``); it yields byte-identical events, so the work is equal;
* parquet-only: writing the very same rows (same row groups, zstd) with pyarrow alone.

Then the peak memory (max RSS) of a whole run at 1,000,000 users, in a child process.

    python benchmarks/bench_sim.py [--sizes 10000 100000] [--ticks 5] [--million]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import simrec
from simrec.simulator.recorder import writer_options


def _config(users: int, ticks: int, out: Path, items: int = 3000) -> dict:
    return {
        "seed": 1,
        "data": {"synthetic": {"users": users, "items": items, "interactions_per_user": 20}},
        "simulation": {"ticks": ticks, "checkpoint_every": ticks},
        "output": {"dir": str(out)},
    }


def _parquet_only(run_dir: Path, row_group_size: int) -> float:
    table = pq.read_table(run_dir / "events")
    out = run_dir / "parquet_only.parquet"
    t = time.perf_counter()
    with pq.ParquetWriter(out, table.schema, **writer_options()) as w:
        for start in range(0, table.num_rows, row_group_size):
            w.write_table(table.slice(start, row_group_size), row_group_size=row_group_size)
    return time.perf_counter() - t


def bench_size(users: int, ticks: int, tmp: Path, per_agent_ticks: int) -> dict:
    res = simrec.run(_config(users, ticks, tmp / f"b{users}"))
    sim_s = res.manifest["timings"]["simulate_s"]
    n = res.counts["impressions"]
    pq_s = _parquet_only(res.run_dir, 131072)
    row = {
        "users": users,
        "ticks": ticks,
        "impressions": n,
        "simulate_s": sim_s,
        "impressions_per_s": n / sim_s,
        "parquet_only_s": pq_s,
        "total_over_parquet": sim_s / pq_s,
    }
    if per_agent_ticks:
        small = simrec.run(_config(users, per_agent_ticks, tmp / f"v{users}"))
        slow = simrec.run(_config(users, per_agent_ticks, tmp / f"p{users}"), per_agent=True)
        row["per_agent_impressions_per_s"] = (
            slow.counts["impressions"] / slow.manifest["timings"]["simulate_s"]
        )
        row["batched_same_work_impressions_per_s"] = (
            small.counts["impressions"] / small.manifest["timings"]["simulate_s"]
        )
        row["speedup_vs_per_agent"] = (
            row["batched_same_work_impressions_per_s"] / row["per_agent_impressions_per_s"]
        )
    return row


def million(ticks: int) -> dict:
    """One whole run (world, calibration, simulation, writing) at 1M users in a child process."""
    code = (
        "import json, resource, sys, tempfile, time, simrec\n"
        "from benchmarks.bench_sim import _config\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        "r = simrec.run(_config(1_000_000, int(sys.argv[1]), Path(tempfile.mkdtemp()) / 'm'))\n"
        "print(json.dumps({'impressions': r.counts['impressions'], 'total_s': time.perf_counter() - t,"
        " 'simulate_s': r.manifest['timings']['simulate_s'], 'fit_s': r.manifest['timings']['fit_s'],"
        " 'load_s': r.manifest['timings']['load_s'],"
        " 'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(ticks)],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ticks", type=int, default=5)
    ap.add_argument("--per-agent-ticks", type=int, default=2)
    ap.add_argument("--million", action="store_true", help="also measure a 1M-user run's memory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for users in args.sizes:
            row = bench_size(
                users, args.ticks, Path(d), args.per_agent_ticks if users <= 10_000 else 0
            )
            print(f"\n== {users:,} users, {row['ticks']} ticks ==")
            print(f"  impressions logged          {row['impressions']:>14,}")
            print(f"  simulate + write            {row['simulate_s']:>14.2f} s")
            print(
                f"  impressions/s               {row['impressions_per_s']:>14,.0f}   (target >= 1,000,000 at 100k users)"
            )
            print(f"  parquet-only write          {row['parquet_only_s']:>14.2f} s")
            print(
                f"  total / parquet-only        {row['total_over_parquet']:>14.2f} x (target <= 3)"
            )
            if "speedup_vs_per_agent" in row:
                print(f"  per-agent idiom imp/s       {row['per_agent_impressions_per_s']:>14,.0f}")
                print(
                    f"  batched imp/s (same work)   {row['batched_same_work_impressions_per_s']:>14,.0f}"
                )
                print(
                    f"  speedup vs per-agent        {row['speedup_vs_per_agent']:>14.1f} x (target >= 20)"
                )
    if args.million:
        m = million(2)
        print("\n== 1,000,000 users, 2 ticks (child process) ==")
        for k, v in m.items():
            print(f"  {k:<26}{v:>14,.2f}")
        print("  (target: peak RSS <= 4 GB)")
    print(
        f"\nbench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB"
    )


if __name__ == "__main__":
    main()
