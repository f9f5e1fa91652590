"""Fidelity of a synthetic log itself: its statistics beside the real training log's, each
with a distance."""

from __future__ import annotations

import numpy as np
from scipy import stats

from simrec.arrays import lexsorted_ints
from simrec.data.dataset import SESSION_GAP_SECONDS, Dataset, Interactions
from simrec.metrics import gini


def _per(values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(values, minlength=n).astype(np.float64)


def _top_share(counts: np.ndarray, share: float = 0.01) -> float:
    """The share of all interactions held by the top ``share`` of items."""
    top = max(1, int(np.ceil(share * counts.size)))
    total = counts.sum()
    return float(np.sort(counts)[::-1][:top].sum() / total) if total else float("nan")


def _repeat_share(log: Interactions) -> float:
    """The share of interactions that repeat a (user, item) pair seen before in the log."""
    if len(log) == 0:
        return float("nan")
    key = log.user.astype(np.int64) * (int(log.item.max()) + 1) + log.item
    return float(1.0 - np.unique(key).size / key.size)


def _scaled_wasserstein(real: np.ndarray, syn: np.ndarray) -> float:
    """Wasserstein distance of two distributions, each divided by its own mean: the shape,
    whatever the volume (a synthetic log of 30 days holds fewer interactions per user than a
    real log of years)."""
    if real.size == 0 or syn.size == 0 or real.mean() == 0 or syn.mean() == 0:
        return float("nan")
    return float(stats.wasserstein_distance(real / real.mean(), syn / syn.mean()))


def _total_variation(p: np.ndarray, q: np.ndarray) -> float:
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def log_fidelity(real: Dataset, syn: Interactions) -> list[tuple]:
    """Rows (section ``log``, setting, metric, value, source) of each statistic for the real
    training log (source ``real``) and the synthetic log (``synthetic``), and the distance
    between them (source ``distance``): per-user and per-item distributions (scaled
    Wasserstein, Gini, top-1% share), the rating histogram and genre mix (total variation),
    the repeat share, items per session and days between sessions (scaled Wasserstein)."""
    n_items = real.catalog.n_items
    logs = {"real": real.interactions, "synthetic": syn}
    rows: list[tuple] = []
    dist: dict[str, dict[str, np.ndarray]] = {}
    for source, log in logs.items():
        per_user = _per(log.user, log.n_users)
        per_user = per_user[per_user > 0]
        per_item = _per(log.item, n_items)
        sessions = log.sessions()
        gaps = _session_gaps(log)
        dist[source] = {
            "interactions_per_user": per_user,
            "users_per_item": per_item,
            "items_per_session": sessions.size.astype(np.float64),
            "days_between_sessions": gaps,
        }
        rows += [
            ("log", "interactions", "count", float(len(log)), source),
            ("log", "interactions_per_user", "mean", _mean(per_user), source),
            ("log", "users_per_item", "gini", gini(per_item), source),
            ("log", "users_per_item", "top1pct_share", _top_share(per_item), source),
            ("log", "items_reached", "count", float((per_item > 0).sum()), source),
            ("log", "repeat", "share", _repeat_share(log), source),
            ("log", "items_per_session", "mean", _mean(dist[source]["items_per_session"]), source),
            ("log", "days_between_sessions", "mean", _mean(gaps), source),
        ]
    for name in dist["real"]:
        d = _scaled_wasserstein(dist["real"][name], dist["synthetic"][name])
        rows.append(("log", name, "scaled_wasserstein", d, "distance"))
    for metric in ("gini", "top1pct_share"):
        r = [v for (_, s, m, v, src) in rows if s == "users_per_item" and m == metric]
        rows.append(("log", "users_per_item", f"{metric}_difference", r[1] - r[0], "distance"))
    genres = real.catalog.genres.tocsr().astype(np.float64)
    if genres.shape[1]:
        mix = {s: np.asarray(genres[log.item].sum(axis=0)).ravel() for s, log in logs.items()}
        rows.append(
            ("log", "genre_mix", "total_variation", _total_variation(*mix.values()), "distance")
        )
    rated = {s: log.rating[np.isfinite(log.rating)] for s, log in logs.items()}
    if rated["real"].size and rated["synthetic"].size:
        values = np.union1d(np.unique(rated["real"]), np.unique(rated["synthetic"]))
        hist = [np.array([(r == v).sum() for v in values], np.float64) for r in rated.values()]
        rows.append(("log", "ratings", "total_variation", _total_variation(*hist), "distance"))
        rows += [("log", "ratings", "mean", float(r.mean()), s) for s, r in rated.items()]
    return rows


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _session_gaps(log: Interactions) -> np.ndarray:
    """Days from the end of each session to the start of the user's next one."""
    ts, user = lexsorted_ints((log.timestamp, log.user))
    d = np.diff(ts).astype(np.float64)[user[1:] == user[:-1]]
    return d[d > SESSION_GAP_SECONDS] / 86400.0
