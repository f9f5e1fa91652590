"""The Recommender contract as a reusable check.

``check_recommender(factory)`` fits a fresh policy from ``factory()`` on a small synthetic world
and checks what the simulator relies on: the Slates it returns have the promised shapes and
types, no item repeats within a slate, excluded items are never shown, rows run short only when
exclusions leave fewer than ``k`` items (and then are padded with -1 at the end), every shown
item's ``pscore_item_position`` is in (0, 1] (exactly 1.0 when the policy says it is
deterministic), ``pscore_slate`` is in (0, 1] or NaN, and the same seed gives the same slates
whether users come in one batch or several. A policy that declares ``session_ranking = True``
(:class:`~simrec.environments.base.SessionRanking`) must also give, in one call for three pages,
the slates that three calls give page by page with the earlier pages excluded. Raises
AssertionError naming the broken promise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from simrec.config import SyntheticWorldConfig
from simrec.data import Dataset, make_world
from simrec.environments.base import (
    PolicyRandomness,
    Recommender,
    SlateProbabilities,
    Slates,
    check_slates,
    page_of,
    ranks_sessions,
)
from simrec.errors import ConfigError
from simrec.rng import Streams


def contract_world(users: int = 60, items: int = 80, seed: int = 0) -> Dataset:
    """The small synthetic world the contract checks run on, with a small knowledge graph
    (:func:`contract_knowledge`) so that knowledge-based plug-ins can be checked too."""
    cfg = SyntheticWorldConfig(users=users, items=items, interactions_per_user=12.0, genres=6)
    data = make_world(cfg, seed)
    data.catalog.knowledge = contract_knowledge(data)
    return data


def contract_knowledge(
    data: Dataset, relations: tuple[str, ...] = ("made_by", "genre", "language")
):
    """A knowledge graph for a synthetic world: every item but each tenth is linked to an
    entity ``eN``; facts (those of ``relations``) ``made_by`` (a creator per strongest taste
    dimension, three per dimension), ``genre`` (its genres) and ``language`` (two languages,
    one rare)."""
    import pandas as pd

    from simrec.data.knowledge import knowledge_from_frames

    cat = data.catalog
    linked = [i for i in range(cat.n_items) if i % 10 != 9]
    strongest = (
        np.argmax(data.truth.item_vecs, axis=1)
        if data.truth is not None
        else np.zeros(cat.n_items, np.int64)
    )
    rows = []
    for i, genres in zip(linked, [cat.genre_lists()[i] for i in linked], strict=True):
        if "made_by" in relations:
            rows.append((f"e{i}", "made_by", f"creator{strongest[i] * 3 + i % 3}"))
        if "genre" in relations:
            rows += [(f"e{i}", "genre", f"genre:{g}") for g in genres]
        if "language" in relations:
            rows.append((f"e{i}", "language", "lang1" if i % 7 == 0 else "lang0"))
    triples = pd.DataFrame(rows, columns=["head", "relation", "tail"])
    links = pd.DataFrame(
        {"item": cat.item_ids[linked].astype(str), "entity": [f"e{i}" for i in linked]}
    )
    return knowledge_from_frames(triples, links, cat.item_ids, source="kg:contract")


def check_recommender(
    factory: Callable[[], Any], *, k: int = 10, seed: int = 0, world: Dataset | None = None
) -> None:
    """Fit ``factory()`` and check every promise of the Recommender contract (module docstring).

    ``world``: the dataset to fit on (default :func:`contract_world`); its users are the ids
    ``recommend`` is called with.
    """
    data = world or contract_world(seed=seed)
    n_users, n_items = data.interactions.n_users, data.catalog.n_items
    policy = factory()
    name = getattr(policy, "name", None)
    assert isinstance(name, str) and name, "a Recommender needs a non-empty str attribute 'name'"
    assert isinstance(policy, Recommender), f"{name}: missing fit() or recommend()"
    policy.fit(data.interactions.to_arrow(), data.catalog)
    streams = Streams(seed)
    users = np.arange(n_users, dtype=np.int64)
    consumed = data.interactions.matrix(n_items)

    # ordinary exclusions: what each user consumed
    _check_slates(name, policy, users, k, consumed, streams, n_items)

    # heavy exclusions: all but 3 items for the first users; nothing for others; everything
    heavy = consumed.tolil(copy=True)
    for u in range(5):
        heavy[u, :] = 0
        heavy[u, 3:] = 1
    heavy[5, :] = 1
    heavy = heavy.tocsr()
    heavy.eliminate_zeros()
    s = _check_slates(name, policy, users, k, heavy, streams, n_items)
    assert (s.items[:5, :3] >= 0).all() and (s.items[:5, 3:] == -1).all(), (
        f"{name}: a user allowed only 3 items must get exactly those 3, then -1 padding; "
        f"got {s.items[0].tolist()}"
    )
    assert (s.items[5] == -1).all(), f"{name}: a user with every item excluded must get -1s"
    _check_slates(name, policy, users, k, None, streams, n_items)

    # slate larger than the catalog
    _check_slates(name, policy, users[:4], n_items + 5, None, streams, n_items)
    if ranks_sessions(policy):
        _check_session_ranking(name, policy, users, k, heavy, streams, n_items)
    if isinstance(policy, SlateProbabilities):
        _check_slate_probabilities(name, policy, users, k, consumed, streams)


def _check_slate_probabilities(
    name: str, policy: Any, users: np.ndarray, k: int, consumed: sp.csr_matrix, streams: Streams
) -> None:
    """The probabilities ``slate_probabilities`` gives the policy's own slates are the
    propensities ``recommend`` gave them, asked with the same draws."""
    rng = PolicyRandomness(streams, tick=5, page=2, purpose="probabilities-check")
    s = policy.recommend(users, k, exclude=consumed, rng=rng)
    items = np.asarray(s.items)
    p_ip, p_prefix = policy.slate_probabilities(users, k, exclude=consumed, rng=rng, items=items)
    shown = items >= 0
    assert np.asarray(p_ip).shape == items.shape == np.asarray(p_prefix).shape, (
        f"{name}: slate_probabilities must return two arrays shaped like items {items.shape}"
    )
    for got, want, what in (
        (p_ip, s.pscore_item_position, "item-position"),
        (p_prefix, s.pscore_cascade, "prefix (cascade)"),
    ):
        if want is None:
            continue
        assert np.allclose(np.asarray(got)[shown], np.asarray(want)[shown], rtol=1e-5), (
            f"{name}: slate_probabilities gives other {what} probabilities for its own slates "
            f"than recommend's propensities"
        )


def _check_session_ranking(
    name: str,
    policy: Any,
    users: np.ndarray,
    k: int,
    consumed: sp.csr_matrix,
    streams: Streams,
    n_items: int,
) -> None:
    """Three pages in one call equal three calls page by page (earlier pages excluded, other
    ticks, pages and draws), scores included."""
    pages = 3
    whole = policy.recommend(
        users, k * pages, exclude=consumed, rng=PolicyRandomness(streams, tick=1, page=0)
    )
    assert whole.deterministic, f"{name}: session_ranking = True needs deterministic slates"
    rows = np.arange(users.size)
    shown = np.zeros((users.size, 0), np.int64)
    for page in range(pages):
        exclude = consumed.tolil(copy=True)
        for r, item in zip(np.repeat(rows, shown.shape[1]), shown.ravel(), strict=True):
            if item >= 0:
                exclude[r, item] = 1
        s = policy.recommend(
            users,
            k,
            exclude=exclude.tocsr(),
            rng=PolicyRandomness(streams, tick=7, page=page, purpose="session-check"),
        )
        block = page_of(whole, rows, page, k)
        assert np.array_equal(np.asarray(s.items), block.items), (
            f"{name}: declares session_ranking = True, but page {page + 1} asked alone differs "
            f"from the same page of one ranking for the whole session"
        )
        assert np.array_equal(np.asarray(s.scores), block.scores), (
            f"{name}: declares session_ranking = True, but the scores of page {page + 1} asked "
            f"alone differ from the whole session's"
        )
        shown = np.concatenate([shown, np.asarray(s.items)], axis=1)


def _check_slates(
    name: str,
    policy: Any,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    streams: Streams,
    n_items: int,
) -> Slates:
    n = users.size
    rng = PolicyRandomness(streams, tick=3, page=1)
    s = policy.recommend(users, k, exclude=exclude, rng=rng)
    try:  # what the simulator checks on every page: type, shapes, dtypes, index range
        check_slates(s, n, k, n_items, name)
    except ConfigError as err:
        raise AssertionError(str(err)) from None
    items = np.asarray(s.items)
    valid = items >= 0
    assert np.isfinite(np.asarray(s.scores, np.float64)[valid]).all(), f"{name}: scores not finite"
    # -1 only as trailing padding, and only when exclusions leave fewer than k items
    assert (np.diff(valid.astype(np.int8), axis=1) <= 0).all(), (
        f"{name}: -1 (no item) must only pad the end of a slate"
    )
    allowed = n_items - (np.diff(exclude.indptr) if exclude is not None else np.zeros(n, int))
    assert (valid.sum(axis=1) == np.minimum(k, allowed)).all(), (
        f"{name}: slates must be full unless exclusions leave fewer than k items"
    )
    srt = np.sort(np.where(valid, items, -1 - np.arange(k)), axis=1)
    assert (np.diff(srt, axis=1) != 0).all(), f"{name}: an item repeats within a slate"
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(n), valid.sum(axis=1))
        hit = np.asarray(exclude[rows, items[valid]]).ravel() != 0
        assert not hit.any(), f"{name}: showed an excluded item"
    p = np.asarray(s.pscore_item_position, np.float64)[valid]
    assert ((p > 0) & (p <= 1)).all(), f"{name}: pscore_item_position outside (0, 1]"
    ps = np.asarray(s.pscore_slate, np.float64)
    assert (np.isnan(ps) | ((ps > 0) & (ps <= 1))).all(), f"{name}: pscore_slate outside (0, 1]"
    if s.deterministic:
        assert (p == 1.0).all(), f"{name}: a deterministic policy must log pscore 1.0"
    if s.pscore_cascade is not None:
        c = np.asarray(s.pscore_cascade, np.float64)
        assert c.shape == (n, k), f"{name}: pscore_cascade shape {c.shape}, expected {(n, k)}"
        cv = np.where(valid, c, np.nan)
        assert ((cv[valid] > 0) & (cv[valid] <= 1)).all(), f"{name}: pscore_cascade outside (0, 1]"
        # a longer prefix is never more likely; the full prefix is the slate
        assert (np.nan_to_num(np.diff(cv, axis=1), nan=0.0) <= 1e-12).all(), (
            f"{name}: pscore_cascade must not grow along the slate"
        )
        full = valid.all(axis=1)
        np.testing.assert_allclose(c[full, -1], ps[full], rtol=1e-9, err_msg=f"{name}: cascade")
        # position 1: the prefix is the item itself
        np.testing.assert_allclose(
            c[valid[:, 0], 0],
            np.asarray(s.pscore_item_position)[valid[:, 0], 0],
            rtol=1e-9,
            err_msg=f"{name}: pscore_cascade at position 1 must equal pscore_item_position",
        )
    # the same draws whether users come together or split, and on a repeat call
    again = policy.recommend(users, k, exclude=exclude, rng=rng)
    assert np.array_equal(again.items, items), f"{name}: not deterministic under a fixed seed"
    cut = max(1, n // 3)
    parts = [
        policy.recommend(users[sl], k, exclude=None if exclude is None else exclude[sl], rng=rng)
        for sl in (slice(0, cut), slice(cut, n))
    ]
    split_items = np.concatenate([np.asarray(x.items) for x in parts])
    assert np.array_equal(split_items, items), (
        f"{name}: slates depend on how users are batched (draw randomness from rng by user)"
    )
    split_scores = np.concatenate([np.asarray(x.scores) for x in parts])
    assert np.array_equal(split_scores, np.asarray(s.scores)), (
        f"{name}: scores depend on how users are batched (they are logged: byte-identical "
        f"output needs them exact; see simrec.environments.base.exact_factors)"
    )
    split_p = np.concatenate([np.asarray(x.pscore_item_position) for x in parts])
    assert np.array_equal(split_p, np.asarray(s.pscore_item_position)), (
        f"{name}: propensities depend on how users are batched"
    )
    return s
