"""The fidelity report's page: verdict first (ranking, scorecard), plots, the long table last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from simrec import outputs
from simrec.config import RunConfig
from simrec.domain import DOMAINS, Domain
from simrec.evaluation import page as blocks
from simrec.evaluation.fidelity_report.ranking import MIN_RATINGS_PER_ITEM, RESOLVED
from simrec.evaluation.fidelity_report.social import social_verdict
from simrec.evaluation.fidelity_report.split import TARGETS, holdout_kind

SCORECARD = (
    ("discrimination", "1:1", "accuracy", True),
    ("discrimination", "1:1", "f1", True),
    ("discrimination", "1:9", "accuracy", True),
    ("discrimination", "1:9", "f1", True),
    ("discrimination", "1:1", "roc_auc", True),
    ("rating", "held-out", "rmse_expected", False),
)


def scorecard(table: pd.DataFrame) -> pd.DataFrame:
    """simrec against each baseline of the report, one row per (figure, baseline): both values
    and whether simrec is better, by how much."""
    out = []
    for section, setting, metric, higher in SCORECARD:
        rows = table[
            (table.section == section) & (table.setting == setting) & (table.metric == metric)
        ]
        ours = rows[rows.source == "simrec"].value
        if ours.empty:
            continue
        ours_v = float(ours.iloc[0])
        for r in rows[~rows.source.isin(["simrec", "always_no", "llm"])].itertuples():
            gain = (ours_v - r.value) if higher else (r.value - ours_v)
            out.append(
                {
                    "figure": f"{metric} {setting}" if section == "discrimination" else metric,
                    "simrec": ours_v,
                    "baseline": r.source,
                    "baseline_value": float(r.value),
                    "verdict": f"{'better' if gain > 0 else 'worse'} by {abs(gain):.3f}",
                }
            )
    return pd.DataFrame(out)


def strongest_baseline(table: pd.DataFrame) -> str:
    """One sentence: the baseline picker with the highest ROC AUC at 1:1, with its tuned
    parameters, and whether simrec's users tell held-out choices apart better."""
    auc = table[(table.section == "discrimination") & (table.metric == "roc_auc")]
    pickers = auc[~auc.source.isin(["simrec", "always_no", "llm", "oracle"])]
    ours = auc[auc.source == "simrec"].value
    if pickers.empty or ours.empty:
        return "no baseline pickers in this report"
    best = pickers.loc[pickers.value.idxmax()]
    tuned = table[(table.section == "baselines") & (table.setting == "tuned")]
    params = tuned[tuned.source == best.source]
    label = best.source + (
        "(" + ", ".join(f"{r.metric}={r.value:g}" for r in params.itertuples()) + ")"
        if len(params)
        else ""
    )
    ours_v = float(ours.iloc[0])
    return (
        f"the strongest baseline is {label}, tuned on the training log's inner split (ROC AUC "
        f"{best.value:.3f} at 1:1); simrec's users reach {ours_v:.3f}, "
        f"{'better' if ours_v > best.value else 'not better'}"
    )


def ranking_verdict(table: pd.DataFrame) -> str:
    """One sentence: how simrec orders the policies against held-out Recall@20."""
    rk = table[table.section == "ranking"]
    sim = rk[(rk.metric == "consumed_per_user") & (rk.source == "simrec")]
    real = rk[(rk.metric == "recall@20") & (rk.source == "real")]
    taus = rk[(rk.setting == "recall@20") & (rk.metric == "kendall_tau")]
    tau = taus[taus.source == "simrec"].value
    if sim.empty or real.empty or tau.empty:
        return "no policy ranking in this report"
    n = len(sim)
    swapped = round((1 - float(tau.iloc[0])) / 2 * n * (n - 1) / 2)
    order = lambda df: " > ".join(df.sort_values("value", ascending=False).setting)  # noqa: E731
    configured = rk[(rk.setting == "brain") & (rk.metric == "exposure")].value  # readings run
    read = f" (brain.exposure {float(configured.iloc[0]):g})" if len(configured) else ""
    text = (
        f"simulated engagement{read} orders the {n} policies {order(sim)}; held-out Recall@20 "
        f"orders them {order(real)}: Kendall tau {float(tau.iloc[0]):.2f}, {swapped} of "
        f"{n * (n - 1) // 2} pairs swapped{_resampled(rk, n * (n - 1) // 2)}"
    )
    if configured.empty:
        return text
    readings = []
    for source in taus.source[taus.source.str.startswith("simrec, exposure")]:
        watches = rk[(rk.metric == "consumed_per_user") & (rk.source == source)]
        t = float(taus[taus.source == source].value.iloc[0])
        readings.append(
            f"with brain.{source.removeprefix('simrec, ')} {order(watches)} (tau {t:.2f})"
        )
    stable = rk[(rk.setting == "pairs") & (rk.metric == "stable_share")].value
    agree = rk[(rk.setting == "pairs") & (rk.metric == "stable_agree")].value
    depends = rk[rk.metric == "order_depends_on_exposure"].setting
    pairs = ", ".join(p.replace("|", " vs ") for p in depends)
    clue = rk[(rk.setting == "popularity_vs_rating") & (rk.metric == "correlation")].value
    items = rk[(rk.setting == "popularity_vs_rating") & (rk.metric == "items")].value
    return (
        f"{text}. How much of the log's popularity is exposure rather than taste decides part "
        f"of this order, and a log without impressions cannot tell: "
        + "; ".join(readings)
        + f". {float(stable.iloc[0]):.0%} of the pairs keep their order under every reading"
        + (
            f" (held-out Recall@20 orders {int(agree.iloc[0])} of them the same way)"
            if len(agree)
            else ""
        )
        + (f"; these depend on it: {pairs}" if pairs else "")
        + (
            f". A clue the log does hold: over the {int(items.iloc[0])} items with at least "
            f"{MIN_RATINGS_PER_ITEM} ratings, log popularity and mean rating correlate at r = "
            f"{float(clue.iloc[0]):.2f}; the more popularity goes with rating, the more of it "
            f"is likely taste (the exposure 0 reading), the less, exposure"
            if len(clue) and len(items)
            else ""
        )
    )


def _resampled(rk: pd.DataFrame, pairs: int) -> str:
    """The clause of the ranking verdict that says what resampling the users leaves of the
    agreement (rows of ``ranking_uncertainty``; empty without them)."""

    def value(setting: str, metric: str, source: str = "simrec") -> float | None:
        v = rk[(rk.setting == setting) & (rk.metric == metric) & (rk.source == source)].value
        return float(v.iloc[0]) if len(v) else None

    low, high = value("recall@20", "kendall_tau_low"), value("recall@20", "kendall_tau_high")
    real, sim = value("pairs", "resolved_share", "real"), value("pairs", "resolved_share")
    both, agree = value("pairs", "resolved_by_both"), value("pairs", "agree_resolved")
    resamples = value("users", "resamples")
    if None in (low, high, real, sim, both, agree, resamples):
        return ""
    return (
        f" (95% of {int(resamples)} resamples of the users put tau between {low:.2f} and "
        f"{high:.2f}; held-out Recall@20 orders {round(real * pairs)} of the {pairs} pairs the "
        f"same way in at least {RESOLVED:.0%} of them, the simulation {round(sim * pairs)}; of "
        f"the {int(both)} pairs both order firmly, they agree on {int(agree)})"
    )


def targets_met(table: pd.DataFrame) -> pd.DataFrame:
    """One row per target: the figure, the target and whether it is met."""
    out = []
    for (section, setting, metric), (op, target) in TARGETS.items():
        hit = table[
            (table.section == section)
            & (table.setting == setting)
            & (table.metric == metric)
            & (table.source == "simrec")
        ]
        value = float(hit.value.iloc[0]) if len(hit) else float("nan")
        ok = value >= target if op == ">=" else value <= target
        out.append(
            {
                "figure": f"{section} {setting} {metric}",
                "value": value,
                "target": f"{op} {target}",
                "met": bool(ok),
            }
        )
    return pd.DataFrame(out)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """The terminal view: one row per (section, setting, metric), one column per source."""
    t = table[~table.metric.str.startswith("target_")]
    wide = t.pivot_table(
        index=["section", "setting", "metric"], columns="source", values="value", sort=False
    )
    return wide.reset_index()


def write_report(
    out: Path,
    table: pd.DataFrame,
    cfg: RunConfig,
    ratings: dict,
    beh: dict,
    holdout: float,
    domain: Domain = DOMAINS["movies"],
) -> None:
    """``fidelity.parquet`` and ``report.html`` with its plots under ``out``, labelled in
    ``domain``'s words."""
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_parquet(
        pa.Table.from_pandas(table, preserve_index=False), out / "fidelity.parquet"
    )
    plt = blocks.pyplot()
    untimed = (
        ""
        if _timed(table)
        else "<p>This log has no timestamps, so nothing in it is latest: each user's held-out "
        "part is a seeded random draw of their interactions, and its sessions and visits "
        "cannot be measured (their comparisons read n/a).</p>"
    )
    sections = [
        (
            "Can I trust simrec's ranking of policies on this data?",
            f"<p>{blocks.esc(ranking_verdict(table))}.</p>" + untimed,
        ),
        (
            "How well do its users know their own tastes?",
            f"<p>{blocks.esc(strongest_baseline(table)).capitalize()}.</p>"
            + blocks.table(scorecard(table)),
        ),
    ]
    _ranking_plot(plt, table, out, sections, domain)
    if ratings:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        values = np.union1d(np.unique(ratings["real"]), np.unique(ratings["sampled"]))
        width = (values[1] - values[0]) * 0.4 if values.size > 1 else 0.4
        for shift, key, label in ((-0.5, "real", "real (held out)"), (0.5, "sampled", "simrec")):
            counts = np.array([(ratings[key] == v).mean() for v in values])
            ax.bar(values + shift * width, counts, width=width, label=label)
        ax.set_xlabel("rating")
        ax.set_ylabel("share")
        ax.legend()
        sections.append(
            (
                "Ratings",
                blocks.image(blocks.save_figure(fig, out / "ratings.png"), "rating histograms"),
            )
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, name in zip(axes, ("items_per_session", "sessions_per_user_per_tick"), strict=True):
        r, s = beh["real"][name], beh["sim"][name]
        hi = float(np.quantile(np.r_[r, s], 0.99)) if np.r_[r, s].size else 1.0
        bins = np.linspace(0, max(hi, 1e-9), 30)
        ax.hist(r, bins=bins, alpha=0.6, density=True, label="real (training log)")
        ax.hist(s, bins=bins, alpha=0.6, density=True, label="simrec")
        ax.set_title(name.replace("_", " "))
        ax.legend()
    sections.append(
        ("Behaviour", blocks.image(blocks.save_figure(fig, out / "behaviour.png"), "behaviour"))
    )
    friends = social_verdict(table)
    if friends is not None:
        sections.append(("Do friends consume alike?", f"<p>{blocks.esc(friends)}.</p>"))
    sections.append(("Targets", blocks.table(targets_met(table))))
    sections.append(("All figures", blocks.table(summary_table(table))))
    sections.append(
        (
            "Setup",
            "<pre>"
            + blocks.esc(
                json.dumps(
                    {
                        "holdout": holdout,
                        "held out": holdout_kind(_timed(table)),
                        "config": cfg.model_dump(mode="json"),
                    },
                    indent=1,
                )
            )
            + "</pre>",
        )
    )
    blocks.write_page(out, "simrec fidelity report", sections)


def _ranking_plot(plt, table: pd.DataFrame, out: Path, sections: list, domain: Domain) -> None:
    """The policy-ranking scatter: held-out Recall@20 against simulated watches per user."""
    rk = table[table.section == "ranking"]
    sim = rk[(rk.metric == "consumed_per_user") & (rk.source == "simrec")]
    names = list(sim.setting)
    if names:
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in names:
            x = rk[(rk.setting == p) & (rk.metric == "recall@20")].value.iloc[0]
            y = sim[sim.setting == p].value.iloc[0]
            flag = bool(rk[(rk.setting == p) & (rk.metric == "shares_brain_family")].value.iloc[0])
            ax.scatter([x], [y], color="tab:red" if flag else "tab:blue")
            ax.annotate(p + (" (brain's family)" if flag else ""), (x, y), fontsize=8)
        ax.set_xlabel("Recall@20 on held-out real data")
        ax.set_ylabel(f"simulated {domain.items} {domain.verb_past} per user")
        sections.append(
            (
                "Policy ranking",
                blocks.image(blocks.save_figure(fig, out / "ranking.png"), "ranking"),
            )
        )


def _timed(table: pd.DataFrame) -> bool:
    """Whether the report's split held out each user's latest interactions (its ``by_time``
    row; a table without one is from a timed log)."""
    row = table[(table.section == "split") & (table.metric == "by_time")]
    return bool(row.value.iloc[0]) if len(row) else True
