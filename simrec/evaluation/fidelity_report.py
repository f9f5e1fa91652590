"""Fidelity: how far to trust the simulated users, measured against held-out real logs.

Per user, the latest ``holdout`` share of interactions is held out; the population and the
statistical brain are calibrated on the rest only (item popularity included). Then:

* **discrimination** (Agent4Rec's protocol): each user's held-out items are mixed with items it
  never interacted with at 1:1, 1:2, 1:3 and 1:9; its agent picks the items whose choice logit
  (the brain's watch logit without position or friends, plus the item's log exposure: an
  organic pick needs the item to have been come across) clears a threshold. The threshold is
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
  slate).

The result is one long table: section, setting, metric, value, source. :func:`scorecard` and
:func:`ranking_verdict` turn it into the report's first screen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from scipy import stats

from simrec import outputs
from simrec.agents.taste import damped_bias
from simrec.config import RunConfig
from simrec.data.dataset import Dataset, Interactions
from simrec.errors import ConfigError
from simrec.rng import Streams
from simrec.trust import quoted

SECTIONS = ("discrimination", "rating", "behaviour", "ranking")
RATIOS = (1, 2, 3, 9)
POLICIES = ("random", "popular", "itemknn", "als", "bpr", "genre")
FAMILIES = {
    "random": "none",
    "popular": "popularity",
    "itemknn": "neighbourhood",
    "als": "matrix factorisation",
    "bpr": "matrix factorisation",
    "genre": "content",
}
BRAIN_FAMILIES = {  # brain.taste_model -> its family
    "lda": "topic model",
    "svd": "matrix factorisation",
    "oracle": "the world's own",
}
MAX_POSITIVES = 50  # held-out items per user in the discrimination sets
TOP_K = 20
TARGETS = {  # (section, setting, metric): (comparison, value), from the fidelity issue
    ("discrimination", "1:1", "accuracy"): (">=", 0.85),
    ("discrimination", "1:9", "f1"): (">=", 0.65),
    ("rating", "held-out", "rmse_expected"): ("<=", 0.88),
    ("rating", "held-out", "wasserstein_normalised"): ("<=", 0.03),
    ("ranking", "recall@20", "kendall_tau"): (">=", 0.8),
}
COLUMNS = ("section", "setting", "metric", "value", "source")


@dataclass
class Split:
    """train: the calibration data (same catalog, popularity counted on the training rows);
    test: the held-out rows, user indices as in ``train``."""

    train: Dataset
    test: Interactions


def temporal_split(data: Dataset, holdout: float = 0.2) -> Split:
    """Per user, the latest ``floor(holdout * n)`` interactions (by timestamp, then item) are
    held out; users with fewer than ``1 / holdout`` interactions keep all of theirs."""
    if not 0 < holdout < 1:
        raise ConfigError(f"fidelity holdout: expected a share in (0, 1), got {holdout!r}")
    log = data.interactions
    train_rows, test_rows = log.latest(holdout)
    if test_rows.size == 0:
        raise ConfigError(
            f"fidelity: no user has {math.ceil(1 / holdout)} interactions, so nothing is held "
            f"out (holdout {holdout})"
        )
    train_log = log.take(train_rows)
    n_items = data.catalog.n_items
    catalog = dataclasses.replace(
        data.catalog, popularity=np.bincount(train_log.item, minlength=n_items).astype(np.int64)
    )
    train = Dataset(
        catalog,
        train_log,
        data.scale,
        f"{data.source} (training split)",
        data.file_hashes,
        data.truth,
    )
    return Split(train, log.take(test_rows))


# ---------------------------------------------------------------------- discrimination


@dataclass
class _Sets:
    """users, items, labels: (n,) of every (user, item) shown, for the largest ratio; rank:
    (n,) the negative's draw rank within its user (positives -1); n_pos: (n,) positives of
    that user. A ratio r uses the positives and the negatives with rank < r * n_pos."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    rank: np.ndarray
    n_pos: np.ndarray

    def select(self, ratio: int) -> np.ndarray:
        return self.labels | (self.rank < ratio * self.n_pos)


def _discrimination_sets(
    test: Interactions, consumed: sp.csr_matrix, n_items: int, seed: int, purpose: str
) -> _Sets:
    """Held-out items (up to MAX_POSITIVES per user, latest first) and max(RATIOS) times as many
    items the user never interacted with (``consumed``: (n_users, n_items)), drawn uniformly."""
    g = Streams(seed).generator(purpose)
    order = np.lexsort((test.item, -test.timestamp, test.user))
    cols: dict[str, list] = {k: [] for k in ("users", "items", "labels", "rank", "n_pos")}
    top = max(RATIOS)
    users, starts = np.unique(test.user[order], return_index=True)
    ends = np.r_[starts[1:], order.size]
    for u, a, b in zip(users.tolist(), starts.tolist(), ends.tolist(), strict=True):
        pos = pd.unique(test.item[order[a:b]])[:MAX_POSITIVES]
        seen = consumed.indices[consumed.indptr[u] : consumed.indptr[u + 1]]
        free = n_items - np.union1d(seen, pos).size
        need = min(top * pos.size, free)
        neg = np.zeros(0, np.int64)
        while neg.size < need:
            draw = g.integers(0, n_items, 2 * need + 16)
            draw = draw[~np.isin(draw, seen) & ~np.isin(draw, pos)]
            neg = pd.unique(np.concatenate([neg, draw]))[:need]
        n = pos.size + neg.size
        cols["users"].append(np.full(n, u, np.int64))
        cols["items"].append(np.concatenate([pos, neg]).astype(np.int64))
        cols["labels"].append(np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)])
        cols["rank"].append(np.r_[np.full(pos.size, -1), np.arange(neg.size)])
        cols["n_pos"].append(np.full(n, pos.size))
    return _Sets(**{k: np.concatenate(v) for k, v in cols.items()})


def _brain(data: Dataset, cfg: RunConfig):
    """The statistical brain calibrated on ``data``, one agent per user (its personas are
    ``brain.personas``)."""
    from simrec.agents.brains.utility import UtilityBrain

    brain = UtilityBrain(cfg.brain, seed=cfg.seed)
    personas = brain.fit(data)
    brain.bind(personas, Streams(cfg.seed))
    brain.personas = personas
    return brain


def _brain_scores(brain, s: _Sets) -> np.ndarray:
    return brain.choice_logit(s.users, s.items[:, None])[:, 0].astype(np.float64)


PICKERS = ("itemknn", "als")  # policies whose scores are baseline pickers, like popularity


def _picker_scores(name: str, data: Dataset, s: _Sets) -> np.ndarray:
    """The built-in policy ``name`` fitted on ``data`` (default parameters) as a picker: each
    pair scored by the policy's own score of the item for the user. -> (n,) float64."""
    from simrec.environments.policies import make_policy
    from simrec.simulator.model import agent_log

    policy = make_policy(name, {}, None)
    policy.fit(agent_log(data, np.arange(data.interactions.n_users)), data.catalog)
    out = np.empty(s.users.size)
    users = np.unique(s.users)
    for start in range(0, users.size, 2048):
        chunk = users[start : start + 2048]
        rows = np.flatnonzero((s.users >= chunk[0]) & (s.users <= chunk[-1]))
        table = policy.scores(chunk)
        out[rows] = table[np.searchsorted(chunk, s.users[rows]), s.items[rows]]
    return out


def _popularity_scores(data: Dataset, s: _Sets) -> np.ndarray:
    """The item's popularity percentile in the training data (comparable across data sizes)."""
    pct = stats.rankdata(data.catalog.popularity) / data.catalog.n_items
    return pct[s.items]


def _confusion(scores, s: _Sets, ratio: int, threshold: float) -> tuple[int, int, int, int]:
    sel = s.select(ratio)
    pick = scores[sel] >= threshold
    y = s.labels[sel]
    tp = int((pick & y).sum())
    fp = int((pick & ~y).sum())
    fn = int((~pick & y).sum())
    return tp, fp, fn, int(sel.sum()) - tp - fp - fn


def _calibrate_threshold(scores: np.ndarray, s: _Sets) -> float:
    """The threshold maximising the mean F1 over RATIOS (ties: the highest threshold)."""
    grid = np.unique(np.quantile(scores, np.linspace(0, 1, 1025)))
    f1 = np.zeros(grid.size)
    for ratio in RATIOS:
        sel = s.select(ratio)
        pos = np.sort(scores[sel & s.labels])
        neg = np.sort(scores[sel & ~s.labels])
        tp = pos.size - np.searchsorted(pos, grid, side="left")
        fp = neg.size - np.searchsorted(neg, grid, side="left")
        f1 += 2 * tp / np.maximum(2 * tp + fp + (pos.size - tp), 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]
    return float(grid[best])


def _scores_table(rows: list, ratio: int, source: str, tp, fp, fn, tn) -> None:
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    for metric, value in (
        ("accuracy", (tp + tn) / n),
        ("precision", precision),
        ("recall", recall),
        ("f1", f1),
    ):
        rows.append(("discrimination", f"1:{ratio}", metric, value, source))


def discrimination(split: Split, cfg: RunConfig, brain, holdout: float) -> tuple[list, tuple]:
    """Rows of the discrimination section (see the module docstring), and the sets, the
    brain's scores and its threshold (for the LLM's fallback)."""
    n_items = split.train.catalog.n_items
    inner = temporal_split(split.train, holdout)
    inner_brain = _brain(inner.train, cfg)
    inner_sets = _discrimination_sets(
        inner.test, split.train.interactions.matrix(n_items), n_items, cfg.seed, "fid-inner"
    )
    theta = _calibrate_threshold(_brain_scores(inner_brain, inner_sets), inner_sets)
    full = split.train.interactions.matrix(n_items) + split.test.matrix(n_items)
    sets = _discrimination_sets(split.test, full.tocsr(), n_items, cfg.seed, "fid-test")
    brain_scores = _brain_scores(brain, sets)
    # every picker: (its scores on the test sets, its threshold from the inner split)
    pickers = {"simrec": (brain_scores, theta)}
    pop_inner = _popularity_scores(inner.train, inner_sets)
    pickers["popularity"] = (
        _popularity_scores(split.train, sets),
        _calibrate_threshold(pop_inner, inner_sets),
    )
    for name in PICKERS:
        inner_scores = _picker_scores(name, inner.train, inner_sets)
        pickers[name] = (
            _picker_scores(name, split.train, sets),
            _calibrate_threshold(inner_scores, inner_sets),
        )
    truth = split.train.truth
    if truth is not None:  # a synthetic world: what its own choice model reaches, same protocol
        inner_truth = truth.log_choice(inner_sets.users, inner_sets.items)
        pickers["oracle"] = (
            truth.log_choice(sets.users, sets.items),
            _calibrate_threshold(inner_truth, inner_sets),
        )
    rows: list[tuple] = [
        ("discrimination", "calibration", "threshold", th, source)
        for source, (_, th) in pickers.items()
    ]
    for ratio in RATIOS:
        for source, (scores, th) in pickers.items():
            _scores_table(rows, ratio, source, *_confusion(scores, sets, ratio, th))
        _scores_table(rows, ratio, "always_no", *_confusion(brain_scores, sets, ratio, np.inf))
        rows.append(
            ("discrimination", f"1:{ratio}", "pairs", float(sets.select(ratio).sum()), "real")
        )
    # the threshold-free view: how well each score separates held-out from unseen items
    from sklearn.metrics import roc_auc_score

    sel = sets.select(1)
    for source, (scores, _) in pickers.items():
        auc = roc_auc_score(sets.labels[sel], scores[sel])
        rows.append(("discrimination", "1:1", "roc_auc", float(auc), source))
    return rows, (sets, brain_scores, theta)


# ---------------------------------------------------------------------- LLM brains

LLM_POSITIVES = 2  # held-out items per user in the LLM's lists (1:9 -> 20 items)
LLM_RATED = 5  # held-out ratings per user the LLM is asked for


def _llm_users(sets: _Sets, n: int, seed: int) -> np.ndarray:
    """A deterministic sample of ``n`` users of the discrimination sets, sorted."""
    users = np.unique(sets.users)
    if users.size <= n:
        return users
    u = Streams(seed).uniform("fidelity-llm-users", users, 0, 0, 1)[:, 0]
    return np.sort(users[np.argsort(u, kind="stable")[:n]])


def _item_lines(data: Dataset, items: np.ndarray, genres: list[list[str]]) -> str:
    cat = data.catalog
    lines = (f"{cat.titles[i]} ({', '.join(genres[i]) or 'no genre'})" for i in items.tolist())
    return "\n".join(f"{j}. {quoted(line)}" for j, line in enumerate(lines, 1))


def llm_discrimination(
    llm, split: Split, sets: _Sets, users: np.ndarray, seed: int, utility_scores, theta
) -> tuple[list[tuple], dict]:
    """The LLM picks what it would watch from each sampled user's list (its first
    LLM_POSITIVES held-out items and r times as many unseen ones, shuffled), one request per
    user and ratio, all in one backend call. An unusable answer is decided by the statistical
    brain's threshold rule instead and counted."""
    from pydantic import ValidationError

    from simrec.agents.brains import prompts
    from simrec.rng import derive_seed

    data = split.train
    genres = data.catalog.genre_lists()
    ctx = _PromptContext(data, llm.fallback.personas)
    requests, lists = [], []
    for u in users.tolist():
        mine = np.flatnonzero(sets.users == u)
        pos = mine[sets.labels[mine]][:LLM_POSITIVES]
        neg = mine[~sets.labels[mine]]
        neg = neg[np.argsort(sets.rank[neg], kind="stable")]
        for ratio in RATIOS:
            rows = np.r_[pos, neg[: ratio * pos.size]]
            shuffle = Streams(seed).uniform(
                "fidelity-llm-order", np.array([u]), ratio, 0, rows.size
            )
            rows = rows[np.argsort(shuffle[0], kind="stable")]
            schema = prompts.pick_model(rows.size).model_json_schema()
            user_msg = llm.templates["discriminate"].safe_substitute(
                count=rows.size, items=_item_lines(data, sets.items[rows], genres)
            )
            pick_seed = derive_seed(seed, "fidelity-pick", u, ratio)
            requests.append(_request(llm, llm._system(ctx, u), user_msg, schema, pick_seed))
            lists.append((ratio, rows))
    results = llm.backend.complete(requests)
    picks = {r: ([], []) for r in RATIOS}  # ratio -> (labels, picked)
    fallbacks = 0
    for (ratio, rows), res in zip(lists, results, strict=True):
        llm._count(res)
        chosen = None
        if res.ok:
            try:
                answer = prompts.pick_model(rows.size).model_validate(res.parsed)
                if len(set(answer.watch)) == len(answer.watch):
                    chosen = np.zeros(rows.size, bool)
                    chosen[[p - 1 for p in answer.watch]] = True
            except ValidationError:
                pass
        if chosen is None:
            fallbacks += 1
            llm.fallbacks["fidelity_pick_failed"] += 1
            chosen = utility_scores[rows] >= theta
        picks[ratio][0].append(sets.labels[rows])
        picks[ratio][1].append(chosen)
    rows_out: list[tuple] = []
    for ratio in RATIOS:
        y, pick = np.concatenate(picks[ratio][0]), np.concatenate(picks[ratio][1])
        tp, fp = int((pick & y).sum()), int((pick & ~y).sum())
        fn = int((~pick & y).sum())
        _scores_table(rows_out, ratio, "llm", tp, fp, fn, y.size - tp - fp - fn)
        rows_out.append(("discrimination", f"1:{ratio}", "pairs", float(y.size), "llm"))
    rows_out.append(("discrimination", "llm", "users", float(users.size), "llm"))
    rows_out.append(("discrimination", "llm", "fallbacks", float(fallbacks), "llm"))
    return rows_out, {"requests": len(requests)}


def llm_ratings(llm, split: Split, users: np.ndarray, seed: int) -> list[tuple]:
    """Each sampled user rates up to LLM_RATED of its held-out items (one request per user);
    RMSE, MAE and Wasserstein of the LLM's ratings. An unusable answer is left out and
    counted."""
    from pydantic import ValidationError

    from simrec.agents.brains import prompts
    from simrec.rng import derive_seed

    data, test = split.train, split.test
    scale = data.scale
    values = tuple(np.round(np.arange(scale.low, scale.high + 1e-9, scale.step), 3))
    genres = data.catalog.genre_lists()
    ctx = _PromptContext(data, llm.fallback.personas)
    rated = np.isfinite(test.rating)
    requests, truth = [], []
    for u in users.tolist():
        mine = np.flatnonzero((test.user == u) & rated)[:LLM_RATED]
        if mine.size == 0:
            continue
        user_msg = llm.templates["rate"].safe_substitute(
            items=_item_lines(data, test.item[mine].astype(np.int64), genres),
            scale=f"{scale.low:g} to {scale.high:g} in steps of {scale.step:g}",
        )
        schema = prompts.rate_model(mine.size, values).model_json_schema()
        rate_seed = derive_seed(seed, "fidelity-rate", u)
        requests.append(_request(llm, llm._system(ctx, u), user_msg, schema, rate_seed))
        truth.append(test.rating[mine].astype(np.float64))
    if not requests:
        return []
    got, real, failed = [], [], 0
    for res, t in zip(llm.backend.complete(requests), truth, strict=True):
        llm._count(res)
        try:
            if not res.ok:
                raise ValueError(res.error)
            answer = prompts.rate_model(t.size, values).model_validate(res.parsed)
        except (ValueError, ValidationError):
            failed += 1
            llm.fallbacks["fidelity_rating_failed"] += 1
            continue
        got.append(np.array(answer.ratings, np.float64))
        real.append(t)
    rows = [("rating", "held-out", "failed_requests", float(failed), "llm")]
    if got:
        g, r = np.concatenate(got), np.concatenate(real)
        span = float(scale.high - scale.low) or 1.0
        w = float(stats.wasserstein_distance(g, r))
        rows += [
            ("rating", "held-out", "ratings", float(r.size), "llm"),
            ("rating", "held-out", "rmse_sampled", _rmse(g, r), "llm"),
            ("rating", "held-out", "mae_sampled", float(np.abs(g - r).mean()), "llm"),
            ("rating", "held-out", "wasserstein", w, "llm"),
            ("rating", "held-out", "wasserstein_normalised", w / span, "llm"),
        ]
    return rows


def _request(llm, system: str, user: str, schema: dict, seed: int):
    """One request with the LLM brain's sampling settings."""
    from simrec.llm.base import ChatRequest

    return ChatRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
        max_tokens=llm.max_tokens,
        json_schema=schema,
        temperature=llm.temperature,
        seed=seed,
    )


@dataclass
class _PromptContext:
    """What ``LLMBrain._system`` reads from a simulation: the scale and the personas."""

    data: Dataset
    personas: object

    @property
    def scale(self):
        return self.data.scale


# ---------------------------------------------------------------------- ratings


def rating_fidelity(split: Split, brain, seed: int) -> tuple[list[tuple], dict]:
    """Rows of the rating section, and the real and sampled ratings for the plots."""
    test, train = split.test, split.train.interactions
    rated = np.isfinite(test.rating)
    if not rated.any() or not np.isfinite(train.rating).any():
        return [("rating", "held-out", "ratings", 0.0, "real")], {}
    u, i = test.user[rated].astype(np.int64), test.item[rated].astype(np.int64)
    real = test.rating[rated].astype(np.float64)
    rm = brain.rating_model
    expected = rm.expected(u, i).astype(np.float64)
    z = Streams(seed).generator("fidelity-ratings").standard_normal(real.size)
    sampled = rm.sample(expected, z)
    tr = np.isfinite(train.rating)
    mu = float(train.rating[tr].mean())
    n_items = split.train.catalog.n_items
    n_i = np.bincount(train.item[tr], minlength=n_items)
    item_mean = np.bincount(train.item[tr], train.rating[tr], n_items) / np.maximum(n_i, 1)
    item_mean = np.where(n_i > 0, item_mean, mu)[i]
    mu_b, b_u, b_i = damped_bias(split.train.interactions, n_items)
    span = float(rm.scale.high - rm.scale.low) or 1.0
    w = stats.wasserstein_distance(sampled, real)
    rows = [("rating", "held-out", "ratings", float(real.size), "real")]
    for name, pred, source in (
        ("expected", expected, "simrec"),
        ("sampled", sampled, "simrec"),
        ("expected", np.full(real.size, mu), "global_mean"),
        ("expected", item_mean, "item_mean"),
        ("expected", mu_b + b_u[u] + b_i[i], "damped_bias"),
    ):
        rows.append(("rating", "held-out", f"rmse_{name}", _rmse(pred, real), source))
        rows.append(
            ("rating", "held-out", f"mae_{name}", float(np.abs(pred - real).mean()), source)
        )
    rows += [
        ("rating", "held-out", "wasserstein", float(w), "simrec"),
        ("rating", "held-out", "wasserstein_normalised", float(w / span), "simrec"),
        ("rating", "held-out", "mean", float(sampled.mean()), "simrec"),
        ("rating", "held-out", "mean", float(real.mean()), "real"),
    ]
    return rows, {"real": real, "sampled": sampled}


def _rmse(pred: np.ndarray, real: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - real) ** 2)))


# ---------------------------------------------------------------------- behaviour


def _real_behaviour(data: Dataset, tick_seconds: int) -> dict[str, np.ndarray]:
    """The log's behaviour measured as the simulation's is: sessions are bursts separated by
    30 minutes without interactions (:meth:`Interactions.sessions`); a user's sessions per tick
    are counted over the user's own tenure (at least MIN_TENURE_DAYS), since a simulated
    user is one using the service now, as the personas' arrival rates are."""
    from simrec.agents.persona import MIN_TENURE_DAYS

    log = data.interactions
    sessions = log.sessions()
    per_day = sessions.rate_per_day(MIN_TENURE_DAYS)
    return {
        "items_per_session": sessions.size.astype(np.float64),
        "sessions_per_user_per_tick": per_day * tick_seconds / 86400.0,
        "consumed": np.bincount(log.item, minlength=data.catalog.n_items),
    }


def _sim_behaviour(events: pd.DataFrame, n_agents: int, n_items: int, ticks: int) -> dict:
    imp = events[events.event_type == "impression"]
    per_session = imp.groupby("session_id").clicked.sum().to_numpy()
    users = imp.drop_duplicates("session_id").user_id.to_numpy()
    watched = imp[imp.clicked]
    return {
        "items_per_session": per_session[per_session > 0].astype(np.float64),
        "sessions_per_user_per_tick": np.bincount(users, minlength=n_agents) / ticks,
        "consumed": watched.item_index.to_numpy(),
    }


def behaviour(split: Split, sim: dict, tick_seconds: int) -> tuple[list[tuple], dict]:
    """Rows of the behaviour section: simulated (``sim`` from one run) against the training
    log."""
    from simrec.simulator.model import gini

    real = _real_behaviour(split.train, tick_seconds)
    n_items = split.train.catalog.n_items
    sim_consumed = np.bincount(sim["consumed"], minlength=n_items)
    rows = []
    for name in ("items_per_session", "sessions_per_user_per_tick"):
        r, s = real[name], sim[name]
        rows += [
            ("behaviour", name, "mean", float(s.mean()) if s.size else float("nan"), "simrec"),
            ("behaviour", name, "mean", float(r.mean()), "real"),
            (
                "behaviour",
                name,
                "wasserstein",
                float(stats.wasserstein_distance(s, r)) if s.size else float("nan"),
                "simrec",
            ),
        ]
    # popularity deciles of the training catalog; where consumption falls, real vs simulated
    pop = split.train.catalog.popularity
    decile = np.minimum((stats.rankdata(pop, method="ordinal") - 1) * 10 // pop.size, 9)
    # half a count added to every decile (Jeffreys), so an empty decile gives a finite KL
    p_real = np.bincount(decile, weights=real["consumed"], minlength=10) + 0.5
    p_sim = np.bincount(decile, weights=sim_consumed, minlength=10) + 0.5
    kl = float(stats.entropy(p_real / p_real.sum(), p_sim / p_sim.sum()))
    rows += [
        ("behaviour", "consumed_popularity", "gini", gini(sim_consumed), "simrec"),
        ("behaviour", "consumed_popularity", "gini", gini(real["consumed"]), "real"),
        ("behaviour", "consumed_popularity", "kl_deciles", kl, "simrec"),
    ]
    return rows, {"real": real, "sim": sim, "p_real": p_real, "p_sim": p_sim}


# ---------------------------------------------------------------------- ranking


def offline_metrics(policy, split: Split, k: int = TOP_K) -> dict[str, float]:
    """Mean ``recall@k`` and ``ndcg@k`` of ``policy`` (already fitted on the training log, one
    agent per user) on the held-out items, training items excluded. On a synthetic world also
    ``choice_share@k``: the share of the world's choice probability over the user's unseen items
    that the slate holds, the noise-free quantity Recall@k estimates from a finite sample."""
    from simrec.environments.base import PolicyRandomness

    n_items = split.train.catalog.n_items
    train_m = split.train.interactions.matrix(n_items)
    test_m = split.test.matrix(n_items)
    truth = split.train.truth
    users = np.flatnonzero(np.diff(test_m.indptr) > 0).astype(np.int64)
    streams = Streams(0)
    recall, ndcg, share = [], [], []
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for start in range(0, users.size, 1024):
        u = users[start : start + 1024]
        seen = train_m[u]
        slates = policy.recommend(
            u, k, exclude=seen, rng=PolicyRandomness(streams, 0, 0, purpose="fidelity")
        )
        rel_m = test_m[u]
        for row, items in enumerate(slates.items):
            rel = rel_m.indices[rel_m.indptr[row] : rel_m.indptr[row + 1]]
            hit = np.isin(items, rel) & (items >= 0)
            recall.append(hit.sum() / rel.size)
            ideal = discount[: min(rel.size, k)].sum()
            ndcg.append(float((hit * discount).sum() / ideal))
        if truth is not None:
            share.append(_choice_share(truth, u, seen, slates.items))
    out = {f"recall@{k}": float(np.mean(recall)), f"ndcg@{k}": float(np.mean(ndcg))}
    if truth is not None:
        out[f"choice_share@{k}"] = float(np.concatenate(share).mean())
    return out


def _choice_share(truth, users: np.ndarray, seen: sp.csr_matrix, slates: np.ndarray):
    """Per user, the world's choice probability (softmax of its utility over the items the user
    has not seen) summed over the slate. users: (n,), seen: (n, n_items), slates: (n, k) with -1
    for empty slots -> (n,)."""
    n_items = truth.item_vecs.shape[0]
    util = truth.utility_matrix(users)
    util[seen.nonzero()] = -np.inf
    util -= util.max(axis=1, keepdims=True)
    p = np.exp(util)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(users.size)[:, None]
    return np.where(slates >= 0, p[rows, np.clip(slates, 0, n_items - 1)], 0.0).sum(axis=1)


def ranking(
    engagement: dict[str, float],
    offline: dict[str, dict[str, float]],
    brain_family: str = BRAIN_FAMILIES["svd"],
    ideal: dict[str, float] | None = None,
) -> list:
    """Rows of the ranking section from per-policy simulated engagement and offline metrics
    (:func:`offline_metrics`); policies of ``brain_family`` (the brain's taste model's) are
    flagged. ``rank_shift`` is a policy's rank by Recall@20 minus its simulated rank (positive:
    the simulation flatters it). On a synthetic world, ``ideal`` is each policy's engagement
    simulated with the world's own taste model (source ``oracle``): the correlations with it,
    and ``rank_shift_vs_oracle``, are what the brain's taste model alone changes, the protocol
    (examination, sessions, return) being the same; its own correlations with the offline
    metrics (source ``oracle``) are the most any taste model can reach under that protocol."""
    rows: list[tuple] = []
    names = list(engagement)
    sim = np.array([engagement[p] for p in names])
    sim_rank = stats.rankdata(-sim)
    against = {m: np.array([offline[p][m] for p in names]) for m in offline[names[0]]}
    if ideal is not None:
        against["oracle_simulation"] = np.array([ideal[p] for p in names])
    shifts = {"recall@20": "rank_shift", "oracle_simulation": "rank_shift_vs_oracle"}
    for j, p in enumerate(names):
        rows.append(("ranking", p, "watches_per_user", engagement[p], "simrec"))
        for metric, values in against.items():
            if metric == "oracle_simulation":
                rows.append(("ranking", p, "watches_per_user", values[j], "oracle"))
            else:
                source = "oracle" if metric.startswith("choice_share") else "real"
                rows.append(("ranking", p, metric, values[j], source))
        family = float(FAMILIES.get(p) == brain_family)
        rows.append(("ranking", p, "shares_brain_family", family, "simrec"))
    keep = np.array([FAMILIES.get(p) != brain_family for p in names])
    for metric, values in against.items():
        if metric in shifts:
            for p, a, b in zip(names, sim_rank, stats.rankdata(-values), strict=True):
                rows.append(("ranking", p, shifts[metric], float(b - a), "simrec"))
        for suffix, mask in (("", np.ones(len(names), bool)), ("_without_brain_family", keep)):
            tau = rho = float("nan")
            if mask.sum() >= 3:
                tau = float(stats.kendalltau(sim[mask], values[mask]).statistic)
                rho = float(stats.spearmanr(sim[mask], values[mask]).statistic)
            rows += [
                ("ranking", metric, f"kendall_tau{suffix}", tau, "simrec"),
                ("ranking", metric, f"spearman_rho{suffix}", rho, "simrec"),
            ]
        if ideal is not None and metric != "oracle_simulation":  # the protocol's ceiling
            best = against["oracle_simulation"]
            tau = float(stats.kendalltau(best, values).statistic)
            rho = float(stats.spearmanr(best, values).statistic)
            rows += [
                ("ranking", metric, "kendall_tau", tau, "oracle"),
                ("ranking", metric, "spearman_rho", rho, "oracle"),
            ]
    rows.append(("ranking", "policies", "count", float(len(names)), "simrec"))
    return rows


# ---------------------------------------------------------------------- the report


def fidelity(
    config: RunConfig | dict | str | Path | None = None,
    *,
    holdout: float = 0.2,
    policies: tuple[str, ...] | list[str] = POLICIES,
    out: str | Path | None = None,
    progress: bool = False,
    llm_users: int = 50,
) -> pd.DataFrame:
    """The fidelity table of the config's data and statistical brain (see the module
    docstring). ``config.simulation.ticks`` is the length of the simulated runs, their
    policy for the behaviour section is ``config.policy``. With ``out``, writes
    ``fidelity.parquet``, ``report.html`` (with plots) and the simulated runs under ``out``.

    With ``brain.name: llm``, the LLM also picks from the lists of ``llm_users`` sampled users
    (their first LLM_POSITIVES held-out items each) and rates their held-out items: rows with
    source ``llm``. The behaviour and ranking simulations still use the statistical brain."""
    import simrec
    from simrec.environments.policies import make_policy
    from simrec.simulator.model import agent_log
    from simrec.simulator.runner import _as_config, load_data

    cfg = _as_config(config)
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
    policies = list(dict.fromkeys(policies))
    for p in policies:
        if p not in FAMILIES and ":" not in p:
            raise ConfigError(f"fidelity policies: unknown policy {p!r}; built-in: {POLICIES}")
    if len(policies) < 3:
        raise ConfigError(f"fidelity policies: expected at least 3 to rank, got {policies}")
    out = Path(out) if out is not None else None
    if out is not None:
        owned = outputs.check_out_dir(out, "fidelity")
        if owned and (out / "fidelity.parquet").exists() and not cfg.output.overwrite:
            raise ConfigError(f"{out}: already holds a fidelity report; use --overwrite")

    data = load_data(cfg)
    split = temporal_split(data, holdout)
    brain = _brain(split.train, cfg)
    rows: list[tuple] = [
        ("split", "held-out", "interactions", float(len(split.test)), "real"),
        ("split", "training", "interactions", float(len(split.train.interactions)), "real"),
        ("split", "held-out", "users", float(np.unique(split.test.user).size), "real"),
    ]
    disc_rows, (sets, brain_scores, theta) = discrimination(split, cfg, brain, holdout)
    rows += disc_rows
    rating_rows, rating_data = rating_fidelity(split, brain, cfg.seed)
    rows += rating_rows
    llm = None
    if cfg.brain.name == "llm":
        from simrec.simulator.runner import _llm_brain

        llm = _llm_brain(cfg, brain)
        users = _llm_users(sets, llm_users, cfg.seed)
        rows += llm_discrimination(llm, split, sets, users, cfg.seed, brain_scores, theta)[0]
        rows += llm_ratings(llm, split, users, cfg.seed)

    # simulations: every policy on the training split, one agent per user
    behaviour_policy = cfg.policy.name
    to_run = policies + ([behaviour_policy] if behaviour_policy not in policies else [])
    engagement: dict[str, float] = {}
    ideal: dict[str, float] = {}
    offline: dict[str, dict[str, float]] = {}
    sim_data = None
    n_users = split.train.interactions.n_users
    n_items = split.train.catalog.n_items
    scratch = tempfile.TemporaryDirectory(prefix="simrec-fidelity-") if out is None else None
    runs_dir = out / "runs" if out is not None else Path(scratch.name)
    if out is not None:  # everything checked: the report's folder is written from here on
        if cfg.output.overwrite:
            outputs.clear_own(out, "fidelity")
        outputs.claim(out, "fidelity")
    for name in to_run:
        raw = cfg.model_dump(mode="json")
        raw["policy"] = raw["policy"] if name == behaviour_policy else {"name": name, "params": {}}
        folder = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"  # never a path
        raw["output"] = {"dir": str(runs_dir / folder), "overwrite": True}
        raw["brain"]["name"] = "utility"  # an LLM brain is measured above, not simulated
        res = simrec.run(raw, data=split.train, progress=progress)
        events = res.events()
        if name in policies:
            engagement[name] = float(res.counts["clicks"]) / n_users
            if split.train.truth is not None:  # the ideal simulator: the world's own taste
                raw["brain"].update(taste_model="oracle", click_calibration="in-sample")
                raw["output"]["dir"] += "_oracle"
                ideal[name] = float(simrec.run(raw, data=split.train).counts["clicks"]) / n_users
            policy = make_policy(name, {}, None)
            log = agent_log(split.train, np.arange(n_users))
            policy.fit(log, split.train.catalog)
            offline[name] = offline_metrics(policy, split)
        if name == behaviour_policy:
            events = events.assign(item_index=_item_index(events, split.train))
            sim_data = _sim_behaviour(events, n_users, n_items, cfg.simulation.ticks)
    if scratch is not None:
        scratch.cleanup()
    beh_rows, beh_data = behaviour(split, sim_data, cfg.simulation.tick_seconds)
    rows += beh_rows
    rows += ranking(engagement, offline, BRAIN_FAMILIES[cfg.brain.taste_model], ideal or None)
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
        _write(out, table, cfg, rating_data, beh_data, holdout)
    return table


def _item_index(events: pd.DataFrame, data: Dataset) -> np.ndarray:
    ids = data.catalog.item_ids
    lookup = pd.Index(ids)
    return lookup.get_indexer(events.item_id.to_numpy())


# (section, setting, metric, higher is better) of the scorecard, each against every baseline
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


def ranking_verdict(table: pd.DataFrame) -> str:
    """One sentence: how simrec orders the policies against held-out Recall@20."""
    rk = table[table.section == "ranking"]
    sim = rk[(rk.metric == "watches_per_user") & (rk.source == "simrec")]
    real = rk[(rk.metric == "recall@20") & (rk.source == "real")]
    tau = rk[(rk.setting == "recall@20") & (rk.metric == "kendall_tau")].value
    if sim.empty or real.empty or tau.empty:
        return "no policy ranking in this report"
    n = len(sim)
    swapped = round((1 - float(tau.iloc[0])) / 2 * n * (n - 1) / 2)
    order = lambda df: " > ".join(df.sort_values("value", ascending=False).setting)  # noqa: E731
    return (
        f"simulated engagement orders the {n} policies {order(sim)}; held-out Recall@20 orders "
        f"them {order(real)}: Kendall tau {float(tau.iloc[0]):.2f}, {swapped} of "
        f"{n * (n - 1) // 2} pairs swapped"
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


def _write(out: Path, table: pd.DataFrame, cfg: RunConfig, ratings: dict, beh: dict, holdout):
    import pyarrow.parquet as pq

    from simrec.evaluation import report

    out.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    tmp = out / ".fidelity.parquet.tmp"
    pq.write_table(arrow, tmp, compression="zstd")
    outputs.durable_replace(tmp, out / "fidelity.parquet")
    import html

    plt = report._plt()
    sections = [
        (
            "Can I trust simrec's ranking of policies on this data?",
            f"<p>{html.escape(ranking_verdict(table))}.</p>",
        ),
        ("How well do its users know their own tastes?", report._table(scorecard(table))),
    ]
    _ranking_plot(plt, report, table, out, sections)
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
            ("Ratings", report._img(report._save(fig, out / "ratings.png"), "rating histograms"))
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
        ("Behaviour", report._img(report._save(fig, out / "behaviour.png"), "behaviour"))
    )
    sections.append(("Targets", report._table(targets_met(table))))
    sections.append(("All figures", report._table(summary_table(table))))
    sections.append(
        (
            "Setup",
            "<pre>"
            + json.dumps(
                {"holdout": holdout, "config": cfg.model_dump(mode="json")}, indent=1
            ).replace("<", "&lt;")
            + "</pre>",
        )
    )
    report._page(out, "simrec fidelity report", sections)


def _ranking_plot(plt, report, table: pd.DataFrame, out: Path, sections: list) -> None:
    """The policy-ranking scatter: held-out Recall@20 against simulated watches per user."""
    rk = table[table.section == "ranking"]
    sim = rk[(rk.metric == "watches_per_user") & (rk.source == "simrec")]
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
        ax.set_ylabel("simulated watches per user")
        sections.append(
            ("Policy ranking", report._img(report._save(fig, out / "ranking.png"), "ranking"))
        )
