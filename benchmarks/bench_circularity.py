"""Does the brain's calibration flatter the policies of its own model family?

On synthetic worlds the fidelity report also simulates every policy with the world's own
generating utility as the taste model (the ideal simulator, same protocol). A policy's
``rank_shift_vs_oracle`` (its rank under the ideal simulator minus its rank under the brain;
positive: the brain flatters it) is then what the brain's taste model alone changes. This
script sweeps brain calibrations over worlds and seeds and prints, per run, the Kendall tau of
the simulated order against Recall@20 and against the ideal simulator, the rank shifts of the
matrix-factorisation policies (als, bpr), their sum (the family's net shift: positive when the
brain lifts the family as a whole, zero when it only swaps the two) and the shift of popular,
and the ROC AUC at 1:1; then a summary per calibration.

    python benchmarks/bench_circularity.py [--users 1000] [--items 1500] [--per-user 60]
        [--ticks 10] [--seeds 0,1,2] [--variants lda:in-sample,svd:in-sample,svd:cross-fit]
        [--exposure E]

A variant is ``taste_model:click_calibration``, with ``:N`` appended for a fixed
``brain.taste_dim`` of N (without it, the default ``auto``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simrec.evaluation.fidelity_report import fidelity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--per-user", type=float, default=60.0)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="lda:in-sample,svd:in-sample,svd:cross-fit")
    ap.add_argument("--exposure", type=float, help="brain.exposure (default: the config's)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    # taste:calibration, or taste:calibration:dims for a fixed brain.taste_dim (else auto)
    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    print(
        f"{args.users} users x {args.items} items, {args.per_user:g} per user, {args.ticks} ticks"
    )
    head = "taste:calibration      seed  wall   tau R@20  tau ideal   als  bpr  MF net  popular  ROC AUC"
    print(head)
    summary: dict[tuple, list] = {v: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            taste, calibration, *dims = variant
            cfg = {
                "seed": seed,
                "data": {
                    "synthetic": {
                        "users": args.users,
                        "items": args.items,
                        "interactions_per_user": args.per_user,
                    }
                },
                "simulation": {"ticks": args.ticks},
                "brain": {"taste_model": taste, "click_calibration": calibration},
            }
            if dims:
                cfg["brain"]["taste_dim"] = int(dims[0])
            if args.exposure is not None:
                cfg["brain"]["exposure"] = args.exposure
            t = time.perf_counter()
            table = fidelity(cfg)
            wall = time.perf_counter() - t
            v = table.set_index(["section", "setting", "metric", "source"]).value
            tau_real = v[("ranking", "recall@20", "kendall_tau", "simrec")]
            tau_ideal = v[("ranking", "oracle_simulation", "kendall_tau", "simrec")]
            shift = {
                p: int(v[("ranking", p, "rank_shift_vs_oracle", "simrec")])
                for p in ("als", "bpr", "popular")
            }
            auc = v[("discrimination", "1:1", "roc_auc", "simrec")]
            summary[variant].append((tau_real, tau_ideal, shift, auc, wall))
            print(
                f"{':'.join(variant):<22} {seed:>4} {wall:>5.0f}s {tau_real:>9.3f} "
                f"{tau_ideal:>10.3f} {shift['als']:>+5d} {shift['bpr']:>+4d} "
                f"{shift['als'] + shift['bpr']:>+7d} {shift['popular']:>+8d} {auc:>8.3f}"
            )
    print("\nsummary: mean tau vs Recall@20 and vs the ideal simulator; runs where the MF family")
    print("is lifted (als + bpr rank shift vs the ideal > 0) and where als or bpr alone is;")
    print("mean ROC AUC; mean wall time")
    for variant, runs in summary.items():
        tr, ti, shifts, auc, wall = zip(*runs, strict=True)
        lifted = sum(s["als"] + s["bpr"] > 0 for s in shifts)
        either = sum(s["als"] > 0 or s["bpr"] > 0 for s in shifts)
        print(
            f"  {':'.join(variant):<22} tau R@20 {np.mean(tr):.3f}  tau ideal "
            f"{np.mean(ti):.3f}  MF lifted {lifted}/{len(runs)}  als or bpr {either}/{len(runs)}"
            f"  AUC {np.mean(auc):.3f}  {np.mean(wall):.0f} s"
        )


if __name__ == "__main__":
    main()
