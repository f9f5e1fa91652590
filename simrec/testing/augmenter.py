"""The Augmenter contract as a reusable check.

``check_augmenter(augmenter)`` runs it on a small synthetic world with a cutoff at the median
interaction time and checks: it is an :class:`~simrec.augment.Augmenter`; the result has at
least one non-empty Arrow table, integer counts and its ``sources``; and, the leakage
promise, the tables are identical when the interactions at or after the cutoff are removed
from the data beforehand (nothing after the cutoff informed them). Raises AssertionError
naming the broken promise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from simrec.augment.base import Augmenter, AugmentResult
from simrec.augment.cutoff import Cutoff
from simrec.data import Dataset
from simrec.testing.recommender import contract_world


def check_augmenter(
    augmenter: Augmenter, *, world: Dataset | None = None, seed: int = 0
) -> AugmentResult:
    """Check ``augmenter`` (module docstring); returns its result on the whole ``world``
    (default :func:`contract_world`)."""
    assert isinstance(augmenter, Augmenter), (
        f"{type(augmenter).__name__}: an Augmenter needs kind, params and build()"
    )
    kind = augmenter.kind
    assert isinstance(kind, str) and kind, "an Augmenter needs a non-empty str attribute 'kind'"
    data = world or contract_world(seed=seed)
    cutoff = Cutoff(timestamp=int(np.median(data.interactions.timestamp)))
    result = augmenter.build(data, cutoff)
    assert isinstance(result, AugmentResult), f"{kind}: build() must return an AugmentResult"
    assert result.tables, f"{kind}: build() returned no tables"
    for name, table in result.tables.items():
        assert isinstance(table, pa.Table), f"{kind}: table {name!r} is not a pyarrow Table"
        assert table.num_rows > 0, f"{kind}: table {name!r} is empty"
    assert all(isinstance(v, int) for v in result.counts.values()), (
        f"{kind}: counts must be integers, got {result.counts}"
    )
    sources = result.provenance.get("sources")
    assert isinstance(sources, list) and sources, f"{kind}: provenance must list its sources"

    # leakage: the same tables when the later interactions do not exist at all
    log = data.interactions
    early = log.take(np.flatnonzero(log.timestamp < cutoff.timestamp))
    popularity = np.bincount(early.item, minlength=data.catalog.n_items).astype(np.int64)
    truncated = dataclasses.replace(
        data,
        interactions=early,
        catalog=dataclasses.replace(data.catalog, popularity=popularity),
    )
    again = augmenter.build(truncated, cutoff)
    assert set(again.tables) == set(result.tables), f"{kind}: different tables on the early log"
    for name, table in result.tables.items():
        assert again.tables[name].equals(table), (
            f"{kind}: table {name!r} changes when interactions after the cutoff are removed: "
            f"they leaked into it"
        )
    return result
