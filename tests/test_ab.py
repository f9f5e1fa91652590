"""Offline A/B tests: common random numbers, paired bootstrap statistics, Holm, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import simrec
from simrec import outputs
from simrec.cli import main
from simrec.evaluation import METRICS, holm

from .conftest import small_config


def test_identical_arms_differ_by_exactly_nothing(tmp_path):
    """Same policy in both arms: common random numbers make the runs identical, so every
    paired difference and its whole bootstrap interval are 0."""
    t = simrec.ab(
        small_config(None, ticks=3),
        {"A": "popular", "B": "popular"},
        out=tmp_path / "ab",
        n_resamples=200,
    )
    b = t[t.arm == "B"]
    assert len(b) == len(METRICS)
    assert (b["diff"] == 0).all() and (b.diff_ci_low == 0).all() and (b.diff_ci_high == 0).all()
    assert (b.p_value == 1).all() and not b.significant.any()
    # tied on every metric: the same rank, and an order no resample can tell
    assert (t["rank"] == 1).all()
    assert (b.rank_unresolved_with == "A").all()
    assert (t[t.arm == "A"].rank_unresolved_with == "B").all()
    # tied under every exposure reading too: an order that does not depend on it
    assert (t.order_depends_on_exposure_with == "").all()


def test_a_worse_policy_loses_significantly(tmp_path):
    # the personalised policy is the control: with the log's popularity taken for exposure
    # (brain.exposure: 1), popularity alone is not what simulated users reward
    cfg = small_config(None, ticks=8)
    t = simrec.ab(
        cfg,
        {"als": {"name": "als", "params": {"factors": 8}}, "rand": "random", "pop": "popular"},
        out=tmp_path / "ab",
        n_resamples=2000,
    )
    assert set(t.arm) == {"pop", "rand", "als"} and set(t.control) == {"als"}
    ctr = t[t.metric == "ctr"].set_index("arm")
    assert ctr.loc["rand", "diff"] < 0 and ctr.loc["rand", "significant"]
    assert ctr.loc["rand", "diff_ci_high"] < 0
    # ranks per metric: random below als on CTR, an order every resample keeps
    assert ctr.loc["rand", "rank"] > ctr.loc["als", "rank"]
    assert "rand" not in ctr.loc["als", "rank_unresolved_with"].split(",")
    assert "als" not in ctr.loc["rand", "rank_unresolved_with"].split(",")
    for metric, ranks in t.groupby("metric")["rank"]:
        assert sorted(ranks) == sorted(
            t[t.metric == metric].value.rank(ascending=False, method="min").astype(int)
        ), metric
    watches = t[t.metric == "consumed_per_user"].set_index("arm")
    users = pq.read_table(tmp_path / "ab" / "rand" / "rep-0" / "users.parquet").num_rows
    manifest = json.loads((tmp_path / "ab" / "rand" / "rep-0" / "manifest.json").read_text())
    clicks = manifest["counts"]["clicks"]
    assert watches.loc["rand", "value"] == pytest.approx(clicks / users)
    # random shows far more of the catalog and less popular items
    cov = t[t.metric == "coverage"].set_index("arm")
    nov = t[t.metric == "novelty"].set_index("arm")
    assert cov.loc["rand", "diff"] > 0 and nov.loc["rand", "diff"] > 0
    # Holm: adjusted p-values are at least the raw ones; the table is also on disk
    tested = t.dropna(subset=["p_value"])
    assert (tested.p_holm >= tested.p_value - 1e-15).all()
    on_disk = pd.read_parquet(tmp_path / "ab" / "ab_results.parquet")
    pd.testing.assert_frame_equal(on_disk, t)
    # every arm's run is a complete simrec run
    for arm in ("pop", "rand", "als"):
        assert (tmp_path / "ab" / arm / "rep-0" / "manifest.json").exists()


def test_bootstrap_standard_error_matches_the_paired_formula(tmp_path):
    """satisfaction is a per-user mean: the SE of the paired difference is sd(d_u) / sqrt(n)."""
    t = simrec.ab(
        small_config(None, ticks=4),
        {"A": "popular", "B": "random"},
        out=tmp_path / "ab",
        n_resamples=4000,
    )
    users = {
        arm: pq.read_table(tmp_path / "ab" / arm / "rep-0" / "users.parquet").to_pandas()
        for arm in ("A", "B")
    }
    d = users["B"].final_satisfaction.to_numpy(float) - users["A"].final_satisfaction.to_numpy(
        float
    )
    se = d.std(ddof=1) / np.sqrt(d.size)
    row = t[(t.metric == "satisfaction") & (t.arm == "B")].iloc[0]
    assert row["diff"] == pytest.approx(d.mean(), rel=1e-9)
    mde_se = row.mde / 2.8015852  # (z_0.975 + z_0.8)
    assert mde_se == pytest.approx(se, rel=0.1)


def test_replicates_cluster_by_replicate_and_user(tmp_path):
    cfg = small_config(None, ticks=2)
    t = simrec.ab(
        cfg, {"A": "popular", "B": "random"}, out=tmp_path / "ab", replicates=2, n_resamples=100
    )
    assert set(t.n_users) == {600}
    assert (tmp_path / "ab" / "B" / "rep-1" / "manifest.json").exists()


def test_holm_matches_its_definition():
    g = np.random.default_rng(0)
    p = g.random(12) ** 3
    got = holm(p)
    order = np.argsort(p)
    want = np.empty_like(p)
    running = 0.0
    for rank, j in enumerate(order):
        running = max(running, (p.size - rank) * p[j])
        want[j] = min(1.0, running)
    np.testing.assert_allclose(got, want)


def test_ab_from_the_cli(tmp_path, capsys):
    out = tmp_path / "ab"
    args = ["ab", "--users", "200", "--items", "150", "--ticks", "2", "--out", str(out)]
    args += ["--arm", "A=popular", "--arm", "B=als", "--arm-param", "B:factors=8"]
    assert main([*args, "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert "ctr" in printed and "(control)" in printed and "novelty" in printed
    t = pd.read_parquet(out / "ab_results.parquet")
    assert set(t.arm) == {"A", "B"}
    # each row ends with the arm's rank and the arms whose order with it is unresolved
    assert "rank (order unresolved with)" in printed
    width = max(20, 2 + max(len(m) for m in t.metric))  # the metric column fits every name
    for r in t.itertuples():
        line = next(
            x for x in printed.splitlines() if x.startswith(f"{r.metric:<{width}}{r.arm:<10}")
        )
        tail = f"  {r.rank}" + (f" ({r.rank_unresolved_with})" if r.rank_unresolved_with else "")
        tail += f" [{r.order_depends_on_exposure_with}]" if r.order_depends_on_exposure_with else ""
        assert line.endswith(tail), (line, tail)
    # the verdict opens the output; then the pairs whose order on items consumed per user
    # depends on the exposure reading
    assert printed.startswith("B vs A: consumed per user ")
    pairs = {
        "|".join(sorted((r.arm, o)))
        for r in t[t.metric == "consumed_per_user"].itertuples()
        for o in filter(None, r.order_depends_on_exposure_with.split(","))
    }
    line = printed.splitlines()[-2]
    assert "brain.exposure" in line and all(p in line for p in pairs), line
    assert ("no order" in line) == (not pairs)
    # every arm was also run at brain.exposure 0 (the config's 1 is the main reading)
    assert (out / "B" / "rep-0-exposure-0" / "manifest.json").is_file()
    assert set(pd.read_parquet(out / "ab_exposure.parquet").exposure) == {0.0, 1.0}
    man = (out / "B" / "rep-0" / "manifest.json").read_text()
    assert '"factors": 8' in man


BAD = [
    (["--arm", "A=popular", "--arm", "B=nope"], "unknown policy 'nope'"),
    (["--arm", "A=popular"], "expected at least two arms"),
    (["--arm", "A"], "expected NAME=POLICY"),
    (["--arm", "A=popular", "--arm", "B=random", "--control", "Z"], "--control: expected one of"),
    (["--arm", "A=popular", "--arm", "B=als", "--arm-param", "C:factors=3"], "--arm-param"),
    (["--arm", "A=popular", "--arm", "B=als", "--arm-param", "B:factors=-1"], "factors"),
    (["--arm", "A=popular", "--arm", "B=random", "--exposures", "0,3"], "ab exposures: expected"),
    (["--arm", "A=popular", "--arm", "B=random", "--exposures", "low"], "--exposures: expected"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_arms_are_clear_errors_before_anything_runs(extra, message, tmp_path, capsys):
    out = tmp_path / "ab"
    code = main(["ab", "--users", "50", "--items", "40", "--ticks", "1", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_ab_ope_and_exports_on_movielens_files(ml100k, tmp_path, capsys):
    """The evaluation commands on MovieLens-format files written by the tests."""
    ab_out = tmp_path / "ab"
    common = ["--data", str(ml100k), "--ticks", "3", "--quiet"]
    assert (
        main(
            [
                "ab",
                *common,
                "--arm",
                "A=popular",
                "--arm",
                "B=itemknn",
                "--out",
                str(ab_out),
                "--bootstrap",
                "300",
            ]
        )
        == 0
    )
    t = pd.read_parquet(ab_out / "ab_results.parquet")
    assert t.value.notna().all() and (ab_out / "report.html").exists()
    log = tmp_path / "log"
    assert (
        main(["run", *common, "--explore", "softmax", "--temperature", "0.5", "--out", str(log)])
        == 0
    )
    ope = ["ope", str(log), "--target", "genre", "--bootstrap", "100", "--quiet"]
    assert main(ope) == 2  # the data is named again, never taken from the run
    assert main([*ope, "--data", str(ml100k)]) == 0
    for fmt in ("recbole", "obp", "hf", "csv"):
        assert main(["export", str(log), "--to", fmt]) == 0, fmt


def test_ranks_share_ties_leave_out_non_numbers_and_name_unresolved_orders():
    from simrec.evaluation.ab import _ranks

    g = np.random.default_rng(0)
    # one metric, four arms: a far above b; b and c tied; d not a number
    point = np.array([[3.0], [1.0], [1.0], [np.nan]])
    dist = point[:, :, None] + g.normal(0, 0.1, (4, 1, 500))
    ranks, loose = _ranks(point, dist, ["a", "b", "c", "d"], alpha=0.05)
    assert ranks == [1, 2, 2, None]
    assert loose == ["d", "c,d", "b,d", "a,b,c"]
    # b above c by less than the noise: unresolved; by far more: resolved
    point[2, 0] = 0.99
    assert _ranks(point, dist, list("abcd"), 0.05)[1][1] == "c,d"
    point[2, 0], dist[2] = 0.0, dist[2] - 1.0
    assert _ranks(point, dist, list("abcd"), 0.05) == ([1, 2, 3, None], ["d", "d", "d", "a,b,c"])


def test_exposure_readings_rerun_every_arm_and_name_the_orders_that_change(tmp_path):
    """Every arm is also run at brain.exposure 0: its values are those of the same A/B run
    with that exposure, popularity gains on random there (it counts as taste), and an order
    of two arms is named exactly when it is not the same under both readings."""
    cfg = small_config(None, ticks=4)
    arms = {"rand": "random", "pop": "popular", "als": {"name": "als", "params": {"factors": 8}}}
    t = simrec.ab(cfg, arms, out=tmp_path / "ab", n_resamples=200)
    by = pd.read_parquet(tmp_path / "ab" / "ab_exposure.parquet")
    assert list(dict.fromkeys(by.exposure)) == [1.0, 0.0]  # the config's reading first
    # every file the A/B writes is one --overwrite may delete as its own
    top = [p.name for p in (tmp_path / "ab").iterdir() if p.is_file()]
    assert "ab_exposure.parquet" in top
    assert all(outputs.OWN_FILES["ab"].fullmatch(name) for name in top), top
    at = {e: g.set_index(["metric", "arm"]).value for e, g in by.groupby("exposure")}
    main_values = t.set_index(["metric", "arm"]).value
    pd.testing.assert_series_equal(at[1.0], main_values.loc[at[1.0].index], check_names=False)
    cfg0 = {**cfg, "brain": {**cfg["brain"], "exposure": 0.0}}
    t0 = simrec.ab(cfg0, arms, out=tmp_path / "ab0", n_resamples=200, exposures=())
    assert (t0.order_depends_on_exposure_with == "").all()  # one reading: nothing to compare
    assert set(pd.read_parquet(tmp_path / "ab0" / "ab_exposure.parquet").exposure) == {0.0}
    np.testing.assert_allclose(
        at[0.0].to_numpy(), t0.set_index(["metric", "arm"]).value.loc[at[0.0].index].to_numpy()
    )
    w = {e: v.loc["consumed_per_user"] for e, v in at.items()}
    assert w[0.0]["pop"] / w[0.0]["rand"] > w[1.0]["pop"] / w[1.0]["rand"]
    for r in t.itertuples():
        flips = {
            o
            for o in arms
            if o != r.arm
            and np.sign(at[1.0][r.metric, r.arm] - at[1.0][r.metric, o])
            != np.sign(at[0.0][r.metric, r.arm] - at[0.0][r.metric, o])
        }
        assert set(filter(None, r.order_depends_on_exposure_with.split(","))) == flips, r
    manifest = json.loads((tmp_path / "ab" / "ab_manifest.json").read_text())
    assert manifest["exposure"] == 1.0 and set(manifest["exposure_readings"]) == {"0"}
    assert "Orders under each exposure reading" in (tmp_path / "ab" / "report.html").read_text()
    # again without the readings, over the same folder: its reading runs' files go with the
    # rest (an emptied run folder keeps only its lock file, as every cleared run does)
    again = {**cfg, "output": {**cfg["output"], "overwrite": True}}
    simrec.ab(again, arms, out=tmp_path / "ab", n_resamples=200, exposures=())
    left = [p.name for p in (tmp_path / "ab").glob("*/rep-0-exposure-0/**/*") if p.is_file()]
    assert set(left) <= {".simrec.lock"}
    assert set(pd.read_parquet(tmp_path / "ab" / "ab_exposure.parquet").exposure) == {1.0}


def test_exposure_orders_compare_signs_and_leave_non_numbers_tied():
    from simrec.evaluation.ab import _exposure_orders

    m = len(METRICS)
    one = np.tile(np.array([[3.0], [2.0], [2.0], [np.nan]]), (1, m))
    other = one.copy()
    other[0], other[1] = 1.0, 2.5  # a falls below b and c; b rises above c
    by, depends = _exposure_orders({1.0: one, 0.0: other}, list("abcd"))
    first = depends[::m]  # the first metric of each arm
    assert first == ["b,c", "a,c", "a,b", ""]
    assert by.shape == (2 * 4 * m, 5) and by["rank"].isna().sum() == 2 * m
    assert by[by.exposure == 0.0].set_index("arm")["rank"].iloc[::m].tolist()[:3] == [3, 1, 2]
    # a single reading: no order can depend on it
    assert set(_exposure_orders({1.0: one}, list("abcd"))[1]) == {""}


def test_the_verdict_names_each_arms_wins_losses_and_what_is_undefined():
    import pandas as pd

    from simrec.evaluation.ab import verdicts

    def row(metric, arm, lift, significant, note="", depends=""):
        return {
            "metric": metric,
            "arm": arm,
            "control": "A",
            "control_value": 2.0,
            "diff": 2.0 * lift,
            "diff_ci_low": 2.0 * (lift - 0.05),
            "diff_ci_high": 2.0 * (lift + 0.05),
            "lift": lift,
            "p_holm": 0.001 if significant else 0.4,
            "significant": significant,
            "note": note,
            "order_depends_on_exposure_with": depends,
        }

    table = pd.DataFrame(
        [
            row("consumed_per_user", "A", float("nan"), False),
            row("consumed_per_user", "B", 0.12, True, depends="A"),
            row("ctr", "B", 0.10, True),
            row("coverage", "B", -0.30, True),
            row("novelty", "B", 0.01, False),
            row("mean_rating", "B", float("nan"), False, note="n/a: nothing was rated"),
        ]
    )
    (text,) = verdicts(table)
    assert text.startswith("B vs A: consumed per user +12.0% [+7.0%, +17.0%], a difference")
    assert "Higher on: ctr (+10.0%)." in text and "Lower on: coverage (-30.0%)." in text
    assert "No clear difference on: novelty." in text
    assert "mean_rating n/a: nothing was rated." in text
    assert "depends on how much of the log's popularity is exposure" in text
