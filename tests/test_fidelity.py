"""Fidelity report: the temporal split, the discrimination protocol and its metrics, offline
ranking metrics, the end-to-end report on MovieLens-format files, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

import simrec.evaluation.fidelity_report as F
from simrec.build import load_data
from simrec.cli import main
from simrec.config import RunConfig
from simrec.environments.base import Slates
from simrec.errors import ConfigError

WORLD = {"seed": 3, "data": {"synthetic": {"users": 300, "items": 400}}}


@pytest.fixture(scope="module")
def world_split():
    cfg = RunConfig.model_validate(WORLD)
    data = load_data(cfg)
    return cfg, data, F.temporal_split(data, 0.2)


def test_split_holds_out_each_users_latest_interactions(world_split):
    _, data, split = world_split
    log, train, test = data.interactions, split.train.interactions, split.test
    assert len(train) + len(test) == len(log)
    counts = np.bincount(log.user, minlength=log.n_users)
    held = np.bincount(test.user, minlength=log.n_users)
    np.testing.assert_array_equal(held, np.floor(0.2 * counts + 1e-9))
    # nothing held out happened before anything of the same user kept for training
    last_train = np.full(log.n_users, -1)
    np.maximum.at(last_train, train.user, train.timestamp)
    first_test = np.full(log.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_test, test.user, test.timestamp)
    assert (first_test[held > 0] >= last_train[held > 0]).all()
    # popularity (a calibration input) counts the training rows only
    np.testing.assert_array_equal(
        split.train.catalog.popularity, np.bincount(train.item, minlength=data.catalog.n_items)
    )
    assert not np.array_equal(split.train.catalog.popularity, data.catalog.popularity)


def test_discrimination_sets_draw_unseen_negatives_nested_by_ratio(world_split):
    _, data, split = world_split
    n_items = data.catalog.n_items
    full = (split.train.interactions.matrix(n_items) + split.test.matrix(n_items)).tocsr()
    s = F.discrimination_sets(split.test, full, n_items, 0, "t")
    for u in np.unique(s.users)[:50]:
        mine = s.users == u
        seen = set(full.indices[full.indptr[u] : full.indptr[u + 1]].tolist())
        pos, neg = s.items[mine & s.labels], s.items[mine & ~s.labels]
        assert set(pos.tolist()) <= set(split.test.item[split.test.user == u].tolist())
        assert not (set(neg.tolist()) & seen) and len(set(neg.tolist())) == neg.size
        assert neg.size == min(9 * pos.size, n_items - len(seen))
        for r in F.RATIOS:  # 1:r shows the positives and the first r x |positives| negatives
            shown = s.select(r) & mine
            assert (shown & ~s.labels).sum() == min(r * pos.size, neg.size)


def test_brain_scores_are_each_users_next_choice_probabilities(world_split):
    """The brain's discrimination scores are log probabilities of the user's next choice among
    the items it has not consumed: over all of them they sum to one per user, whatever level
    the user's logits have, and their order within a user is the choice logit's."""
    cfg, data, split = world_split
    n_items = data.catalog.n_items
    brain, _ = F.calibrated_brain(split.train, cfg)
    consumed = split.train.interactions.matrix(n_items)
    users = np.array([0, 7, 123])
    unseen = [np.setdiff1d(np.arange(n_items), consumed[u].indices) for u in users]
    s = F.Sets(
        users=np.concatenate([np.full(i.size, u) for u, i in zip(users, unseen, strict=True)]),
        items=np.concatenate(unseen),
        labels=np.zeros(sum(i.size for i in unseen), bool),
        rank=np.zeros(sum(i.size for i in unseen), np.int64),
        n_pos=np.ones(sum(i.size for i in unseen), np.int64),
    )
    scores = F.brain_scores_of(brain, s, consumed)
    for u in users:
        mine = s.users == u
        np.testing.assert_allclose(np.exp(scores[mine]).sum(), 1.0, rtol=1e-6)
        logits = brain.choice_logit(s.users[mine], s.items[mine][:, None])[:, 0]
        assert stats.spearmanr(scores[mine], logits).statistic > 0.999999
    # ... though the three users' logits have levels of their own, which the sums take out
    every = np.arange(n_items)[:, None]
    levels = [brain.choice_logit(np.full(n_items, u), every).mean() for u in users]
    assert np.ptp(levels) > 0.1


def test_confusion_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    n = 400
    s = F.Sets(
        users=np.zeros(n, np.int64),
        items=np.arange(n),
        labels=np.r_[np.ones(40, bool), np.zeros(n - 40, bool)],
        rank=np.r_[np.full(40, -1), np.arange(n - 40)],
        n_pos=np.full(n, 40),
    )
    scores = rng.normal(size=n) + s.labels
    for ratio in F.RATIOS:
        rows: list = []
        F.scores_table(rows, ratio, "x", *F.confusion(scores, s, ratio, 0.5))
        got = {m: v for _, _, m, v, _ in rows}
        sel = s.select(ratio)
        y, pick = s.labels[sel], scores[sel] >= 0.5
        assert got["accuracy"] == pytest.approx(accuracy_score(y, pick))
        assert got["precision"] == pytest.approx(precision_score(y, pick))
        assert got["recall"] == pytest.approx(recall_score(y, pick))
        assert got["f1"] == pytest.approx(f1_score(y, pick))
    # the calibrated threshold is the best of all thresholds for the mean F1 over the ratios
    theta = F.calibrate_threshold(scores, s)

    def mean_f1(t):
        out = []
        for r in F.RATIOS:
            rows: list = []
            F.scores_table(rows, r, "x", *F.confusion(scores, s, r, t))
            out.append(rows[-1][3])
        return np.mean(out)

    best = max(mean_f1(t) for t in np.unique(scores))
    assert mean_f1(theta) == pytest.approx(best)


class _Oracle:
    """Recommends each user's held-out items first (a test double of a policy)."""

    name = "oracle"

    def __init__(self, test, n_items):
        self.m = test.matrix(n_items)

    def recommend(self, users, k, *, exclude, rng):
        items = np.full((users.size, k), -1, np.int64)
        for r, u in enumerate(users):
            mine = self.m.indices[self.m.indptr[u] : self.m.indptr[u + 1]][:k]
            items[r, : mine.size] = mine
        ones = np.ones((users.size, k))
        return Slates(items, ones, ones, np.ones(users.size), deterministic=True)


def test_offline_metrics_of_an_oracle_are_perfect(world_split):
    _, data, split = world_split
    m = F.offline_metrics(_Oracle(split.test, data.catalog.n_items), split, k=20)
    recall, ndcg = m["recall@20"], m["ndcg@20"]
    # users with more than 20 held-out items cannot reach recall 1 in 20 slots
    m = split.test.matrix(data.catalog.n_items)
    sizes = np.diff(m.indptr)[np.diff(m.indptr) > 0]
    assert recall == pytest.approx(np.mean(np.minimum(sizes, 20) / sizes))
    assert ndcg == pytest.approx(1.0)


def test_fidelity_report_on_movielens_files(ml100k, tmp_path, capsys):
    out = tmp_path / "fid"
    assert main(["eval", "fidelity", "--data", str(ml100k), "--ticks", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "discrimination" in printed and "kendall_tau" in printed and "report:" in printed
    table = pq.read_table(out / "fidelity.parquet").to_pandas()
    assert list(table.columns) == list(F.COLUMNS)
    assert set(table.section) >= set(F.SECTIONS)
    disc = table[table.section == "discrimination"]
    for ratio in F.RATIOS:
        for source in ("simrec", "popularity", "itemknn", "als", "always_no"):
            got = disc[(disc.setting == f"1:{ratio}") & (disc.source == source)]
            scored = ratio == 1 and source != "always_no"  # 1:1 also has the ROC AUC
            expected = {"accuracy", "precision", "recall", "f1"} | (
                {"roc_auc"} if scored else set()
            )
            assert set(got.metric) == expected
            assert got.value.between(0, 1).all()
    assert "oracle" not in set(disc.source)  # real files carry no generating model
    no = disc[(disc.source == "always_no") & (disc.metric == "f1")]
    assert (no.value == 0).all()
    rating = table[table.section == "rating"].set_index(["metric", "source"]).value
    assert rating[("rmse_expected", "simrec")] > 0 and rating[("wasserstein", "simrec")] >= 0
    rk = table[table.section == "ranking"]
    # the default taste model is a topic model, the family of no built-in policy
    family = rk[rk.metric == "shares_brain_family"]
    assert set(family.setting) == set(F.POLICIES) and (family.value == 0).all()
    assert set(rk[rk.metric == "rank_shift"].setting) == set(F.POLICIES)
    # real files carry no generating model: no ideal simulator, no choice share
    assert "oracle" not in set(rk.source) and "oracle_simulation" not in set(rk.setting)
    tau = rk[(rk.setting == "recall@20") & (rk.metric == "kendall_tau")].value.iloc[0]
    assert -1 <= tau <= 1
    assert {"target_accuracy", "target_f1"} <= set(table.metric)
    for name in ("report.html", "ratings.png", "behaviour.png", "ranking.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "runs" / "als" / "manifest.json").exists()
    assert ("rmse_expected", "damped_bias") in rating.index
    # the verdict comes first: the ranking sentence, then simrec against every baseline
    card = F.scorecard(table)
    assert set(card.baseline) == {
        "popularity",
        "itemknn",
        "als",
        "ease",
        "global_mean",
        "item_mean",
        "damped_bias",
    }
    for r in card.itertuples():
        higher = not r.figure.startswith("rmse")
        better = r.simrec > r.baseline_value if higher else r.simrec < r.baseline_value
        assert r.verdict.startswith("better" if better else "worse")
    verdict = F.ranking_verdict(table)
    assert f"Kendall tau {tau:.2f}" in verdict and "random" in verdict
    assert printed.index("Policy ranking:") < printed.index("kendall_tau")
    # every policy is also simulated with log popularity read as taste (brain.exposure 0)
    low = rk[rk.source == "simrec, exposure 0"]
    assert set(low[low.metric == "consumed_per_user"].setting) == set(F.POLICIES)
    assert (out / "runs" / "als_exposure_0" / "manifest.json").exists()
    assert "with brain.exposure 0 " in verdict and "pairs keep their order" in verdict
    # the users are resampled: an interval around tau, and the pairs each side resolves
    low = rk[(rk.setting == "recall@20") & (rk.metric == "kendall_tau_low")].value.iloc[0]
    high = rk[(rk.setting == "recall@20") & (rk.metric == "kendall_tau_high")].value.iloc[0]
    assert -1 <= low <= high <= 1
    assert set(rk[rk.metric == "resolved_share"].source) == {"real", "simrec"}
    assert f"put tau between {low:.2f} and {high:.2f}" in verdict
    page = (out / "report.html").read_text()
    assert page.index("ranking of policies") < page.index("All figures")
    assert "http" not in page  # renders without a network


def test_fidelity_is_informative_and_reproducible(tmp_path):
    """On a synthetic world with real structure the calibrated brain beats the trivial
    baselines, ranks the policies in the same direction as the held-out data, and the table
    is byte-identical on a second run."""
    cfg = {**WORLD, "simulation": {"ticks": 6}}
    a = F.fidelity(cfg, out=tmp_path / "a")
    v = a.set_index(["section", "setting", "metric", "source"]).value
    for ratio in F.RATIOS:
        s = f"1:{ratio}"
        assert (
            v[("discrimination", s, "f1", "simrec")] > v[("discrimination", s, "f1", "always_no")]
        )
    assert v[("discrimination", "1:1", "accuracy", "simrec")] > 0.6
    # a synthetic world knows the utility its log was drawn from: the oracle's figures under the
    # same protocol bound what a model learnt from 300 users can reach
    for metric, ratio in (("accuracy", "1:1"), ("f1", "1:9")):
        oracle = v[("discrimination", ratio, metric, "oracle")]
        assert oracle > v[("discrimination", ratio, metric, "simrec")]
    auc = {s: v[("discrimination", "1:1", "roc_auc", s)] for s in ("simrec", "oracle")}
    assert 0.6 < auc["simrec"] < auc["oracle"] <= 1
    assert (
        v[("rating", "held-out", "rmse_expected", "simrec")]
        < v[("rating", "held-out", "rmse_expected", "global_mean")]
    )
    assert v[("ranking", "recall@20", "kendall_tau", "simrec")] > 0
    # the ideal simulator (the world's own taste, same protocol) ranks every policy too: a
    # personalised policy beats random there, and the brain's order agrees with it
    ideal = {p: v[("ranking", p, "consumed_per_user", "oracle")] for p in F.POLICIES}
    assert ideal["itemknn"] > ideal["random"] > 0
    assert v[("ranking", "oracle_simulation", "kendall_tau", "simrec")] > 0
    # how far the ideal simulator's own order is from Recall@20's: the protocol's ceiling
    real = [v[("ranking", p, "recall@20", "real")] for p in F.POLICIES]
    ceiling = stats.kendalltau([ideal[p] for p in F.POLICIES], real).statistic
    assert v[("ranking", "recall@20", "kendall_tau", "oracle")] == pytest.approx(ceiling)
    shift = a[a.metric == "rank_shift_vs_oracle"]
    assert set(shift.setting) == set(F.POLICIES) and shift.value.sum() == 0
    assert (tmp_path / "a" / "runs" / "als_oracle" / "manifest.json").exists()
    F.fidelity(cfg, out=tmp_path / "b")
    assert (tmp_path / "a" / "fidelity.parquet").read_bytes() == (
        tmp_path / "b" / "fidelity.parquet"
    ).read_bytes()
    pd.testing.assert_frame_equal(a, pq.read_table(tmp_path / "b" / "fidelity.parquet").to_pandas())


def test_exposure_readings_name_the_pairs_whose_order_they_change():
    engagement = {"a": 3.0, "b": 2.0, "c": 1.0}
    offline = {"a": {"recall@20": 0.3}, "b": {"recall@20": 0.2}, "c": {"recall@20": 0.1}}
    readings = {0.0: {"a": 1.0, "b": 2.0, "c": 0.5}, 0.5: {"a": 3.0, "b": 2.5, "c": 2.6}}
    rows = pd.DataFrame(F.exposure_rows(engagement, readings, offline, 1.0), columns=F.COLUMNS)
    v = rows.set_index(["setting", "metric", "source"]).value
    assert v[("brain", "exposure", "simrec")] == 1.0
    assert v[("b", "consumed_per_user", "simrec, exposure 0")] == 2.0
    # a > b > c under the config; b > a > c at 0; a > c > b at 0.5
    assert v[("recall@20", "kendall_tau", "simrec, exposure 0")] == pytest.approx(1 / 3)
    assert v[("recall@20", "kendall_tau", "simrec, exposure 0.5")] == pytest.approx(1 / 3)
    flipped = set(rows[rows.metric == "order_depends_on_exposure"].setting)
    assert flipped == {"a|b", "b|c"}
    assert v[("pairs", "stable_share", "simrec")] == pytest.approx(1 / 3)
    assert v[("pairs", "stable_agree", "simrec")] == 1  # a|c: recall orders it the same way
    swapped = {"a": {"recall@20": 0.1}, "b": {"recall@20": 0.2}, "c": {"recall@20": 0.3}}
    rows = pd.DataFrame(F.exposure_rows(engagement, readings, swapped, 1.0), columns=F.COLUMNS)
    assert rows.set_index(["setting", "metric"]).value[("pairs", "stable_agree")] == 0
    # the verdict reads every reading and names the pairs
    ranking = pd.DataFrame(
        F.ranking(engagement, offline) + F.exposure_rows(engagement, readings, offline, 1.0),
        columns=F.COLUMNS,
    )
    text = F.ranking_verdict(ranking)
    assert "(brain.exposure 1) orders the 3 policies a > b > c" in text
    assert "with brain.exposure 0 b > a > c (tau 0.33)" in text
    assert "33% of the pairs" in text and "a vs b, b vs c" in text
    assert "(held-out Recall@20 orders 1 of them the same way)" in text
    assert "A clue" not in text  # no popularity_vs_rating rows: no clue sentence
    with pytest.raises(ConfigError, match="exposures"):
        F.fidelity(WORLD, exposures=(3.0,))


def test_ranking_uncertainty_resamples_users_and_names_the_pairs_neither_side_resolves():
    """Policies a, b, c: held-out Recall@20 tells a from b only by noise (the same users' values
    shuffled), the simulation tells every pair apart; c is far below both. Resampling the users
    keeps a|b unresolved on the held-out side only, and the interval of tau covers the point
    estimate; with every pair far apart the interval is a single point."""
    g = np.random.default_rng(0)
    n = 400
    held = np.sort(g.choice(n, 300, replace=False))
    base = g.random(held.size)
    recall = {"a": base, "b": g.permutation(base), "c": base * 0.1}
    watches = {"a": g.poisson(5.0, n), "b": g.poisson(3.0, n), "c": g.poisson(1.0, n)}
    rows = F.ranking_uncertainty(watches, recall, held, seed=0, resamples=400)
    v = pd.DataFrame(rows, columns=F.COLUMNS).set_index(["setting", "metric", "source"]).value
    assert v[("users", "resamples", "simrec")] == 400
    assert v[("pairs", "resolved_share", "simrec")] == 1.0
    assert v[("pairs", "resolved_share", "real")] == pytest.approx(2 / 3)
    unresolved = [r[1] for r in rows if r[2] == "order_unresolved"]
    assert unresolved == ["a|b"] and [r[4] for r in rows if r[2] == "order_unresolved"] == ["real"]
    assert v[("pairs", "resolved_by_both", "simrec")] == 2
    assert v[("pairs", "agree_resolved", "simrec")] == 2
    means = [recall[p].mean() for p in "abc"]
    tau = stats.kendalltau([watches[p].mean() for p in "abc"], means).statistic
    assert v[("recall@20", "kendall_tau_low", "simrec")] <= tau
    assert v[("recall@20", "kendall_tau_high", "simrec")] >= tau
    assert (
        v[("recall@20", "kendall_tau_low", "simrec")]
        < v[("recall@20", "kendall_tau_high", "simrec")]
    )
    # the verdict gives the interval and what each side resolves
    engagement = {p: float(watches[p].mean()) for p in "abc"}
    offline = {p: {"recall@20": float(recall[p].mean())} for p in "abc"}
    text = F.ranking_verdict(pd.DataFrame(F.ranking(engagement, offline) + rows, columns=F.COLUMNS))
    assert "95% of 400 resamples of the users put tau between" in text
    assert "held-out Recall@20 orders 2 of the 3 pairs" in text
    assert "the simulation 3; of the 2 pairs both order firmly, they agree on 2" in text
    # the same seed gives the same rows; every pair far apart: tau is 1 in every resample
    assert rows == F.ranking_uncertainty(watches, recall, held, seed=0, resamples=400)
    recall["b"] = base * 0.5
    far = (
        pd.DataFrame(
            F.ranking_uncertainty(watches, recall, held, seed=1, resamples=200), columns=F.COLUMNS
        )
        .set_index(["setting", "metric"])
        .value
    )
    assert far[("recall@20", "kendall_tau_low")] == far[("recall@20", "kendall_tau_high")] == 1
    assert (far.loc[("pairs", "resolved_share")] == 1).all()


def test_popularity_vs_rating_is_the_items_correlation_and_reaches_the_verdict():
    """The clue the report gives about exposure: Pearson's r between log(1 + count) and mean
    rating over items with at least MIN_RATINGS_PER_ITEM ratings, computed here by hand on a
    log where popular items are rated higher, and none on an implicit log."""
    from types import SimpleNamespace

    from simrec.data.dataset import Interactions
    from simrec.evaluation.fidelity_report.ranking import MIN_RATINGS_PER_ITEM

    def tiny_dataset(log, n_items):  # what the rows read of a Dataset
        return SimpleNamespace(interactions=log, catalog=SimpleNamespace(n_items=n_items))

    g = np.random.default_rng(0)
    n_items = 40
    counts = np.repeat(np.arange(n_items), np.arange(n_items) + 5)  # item i: i + 5 rows
    items = g.permutation(counts).astype(np.int32)
    ratings = np.clip(np.round(1 + items / 10 + g.normal(0, 1, items.size)), 1, 5)
    users = g.integers(0, 30, items.size).astype(np.int32)
    log = Interactions(
        users, items, ratings.astype(np.float32), np.zeros(items.size, np.int64), np.arange(30)
    )
    data = tiny_dataset(log, n_items)
    rows = {r[2]: r[3] for r in F.popularity_rating_rows(data)}
    keep = np.arange(n_items) + 5 >= MIN_RATINGS_PER_ITEM
    mean = np.array([ratings[items == i].mean() for i in range(n_items)])[keep]
    want = np.corrcoef(np.log1p(np.arange(n_items) + 5)[keep], mean)[0, 1]
    assert rows["correlation"] == pytest.approx(want) and rows["correlation"] > 0.5
    assert rows["items"] == keep.sum()
    no_ratings = np.full(items.size, np.nan, np.float32)
    implicit = Interactions(users, items, no_ratings, log.timestamp, log.user_ids)
    assert F.popularity_rating_rows(tiny_dataset(implicit, n_items)) == []

    engagement = {"a": 3.0, "b": 2.0, "c": 1.0}
    offline = {"a": {"recall@20": 0.3}, "b": {"recall@20": 0.2}, "c": {"recall@20": 0.1}}
    table = pd.DataFrame(
        F.ranking(engagement, offline)
        + F.exposure_rows(engagement, {0.0: engagement}, offline, 1.0)
        + F.popularity_rating_rows(data),
        columns=F.COLUMNS,
    )
    assert f"correlate at r = {want:.2f}" in F.ranking_verdict(table)


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--brain", "hybrid"], "brain.name"),
        (["--llm-users", "0"], "llm_users"),
        (["--holdout", "1.5"], "holdout"),
        (["--policies", "random,popular"], "at least 3"),
        (["--policies", "random,popular,nope"], "unknown policy 'nope'"),
        (["--users", "5"], "population.users"),
        (["--exposures", "0,3"], "exposures: expected values in [0, 2], got 3"),
        (["--exposures", "low"], "--exposures: expected numbers"),
    ],
)
def test_bad_fidelity_input_exits_2(flags, needle, ml100k, tmp_path, capsys):
    out = tmp_path / "fid"
    code = main(["eval", "fidelity", "--data", str(ml100k), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_llm_brain_judges_the_lists_of_sampled_users(tmp_path, monkeypatch):
    """A fake OpenAI-compatible server (MockTransport below the real client) answers as an
    oracle: it picks exactly the held-out titles of the user named in the persona and gives
    their true ratings, except every 7th pick, which names a position off the list. So the
    LLM rows must show recall 1, ratings RMSE 0, and the broken answers as fallbacks."""
    import json
    import re

    from .conftest import completion, serve

    cfg = RunConfig.model_validate(WORLD)
    data = load_data(cfg)
    split = F.temporal_split(data, 0.2)
    titles = data.catalog.titles
    held: dict[int, dict[str, float]] = {}
    for u, i, r in zip(split.test.user, split.test.item, split.test.rating, strict=True):
        held.setdefault(int(u), {})[str(titles[i])] = float(r)
    picks = []

    def handler(request):
        body = json.loads(request.content)
        user = int(re.search(r"\(user (\d+)\)", body["messages"][0]["content"]).group(1))
        quoted = re.findall(r"^\d+\. (\".*\")$", body["messages"][1]["content"], re.M)
        lines = [re.sub(r" \([^()]*\)$", "", json.loads(q)) for q in quoted]
        props = set(body["response_format"]["schema"]["properties"])
        if "watch" in props:
            picks.append(user)
            watch = [j for j, t in enumerate(lines, 1) if t in held[user]]
            if len(picks) % 7 == 0:
                watch = [len(lines) + 1]
            answer = {"watch": watch, "reason": "I know what I like"}
        else:
            answer = {"ratings": [held[user][t] for t in lines], "reason": "as I remember"}
        return completion(json.dumps(answer), "stop", 40, 10)

    serve(monkeypatch, handler)
    raw = {
        **WORLD,
        "simulation": {"ticks": 2},
        "brain": {"name": "llm"},
        "llm": {"backend": "openai:fake", "base_url": "http://127.0.0.1:9/v1", "cache": None},
    }
    table = F.fidelity(raw, llm_users=12, policies=["random", "popular", "itemknn"])
    v = table.set_index(["section", "setting", "metric", "source"]).value
    assert v[("discrimination", "llm", "users", "llm")] == 12
    assert len(picks) == 12 * len(F.RATIOS)
    fallbacks = v[("discrimination", "llm", "fallbacks", "llm")]
    assert fallbacks == len(picks) // 7
    for ratio in F.RATIOS:
        pairs = v[("discrimination", f"1:{ratio}", "pairs", "llm")]
        assert pairs <= 12 * F.LLM_POSITIVES * (ratio + 1)
    # the oracle's answers are right; the fallbacks (statistical brain) may miss some
    assert v[("discrimination", "1:1", "recall", "llm")] > 0.8
    assert v[("discrimination", "1:9", "precision", "llm")] > 0.7
    assert v[("rating", "held-out", "rmse_sampled", "llm")] < 0.3
    assert (
        v[("llm", "calls", "count", "llm")]
        == len(picks)
        + v[("rating", "held-out", "failed_requests", "llm")]
        + 12
        - (v[("rating", "held-out", "failed_requests", "llm")])
    )


@pytest.mark.slow
def test_embedded_model_fidelity_through_the_cli(ml100k, tmp_path, capsys):
    """The embedded SmolLM2 judges the lists of 2 users of MovieLens-format files, from the
    command line; its answers are validated like any other (135M parameters: the figures say
    nothing about taste, only that the path works end to end)."""
    pytest.importorskip("llama_cpp")
    out = tmp_path / "fid"
    cfg = tmp_path / "c.yaml"  # a fresh response cache, so every answer comes from the model
    cfg.write_text(f"llm:\n  cache: {tmp_path / 'cache.sqlite'}\n")
    argv = ["eval", "fidelity", str(cfg), "--data", str(ml100k), "--llm", "local"]
    argv += ["--llm-users", "2", "--ticks", "2", "--policies", "random,popular,itemknn"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    table = pq.read_table(out / "fidelity.parquet").to_pandas()
    llm = table[table.source == "llm"].set_index(["section", "setting", "metric"]).value
    assert llm[("discrimination", "llm", "users")] == 2
    positives = llm[("discrimination", "1:1", "pairs")] / 2  # 1 or 2 held-out per user
    assert 2 <= positives <= 4
    for ratio in F.RATIOS:  # each list: the user's positives and r times as many negatives
        assert llm[("discrimination", f"1:{ratio}", "pairs")] == positives * (ratio + 1)
        assert 0 <= llm[("discrimination", f"1:{ratio}", "accuracy")] <= 1
    # one pick request per user and ratio, one rating request per user
    assert llm[("llm", "calls", "count")] == 2 * len(F.RATIOS) + 2
    assert 0 <= llm[("discrimination", "llm", "fallbacks")] <= 2 * len(F.RATIOS)


def test_cross_fitted_click_calibration_does_not_reward_the_taste_models_own_fit():
    """In sample, the affinity of the rows an SVD taste model was fitted on looks far more
    predictive than it is for choices the model has not seen; cross-fitted, the click model
    learns the latter. On tiny data (too few held-out rows) both modes agree, and the brain
    says it fell back."""
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.config import UtilityBrainConfig

    data = load_data(RunConfig.model_validate(WORLD))
    weights = {}
    for mode in ("in-sample", "cross-fit"):
        c = UtilityBrainConfig(click_calibration=mode, taste_dim=8, taste_model="svd")
        brain = UtilityBrain(c, seed=0)
        brain.fit(data)
        weights[mode] = brain.weights
        assert brain.click_calibration == mode
    assert weights["cross-fit"].affinity < 0.7 * weights["in-sample"].affinity
    # the simulation scores with the final model: same standardisation of affinity either way
    assert weights["cross-fit"].aff_mean == pytest.approx(weights["in-sample"].aff_mean, rel=0.2)
    tiny = load_data(RunConfig.model_validate({"data": {"synthetic": {"users": 20, "items": 30}}}))
    same = []
    for mode in ("in-sample", "cross-fit"):
        brain = UtilityBrain(UtilityBrainConfig(click_calibration=mode, taste_dim=4), seed=0)
        brain.fit(tiny)
        same.append(vars(brain.weights))
    assert same[0] == same[1]
    assert brain.click_calibration == "in-sample (under 200 rows to cross-fit)"


def test_svd_brain_flags_its_family_and_the_default_is_a_topic_model(tmp_path):
    """brain.taste_model: svd simulates with SVD tastes: the runs work, and the report flags
    als and bpr as the brain's family. The default is LDA (P(item | user) affinities), whose
    manifest records the taste model and calibration used."""
    import json

    import simrec

    res = simrec.run({**WORLD, "simulation": {"ticks": 2}, "output": {"dir": str(tmp_path / "r")}})
    brain = json.loads((tmp_path / "r" / "manifest.json").read_text())["brain"]
    assert brain["click_calibration"] == "in-sample" and res.counts["clicks"] > 0
    assert RunConfig().brain.taste_model == "lda"
    cfg = {**WORLD, "simulation": {"ticks": 2}, "brain": {"taste_model": "svd"}}
    table = F.fidelity(cfg, policies=["random", "popular", "als", "bpr"])
    rk = table[(table.section == "ranking") & (table.metric == "shares_brain_family")]
    assert set(rk[rk.value == 1].setting) == {"als", "bpr"} and len(rk) == 4
    v = table.set_index(["section", "setting", "metric", "source"]).value
    assert v[("discrimination", "1:1", "accuracy", "simrec")] > 0.6


class _WorldTop:
    """Recommends each user's k unseen items of highest world utility (a test double)."""

    name = "world-top"

    def __init__(self, truth):
        self.truth = truth

    def recommend(self, users, k, *, exclude, rng):
        util = self.truth.utility_matrix(users)
        util[exclude.nonzero()] = -np.inf
        items = np.argsort(-util, axis=1, kind="stable")[:, :k]
        n_unseen = np.isfinite(util).sum(axis=1)
        items[np.arange(k)[None, :] >= n_unseen[:, None]] = -1
        ones = np.ones(items.shape)
        return Slates(items, ones, ones, np.ones(users.size), deterministic=True)


def test_choice_share_is_the_worlds_probability_of_the_slate(world_split):
    """choice_share@k is the world's choice probability over the user's unseen items held by
    the slate: all unseen items hold all of it, the top item holds its softmax share (checked
    user by user), and no built-in policy's slate holds more than the world's own top k."""
    from simrec.data.agent_log import agent_log
    from simrec.environments.registry import make_policy

    _, data, split = world_split
    truth, n_items = split.train.truth, data.catalog.n_items
    top = _WorldTop(truth)
    everything = F.offline_metrics(top, split, k=n_items)
    assert everything["choice_share@" + str(n_items)] == pytest.approx(1.0)
    train_m = split.train.interactions.matrix(n_items)
    users = np.flatnonzero(np.diff(split.test.matrix(n_items).indptr) > 0)
    expected = []
    for u in users:
        unseen = np.setdiff1d(np.arange(n_items), train_m[u].indices)
        util = truth.utility(np.full(unseen.size, u), unseen)
        p = np.exp(util - util.max())
        expected.append(p.max() / p.sum())
    assert F.offline_metrics(top, split, k=1)["choice_share@1"] == pytest.approx(np.mean(expected))
    best = F.offline_metrics(top, split)["choice_share@20"]
    log = agent_log(split.train, np.arange(split.train.interactions.n_users))
    for name in ("popular", "itemknn", "als"):
        policy = make_policy(name, {}, None)
        policy.fit(log, split.train.catalog)
        share = F.offline_metrics(policy, split)["choice_share@20"]
        assert 0 < share < best


def test_oracle_taste_is_the_worlds_utility_and_needs_a_world(
    world_split, ml100k, tmp_path, capsys
):
    """brain.taste_model: oracle scores with the synthetic world's own choice probability; on
    real files it is a config error (exit 2, one line, nothing written)."""
    from simrec.agents.brains.utility import UtilityBrain
    from simrec.config import UtilityBrainConfig

    _, data, _ = world_split
    brain = UtilityBrain(UtilityBrainConfig(taste_model="oracle"), seed=0)
    brain.fit(data)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 300, 500), rng.integers(0, data.catalog.n_items, 500)
    c = brain.choice
    got = c.affinity(np.einsum("nd,nd->n", c.taste[users], c.items[items]))
    np.testing.assert_allclose(got, data.truth.log_choice(users, items), rtol=1e-4, atol=1e-4)
    # the log choice probability of each user's next pick: it sums to one over the catalog
    every = np.arange(data.catalog.n_items)
    for u in (0, 7, 299):
        p = np.exp(data.truth.log_choice(np.full(every.size, u), every))
        assert p.sum() == pytest.approx(1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("brain:\n  taste_model: oracle\nsimulation:\n  ticks: 1\n")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--data", str(ml100k), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "brain.taste_model" in err[0] and "oracle" in err[0]
    assert not out.exists() or not any(out.iterdir())


def _figure(table, section, setting, metric, source="simrec") -> float:
    hit = table[
        (table.section == section)
        & (table.setting == setting)
        & (table.metric == metric)
        & (table.source == source)
    ]
    assert len(hit) == 1, (section, setting, metric, source)
    return float(hit.value.iloc[0])


@pytest.mark.slow
def test_real_movielens_100k_direction():
    """On real MovieLens-100k (each user's latest 20% held out), the default brain separates
    held-out choices about as well as EASE, item-kNN and ALS tuned on the training log, better
    than popularity, and better than all of them threshold-free (ROC AUC), and ranks six
    policies as held-out Recall@20 does, at least roughly. Measured at this commit: tau 0.60
    with seed 0 (three of 15 pairs swapped); the bound allows one more swapped pair (0.13), as
    als, bpr and itemknn are close in simulated engagement. With log popularity read as taste
    (the report's exposure-0 reading) tau is 0.87."""
    table = F.fidelity({"data": {"format": "recbole", "path": "ml-100k"}})
    tuned = ("ease", "itemknn", "als")
    # measured with seed 0: above the best tuned baseline in 5 of the 8 cells (accuracy at
    # 1:2, 1:3 and 1:9, F1 at 1:9 and 1:3 tied at 0.631), below it by 0.003 at most (F1 at
    # 1:1 against item-kNN's 0.777, at 1:2 against EASE's 0.696); popularity below everywhere
    above = 0
    for ratio in ("1:1", "1:2", "1:3", "1:9"):
        for metric in ("accuracy", "f1"):
            ours = _figure(table, "discrimination", ratio, metric)
            assert ours > _figure(table, "discrimination", ratio, metric, "popularity")
            best = max(_figure(table, "discrimination", ratio, metric, b) for b in tuned)
            assert ours > best - 0.006, (ratio, metric, ours, best)
            above += ours > best
    assert above >= 3
    ours = _figure(table, "discrimination", "1:1", "roc_auc")  # 0.852 against EASE's 0.839
    for baseline in ("popularity", *tuned):
        assert ours > _figure(table, "discrimination", "1:1", "roc_auc", baseline)
    assert _figure(table, "rating", "held-out", "rmse_expected") < _figure(
        table, "rating", "held-out", "rmse_expected", "damped_bias"
    )
    # the ordinal link keeps the held-out rating histogram within the goal (0.027 measured;
    # rounding gave 0.040)
    assert _figure(table, "rating", "held-out", "wasserstein_normalised") <= 0.03
    assert _figure(table, "ranking", "recall@20", "kendall_tau") >= 0.46
    # the swaps are not noise of the yardstick: resampling the users, held-out Recall@20 keeps
    # the order of all 15 pairs in at least 95% of the resamples (measured), and tau's interval
    # covers its estimate (0.47 to 0.60 measured with seed 0)
    assert _figure(table, "ranking", "pairs", "resolved_share", "real") >= 13 / 15
    tau = _figure(table, "ranking", "recall@20", "kendall_tau")
    assert _figure(table, "ranking", "recall@20", "kendall_tau_low") <= tau
    assert _figure(table, "ranking", "recall@20", "kendall_tau_high") >= tau
    # read with log popularity as taste (brain.exposure 0), the order meets the 0.8 goal
    # against Recall@20: 0.87 measured (one pair swapped, itemknn over als); the bound allows
    # one more. The report names the pairs that the two readings order differently.
    assert _figure(table, "ranking", "recall@20", "kendall_tau", "simrec, exposure 0") >= 0.73
    assert 0.5 <= _figure(table, "ranking", "pairs", "stable_share") < 1
    # the orders that hold under both readings are the ones to trust: Recall@20 agrees with
    # every one of them (11 of 11 measured); the bound allows one swap
    stable = round(15 * _figure(table, "ranking", "pairs", "stable_share"))
    assert _figure(table, "ranking", "pairs", "stable_agree") >= stable - 1
    # MovieLens's popular films are rated higher (r 0.51 measured): the clue the report gives
    assert _figure(table, "ranking", "popularity_vs_rating", "correlation", "real") > 0.3
    # sessions per user per day, compared like with like, within 20% of the log's
    sim = _figure(table, "behaviour", "sessions_per_user_per_tick", "mean")
    real = _figure(table, "behaviour", "sessions_per_user_per_tick", "mean", "real")
    assert abs(sim / real - 1) < 0.2
