"""LLMRec-style interaction augmentation: pseudo-positive and pseudo-negative items per user.

A base recommender (fitted on the interactions before the cutoff) proposes ``candidates``
unseen items per user; the calibrated simulator (the statistical brain fitted on the same
interactions) scores each candidate with its watch logit, and the best ``positives`` become
pseudo-positives, the worst ``negatives`` pseudo-negatives (items the recommender would show
that the user would pass over). Every row says where it came from (``source``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simrec.augment.cutoff import Cutoff, visible
from simrec.config import RunConfig
from simrec.data.dataset import Dataset
from simrec.data.schemas import arrow_id_type
from simrec.errors import ConfigError


def pseudo_interactions(
    data: Dataset,
    cfg: RunConfig,
    *,
    cutoff: Cutoff | None = None,
    base: str = "itemknn",
    candidates: int = 50,
    positives: int = 1,
    negatives: int = 1,
    llm=None,
    llm_candidates: int = 20,
) -> tuple[pa.Table, dict]:
    """(n_users x (positives + negatives)) rows: user_id, item_id, label (1: pseudo-positive,
    0: pseudo-negative), score (the simulator's watch logit), candidate_rank (the base
    recommender's rank, 1 = first), source (``simulator:utility`` or ``llm:<model>``), base,
    prompt_hash. ``llm``: an LLMBackend that chooses instead, from each user's first
    ``llm_candidates`` candidates, given the facts of the user's profile; where its answer is
    unusable, the simulator chooses (counted as ``llm_failed``)."""
    from simrec.build import calibrate
    from simrec.data.agent_log import agent_log
    from simrec.environments.base import PolicyRandomness
    from simrec.environments.registry import make_policy
    from simrec.rng import Streams

    if candidates < positives + negatives:
        raise ConfigError(
            f"--candidates: expected at least positives + negatives ({positives + negatives}), "
            f"got {candidates}"
        )
    if llm is not None and llm_candidates < positives + negatives:
        raise ConfigError(
            f"--llm-candidates: expected at least positives + negatives "
            f"({positives + negatives}), got {llm_candidates}"
        )
    if positives < 0 or negatives < 0 or positives + negatives == 0:
        raise ConfigError("--positives/--negatives: expected non-negative counts, not both 0")
    rows = visible(data.interactions, cutoff)
    log = data.interactions.take(rows)
    n_items = data.catalog.n_items
    view = data.with_log(log)
    brain, _ = calibrate(cfg, view, users=None)
    policy = make_policy(base, {}, None)
    users = np.arange(log.n_users, dtype=np.int64)
    policy.fit(agent_log(view, users), view.catalog)
    seen = log.matrix(n_items)
    active = users[np.diff(seen.indptr) > 0]
    out = {k: [] for k in ("user", "item", "label", "score", "rank", "source", "hash")}
    k = min(candidates, n_items)
    batches = []  # (users, candidate items (m, k)); the LLM and the simulator see the same
    for start in range(0, active.size, 4096):
        u = active[start : start + 4096]
        slates = policy.recommend(
            u, k, exclude=seen[u], rng=PolicyRandomness(Streams(cfg.seed), 0, 0, "augment")
        )
        batches.append((u, slates.items))
    llm_counts: dict = {}
    choices: dict[int, tuple] = {}
    if llm is not None:
        choices, llm_counts = _llm_choices(
            view, cfg, seen, batches, llm, positives, negatives, min(llm_candidates, k)
        )
    source_sim = "simulator:utility"
    for u, items in batches:
        valid = items >= 0
        logit = brain.watch_logit(u, np.where(valid, items, 0)).astype(np.float64)
        logit[~valid] = np.nan
        for row in range(u.size):
            have = np.flatnonzero(valid[row])
            if have.size < positives + negatives:
                continue
            order = have[np.lexsort((have, -logit[row, have]))]  # best first, ties by rank
            picks = [(j, 1) for j in order[:positives]]
            picks += [(j, 0) for j in order[::-1][:negatives]]
            source, digest = source_sim, None
            chosen = choices.get(int(u[row]))
            if chosen is not None:
                watch, skip, digest = chosen
                picks = [(j, 1) for j in watch] + [(j, 0) for j in skip]
                source = f"llm:{llm.name}"
            for j, label in picks:
                out["user"].append(u[row])
                out["item"].append(items[row, j])
                out["label"].append(label)
                out["score"].append(logit[row, j])
                out["rank"].append(j + 1)
                out["source"].append(source)
                out["hash"].append(digest)
    user_ids, item_ids = log.user_ids, data.catalog.item_ids
    uu, ii = np.asarray(out["user"], np.int64), np.asarray(out["item"], np.int64)
    table = pa.Table.from_pydict(
        {
            "user_id": pa.array(user_ids[uu], arrow_id_type(user_ids)),
            "item_id": pa.array(item_ids[ii], arrow_id_type(item_ids)),
            "label": pa.array(out["label"], pa.int8()),
            "score": pa.array(out["score"], pa.float64()),
            "candidate_rank": pa.array(out["rank"], pa.int32()),
            "source": pa.array(out["source"], pa.string()),
            "base": pa.array([base] * uu.size, pa.string()),
            "prompt_hash": pa.array(out["hash"], pa.string()),
        }
    )
    stats = {
        "users": int(np.unique(uu).size),
        "pseudo_positives": int(np.sum(np.asarray(out["label"]) == 1)),
        "pseudo_negatives": int(np.sum(np.asarray(out["label"]) == 0)),
        "visible_interactions": int(rows.size),
        "interactions": len(data.interactions),
        **dict(llm_counts),
    }
    return table, stats


def _llm_choices(view, cfg, seen, batches, llm, positives, negatives, k):
    """{user index: (watch, skip, prompt hash)} chosen by the LLM among the first ``k`` of
    each user's candidates in ``batches`` (the simulator's, in the same order)."""
    from simrec.agents.brains.prompts import in_words, load_templates
    from simrec.augment.llm import choose_with_llm
    from simrec.augment.profiles import write_profiles

    profiles = write_profiles(view)[0].column("profile").to_pylist()
    has = np.flatnonzero(np.diff(seen.indptr) > 0)
    profile_of = dict(zip(has.tolist(), profiles, strict=True))
    cat = view.catalog
    genres = cat.genre_lists()
    facts, lists, users = [], [], []
    for u, candidates in batches:
        for row, user in enumerate(u.tolist()):
            items = [i for i in candidates[row, :k].tolist() if i >= 0]
            if len(items) < positives + negatives:
                continue
            facts.append(f"- {profile_of[user]}")
            lists.append(
                [f"{cat.display_titles[i]} ({', '.join(genres[i]) or 'no genre'})" for i in items]
            )
            users.append(user)
    answers, counts = choose_with_llm(
        facts,
        lists,
        view.interactions.user_ids[users].tolist(),
        positives=positives,
        negatives=negatives,
        backend=llm,
        templates=in_words(load_templates(cfg.llm.templates_dir), cat.domain),
        key=cat.domain.key,
        seed=cfg.seed,
        max_tokens=cfg.llm.max_tokens,
        temperature=cfg.llm.temperature,
    )
    return {u: a for u, a in zip(users, answers, strict=True) if a is not None}, counts


def merged(data: Dataset, pseudo: pa.Table, cutoff: Cutoff | None) -> pa.Table:
    """The visible original interactions (source ``original``) followed by the
    pseudo-positives (rating and timestamp null, source from ``pseudo``)."""
    log = data.interactions.take(visible(data.interactions, cutoff))
    user_type = arrow_id_type(log.user_ids)
    item_type = arrow_id_type(data.catalog.item_ids)
    pos = pseudo.filter(pa.compute.equal(pseudo.column("label"), 1))
    n = len(log)
    return pa.Table.from_pydict(
        {
            "user_id": pa.concat_arrays(
                [
                    pa.array(log.user_ids[log.user], user_type),
                    pos.column("user_id").combine_chunks(),
                ]
            ),
            "item_id": pa.concat_arrays(
                [
                    pa.array(data.catalog.item_ids[log.item], item_type),
                    pos.column("item_id").combine_chunks(),
                ]
            ),
            "rating": pa.array(
                np.r_[log.rating.astype(np.float64), np.full(pos.num_rows, np.nan)],
                pa.float64(),
                from_pandas=True,
            ),
            "timestamp": pa.array([*log.timestamp.tolist(), *([None] * pos.num_rows)], pa.int64()),
            "source": pa.array(["original"] * n + pos.column("source").to_pylist(), pa.string()),
        }
    )
