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

from simrec import outputs
from simrec.augment.cutoff import Cutoff, parse_cutoff, visible
from simrec.augment.evaluate import downstream_lift, genre_recovery, hide_genres
from simrec.augment.interactions import merged, pseudo_interactions
from simrec.augment.items import enrich_items, vocabulary
from simrec.augment.profiles import write_profiles
from simrec.config import RunConfig
from simrec.errors import ConfigError

__all__ = [
    "Cutoff",
    "augment_interactions",
    "augment_items",
    "augment_profiles",
    "downstream_lift",
    "enrich_items",
    "genre_recovery",
    "hide_genres",
    "merged",
    "parse_cutoff",
    "pseudo_interactions",
    "visible",
    "vocabulary",
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
    base_url: str | None = None,
    attributes: tuple[str, ...] = ("era", "mood", "audience_group"),
    free_tags: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Enrich the catalog of ``config.data``; returns the output directory. ``llm``: a
    backend spec (``openai:MODEL``, ``vllm:MODEL``, ``local``) that then writes the
    descriptions and answers ``attributes``; the rest of ``config.llm`` (cache, concurrency,
    templates) applies."""
    if not 0 <= free_tags <= 10:
        raise ConfigError(f"--free-tags: expected 0 to 10, got {free_tags}")
    if neighbours < 1:
        raise ConfigError(f"--neighbours: expected a positive integer, got {neighbours}")
    if not 0 < genre_threshold <= 1:
        raise ConfigError(f"--genre-threshold: expected a share in (0, 1], got {genre_threshold}")
    enrich = {"only_missing": only_missing, "neighbours": neighbours}
    enrich["genre_threshold"] = genre_threshold

    def build(data, cut, cfg):
        options: dict = {}
        sources = ["catalog", "graph"]
        if llm is not None:
            options = {**_llm_options(cfg, llm, base_url), "attributes": tuple(attributes)}
            options["free_tags"] = free_tags
            sources.append(f"llm:{options['llm'].name}")
        table, counts = enrich_items(data, cutoff=cut, **enrich, **options)
        extra = {"vocabulary": vocabulary(data), "sources": sources}
        return {"items_enriched": table}, counts, extra

    params = dict(enrich)
    if llm is not None:
        params.update(llm=llm, attributes=list(attributes), free_tags=free_tags)
    return _augment("items", config, cutoff, params, out, overwrite, build)


def augment_profiles(
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    llm: str | None = None,
    base_url: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """A written profile per user from their history before the cutoff (rewritten by the
    ``llm`` backend spec when given)."""

    def build(data, cut, cfg):
        options = _llm_options(cfg, llm, base_url) if llm is not None else {}
        table, counts = write_profiles(data, cutoff=cut, **options)
        sources = ["history"] + ([f"llm:{options['llm'].name}"] if options else [])
        return {"profiles": table}, counts, {"sources": sources}

    params = {} if llm is None else {"llm": llm}
    return _augment("profiles", config, cutoff, params, out, overwrite, build)


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
    base_url: str | None = None,
    llm_candidates: int = 20,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Pseudo-positive and pseudo-negative items per user, chosen from ``base``'s candidates
    by the calibrated simulator (or by the ``llm`` backend spec, from the first
    ``llm_candidates``); with ``merge``, also the originals plus the pseudo-positives."""
    params = {"base": base, "candidates": candidates, "positives": positives}
    params["negatives"] = negatives

    def build(data, cut, cfg):
        options: dict = {}
        sources = ["original", "simulator:utility"]
        if llm is not None:
            options = {"llm": _llm_options(cfg, llm, base_url)["llm"]}
            options["llm_candidates"] = llm_candidates
            sources.append(f"llm:{options['llm'].name}")
        table, counts = pseudo_interactions(data, cfg, cutoff=cut, **params, **options)
        tables = {"interactions_augmented": table}
        if merge:
            tables["interactions_merged"] = merged(data, table, cut)
        return tables, counts, {"sources": sources}

    manifest_params = {**params, "merge": merge}
    if llm is not None:
        manifest_params.update(llm=llm, llm_candidates=llm_candidates)
    return _augment("interactions", config, cutoff, manifest_params, out, overwrite, build)


def _llm_options(cfg: RunConfig, spec: str, base_url: str | None) -> dict:
    """The cached backend of ``spec`` (the rest of ``cfg.llm`` applies) and the sampling
    options the augmenters take."""
    from simrec.simulator.runner import llm_backend

    cfg = cfg.model_copy(deep=True)
    cfg.llm.backend = spec
    if base_url is not None:
        cfg.llm.base_url = base_url
    return {
        "llm": llm_backend(cfg),
        "seed": cfg.seed,
        "templates_dir": cfg.llm.templates_dir,
        "max_tokens": max(cfg.llm.max_tokens, 300),
        "temperature": cfg.llm.temperature,
    }


def _augment(kind, config, cutoff, params, out, overwrite, build) -> Path:
    """Validate, load the data, build the tables, write them and then the manifest."""
    import pyarrow.parquet as pq

    from simrec import __version__
    from simrec.simulator.runner import DEFAULT_OUT, _as_config, load_data

    cfg = _as_config(config)
    cut = cutoff if isinstance(cutoff, Cutoff) or cutoff is None else parse_cutoff(cutoff)
    params = {"cutoff": None if cut is None else cut.describe(), **params}
    data_cfg = cfg.model_dump(mode="json", include={"seed": True, "data": True, "population": True})
    if out is None:
        blob = json.dumps({"kind": kind, **data_cfg, **params}, sort_keys=True).encode()
        out = DEFAULT_OUT / f"augment-{kind}-{hashlib.sha256(blob).hexdigest()[:10]}"
    out = Path(out)
    if outputs.check_out_dir(out, "augment") and not overwrite:
        raise ConfigError(f"{out}: already holds an augmentation; use --overwrite to replace it")
    t = time.perf_counter()
    data = load_data(cfg)
    tables, counts, extra = build(data, cut, cfg)
    outputs.check_out_dir(out, "augment")  # again: the work may have taken a while
    if overwrite:
        outputs.clear_own(out, "augment")
    outputs.claim(out, "augment")
    for name, table in tables.items():
        tmp = out / f".{name}.parquet.tmp"
        pq.write_table(table, tmp, compression="zstd")
        outputs.durable_replace(tmp, out / f"{name}.parquet")
    manifest = {
        "simrec_version": __version__,
        "kind": f"augment {kind}",
        "config": data_cfg,
        "data": {"source": data.source, "file_sha256": data.file_hashes},
        "parameters": params,
        "counts": counts,
        **extra,
        "timings": {"total_s": round(time.perf_counter() - t, 3)},
        "outputs": {name: f"{name}.parquet" for name in tables},
    }
    outputs.atomic_write(
        out / "manifest.json", json.dumps(manifest, indent=2, default=str).encode()
    )
    return out
