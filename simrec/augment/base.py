"""The Augmenter contract: a dataset and a cutoff in, tables with provenance out.

An augmenter reads only the interactions before the cutoff (:func:`simrec.augment.visible`), so
what it makes can be evaluated on the later data honestly;
:func:`simrec.testing.check_augmenter` checks that it gives the same tables when the later
interactions are not there at all. :func:`simrec.augment.write` runs any augmenter, built-in
or your own, and writes its tables and a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from simrec.augment.cutoff import Cutoff
    from simrec.data.dataset import Dataset


@dataclass
class AugmentResult:
    """tables: output name -> Arrow table (written as ``NAME.parquet``); counts: what was made,
    by kind (for the manifest); provenance: where it came from (``sources``, at least), also
    recorded in the manifest. Each generated column of a table carries its own ``_source``,
    ``_confidence`` and, for LLM output, ``_prompt_hash`` columns."""

    tables: dict[str, pa.Table]
    counts: dict[str, int]
    provenance: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Augmenter(Protocol):
    """Enriches a dataset: required are ``kind`` (names the output, e.g. ``items``),
    ``params`` (what the manifest records about the settings) and ``build``."""

    kind: str
    params: dict[str, Any]

    def build(self, data: Dataset, cutoff: Cutoff | None) -> AugmentResult:
        """The tables, from ``data``'s catalog and its interactions before ``cutoff`` only."""
        ...
