"""Offline A/B tests: the same population against several policies, with common random numbers.

Every arm is a ``simrec.run`` of one config that differs only in ``policy``: the same seed gives
the same calibrated population and the same per-agent random streams (arrivals, examination,
watch and rating draws are keyed by seed, agent, tick and page), so arms differ only through
what the policies show. Replicates repeat the experiment with seeds ``seed + r``.

Per arm, from the events: watches per user, CTR, watches per session, mean rating, session
length (pages per session), return rate (share of users with a session who came back on a
later tick), satisfaction (final, per agent), catalog coverage (share of items shown),
intra-list diversity (mean pairwise genre dissimilarity within a slate) and novelty (mean
self-information ``-log2`` of the share of seed-log users who consumed a shown item).

Differences to the control arm are paired by user: one user-clustered bootstrap
(``scipy.stats.bootstrap``, percentile intervals) resamples (replicate, user) clusters and
recomputes every metric of every arm from the same resample. Two-sided p-values come from the
bootstrap distribution of each difference (``2 (min(#(d <= 0), #(d >= 0)) + 1) / (B + 1)``, so
never below ``2 / (B + 1)``), Holm-corrected across arms and metrics. Coverage is a set-size
statistic: resampling users can only lose items, so its bootstrap distribution sits below the
point estimate and its percentile interval may not contain it (a reflected "basic" interval
was tried and overshoots the other way, past 1); treat coverage intervals as rough.
The minimum detectable effect is ``(z_{1 - alpha/2} + z_{power}) x SE`` of the paired
difference at this population size. With ``m`` tests, Holm needs ``p < alpha / m`` for the
smallest p-value, so ``B`` must exceed ``2 m / alpha`` (2,000 covers 50 tests at 0.05).

Every arm is also ranked on every metric (``rank``: 1 is the highest value), and
``rank_unresolved_with`` names the arms whose order with it fewer than ``1 - alpha`` of the
same resamples keep: an order the population cannot tell, which replicates (or more users)
may settle. It describes each pair on its own, without a correction across pairs.

How much of an item's popularity in the seed log is exposure rather than taste
(``brain.exposure``) is not in a log without impressions. With the statistical brain every arm
is also run at the other readings (``exposures``, by default the ends 0 and 1 of
EXPOSURE_READINGS other than the config's), and ``order_depends_on_exposure_with`` names the
arms whose order with it (by the point values) is not the same under every reading; each
reading's values and ranks go to ``ab_exposure.parquet``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp
from pydantic import ValidationError
from scipy.stats import norm

from simrec import outputs
from simrec.config import (
    PolicyConfig,
    RunConfig,
    exposure_readings,
    format_validation_error,
)
from simrec.environments.base import Recommender
from simrec.errors import ConfigError
from simrec.evaluation.resampling import (
    bootstrap_p_value,
    bootstrap_units,
    holm,
    order_kept,
    resample_weights,
)
from simrec.limits import check_statistics

METRICS = (
    "consumed_per_user",
    "distinct_consumed_per_user",
    "ctr",
    "consumed_per_session",
    "mean_rating",
    "session_length",
    "return_rate",
    "satisfaction",
    "coverage",
    "diversity",
    "novelty",
)
# ratio metrics: (numerator, denominator) columns of the per-user component table
_RATIOS = {
    "consumed_per_user": ("clicks", "one"),
    # distinct items each user consumed in the run: below consumed_per_user where users repeat
    "distinct_consumed_per_user": ("distinct_clicks", "one"),
    "ctr": ("clicks", "impressions"),
    "consumed_per_session": ("clicks", "sessions"),
    "mean_rating": ("rating_sum", "rated"),
    "session_length": ("pages", "sessions"),
    "return_rate": ("returned", "active"),
    "satisfaction": ("satisfaction", "one"),
    "diversity": ("ild_sum", "pages"),
    "novelty": ("novelty_sum", "impressions"),
}
_COMPONENTS = (
    "impressions",
    "clicks",
    "distinct_clicks",
    "sessions",
    "pages",
    "rated",
    "rating_sum",
    "active",
    "returned",
    "satisfaction",
    "one",
    "ild_sum",
    "novelty_sum",
)
_COLUMN = {name: j for j, name in enumerate(_COMPONENTS)}  # component -> its column
_ALWAYS = 64  # users showing an item beyond which every resample covers it (see compare)
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ArmData:
    """Per-(replicate, user) components (n, c) and the shown-items incidence (n, n_items)."""

    components: np.ndarray
    shown: sp.csr_matrix


def parse_arm(spec: str) -> tuple[str, str]:
    """``NAME=POLICY`` -> (name, policy).

    >>> parse_arm("B=als")
    ('B', 'als')
    """
    name, sep, policy = spec.partition("=")
    name, policy = name.strip(), policy.strip()
    if not sep or not name or not policy:
        raise ConfigError(f"--arm: expected NAME=POLICY (e.g. B=als), got {spec!r}")
    if not _ARM_NAME.match(name):
        raise ConfigError(
            f"--arm {spec!r}: arm names may use letters, digits, '_', '.', '-', got {name!r}"
        )
    return name, policy


def ab(
    config: RunConfig | dict | str | Path | None,
    arms: dict[str, str | dict | PolicyConfig | Recommender],
    *,
    out: str | Path | None = None,
    replicates: int = 1,
    control: str | None = None,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    power: float = 0.8,
    exposures: tuple[float, ...] | list[float] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run every arm (and replicate) and return the comparison table (see module docstring).

    ``arms``: arm name -> a policy name, a ``policy`` mapping (name, params, exploration,
    retrain_every), a PolicyConfig, or a Recommender object (each replicate refits it).
    ``control``: the reference arm (default: the first). ``out``: directory for the arms' runs
    and ``ab_results.parquet`` (default ``datasets_out/ab-<run id>``). The table is written
    there as ``ab_results.parquet``, with ``report.html`` and its plots.
    ``exposures``: the ``brain.exposure`` readings every arm is also run at (default:
    EXPOSURE_READINGS with the utility brain, none with an LLM brain); the config's own
    reading is left out. Their values are written to ``ab_exposure.parquet``.
    """
    from simrec.build import as_config
    from simrec.simulator.runner import DEFAULT_OUT, run, run_id_for

    base = as_config(config)
    policies = _arm_policies(arms)
    if len(policies) < 2:
        raise ConfigError(f"ab: expected at least two arms, got {len(policies)}")
    control = control or next(iter(policies))
    if control not in policies:
        raise ConfigError(
            f"--control: expected one of the arms {', '.join(policies)}, got {control!r}"
        )
    check_statistics(n_resamples, alpha, power)
    if not (isinstance(replicates, int) and replicates >= 1):
        raise ConfigError(f"--replicates: expected a positive integer, got {replicates!r}")
    if exposures is None and base.brain.name != "utility":
        exposures = ()  # an LLM brain's runs are costly: its readings only when asked for
    readings = exposure_readings(exposures, base.brain.exposure, "ab exposures")
    out_dir = Path(out) if out else DEFAULT_OUT / f"ab-{run_id_for(base)}"
    taking = {"overwrite": base.output.overwrite, "done": "ab_results.parquet", "what": "A/B test"}
    outputs.check_free(out_dir, "ab", **taking)
    with outputs.owning(out_dir, "ab", **taking):
        # the config's reading first, then each other reading of brain.exposure
        runs_at: dict[float, dict[str, list[Path]]] = {
            e: {name: [] for name in policies} for e in [base.brain.exposure, *readings]
        }
        for r in range(replicates):
            for e, runs in runs_at.items():
                for name, policy in policies.items():
                    cfg = base.model_copy(deep=True)
                    cfg.seed = base.seed + r
                    cfg.name = None
                    cfg.brain.exposure = e
                    folder = f"{name}/rep-{r}" + (
                        "" if e == base.brain.exposure else f"-exposure-{e:g}"
                    )
                    cfg.output.dir = str(out_dir / folder)
                    if base.output.events_uri:  # each arm's parts in a folder of their own
                        cfg.output.events_uri = f"{base.output.events_uri.rstrip('/')}/{folder}"
                    if isinstance(policy, PolicyConfig):
                        cfg.policy = policy
                        res = run(cfg, progress=progress)
                    else:
                        res = run(cfg, policy=policy, progress=progress)
                    runs[name].append(res.run_dir)
        runs = runs_at[base.brain.exposure]
        table, watches, point = _compare(runs, control, n_resamples, alpha, power, base.seed)
        points = {base.brain.exposure: point}
        points.update((e, _Arms.load(runs_at[e]).point()) for e in readings)
        by_reading, table["order_depends_on_exposure_with"] = _exposure_orders(points, list(runs))
        _write_results(out_dir, table, by_reading, runs_at, control, base)
        from simrec.evaluation.report import ab_report

        ab_report(
            out_dir,
            table,
            runs,
            control,
            watches,
            by_reading,
            exposure_dependent_pairs(table),
            verdicts(table),
        )
        table.attrs["out_dir"] = str(out_dir)
        table.attrs["exposure_readings"] = readings
    return table


def exposure_dependent_pairs(table: pd.DataFrame, metric: str = "consumed_per_user") -> list[str]:
    """The pairs of arms ("a|b", names sorted) whose order on ``metric`` depends on the
    exposure reading (the table's ``order_depends_on_exposure_with``), sorted."""
    rows = table[table.metric == metric]
    return sorted(
        {
            "|".join(sorted((r.arm, other)))
            for r in rows.itertuples()
            for other in filter(None, r.order_depends_on_exposure_with.split(","))
        }
    )


def _arm_policies(arms: dict) -> dict[str, PolicyConfig | Recommender]:
    from simrec.environments.registry import make_policy

    out: dict[str, PolicyConfig | Recommender] = {}
    for name, spec in arms.items():
        if not _ARM_NAME.match(str(name)):
            raise ConfigError(f"arm name {name!r}: use letters, digits, '_', '.', '-'")
        if not isinstance(spec, str | dict | PolicyConfig):  # a Recommender object
            out[str(name)] = make_policy(spec)  # checked: name, fit and recommend
            continue
        if isinstance(spec, str):
            policy = PolicyConfig(name=spec)
        elif isinstance(spec, PolicyConfig):
            policy = spec
        else:
            try:
                policy = PolicyConfig.model_validate(spec)
            except ValidationError as err:
                raise ConfigError(format_validation_error(err, f"arm {name}")) from None
        make_policy(policy.name, policy.params, policy.exploration)  # fail before any run
        out[str(name)] = policy
    return out


# ---------------------------------------------------------------------------- analysis


def arm_data(run_dirs: list[Path]) -> tuple[ArmData, int]:
    """Components of every (replicate, user) of one arm's runs; also the catalog size."""
    comps, shown = [], []
    n_items = 0
    for d in run_dirs:
        c, s = _run_components(Path(d))
        comps.append(c)
        shown.append(s)
        n_items = s.shape[1]
    return ArmData(np.concatenate(comps), sp.vstack(shown).tocsr()), n_items


def _run_components(run_dir: Path) -> tuple[np.ndarray, sp.csr_matrix]:
    users = pq.read_table(run_dir / "users.parquet", columns=["final_satisfaction"])
    n = users.num_rows
    items = pq.read_table(run_dir / "items.parquet").to_pandas()
    n_items = len(items)
    ev = outputs.read_events(
        run_dir,
        columns=[
            "event_type",
            "tick",
            "user_id",
            "session_id",
            "slate_id",
            "item_id",
            "clicked",
            "rating",
        ],
        own=True,  # an arm this A/B just ran
    ).to_pandas()
    ev = ev[ev.event_type == "impression"]
    user = ev.user_id.to_numpy(np.int64)
    item = pd.Index(items.item_id).get_indexer(ev.item_id)
    clicked = ev.clicked.to_numpy(bool)
    rating = ev.rating.to_numpy(np.float64, na_value=np.nan)
    rated = np.isfinite(rating)
    comp = np.zeros((n, len(_COMPONENTS)))
    col = _COLUMN
    comp[:, col["impressions"]] = np.bincount(user, minlength=n)
    comp[:, col["clicks"]] = np.bincount(user, weights=clicked, minlength=n)
    pairs = np.unique(user[clicked] * max(len(items), 1) + item[clicked])
    comp[:, col["distinct_clicks"]] = np.bincount(pairs // max(len(items), 1), minlength=n)
    comp[:, col["rated"]] = np.bincount(user, weights=rated, minlength=n)
    comp[:, col["rating_sum"]] = np.bincount(user[rated], weights=rating[rated], minlength=n)
    sessions = ev.drop_duplicates("session_id")
    comp[:, col["sessions"]] = np.bincount(sessions.user_id.to_numpy(np.int64), minlength=n)
    ticks_per_user = np.bincount(
        ev.drop_duplicates(["user_id", "tick"]).user_id.to_numpy(np.int64), minlength=n
    )
    comp[:, col["active"]] = ticks_per_user > 0
    comp[:, col["returned"]] = ticks_per_user > 1
    comp[:, col["satisfaction"]] = users.column("final_satisfaction").to_numpy()
    comp[:, col["one"]] = 1.0
    # novelty: -log2 of the share of seed-log users who consumed the item (from popularity)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    seed_users = max(int(manifest["data"]["users"]), 1)
    pop = items.popularity.to_numpy(np.float64)
    self_info = -np.log2((pop + 1) / (seed_users + 1))
    comp[:, col["novelty_sum"]] = np.bincount(user, weights=self_info[item], minlength=n)
    # intra-list diversity per slate
    slate = ev.slate_id.to_numpy(np.int64)
    slate_codes, slate_idx = np.unique(slate, return_inverse=True)
    slate_user = np.zeros(slate_codes.size, np.int64)
    slate_user[slate_idx] = user
    comp[:, col["pages"]] = np.bincount(slate_user, minlength=n)
    genres = _genre_matrix(items)
    ild = _intra_list_diversity(slate_idx, item, genres, slate_codes.size)
    comp[:, col["ild_sum"]] = np.bincount(slate_user, weights=ild, minlength=n)
    shown = sp.csr_matrix((np.ones(user.size, np.float32), (user, item)), shape=(n, n_items))
    shown.sum_duplicates()
    shown.data[:] = 1.0
    return comp, shown


# the numeric columns of a comparison row: all NaN for a metric the data cannot define
_NUMBERS = [
    *("value", "ci_low", "ci_high", "control_value", "diff", "diff_ci_low", "diff_ci_high"),
    *("lift", "p_value", "mde", "p_holm"),
]


def _has_genres(run_dir: Path) -> bool:
    """Whether the run's catalog gives any item a genre (what diversity is measured in)."""
    genres = pq.read_table(Path(run_dir) / "items.parquet", columns=["genres"]).column("genres")
    return bool(pc.sum(pc.list_value_length(genres)).as_py() or 0)


def verdicts(table: pd.DataFrame, primary: str = "consumed_per_user") -> list[str]:
    """One sentence per arm against the control, the verdict first: the ``primary`` metric's
    relative lift with its 95% interval and whether it holds after Holm's correction, then the
    metrics the arm is significantly higher and lower on, those with no clear difference, and
    those the data cannot define (n/a, with why); where the primary order depends on
    ``brain.exposure``, it says so."""
    out = []
    control = str(table.control.iloc[0])
    for arm in dict.fromkeys(table.arm):
        if arm == control:
            continue
        rows = table[table.arm == arm].set_index("metric")
        p = rows.loc[primary]
        lo, hi = p.diff_ci_low / p.control_value, p.diff_ci_high / p.control_value
        held = "a difference" if p.significant else "no difference"
        text = (
            f"{arm} vs {control}: {primary.replace('_', ' ')} {p.lift:+.1%} "
            f"[{lo:+.1%}, {hi:+.1%}], {held} that holds after Holm's correction "
            f"(p {p.p_holm:.3g})."
        )
        defined = rows[rows.note == ""].drop(index=primary)
        sure = defined[defined.significant.astype(bool)]
        groups = {
            "Higher on": [f"{m} ({r['lift']:+.1%})" for m, r in sure.iterrows() if r["diff"] > 0],
            "Lower on": [f"{m} ({r['lift']:+.1%})" for m, r in sure.iterrows() if r["diff"] < 0],
            "No clear difference on": list(defined.index.difference(sure.index, sort=False)),
        }
        for label, names in groups.items():
            if names:
                text += f" {label}: {', '.join(names)}."
        na = rows[rows.note != ""]
        if len(na):
            text += " " + "; ".join(f"{m} {r.note}" for m, r in na.iterrows()) + "."
        depends = str(p.get("order_depends_on_exposure_with", "") or "")
        if control in depends.split(","):
            text += (
                f" Its order with {control} on {primary.replace('_', ' ')} depends on how much of "
                "the log's popularity is exposure (brain.exposure)."
            )
        out.append(text)
    return out


def _genre_matrix(items: pd.DataFrame) -> sp.csr_matrix:
    """(n_items, n_genres) L2-normalised genre indicators."""
    names = sorted({g for gl in items.genres for g in gl})
    index = {g: j for j, g in enumerate(names)}
    rows = np.repeat(np.arange(len(items)), [len(gl) for gl in items.genres])
    cols = np.array([index[g] for gl in items.genres for g in gl], np.int64)
    m = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(items), max(len(names), 1)))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m


def _intra_list_diversity(
    slate_idx: np.ndarray, item: np.ndarray, genres: sp.csr_matrix, n_slates: int
) -> np.ndarray:
    """Mean pairwise (1 - cosine of genres) within each slate -> (n_slates,); 0 for one item.

    Uses sum_{i != j} x_i . x_j = |sum_i x_i|^2 - sum_i |x_i|^2 per slate.
    """
    x = genres[item]  # (impressions, g)
    member = sp.csr_matrix(
        (np.ones(item.size), (slate_idx, np.arange(item.size))), shape=(n_slates, item.size)
    )
    summed = member @ x  # (slates, g)
    sq_total = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    sq_each = member @ np.asarray(x.multiply(x).sum(axis=1)).ravel()
    size = np.bincount(slate_idx, minlength=n_slates).astype(np.float64)
    pairs = size * (size - 1)
    mean_sim = np.where(pairs > 0, (sq_total - sq_each) / np.maximum(pairs, 1), 1.0)
    return np.where(pairs > 0, 1.0 - mean_sim, 0.0)


class _Arms:
    """The arms' per-(replicate, user) data, and every metric of every arm from any weighting
    of the (replicate, user) clusters."""

    def __init__(self, names: list[str], data: dict[str, ArmData], n_items: int) -> None:
        self.names, self.data, self.n_items = names, data, n_items
        n = {d.components.shape[0] for d in data.values()}
        if len(n) != 1:
            raise ConfigError(
                f"ab: arms have different populations ({sorted(n)} users); not paired"
            )
        self.n_clusters = n.pop()
        # coverage: an item shown to more than _ALWAYS users is in every resample's union (the
        # chance that a resample of n users misses all c of them is (1 - c/n)^n < e^-c <
        # 1e-27); only the rarer items need the (resample x user) @ (user x item) product
        self.always, self.rare = {}, {}
        for name in names:
            per_item = np.asarray(data[name].shown.sum(axis=0)).ravel()
            self.always[name] = int((per_item > _ALWAYS).sum())
            keep = np.flatnonzero((per_item > 0) & (per_item <= _ALWAYS))
            self.rare[name] = data[name].shown[:, keep].T.tocsr()  # (rare items, n)

    @classmethod
    def load(cls, runs: dict[str, list[Path]]) -> _Arms:
        """From finished runs: arm -> run directories, replicate order aligned across arms."""
        data, n_items = {}, 0
        for name in runs:
            data[name], n_items = arm_data(runs[name])
        return cls(list(runs), data, n_items)

    def values(self, weights: np.ndarray) -> np.ndarray:
        """(b, n) cluster counts -> (n_arms, n_metrics, b) metric values."""
        col = _COLUMN
        b = weights.shape[0]
        out = np.empty((len(self.names), len(METRICS), b))
        drawn = (weights > 0).astype(np.float64).T  # (n, b)
        for a, name in enumerate(self.names):
            sums = weights @ self.data[name].components  # (b, c)
            for m, metric in enumerate(METRICS):
                if metric == "coverage":
                    hit = self.rare[name] @ drawn > 0  # (rare items, b)
                    out[a, m] = (self.always[name] + hit.sum(axis=0)) / max(self.n_items, 1)
                    continue
                num, den = _RATIOS[metric]
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[a, m] = sums[:, col[num]] / sums[:, col[den]]
        return out

    def point(self) -> np.ndarray:
        """(n_arms, n_metrics): every metric of every arm on the whole population."""
        return self.values(np.ones((1, self.n_clusters)))[..., 0]


def compare(
    runs: dict[str, list[Path]],
    control: str,
    *,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    power: float = 0.8,
    seed: int = 0,
) -> pd.DataFrame:
    """The comparison table for finished arm runs (``runs``: arm -> run directories, replicate
    order aligned across arms). One row per (metric, arm)."""
    return _compare(runs, control, n_resamples, alpha, power, seed)[0]


def _compare(
    runs: dict[str, list[Path]],
    control: str,
    n_resamples: int,
    alpha: float,
    power: float,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    """compare(), each arm's watches per (replicate, user) for the report, and every metric of
    every arm on the whole population, (arms, metrics)."""
    names = list(runs)
    arms = _Arms.load(runs)
    n_clusters, data = arms.n_clusters, arms.data
    n_metrics, n_arms = len(METRICS), len(names)
    values = arms.values

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        v = values(resample_weights(idx, n_clusters))
        b = v.shape[-1]
        diffs = v - v[names.index(control)][None]
        return np.concatenate([v.reshape(-1, b), diffs.reshape(-1, b)])

    point, res = bootstrap_units(
        statistic, n_clusters, n_resamples=n_resamples, alpha=alpha, seed=seed
    )
    dist = res.bootstrap_distribution
    low, high = res.confidence_interval.low, res.confidence_interval.high
    half = n_arms * n_metrics
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    rows = []
    ctrl = names.index(control)
    for a, name in enumerate(names):
        for m, metric in enumerate(METRICS):
            j = a * n_metrics + m
            dj = half + j
            c_val = point[ctrl * n_metrics + m]
            row = {
                "metric": metric,
                "arm": name,
                "value": point[j],
                "ci_low": low[j],
                "ci_high": high[j],
                "control": control,
                "control_value": c_val,
            }
            if name == control:
                row.update(
                    diff=np.nan,
                    diff_ci_low=np.nan,
                    diff_ci_high=np.nan,
                    lift=np.nan,
                    p_value=np.nan,
                    mde=np.nan,
                )
            else:
                d = dist[dj][np.isfinite(dist[dj])]
                p = bootstrap_p_value(d)
                se = d.std(ddof=1) if d.size > 1 else np.nan
                row.update(
                    diff=point[dj],
                    diff_ci_low=low[dj],
                    diff_ci_high=high[dj],
                    lift=point[dj] / c_val if c_val else np.nan,
                    p_value=p,
                    mde=z * se,
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    ranks, loose = _ranks(
        point[:half].reshape(n_arms, n_metrics),
        dist[:half].reshape(n_arms, n_metrics, -1),
        names,
        alpha,
    )
    table["rank"], table["rank_unresolved_with"] = pd.array(ranks, "Int64"), loose
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    table["n_users"] = n_clusters
    table["note"] = ""
    rated = sum(float(d.components[:, _COLUMN["rated"]].sum()) for d in data.values())
    undefined = {} if rated else {"mean_rating": "n/a: nothing was rated (the log has no ratings)"}
    if not _has_genres(next(iter(runs.values()))[0]):
        undefined["diversity"] = "n/a: the catalog has no genres to differ in"
    for metric, why in undefined.items():  # a metric the data cannot define: no number at all
        at = table.metric == metric
        table.loc[at, _NUMBERS] = np.nan
        table.loc[at, "rank"] = pd.NA
        table.loc[at, ["rank_unresolved_with", "note"]] = ["", why]
        table.loc[at, "significant"] = False
    watches = {name: data[name].components[:, _COLUMN["clicks"]] for name in names}
    return table, watches, point[:half].reshape(n_arms, n_metrics)


def _ranks(
    point: np.ndarray, dist: np.ndarray, names: list[str], alpha: float
) -> tuple[list[int | None], list[str]]:
    """Per (arm, metric) in the table's row order: the arm's rank on the metric (1: the
    highest; tied values share the better rank; None for a value that is not a number), and
    the arms whose order with it fewer than ``1 - alpha`` of the resamples keep,
    comma-separated ("" when none). point: (arms, metrics) values; dist: (arms, metrics,
    resamples) their bootstrap distribution."""
    n_arms, n_metrics, b = dist.shape
    places = _places(point)
    diff = point[:, None, :] - point[None, :, :]  # (arm, other arm, metric)
    kept = order_kept(diff.ravel(), (dist[:, None] - dist[None, :]).reshape(-1, b))
    loose = kept.reshape(diff.shape) < 1 - alpha
    loose[np.arange(n_arms), np.arange(n_arms)] = False
    ranks, unresolved = [], []
    for a in range(n_arms):
        for m in range(n_metrics):
            ranks.append(int(places[a, m]) if np.isfinite(point[a, m]) else None)
            unresolved.append(",".join(names[o] for o in np.flatnonzero(loose[a, :, m])))
    return ranks, unresolved


def _places(point: np.ndarray) -> np.ndarray:
    """(arms, metrics) values -> each arm's rank on each metric: 1 + the number of arms with a
    higher value (tied values share the better rank; a NaN is never higher)."""
    return (point[None, :, :] > point[:, None, :]).sum(axis=1) + 1


def order_changes(values: np.ndarray) -> np.ndarray:
    """Which pairs change order between readings: values (readings, n, ...) -> (n, n, ...)
    bool, True for (i, j) when i is higher, lower or tied with j (a comparison with a value
    that is not a number counts as tied) not alike under every reading.

    >>> order_changes(np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])).astype(int)
    array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]])
    """
    signs = np.sign(np.nan_to_num(values[:, :, None] - values[:, None, :]))
    return (signs != signs[:1]).any(axis=0)


def _exposure_orders(
    points: dict[float, np.ndarray], names: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """How the arms' order depends on ``brain.exposure``. ``points``: reading -> (arms,
    metrics) values, the config's reading first. -> the values and ranks per reading (columns
    exposure, arm, metric, value, rank), and per (arm, metric) in the table's row order the
    arms whose order with it (higher, lower or tied; a comparison with a value that is not a
    number counts as tied) is not the same under every reading, comma-separated."""
    depends = order_changes(np.stack(list(points.values())))  # (arm, other arm, metric)
    rows = [
        {
            "exposure": e,
            "arm": name,
            "metric": metric,
            "value": p[a, m],
            "rank": int(places[a, m]) if np.isfinite(p[a, m]) else None,
        }
        for e, p in points.items()
        for places in [_places(p)]
        for a, name in enumerate(names)
        for m, metric in enumerate(METRICS)
    ]
    by_reading = pd.DataFrame(rows, columns=["exposure", "arm", "metric", "value", "rank"])
    by_reading["rank"] = pd.array(by_reading["rank"], "Int64")
    with_ = [
        ",".join(names[o] for o in np.flatnonzero(depends[a, :, m]))
        for a in range(len(names))
        for m in range(len(METRICS))
    ]
    return by_reading, with_


def _write_results(
    out_dir: Path,
    table: pd.DataFrame,
    by_reading: pd.DataFrame,
    runs_at: dict[float, dict[str, list[Path]]],
    control: str,
    base: RunConfig,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with outputs.replacing(out_dir / "ab_results.parquet") as f:
        table.to_parquet(f, index=False)
    with outputs.replacing(out_dir / "ab_exposure.parquet") as f:
        by_reading.to_parquet(f, index=False)
    runs = runs_at[base.brain.exposure]
    summary = {
        "control": control,
        "arms": {name: [str(p) for p in dirs] for name, dirs in runs.items()},
        "seed": base.seed,
        "replicates": len(next(iter(runs.values()))),
        "exposure": base.brain.exposure,
        "exposure_readings": {
            f"{e:g}": {name: [str(p) for p in dirs] for name, dirs in r.items()}
            for e, r in runs_at.items()
            if e != base.brain.exposure
        },
    }
    outputs.atomic_write(out_dir / "ab_manifest.json", json.dumps(summary, indent=2).encode())
