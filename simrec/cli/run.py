"""simrec run: simulate a population and write its logs."""

from __future__ import annotations

import argparse
import sys

from simrec.cli.flags import (
    add_base_url_flag,
    add_events_uri_flag,
    add_policy_flags,
    add_templates_flag,
    add_world_flags,
    base_urls,
    build_config,
    cache_flag,
    engine_flags,
    locations,
)
from simrec.config import dump_config
from simrec.errors import InputError


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    r = sub.add_parser(
        "run",
        help="simulate a population and write its logs",
        description="Simulate a population browsing a recommender; write Parquet logs.",
    )
    add_world_flags(r)
    add_policy_flags(r)
    r.add_argument("--out", help="run directory (default datasets_out/<run_id>)")
    add_events_uri_flag(r)
    r.add_argument(
        "--brain",
        choices=("utility", "llm", "hybrid"),
        help="who decides pages (hybrid: the statistical brain, narrated by the LLM)",
    )
    r.add_argument(
        "--llm",
        metavar="SPEC",
        help="LLM for --brain llm (implies it): openai:MODEL, vllm:MODEL or local",
    )
    add_base_url_flag(r)
    add_templates_flag(r)
    r.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="SPEC",
        help="--resume: a package.module:Class or sentence:MODEL the run names that you trust "
        "to be imported and run (repeatable)",
    )
    r.add_argument(
        "--llm-cache",
        metavar="FILE",
        help="LLM response cache file (default datasets_out/.llm-cache.sqlite; 'none': no cache)",
    )
    r.add_argument(
        "--resume",
        metavar="DIR",
        help="continue an unfinished run in DIR (a package.module:Class policy it names runs "
        "only if passed again with --policy; an LLM server only if passed with --base-url; "
        "the data files, --social edges, --templates-dir and --events-uri it used only if "
        "passed again)",
    )
    r.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective config as YAML and exit",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    r.set_defaults(func=cmd_run)


def _summary(result) -> str:
    c, m = result.counts, result.metrics
    rated = m["mean_rating"].dropna()
    timings = result.manifest["timings"]
    rows = [
        ("run", result.run_id),
        ("output", str(result.run_dir)),
        ("agents", f"{result.manifest['counts']['agents']:,}"),
        ("ticks", f"{len(m)}"),
        ("sessions", f"{c['sessions']:,}"),
        ("pages", f"{c['pages']:,}"),
        ("impressions", f"{c['impressions']:,}"),
        ("clicks", f"{c['clicks']:,}"),
        ("CTR", f"{c['clicks'] / max(c['impressions'], 1):.4f}"),
        ("mean rating", f"{rated.mean():.3f}" if len(rated) else "-"),
        ("coverage (last tick)", f"{m['coverage'].iloc[-1]:.3f}"),
        ("Gini of clicks (last tick)", f"{m['gini'].iloc[-1]:.3f}"),
        ("churned users", f"{result.manifest['counts']['churned_users']:,}"),
        (
            "calibration",
            f"{timings['fit_s']:.2f} s (cache: {result.manifest['brain']['calibration_cache']})",
        ),
        ("simulate time", f"{timings['simulate_s']:.2f} s"),
        ("impressions/s", f"{c['impressions'] / max(timings['simulate_s'], 1e-9):,.0f}"),
        ("whole run", f"{timings['total_s']:.2f} s"),
    ]
    llm = result.manifest.get("llm") or {}
    if llm.get("pages_asked"):
        share = llm["fallback_share"]
        flag = "   <-- NOT LLM USERS, see below" if result.llm_problem else ""
        rows.append(("LLM pages fallen back", f"{share:.1%} of {llm['pages_asked']:,}{flag}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def cmd_run(args: argparse.Namespace) -> int:
    from simrec.simulator.runner import run

    if args.resume:
        if args.config or args.print_config:
            raise InputError(
                "--resume DIR: the run's saved config is used; "
                "do not pass a config or --print-config"
            )
        result = run(
            resume=args.resume,
            progress=not args.quiet,
            allow_import=[*([args.policy] if args.policy else []), *args.trust],
            base_url=base_urls(args),
            llm_cache=cache_flag(args.llm_cache),
            engine=engine_flags(args),
            locations=locations(args),
        )
    else:
        cfg = build_config(args)
        if args.print_config:
            sys.stdout.write(dump_config(cfg))
            return 0
        result = run(cfg, progress=not args.quiet)
    if not args.quiet:
        print(_summary(result))
    problem = result.llm_problem
    if problem is not None:
        print(
            f"simrec: WARNING: the run is written, but its LLM users are not LLM users: {problem}",
            file=sys.stderr,
        )
        return 3
    return 0
