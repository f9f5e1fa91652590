"""Catalog enrichment and data augmentation, with provenance (``simrec augment``).

* :func:`augment_items`: ``items_enriched.parquet`` (see :mod:`simrec.augment.items`);
* :func:`augment_profiles`: ``profiles.parquet`` (see :mod:`simrec.augment.profiles`);
* :func:`augment_interactions`: ``interactions_augmented.parquet`` and, with ``merge``,
  ``interactions_merged.parquet`` (see :mod:`simrec.augment.interactions`).

Each writes its tables, then ``manifest.json`` last, into one output directory. Only
interactions before the cutoff (:mod:`simrec.augment.cutoff`) inform anything.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simrec import outputs
from simrec.augment.base import Augmenter, AugmentResult
from simrec.augment.cutoff import Cutoff, parse_cutoff, visible
from simrec.augment.evaluate import (
    cold_item_lift,
    downstream_lift,
    genre_recovery,
    hide_genres,
    subsample,
)
from simrec.augment.interactions import merged, pseudo_interactions
from simrec.augment.items import enrich_items, vocabulary
from simrec.augment.profiles import write_profiles
from simrec.build import as_config, load_data
from simrec.config import RunConfig, identity_dump
from simrec.data.dataset import Dataset
from simrec.errors import ConfigError
from simrec.version import __version__

if TYPE_CHECKING:
    from simrec.llm.base import LLMBackend

__all__ = [
    "AugmentResult",
    "Augmenter",
    "Cutoff",
    "InteractionAugmenter",
    "ItemEnricher",
    "ProfileWriter",
    "augment_interactions",
    "augment_items",
    "augment_profiles",
    "cold_item_lift",
    "downstream_lift",
    "enrich_items",
    "genre_recovery",
    "hide_genres",
    "subsample",
    "merged",
    "parse_cutoff",
    "pseudo_interactions",
    "visible",
    "vocabulary",
    "write",
    "write_profiles",
]


def augment_items(
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    only_missing: bool = False,
    neighbours: int = 10,
    genre_threshold: float = 0.5,
    llm: str | None = None,
    base_url: str | list[str] | None = None,
    attributes: tuple[str, ...] | None = None,
    free_tags: int = 0,
    kg: bool = False,
    genre_from: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Enrich the catalog of ``config.data``; returns the output directory. ``llm``: a
    backend spec (``openai:MODEL``, ``vllm:MODEL``, ``local``) that then writes the
    descriptions and answers ``attributes`` (None: the catalog domain's); the rest of
    ``config.llm`` (cache, concurrency, templates) applies. ``kg``: add the data's
    knowledge-graph facts and neighbours; ``genre_from``: ``interactions``, ``kg`` or
    ``both`` (see :func:`enrich_items`)."""
    cfg = as_config(config)
    options = _llm_options(cfg, llm, base_url) if llm is not None else {}
    enricher = ItemEnricher(
        only_missing=only_missing,
        neighbours=neighbours,
        genre_threshold=genre_threshold,
        attributes=None if attributes is None else tuple(attributes),
        free_tags=free_tags,
        kg=kg,
        genre_from=genre_from,
        **options,
    )
    if llm is not None:  # the manifest names the spec the user gave
        named = "domain" if attributes is None else list(attributes)
        enricher.params.update(llm=llm, attributes=named, free_tags=free_tags)
    return write(enricher, cfg, cutoff=cutoff, out=out, overwrite=overwrite)


def augment_profiles(
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    llm: str | None = None,
    base_url: str | list[str] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """A written profile per user from their history before the cutoff (rewritten by the
    ``llm`` backend spec when given)."""
    cfg = as_config(config)
    writer = ProfileWriter(**(_llm_options(cfg, llm, base_url) if llm is not None else {}))
    if llm is not None:
        writer.params = {"llm": llm}
    return write(writer, cfg, cutoff=cutoff, out=out, overwrite=overwrite)


def augment_interactions(
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    base: str = "itemknn",
    candidates: int = 50,
    positives: int = 1,
    negatives: int = 1,
    merge: bool = False,
    llm: str | None = None,
    base_url: str | list[str] | None = None,
    llm_candidates: int = 20,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Pseudo-positive and pseudo-negative items per user, chosen from ``base``'s candidates
    by the calibrated simulator (or by the ``llm`` backend spec, from the first
    ``llm_candidates``); with ``merge``, also the originals plus the pseudo-positives."""
    cfg = as_config(config)
    backend = _llm_options(cfg, llm, base_url)["llm"] if llm is not None else None
    augmenter = InteractionAugmenter(
        cfg,
        base=base,
        candidates=candidates,
        positives=positives,
        negatives=negatives,
        merge=merge,
        llm=backend,
        llm_candidates=llm_candidates,
    )
    if llm is not None:
        augmenter.params.update(llm=llm, llm_candidates=llm_candidates)
    return write(augmenter, cfg, cutoff=cutoff, out=out, overwrite=overwrite)


class ItemEnricher:
    """The ``items`` augmenter: :func:`enrich_items` (graph facts, and LLM descriptions and
    attributes when ``llm`` is an LLMBackend) as an :class:`Augmenter`."""

    kind = "items"

    def __init__(
        self,
        *,
        only_missing: bool = False,
        neighbours: int = 10,
        genre_threshold: float = 0.5,
        attributes: tuple[str, ...] | None = None,
        free_tags: int = 0,
        kg: bool = False,
        genre_from: str | None = None,
        llm: LLMBackend | None = None,
        **sampling: Any,
    ) -> None:
        if not 0 <= free_tags <= 10:
            raise ConfigError(f"--free-tags: expected 0 to 10, got {free_tags}")
        if neighbours < 1:
            raise ConfigError(f"--neighbours: expected a positive integer, got {neighbours}")
        if not 0 < genre_threshold <= 1:
            raise ConfigError(
                f"--genre-threshold: expected a share in (0, 1], got {genre_threshold}"
            )
        self._graph = {
            "only_missing": only_missing,
            "neighbours": neighbours,
            "genre_threshold": genre_threshold,
        }
        if kg or genre_from is not None:  # recorded only when used: old outputs keep their path
            self._graph.update(kg=kg, genre_from=genre_from)
        self.params: dict[str, Any] = dict(self._graph)
        self.llm = llm
        self._llm_options: dict[str, Any] = {}
        if llm is not None:
            self._llm_options = {
                "llm": llm,
                "attributes": None if attributes is None else tuple(attributes),
                "free_tags": free_tags,
                **sampling,
            }

    def build(self, data: Dataset, cutoff: Cutoff | None) -> AugmentResult:
        sources = ["catalog", "graph"]
        provenance: dict[str, Any] = {"vocabulary": vocabulary(data)}
        alignment = None
        if self._graph.get("kg") and data.catalog.knowledge is not None:
            from simrec.augment.knowledge import alignment_check

            sources.append(data.catalog.knowledge.source)
            alignment = alignment_check(data, visible(data.interactions, cutoff))
            provenance["kg_alignment"] = alignment
        table, counts = enrich_items(
            data, cutoff=cutoff, alignment=alignment, **self._graph, **self._llm_options
        )
        sources += [f"llm:{self.llm.name}"] if self.llm else []
        provenance["sources"] = sources
        return AugmentResult({"items_enriched": table}, counts, provenance)


class ProfileWriter:
    """The ``profiles`` augmenter: :func:`write_profiles` (rewritten by ``llm`` when given) as
    an :class:`Augmenter`."""

    kind = "profiles"

    def __init__(self, *, llm: LLMBackend | None = None, **sampling: Any) -> None:
        self.params: dict[str, Any] = {}
        self.llm = llm
        self._options = {"llm": llm, **sampling} if llm is not None else {}

    def build(self, data: Dataset, cutoff: Cutoff | None) -> AugmentResult:
        table, counts = write_profiles(data, cutoff=cutoff, **self._options)
        sources = ["history"] + ([f"llm:{self.llm.name}"] if self.llm else [])
        return AugmentResult({"profiles": table}, counts, {"sources": sources})


class InteractionAugmenter:
    """The ``interactions`` augmenter: :func:`pseudo_interactions` (chosen by the statistical
    brain of ``cfg``, or by ``llm``) and, with ``merge``, :func:`merged`, as an
    :class:`Augmenter`."""

    kind = "interactions"

    def __init__(
        self,
        cfg: RunConfig,
        *,
        base: str = "itemknn",
        candidates: int = 50,
        positives: int = 1,
        negatives: int = 1,
        merge: bool = False,
        llm: LLMBackend | None = None,
        llm_candidates: int = 20,
    ) -> None:
        self.cfg = cfg
        self._choice = {
            "base": base,
            "candidates": candidates,
            "positives": positives,
            "negatives": negatives,
        }
        self.merge = merge
        self.llm = llm
        self._llm = {"llm": llm, "llm_candidates": llm_candidates} if llm is not None else {}
        self.params: dict[str, Any] = {**self._choice, "merge": merge}

    def build(self, data: Dataset, cutoff: Cutoff | None) -> AugmentResult:
        table, counts = pseudo_interactions(
            data, self.cfg, cutoff=cutoff, **self._choice, **self._llm
        )
        tables = {"interactions_augmented": table}
        if self.merge:
            tables["interactions_merged"] = merged(data, table, cutoff)
        sources = ["original", "simulator:utility"]
        sources += [f"llm:{self.llm.name}"] if self.llm else []
        return AugmentResult(tables, counts, {"sources": sources})


def _llm_options(cfg: RunConfig, spec: str, base_url: str | list[str] | None) -> dict:
    """The cached backend of ``spec`` (the rest of ``cfg.llm`` applies) and the sampling
    options the augmenters take."""
    from simrec.build import make_backend

    cfg = cfg.model_copy(deep=True)
    cfg.llm.backend = spec
    if base_url is not None:
        cfg.llm.base_url = base_url
    return {
        "llm": make_backend(cfg),
        "seed": cfg.seed,
        "templates_dir": cfg.llm.templates_dir,
        "max_tokens": max(cfg.llm.max_tokens, 300),
        "temperature": cfg.llm.temperature,
    }


def write(
    augmenter: Augmenter,
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Run ``augmenter`` on ``config.data`` with only the interactions before ``cutoff``, and
    write its tables, then ``manifest.json`` (parameters, counts, provenance), into ``out``
    (default ``datasets_out/augment-KIND-<hash>``); returns ``out``."""
    from simrec.simulator.runner import DEFAULT_OUT

    if not isinstance(augmenter, Augmenter):
        raise ConfigError(
            f"augment: expected an Augmenter (kind, params, build), got {type(augmenter).__name__}"
        )
    kind = augmenter.kind
    cfg = as_config(config)
    cut = cutoff if isinstance(cutoff, Cutoff) or cutoff is None else parse_cutoff(cutoff)
    params = {"cutoff": None if cut is None else cut.describe(), **augmenter.params}
    data_cfg = identity_dump(cfg, include={"seed": True, "data": True, "population": True})
    if out is None:
        blob = json.dumps({"kind": kind, **data_cfg, **params}, sort_keys=True).encode()
        out = DEFAULT_OUT / f"augment-{kind}-{hashlib.sha256(blob).hexdigest()[:10]}"
    out = Path(out)
    taking = {"overwrite": overwrite, "done": "manifest.json", "what": "augmentation"}
    outputs.check_free(out, "augment", **taking)
    t = time.perf_counter()
    data = load_data(cfg)
    result = augmenter.build(data, cut)
    with outputs.owning(out, "augment", **taking):
        for name, table in result.tables.items():
            outputs.write_parquet(table, out / f"{name}.parquet")
        manifest = {
            "simrec_version": __version__,
            "kind": f"augment {kind}",
            "config": data_cfg,
            "data": {"source": data.source, "file_sha256": data.file_hashes},
            "parameters": params,
            "counts": result.counts,
            **result.provenance,
            "timings": {"total_s": round(time.perf_counter() - t, 3)},
            "outputs": {name: f"{name}.parquet" for name in result.tables},
        }
        outputs.atomic_write(
            out / "manifest.json", json.dumps(manifest, indent=2, default=str).encode()
        )
    return out
