"""Catalog enrichment and data augmentation, with provenance (``simrec augment``).

``augment_items(config, ...)`` writes ``items_enriched.parquet`` (see
:mod:`simrec.augment.items`) and a ``manifest.json``; ``enrich_items(data, ...)`` returns the
table. Only interactions before the cutoff (:mod:`simrec.augment.cutoff`) inform anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from simrec.augment.cutoff import Cutoff, parse_cutoff, visible
from simrec.augment.evaluate import genre_recovery, hide_genres
from simrec.augment.items import enrich_items, vocabulary
from simrec.config import RunConfig
from simrec.errors import ConfigError

__all__ = [
    "Cutoff",
    "augment_items",
    "enrich_items",
    "genre_recovery",
    "hide_genres",
    "parse_cutoff",
    "visible",
    "vocabulary",
]


def augment_items(
    config: RunConfig | dict | str | Path | None = None,
    *,
    cutoff: str | float | Cutoff | None = None,
    only_missing: bool = False,
    neighbours: int = 10,
    genre_threshold: float = 0.5,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Enrich the catalog of ``config.data``; returns the output directory, which holds
    ``items_enriched.parquet`` and, written last, ``manifest.json``."""
    import pyarrow.parquet as pq

    from simrec import __version__
    from simrec.simulator.runner import DEFAULT_OUT, _as_config, load_data

    cfg = _as_config(config)
    if neighbours < 1:
        raise ConfigError(f"--neighbours: expected a positive integer, got {neighbours}")
    if not 0 < genre_threshold <= 1:
        raise ConfigError(f"--genre-threshold: expected a share in (0, 1], got {genre_threshold}")
    cut = cutoff if isinstance(cutoff, Cutoff) or cutoff is None else parse_cutoff(cutoff)
    params = {
        "cutoff": None if cut is None else cut.describe(),
        "only_missing": only_missing,
        "neighbours": neighbours,
        "genre_threshold": genre_threshold,
    }
    data_cfg = cfg.model_dump(mode="json", include={"seed": True, "data": True, "population": True})
    if out is None:
        blob = json.dumps({**data_cfg, **params}, sort_keys=True).encode()
        out = DEFAULT_OUT / f"augment-{hashlib.sha256(blob).hexdigest()[:10]}"
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise ConfigError(f"{out}: already holds an augmentation; use --overwrite to replace it")
    t = time.perf_counter()
    data = load_data(cfg)
    table, counts = enrich_items(
        data,
        cutoff=cut,
        neighbours=neighbours,
        genre_threshold=genre_threshold,
        only_missing=only_missing,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten
    tmp = out / ".items_enriched.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out / "items_enriched.parquet")
    manifest = {
        "simrec_version": __version__,
        "kind": "augment items",
        "config": data_cfg,
        "data": {"source": data.source, "file_sha256": data.file_hashes},
        "parameters": params,
        "counts": counts,
        "vocabulary": vocabulary(data),
        "sources": ["catalog", "graph"],
        "timings": {"total_s": round(time.perf_counter() - t, 3)},
        "outputs": {"items": "items_enriched.parquet"},
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, out / "manifest.json")
    return out
