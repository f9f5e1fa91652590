"""Augmentation value: genre recovery and downstream lift.

(a) Hides 30% of the item genres of a MovieLens-1M-size synthetic world (or of MovieLens files
with --data), enriches the catalog from the interactions, and scores the recovered genres of
the hidden items against the truth, beside guessing the most common genre.
(b) Trains ALS, EASE and item-kNN (each tuned on the subsample's inner split) on a sparse
subsample (20% of each user's earlier interactions) alone, with the simulator's pseudo-positives
(1 and 3 per user, from itemknn's top 50, and from the kg policy's when the data has a knowledge
graph), and with a synthetic log as large as the subsample (the population calibrated on the
subsample, organic exposure, a year), and reports Recall@20 / NDCG@20 on each user's latest 20%
with each lift's paired bootstrap interval, overall and for cold users. Prints the wall times.
``--data ml-100k`` runs it on the built-in real MovieLens-100k.

    python benchmarks/bench_augment.py [--data DIR --format movielens-1m] [--share 0.3]

With --kg, instead: genre recovery from the interactions, the knowledge graph and both, over
all hidden items and over the cold ones (at most --cold interactions), on real MovieLens-100k
(RecBole's graph) and on a synthetic world with a right graph (a creator per taste dimension
and a language per item, no genres), each with the graph's alignment check.

    python benchmarks/bench_augment.py --kg [--cold 10]

With --cold-items, instead: cold-item Recall@20 of the content-based genre policy on the
catalog's text against the enriched descriptions (:func:`simrec.augment.cold_item_lift`), on real
MovieLens-100k and on a synthetic world without and with a right knowledge graph.

    python benchmarks/bench_augment.py --cold-items
"""

from __future__ import annotations

import argparse
import time

from simrec.augment import downstream_lift, genre_recovery
from simrec.build import load_data
from simrec.config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="a MovieLens directory (default: the synthetic world)")
    ap.add_argument("--format", default="movielens-1m")
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--kg", action="store_true", help="knowledge-graph genre recovery instead")
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--cold-items", action="store_true", help="cold-item descriptions instead")
    args = ap.parse_args()
    if args.kg:
        knowledge_recovery(args.share, args.cold)
        return
    if args.cold_items:
        cold_items()
        return
    if args.data:
        fmt = "recbole" if args.data == "ml-100k" else args.format
        raw = {"data": {"format": fmt, "path": args.data}}
    else:
        world = {"users": 6040, "items": 3706, "interactions_per_user": 165}
        raw = {"seed": 0, "data": {"synthetic": world}}
    cfg = RunConfig.model_validate(raw)
    data = load_data(cfg)
    print(f"{data.source}: {data.interactions.n_users} users, {data.catalog.n_items} items")
    for threshold in (0.3, 0.5):
        t = time.perf_counter()
        r = genre_recovery(data, share=args.share, genre_threshold=threshold)
        wall = time.perf_counter() - t
        figures = "  ".join(f"{k} {v:.3f}" for k, v in r.items() if k != "hidden_items")
        print(f"  threshold {threshold}: {int(r['hidden_items'])} hidden, {figures}, {wall:.1f} s")
    bases = ("itemknn", "kg") if data.catalog.knowledge is not None else ("itemknn",)
    population_ranking(data, cfg)
    for model in ("als", "ease", "itemknn"):
        t = time.perf_counter()
        r = downstream_lift(data, cfg, policy=model, positives=0)
        print(f"  {model} on the subsample alone ({int(r['train_interactions'])} rows): ", end="")
        print(f"Recall@20 {r['recall@20']:.4f}, NDCG@20 {r['ndcg@20']:.4f}")
        _arm(r, "synthetic", f"  + synthetic log ({int(r['synthetic_interactions'])} rows)", t)
        for base in bases:
            for positives in (1, 3):
                t = time.perf_counter()
                r = downstream_lift(
                    data, cfg, policy=model, positives=positives, base=base, volume=None
                )
                _arm(r, "pseudo", f"  + {positives} pseudo-positive(s) per user from {base}", t)


def population_ranking(data, cfg) -> None:
    """Recall@20 on the subsample's held-out items of the population calibrated on it, ranking
    by its choice probability (watch logit + brain.exposure x log(1 + interactions))."""
    import numpy as np

    from simrec.augment import subsample
    from simrec.build import calibrate
    from simrec.environments.base import ScoreRanker
    from simrec.evaluation.fidelity_report import Split, temporal_split
    from simrec.evaluation.fidelity_report.baselines import fitted
    from simrec.evaluation.fidelity_report.ranking import per_user_metrics

    split = temporal_split(data, 0.2)
    sparse = subsample(split.train, 0.2, cfg.seed)
    brain, _ = calibrate(cfg, sparse, users=None)
    n = sparse.catalog.n_items
    exposure = cfg.brain.exposure * np.log1p(sparse.catalog.popularity)

    def rows(u: np.ndarray) -> np.ndarray:
        return brain.watch_logit(u, np.tile(np.arange(n), (u.size, 1))) + exposure

    s = Split(sparse, split.test)
    own = per_user_metrics(ScoreRanker(rows, "population"), s)["recall"].mean()
    pop = per_user_metrics(fitted("popular", {}, sparse), s)["recall"].mean()
    print(
        "  the population calibrated on the subsample, ranking by its choice probability: "
        f"Recall@20 {own:.4f} (popularity {pop:.4f})"
    )


def cold_items() -> None:
    from simrec.augment import cold_item_lift
    from simrec.config import SyntheticWorldConfig
    from simrec.data import load, make_world
    from simrec.testing.recommender import contract_knowledge

    world = make_world(SyntheticWorldConfig(users=1000, items=1000), 0)
    world.catalog.knowledge = contract_knowledge(world, ("made_by", "language"))
    for label, data, kg in (
        ("MovieLens-100k", load("recbole", "ml-100k"), None),
        ("synthetic world, no graph", world, False),
        ("synthetic world, a right graph", world, True),
    ):
        t = time.perf_counter()
        r = cold_item_lift(data, kg=kg)
        print(
            f"{label}: {int(r['cold_items'])} cold items, {int(r['users'])} users; Recall@20 "
            f"random {r['random_recall@20']:.3f}, catalog text {r['raw_recall@20']:.3f}, "
            f"enriched descriptions {r['enriched_recall@20']:.3f} ({_lift(r, 'recall')}; graph "
            f"facts in them: {'yes' if r['described_with_kg'] else 'no'}), "
            f"{time.perf_counter() - t:.1f} s"
        )


def _arm(r: dict, arm: str, label: str, started: float) -> None:
    print(
        f"{label}: Recall@20 {r[arm + '_recall@20']:.4f} ({_lift(r, arm + '_recall')}), "
        f"NDCG@20 {r[arm + '_ndcg@20']:.4f} ({_lift(r, arm + '_ndcg')}); cold users "
        f"({int(r['cold_users'])}): Recall@20 {_lift(r, 'cold_' + arm + '_recall')}; "
        f"{time.perf_counter() - started:.1f} s"
    )


def _lift(r: dict, key: str) -> str:
    low, high = r[key + "_low"], r[key + "_high"]
    interval = "n/a" if low != low or high != high else f"{low:+.1%}, {high:+.1%}"
    return f"{r[key + '_lift']:+.1%} [{interval}]"


def knowledge_recovery(share: float, cold: int) -> None:
    import numpy as np

    from simrec.augment.knowledge import alignment_check
    from simrec.config import SyntheticWorldConfig
    from simrec.data import load, make_world
    from simrec.testing.recommender import contract_knowledge

    synthetic = make_world(SyntheticWorldConfig(users=1000, items=1000), 0)
    synthetic.catalog.knowledge = contract_knowledge(synthetic, ("made_by", "language"))
    for data in (load("recbole", "ml-100k"), synthetic):
        check = alignment_check(data, np.arange(len(data.interactions)), warn=False)
        print(
            f"{data.source}: {data.catalog.n_items} items, "
            f"{int(data.catalog.knowledge.linked.sum())} linked; alignment z: genres "
            f"{check['genres']['z']:.1f}, audiences {check['audience']['z']:.1f}"
        )
        for items in (None, cold):
            for source in ("interactions", "kg", "both"):
                t = time.perf_counter()
                r = genre_recovery(data, share=share, genre_from=source, cold=items)
                which = "all hidden" if items is None else f"<= {items} interactions"
                print(
                    f"  {which:18s} {source:12s} {int(r['hidden_items']):4d} items  coverage "
                    f"{r['coverage']:.3f}  precision {r['precision']:.3f}  recall "
                    f"{r['recall']:.3f}  top-1 {r['top1_accuracy']:.3f} (most common genre "
                    f"{r['top1_accuracy_most_common_genre']:.3f})  {time.perf_counter() - t:.1f} s"
                )


if __name__ == "__main__":
    main()
