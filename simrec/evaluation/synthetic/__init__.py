"""The synthetic-data report (``simrec eval synthetic``): is simrec's log good training data?

The fidelity / utility / privacy triad of tabular synthetic-data tools (SDMetrics, synthcity),
made for interaction logs. Each user's latest ``holdout`` share of the real log is held out, as
in the fidelity report; the population is calibrated on the rest and simulated, and the
synthetic log (every watched item) is judged against the real one:

* **utility** (train on synthetic, test on real): popularity, item-kNN, EASE and ALS, each tuned
  on an inner split of the log it is trained on (:mod:`~simrec.evaluation.fidelity_report.
  baselines`), trained on the real training log, on the synthetic log alone and on both, and
  folded in to the real users' training histories (:mod:`.foldin`); Recall@20 and NDCG@20 on the
  real held-out items with percentile-bootstrap intervals over users, and each model's
  synthetic / real ratio with its interval;
* **algorithm ranking**: whether the models rank the same when trained and tested within the
  synthetic log (its own temporal split) as within the real one (Kendall tau over the models),
  the question SynEvaRec and Monti et al. ask of synthetic rating data;
* **log fidelity** (:mod:`.logstats`): per-user and per-item distributions, ratings, repeats,
  sessions, genre mix, each beside the real log's with a distance;
* **privacy** (:mod:`.privacy`): how close each synthetic user is to its source's training
  history against how close that person's own held-out part is, and linkage rates.

How the synthetic users are exposed decides what they consume. A log without impressions was
written by people meeting items on their own, so by default they meet slates of the ``organic``
policy at ``brain.exposure``'s reading (items in proportion to ``(interactions + 1) **
exposure``); ``policy`` chooses another (a recommender's log has that recommender's
structure, learnt from the real log). Each synthetic user either continues its source user
(``start="continue"``, the default: what the source consumed is behind it, so the synthetic log
holds only new items) or starts as a new person with the source's tastes (``"fresh"``: free to
consume the source's own items, so the log carries more of the real item-to-item structure and
discloses more of its sources). The report says which setup it used.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from simrec import build, outputs
from simrec.config import RunConfig
from simrec.data.dataset import Dataset, Interactions
from simrec.environments.registry import make_policy
from simrec.errors import ConfigError
from simrec.evaluation.fidelity_report.baselines import TUNED, Tuned, fitted, tune
from simrec.evaluation.fidelity_report.ranking import TOP_K, per_user_metrics
from simrec.evaluation.fidelity_report.split import Split, temporal_split
from simrec.evaluation.resampling import bootstrap_units
from simrec.evaluation.synthetic.foldin import FOLD_IN, FoldedIn
from simrec.evaluation.synthetic.logstats import log_fidelity
from simrec.evaluation.synthetic.privacy import privacy_rows

__all__ = [
    "COLUMNS",
    "RANKING_MODELS",
    "SOURCES",
    "Generated",
    "generate",
    "synthetic",
    "synthetic_log",
    "verdict",
]

COLUMNS = ("section", "setting", "metric", "value", "source")
SOURCES = ("real", "synthetic", "real+synthetic")  # what the utility models are trained on
RANKING_MODELS = ("random", "popular", "itemknn", "ease", "als", "bpr")
RESAMPLES = 1000


DEFAULT_TICKS = 365  # a year of the synthetic users' lives
MAX_CLONES = 50  # synthetic users per real user at most
STARTS = ("continue", "fresh")  # how a synthetic user begins: as its source, or as a new person


def synthetic(
    config: RunConfig | dict | str | Path | None = None,
    *,
    holdout: float = 0.2,
    policy: str | dict[str, Any] | None = None,
    ticks: int | None = None,
    volume: float = 1.0,
    start: str = "continue",
    out: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The synthetic-data table of the config's data and population (see the module
    docstring): columns section, setting, metric, value, source. ``policy``: what the synthetic
    users meet (None: ``organic`` at ``brain.exposure``); ``ticks``: how long they are
    simulated (None: DEFAULT_TICKS); ``volume``: the synthetic log's size as a multiple of the
    real training log's: a pilot run of one agent per user measures how much a user consumes
    in ``ticks``, and each real user gets as many synthetic users (at most MAX_CLONES) as it
    takes; ``start``: one of STARTS (see the module docstring). With ``out``, writes
    ``synthetic.parquet``, ``report.html`` and the synthetic run (``out/run``)."""
    cfg = build.as_config(config)
    if not volume > 0:
        raise ConfigError(f"synthetic volume: expected a positive number, got {volume!r}")
    _check_start(start)
    if ticks is not None and not (isinstance(ticks, int) and ticks > 0):
        raise ConfigError(f"synthetic ticks: expected a positive integer, got {ticks!r}")
    out = Path(out) if out is not None else None
    taking = {
        "overwrite": cfg.output.overwrite,
        "done": "synthetic.parquet",
        "what": "synthetic-data report",
    }
    outputs.check_free(out, "synthetic", **taking)
    data = build.load_data(cfg)
    split = temporal_split(data, holdout, cfg.seed)
    exposure = _exposure_policy(policy, cfg)
    make_policy(exposure)  # an unknown policy or bad parameter: an error before any output
    with outputs.owning(out, "synthetic", **taking):
        gen = generate(
            cfg,
            split.train,
            policy=exposure,
            ticks=ticks,
            volume=volume,
            start=start,
            out=out,
            progress=progress,
        )
        syn, source = gen.log, gen.source
        rows: list[tuple] = [
            ("setup", "exposure", "policy", np.nan, gen.policy),
            ("setup", "agents", "start", np.nan, gen.start),
            ("setup", "simulation", "ticks", float(gen.ticks), "synthetic"),
            ("setup", "simulation", "agents", float(source.size), "synthetic"),
            ("setup", "simulation", "agents_per_user", float(gen.clones), "synthetic"),
            ("setup", "split", "holdout", holdout, "real"),
            ("setup", "split", "by_time", float(split.timed), "real"),
            ("setup", "held-out", "interactions", float(len(split.test)), "real"),
        ]
        syn_data = _as_dataset(split.train, syn, "synthetic log")
        real_tuned = {name: tune(name, split.train) for name in TUNED}  # once, for both sections
        rows += utility_rows(split, syn_data, real_tuned, cfg.seed)
        rows += ranking_rows(split, syn_data, real_tuned, holdout)
        rows += log_fidelity(split.train, syn)
        rows += privacy_rows(
            split.train.interactions, split.test, syn, source, split.train.catalog.n_items, cfg.seed
        )
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        table["value"] = table["value"].astype(np.float64)
        if out is not None:
            from simrec.evaluation.synthetic.page import write_report

            outputs.write_parquet(
                pa.Table.from_pandas(table, preserve_index=False), out / "synthetic.parquet"
            )
            write_report(out, table, cfg)
        return table


@dataclasses.dataclass(frozen=True)
class Generated:
    """A synthetic log and how it was made: ``log`` (its users are the run's agents),
    ``source`` (n_agents,) each agent's source user (an index of the training log's users),
    ``clones`` agents per real user, ``ticks`` simulated days, ``policy`` the exposure's label,
    ``start`` how each agent began (one of STARTS)."""

    log: Interactions
    source: np.ndarray
    clones: int
    ticks: int
    policy: str
    start: str = "continue"


def generate(
    config: RunConfig | dict | str | Path | None,
    train: Dataset,
    *,
    policy: str | dict[str, Any] | None = None,
    ticks: int | None = None,
    volume: float = 1.0,
    start: str = "continue",
    out: str | Path | None = None,
    progress: bool = False,
) -> Generated:
    """The synthetic log of the config's population calibrated on ``train`` (see
    :func:`synthetic`: ``policy``, ``ticks``, ``volume`` and ``start`` mean the same). A pilot
    run of one agent per user measures how much a user consumes in ``ticks``; the run proper has
    as many agents per real user (at most MAX_CLONES) as it takes for ``volume`` times
    ``train``'s log. With ``out``, the run proper is written to ``out/run``; otherwise nothing
    is kept."""
    cfg = build.as_config(config)
    if not volume > 0:
        raise ConfigError(f"synthetic volume: expected a positive number, got {volume!r}")
    _check_start(start)
    raw = cfg.model_dump(mode="json")
    if start == "fresh":
        raw["simulation"]["inherit_history"] = False
    raw["policy"] = _exposure_policy(policy, cfg)
    make_policy(raw["policy"])  # an unknown policy or bad parameter: an error before any run
    raw["simulation"]["ticks"] = ticks or DEFAULT_TICKS
    raw["population"]["users"] = None  # the pilot: one agent per user
    with tempfile.TemporaryDirectory(prefix="simrec-synthetic-") as scratch:
        root = Path(out) if out is not None else Path(scratch)
        raw["output"] = {"dir": str(Path(scratch) / "pilot"), "overwrite": True}
        pilot = _run(raw, train, progress).counts
        n_users = train.interactions.n_users
        per_user = max(pilot["clicks"], 1) / n_users
        clones = int(
            np.clip(round(volume * len(train.interactions) / n_users / per_user), 1, MAX_CLONES)
        )
        raw["population"]["users"] = clones * n_users
        raw["output"] = {"dir": str(root / "run"), "overwrite": True}
        res = _run(raw, train, progress)
        log, source = synthetic_log(res, train)
    return Generated(log, source, clones, raw["simulation"]["ticks"], _label(raw["policy"]), start)


def _check_start(start: str) -> None:
    if start not in STARTS:
        raise ConfigError(f"synthetic start: expected one of {', '.join(STARTS)}, got {start!r}")


def _run(raw: dict[str, Any], train: Dataset, progress: bool):
    from simrec.simulator.runner import run

    return run(raw, data=train, progress=progress)


def _exposure_policy(policy: str | dict[str, Any] | None, cfg: RunConfig) -> dict[str, Any]:
    if policy is None:
        return {"name": "organic", "params": {"exposure": cfg.brain.exposure}}
    if isinstance(policy, str):
        return {"name": policy, "params": {}}
    return dict(policy)


def _label(policy: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in (policy.get("params") or {}).items())
    return f"{policy['name']}({params})" if params else str(policy["name"])


def synthetic_log(res, train: Dataset) -> tuple[Interactions, np.ndarray]:
    """The watched items of a run on ``train`` as a log whose users are the run's agents, and
    each agent's source user (an index of ``train``'s users). -> (log, source (n_agents,))."""
    users = pd.read_parquet(Path(res.run_dir) / "users.parquet", columns=["source_user_id"])
    index = pd.Index(train.interactions.user_ids)
    source = index.get_indexer(users.source_user_id.to_numpy()).astype(np.int64)
    events = res.events()
    watched = events[(events.event_type == "impression") & events.clicked.astype(bool)]
    items = pd.Index(train.catalog.item_ids).get_indexer(watched.item_id.to_numpy())
    seconds = (watched.timestamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    log = Interactions(
        watched.user_id.to_numpy().astype(np.int32),
        items.astype(np.int32),
        watched.rating.to_numpy(np.float32, na_value=np.nan),
        seconds.to_numpy(np.int64),
        np.arange(source.size),
    )
    return log, source


def _as_dataset(train: Dataset, log: Interactions, name: str) -> Dataset:
    """``log`` over ``train``'s catalog; its users are not the world's (no truth)."""
    return dataclasses.replace(train.with_log(log, f"{train.source} ({name})"), truth=None)


def _union(real: Dataset, syn: Dataset) -> Dataset:
    """The real training log and the synthetic one, the synthetic users after the real ones."""
    a, b = real.interactions, syn.interactions
    log = a.appended(b.user + a.n_users, b.item, b.rating, b.timestamp)
    return _as_dataset(real, log, "real + synthetic")


def utility_rows(
    split: Split, syn: Dataset, real_tuned: dict[str, Tuned], seed: int
) -> list[tuple]:
    """Rows (section ``utility``) of each fold-in model trained on each of SOURCES: its tuned
    parameters, Recall@20 and NDCG@20 on the real held-out items with 95% intervals over the
    users, and the synthetic / real ratios with theirs. ``real_tuned``: the tunable models'
    tuning on the real training log (the union of both logs keeps it)."""
    history = split.train.interactions.matrix(split.train.catalog.n_items)
    trained_on = {"real": split.train, "synthetic": syn, "real+synthetic": _union(split.train, syn)}
    rows: list[tuple] = []
    per: dict[tuple[str, str], np.ndarray] = {}
    users = np.zeros(0)
    for name in FOLD_IN:
        for src, data in trained_on.items():
            params: dict[str, Any] = {}
            if name in real_tuned:
                params = (tune(name, data) if src == "synthetic" else real_tuned[name]).params
            model = FoldedIn(name, params, data, history)
            m = per_user_metrics(model, split, TOP_K)
            users = m["users"]
            per[(name, src)] = np.vstack([m["recall"], m["ndcg"]])
            rows += [("utility", name, f"param_{k}", float(v), src) for k, v in params.items()]
    keys = list(per)
    stacked = np.stack([per[k] for k in keys])  # (models x sources, 2, n_users)

    def statistic(idx: np.ndarray) -> np.ndarray:
        means = stacked[:, :, idx].mean(axis=-1)  # (m, 2, b)
        ratios = [
            means[keys.index((n, "synthetic"))] / means[keys.index((n, "real"))] for n in FOLD_IN
        ]
        lift = [
            means[keys.index((n, "real+synthetic"))] - means[keys.index((n, "real"))]
            for n in FOLD_IN
        ]
        return np.concatenate([means.reshape(-1, means.shape[-1]), *ratios, *lift])

    point, res = bootstrap_units(
        statistic, users.size, n_resamples=RESAMPLES, alpha=0.05, seed=seed, cells_per_unit=24
    )
    lo, hi = res.confidence_interval.low, res.confidence_interval.high
    j = 0
    for name, src in keys:
        for metric in (f"recall@{TOP_K}", f"ndcg@{TOP_K}"):
            rows += _with_interval(name, metric, src, point[j], lo[j], hi[j])
            j += 1
    for kind in ("synthetic_over_real", "both_minus_real"):
        for name in FOLD_IN:
            for metric in (f"recall@{TOP_K}", f"ndcg@{TOP_K}"):
                rows += _with_interval(name, f"{metric}_{kind}", "ratio", point[j], lo[j], hi[j])
                j += 1
    rows.append(("utility", "held-out", "users", float(users.size), "real"))
    return rows


def _with_interval(setting, metric, source, value, low, high) -> list[tuple]:
    return [
        ("utility", setting, metric, float(value), source),
        ("utility", setting, f"{metric}_low", float(low), source),
        ("utility", setting, f"{metric}_high", float(high), source),
    ]


def ranking_rows(
    split: Split, syn: Dataset, real_tuned: dict[str, Tuned], holdout: float
) -> list[tuple]:
    """Rows (section ``ranking``): each of RANKING_MODELS (tuned where tunable: on the real
    training log, ``real_tuned``, and on the synthetic log's own training part) trained and
    tested within the real log (its training part, scored on the held-out part) and within the
    synthetic log (its own temporal split), and Kendall's tau between the two orders."""
    try:
        syn_split = temporal_split(syn, holdout)
    except ConfigError:
        return [("ranking", "models", "kendall_tau", float("nan"), "synthetic")]
    rows: list[tuple] = []
    scores: dict[str, list[float]] = {"real": [], "synthetic": []}
    for name in RANKING_MODELS:
        for src, s in (("real", split), ("synthetic", syn_split)):
            params: dict[str, Any] = {}
            if name in real_tuned:
                params = (real_tuned[name] if src == "real" else tune(name, s.train)).params
            recall = float(
                per_user_metrics(fitted(name, params, s.train), s, TOP_K)["recall"].mean()
            )
            scores[src].append(recall)
            rows.append(("ranking", name, f"recall@{TOP_K}", recall, src))
    tau = stats.kendalltau(scores["real"], scores["synthetic"]).statistic
    rows.append(("ranking", "models", "kendall_tau", float(tau), "synthetic"))
    return rows


def verdict(table: pd.DataFrame) -> list[str]:
    """The report's first lines: one sentence per question, each with its figure."""
    t = table.set_index(["section", "setting", "metric", "source"]).value
    get = lambda *k: float(t.get(k, np.nan))  # noqa: E731
    lines = []
    ratios = {
        n: (
            get("utility", n, f"recall@{TOP_K}_synthetic_over_real", "ratio"),
            get("utility", n, f"recall@{TOP_K}_synthetic_over_real_low", "ratio"),
        )
        for n in FOLD_IN
    }
    pop = get("utility", "popular", f"recall@{TOP_K}", "real")
    parts = [f"{n} {r:.2f} (low {lo:.2f})" for n, (r, lo) in ratios.items()]
    beat = [
        n
        for n in ("itemknn", "ease")
        if get("utility", n, f"recall@{TOP_K}_low", "synthetic") > pop
    ]
    lines.append(
        f"Trained on the synthetic log alone, models reach this share of their real-trained "
        f"Recall@{TOP_K} on real held-out data: {'; '.join(parts)} (goal >= 0.8); "
        f"{'and ' + ', '.join(beat) + ' beat' if beat else 'none of item-kNN and EASE beats'} "
        f"popularity trained on the real log ({pop:.3f}) clearly"
    )
    worse = [
        n for n in FOLD_IN if get("utility", n, f"recall@{TOP_K}_both_minus_real_high", "ratio") < 0
    ]
    lines.append(
        "Adding the synthetic log to the real one "
        + (f"makes {', '.join(worse)} worse" if worse else "makes no model clearly worse")
    )
    tau = get("ranking", "models", "kendall_tau", "synthetic")
    lines.append(
        f"Models rank within the synthetic log as within the real one at Kendall tau {tau:.2f} "
        f"over {len(RANKING_MODELS)} models (goal >= 0.8)"
    )
    w, h = (get("privacy", "closeness_to_source", "median", x) for x in ("synthetic", "held-out"))
    s = get("privacy", "closeness_to_source_same_size", "median", "synthetic")
    copied = get("privacy", "source_items", "share", "synthetic")
    linked = {x: get("privacy", "linkage", "rate", x) for x in ("synthetic", "held-out")}
    lines.append(
        f"Privacy: a synthetic user's first items, as many as its source's held-out part, are "
        f"{'no closer' if s <= h else 'closer'} to the source's training history (median "
        f"{s:.3f}) than that held-out part is ({h:.3f}); the whole synthetic history {w:.3f}; "
        f"{copied:.1%} of synthetic interactions are of items in the source's training history; "
        f"linkage {linked['synthetic']:.1%} of synthetic users against {linked['held-out']:.1%} "
        "of held-out parts"
    )
    return lines
