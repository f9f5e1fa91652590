"""simrec eval impressions: position bias, preference and exposure from an impression log."""

from __future__ import annotations

import argparse
from pathlib import Path


def register_impressions(ev_sub) -> None:
    """Add ``impressions`` to the ``simrec eval`` subcommands ``ev_sub``."""
    s = ev_sub.add_parser(
        "impressions",
        help="what an impression log says: position bias, exposure, click-through",
        description="Read an impression log (a table with request, user, item, position, "
        "clicked and optional propensity and timestamp columns; the Open Bandit Dataset's CSV; "
        "MIND behaviors.tsv; simrec's own events), fit the position-based click model and "
        "report attention by position, click-through by position and exposure decile (real, "
        "with intervals, and predicted out of fold), how impressions grow with clicks (the "
        "brain.exposure the log shows) and, with --compare, how well the model predicts "
        "another log's click-through. Writes impressions.parquet and report.html.",
    )
    s.add_argument("log", help="the impression log (file, or a folder of simrec events)")
    s.add_argument("--compare", metavar="LOG", help="a second log of the same catalog")
    s.add_argument(
        "--columns",
        help="table layout: FIELD=COLUMN pairs for request,user,item,position,clicked,"
        "propensity,timestamp (default: the field names)",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the folds and resamples")
    s.add_argument("--out", help="output directory (default datasets_out/impressions-<name>)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier report")
    s.add_argument("--quiet", action="store_true", help="no table")
    s.set_defaults(func=cmd_impressions)


def cmd_impressions(args: argparse.Namespace) -> int:
    from simrec.cli.flags import parse_columns
    from simrec.evaluation.impressions import impressions_report, verdict
    from simrec.evaluation.synthetic.page import section_table
    from simrec.simulator.runner import DEFAULT_OUT

    log = Path(args.log)
    out = Path(args.out) if args.out else DEFAULT_OUT / f"impressions-{log.stem}"
    table = impressions_report(
        log,
        compare=args.compare,
        columns=parse_columns(args.columns) if args.columns else None,
        seed=args.seed,
        out=out,
        overwrite=args.overwrite,
    )
    if not args.quiet:
        print("\n".join(f"- {line}." for line in verdict(table)))
        shown = section_table(table, "position")
        print()
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
        print(f"\nreport: {out / 'report.html'}   table: {out / 'impressions.parquet'}")
    return 0
