"""Off-policy evaluation of a target policy from a run logged by a stochastic policy.

The estimand is the target policy's **value on the first page of a session**: the expected
number of watches on the page a user sees when a session starts, over the logged sessions'
contexts (user, tick, what the user had already consumed). Page-0 contexts do not depend on
earlier pages of the session, so the target's slate for each can be replayed exactly: the
target is fitted on the same agent-space seed log as the logging policy was at the start, and
asked for a slate with the same exclusions (seed history plus everything watched on earlier
ticks).

Estimators (names and semantics after Open Bandit Pipeline, which does not install on Python
>= 3.11), with ``r_ik`` = watched at position k of logged slate i:

* ``dm``: direct method, ``sum_k E_target[q(x_i, a, k)]`` with a logistic reward model ``q``
  (position, smoothed item and user CTRs) fitted on the log; the expectation is exact for
  deterministic targets and a mean over 16 sampled slates for stochastic ones;
* ``ips`` / ``snips``: slate-level importance sampling with ``w_i = target(slate_i) /
  logging(slate_i)`` (``pscore_slate``), self-normalised for snips;
* ``iips``: independent IPS with item-position weights ``target(a_ik at k) / pscore_item_position``
  (unbiased when a watch at k depends only on the item and the position, as in the statistical
  brain);
* ``rips``: reward-interaction IPS with cascade weights ``target(a_i1..a_ik) / pscore_cascade``;
* ``dr`` / ``sndr``: ``dm`` plus the item-position weighted residuals ``r_ik - q(x_i, a_ik, k)``
  (self-normalised per position for sndr).

Weights can be clipped (``clip``). Confidence intervals: percentile bootstrap over logged slates
(``scipy.stats.bootstrap``). ``validate=True`` also simulates the target policy on the same
population with the same seed (common random numbers) and reports each estimate's error against
its page-0 value. With one tick the two context sets are identical; with more, the target's own
history changes later contexts slightly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp
from scipy.special import logit

from simrec import outputs
from simrec.config import PolicyConfig
from simrec.environments.base import PolicyRandomness, SlateProbabilities, last_shown
from simrec.environments.registry import make_policy
from simrec.errors import ConfigError, InputError
from simrec.evaluation.resampling import bootstrap_units
from simrec.limits import check_statistics
from simrec.rng import Streams
from simrec.trust import config_from_run_dir

ESTIMATORS = ("dm", "ips", "snips", "iips", "rips", "dr", "sndr")
_DM_SAMPLES = 16
_SMOOTHING = 20.0  # pseudo-impressions of the item/user CTR features


def ope(
    run_dir: str | Path,
    target: str | dict | PolicyConfig,
    *,
    clip: float | None = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    validate: bool = False,
    out: str | Path | None = None,
    base_url: str | list[str] | None = None,
    api_key_env: str | None = None,
    locations: dict[str, str | None] | None = None,
) -> pd.DataFrame:
    """Estimate ``target``'s page-0 value from the run in ``run_dir`` (module docstring).

    Returns one row per estimator: estimator, value, ci_low, ci_high, and with ``validate``
    truth and relative_error; also the logging policy's own page-0 value (``on_policy``).
    Written to ``out`` (default ``<run_dir>-ope-<target>``) as ``ope_results.parquet`` with
    ``report.html`` and its plot. The run's manifest is data: only ``target`` is imported, and
    ``validate`` of an LLM run talks to ``base_url`` (with the key in ``api_key_env``), never
    to a server the manifest names; the run's data files and event parts are read from
    ``locations`` (:data:`simrec.trust.LOCATIONS`), named again, never from the manifest.
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if not outputs.is_run_manifest(manifest_path):
        raise InputError(
            f"{run_dir}: incomplete run (no manifest.json) or not simrec's; finish it with "
            f"`simrec run --resume {run_dir}` first"
        )
    check_statistics(n_resamples, alpha)
    if clip is not None and not clip > 0:
        raise ConfigError(f"--clip: expected a positive number, got {clip!r}")
    target_cfg = _policy_config(target)
    manifest = outputs.read_json(manifest_path, "a run's manifest")
    # the run's config is data: its logging policy is never built here (only the target is),
    # and its LLM server is not the one called
    cfg = config_from_run_dir(
        manifest.get("config"),
        str(manifest_path),
        builds_policy=False,
        base_url=base_url if validate else None,
        api_key_env=api_key_env,
        locations=locations,
    )
    events_uri = (locations or {}).get("output.events_uri")
    cfg.output.events_uri = None  # the validation run's parts stay in its own folder
    policy = make_policy(target_cfg.name, target_cfg.params, target_cfg.exploration)
    name = getattr(policy, "name", target_cfg.name)
    out_dir = Path(out) if out else _default_out(run_dir, name)
    outputs.check_out_dir(out_dir, "ope")
    logged = _page0_slates(run_dir, manifest, events_uri)
    target = _replay_target(policy, cfg, run_dir, logged, manifest)
    q_logged, q_target = _reward_model(logged, target)
    table, slate_weights = _estimate(
        logged, target, q_logged, q_target, clip, n_resamples, alpha, cfg.seed
    )
    table.insert(0, "target", name)
    from simrec.evaluation.report import ope_report

    with outputs.owning(out_dir, "ope", overwrite=False, what="OPE report"):
        if validate:
            truth = _simulate_truth(cfg, target_cfg, out_dir)
            table["truth"] = truth
            table["relative_error"] = (table["value"] - truth) / truth if truth else np.nan
        with outputs.replacing(out_dir / "ope_results.parquet") as f:
            table.to_parquet(f, index=False)
        ope_report(out_dir, table, slate_weights, support_warning(table))
    return table


def _default_out(run_dir: Path, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return run_dir.with_name(f"{run_dir.name}-ope-{safe}")


def _policy_config(target: str | dict | PolicyConfig) -> PolicyConfig:
    if isinstance(target, PolicyConfig):
        return target
    if isinstance(target, str):
        return PolicyConfig(name=target)
    try:
        return PolicyConfig.model_validate(target)
    except Exception as err:
        raise ConfigError(f"target policy: {err}") from None


# ---------------------------------------------------------------------------- the log


def _page0_slates(run_dir: Path, manifest: dict, events_uri: str | None) -> dict[str, Any]:
    """Page-0 slates of the run as (n, k) arrays, plus everything watched (for exclusions)."""
    catalog = pq.read_table(run_dir / "items.parquet", columns=["item_id", "popularity"])
    items = catalog.column("item_id").to_pandas()
    traits = pq.read_table(
        run_dir / "users.parquet", columns=["activity", "conformity", "diversity"]
    ).to_pandas()
    ev = outputs.read_events(
        run_dir,
        columns=[
            "event_type",
            "tick",
            "user_id",
            "page",
            "slate_id",
            "position",
            "item_id",
            "pscore_item_position",
            "pscore_slate",
            "pscore_cascade",
            "propensity_source",
            "clicked",
        ],
        manifest=manifest,
        events_uri=events_uri,
    ).to_pandas()
    ev = ev[ev.event_type == "impression"]
    if ev.empty:
        raise InputError(f"{run_dir}: the run logged no impressions; nothing to evaluate")
    if (ev.propensity_source == "deterministic").all():
        raise InputError(
            f"{run_dir}: the run was logged by a deterministic policy (every propensity is 1.0). "
            f"IPS-type estimators reweight logged actions by target/logging probabilities, which "
            f"needs a stochastic logging policy that could have shown the target's items; log "
            f"with --explore epsilon-greedy or --explore softmax (or the random policy)"
        )
    ev = ev.assign(item=pd.Index(items).get_indexer(ev.item_id))
    watched = ev[ev.clicked.astype(bool)][["tick", "user_id", "item"]]
    ev = ev[ev.page == 0].sort_values(["slate_id", "position"])
    k = int(ev.position.max()) + 1
    slate_codes, row = np.unique(ev.slate_id.to_numpy(np.int64), return_inverse=True)
    n = slate_codes.size
    col = ev.position.to_numpy(np.int64)

    def grid(values, fill, dtype):
        out = np.full((n, k), fill, dtype)
        out[row, col] = values
        return out

    first = np.unique(row, return_index=True)[1]
    return {
        "k": k,
        "tick": ev.tick.to_numpy(np.int64)[first],
        "user": ev.user_id.to_numpy(np.int64)[first],
        "items": grid(ev["item"].to_numpy(np.int64), -1, np.int64),
        "reward": grid(ev.clicked.to_numpy(bool).astype(np.float64), 0.0, np.float64),
        "p_ip": grid(ev.pscore_item_position.to_numpy(np.float64), 1.0, np.float64),
        "p_slate": ev.pscore_slate.to_numpy(np.float64, na_value=np.nan)[first],
        "p_cascade": grid(ev.pscore_cascade.to_numpy(np.float64, na_value=np.nan), 1.0, np.float64),
        "watched": watched,
        "n_items": len(items),
        "user_traits": traits.to_numpy(np.float64),
        "item_logpop": np.log1p(catalog.column("popularity").to_numpy().astype(np.float64)),
    }


# ---------------------------------------------------------------------------- the target


def _replay_target(
    policy, cfg, run_dir: Path, logged: dict, manifest: dict
) -> dict[str, np.ndarray]:
    """Fit the target as the logging policy was fitted at tick 0, then, tick by tick, its
    probabilities for each logged page-0 slate under the same exclusions."""
    from simrec.arrays import stack_rows
    from simrec.build import load_data
    from simrec.data.agent_log import agent_log

    data = load_data(cfg)
    recorded = (manifest.get("data") or {}).get("file_sha256")
    if isinstance(recorded, dict) and recorded != data.file_hashes:
        raise InputError(
            f"{run_dir}: the data given is not the data the run was calibrated on (its files' "
            f"hashes differ from the manifest's); pass the run's own data"
        )
    users_tbl = pq.read_table(run_dir / "users.parquet", columns=["source_user_id"])
    source = pd.Index(data.interactions.user_ids).get_indexer(users_tbl.column(0).to_pandas())
    if (source < 0).any():
        raise InputError(f"{run_dir}: users.parquet names users that are not in the run's data")
    n_agents, n_items, k = source.size, data.catalog.n_items, logged["k"]
    policy.fit(agent_log(data, source), data.catalog)
    seed_consumed = data.interactions.matrix(n_items)
    streams = Streams(cfg.seed)
    n = logged["items"].shape[0]
    out = {
        "p_ip": np.zeros((n, k)),
        "p_slate": np.zeros(n),
        "p_prefix": np.zeros((n, k)),
        "samples": np.full((_DM_SAMPLES, n, k), -1, np.int64),
    }
    w = logged["watched"]
    w_tick = w.tick.to_numpy(np.int64)
    for tick in np.unique(logged["tick"]):
        rows = np.flatnonzero(logged["tick"] == tick)
        before = w_tick < tick
        watched = sp.csr_matrix(
            (
                np.ones(int(before.sum()), np.float32),
                (w.user_id.to_numpy(np.int64)[before], w["item"].to_numpy(np.int64)[before]),
            ),
            shape=(n_agents, n_items),
        )
        watched.sum_duplicates()
        users = logged["user"][rows]
        exclude = stack_rows(
            [(seed_consumed, source[users]), (watched, users)],
            np.zeros((users.size, 0), np.int64),
            n_items,
        )
        exclude.sum_duplicates()
        rng = PolicyRandomness(streams, int(tick), 0, purpose="ope-target")
        probs = target_probabilities(policy, users, k, exclude, rng, logged["items"][rows])
        for key in ("p_ip", "p_slate", "p_prefix"):
            out[key][rows] = probs[key]
        out["samples"][:, rows] = probs["samples"]
    return out


def target_probabilities(
    policy,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix,
    rng: PolicyRandomness,
    items: np.ndarray,
) -> dict[str, np.ndarray]:
    """The target's probabilities of given slates ``items`` (n, k) (-1 = empty slot):
    ``p_ip`` (n, k) item at position, ``p_slate`` (n,), ``p_prefix`` (n, k) cascade, and
    ``samples`` (S, n, k) slates drawn from it (one repeated for deterministic targets)."""
    n = users.size
    valid = items >= 0

    def draws() -> np.ndarray:
        out = np.empty((_DM_SAMPLES, n, k), np.int64)
        for s in range(_DM_SAMPLES):
            sub = PolicyRandomness(rng.streams, rng.tick, rng.page, f"{rng.purpose}/dm{s}")
            out[s] = policy.recommend(users, k, exclude=exclude, rng=sub).items
        return out

    # stochastic policies say how likely any slate is (the method their own propensities use)
    if isinstance(policy, SlateProbabilities):
        p_ip, p_prefix = policy.slate_probabilities(users, k, exclude=exclude, rng=rng, items=items)
        p_ip, p_prefix = np.where(valid, p_ip, 0.0), np.where(valid, p_prefix, 0.0)
        return {
            "p_ip": p_ip,
            "p_slate": last_shown(p_prefix, valid),
            "p_prefix": p_prefix,
            "samples": draws(),
        }
    slates = policy.recommend(users, k, exclude=exclude, rng=rng)
    if not slates.deterministic:
        raise ConfigError(
            f"target policy '{getattr(policy, 'name', policy)}' is stochastic but has no "
            f"slate_probabilities() method, so its probability of a logged slate is unknown; use "
            f"a deterministic policy, epsilon-greedy, softmax or random"
        )
    same = (items == slates.items) & valid
    prefix = np.cumprod(same, axis=1).astype(np.float64)
    return {
        "p_ip": same.astype(np.float64),
        "p_slate": last_shown(prefix, valid),
        "p_prefix": prefix,
        "samples": np.broadcast_to(slates.items, (_DM_SAMPLES, n, k)).copy(),
    }


# ---------------------------------------------------------------------------- estimation


def _reward_model(logged: dict, target: dict) -> tuple[np.ndarray, np.ndarray]:
    """q(x, a, k) for the logged slates (n, k) and the target's sampled ones (S, n, k).

    Logistic regression on the position, the user's persona traits, the item's seed-log
    popularity and its smoothed CTR in the log, cross-fitted over two folds of users: a
    slate's q comes from a model (and item CTRs) fitted on the other users' slates, so q never
    depends on the slate's own outcome, which would bias DR.
    """
    from sklearn.linear_model import LogisticRegression

    items, reward = logged["items"], logged["reward"]
    n, k = items.shape
    valid = items >= 0
    users = np.broadcast_to(logged["user"][:, None], (n, k))
    pos = np.broadcast_to(np.arange(k), (n, k))
    samples = target["samples"]
    q_logged = np.zeros((n, k))
    q_target = np.zeros(samples.shape)
    fold = logged["user"] % 2
    for f in (0, 1):
        train = (fold != f)[:, None] & valid
        if not train.any() or reward[train].min() == reward[train].max():
            const = float(reward[train].mean()) if train.any() else 0.0
            q_logged[fold == f] = const
            q_target[:, fold == f] = const
            continue
        base = float(np.clip(reward[train].mean(), 1e-4, 1 - 1e-4))
        item_ctr = _smoothed(items[train], reward[train], logged["n_items"], base)

        def features(it, us, ps, item_ctr=item_ctr):
            return np.column_stack(
                [
                    np.eye(k)[ps],
                    logit(item_ctr[it]),
                    logged["item_logpop"][it],
                    logged["user_traits"][us],
                    logged["user_traits"][us] * logged["item_logpop"][it][:, None],
                ]
            )

        model = LogisticRegression(C=10.0, max_iter=2000)
        model.fit(features(items[train], users[train], pos[train]), reward[train])
        mine = (fold == f)[:, None] & valid
        if mine.any():
            q_logged[mine] = model.predict_proba(features(items[mine], users[mine], pos[mine]))[
                :, 1
            ]
        smine = (fold == f)[None, :, None] & (samples >= 0)
        if smine.any():
            s_users = np.broadcast_to(users, samples.shape)
            s_pos = np.broadcast_to(pos, samples.shape)
            q_target[smine] = model.predict_proba(
                features(samples[smine], s_users[smine], s_pos[smine])
            )[:, 1]
    return q_logged, q_target


def _smoothed(index: np.ndarray, reward: np.ndarray, size: int, base: float) -> np.ndarray:
    clicks = np.bincount(index, weights=reward, minlength=size)
    shows = np.bincount(index, minlength=size)
    return np.clip((clicks + _SMOOTHING * base) / (shows + _SMOOTHING), 1e-4, 1 - 1e-4)


def _estimate(
    logged: dict,
    target: dict,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    clip: float | None,
    n_resamples: int,
    alpha: float,
    seed: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The estimates table and the (n,) slate weights."""
    valid = logged["items"] >= 0
    r = logged["reward"] * valid
    cap = np.inf if clip is None else clip

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(valid if num.ndim == 2 else True, np.minimum(num / den, cap), 0.0)

    w_slate = ratio(target["p_slate"], logged["p_slate"])
    w_ip = ratio(target["p_ip"], logged["p_ip"])
    has_cascade = bool(np.isfinite(logged["p_cascade"][valid]).all())
    w_casc = ratio(target["p_prefix"], logged["p_cascade"]) if has_cascade else None
    dm = q_target.mean(axis=0).sum(axis=1)  # (n,)
    resid = np.where(valid, r - q_logged, 0.0)
    # per-slate terms; the statistic turns resampled sums into every estimator
    terms = {
        "on_policy": r.sum(axis=1),
        "dm": dm,
        "ips": w_slate * r.sum(axis=1),
        "w_slate": w_slate,
        "iips": (w_ip * r).sum(axis=1),
        "dr": dm + (w_ip * resid).sum(axis=1),
    }
    if w_casc is not None:
        terms["rips"] = (w_casc * r).sum(axis=1)
    k = r.shape[1]
    for j in range(k):  # sndr: per-position self-normalisation
        terms[f"w_ip{j}"] = w_ip[:, j]
        terms[f"wres{j}"] = w_ip[:, j] * resid[:, j]
    names = list(terms)
    mat = np.column_stack([terms[t] for t in names])  # (n, t)
    idx = {t: i for i, t in enumerate(names)}
    estimators = ["on_policy", *[e for e in ESTIMATORS if e != "rips" or w_casc is not None]]

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        sample = np.atleast_2d(np.asarray(sample, np.int64))
        means = mat[sample].mean(axis=1)  # (b, t)
        out = []
        for e in estimators:
            if e == "snips":
                out.append(means[:, idx["ips"]] / means[:, idx["w_slate"]])
            elif e == "sndr":
                corr = sum(means[:, idx[f"wres{j}"]] / means[:, idx[f"w_ip{j}"]] for j in range(k))
                out.append(means[:, idx["dm"]] + corr)
            else:
                out.append(means[:, idx[e]])
        return np.array(out)

    weights = {"ips": w_slate, "snips": w_slate, "iips": w_ip, "dr": w_ip, "sndr": w_ip}
    if w_casc is not None:
        weights["rips"] = w_casc
    n = mat.shape[0]
    point, res = bootstrap_units(
        statistic,
        n,
        n_resamples=n_resamples,
        alpha=alpha,
        seed=seed,
        cells_per_unit=mat.shape[1],
    )
    diag = [weight_diagnostics(weights[e], valid) if e in weights else {} for e in estimators]
    table = pd.DataFrame(
        {
            "estimator": estimators,
            "value": point,
            "ci_low": res.confidence_interval.low,
            "ci_high": res.confidence_interval.high,
            "n_slates": n,
            "clip": np.nan if clip is None else clip,
            **{key: [d.get(key, np.nan) for d in diag] for key in DIAGNOSTICS},
        }
    )
    return table, w_slate


DIAGNOSTICS = ("ess", "ess_share", "max_weight", "support")
POOR_SUPPORT = 0.5  # below this share of the target's mass, the log says little about it
POOR_ESS = 0.01  # below this share of the logged weights' units


def weight_diagnostics(w: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """How far importance weights can be trusted. ``w``: (n,) slate weights or (n, k) per
    position (``valid``: (n, k), the filled slots). ``ess``: Kish's effective sample size
    (sum w)^2 / sum w^2, and ``ess_share``: it over the number of weights; ``max_weight``;
    ``support``: the mean weight, which estimates the share of the target's probability mass
    on what the logging policy could show (1 when the log covers the target; far below 1 when
    the target shows what the log never did).

    >>> weight_diagnostics(np.array([1.0, 1.0, 1.0, 1.0]), np.ones((4, 1), bool))
    {'ess': 4.0, 'ess_share': 1.0, 'max_weight': 1.0, 'support': 1.0}
    """
    x = np.asarray(w, np.float64)
    x = x[valid] if x.ndim == 2 else x
    x = x[np.isfinite(x)]
    if x.size == 0 or not (x > 0).any():
        return {"ess": 0.0, "ess_share": 0.0, "max_weight": 0.0, "support": 0.0}
    ess = float(x.sum() ** 2 / (x**2).sum())
    return {
        "ess": ess,
        "ess_share": ess / x.size,
        "max_weight": float(x.max()),
        "support": float(x.mean()),
    }


def support_warning(table: pd.DataFrame) -> str | None:
    """One line saying the log poorly supports the target (some weighting estimator's
    ``support`` under :data:`POOR_SUPPORT`, or its effective sample size under
    :data:`POOR_ESS` of the logged units), or None."""
    weighted = table.dropna(subset=["support"])
    if weighted.empty:
        return None
    low_support = weighted.support.min()
    low_ess = weighted.ess_share.min()
    if low_support >= POOR_SUPPORT and low_ess >= POOR_ESS:
        return None
    return (
        f"warning: the log poorly supports target {table.target.iloc[0]}: the logging policy "
        f"could show only {low_support:.0%} of its probability mass, and the effective sample "
        f"size is as low as {weighted.ess.min():,.1f} (of {int(weighted.n_slates.iloc[0]):,} "
        f"slates, max weight {weighted.max_weight.max():,.3g}); weighted estimates are not "
        f"reliable, DM depends on its reward model alone"
    )


def _simulate_truth(cfg, target_cfg: PolicyConfig, out_dir: Path) -> float:
    """Simulate the target on the same population and seed; its mean watches per page-0 slate."""
    from simrec.simulator.runner import run

    sim = cfg.model_copy(deep=True)
    sim.policy = target_cfg
    sim.name = None
    sim.output.dir = str(out_dir / "validation-run")
    sim.output.overwrite = True
    res = run(sim)
    ev = outputs.read_events(
        res.run_dir, ["event_type", "page", "slate_id", "clicked"], res.manifest, own=True
    )
    ev = ev.to_pandas()
    ev = ev[(ev.event_type == "impression") & (ev.page == 0)]
    per_slate = ev.groupby("slate_id").clicked.sum()
    return float(per_slate.mean()) if len(per_slate) else float("nan")
