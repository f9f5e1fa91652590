"""simrec eval fidelity: how faithful the simulated users are to held-out real logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from simrec.cli.flags import (
    add_exposures_flag,
    add_policy_flags,
    add_world_flags,
    build_config,
    exposures_flag,
)


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    ev = sub.add_parser(
        "eval",
        help="evaluate the simulator itself",
        description="Evaluate the simulated users against real data.",
    )
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    f = ev_sub.add_parser(
        "fidelity",
        help="how faithful the simulated users are to held-out real logs",
        description="Hold out each user's latest interactions, calibrate on the rest, and "
        "measure taste discrimination, rating fidelity, behaviour distributions and the "
        "sim-to-real ranking of policies. Writes fidelity.parquet and report.html.",
    )
    add_world_flags(f)
    add_policy_flags(f)
    f.add_argument(
        "--brain",
        choices=("utility", "llm", "hybrid"),
        help="the brain to evaluate: utility (default) or llm (hybrid decides like utility)",
    )
    f.add_argument(
        "--llm", metavar="SPEC", help="LLM to evaluate (implies --brain llm): openai:MODEL, ..."
    )
    f.add_argument("--base-url", help="openai: an OpenAI-compatible server's URL")
    f.add_argument(
        "--llm-users", type=int, default=50, help="users whose lists the LLM judges (llm brain)"
    )
    f.add_argument(
        "--holdout", type=float, default=0.2, help="share of each user's latest interactions"
    )
    f.add_argument(
        "--policies",
        help="comma-separated policies to rank, at least 3 "
        "(default: random,popular,itemknn,als,bpr,genre)",
    )
    add_exposures_flag(f, "every policy is")
    f.add_argument("--out", help="output directory (default datasets_out/fidelity-<run_id>)")
    f.add_argument("--quiet", action="store_true", help="no progress bars or table")

    f.set_defaults(func=cmd_fidelity)
    _register_synthetic(ev_sub)
    from simrec.cli.impressions import register_impressions

    register_impressions(ev_sub)


def _register_synthetic(ev_sub) -> None:
    s = ev_sub.add_parser(
        "synthetic",
        help="is simrec's synthetic log good training data for real recommenders?",
        description="Hold out each user's latest interactions, calibrate on the rest, simulate "
        "a synthetic log and judge it: models trained on it and tested on the real held-out "
        "items (utility), whether models rank the same within it, its statistics beside the "
        "real log's (fidelity), and how close synthetic users are to their sources (privacy). "
        "Writes synthetic.parquet, report.html and the synthetic run (OUT/run).",
    )
    add_world_flags(s)
    add_policy_flags(s)
    s.add_argument(
        "--holdout", type=float, default=0.2, help="share of each user's latest interactions"
    )
    s.add_argument(
        "--volume",
        type=float,
        default=1.0,
        help="the synthetic log's size as a multiple of the real training log's (default 1)",
    )
    s.add_argument(
        "--start",
        choices=("continue", "fresh"),
        default="continue",
        help="continue: each synthetic user goes on from its source user's history (only new "
        "items, the private setup); fresh: a new person with its source's tastes, free to "
        "consume the source's own items (more utility, more disclosure; default continue)",
    )
    s.add_argument("--out", help="output directory (default datasets_out/synthetic-<run_id>)")
    s.add_argument("--quiet", action="store_true", help="no table")
    s.set_defaults(func=cmd_synthetic)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from simrec.evaluation.synthetic import synthetic, verdict
    from simrec.evaluation.synthetic.page import section_table
    from simrec.simulator.runner import DEFAULT_OUT, run_id_for

    cfg = build_config(args)
    out = Path(args.out) if args.out else DEFAULT_OUT / f"synthetic-{run_id_for(cfg)}"
    table = synthetic(
        cfg,
        holdout=args.holdout,
        policy=cfg.policy.model_dump(mode="json") if args.policy else None,
        ticks=args.ticks,
        volume=args.volume,
        start=args.start,
        out=out,
    )
    if not args.quiet:
        print("\n".join(f"- {line}." for line in verdict(table)))
        utility = section_table(table, "utility")
        shown = utility[utility.metric.isin(["recall@20", "ndcg@20"])]
        print()
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
        print(f"\nreport: {out / 'report.html'}   table: {out / 'synthetic.parquet'}")
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from simrec.evaluation.fidelity_report import (
        POLICIES,
        fidelity,
        ranking_verdict,
        scorecard,
        strongest_baseline,
        summary_table,
        targets_met,
    )
    from simrec.simulator.runner import DEFAULT_OUT, run_id_for

    cfg = build_config(args)
    out = Path(args.out) if args.out else DEFAULT_OUT / f"fidelity-{run_id_for(cfg)}"
    names = args.policies.split(",") if args.policies else POLICIES
    policies = [p.strip() for p in names if p.strip()]
    table = fidelity(
        cfg,
        holdout=args.holdout,
        policies=policies,
        out=out,
        llm_users=args.llm_users,
        exposures=exposures_flag(args.exposures),
    )
    if not args.quiet:
        fmt = {"float_format": lambda v: f"{v:.4f}", "na_rep": "", "index": False}
        print(f"Policy ranking: {ranking_verdict(table)}.\n")
        print(f"Baselines: {strongest_baseline(table)}.")
        print(scorecard(table).to_string(**fmt))
        print()
        print(summary_table(table).to_string(**fmt))
        print()
        print(targets_met(table).to_string(**fmt))
        print(f"\nreport: {out / 'report.html'}   table: {out / 'fidelity.parquet'}")
    return 0
