"""Throughput and memory of the simulator with the statistical brain.

For each population size, on the synthetic world (3,000 items, 20 seed interactions per user,
``popular`` policy), prints logged impressions per second (simulation + Parquet writing; world
generation, calibration and model construction excluded), and in the same process two
baselines on the same work:

* per-agent: the classic Mesa idiom, each agent deciding alone in ``step()``
  (``model.agents.shuffle_do("step")``); it writes byte-identical events, so the work is equal;
* parquet-only: writing the very same rows with pyarrow alone (same writer options and row
  groups).

Every timing is the best of ``--repeats`` runs (this machine is shared and noisy). Then the peak
memory (max RSS) of a whole ``simrec.run`` at 1,000,000 users, in a child process.

    python benchmarks/bench_sim.py [--sizes 10000 100000] [--ticks 5] [--repeats 5] [--million]
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

from simrec.agents.brains.utility import UtilityBrain
from simrec.config import SimulationConfig, SyntheticWorldConfig, UtilityBrainConfig
from simrec.data import make_world
from simrec.environments import PopularPolicy
from simrec.rng import Streams
from simrec.simulator import SimulationModel
from simrec.simulator.recorder import EventRecorder, writer_options

ROW_GROUP = 131072


def prepare(users: int, seed: int = 1):
    """World, calibrated brain, personas and a fitted policy (not timed)."""
    data = make_world(SyntheticWorldConfig(users=users, items=3000, interactions_per_user=20), seed)
    brain = UtilityBrain(UtilityBrainConfig(), seed=seed)
    personas = brain.fit(data)
    brain.bind(personas, Streams(seed))
    policy = PopularPolicy()
    policy.fit(data.interactions.to_arrow(), data.catalog)
    return data, brain, personas, policy


def simulate(prep, ticks: int, out: Path, per_agent: bool = False) -> tuple[int, float]:
    """Run ``ticks`` ticks writing events under ``out``; (impressions, seconds)."""
    data, brain, personas, policy = prep
    rec = EventRecorder(
        out,
        run_id="bench",
        policy=policy.name,
        item_ids=data.catalog.item_ids,
        row_group_size=ROW_GROUP,
        compression_level=None,
    )
    model = SimulationModel(
        data=data,
        personas=personas,
        brain=brain,
        policy=policy,
        sim=SimulationConfig(ticks=ticks),
        seed=1,
        recorder=rec,
        per_agent=per_agent,
    )
    t = time.perf_counter()
    try:
        for _ in range(ticks):
            model.step()
        rec.close_part()
    finally:
        rec.abort()
    return model.totals["impressions"], time.perf_counter() - t


def parquet_only(events_dir: Path, out: Path) -> float:
    """Seconds to write the same rows with pyarrow alone."""
    table = pq.read_table(events_dir)
    t = time.perf_counter()
    with pq.ParquetWriter(out, table.schema, **writer_options()) as w:
        w.write_table(table, row_group_size=ROW_GROUP)
    return time.perf_counter() - t


def best(fn, repeats: int):
    results = [fn(i) for i in range(repeats)]
    return min(results, key=lambda r: r[-1] if isinstance(r, tuple) else r)


def bench_size(users: int, ticks: int, repeats: int, per_agent_ticks: int, tmp: Path) -> dict:
    prep = prepare(users)
    n, sim_s = best(lambda i: simulate(prep, ticks, tmp / f"s{users}-{i}"), repeats)
    pq_s = best(lambda i: parquet_only(tmp / f"s{users}-0", tmp / f"p{users}-{i}.parquet"), repeats)
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
        n_b, t_b = best(lambda i: simulate(prep, per_agent_ticks, tmp / f"b{users}-{i}"), repeats)
        n_a, t_a = simulate(prep, per_agent_ticks, tmp / f"a{users}", per_agent=True)
        assert n_a == n_b, "the per-agent idiom must do the same work"
        row.update(
            per_agent_impressions_per_s=n_a / t_a,
            batched_same_work_impressions_per_s=n_b / t_b,
            speedup_vs_per_agent=t_a / t_b,
        )
    return row


def million(ticks: int) -> dict:
    """One whole ``simrec.run`` (world, calibration, simulation, writing) at 1M users, in a
    child process so its peak RSS is its own."""
    code = (
        "import json, resource, sys, tempfile, time, simrec\n"
        "t = time.perf_counter()\n"
        "cfg = {'seed': 1, 'data': {'synthetic': {'users': 1_000_000, 'items': 3000,"
        " 'interactions_per_user': 20}}, 'simulation': {'ticks': int(sys.argv[1])},"
        " 'output': {'dir': tempfile.mkdtemp() + '/m'}}\n"
        "r = simrec.run(cfg)\n"
        "tm = r.manifest['timings']\n"
        "print(json.dumps({'impressions': r.counts['impressions'], 'world_s': tm['load_s'],"
        " 'calibration_s': tm['fit_s'], 'simulate_s': tm['simulate_s'],"
        " 'total_s': time.perf_counter() - t,"
        " 'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ticks)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ticks", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--per-agent-ticks", type=int, default=2)
    ap.add_argument("--million", action="store_true", help="also measure a 1M-user run's memory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for users in args.sizes:
            pa_ticks = args.per_agent_ticks if users <= 10_000 else 0
            row = bench_size(users, args.ticks, args.repeats, pa_ticks, Path(d))
            print(f"\n== {users:,} users, {row['ticks']} ticks (best of {args.repeats}) ==")
            print(f"  impressions logged          {row['impressions']:>14,}")
            print(f"  simulate + write            {row['simulate_s']:>14.3f} s")
            print(
                f"  impressions/s               {row['impressions_per_s']:>14,.0f}   (target >= 1,000,000 at 100k users)"
            )
            print(f"  parquet-only write          {row['parquet_only_s']:>14.3f} s")
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
        print("\n== 1,000,000 users, whole run, 2 ticks (child process) ==")
        for k, v in m.items():
            print(f"  {k:<26}{v:>14,.2f}")
        print("  (target: peak RSS <= 4 GB)")
    print(
        f"\nbench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB"
    )


if __name__ == "__main__":
    main()
