"""simrec converse: simulated users talk to conversational recommenders."""

from __future__ import annotations

import argparse
import sys

from simrec.cli.flags import add_base_url_flag, add_data_flags, build_config


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    c = sub.add_parser(
        "converse",
        help="simulated users talk to conversational recommenders (CRS evaluation, dialogues)",
        description="Each user looks for one target item it does not name (held out after "
        "--cutoff, or the unseen item its taste model likes most) and talks to every CRS arm "
        "for up to --turns turns. Writes conversations.parquet, crs_metrics.parquet (Recall@k "
        "and success by turn) and crs_comparison.parquet (outcomes per arm, paired bootstrap "
        "against the first arm, Holm-adjusted).",
    )
    add_data_flags(c)
    c.add_argument(
        "--crs",
        action="append",
        metavar="[NAME=]SPEC",
        help="a CRS arm, repeatable: builtin, builtin:POLICY (the TF-IDF baseline ranked with "
        "a policy), or package.module:Class (default: builtin)",
    )
    c.add_argument(
        "--crs-base-url",
        action="append",
        metavar="URL",
        help="openai:MODEL arms: the OpenAI-compatible server, repeatable (several servers)",
    )
    c.add_argument(
        "--crs-api-key-env",
        metavar="VAR",
        help="openai:MODEL arms: the environment variable holding the CRS server's key (none "
        "by default; the simulated users' key is never sent to a CRS)",
    )
    c.add_argument(
        "--user-brain",
        choices=("agenda", "llm"),
        default="agenda",
        help="who the users are: the deterministic agenda user, or an LLM playing the "
        "calibrated persona (config section llm; --llm, --base-url)",
    )
    c.add_argument(
        "--llm", metavar="SPEC", help="--user-brain llm: openai:MODEL, vllm:MODEL, local"
    )
    add_base_url_flag(c, "--user-brain llm: the OpenAI-compatible server, repeatable")
    c.add_argument("--llm-cache", help="LLM response cache file (none: no cache)")
    c.add_argument("--users", type=int, default=100, help="conversations per arm")
    c.add_argument("--turns", type=int, default=5, help="CRS turns per conversation at most")
    c.add_argument(
        "--targets",
        choices=("held-out", "taste"),
        default="held-out",
        help="what each user looks for: a held-out item after --cutoff, or the unseen item "
        "its taste model (fitted before --cutoff) rates highest",
    )
    c.add_argument(
        "--cutoff",
        default="0.8",
        help="what users and CRSs may know: a per-user fraction (0.8: each user's earliest "
        "80%%), Unix seconds or an ISO-8601 moment",
    )
    c.add_argument("--seed", type=int, help="root seed (which users are chosen)")
    c.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    c.add_argument("--alpha", type=float, default=0.05, help="significance level")
    c.add_argument("--out", help="output directory (default datasets_out/converse-<hash>)")
    c.add_argument("--overwrite", action="store_true", help="replace earlier conversations")
    c.add_argument("--quiet", action="store_true", help="no summary table")
    c.set_defaults(func=cmd_converse)


def cmd_converse(args: argparse.Namespace) -> int:
    from simrec.conversation import converse

    cfg = build_config(args)  # --llm, --base-url and --llm-cache go to its llm section
    crs_urls = args.crs_base_url
    res = converse(
        cfg,
        args.crs or ["builtin"],
        users=args.users,
        turns=args.turns,
        targets=args.targets,
        cutoff=args.cutoff,
        out=args.out,
        overwrite=args.overwrite,
        n_resamples=args.bootstrap,
        alpha=args.alpha,
        user_brain=args.user_brain,
        crs_base_url=crs_urls[0] if crs_urls and len(crs_urls) == 1 else crs_urls,
        crs_api_key_env=args.crs_api_key_env,
    )
    if not args.quiet:
        cols = ["arm", "success_rate", "turns_to_success", "items_rejected", "closing_rating"]
        cols += ["diff_vs_control", "ci_low", "ci_high", "p_holm"]
        print(res.comparison[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"written to {res.out_dir}")
    if res.llm_problem is not None:
        print(
            f"simrec: WARNING: the conversations are written, but {res.llm_problem}",
            file=sys.stderr,
        )
        return 3
    return 0
