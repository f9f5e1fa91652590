"""simrec ope: off-policy evaluation of a target policy from a logged run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from simrec.cli.flags import (
    add_base_url_flag,
    add_location_flags,
    add_policy_flags,
    apply_policy_flags,
    base_urls,
    locations,
)


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    o = sub.add_parser(
        "ope",
        help="off-policy evaluation of a target policy from a logged run",
        description="Estimate a target policy's first-page value from a run logged by a "
        "stochastic policy: DM, IPS, SNIPS, IIPS, RIPS, DR, SNDR with bootstrap CIs.",
    )
    o.add_argument("run", help="a complete run directory")
    add_policy_flags(o, "--target", retrain=False)
    o.add_argument("--clip", type=float, help="cap importance weights at this value")
    o.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    o.add_argument(
        "--validate",
        action="store_true",
        help="also simulate the target on the same population and report each error",
    )
    o.add_argument("--out", help="output directory (default RUN-ope-TARGET)")
    add_base_url_flag(
        o,
        "--validate of an LLM run: the OpenAI-compatible server to use, repeatable (never "
        "taken from the run directory)",
    )
    add_location_flags(o)
    o.add_argument("--quiet", action="store_true")
    o.set_defaults(func=cmd_ope)


def cmd_ope(args: argparse.Namespace) -> int:
    from simrec.evaluation.ope import ope

    target: dict[str, Any] = {}
    apply_policy_flags(target, args)
    table = ope(
        args.run,
        target,
        clip=args.clip,
        n_resamples=args.bootstrap,
        validate=args.validate,
        out=args.out,
        base_url=base_urls(args),
        locations=locations(args),
    )
    from simrec.evaluation.ope import support_warning

    warning = support_warning(table)
    if warning:  # even with --quiet: it changes what the numbers mean
        print(f"simrec: {warning}", file=sys.stderr)
    if not args.quiet:
        cols = ["estimator", "value", "ci_low", "ci_high", "ess", "max_weight", "support"]
        cols += ["truth", "relative_error"] if args.validate else []
        print(f"target: {table.target.iloc[0]}   slates: {table.n_slates.iloc[0]:,}")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
