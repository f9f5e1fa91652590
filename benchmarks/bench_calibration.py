"""What a user waits for: one whole `simrec run` (world, calibration, simulation, writing), cold
and again with the calibration read back from the cache (same bytes, checked), and the
calibration's dominant part, the LDA taste fit, against scikit-learn's LDA (the previous
implementation) on the same log in the same process.

    python benchmarks/bench_calibration.py [--users 100000] [--items 5000] [--ticks 10]
        [--million]     # also time the calibration of a 1,000,000-user world

Targets: the whole command at >= 500,000 impressions/s cold on 2 cores, >= 1,000,000 with a
warm calibration cache, and calibration for 1M users <= 60 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def whole_run(users: int, items: int, ticks: int) -> None:
    import hashlib
    import tempfile
    from pathlib import Path

    import simrec
    from simrec import cache

    with tempfile.TemporaryDirectory() as tmp:
        cache.configure(f"{tmp}/cache")
        walls, digests = {}, {}
        for label, target in (("cold", 500_000), ("warm cache", 1_000_000)):
            t0 = time.perf_counter()
            res = simrec.run(
                {
                    "data": {"synthetic": {"users": users, "items": items}},
                    "simulation": {"ticks": ticks},
                    "output": {"dir": f"{tmp}/run-{len(walls)}"},
                }
            )
            walls[label] = wall = time.perf_counter() - t0
            digests[label] = sorted(
                hashlib.sha256(p.read_bytes()).hexdigest()
                for p in Path(res.run_dir).rglob("*.parquet")
            )
            tm, n = res.manifest["timings"], res.counts["impressions"]
            parts = {k: tm[k] for k in ("load_s", "fit_s", "simulate_s", "write_s") if k in tm}
            how = res.manifest["brain"]["calibration_cache"]
            print(
                f"whole run ({label}: calibration cache {how}), {users:,} users x {items:,} "
                f"items, {ticks} ticks: {wall:.1f} s"
            )
            print("  " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in parts.items()))
            print(f"  dominant: {max(parts, key=parts.get)[:-2]}")
            print(f"  {n:,} impressions: {n / wall:,.0f} impressions/s (target >= {target:,})")
        entry = sum(p.stat().st_size for p in Path(f"{tmp}/cache").rglob("*") if p.is_file())
        cache.configure(None, enabled=None)
    print(
        f"  warm / cold wall: {walls['warm cache'] / walls['cold']:.2f}; same bytes: "
        f"{digests['cold'] == digests['warm cache']}; cache entry {entry / 1e6:.1f} MB"
    )


def calibration_parts(users: int, items: int) -> None:
    """Each stage of the calibration alone, one after another, on the same world (in a run the
    choice evidence fits on a second thread beside the rating model and the personas)."""
    from simrec.agents import taste
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.agents.persona import derive_personas
    from simrec.config import SyntheticWorldConfig, UtilityBrainConfig
    from simrec.data import make_world

    data = make_world(SyntheticWorldConfig(users=users, items=items), 0)
    brain = UtilityBrain(UtilityBrainConfig(), 0)
    log = data.interactions
    times: dict[str, float] = {}
    taste._FITS.clear()  # the whole run fitted the same log: time the fit, not the reuse

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name] = time.perf_counter() - t0
        return out

    brain.evidence = timed(
        "choice evidence (taste_dim: auto's choice, LDA, genre taste)", brain._fit_evidence, data
    )
    brain.choice = brain.evidence.choice
    brain.rating_model = timed("rating model (biased MF by ALS)", brain.fit_rating, data, log)
    personas = timed("personas", derive_personas, data, brain.rating_model.user_bias)
    brain.weights = timed("watch-model weights", brain._fit_click_weights, data, personas)
    timed("exposure watch rates", brain._exposure_watch, log, personas)
    total = sum(times.values())
    print(f"calibration stages, {users:,} users ({len(log):,} interactions), one at a time:")
    for name, t in times.items():
        print(f"  {name}: {t:.1f} s ({t / total:.0%})")


def lda_against_sklearn(users: int, items: int) -> None:
    from sklearn.decomposition import LatentDirichletAllocation

    from simrec.agents.taste import fit_topic_factors
    from simrec.config import SyntheticWorldConfig
    from simrec.data import make_world

    log = make_world(SyntheticWorldConfig(users=users, items=items), 0).interactions
    t0 = time.perf_counter()
    fit_topic_factors(log, items, 16, 0)
    ours = time.perf_counter() - t0
    m = log.matrix(items)
    t0 = time.perf_counter()
    lda = LatentDirichletAllocation(16, learning_method="online", max_iter=5, batch_size=2048)
    lda.set_params(random_state=0, n_jobs=1).fit_transform(m)
    base = time.perf_counter() - t0
    print(
        f"LDA taste fit, {users:,} users ({m.nnz:,} interactions): vectorised {ours:.1f} s, "
        f"scikit-learn {base:.1f} s, {base / ours:.1f}x"
    )


def lda_held_out_fit() -> None:
    """Both LDA fits on real MovieLens-100k less each user's latest 20%: ROC AUC of log P(item
    | user) for the held-out items against as many random items."""
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.metrics import roc_auc_score

    from simrec.agents.taste import fit_topic_factors
    from simrec.data import load

    data = load("recbole", "ml-100k")
    train_rows, test_rows = data.interactions.latest(0.2)
    train, test = data.interactions.take(train_rows), data.interactions.take(test_rows)
    n_items = data.catalog.n_items
    ours = fit_topic_factors(train, n_items, 16, 0)
    lda = LatentDirichletAllocation(16, learning_method="online", max_iter=5, batch_size=2048)
    theirs = lda.set_params(random_state=0, n_jobs=1).fit_transform(train.matrix(n_items))
    topics = (lda.components_ / lda.components_.sum(axis=1, keepdims=True)).T
    users = test.user.astype(np.int64)
    items = np.r_[test.item, np.random.default_rng(0).integers(0, n_items, users.size)]
    users2, y = np.r_[users, users], np.r_[np.ones(users.size), np.zeros(users.size)]
    for name, taste, item_topics in (
        ("vectorised", ours.taste, ours.items),
        ("scikit-learn", theirs, topics),
    ):
        p = np.einsum("nk,nk->n", taste[users2], item_topics[items])
        print(f"LDA held-out ROC AUC on MovieLens-100k, {name}: {roc_auc_score(y, np.log(p)):.3f}")


def million(items: int) -> None:
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.config import SyntheticWorldConfig, UtilityBrainConfig
    from simrec.data import make_world

    t0 = time.perf_counter()
    world = make_world(SyntheticWorldConfig(users=1_000_000, items=items), 0)
    t_world = time.perf_counter() - t0
    t0 = time.perf_counter()
    UtilityBrain(UtilityBrainConfig()).fit(world)
    t_fit = time.perf_counter() - t0
    print(f"1,000,000 users: world {t_world:.0f} s, calibration {t_fit:.0f} s (target <= 60 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--million", action="store_true")
    args = ap.parse_args()
    np.seterr(all="ignore")
    whole_run(args.users, args.items, args.ticks)
    calibration_parts(args.users, args.items)
    lda_against_sklearn(args.users, args.items)
    lda_held_out_fit()
    if args.million:
        million(args.items)


if __name__ == "__main__":
    main()
