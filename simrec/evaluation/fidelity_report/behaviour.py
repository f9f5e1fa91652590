"""Behaviour: items per session, sessions per user per tick and what is consumed, simulated
against the training log."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from simrec.data.dataset import Dataset
from simrec.evaluation.fidelity_report.split import Split


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


def sim_behaviour(events: pd.DataFrame, n_agents: int, n_items: int, ticks: int) -> dict:
    imp = events[events.event_type == "impression"]
    per_session = imp.groupby("session_id").clicked.sum().to_numpy()
    users = imp.drop_duplicates("session_id").user_id.to_numpy()
    watched = imp[imp.clicked]
    # repeat consumption: null (no repeats allowed, so none happened) counts as not a repeat
    again = watched["repeat"].fillna(False) if "repeat" in watched else pd.Series(False)
    return {
        "items_per_session": per_session[per_session > 0].astype(np.float64),
        "sessions_per_user_per_tick": np.bincount(users, minlength=n_agents) / ticks,
        "consumed": watched.item_index.to_numpy(),
        "repeat_share": float(again.astype(bool).mean()) if len(watched) else float("nan"),
    }


def behaviour(split: Split, sim: dict, tick_seconds: int) -> tuple[list[tuple], dict]:
    """Rows of the behaviour section: simulated (``sim`` from one run) against the training
    log. A log without timestamps has no sessions or visits to measure: their real figures
    and distances are NaN (n/a), and the simulated ones stay."""
    from simrec.metrics import gini

    real = _real_behaviour(split.train, tick_seconds)
    if not split.train.interactions.timed:
        for name in ("items_per_session", "sessions_per_user_per_tick"):
            real[name] = np.zeros(0)
    n_items = split.train.catalog.n_items
    sim_consumed = np.bincount(sim["consumed"], minlength=n_items)
    rows = []
    for name in ("items_per_session", "sessions_per_user_per_tick"):
        r, s = real[name], sim[name]
        both = bool(s.size and r.size)
        rows += [
            ("behaviour", name, "mean", float(s.mean()) if s.size else float("nan"), "simrec"),
            ("behaviour", name, "mean", float(r.mean()) if r.size else float("nan"), "real"),
            (
                "behaviour",
                name,
                "wasserstein",
                float(stats.wasserstein_distance(s, r)) if both else float("nan"),
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
    # the share of consumption that repeats a user-item pair: the log's against the simulation's
    rows += [
        ("behaviour", "repeat_share", "mean", sim["repeat_share"], "simrec"),
        ("behaviour", "repeat_share", "mean", split.train.interactions.repeat_share(), "real"),
    ]
    rows += [
        ("behaviour", "consumed_popularity", "gini", gini(sim_consumed), "simrec"),
        ("behaviour", "consumed_popularity", "gini", gini(real["consumed"]), "real"),
        ("behaviour", "consumed_popularity", "kl_deciles", kl, "simrec"),
    ]
    return rows, {"real": real, "sim": sim, "p_real": p_real, "p_sim": p_sim}
