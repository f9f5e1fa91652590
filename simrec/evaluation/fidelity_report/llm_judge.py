"""LLM brains judged by the same protocols: the LLM picks from the discrimination lists and
rates held-out items."""

from __future__ import annotations

import numpy as np
from scipy import stats

from simrec.agents.brains.base import BrainContext
from simrec.agents.memory import MemoryStore
from simrec.data.dataset import Dataset
from simrec.evaluation.fidelity_report.discrimination import RATIOS, Sets, scores_table
from simrec.evaluation.fidelity_report.rating import rmse
from simrec.evaluation.fidelity_report.split import Split
from simrec.rng import Streams
from simrec.trust import quoted

LLM_POSITIVES = 2  # held-out items per user in the LLM's lists (1:9 -> 20 items)
LLM_RATED = 5  # held-out ratings per user the LLM is asked for


def sample_llm_users(sets: Sets, n: int, seed: int) -> np.ndarray:
    """A deterministic sample of ``n`` users of the discrimination sets, sorted."""
    users = np.unique(sets.users)
    if users.size <= n:
        return users
    u = Streams(seed).uniform("fidelity-llm-users", users, 0, 0, 1)[:, 0]
    return np.sort(users[np.argsort(u, kind="stable")[:n]])


def _item_lines(data: Dataset, items: np.ndarray, genres: list[list[str]]) -> str:
    cat = data.catalog
    lines = (
        f"{cat.display_titles[i]} ({', '.join(genres[i]) or 'no genre'})" for i in items.tolist()
    )
    return "\n".join(f"{j}. {quoted(line)}" for j, line in enumerate(lines, 1))


def llm_discrimination(
    llm,
    ctx: BrainContext,
    split: Split,
    sets: Sets,
    users: np.ndarray,
    seed: int,
    utility_scores,
    theta,
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
    key = data.catalog.domain.key
    templates = llm.templates_for(data.catalog.domain)
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
            schema = prompts.pick_model(rows.size, key).model_json_schema()
            user_msg = templates["discriminate"].safe_substitute(
                count=rows.size, items=_item_lines(data, sets.items[rows], genres)
            )
            pick_seed = derive_seed(seed, "fidelity-pick", u, ratio)
            requests.append(_request(llm, llm.system_prompt(ctx, u), user_msg, schema, pick_seed))
            lists.append((ratio, rows))
    results = llm.backend.complete(requests)
    picks = {r: ([], []) for r in RATIOS}  # ratio -> (labels, picked)
    fallbacks = 0
    for (ratio, rows), res in zip(lists, results, strict=True):
        llm.count_usage(res)
        chosen = None
        if res.ok:
            try:
                answer = prompts.pick_model(rows.size, key).model_validate(res.parsed)
                positions = prompts.picked(answer)
                if len(set(positions)) == len(positions):
                    chosen = np.zeros(rows.size, bool)
                    chosen[[p - 1 for p in positions]] = True
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
        scores_table(rows_out, ratio, "llm", tp, fp, fn, y.size - tp - fp - fn)
        rows_out.append(("discrimination", f"1:{ratio}", "pairs", float(y.size), "llm"))
    rows_out.append(("discrimination", "llm", "users", float(users.size), "llm"))
    rows_out.append(("discrimination", "llm", "fallbacks", float(fallbacks), "llm"))
    return rows_out, {"requests": len(requests)}


def llm_ratings(llm, ctx: BrainContext, split: Split, users: np.ndarray, seed: int) -> list[tuple]:
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
    rated = np.isfinite(test.rating)
    requests, truth = [], []
    for u in users.tolist():
        mine = np.flatnonzero((test.user == u) & rated)[:LLM_RATED]
        if mine.size == 0:
            continue
        user_msg = llm.templates_for(data.catalog.domain)["rate"].safe_substitute(
            items=_item_lines(data, test.item[mine].astype(np.int64), genres),
            scale=f"{scale.low:g} to {scale.high:g} in steps of {scale.step:g}",
        )
        schema = prompts.rate_model(mine.size, values).model_json_schema()
        rate_seed = derive_seed(seed, "fidelity-rate", u)
        requests.append(_request(llm, llm.system_prompt(ctx, u), user_msg, schema, rate_seed))
        truth.append(test.rating[mine].astype(np.float64))
    if not requests:
        return []
    got, real, failed = [], [], 0
    for res, t in zip(llm.backend.complete(requests), truth, strict=True):
        llm.count_usage(res)
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
            ("rating", "held-out", "rmse_sampled", rmse(g, r), "llm"),
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


def prompt_context(data: Dataset, personas) -> BrainContext:
    """What the LLM's prompts read, for ``personas`` (one per user of ``data``) outside a
    simulation: nothing remembered yet."""
    return BrainContext(personas, data.catalog, data.scale, MemoryStore(len(personas)))
