"""``simrec converse``: simulated users talk to conversational recommenders; the dialogues,
per-turn metrics and a paired comparison of the CRS arms are written as Parquet.

Leakage control: the users' visible past (and everything a CRS is fitted on, and the taste
model of ``targets='taste'``) comes only from interactions before ``cutoff``; ``held-out``
targets come only from after it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from simrec import outputs
from simrec.conversation.crs import make_crs
from simrec.conversation.dialogue import (
    MAX_ITEMS,
    CountsLLMCalls,
    Dialogue,
    NamesTitles,
    Reply,
    ReportsStats,
    Turn,
)
from simrec.conversation.facts import ItemFacts
from simrec.conversation.llm import cache_stats
from simrec.conversation.users import AgendaUser, Seeker
from simrec.data import Dataset
from simrec.errors import ConfigError, InputError
from simrec.limits import MAX_TURNS, check_statistics
from simrec.rng import Streams

RECALL_AT = (1, 10, 50)
TARGETS = ("held-out", "taste")
MIN_TASTE_POPULARITY = 5  # taste targets: items with at least this many visible interactions


@dataclass
class ConverseResult:
    """What ``converse`` wrote: ``conversations`` (one row per utterance), ``metrics`` (one
    row per arm and turn), ``comparison`` (one row per arm: outcomes, and the paired
    difference of success against the control arm)."""

    out_dir: Path
    conversations: pd.DataFrame
    metrics: pd.DataFrame
    comparison: pd.DataFrame
    manifest: dict[str, Any] = field(repr=False)

    @property
    def llm_problem(self) -> str | None:
        """Why these conversations cannot be trusted (an LLM server, the users' or a CRS's,
        refused requests as unauthorised), or None. Everything is written either way; the
        CLI then exits with status 3, as ``run`` does."""
        refused: dict[str, int] = {}
        for arm, sides in (self.manifest.get("llm") or {}).items():
            for side in ("user", "crs"):
                fallbacks = ((sides or {}).get(side) or {}).get("fallbacks") or {}
                n = int(fallbacks.get("auth", 0)) + int(fallbacks.get("auth_error", 0))
                if n:
                    refused[f"{arm} ({'users' if side == 'user' else 'CRS'})"] = n
        if not refused:
            return None
        where = ", ".join(f"{k}: {v:,}" for k, v in refused.items())
        return (
            f"LLM servers refused requests as unauthorised (HTTP 401/403): {where}; check the "
            f"keys (llm.api_key_env, --crs-api-key-env) and the base URLs"
        )


def found_target(target, item_ids, verdicts) -> bool:
    """Whether a user turn (its shown ``item_ids`` and ``verdicts``) accepted ``target``.

    >>> found_target(7, [1, 7], ["reject", "accept"]), found_target(7, [1], ["accept"])
    (True, False)
    """
    return any(i == target and v == "accept" for i, v in zip(item_ids, verdicts, strict=True))


def parse_arms(specs: list[str] | dict[str, Any] | str) -> dict[str, Any]:
    """``--crs`` values (``NAME=SPEC`` or ``SPEC``) -> arm name -> spec (a mapping's values
    may be CRS objects, kept as they are).

    >>> parse_arms(["A=builtin", "builtin:itemknn"])
    {'A': 'builtin', 'builtin:itemknn': 'builtin:itemknn'}
    """
    if isinstance(specs, dict):
        arms = {str(k): v if not isinstance(v, str | Path) else str(v) for k, v in specs.items()}
    else:
        arms = {}
        for s in [specs] if isinstance(specs, str) else specs:
            name, eq, spec = s.partition("=")
            if not eq:
                name, spec = s, s
            if not re.fullmatch(r"[\w.:-]+", name) or not spec:
                raise ConfigError(f"--crs: expected NAME=SPEC or SPEC, got {s!r}")
            if name in arms:
                raise ConfigError(f"--crs: arm {name!r} given twice")
            arms[name] = spec
    if not arms:
        raise ConfigError("--crs: expected at least one CRS (builtin, or package.module:Class)")
    return arms


def converse(
    config: Any = None,
    crs: list[str] | dict[str, str] | str = "builtin",
    *,
    users: int = 100,
    turns: int = 5,
    targets: str = "held-out",
    cutoff: str | float = 0.8,
    out: str | Path | None = None,
    overwrite: bool = False,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    user_brain: str = "agenda",
    base_url: str | list[str] | None = None,
    crs_base_url: str | list[str] | None = None,
    crs_api_key_env: str | None = None,
    data: Dataset | None = None,
    backend: Any = None,
) -> ConverseResult:
    """Simulate ``users`` users, each looking for one target item, talking to each CRS arm for
    up to ``turns`` turns, and write the dialogues and metrics to ``out``.

    ``user_brain``: ``agenda`` (deterministic, no LLM) or ``llm`` (the calibrated persona
    through ``config.llm``'s backend, or ``backend``; ``base_url`` overrides its server);
    ``crs_base_url``: the server(s) of ``openai:MODEL`` arms, sent the key in the environment
    variable ``crs_api_key_env`` (none by default; the users' key is never sent to a CRS). A
    ``crs`` mapping's values may also be ready ConversationalRecommender objects.

    ``config``: a run config (its ``data`` and ``seed`` are used); ``crs``: the arms (see
    :func:`parse_arms`); ``targets``: ``held-out`` (each user's best-rated item after
    ``cutoff``) or ``taste`` (the unseen item the rating model, fitted on the visible log,
    expects the user to like most); ``cutoff``: a per-user fraction, Unix seconds or an
    ISO-8601 moment (:func:`simrec.augment.cutoff.parse_cutoff`).
    """
    from simrec import build
    from simrec.augment.cutoff import parse_cutoff, visible

    t_start = time.perf_counter()
    cfg = build.as_config(config)
    arms = parse_arms(crs)
    if targets not in TARGETS:
        raise ConfigError(f"--targets: expected one of {', '.join(TARGETS)}, got {targets!r}")
    for name, value, high in (("--users", users, None), ("--turns", turns, MAX_TURNS)):
        if not isinstance(value, int) or value < 1 or (high is not None and value > high):
            span = f"from 1 to {high:,}" if high else ">= 1"
            raise ConfigError(f"{name}: expected an integer {span}, got {value!r}")
    check_statistics(n_resamples, alpha)
    if user_brain not in USER_BRAINS:
        raise ConfigError(
            f"--user-brain: expected one of {', '.join(USER_BRAINS)}, got {user_brain!r}"
        )
    cut = parse_cutoff(cutoff)
    if base_url is not None:
        cfg = cfg.model_copy(deep=True)
        cfg.llm.base_url = base_url
    crss = {  # bad specs fail before anything is read or written
        name: make_crs(spec, cfg, crs_base_url, crs_api_key_env) if isinstance(spec, str) else spec
        for name, spec in arms.items()
    }
    arms = {name: spec if isinstance(spec, str) else crss[name].name for name, spec in arms.items()}
    out_dir = Path(out) if out else _default_out(cfg, arms, users, turns, targets, cutoff)
    taking = {"overwrite": overwrite, "done": "manifest.json", "what": "conversation run"}
    outputs.check_free(out_dir, "converse", **taking)

    data = build.load_data(cfg) if data is None else data
    log, cat = data.interactions, data.catalog
    vis_rows = visible(log, cut)
    held = np.setdiff1d(np.arange(len(log)), vis_rows, assume_unique=True)
    past = log.take(vis_rows)
    target_of = (
        _held_out_targets(log.take(held), past)
        if targets == "held-out"
        else _taste_targets(cfg, past, data)
    )
    eligible = np.flatnonzero(target_of >= 0)
    if eligible.size == 0:
        raise InputError(
            f"{data.source}: no user has both interactions before the cutoff "
            f"({cut.describe() if cut else 'none'}) and a {targets} target"
        )
    pick = Streams(cfg.seed).generator("converse-users").permutation(eligible)[:users]
    chosen = np.sort(pick)
    seen = past.matrix(cat.n_items)
    seen_by = {  # what each chosen user had before the cutoff
        int(u): frozenset(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        for u in chosen
    }
    facts = ItemFacts(cat)
    agenda = AgendaUser(facts)
    make_user, user_backend, profiles = _user_brains(cfg, user_brain, agenda, data, past, backend)

    with outputs.owning(out_dir, "converse", **taking):
        rows: list[dict] = []
        per_arm: dict[str, dict[str, np.ndarray]] = {}
        timings: dict[str, float] = {}
        llm_stats: dict[str, dict] = {}
        for name, model in crss.items():
            t = time.perf_counter()
            model.fit(past.to_arrow(), cat)
            user = make_user()
            seekers = [user.seeker(int(target_of[u]), seen_by[u]) for u in chosen]
            per_arm[name] = _talk(name, model, user, chosen, seekers, turns, cat, rows)
            per_arm[name]["unresolved_rate"] = _unresolved_rate(model)
            llm_stats[name] = {
                "user": _user_stats(user),
                "crs": model.stats() if isinstance(model, ReportsStats) else None,
            }
            timings[f"{name}_s"] = time.perf_counter() - t
        conversations = _conversation_table(rows, data)
        metrics = _metrics(per_arm, turns)
        control = next(iter(arms))
        comparison = _comparison(per_arm, control, n_resamples, alpha, cfg.seed)
        outputs.write_parquet(conversations, out_dir / "conversations.parquet")
        written = ["conversations.parquet", "crs_metrics.parquet", "crs_comparison.parquet"]
        targets_of = np.unique(target_of[chosen])
        outputs.write_parquet(
            pa.table(
                {
                    "item_id": pa.array(cat.item_ids).take(pa.array(targets_of)),
                    "title": pa.array(cat.display_titles[targets_of].astype(str)),
                    "facts": pa.array(
                        [[f.phrase for f in facts.of(int(i))] for i in targets_of],
                        pa.list_(pa.string()),
                    ),
                }
            ),
            out_dir / "targets.parquet",
        )
        written.append("targets.parquet")
        if profiles is not None:  # the personas the LLM users played
            outputs.write_parquet(
                pa.table(
                    {
                        "user_id": pa.array(log.user_ids).take(pa.array(chosen)),
                        "profile": pa.array(np.asarray(profiles)[chosen].astype(str)),
                    }
                ),
                out_dir / "personas.parquet",
            )
            written.append("personas.parquet")
        outputs.write_parquet(pa.Table.from_pandas(metrics), out_dir / "crs_metrics.parquet")
        outputs.write_parquet(pa.Table.from_pandas(comparison), out_dir / "crs_comparison.parquet")
        timings["total_s"] = time.perf_counter() - t_start
        manifest = {
            "kind": "converse",
            "seed": cfg.seed,
            "data": {"source": data.source, "file_sha256": data.file_hashes},
            "arms": {name: {"spec": arms[name], "name": crss[name].name} for name in arms},
            "control": control,
            "users": int(chosen.size),
            "turns": turns,
            "targets": targets,
            "cutoff": cut.describe() if cut else None,
            "user_brain": user_brain,
            "llm": llm_stats,
            "user_cache": cache_stats(user_backend),
            "outcomes": {
                name: dict(sorted(Counter(r["status"].tolist()).items()))
                for name, r in per_arm.items()
            },
            "counts": {
                "dialogues": int(chosen.size) * len(arms),
                "utterances": conversations.num_rows,
            },
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "outputs": written,
        }
        outputs.atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
    return ConverseResult(out_dir, conversations.to_pandas(), metrics, comparison, manifest)


USER_BRAINS = ("agenda", "llm")


def _user_brains(cfg, user_brain: str, agenda: AgendaUser, data: Dataset, past, backend):
    """A factory of fresh user brains (one per arm, so counters are per arm), the LLM backend
    they share and the personas' profiles (one per user of the log) they play (None, None for
    agenda users)."""
    if user_brain == "agenda":
        return (lambda: agenda), None, None
    import dataclasses

    from simrec import build
    from simrec.conversation.llm import LLMUser

    # the personas, like everything users know, come from the log before the cutoff only
    _, personas = build.calibrate(cfg, dataclasses.replace(data, interactions=past), users=None)
    backend = build.make_backend(cfg) if backend is None else backend
    c = cfg.llm
    return (
        (
            lambda: LLMUser(
                backend,
                agenda,
                personas.profiles,
                seed=cfg.seed,
                max_tokens=c.max_tokens,
                temperature=c.temperature,
            )
        ),
        backend,
        personas.profiles,
    )


def _user_stats(user) -> dict | None:
    if not isinstance(user, CountsLLMCalls):
        return None
    return {
        "calls": user.calls,
        "prompt_tokens": user.prompt_tokens,
        "completion_tokens": user.completion_tokens,
        "fallbacks": dict(sorted(user.fallbacks.items())),
    }


def _unresolved_rate(model) -> float:
    """The share of the titles a CRS named that matched no catalog item (0: it names none)."""
    if not isinstance(model, NamesTitles) or not model.titles:
        return 0.0
    return float(model.unresolved / model.titles)


def _default_out(cfg, arms, users, turns, targets, cutoff) -> Path:
    from simrec.simulator.runner import DEFAULT_OUT, run_id_for

    key = json.dumps([run_id_for(cfg), arms, users, turns, targets, str(cutoff)])
    return DEFAULT_OUT / f"converse-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _held_out_targets(held, past) -> np.ndarray:
    """(n_users,) each user's target after the cutoff: the best-rated held-out item (ties: the
    earliest, then the lowest item index); -1 without held-out or visible interactions."""
    n = held.n_users
    target = np.full(n, -1, np.int64)
    if len(held):
        rating = np.nan_to_num(held.rating.astype(np.float64), nan=0.0)
        order = np.lexsort((held.item, held.timestamp, -rating, held.user))
        user = held.user[order]
        first = np.r_[True, user[1:] != user[:-1]]
        target[user[first]] = held.item[order][first]
    has_past = np.bincount(past.user, minlength=n) > 0
    target[~has_past] = -1
    return target


def _taste_targets(cfg, past, data: Dataset) -> np.ndarray:
    """(n_users,) the unseen item with the highest expected rating under the rating model
    fitted on the visible log, among items with MIN_TASTE_POPULARITY visible interactions (or,
    in a small log, the median item's count)."""
    from simrec.agents.brains.utility import UtilityBrain

    n_items = data.catalog.n_items
    model = UtilityBrain(cfg.brain, cfg.seed).fit_rating(data, past)
    counts = np.bincount(past.item, minlength=n_items)
    median = float(np.median(counts[counts > 0])) if counts.any() else 1.0
    popular = np.flatnonzero(counts >= min(MIN_TASTE_POPULARITY, max(int(median), 1)))
    target = np.full(past.n_users, -1, np.int64)
    if popular.size == 0:
        return target
    seen = past.matrix(n_items).tocsr()
    users = np.flatnonzero(np.diff(seen.indptr) > 0)
    for s in range(0, users.size, 1024):
        block = users[s : s + 1024]
        uu = np.repeat(block, popular.size)
        ii = np.tile(popular, block.size)
        score = model.expected(uu, ii).reshape(block.size, popular.size).astype(np.float64)
        score[np.asarray(seen[block][:, popular].todense()) > 0] = -np.inf
        best = np.argmax(score, axis=1)  # first maximum: the lowest item index
        ok = np.isfinite(score[np.arange(block.size), best])
        target[block[ok]] = popular[best[ok]]
    return target


def _talk(
    arm: str,
    model,
    user,
    chosen: np.ndarray,
    seekers: list[Seeker],
    turns: int,
    cat,
    rows: list[dict],
) -> dict[str, np.ndarray]:
    """Every conversation of one arm, turn by turn, batched across the open conversations
    (one ``respond`` call and one user call per turn). Returns per conversation: the target's
    best rank so far after each turn (turns, n), the turn of success (0: none), items
    rejected, the closing rating, and how it ended."""
    n = len(seekers)
    dialogues = [Dialogue(c, int(u)) for c, u in enumerate(chosen)]
    best_rank = np.full(n, np.inf)
    rank_by_turn = np.full((turns, n), np.inf)

    last_turn = [0] * n

    def record(c: int, turn: int, t: Turn) -> None:
        dialogues[c].turns.append(t)
        last_turn[c] = turn
        rows.append(
            {
                "arm": arm,
                "conversation": c,
                "user": int(chosen[c]),
                "target": seekers[c].target,
                "turn": turn,
                "speaker": t.speaker,
                "text": t.text,
                "items": list(t.items),
                "verdicts": list(t.verdicts),
                "decided_by": t.decided_by,
                "prompt_hash": t.prompt_hash,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
            }
        )

    for c, t in enumerate(user.openings(seekers, dialogues)):
        record(c, 0, t)
    for turn in range(1, turns + 1):
        open_ = [c for c, s in enumerate(seekers) if s.status == "open"]
        if open_:
            replies = model.respond([dialogues[c] for c in open_])
            _check_replies(arm, model, replies, len(open_), cat.n_items)
            replies = [
                Reply(
                    str(r.text),
                    tuple(int(i) for i in r.items),
                    getattr(r, "prompt_hash", None),
                    getattr(r, "prompt_tokens", None),
                    getattr(r, "completion_tokens", None),
                )
                for r in replies
            ]
            for c, r in zip(open_, replies, strict=True):
                record(
                    c,
                    turn,
                    Turn(
                        "crs",
                        r.text,
                        r.items,
                        decided_by=model.name,
                        prompt_hash=r.prompt_hash,
                        prompt_tokens=r.prompt_tokens,
                        completion_tokens=r.completion_tokens,
                    ),
                )
                if seekers[c].target in r.items:
                    best_rank[c] = min(best_rank[c], r.items.index(seekers[c].target))
            answers = user.answers(
                [seekers[c] for c in open_],
                [dialogues[c] for c in open_],
                replies,
                turn,
                turn == turns,
            )
            for c, t in zip(open_, answers, strict=True):
                record(c, turn, t)
        rank_by_turn[turn - 1] = best_rank
    closing = user.closing(seekers, dialogues)
    for c, (rating, reason) in enumerate(closing):  # the user's verdict on the conversation
        record(c, last_turn[c], Turn("rating", reason))
        rows[-1]["rating"] = int(rating)
    return {
        "rank_by_turn": rank_by_turn,
        "success_turn": np.array([s.accepted_turn or 0 for s in seekers], np.int64),
        "rejected": np.array([len(s.rejected) for s in seekers], np.int64),
        "rating": np.array([r for r, _ in closing], np.int64),
        "rating_reason": np.array([why for _, why in closing], dtype=object),
        "status": np.array([s.status for s in seekers], dtype=object),
    }


def _check_replies(arm: str, model, replies, n: int, n_items: int) -> None:
    what = f"crs {arm!r} ({model.name})"
    if not isinstance(replies, list) or len(replies) != n:
        got = len(replies) if isinstance(replies, list) else type(replies).__name__
        raise InputError(f"{what}: respond() must return a list of {n} replies, got {got}")
    for r in replies:
        items = getattr(r, "items", None)
        if not isinstance(getattr(r, "text", None), str) or items is None:
            raise InputError(f"{what}: expected Reply(text, items) objects, got {r!r}")
        if len(items) > MAX_ITEMS:
            raise InputError(f"{what}: a reply ranks {len(items)} items, at most {MAX_ITEMS}")
        bad = [i for i in items if not (0 <= int(i) < n_items)]
        if bad:
            raise InputError(
                f"{what}: item indices must be in [0, {n_items}), got {bad[:3]} (a reply's "
                f"items are catalog indices)"
            )


def _conversation_table(rows: list[dict], data: Dataset) -> pa.Table:
    cat, log = data.catalog, data.interactions
    item_ids = pa.array(cat.item_ids)
    user_ids = pa.array(log.user_ids)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=list(rows[0]) if rows else [])

    def ids(lists) -> pa.Array:
        offsets = np.r_[0, np.cumsum([len(x) for x in lists])].astype(np.int32)
        flat = np.concatenate([np.asarray(x, np.int64) for x in lists]) if len(lists) else []
        return pa.ListArray.from_arrays(
            pa.array(offsets), item_ids.take(pa.array(flat, pa.int64()))
        )

    return pa.table(
        {
            "arm": pa.array(df["arm"], pa.string()).dictionary_encode(),
            "conversation": pa.array(df["conversation"], pa.int32()),
            "user_id": user_ids.take(pa.array(df["user"], pa.int64())),
            "target_item_id": item_ids.take(pa.array(df["target"], pa.int64())),
            "turn": pa.array(df["turn"], pa.int16()),
            "speaker": pa.array(df["speaker"], pa.string()).dictionary_encode(),
            "text": pa.array(df["text"], pa.string()),
            "item_ids": ids(list(df["items"])),
            "verdicts": pa.array(list(df["verdicts"]), pa.list_(pa.string())),
            "decided_by": pa.array(df["decided_by"], pa.string()).dictionary_encode(),
            "prompt_hash": pa.array([r["prompt_hash"] for r in rows], pa.string()),
            "prompt_tokens": pa.array([r["prompt_tokens"] for r in rows], pa.int32()),
            "completion_tokens": pa.array([r["completion_tokens"] for r in rows], pa.int32()),
            "rating": pa.array([r.get("rating") for r in rows], pa.int16()),
        }
    )


def _metrics(per_arm: dict[str, dict[str, np.ndarray]], turns: int) -> pd.DataFrame:
    """Per arm and turn: Recall@k (the target ranked in the top k at this turn or before) and
    the success rate (accepted at this turn or before)."""
    out = []
    for arm, r in per_arm.items():
        for t in range(1, turns + 1):
            ranks = r["rank_by_turn"][t - 1]
            row = {"arm": arm, "turn": t, "dialogues": int(ranks.size)}
            for k in RECALL_AT:
                row[f"recall_at_{k}"] = float(np.mean(ranks < k))
            s = r["success_turn"]
            row["success_rate"] = float(np.mean((s > 0) & (s <= t)))
            out.append(row)
    return pd.DataFrame(out)


def _comparison(
    per_arm: dict[str, dict[str, np.ndarray]],
    control: str,
    n_resamples: int,
    alpha: float,
    seed: int,
) -> pd.DataFrame:
    """Per arm: success rate, mean turns to success, items rejected, closing rating, and the
    paired (by user) bootstrap difference of success against ``control`` with a Holm-adjusted
    p-value."""
    from simrec.evaluation.resampling import bootstrap_p_value, bootstrap_units, holm

    base = per_arm[control]["success_turn"] > 0
    rows, pvals = [], []
    for arm, r in per_arm.items():
        won = r["success_turn"] > 0
        row = {
            "arm": arm,
            "success_rate": float(won.mean()),
            "turns_to_success": float(r["success_turn"][won].mean()) if won.any() else np.nan,
            "items_rejected": float(r["rejected"].mean()),
            "closing_rating": float(r["rating"].mean()),
            "accepted_other_rate": float(np.mean(r["status"] == "accepted_other")),
            "unresolved_title_rate": float(r["unresolved_rate"]),
            "diff_vs_control": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p_value": np.nan,
        }
        if arm != control:
            d = won.astype(np.float64) - base
            point, res = bootstrap_units(
                lambda idx, d=d: d[idx].mean(axis=-1)[None, :],
                d.size,
                n_resamples=n_resamples,
                alpha=alpha,
                seed=seed,
            )
            p = bootstrap_p_value(res.bootstrap_distribution)
            row.update(
                diff_vs_control=float(point[0]),
                ci_low=float(res.confidence_interval.low[0]),
                ci_high=float(res.confidence_interval.high[0]),
                p_value=float(p),
            )
            pvals.append((len(rows), p))
        rows.append(row)
    df = pd.DataFrame(rows)
    df["p_holm"] = np.nan
    if pvals:
        adjusted = holm(np.array([p for _, p in pvals]))
        for (i, _), q in zip(pvals, adjusted, strict=True):
            df.loc[i, "p_holm"] = float(q)
    return df
