"""User profiles written from each user's history before the cutoff (no LLM, no invented
demographics): the persona derivation of the simulator (activity, visits, liked and disliked
genres, rating style, conformity, exploration, favourite items), in the catalog domain's
words."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from simrec.agents.persona import derive_personas
from simrec.augment.cutoff import Cutoff, visible
from simrec.data.dataset import Dataset
from simrec.data.schemas import arrow_id_type


def write_profiles(
    data: Dataset,
    *,
    cutoff: Cutoff | None = None,
    llm=None,
    seed: int = 0,
    templates_dir: str | None = None,
    max_tokens: int = 300,
    temperature: float = 0.7,
) -> tuple[pa.Table, dict]:
    """``profiles`` as an Arrow table, one row per user with a visible interaction, and counts.
    Columns: user_id, profile (+ _source ``history``, _confidence, _prompt_hash), liked_genres,
    disliked_genres, favourite_items (item ids, best rated first; without ratings the
    latest), n_interactions,
    mean_rating. ``llm``: an LLMBackend that rewrites each profile from the same facts (source
    ``llm:<model>``, confidence 0.5); an unusable answer, or one that mentions demographics,
    keeps the written-from-history profile and is counted."""
    rows = visible(data.interactions, cutoff)
    log = data.interactions.take(rows)
    view = dataclasses.replace(data, interactions=log)
    n_users = log.n_users
    rated = np.isfinite(log.rating)
    r = log.rating.astype(np.float64)
    n_r = np.bincount(log.user[rated], minlength=n_users)
    with np.errstate(invalid="ignore"):
        mean = np.bincount(log.user[rated], r[rated], n_users) / n_r
    bias = np.nan_to_num(mean - (r[rated].mean() if rated.any() else 0.0))
    personas = derive_personas(view, bias)
    counts = np.bincount(log.user, minlength=n_users)
    users = np.flatnonzero(counts > 0)
    favourites = personas.favourite_items
    cat = data.catalog
    profiles = [personas.profiles[u] for u in users.tolist()]
    sources = ["history"] * users.size
    confidence = 1.0 - 1.0 / np.sqrt(counts[users])
    hashes: list[str | None] = [None] * users.size
    found: dict = {}
    if llm is not None:
        from simrec.agents.brains.prompts import in_words, load_templates
        from simrec.augment.llm import LLM_CONFIDENCE, profiles_with_llm

        facts = [
            _facts(profiles[j], personas, u, cat.domain.categories)
            for j, u in enumerate(users.tolist())
        ]
        answers, found = profiles_with_llm(
            facts,
            log.user_ids[users].tolist(),
            backend=llm,
            templates=in_words(load_templates(templates_dir), cat.domain),
            seed=seed,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        for j, answer in enumerate(answers):
            if answer is not None:
                profiles[j], hashes[j] = answer
                sources[j] = f"llm:{llm.name}"
                confidence[j] = LLM_CONFIDENCE
    user_type = arrow_id_type(log.user_ids)
    item_type = arrow_id_type(cat.item_ids)
    table = pa.Table.from_pydict(
        {
            "user_id": pa.array(log.user_ids[users], user_type),
            "profile": pa.array(profiles, pa.string()),
            "profile_source": pa.array(sources, pa.string()),
            "profile_confidence": pa.array(confidence, pa.float64()),
            "profile_prompt_hash": pa.array(hashes, pa.string()),
            "liked_genres": pa.array(
                [personas.liked_genres[u] for u in users], pa.list_(pa.string())
            ),
            "disliked_genres": pa.array(
                [personas.disliked_genres[u] for u in users], pa.list_(pa.string())
            ),
            "favourite_items": pa.array(
                [cat.item_ids[favourites[u]].tolist() for u in users],
                pa.list_(item_type),
            ),
            "n_interactions": pa.array(counts[users], pa.int64()),
            "mean_rating": pa.array(
                [None if not np.isfinite(mean[u]) else float(mean[u]) for u in users], pa.float64()
            ),
        }
    )
    stats = {
        "users": int(users.size),
        "visible_interactions": int(rows.size),
        "interactions": len(data.interactions),
        **dict(found),
    }
    return table, stats


def _facts(profile: str, personas, u: int, categories: str = "genres") -> str:
    """The facts an LLM may use for user ``u``: the profile written from the history, and
    the liked and disliked genres (``categories``: the domain's word for them)."""
    lines = [profile]
    if personas.liked_genres[u]:
        lines.append(f"Liked {categories}: {', '.join(personas.liked_genres[u])}")
    if personas.disliked_genres[u]:
        lines.append(f"Disliked {categories}: {', '.join(personas.disliked_genres[u])}")
    return "\n".join(f"- {x}" for x in lines)
