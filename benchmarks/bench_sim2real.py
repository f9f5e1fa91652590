"""Sim-to-real: does an offline A/B test calibrated on a world's logs rank policies as that
world's own users do?

For each true world of ``alien_worlds`` (behaviour unlike simrec's model: nested logit with
satiation and session budgets; eras and hand-written attributes with strong position bias;
friends' influence), the script writes the world's organic log in MovieLens-100k format,
measures the true engagement (watches per user over ``--days``) of every policy inside the
world (the same policy implementations, fitted on the same log, serving the world's users),
then calibrates simrec on the log alone, runs ``simrec.evaluation.ab`` with every policy as an
arm for the same number of ticks, and prints Kendall's tau between simulated and true watches
per user, per world, for each brain variant given (``--variants exposure=0,...``). It also
prints the tau of each policy's held-out Recall@20 on the log (each user's latest 20% held
out) against the truth: how well an offline evaluation of the log alone ranks the policies,
the yardstick the fidelity report uses on real data.

    python benchmarks/bench_sim2real.py [--users 800] [--items 1200] [--days 10]
        [--worlds nested-logit,era-attribute,friends] [--variants "default;exposure=0"] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from alien_worlds import WORLDS
from scipy import stats

POLICIES = ("random", "popular", "itemknn", "als", "bpr", "genre")


def true_engagement(world, data, days: int) -> dict[str, float]:
    from simrec.environments.registry import make_policy
    from simrec.simulator.model import agent_log

    out = {}
    log = agent_log(data, np.arange(data.interactions.n_users))
    for name in POLICIES:
        policy = make_policy(name, {}, None)
        policy.fit(log, data.catalog)
        out[name] = world.true_engagement(policy, days)
    return out


def offline_recall(data, holdout: float = 0.2) -> dict[str, float]:
    """Each policy's Recall@20 on the world's log with each user's latest ``holdout`` held out
    (fitted on the rest): what an offline evaluation of the log alone says, the yardstick the
    fidelity report holds simulated engagement against on real data."""
    from simrec.evaluation.fidelity_report import policy_offline_metrics, temporal_split

    split = temporal_split(data, holdout)
    return {name: policy_offline_metrics(name, split)["recall@20"] for name in POLICIES}


def simulated(
    path: Path, days: int, settings: dict, out: Path, agents: int, seed: int = 0
) -> dict[str, float]:
    import json

    from simrec.evaluation import ab

    cfg = {
        "seed": seed,
        "data": {"format": "movielens-100k", "path": str(path)},
        "simulation": {"ticks": days, **settings.get("simulation", {})},
        "population": {"users": agents},
        "brain": settings.get("brain", {}),
    }
    ab(cfg, {p: p for p in POLICIES}, out=out, n_resamples=200)
    res = {}
    for p in POLICIES:
        manifest = json.loads((out / p / "rep-0" / "manifest.json").read_text())
        res[p] = manifest["counts"]["clicks"] / manifest["counts"]["agents"]
    return res


def _settings(variant: str) -> dict:
    """'default' -> {}; 'exposure=0,simulation.max_pages=50' -> {'brain': {'exposure': 0},
    'simulation': {'max_pages': 50}} (a key without a section is the brain's)."""
    import yaml

    out: dict[str, dict] = {}
    if variant == "default":
        return out
    for kv in variant.split(","):
        key, value = kv.split("=", 1)
        section, _, name = key.strip().rpartition(".")
        out.setdefault(section or "brain", {})[name] = yaml.safe_load(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=800)
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument(
        "--agents-per-user",
        type=int,
        default=4,
        help="simulated agents per logged user (clones): less noise in the simulated order",
    )
    ap.add_argument("--worlds", default=",".join(WORLDS))
    ap.add_argument(
        "--seed", type=int, default=0, help="simrec's seed (calibration and simulation)"
    )
    ap.add_argument(
        "--variants",
        default="default;exposure=0",
        help="settings to compare, ';'-separated, each 'default' or KEY=VALUE[,KEY=VALUE] "
        "(KEY: a brain field, or SECTION.FIELD such as simulation.max_pages)",
    )
    args = ap.parse_args()
    from simrec.data import load

    summary = {v: [] for v in args.variants.split(";")}
    offline_taus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sim2real-") as tmp:
        for wname in args.worlds.split(","):
            t0 = time.perf_counter()
            world = WORLDS[wname](n_users=args.users, n_items=args.items)
            path = world.write_movielens(Path(tmp) / wname)
            data = load("movielens-100k", path)
            truth = true_engagement(world, data, args.days)
            t_world = time.perf_counter() - t0
            log = data.interactions
            print(
                f"\n== {wname}: {log.n_users} users, {data.catalog.n_items} items, "
                f"{len(log):,} interactions; world + truth {t_world:.1f} s"
            )
            print("   true watches/user: " + ", ".join(f"{p} {v:.2f}" for p, v in truth.items()))
            recall = offline_recall(data)
            names = list(truth)
            tau = stats.kendalltau([recall[p] for p in names], [truth[p] for p in names])
            offline_taus.append(tau.statistic)
            print(
                f"   {'held-out Recall@20':<24} tau {tau.statistic:+.3f}  (the log alone): "
                + ", ".join(f"{p} {recall[p]:.3f}" for p in names)
            )
            for variant in summary:
                t0 = time.perf_counter()
                out = Path(tmp) / f"{wname}-{len(summary[variant])}-{abs(hash(variant))}"
                agents = args.agents_per_user * log.n_users
                sim = simulated(path, args.days, _settings(variant), out, agents, args.seed)
                names = list(truth)
                tau = stats.kendalltau([sim[p] for p in names], [truth[p] for p in names])
                summary[variant].append(tau.statistic)
                print(
                    f"   {variant:<24} tau {tau.statistic:+.3f}  "
                    f"({time.perf_counter() - t0:.1f} s)  sim: "
                    + ", ".join(f"{p} {sim[p]:.2f}" for p in names)
                )
    print("\nKendall tau per world (goal >= 0.8 in every world):")
    print(
        f"  {'held-out Recall@20':<24} "
        + "  ".join(f"{t:+.3f}" for t in offline_taus)
        + f"   min {min(offline_taus):+.3f}  mean {np.mean(offline_taus):+.3f}"
    )
    for variant, taus in summary.items():
        print(
            f"  {variant:<24} "
            + "  ".join(f"{t:+.3f}" for t in taus)
            + f"   min {min(taus):+.3f}  mean {np.mean(taus):+.3f}"
        )


if __name__ == "__main__":
    main()
