"""simrec augment items|profiles|interactions: catalog and user enrichment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from simrec.cli.flags import (
    add_augment_input_flags,
    add_augment_output_flags,
    base_urls,
    build_config,
)


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    au = sub.add_parser(
        "augment",
        help="enrich a catalog and its users from the interaction graph",
        description="Catalog enrichment with provenance: knowledge from the interaction graph "
        "(neighbours, statistics, genres for items without them, era, audience, tags, "
        "descriptions), using only interactions before --cutoff.",
    )
    au_sub = au.add_subparsers(dest="augment_command", required=True)
    ai = au_sub.add_parser(
        "items",
        help="write items_enriched.parquet",
        description="Enrich every item (or, with --only-missing, the items without genres or "
        "text): each generated field carries its source, a confidence and a prompt hash.",
    )
    add_augment_input_flags(ai, "write descriptions and attributes")
    ai.add_argument("--only-missing", action="store_true", help="only items without genres/text")
    ai.add_argument("--neighbours", type=int, default=10, help="neighbours per item (default 10)")
    ai.add_argument(
        "--genre-threshold",
        type=float,
        default=0.5,
        help="share of neighbour weight a genre needs to be added (default 0.5)",
    )
    ai.add_argument(
        "--attributes",
        help="attributes the LLM answers, among era,mood,audience_group (default: the "
        "domain's; era only where the items have dates)",
    )
    ai.add_argument(
        "--free-tags", type=int, default=0, help="free-text tags the LLM may add (default 0)"
    )
    ai.add_argument(
        "--genre-from",
        choices=("interactions", "kg", "both"),
        help="whose neighbours vote missing genres (default: both with --kg, else interactions)",
    )
    add_augment_output_flags(ai)
    ai.set_defaults(func=cmd_augment_items)
    ap = au_sub.add_parser(
        "profiles",
        help="write profiles.parquet",
        description="A written profile per user from their history before --cutoff: activity, "
        "liked and disliked genres, rating style, favourite titles; no invented demographics.",
    )
    add_augment_input_flags(ap, "write the profiles")
    add_augment_output_flags(ap)
    ap.set_defaults(func=cmd_augment_profiles)
    an = au_sub.add_parser(
        "interactions",
        help="write interactions_augmented.parquet (pseudo-positives and -negatives)",
        description="LLMRec-style augmentation: a base recommender proposes candidates, the "
        "calibrated simulator picks each user's pseudo-positives (what it would watch most) and "
        "pseudo-negatives (what it would pass over).",
    )
    add_augment_input_flags(an, "choose instead of the simulator")
    an.add_argument("--base", default="itemknn", help="recommender proposing candidates")
    an.add_argument("--candidates", type=int, default=50, help="candidates per user")
    an.add_argument("--positives", type=int, default=1, help="pseudo-positives per user")
    an.add_argument("--negatives", type=int, default=1, help="pseudo-negatives per user")
    an.add_argument(
        "--merge", action="store_true", help="also write the originals plus pseudo-positives"
    )
    an.add_argument(
        "--llm-candidates", type=int, default=20, help="candidates shown to the LLM (default 20)"
    )
    add_augment_output_flags(an)
    an.set_defaults(func=cmd_augment_interactions)


def cmd_augment_items(args: argparse.Namespace) -> int:
    from simrec import augment

    out = augment.augment_items(
        build_config(args),
        only_missing=args.only_missing,
        neighbours=args.neighbours,
        genre_threshold=args.genre_threshold,
        llm=args.llm,
        base_url=base_urls(args),
        attributes=None
        if args.attributes is None
        else tuple(a.strip() for a in args.attributes.split(",") if a.strip()),
        free_tags=args.free_tags,
        kg=args.kg is not None,
        genre_from=args.genre_from,
        **_common(args),
    )
    return _done(out)


def cmd_augment_profiles(args: argparse.Namespace) -> int:
    from simrec import augment

    out = augment.augment_profiles(
        build_config(args), llm=args.llm, base_url=base_urls(args), **_common(args)
    )
    return _done(out)


def cmd_augment_interactions(args: argparse.Namespace) -> int:
    from simrec import augment

    out = augment.augment_interactions(
        build_config(args),
        base=args.base,
        candidates=args.candidates,
        positives=args.positives,
        negatives=args.negatives,
        merge=args.merge,
        llm=args.llm,
        base_url=base_urls(args),
        llm_candidates=args.llm_candidates,
        **_common(args),
    )
    return _done(out)


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {"cutoff": args.cutoff, "out": args.out, "overwrite": args.overwrite}


def _done(out: Path) -> int:
    """Print what was written (from the output's manifest)."""
    manifest = json.loads((out / "manifest.json").read_text())
    for name, path in manifest["outputs"].items():
        print(f"{name}: {out / path}")
    print(", ".join(f"{k} {v:,}" for k, v in manifest["counts"].items()))
    return 0
