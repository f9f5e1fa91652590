"""Sim-to-real: does an offline A/B test calibrated on a world's logs rank policies as that
world's own users do?

For each true world of ``alien_worlds`` (behaviour unlike simrec's model: nested logit with
satiation and session budgets; eras and hand-written attributes with strong position bias;
friends' influence), the script writes the world's organic log in MovieLens-100k format and
measures the true engagement (watches per user over ``--days``) of every policy inside the
world: the same policy implementations, fitted on the same log, serving the world's users,
averaged over ``--truth-seeds`` draws of the world's arrivals and responses (it prints how far
one draw's order is from another's). It then calibrates simrec on the log alone, runs
``simrec.evaluation.ab`` with every policy as an arm for the same number of ticks, and prints
Kendall's tau between simulated and true watches per user, per world, for each brain variant
given (``--variants exposure=0,...``), with the pairs of policies each side orders beyond its
own noise and whether simrec agrees with the truth on those. The A/B also runs every arm at
the other reading of ``brain.exposure`` (0 against the default 1): the script prints that
reading's tau, and how often the truth agrees with the orders that hold at both readings
against those that depend on the reading (the A/B's ``order_depends_on_exposure_with``).
It also prints the tau of each
policy's held-out Recall@20 on the log (each user's latest 20% held out) against the truth:
how well an offline evaluation of the log alone ranks the policies, the yardstick the
fidelity report uses on real data.

    python benchmarks/bench_sim2real.py [--users 800] [--items 1200] [--days 10]
        [--worlds nested-logit,era-attribute,friends] [--variants "default"] [--seed 0]
        [--truth-seeds 10] [--replicates 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from alien_worlds import WORLDS
from scipy import stats

POLICIES = ("random", "popular", "itemknn", "als", "bpr", "genre")


def true_engagement(world, data, days: int, seeds: int) -> dict[str, np.ndarray]:
    """Each policy's true watches per user inside ``world``, once per world seed 0 ..
    ``seeds`` - 1 (the draws of arrivals and responses; every policy sees the same ones):
    policy -> (seeds,). Their mean is the truth the simulation is held against."""
    from simrec.data.agent_log import agent_log
    from simrec.environments.registry import make_policy

    out = {}
    log = agent_log(data, np.arange(data.interactions.n_users))
    for name in POLICIES:
        policy = make_policy(name, {}, None)
        policy.fit(log, data.catalog)
        out[name] = np.array([world.true_engagement(policy, days, seed=s) for s in range(seeds)])
    return out


def truth_agreement(per_seed: dict[str, np.ndarray]) -> float:
    """The mean Kendall tau between the policy orders of two single world seeds: how far the
    order of one seed's truth is from another's (1: the truth's order does not depend on its
    draws). The mean over seeds is less noisy than any one of them."""
    runs = np.array(list(per_seed.values())).T  # (seeds, policies)
    taus = [
        stats.kendalltau(runs[a], runs[b]).statistic
        for a in range(len(runs))
        for b in range(a + 1, len(runs))
    ]
    return float(np.mean(taus)) if taus else float("nan")


def offline_recall(data, holdout: float = 0.2) -> dict[str, float]:
    """Each policy's Recall@20 on the world's log with each user's latest ``holdout`` held out
    (fitted on the rest): what an offline evaluation of the log alone says, the yardstick the
    fidelity report holds simulated engagement against on real data."""
    from simrec.evaluation.fidelity_report import policy_offline_metrics, temporal_split

    split = temporal_split(data, holdout)
    return {name: policy_offline_metrics(name, split)["recall@20"] for name in POLICIES}


@dataclass
class Simulated:
    """What simrec's A/B says of the policies: watches per agent under the config's
    ``brain.exposure`` (over every replicate), the policies whose order with each the resamples
    cannot tell (``rank_unresolved_with``), watches per agent under each other exposure
    reading, and the policies whose order with each differs between the readings
    (``order_depends_on_exposure_with``)."""

    watches: dict[str, float]
    loose: dict[str, set[str]]
    readings: dict[float, dict[str, float]]
    depends: dict[str, set[str]]


def simulated(
    path: Path,
    days: int,
    settings: dict,
    out: Path,
    agents: int,
    seed: int = 0,
    replicates: int = 1,
) -> Simulated:
    """simrec's A/B of every policy, calibrated on the world's log (``path``)."""
    import pandas as pd

    from simrec.evaluation import ab

    cfg = {
        "seed": seed,
        "data": {"format": "movielens-100k", "path": str(path)},
        "simulation": {"ticks": days, **settings.get("simulation", {})},
        "population": {"users": agents},
        "brain": settings.get("brain", {}),
    }
    table = ab(cfg, {p: p for p in POLICIES}, out=out, replicates=replicates, n_resamples=1000)
    rows = table[table.metric == "consumed_per_user"].set_index("arm")

    def arms(column: str) -> dict[str, set[str]]:
        return {p: set(filter(None, rows.loc[p, column].split(","))) for p in POLICIES}

    by = pd.read_parquet(out / "ab_exposure.parquet").query("metric == 'consumed_per_user'")
    configured = float(by.exposure.iloc[0])
    readings = {
        float(e): dict(zip(g.arm, g.value.astype(float), strict=True))
        for e, g in by.groupby("exposure", sort=False)
        if e != configured
    }
    return Simulated(
        {p: float(rows.loc[p, "value"]) for p in POLICIES},
        arms("rank_unresolved_with"),
        readings,
        arms("order_depends_on_exposure_with"),
    )


def exposure_pairs(truth: dict[str, float], sim: Simulated) -> tuple[int, int, int, int, int]:
    """The pairs of policies whose simulated order holds under every exposure reading and how
    many of them the truth orders the same way; the pairs whose order depends on the reading,
    how many the config's reading orders as the truth does, and how many every other reading
    does. -> (stable, stable agreeing, dependent, agreeing at the config's reading, agreeing at
    the others)."""
    names = list(truth)
    counts = np.zeros(5, int)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            t = np.sign(truth[a] - truth[b])
            here = np.sign(sim.watches[a] - sim.watches[b]) == t
            if b not in sim.depends[a]:
                counts[:2] += (1, here)
            else:
                others = all(np.sign(r[a] - r[b]) == t for r in sim.readings.values())
                counts[2:] += (1, here, others)
    return tuple(int(c) for c in counts)


def firm_pairs(per_seed: dict[str, np.ndarray], sim: dict[str, float], loose: dict) -> str:
    """Which pairs of policies each side orders beyond its own noise, and whether simrec agrees
    with the truth on those both order firmly: the truth's order of a pair is firm when the
    mean of its per-seed differences is at least a 95% t-interval away from 0 (every policy
    meets the same draws of a seed); simrec's when its A/B resolves it (at least 95% of the
    resamples of the agents keep it: ``rank_unresolved_with``). A swap of a pair either side
    cannot resolve is noise, not a fault."""
    names = list(per_seed)
    a, b = np.triu_indices(len(names), 1)
    runs = np.array([per_seed[p] for p in names]).T  # (seeds, policies)
    diff = runs[:, a] - runs[:, b]
    se = diff.std(axis=0, ddof=1) / np.sqrt(len(runs))
    truth_firm = np.abs(diff.mean(axis=0)) > stats.t.ppf(0.975, len(runs) - 1) * se
    sim_firm = np.array([names[j] not in loose[names[i]] for i, j in zip(a, b, strict=True)])
    both = truth_firm & sim_firm
    agree = np.array(
        [np.sign(sim[names[i]] - sim[names[j]]) for i, j in zip(a, b, strict=True)]
    ) == np.sign(diff.mean(axis=0))
    wrong = [
        f"{names[i]}|{names[j]}"
        for i, j, ok in zip(a[both], b[both], agree[both], strict=True)
        if not ok
    ]
    return (
        f"firm pairs: truth {truth_firm.sum()}/{a.size}, simrec {sim_firm.sum()}/{a.size}; "
        f"of the {both.sum()} both order firmly simrec agrees on {agree[both].sum()}"
        + (f" (not: {', '.join(wrong)})" if wrong else "")
    )


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
    ap.add_argument(
        "--truth-seeds",
        type=int,
        default=10,
        help="world seeds each policy's true engagement is measured with (their mean is the "
        "truth): a single seed's order of close policies is noise",
    )
    ap.add_argument(
        "--replicates",
        type=int,
        default=1,
        help="simrec's A/B replicates per arm (simulated engagement is their mean)",
    )
    ap.add_argument("--worlds", default=",".join(WORLDS))
    ap.add_argument(
        "--seed", type=int, default=0, help="simrec's seed (calibration and simulation)"
    )
    ap.add_argument(
        "--variants",
        default="default",
        help="settings to compare, ';'-separated, each 'default' or KEY=VALUE[,KEY=VALUE] "
        "(KEY: a brain field, or SECTION.FIELD such as simulation.max_pages)",
    )
    args = ap.parse_args()
    from simrec.data import load

    summary = {v: [] for v in args.variants.split(";")}
    robust = {v: np.zeros(5, int) for v in summary}
    offline_taus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sim2real-") as tmp:
        for wname in args.worlds.split(","):
            t0 = time.perf_counter()
            world = WORLDS[wname](n_users=args.users, n_items=args.items)
            path = world.write_movielens(Path(tmp) / wname)
            data = load("movielens-100k", path)
            per_seed = true_engagement(world, data, args.days, args.truth_seeds)
            truth = {p: float(v.mean()) for p, v in per_seed.items()}
            t_world = time.perf_counter() - t0
            log = data.interactions
            print(
                f"\n== {wname}: {log.n_users} users, {data.catalog.n_items} items, "
                f"{len(log):,} interactions; world + truth {t_world:.1f} s"
            )
            print(
                f"   true watches/user (mean of {args.truth_seeds} world seeds, their sd): "
                + ", ".join(f"{p} {truth[p]:.2f} ({per_seed[p].std():.2f})" for p in truth)
            )
            print(
                f"   one world seed's order against another's: mean tau "
                f"{truth_agreement(per_seed):+.3f}"
            )
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
                res = simulated(
                    path, args.days, _settings(variant), out, agents, args.seed, args.replicates
                )
                names = list(truth)
                tau = stats.kendalltau([res.watches[p] for p in names], [truth[p] for p in names])
                summary[variant].append(tau.statistic)
                print(
                    f"   {variant:<24} tau {tau.statistic:+.3f}  "
                    f"({time.perf_counter() - t0:.1f} s)  sim: "
                    + ", ".join(f"{p} {res.watches[p]:.2f}" for p in names)
                )
                print(f"   {'':<24} {firm_pairs(per_seed, res.watches, res.loose)}")
                for e, w in res.readings.items():
                    tau_e = stats.kendalltau([w[p] for p in names], [truth[p] for p in names])
                    print(
                        f"   {'':<24} at exposure {e:g}: tau {tau_e.statistic:+.3f}  sim: "
                        + ", ".join(f"{p} {w[p]:.2f}" for p in names)
                    )
                stable, agree, dep, here, there = exposure_pairs(truth, res)
                robust[variant] += np.array([stable, agree, dep, here, there])
                print(
                    f"   {'':<24} orders that hold at every exposure reading: {stable} of "
                    f"{stable + dep}, the truth agrees on {agree}; of the {dep} that depend on "
                    f"it, this reading orders {here} as the truth does, the other(s) {there}"
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
    print("\nOrders that hold at every exposure reading, over the worlds:")
    for variant, (stable, agree, dep, here, there) in robust.items():
        print(
            f"  {variant:<24} {stable} pairs, the truth agrees on {agree}; {dep} depend on "
            f"it: this reading agrees on {here}, the other(s) on {there}"
        )


if __name__ == "__main__":
    main()
