"""The ``simrec`` command.

User errors (bad data, bad config, an occupied output directory) print one message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from simrec.config import RunConfig, dump_config, load_config, validate_config
from simrec.data.loaders import FORMATS
from simrec.errors import InputError, SimrecError


def _parser() -> argparse.ArgumentParser:
    from simrec import __version__

    p = argparse.ArgumentParser(
        prog="simrec", description="Simulated users for recommender systems."
    )
    p.add_argument("--version", action="version", version=f"simrec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="simulate a population and write its logs",
        description="Simulate a population browsing a recommender; write Parquet logs.",
    )
    r.add_argument("config", nargs="?", help="YAML or TOML config file (flags override it)")
    r.add_argument("--data", help="data directory (MovieLens) or file (table)")
    r.add_argument(
        "--format",
        choices=("synthetic", *FORMATS),
        help="data format (default: inferred from --data, synthetic without it)",
    )
    r.add_argument(
        "--columns",
        help="table format: user=COL,item=COL[,rating=COL,timestamp=COL,title=COL,genres=COL]",
    )
    r.add_argument("--items-file", help="table format: catalog file with item/title/genres columns")
    r.add_argument("--users", type=int, help="agents to simulate (synthetic: users in the world)")
    r.add_argument(
        "--items", type=int, help="items (synthetic: catalog size; real data: top-N popular)"
    )
    r.add_argument("--ticks", type=int, help="ticks (simulated days) to run")
    r.add_argument(
        "--policy",
        help="recommender: random, popular, itemknn, als, bpr, genre or package.module:Class",
    )
    r.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a policy parameter (repeatable; VALUE is read as YAML: 32, 0.5, true, text)",
    )
    r.add_argument(
        "--explore",
        choices=("epsilon-greedy", "softmax"),
        help="log a stochastic version of the policy, with exact propensities",
    )
    r.add_argument("--epsilon", type=float, help="epsilon-greedy: P(random slate)")
    r.add_argument("--temperature", type=float, help="softmax: temperature")
    r.add_argument("--candidates", type=int, help="softmax: the policy's top-N sampled from")
    r.add_argument("--retrain-every", type=int, metavar="N", help="refit the policy every N ticks")
    r.add_argument(
        "--social",
        metavar="GRAPH",
        help="social graph: watts-strogatz, barabasi-albert, or an edge list file of data user ids",
    )
    r.add_argument("--seed", type=int, help="root seed")
    r.add_argument("--out", help="run directory (default datasets_out/<run_id>)")
    r.add_argument("--page-size", type=int, help="items per page")
    r.add_argument("--max-pages", type=int, help="pages per session at most")
    r.add_argument("--batch-size", type=int, help="agents per batch (does not change results)")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    r.add_argument("--resume", metavar="DIR", help="continue an unfinished run in DIR")
    r.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective config as YAML and exit",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def _infer_format(path: str) -> str:
    p = Path(path)
    if p.is_file():
        return "table"
    for marker, fmt in (
        ("u.data", "movielens-100k"),
        ("ratings.dat", "movielens-1m"),
        ("ratings.csv", "movielens-latest"),
    ):
        if (p / marker).is_file():
            return fmt
    if not p.exists():
        raise InputError(f"{p}: data path not found")
    raise InputError(
        f"{p}: cannot tell the data format (no u.data, ratings.dat or ratings.csv); pass --format"
    )


def _parse_columns(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(
                f"--columns: expected KEY=COLUMN pairs separated by commas, got {part!r}"
            )
        out[key.strip()] = value.strip()
    return out


def build_config(args: argparse.Namespace) -> RunConfig:
    """The config file (or defaults) with the command-line flags applied on top."""
    base = load_config(args.config) if args.config else RunConfig()
    raw: dict[str, Any] = base.model_dump(mode="json")
    data, sim, pop = raw["data"], raw["simulation"], raw["population"]
    if args.data is not None:
        data["path"] = args.data
        data["format"] = args.format or _infer_format(args.data)
    elif args.format is not None:
        data["format"] = args.format
    if args.columns is not None:
        data["columns"] = _parse_columns(args.columns)
    if args.items_file is not None:
        data["items_path"] = args.items_file
    synthetic = data["format"] == "synthetic"
    if args.users is not None:
        (data["synthetic"] if synthetic else pop)["users"] = args.users
    if args.items is not None:
        (data["synthetic"] if synthetic else pop)["items"] = args.items
    for flag, section, key in (
        ("ticks", sim, "ticks"),
        ("page_size", sim, "page_size"),
        ("max_pages", sim, "max_pages"),
        ("batch_size", sim, "batch_size"),
    ):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    pol = raw["policy"]
    if args.policy is not None and args.policy != pol["name"]:
        pol["name"], pol["params"] = args.policy, {}  # the file's params were for its policy
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param: expected KEY=VALUE, got {item!r}")
        try:
            pol["params"][key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            pol["params"][key.strip()] = value
    if args.retrain_every is not None:
        pol["retrain_every"] = args.retrain_every
    explore_flags = {
        k: getattr(args, k)
        for k in ("epsilon", "temperature", "candidates")
        if getattr(args, k) is not None
    }
    if args.explore is not None:
        pol["exploration"] = {"kind": args.explore, **explore_flags}
    elif explore_flags:
        if pol.get("exploration") is None:
            raise InputError(
                f"--{next(iter(explore_flags))}: only meaningful with --explore "
                f"(or policy.exploration in the config)"
            )
        pol["exploration"].update(explore_flags)
    if args.social is not None:
        if args.social in ("none", "watts-strogatz", "barabasi-albert"):
            raw["social"]["graph"] = args.social
        else:
            raw["social"].update(graph="edges", path=args.social)
    if args.seed is not None:
        raw["seed"] = args.seed
    if args.out is not None:
        raw["output"]["dir"] = args.out
    if args.overwrite:
        raw["output"]["overwrite"] = True
    return validate_config(raw, "command line")


def _summary(result) -> str:
    c, m = result.counts, result.metrics
    rated = m["mean_rating"].dropna()
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
        ("simulate time", f"{result.manifest['timings']['simulate_s']:.2f} s"),
        (
            "impressions/s",
            f"{c['impressions'] / max(result.manifest['timings']['simulate_s'], 1e-9):,.0f}",
        ),
    ]
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
        result = run(resume=args.resume, progress=not args.quiet)
    else:
        cfg = build_config(args)
        if args.print_config:
            sys.stdout.write(dump_config(cfg))
            return 0
        result = run(cfg, progress=not args.quiet)
    if not args.quiet:
        print(_summary(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
    except SimrecError as err:
        print(f"simrec: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "simrec: interrupted; what was written is kept (resume with --resume DIR)",
            file=sys.stderr,
        )
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
