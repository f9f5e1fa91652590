"""What an impression log says: position bias, preference and exposure, told apart.

``simrec eval impressions LOG [--compare OTHER]`` reads an impression log
(:mod:`simrec.data.impressions`) and fits the position-based click model (PBM; Richardson et
al. 2007, Chuklin, Markov and de Rijke, *Click Models for Web Search*, 2015):
``P(click | item i at position p) = examination[p] x attractiveness[i]``, by
expectation-maximisation, each item's attractiveness shrunk toward the log's mean by an
empirical-Bayes Beta prior (logs of a few dozen clicks over many items are common: the Open
Bandit samples hold 38 to 69). Then:

* **position**: the real click-through at each position with a 95% percentile-bootstrap interval
  over requests, beside the model's prediction out of fold (each half of the requests predicted
  by the model fitted on the other half), and the relative examination ``examination[p] /
  examination[1]`` (only the product of examination and attractiveness is identified, so only
  ratios are reported); ``position_decay``, the brain's ``P(examine p) ~ p ** -decay``, fitted
  to it;
* **exposure decile**: the same, by deciles of items ordered by how often they were shown;
* **exposure**: how impressions grow with consumption, ``shown ~ (clicks + 1) ** exposure`` by
  least squares over items with a bootstrap interval over items: the quantity
  ``brain.exposure`` otherwise assumes (0: shown whatever people chose, as a uniform-random
  logging policy does; 1: an item's share of clicks is its share of exposure);
* **compare** (with a second log of the same catalog, e.g. another logging policy): its real
  click-through with its interval, the click-through the model fitted on the first log
  predicts for it (its items at its positions), and the ratio of the two logs', real and
  predicted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from simrec import outputs
from simrec.agents.impressions import (
    MAX_POSITIONS,
    PositionModel,
    fit_position_model,
    position_decay,
    slope,
)
from simrec.data.dataset import Impressions
from simrec.data.impressions import read_impressions
from simrec.evaluation.resampling import bootstrap_units
from simrec.rng import Streams

__all__ = [
    "COLUMNS",
    "PositionModel",
    "exposure_exponent",
    "fit_position_model",
    "impressions_report",
    "verdict",
]

COLUMNS = ("section", "setting", "metric", "value", "source")
RESAMPLES = 1000
DECILES = 10


def exposure_exponent(
    shown: np.ndarray, consumed: np.ndarray, eligible: np.ndarray | None = None, seed: int = 0
) -> tuple[float, float, float]:
    """``e`` in ``shown / eligible ~ (consumed + 1) ** e``: the least-squares slope of
    log(shown / eligible) on log(consumed + 1) over the items shown at least once, with a 95%
    percentile-bootstrap interval over items. shown, consumed: (n_items,); eligible: (n_items,)
    how many users could have been shown each item (a recommender seldom shows what a user
    already has, which holds popular items back), None: every user, alike -> (e, low, high);
    NaN when consumption does not vary."""
    rate = shown.astype(np.float64)
    if eligible is not None:
        rate = rate / np.maximum(eligible.astype(np.float64), 1.0)
    seen = np.flatnonzero(shown > 0)
    y, x = np.log(rate[seen]), np.log1p(consumed[seen].astype(np.float64))

    def statistic(idx: np.ndarray) -> np.ndarray:
        return slope(x[idx], y[idx])[None, :]

    if seen.size < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan"), float("nan")
    point, res = bootstrap_units(statistic, seen.size, n_resamples=RESAMPLES, alpha=0.05, seed=seed)
    ci = res.confidence_interval
    return float(point[0]), float(ci.low[0]), float(ci.high[0])


def _out_of_fold(imp: Impressions, seed: int) -> np.ndarray:
    """(n,) each row's click probability from the model fitted on the other half of the
    requests (two seeded folds)."""
    n_req = int(imp.request.max()) + 1
    fold = Streams(seed).generator("impression-folds").permutation(n_req)[imp.request] % 2
    out = np.zeros(len(imp))
    for f in (0, 1):
        model = fit_position_model(imp, np.flatnonzero(fold != f))
        mine = np.flatnonzero(fold == f)
        out[mine] = model.click_probability(imp.item[mine], imp.position[mine])
    return out


def _groups_ctr(
    imp: Impressions, group: np.ndarray, n_groups: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Click-through per group of rows, with a 95% bootstrap interval over requests:
    group (n,) in 0..n_groups-1 -> (ctr, low, high, shown), each (n_groups,)."""
    n_req = int(imp.request.max()) + 1
    cell = imp.request * n_groups + group
    shows = np.bincount(cell, minlength=n_req * n_groups).reshape(n_req, n_groups)
    clicks = np.bincount(cell, imp.clicked, n_req * n_groups).reshape(n_req, n_groups)

    def statistic(idx: np.ndarray) -> np.ndarray:
        s, c = shows[idx].sum(axis=-2), clicks[idx].sum(axis=-2)  # (b, g)
        return (c / np.maximum(s, 1)).T

    point, res = bootstrap_units(
        statistic, n_req, n_resamples=RESAMPLES, alpha=0.05, seed=seed, cells_per_unit=n_groups
    )
    ci = res.confidence_interval
    return point, ci.low, ci.high, shows.sum(axis=0)


def _ctr_draws(imp: Impressions, seed: int) -> tuple[float, np.ndarray]:
    """The log's click-through and its bootstrap distribution over requests (RESAMPLES,)."""
    n_req = int(imp.request.max()) + 1
    shows = np.bincount(imp.request, minlength=n_req).astype(np.float64)
    clicks = np.bincount(imp.request, imp.clicked, n_req)

    def statistic(idx: np.ndarray) -> np.ndarray:
        return (clicks[idx].sum(axis=-1) / shows[idx].sum(axis=-1))[None, :]

    point, res = bootstrap_units(statistic, n_req, n_resamples=RESAMPLES, alpha=0.05, seed=seed)
    return float(point[0]), np.asarray(res.bootstrap_distribution)[0]


def impressions_report(
    path: str | Path | Impressions,
    *,
    compare: str | Path | Impressions | None = None,
    columns: dict[str, str] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """The impression table of the log at ``path`` (see the module docstring): columns
    section, setting, metric, value, source. ``compare``: a second log of the same catalog;
    ``columns``: the table layout's field mapping for both. With ``out``, writes
    ``impressions.parquet`` and ``report.html``."""
    out = Path(out) if out is not None else None
    taking = {"overwrite": overwrite, "done": "impressions.parquet", "what": "impression report"}
    outputs.check_free(out, "impressions", **taking)
    imp = path if isinstance(path, Impressions) else read_impressions(path, columns)
    other = None
    if compare is not None:
        other = compare if isinstance(compare, Impressions) else read_impressions(compare, columns)
    with outputs.owning(out, "impressions", **taking):
        table = pd.DataFrame(_rows(imp, other, seed), columns=list(COLUMNS))
        table["value"] = table["value"].astype(np.float64)
        if out is not None:
            outputs.write_parquet(
                pa.Table.from_pandas(table, preserve_index=False), out / "impressions.parquet"
            )
            _write_page(out, table, imp, other)
        return table


def _rows(imp: Impressions, other: Impressions | None, seed: int) -> list[tuple]:
    model = fit_position_model(imp)
    rows: list[tuple] = [
        ("setup", "log", "layout", np.nan, imp.layout),
        ("setup", "log", "rows", float(len(imp)), "real"),
        ("setup", "log", "requests", float(np.unique(imp.request).size), "real"),
        ("setup", "log", "items", float(imp.n_items), "real"),
        ("setup", "log", "clicks", float(imp.clicked.sum()), "real"),
        ("setup", "log", "click_through", float(imp.clicked.mean()), "real"),
    ]
    predicted = _out_of_fold(imp, seed)
    pos = np.minimum(imp.position, MAX_POSITIONS) - 1
    n_pos = int(pos.max()) + 1
    ctr, lo, hi, shown = _groups_ctr(imp, pos, n_pos, seed)
    pred = np.bincount(pos, predicted, n_pos) / np.maximum(shown, 1)
    relative = model.relative_examination
    for p in np.flatnonzero(shown > 0):
        name = str(p + 1) if p + 1 < MAX_POSITIONS else f"{MAX_POSITIONS}+"
        rows += [
            ("position", name, "shown", float(shown[p]), "real"),
            ("position", name, "ctr", float(ctr[p]), "real"),
            ("position", name, "ctr_low", float(lo[p]), "real"),
            ("position", name, "ctr_high", float(hi[p]), "real"),
            ("position", name, "ctr", float(pred[p]), "predicted"),
            ("position", name, "relative_examination", float(relative[p]), "fitted"),
        ]
    rows.append(("position", "all", "position_decay", position_decay(relative, shown), "fitted"))
    rows.append(("position", "all", "within_interval", _within(pred, lo, hi, shown), "predicted"))
    order = np.lexsort((np.arange(imp.n_items), imp.shown()))
    decile_of = np.empty(imp.n_items, np.int64)
    decile_of[order] = np.arange(imp.n_items) * DECILES // imp.n_items
    dec = decile_of[imp.item]
    ctr, lo, hi, shown = _groups_ctr(imp, dec, DECILES, seed)
    pred = np.bincount(dec, predicted, DECILES) / np.maximum(shown, 1)
    for d in np.flatnonzero(shown > 0):
        rows += [
            ("exposure_decile", str(d + 1), "shown", float(shown[d]), "real"),
            ("exposure_decile", str(d + 1), "ctr", float(ctr[d]), "real"),
            ("exposure_decile", str(d + 1), "ctr_low", float(lo[d]), "real"),
            ("exposure_decile", str(d + 1), "ctr_high", float(hi[d]), "real"),
            ("exposure_decile", str(d + 1), "ctr", float(pred[d]), "predicted"),
        ]
    rows.append(
        ("exposure_decile", "all", "within_interval", _within(pred, lo, hi, shown), "predicted")
    )
    e, e_lo, e_hi = exposure_exponent(imp.shown(), imp.clicks(), seed=seed)
    rows += [
        ("exposure", "items", "exponent", e, "estimated"),
        ("exposure", "items", "exponent_low", e_lo, "estimated"),
        ("exposure", "items", "exponent_high", e_hi, "estimated"),
    ]
    if other is not None:
        rows += _compare_rows(imp, other, model, seed)
    return rows


def _within(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray, shown: np.ndarray) -> float:
    """The share of groups whose prediction lies in the real interval."""
    ok = shown > 0
    return float(((pred[ok] >= lo[ok]) & (pred[ok] <= hi[ok])).mean())


def _compare_rows(
    imp: Impressions, other: Impressions, model: PositionModel, seed: int
) -> list[tuple]:
    """The second log's click-through, real (with interval) and predicted by ``model``, and
    the ratio of the two logs', real (interval from independent bootstraps) and predicted."""
    index = pd.Index(imp.item_ids)
    items = index.get_indexer(other.item_ids)[other.item]  # -1: not in the first log
    predicted = float(model.click_probability(items, other.position).mean())
    base, base_draws = _ctr_draws(imp, seed)
    real, real_draws = _ctr_draws(other, seed + 1)
    ratios = real_draws / base_draws
    fitted_base = float(model.click_probability(imp.item, imp.position).mean())
    r_lo, r_hi = np.nanpercentile(ratios, [2.5, 97.5])
    c_lo, c_hi = np.nanpercentile(real_draws, [2.5, 97.5])
    return [
        ("compare", "log", "layout", np.nan, other.layout),
        ("compare", "log", "rows", float(len(other)), "real"),
        ("compare", "log", "unknown_items", float((items < 0).mean()), "real"),
        ("compare", "ctr", "value", real, "real"),
        ("compare", "ctr", "value_low", float(c_lo), "real"),
        ("compare", "ctr", "value_high", float(c_hi), "real"),
        ("compare", "ctr", "value", predicted, "predicted"),
        ("compare", "ratio", "value", real / base, "real"),
        ("compare", "ratio", "value_low", float(r_lo), "real"),
        ("compare", "ratio", "value_high", float(r_hi), "real"),
        ("compare", "ratio", "value", predicted / fitted_base, "predicted"),
    ]


def verdict(table: pd.DataFrame) -> list[str]:
    """The report's first lines: one sentence per question, each with its figure."""
    t = table.set_index(["section", "setting", "metric", "source"]).value
    get = lambda *k: float(t.get(k, np.nan))  # noqa: E731
    pos = table[(table.section == "position") & (table.metric == "relative_examination")]
    last = pos.setting.iloc[-1] if len(pos) else "1"
    decay = get("position", "all", "position_decay", "fitted")
    exam = get("position", last, "relative_examination", "fitted")
    within = {
        s: get(s, "all", "within_interval", "predicted") for s in ("position", "exposure_decile")
    }
    e = [get("exposure", "items", f"exponent{x}", "estimated") for x in ("", "_low", "_high")]
    lines = [
        f"Attention: position {last} is examined {exam:.2f} times as often as position 1 "
        f"(position_decay {decay:.2f}); out of fold, the position model predicts the "
        f"click-through of {within['position']:.0%} of positions and "
        f"{within['exposure_decile']:.0%} of exposure deciles within the real 95% intervals",
        f"Exposure: impressions grow as (clicks + 1) ** {e[0]:.2f} [{e[1]:.2f}, {e[2]:.2f}] (the "
        "brain.exposure the log shows; 0: shown whatever people chose)",
    ]
    if ("compare", "ratio", "value", "real") in t.index:
        real = get("compare", "ratio", "value", "real")
        lo, hi = (
            get("compare", "ratio", "value_low", "real"),
            get("compare", "ratio", "value_high", "real"),
        )
        pred = get("compare", "ratio", "value", "predicted")
        inside = "within" if lo <= pred <= hi else "outside"
        lines.append(
            f"The second log's click-through is {real:.2f} times this log's [{lo:.2f}, {hi:.2f}]; "
            f"the position model fitted here predicts {pred:.2f}, {inside} the interval"
        )
    return lines


def _write_page(out: Path, table: pd.DataFrame, imp: Impressions, other) -> None:
    from simrec.evaluation import page as blocks
    from simrec.evaluation.synthetic.page import section_table

    sections = [
        (
            "What does the impression log say?",
            "<ul>" + "".join(f"<li>{blocks.esc(v)}.</li>" for v in verdict(table)) + "</ul>",
        ),
        (
            "Click-through by position",
            "<p>Real (95% percentile bootstrap over requests) and predicted out of fold by the "
            "position-based model.</p>" + blocks.table(section_table(table, "position")),
        ),
        ("Click-through by exposure decile", blocks.table(section_table(table, "exposure_decile"))),
        ("Exposure", blocks.table(section_table(table, "exposure"))),
    ]
    if other is not None:
        sections.append(("Another log", blocks.table(section_table(table, "compare"))))
    sections.append(
        (
            "Setup",
            f"<p>{blocks.esc(imp.source)} ({blocks.esc(imp.layout)})"
            + (f"; compared with {blocks.esc(other.source)}" if other is not None else "")
            + "</p>"
            + blocks.table(section_table(table, "setup")),
        )
    )
    blocks.write_page(out, "simrec impression report", sections)
