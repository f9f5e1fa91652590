"""simrec ab: an offline A/B test of policies on the same population."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simrec.cli.flags import (
    add_events_uri_flag,
    add_exposures_flag,
    add_world_flags,
    build_config,
    exposures_flag,
    key_value,
)
from simrec.config import read_settings
from simrec.errors import ConfigError, InputError


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    a = sub.add_parser(
        "ab",
        help="offline A/B test of policies on the same population",
        description="Simulate the same population against each arm with common random numbers "
        "and compare the arms with user-clustered bootstrap CIs.",
    )
    add_world_flags(a)
    add_events_uri_flag(a)
    a.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=POLICY",
        help="an arm (repeatable, at least two): e.g. A=popular B=als C=pkg.mod:Class",
    )
    a.add_argument(
        "--arm-param",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="a parameter of one arm's policy (repeatable), e.g. B:factors=32",
    )
    a.add_argument(
        "--arms-file",
        help="YAML/TOML mapping of arm name to a policy section (name, params, exploration, "
        "retrain_every)",
    )
    a.add_argument("--control", help="the reference arm (default: the first)")
    a.add_argument("--replicates", type=int, default=1, help="repeat with seeds seed+1, ...")
    a.add_argument("--retrain-every", type=int, metavar="N", help="refit every arm every N ticks")
    a.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    a.add_argument("--alpha", type=float, default=0.05, help="significance level")
    add_exposures_flag(a, "every arm is")
    a.add_argument("--out", help="output directory (default datasets_out/ab-<run_id>)")
    a.add_argument("--quiet", action="store_true", help="no progress bars or table")
    a.set_defaults(
        func=cmd_ab,
        policy=None,
        param=[],
        explore=None,
        epsilon=None,
        temperature=None,
        candidates=None,
    )


def cmd_ab(args: argparse.Namespace) -> int:
    from simrec.evaluation.ab import ab, exposure_dependent_pairs, parse_arm, verdicts

    cfg = build_config(args)
    arms: dict[str, Any] = {}
    if args.arms_file:
        arms.update(_load_arms_file(args.arms_file))
    for spec in args.arm:
        name, policy = parse_arm(spec)
        arms[name] = {"name": policy}
    for item in args.arm_param:
        arm, sep, rest = item.partition(":")
        if not sep or arm not in arms:
            raise InputError(
                f"--arm-param: expected ARM:KEY=VALUE with ARM one of {', '.join(arms) or '(none)'}"
                f", got {item!r}"
            )
        key, value = key_value(rest, "--arm-param")
        arms[arm].setdefault("params", {})[key] = value
    if args.retrain_every is not None:
        for spec in arms.values():
            spec["retrain_every"] = args.retrain_every
    table = ab(
        cfg,
        arms,
        out=args.out,
        replicates=args.replicates,
        control=args.control,
        n_resamples=args.bootstrap,
        alpha=args.alpha,
        exposures=exposures_flag(args.exposures),
        progress=not args.quiet,
    )
    if not args.quiet:
        print("\n".join(verdicts(table)) + "\n")
        print(format_ab_table(table))
        if table.attrs["exposure_readings"]:
            pairs = exposure_dependent_pairs(table)
            print(
                "order on consumption per user that depends on how much of the log's popularity "
                f"is exposure (brain.exposure): {', '.join(pairs)}"
                if pairs
                else "no order of two arms on consumption per user depends on brain.exposure"
            )
        print(f"results and report: {table.attrs['out_dir']}/report.html")
    return 0


def _load_arms_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = read_settings(p, "arms file", any_suffix=True)
    except ConfigError as err:
        raise InputError(str(err)) from None
    if not isinstance(raw, dict) or not all(isinstance(v, (dict, str)) for v in raw.values()):
        raise InputError(
            f"{p}: expected a mapping of arm name to a policy section or name, "
            f"got {type(raw).__name__}"
        )
    return {str(k): ({"name": v} if isinstance(v, str) else dict(v)) for k, v in raw.items()}


def format_ab_table(table) -> str:
    """The A/B comparison as aligned text, one row per metric and arm; ``rank`` is the arm's
    place on the metric, with the arms whose order with it the resamples cannot tell, and in
    brackets those whose order with it depends on the exposure reading."""
    w = max(20, 2 + max(len(m) for m in table.metric))  # the metric column's width
    lines = [
        f"{'metric':<{w}}{'arm':<10}{'value':>10}{'diff':>11}{'95% CI of diff':>24}"
        f"{'lift':>9}{'p (Holm)':>10}{'MDE':>10}  rank (order unresolved with)"
        " [order depends on brain.exposure with]"
    ]
    for r in table.itertuples():
        if r.note:  # a metric the data cannot define
            lines.append(f"{r.metric:<{w}}{r.arm:<10}{'n/a':>10}  {r.note}")
            continue
        rank = f"  {r.rank}" + (f" ({r.rank_unresolved_with})" if r.rank_unresolved_with else "")
        depends = getattr(r, "order_depends_on_exposure_with", "")
        rank += f" [{depends}]" if depends else ""
        if r.arm == r.control:
            lines.append(
                f"{r.metric:<{w}}{r.arm:<10}{r.value:>10.4f}{'(control)':>11}{'':>53}{rank}"
            )
            continue
        ci = f"[{r.diff_ci_low:+.4f}, {r.diff_ci_high:+.4f}]"
        star = "*" if r.significant else " "
        lines.append(
            f"{r.metric:<{w}}{r.arm:<10}{r.value:>10.4f}{r.diff:>+11.4f}{ci:>24}"
            f"{r.lift:>+9.1%}{r.p_holm:>9.4f}{star}{r.mde:>10.4f}{rank}"
        )
    return "\n".join(lines)
