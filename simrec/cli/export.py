"""simrec export: a run as RecBole, OBP, Hugging Face or CSV files."""

from __future__ import annotations

import argparse

from simrec.cli.flags import add_events_uri_flag


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    e = sub.add_parser(
        "export",
        help="export a run to RecBole, OBP, Hugging Face or CSV",
        description="Export a complete run: RecBole atomic files, an OBP bandit-feedback "
        "bundle, a Hugging Face layout (train/test splits, personas, catalog and a card), "
        "or CSV.",
    )
    e.add_argument("run", help="a complete run directory")
    e.add_argument("--to", required=True, choices=("recbole", "obp", "hf", "csv", "hf-chat"))
    e.add_argument("--out", help="output directory (default RUN/export/FORMAT)")
    e.add_argument(
        "--test-fraction", type=float, default=0.2, help="hf: share of the last ticks in test"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    add_events_uri_flag(e, reads=True)
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from simrec.export import export

    path = export(
        args.run,
        args.to,
        out=args.out,
        test_fraction=args.test_fraction,
        overwrite=args.overwrite,
        events_uri=args.events_uri,
    )
    print(f"exported {args.run} to {args.to}: {path}")
    return 0
