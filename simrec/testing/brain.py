"""The Brain contract as a reusable check.

``check_brain(factory)`` builds a brain with ``factory(data, context)`` for a small calibrated
population (``context``: the :class:`~simrec.agents.brains.base.BrainContext` of its agents)
and checks what the simulator relies on: it is a :class:`~simrec.agents.brains.base.Brain`;
``arrivals``, ``decide``, ``session_value`` and ``end_sessions`` return the promised shapes and
types; a watch is always an examined, shown item; ratings come only with watches, on the
data's rating scale; satisfaction stays in [0, 1]; the same batch gives the same decisions
twice, and split into two batches gives them again (randomness keyed by agent, tick and
page, never by call order); a :class:`~simrec.agents.brains.base.StatefulBrain`'s state is
JSON-able and survives ``load_state`` into a fresh brain. Raises AssertionError naming the
broken promise.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from simrec.agents.brains.base import Brain, BrainContext, PageBatch, PageDecisions, StatefulBrain
from simrec.agents.memory import MemoryStore
from simrec.data import Dataset
from simrec.testing.recommender import contract_world


def check_brain(
    factory: Callable[[Dataset, BrainContext], Brain],
    *,
    k: int = 8,
    seed: int = 0,
    world: Dataset | None = None,
) -> None:
    """Build ``factory(data, context)`` and check every promise of the Brain contract (module
    docstring). ``world``: the dataset (default :func:`contract_world`); the population is one
    agent per user of it, calibrated by :func:`simrec.build.calibrate`."""
    from simrec import build

    data = world or contract_world(seed=seed)
    cfg = build.as_config({"seed": seed, "brain": {"taste_dim": 4}})
    _, personas = build.calibrate(cfg, data, users=None)
    n, n_items = len(personas), data.catalog.n_items
    ctx = BrainContext(personas, data.catalog, data.scale, MemoryStore(n))
    brain = factory(data, ctx)
    assert isinstance(brain, Brain), (
        f"{type(brain).__name__}: a Brain needs name, arrivals, decide, session_value and "
        f"end_sessions"
    )
    name = brain.name
    assert isinstance(name, str) and name, "a Brain needs a non-empty str attribute 'name'"

    agents = np.arange(n, dtype=np.int64)
    satisfaction = np.full(n, 0.5, np.float32)
    arrive = np.asarray(brain.arrivals(agents, 2, satisfaction))
    assert arrive.shape == (n,) and arrive.dtype == bool, (
        f"{name}: arrivals() must return ({n},) bool, got {arrive.shape} {arrive.dtype}"
    )

    batch = _batch(agents, k, n_items, seed, ctx)
    d = brain.decide(batch)
    _check_decisions(name, d, batch, data)
    again = brain.decide(batch)
    _assert_same(name, d, again, "the same batch twice")
    cut = max(1, n // 3)
    parts = [brain.decide(batch.take(np.arange(a, b))) for a, b in ((0, cut), (cut, n))]
    for field in ("examined", "clicked", "rating", "leave"):
        joined = np.concatenate([getattr(p, field) for p in parts])
        assert np.array_equal(joined, getattr(d, field), equal_nan=field == "rating"), (
            f"{name}: {field} depends on how agents are batched (key randomness by agent, "
            f"tick and page, not by call order)"
        )

    watched = d.clicked.sum(axis=1)
    value = brain.session_value(np.where(watched > 0, 0.7 * watched, 0.0), watched)
    value = np.asarray(value, np.float64)
    assert value.shape == (n,), f"{name}: session_value() must return ({n},), got {value.shape}"
    sat, churn = brain.end_sessions(agents, 2, value, satisfaction)
    sat, churn = np.asarray(sat), np.asarray(churn)
    assert sat.shape == (n,) and churn.shape == (n,) and churn.dtype == bool, (
        f"{name}: end_sessions() must return ({n},) satisfaction and ({n},) bool churn"
    )
    assert ((sat >= 0) & (sat <= 1)).all(), f"{name}: satisfaction outside [0, 1]"

    if isinstance(brain, StatefulBrain):
        state = brain.state()
        saved = json.loads(json.dumps(state))  # checkpoints store it as JSON
        fresh = factory(data, ctx)
        assert isinstance(fresh, StatefulBrain), f"{name}: factory() must build the same kind"
        fresh.load_state(saved)
        assert json.loads(json.dumps(fresh.state())) == saved, (
            f"{name}: load_state(state()) does not restore the state"
        )


def _batch(agents: np.ndarray, k: int, n_items: int, seed: int, ctx: BrainContext) -> PageBatch:
    """A page per agent: distinct items, and -1 padding at the end of every third row."""
    g = np.random.default_rng(seed)
    items = np.stack([g.choice(n_items, size=k, replace=False) for _ in agents]).astype(np.int64)
    items[::3, k - 2 :] = -1
    scores = np.where(items >= 0, g.random(items.shape), 0.0).astype(np.float32)
    return PageBatch(agents, items, scores, page=1, tick=2, context=ctx)


def _check_decisions(name: str, d: PageDecisions, batch: PageBatch, data: Dataset) -> None:
    n, k = batch.items.shape
    assert isinstance(d, PageDecisions), f"{name}: decide() must return PageDecisions"
    for field, dtype in (("examined", bool), ("clicked", bool), ("leave", bool)):
        arr = np.asarray(getattr(d, field))
        shape = (n,) if field == "leave" else (n, k)
        assert arr.shape == shape and arr.dtype == dtype, (
            f"{name}: {field} must be {shape} bool, got {arr.shape} {arr.dtype}"
        )
    rating = np.asarray(d.rating, np.float64)
    assert rating.shape == (n, k), f"{name}: rating must be {(n, k)}, got {rating.shape}"
    assert len(d.decided_by) == n, f"{name}: decided_by must have one label per view"
    valid = batch.items >= 0
    assert not (d.clicked & ~d.examined).any(), f"{name}: a watched item was not examined"
    assert not (d.examined & ~valid).any(), f"{name}: an empty slot (-1) was examined"
    assert not (np.isfinite(rating) & ~d.clicked).any(), f"{name}: a rating without a watch"
    scale = data.scale
    r = rating[np.isfinite(rating)]
    on_scale = (r >= scale.low - 1e-6) & (r <= scale.high + 1e-6)
    assert on_scale.all(), f"{name}: a rating outside the scale [{scale.low}, {scale.high}]"


def _assert_same(name: str, a: PageDecisions, b: PageDecisions, how: str) -> None:
    for field in ("examined", "clicked", "rating", "leave"):
        same = np.array_equal(getattr(a, field), getattr(b, field), equal_nan=field == "rating")
        assert same, f"{name}: {field} differs for {how} (decisions must be reproducible)"
