"""The fidelity report at MovieLens-1M size on the synthetic world: wall time, peak memory,
and the figures against their targets.

    python benchmarks/bench_fidelity.py [--users 6040] [--items 3706] [--per-user 165]
                                        [--ticks 30] [--taste-model lda|svd]
                                        [--click-calibration in-sample|cross-fit] [--seed 0]
                                        [--out DIR]

On the synthetic world the report also simulates every policy with the world's own taste model
(the ideal simulator): "vs the ideal simulator" is what the brain's taste model alone changes.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import pandas as pd

from simrec.config import RunConfig
from simrec.evaluation.fidelity_report import fidelity, targets_met


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--per-user", type=float, default=165.0)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--taste-model", choices=("lda", "svd"), help="default: the config's (lda)")
    ap.add_argument(
        "--click-calibration",
        choices=("in-sample", "cross-fit"),
        help="default: the config's (in-sample)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="keep the report here (default: a temporary folder)")
    args = ap.parse_args()
    cfg = {
        "seed": args.seed,
        "data": {
            "synthetic": {
                "users": args.users,
                "items": args.items,
                "interactions_per_user": args.per_user,
            }
        },
        "simulation": {"ticks": args.ticks},
        "brain": {
            k: v
            for k, v in (
                ("taste_model", args.taste_model),
                ("click_calibration", args.click_calibration),
            )
            if v is not None
        },
        "output": {"overwrite": True},
    }
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        table = fidelity(cfg, out=args.out or tmp)
        wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    brain = RunConfig.model_validate(cfg).brain
    print(
        f"{args.users} users x {args.items} items, {args.ticks} ticks; brain taste "
        f"{brain.taste_model}, click calibration {brain.click_calibration}"
    )
    print(f"  wall time {wall:.1f} s, peak RSS {peak:.2f} GB")
    v = table.set_index(["section", "setting", "metric", "source"]).value
    rows = [
        ("ROC AUC 1:1", ("discrimination", "1:1", "roc_auc")),
        ("accuracy 1:1", ("discrimination", "1:1", "accuracy")),
        ("F1 1:9", ("discrimination", "1:9", "f1")),
        ("RMSE expected", ("rating", "held-out", "rmse_expected")),
        ("Wasserstein (share)", ("rating", "held-out", "wasserstein_normalised")),
        ("Kendall tau R@20", ("ranking", "recall@20", "kendall_tau")),
        ("  without its family", ("ranking", "recall@20", "kendall_tau_without_brain_family")),
        ("Kendall tau vs ideal", ("ranking", "oracle_simulation", "kendall_tau")),
    ]
    with pd.option_context("display.width", 120):
        for label, key in rows:
            base = {s: v.get((*key, s)) for s in ("oracle", "popularity", "item_mean")}
            extra = "".join(f"   {s} {x:.3f}" for s, x in base.items() if x is not None)
            print(f"  {label:<22}{v[(*key, 'simrec')]:.3f}{extra}")
        for metric, label in (("rank_shift", "Recall@20"), ("rank_shift_vs_oracle", "ideal")):
            shifts = table[(table.section == "ranking") & (table.metric == metric)]
            shift = dict(zip(shifts.setting, shifts.value.astype(int), strict=True))
            print(f"  rank shift ({label} rank - simulated rank):", shift)
        print(targets_met(table).to_string(index=False))


if __name__ == "__main__":
    main()
