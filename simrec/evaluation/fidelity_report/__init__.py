"""Fidelity: how far to trust the simulated users, measured against held-out real logs.

Per user, the latest ``holdout`` share of interactions is held out; the population and the
statistical brain are calibrated on the rest only (item popularity included). Then:

* **discrimination** (Agent4Rec's protocol): each user's held-out items are mixed with items it
  never interacted with at 1:1, 1:2, 1:3 and 1:9; its agent picks the items whose log
  probability of being its next choice clears a threshold: the choice logit (the brain's watch
  logit without position or friends, plus the item's log exposure: an organic pick needs the
  item to have been come across), normalised over the items the user has not consumed, as a
  user's logits have their own level and one threshold serves every user. The threshold is
  calibrated on the training data alone: the same protocol on an inner temporal split of the
  training log, with a brain fitted on the inner part, maximising the mean F1 over the ratios.
  Baselines: ``always_no``, and pickers calibrated the same way: ``popularity`` (items above a
  popularity percentile), ``itemknn`` and ``als`` (the built-in policies' own scores, fitted on
  the training log); on a synthetic world also ``oracle``, the world's own choice utility under the
  same protocol, the best any model can do there.
* **rating**: RMSE and MAE of the agents' expected and sampled ratings against the held-out
  ratings (baselines: the training mean, item means, and the damped user + item bias); the
  Wasserstein distance between the sampled and the real rating histograms, in rating units
  and as a share of the scale's range.
* **behaviour**: a simulation of every training user (the config's policy, ``ticks`` days)
  against the training log: items per session and sessions per user per day, means and
  Wasserstein distances. A real session is a burst of a user's interactions separated by 30
  minutes without any, and a real user's sessions per day are counted over the user's own
  tenure (at least 30 days), as the personas' arrival rates are; the Gini
  of consumed items and KL(real || simulated) of consumed items over the training catalog's
  popularity deciles (half a count added to each decile). The simulated figures depend on the
  policy the agents meet; the real log came from whatever the service showed its users.
* **ranking**: each policy is simulated the same way (engagement: watches per user) and scored
  offline on the held-out interactions (Recall@20, NDCG@20, training items excluded); Kendall's
  tau and Spearman's rho between the two orders. Policies of the brain's taste-model family
  (``als``, ``bpr`` for ``brain.taste_model: svd``; none for the default ``lda``, a topic
  model) are flagged, each policy's rank shift (real rank minus simulated rank; positive:
  flattered) is reported, and the correlations are also given without the flagged ones. On a
  synthetic world, every policy is also simulated by the ideal simulator (the world's own log
  choice probability as the taste model, same protocol: what the brain's taste model alone
  changes) and scored by ``choice_share@20`` (the world's choice probability held by the
  slate). Every policy is also simulated with ``brain.exposure`` at each of ``exposures``
  other than the config's (by default 0 and 1: log popularity all taste, all exposure), and
  the pairs of policies that the
  readings order differently are named: how much of a log's popularity is exposure is not in
  a log without impressions, and it decides part of the order. The users are resampled
  (:func:`ranking_uncertainty`) for an interval around Kendall's tau and to say which pairs
  each side orders firmly: a held-out log of a few hundred users may not tell close
  policies apart, and a swap of those is not a fault of the simulation.

The result is one long table: section, setting, metric, value, source. :func:`scorecard` and
:func:`ranking_verdict` turn it into the report's first screen.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from simrec import build, outputs
from simrec.config import EXPOSURE_READINGS, RunConfig, exposure_readings
from simrec.data.dataset import Dataset
from simrec.environments.registry import POLICIES as REGISTERED
from simrec.errors import ConfigError
from simrec.evaluation.fidelity_report.baselines import baseline_rows, tuned_baselines
from simrec.evaluation.fidelity_report.behaviour import behaviour, sim_behaviour
from simrec.evaluation.fidelity_report.discrimination import (
    RATIOS,
    Sets,
    brain_scores_of,
    calibrate_threshold,
    calibrated_brain,
    confusion,
    discrimination,
    discrimination_sets,
    scores_table,
)
from simrec.evaluation.fidelity_report.llm_judge import (
    LLM_POSITIVES,
    llm_discrimination,
    llm_ratings,
    prompt_context,
    sample_llm_users,
)
from simrec.evaluation.fidelity_report.page import (
    ranking_verdict,
    scorecard,
    strongest_baseline,
    summary_table,
    targets_met,
    write_report,
)
from simrec.evaluation.fidelity_report.ranking import (
    BRAIN_FAMILIES,
    POLICIES,
    TOP_K,
    exposure_rows,
    metric_means,
    offline_metrics,
    policy_offline_metrics,
    policy_per_user_metrics,
    popularity_rating_rows,
    ranking,
    ranking_uncertainty,
)
from simrec.evaluation.fidelity_report.rating import rating_fidelity
from simrec.evaluation.fidelity_report.social import social_rows
from simrec.evaluation.fidelity_report.split import (
    COLUMNS,
    SECTIONS,
    TARGETS,
    Split,
    temporal_split,
)

__all__ = [
    "BRAIN_FAMILIES",
    "COLUMNS",
    "EXPOSURE_READINGS",
    "LLM_POSITIVES",
    "POLICIES",
    "RATIOS",
    "SECTIONS",
    "TARGETS",
    "TOP_K",
    "Sets",
    "Split",
    "behaviour",
    "brain_scores_of",
    "calibrate_threshold",
    "confusion",
    "discrimination",
    "discrimination_sets",
    "exposure_rows",
    "popularity_rating_rows",
    "ranking_uncertainty",
    "fidelity",
    "llm_discrimination",
    "llm_ratings",
    "offline_metrics",
    "policy_offline_metrics",
    "ranking",
    "ranking_verdict",
    "rating_fidelity",
    "scorecard",
    "scores_table",
    "strongest_baseline",
    "summary_table",
    "targets_met",
    "temporal_split",
]


def fidelity(
    config: RunConfig | dict | str | Path | None = None,
    *,
    holdout: float = 0.2,
    policies: tuple[str, ...] | list[str] = POLICIES,
    out: str | Path | None = None,
    progress: bool = False,
    llm_users: int = 50,
    exposures: tuple[float, ...] | list[float] | None = None,
) -> pd.DataFrame:
    """The fidelity table of the config's data and statistical brain (see the module
    docstring). ``config.simulation.ticks`` is the length of the simulated runs, their
    policy for the behaviour section is ``config.policy``. With ``out``, writes
    ``fidelity.parquet``, ``report.html`` (with plots) and the simulated runs under ``out``.

    With ``brain.name: llm``, the LLM also picks from the lists of ``llm_users`` sampled users
    (their first LLM_POSITIVES held-out items each) and rates their held-out items: rows with
    source ``llm``. The behaviour and ranking simulations still use the statistical brain.

    Each policy is also simulated with ``brain.exposure`` at each of ``exposures`` (other than
    the config's; None: EXPOSURE_READINGS; empty: none), so that the report can say which
    pairs of policies keep their order however much of the log's popularity is exposure (see
    :func:`exposure_rows`)."""
    from simrec.simulator.runner import run

    cfg = build.as_config(config)
    if cfg.brain.name == "hybrid":
        raise ConfigError(
            "fidelity: brain.name: the hybrid brain decides like the statistical one; "
            "evaluate brain 'utility' (or 'llm'), got 'hybrid'"
        )
    if llm_users < 1:
        raise ConfigError(f"fidelity llm_users: expected at least 1, got {llm_users}")
    if cfg.population.users is not None:
        raise ConfigError(
            "fidelity: population.users: the report simulates one agent per real user; "
            f"got {cfg.population.users}"
        )
    exposures = exposure_readings(exposures, cfg.brain.exposure, "fidelity exposures")
    policies = list(dict.fromkeys(policies))
    for p in policies:
        if p not in REGISTERED and ":" not in p:
            raise ConfigError(f"fidelity policies: unknown policy {p!r}; built-in: {POLICIES}")
    if len(policies) < 3:
        raise ConfigError(f"fidelity policies: expected at least 3 to rank, got {policies}")
    out = Path(out) if out is not None else None
    taking = {
        "overwrite": cfg.output.overwrite,
        "done": "fidelity.parquet",
        "what": "fidelity report",
    }
    outputs.check_free(out, "fidelity", **taking)

    data = build.load_data(cfg)
    split = temporal_split(data, holdout, cfg.seed)
    brain, personas = calibrated_brain(split.train, cfg)
    rows: list[tuple] = [
        ("split", "held-out", "by_time", float(split.timed), "real"),
        ("split", "held-out", "interactions", float(len(split.test)), "real"),
        ("split", "training", "interactions", float(len(split.train.interactions)), "real"),
        ("split", "held-out", "users", float(np.unique(split.test.user).size), "real"),
    ]
    baselines = tuned_baselines(split.train, holdout)
    rows += baseline_rows(baselines)
    disc_rows, (sets, brain_scores, theta) = discrimination(split, cfg, brain, holdout, baselines)
    rows += disc_rows
    rating_rows, rating_data = rating_fidelity(split, brain, cfg.seed)
    rows += rating_rows
    llm = None
    if cfg.brain.name == "llm":
        llm = build.make_brain(cfg, brain, split.train)[0]
        ctx = prompt_context(split.train, personas)
        users = sample_llm_users(sets, llm_users, cfg.seed)
        rows += llm_discrimination(llm, ctx, split, sets, users, cfg.seed, brain_scores, theta)[0]
        rows += llm_ratings(llm, ctx, split, users, cfg.seed)

    # simulations: every policy on the training split, one agent per user
    behaviour_policy = cfg.policy.name
    to_run = policies + ([behaviour_policy] if behaviour_policy not in policies else [])
    engagement: dict[str, float] = {}
    ideal: dict[str, float] = {}
    readings: dict[float, dict[str, float]] = {e: {} for e in exposures}
    offline: dict[str, dict[str, float]] = {}
    per_user_watches: dict[str, np.ndarray] = {}  # policy -> (n_users,): agent i is user i
    per_user_recall: dict[str, np.ndarray] = {}  # policy -> (users with held-out items,)
    held_out_users = np.zeros(0, np.int64)
    sim_data, sim_consumed = None, None
    n_users = split.train.interactions.n_users
    n_items = split.train.catalog.n_items
    scratch = tempfile.TemporaryDirectory(prefix="simrec-fidelity-") if out is None else None
    runs_dir = out / "runs" if out is not None else Path(scratch.name)
    with outputs.owning(out, "fidelity", **taking):
        for name in to_run:
            raw = cfg.model_dump(mode="json")
            raw["policy"] = (
                raw["policy"] if name == behaviour_policy else {"name": name, "params": {}}
            )
            folder = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"  # never a path
            raw["output"] = {"dir": str(runs_dir / folder), "overwrite": True}
            raw["brain"]["name"] = "utility"  # an LLM brain is measured above, not simulated
            res = run(raw, data=split.train, progress=progress)
            events = res.events()
            if name in policies:
                engagement[name] = float(res.counts["clicks"]) / n_users
                watched = events[(events.event_type == "impression") & events.clicked]
                per_user_watches[name] = np.bincount(watched.user_id.to_numpy(), minlength=n_users)
                for e in exposures:
                    again = {**raw, "brain": {**raw["brain"], "exposure": e}}
                    again["output"] = {
                        **raw["output"],
                        "dir": raw["output"]["dir"] + f"_exposure_{e:g}",
                    }
                    readings[e][name] = (
                        float(run(again, data=split.train).counts["clicks"]) / n_users
                    )
                if split.train.truth is not None:  # the ideal simulator: the world's own taste
                    raw["brain"].update(taste_model="oracle", click_calibration="in-sample")
                    raw["output"]["dir"] += "_oracle"
                    ideal[name] = float(run(raw, data=split.train).counts["clicks"]) / n_users
                per_user = policy_per_user_metrics(name, split)
                offline[name] = metric_means(per_user)
                per_user_recall[name], held_out_users = per_user["recall"], per_user["users"]
            if name == behaviour_policy:
                events = events.assign(item_index=_item_index(events, split.train))
                sim_data = sim_behaviour(events, n_users, n_items, cfg.simulation.ticks)
                watched = events[(events.event_type == "impression") & events.clicked]
                sim_consumed = sp.csr_matrix(
                    (
                        np.ones(len(watched), np.float32),
                        (watched.user_id.to_numpy(), watched.item_index.to_numpy()),
                    ),
                    shape=(n_users, n_items),
                )
        if scratch is not None:
            scratch.cleanup()
        beh_rows, beh_data = behaviour(split, sim_data, cfg.simulation.tick_seconds)
        rows += beh_rows
        rows += ranking(engagement, offline, BRAIN_FAMILIES[cfg.brain.taste_model], ideal or None)
        rows += ranking_uncertainty(per_user_watches, per_user_recall, held_out_users, cfg.seed)
        if readings:
            rows += exposure_rows(engagement, readings, offline, cfg.brain.exposure)
        rows += social_rows(cfg, split, sim_consumed, cfg.seed)
        rows += popularity_rating_rows(split.train)
        for (section, setting, metric), (op, target) in TARGETS.items():
            rows.append((section, setting, f"target_{metric}", target, op))
        if llm is not None:
            rows += [
                ("llm", "calls", "count", float(llm.calls), "llm"),
                ("llm", "tokens", "prompt", float(llm.prompt_tokens), "llm"),
                ("llm", "tokens", "completion", float(llm.completion_tokens), "llm"),
            ]
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        table["value"] = table["value"].astype(np.float64)
        if out is not None:
            write_report(
                out, table, cfg, rating_data, beh_data, holdout, split.train.catalog.domain
            )
        return table


def _item_index(events: pd.DataFrame, data: Dataset) -> np.ndarray:
    ids = data.catalog.item_ids
    lookup = pd.Index(ids)
    return lookup.get_indexer(events.item_id.to_numpy())
