"""simrec report: an HTML report with plots of a run."""

from __future__ import annotations

import argparse

from simrec.cli.flags import add_events_uri_flag


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    rp = sub.add_parser(
        "report",
        help="an HTML report with plots of a run",
        description="Write RUN/report/report.html: per-tick curves, consumption by position, "
        "ratings, concentration of consumption, and the run's summary.",
    )
    rp.add_argument("run", help="a complete run directory")
    rp.add_argument("--out", help="report directory (default RUN/report)")
    add_events_uri_flag(rp, reads=True)
    rp.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simrec import outputs

    run = Path(args.run)
    if outputs.owner_kind(run) == "converse" and (run / "manifest.json").is_file():
        from simrec.conversation.report import conversation_report

        print(f"report: {conversation_report(run, args.out)}")
        return 0
    from simrec.evaluation.report import run_report

    print(f"report: {run_report(args.run, args.out, args.events_uri)}")
    return 0
