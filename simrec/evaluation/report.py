"""HTML reports with PNG plots (matplotlib, Agg backend) for runs, A/B tests and OPE, built
from :mod:`simrec.evaluation.page`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from simrec import outputs
from simrec.data.dataset import display_title
from simrec.domain import Domain, domain
from simrec.evaluation import page

_CURVES = (
    "ctr",
    "coverage",
    "consumed_coverage",
    "gini",
    "genre_entropy",
    "mean_satisfaction",
    "active_users",
    "churned_users",
)


# ---------------------------------------------------------------------------- a run


def run_report(
    run_dir: str | Path, out: str | Path | None = None, events_uri: str | None = None
) -> Path:
    """``RUN/report/report.html``: per-tick curves, consumption by position, rating histogram,
    concentration of watches (Lorenz curve), and the run's summary, labelled in the words of
    the run's catalog domain ("bought by position" for products). ``events_uri``: where the
    run's event parts are when not in ``RUN/events`` (never taken from the run directory)."""
    from simrec.errors import InputError

    run_dir = Path(run_dir)
    if outputs.owner_kind(run_dir) == "converse" and (run_dir / "manifest.json").is_file():
        raise InputError(
            f"{run_dir}: a conversation run, not a simulation run; its report is "
            "simrec.conversation.report.conversation_report (simrec report takes either)"
        )
    if not outputs.is_run_manifest(run_dir / "manifest.json"):
        raise InputError(
            f"{run_dir}: incomplete run (no manifest.json) or not simrec's; nothing to report"
        )
    out = Path(out) if out else run_dir / "report"
    with outputs.owning(out, "report", overwrite=False, what="report"):
        plt = page.pyplot()
        manifest = outputs.read_json(run_dir / "manifest.json", "a run's manifest")
        d = run_domain(manifest)
        metrics = pq.read_table(run_dir / "metrics.parquet").to_pandas()
        ev = outputs.read_events(
            run_dir,
            ["event_type", "position", "item_id", "clicked", "rating"],
            manifest,
            events_uri,
        ).to_pandas()
        ev = ev[ev.event_type == "impression"]
        imgs = []
        cols = [c for c in _CURVES if c in metrics]
        fig, axes = plt.subplots(2, (len(cols) + 1) // 2, figsize=(14, 6), squeeze=False)
        for ax, c in zip(axes.ravel(), cols, strict=False):
            ax.plot(metrics.tick, metrics[c], marker=".")
            ax.set_title(c)
            ax.set_xlabel("tick")
        imgs.append(("Per-tick metrics", page.save_figure(fig, out / "metrics.png")))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        by_pos = ev.groupby("position").clicked.mean()
        ax.bar(by_pos.index.astype(int) + 1, by_pos.to_numpy())
        ax.set_xlabel("position")
        ax.set_ylabel(f"{d.verb} rate")
        imgs.append(
            (f"{d.verb_past.capitalize()} by position", page.save_figure(fig, out / "position.png"))
        )
        ratings = ev.rating.dropna()
        if len(ratings):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            values, counts = np.unique(ratings.to_numpy(), return_counts=True)
            ax.bar(
                values,
                counts / counts.sum(),
                width=0.8 * (np.diff(values).min() if values.size > 1 else 1),
            )
            ax.set_xlabel("rating")
            ax.set_ylabel("share of ratings")
            imgs.append(("Ratings", page.save_figure(fig, out / "ratings.png")))
        else:  # a log of implicit feedback: its users rate nothing
            imgs.append(("Ratings", None))
        fig, ax = plt.subplots(figsize=(5, 4))
        counts = np.sort(ev[ev.clicked.astype(bool)].item_id.value_counts().to_numpy())
        n_items = pq.read_metadata(run_dir / "items.parquet").num_rows
        full = np.concatenate([np.zeros(max(n_items - counts.size, 0)), counts])
        if full.sum() > 0:
            ax.plot(np.linspace(0, 1, full.size + 1), np.r_[0, np.cumsum(full) / full.sum()])
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set_xlabel(f"share of {d.items} (least {d.verb_past} first)")
        ax.set_ylabel(f"share of {d.items} {d.verb_past}")
        title = f"Concentration of what is {d.verb_past} (Lorenz)"
        imgs.append((title, page.save_figure(fig, out / "lorenz.png")))
        summary = pd.DataFrame(
            [
                (k, f"{v:,}" if isinstance(v, int) else str(v))
                for k, v in manifest["counts"].items()
            ],
            columns=["count", "value"],
        )
        no_ratings = (
            f"<p>n/a: the log has no ratings (feedback: "
            f"{page.esc(manifest['data'].get('feedback', 'consumption'))}), so its simulated "
            f"users rate nothing they {page.esc(d.verb)}.</p>"
        )
        sections = [(h, page.image(f, h) if f is not None else no_ratings) for h, f in imgs]
        sections.insert(
            0,
            (
                "Run",
                f"<p>run <b>{page.esc(manifest['run_id'])}</b>, policy "
                f"<b>{page.esc(manifest['policy'])}</b>, seed {page.esc(manifest['seed'])}, data "
                f"{page.esc(manifest['data']['source'])}</p>" + page.table(summary),
            ),
        )
        top = _top_watched(run_dir, ev).rename(columns={"watches": d.verb_past})
        sections.append((f"Most {d.verb_past} {d.items}", page.table(top)))
        sections.append(("Metrics per tick", page.table(metrics)))
        return page.write_page(out, f"simrec run {manifest['run_id']}", sections)


def run_domain(manifest: dict) -> Domain:
    """The catalog domain a run's manifest records (runs made before domains: inferred from
    the data's source)."""
    recorded = manifest.get("data", {}).get("domain")
    if isinstance(recorded, dict):
        with contextlib.suppress(ValueError):
            return Domain.model_validate(recorded)
    return domain(None, str(manifest.get("data", {}).get("source", "")))


def _top_watched(run_dir: Path, ev: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    """The ``n`` most watched items with their titles, genres, watches and mean rating."""
    items = pq.read_table(run_dir / "items.parquet", columns=["item_id", "title", "genres"])
    items = items.to_pandas().set_index("item_id")
    watched = ev[ev.clicked.astype(bool)]
    top = watched.groupby("item_id").agg(
        watches=("clicked", "size"), mean_rating=("rating", "mean")
    )
    top = top.sort_values(["watches", "mean_rating"], ascending=False).head(n)
    top = top.join(items, how="left").reset_index()
    top["genres"] = top.genres.map(lambda g: ", ".join(g) if g is not None else "")
    top["title"] = top.title.map(lambda t: display_title(t) if isinstance(t, str) else t)
    top["mean_rating"] = top.mean_rating.round(2)
    return top[["title", "genres", "watches", "mean_rating", "item_id"]]


# ---------------------------------------------------------------------------- A/B


def ab_report(
    out: Path,
    table: pd.DataFrame,
    runs: dict[str, list[Path]],
    control: str,
    watches: dict[str, np.ndarray] | None = None,
    by_reading: pd.DataFrame | None = None,
    exposure_pairs: list[str] | None = None,
    verdict: list[str] | None = None,
) -> Path:
    """``report.html`` in the A/B directory: per-tick curves per arm, distributions of per-user
    differences to the control, a forest plot of lifts with CIs, and the table. ``watches``:
    per arm, watches per (replicate, user) if already computed (else read from the events).
    ``by_reading``: each arm's value and rank per ``brain.exposure`` reading (ab's
    ``ab_exposure.parquet``), shown when it holds more than one reading, with
    ``exposure_pairs``, the pairs of arms whose order depends on the reading
    (:func:`simrec.evaluation.ab.exposure_dependent_pairs`). ``verdict``: the sentences the
    page opens with (:func:`simrec.evaluation.ab.verdicts`)."""
    plt = page.pyplot()
    out.mkdir(parents=True, exist_ok=True)
    curves = {
        name: pd.concat([pq.read_table(Path(d) / "metrics.parquet").to_pandas() for d in dirs])
        .groupby("tick")
        .mean(numeric_only=True)
        for name, dirs in runs.items()
    }
    cols = [
        c
        for c in ("ctr", "coverage", "gini", "mean_satisfaction", "active_users", "genre_entropy")
        if c in next(iter(curves.values()))
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 6), squeeze=False)
    for ax, c in zip(axes.ravel(), cols, strict=False):
        for name, m in curves.items():
            ax.plot(m.index, m[c], marker=".", label=name)
        ax.set_title(c)
        ax.set_xlabel("tick")
    axes.ravel()[0].legend()
    curves_png = page.save_figure(fig, out / "ab_curves.png")
    # per-user differences of watches per user, against the control
    watches = dict(watches) if watches is not None else {}
    for name, dirs in runs.items():
        if name in watches:
            continue
        per = []
        for d in dirs:
            ev = outputs.read_events(Path(d), ["event_type", "user_id", "clicked"], own=True)
            ev = ev.to_pandas()
            ev = ev[ev.event_type == "impression"]
            n = pq.read_metadata(Path(d) / "users.parquet").num_rows
            per.append(np.bincount(ev.user_id, weights=ev.clicked.astype(float), minlength=n))
        watches[name] = np.concatenate(per)
    others = [a for a in runs if a != control]
    manifest = Path(runs[control][0]) / "manifest.json"
    d = run_domain(json.loads(manifest.read_text()) if manifest.is_file() else {})
    fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 3.5), squeeze=False)
    for ax, name in zip(axes.ravel(), others, strict=True):
        diff = watches[name] - watches[control]
        ax.hist(diff, bins=min(60, max(10, int(np.ptp(diff)) + 1)), color="tab:blue")
        ax.axvline(diff.mean(), color="k", ls="--", label=f"mean {diff.mean():+.3f}")
        ax.set_title(f"{name} - {control}: {d.items} {d.verb_past} per user")
        ax.legend()
    diffs_png = page.save_figure(fig, out / "ab_user_differences.png")
    forest_png = _forest(plt, table, control, out / "ab_forest.png")
    shown = table.drop(columns=["control", "n_users"])
    sections = [
        ("Verdict", "".join(f"<p>{page.esc(v)}</p>" for v in verdict or [])),
        ("Lifts with confidence intervals, per metric", page.image(forest_png, "forest plots")),
    ]
    if by_reading is not None and by_reading.exposure.nunique() > 1:
        orders = _exposure_section(table, by_reading, exposure_pairs or [])
        sections.append(("Orders under each exposure reading", orders))
    sections += [
        (f"Table ({int(table.n_users.iloc[0]):,} users per arm)", page.table(shown)),
        ("Per-user differences to the control", page.image(diffs_png, "user differences")),
        ("Per-tick metrics per arm", page.image(curves_png, "per-tick metrics")),
    ]
    return page.write_page(out, f"simrec A/B: {', '.join(runs)} (control {control})", sections)


def _forest(plt, table: pd.DataFrame, control: str, path: Path) -> Path:
    """One forest plot per metric, each on its own axis (a lift of thousands of percent in
    coverage does not flatten the engagement lifts): every arm's relative lift against
    ``control`` with its 95% interval, red where it holds after Holm's correction. Metrics the
    data cannot define (a ``note``) are left out; the verdict and the table say why."""
    rows = table[(table.arm != control) & (table.note == "")]
    metrics = list(dict.fromkeys(rows.metric))
    cols = 3
    n_rows = max(1, -(-len(metrics) // cols))
    arms = list(dict.fromkeys(rows.arm))
    fig, axes = plt.subplots(
        n_rows, cols, figsize=(4.2 * cols, (0.3 * len(arms) + 1.3) * n_rows), squeeze=False
    )
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        r = rows[rows.metric == metric]
        y = np.arange(len(r))[::-1]
        lift = r["lift"].to_numpy(float)
        lo = (r.diff_ci_low / r.control_value).to_numpy(float)
        hi = (r.diff_ci_high / r.control_value).to_numpy(float)
        colors = np.where(r.significant.astype(bool), "tab:red", "tab:grey")
        ax.hlines(y, lo, hi, colors=colors)
        ax.scatter(lift, y, c=colors, zorder=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, list(r.arm))
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:+.0%}")
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    fig.supxlabel(f"relative lift vs {control} (95% CI; red: holds after Holm's correction)")
    return page.save_figure(fig, path)


def _exposure_section(table: pd.DataFrame, by_reading: pd.DataFrame, pairs: list[str]) -> str:
    """The arms' value (rank) per brain.exposure reading, and the ``pairs`` whose order
    changes."""
    cells = by_reading.assign(
        cell=[f"{v:.4g} ({r})" for v, r in zip(by_reading.value, by_reading["rank"], strict=True)],
        exposure=[f"exposure {e:g}" for e in by_reading.exposure],
    ).pivot(index=["metric", "arm"], columns="exposure", values="cell")
    readings = list(dict.fromkeys(f"exposure {e:g}" for e in by_reading.exposure))
    rows = pd.MultiIndex.from_frame(table[["metric", "arm"]])  # the table's order
    cells = cells.reindex(index=rows, columns=readings).reset_index()
    cells.columns.name = None
    intro = (
        "<p>How much of an item's popularity in the seed log is exposure (people came across "
        "it) rather than taste is not in a log without impressions. Every arm was also run at "
        "the other readings of <code>brain.exposure</code>: an order of two arms that changes "
        "between readings rests on that assumption; one that holds under all of them does "
        "not. Each cell is the arm's value (its rank).</p>"
    )
    verdict = (
        f"On consumption per user, the order of {', '.join(pairs)} depends on it."
        if pairs
        else "On consumption per user, no order of two arms depends on it."
    )
    return intro + f"<p><b>{page.esc(verdict)}</b></p>" + page.table(cells)


# ---------------------------------------------------------------------------- OPE


def ope_report(
    out: Path,
    table: pd.DataFrame,
    weights: np.ndarray | None = None,
    warning: str | None = None,
) -> Path:
    """``report.html`` in the OPE directory: estimates with CIs against the simulated truth,
    the support ``warning`` when there is one (:func:`simrec.evaluation.ope.support_warning`),
    and the distribution of the slate weights (``weights``: (n,), when given)."""
    plt = page.pyplot()
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(table))
    v = table.value.to_numpy(float)
    err = np.vstack([v - table.ci_low.to_numpy(float), table.ci_high.to_numpy(float) - v])
    ax.errorbar(x, v, yerr=np.nan_to_num(np.abs(err)), fmt="o", capsize=4)
    if "truth" in table:
        ax.axhline(float(table.truth.iloc[0]), color="tab:red", ls="--", label="simulated truth")
        ax.legend()
    ax.set_xticks(x, table.estimator)
    ax.set_ylabel("first-page value (items consumed)")
    ax.set_title(f"target: {table.target.iloc[0]}")
    png = page.save_figure(fig, out / "ope_estimates.png")
    sections = []
    if warning:
        sections.append(("Warning", f"<p><b>{page.esc(warning)}</b></p>"))
    sections.append(("Estimates against the simulated truth", page.image(png, "OPE estimates")))
    if weights is not None and np.isfinite(weights).any():
        fig, ax = plt.subplots(figsize=(8, 3))
        w = weights[np.isfinite(weights)]
        ax.hist(np.log10(np.maximum(w, 1e-6)), bins=50)
        ax.set_xlabel("log10 slate importance weight (target / logging)")
        ax.set_ylabel("logged first pages")
        png_w = page.save_figure(fig, out / "ope_weights.png")
        sections.append(("Importance weights", page.image(png_w, "slate weight distribution")))
    sections.append(
        (f"Table ({int(table.n_slates.iloc[0]):,} logged first pages)", page.table(table))
    )
    return page.write_page(out, f"simrec OPE: {table.target.iloc[0]}", sections)
