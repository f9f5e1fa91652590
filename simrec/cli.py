"""The ``simrec`` command.

User errors (bad data, bad config, an occupied output directory) print one message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
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
    _add_world_flags(r)
    _add_policy_flags(r)
    r.add_argument("--out", help="run directory (default datasets_out/<run_id>)")
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
    r.add_argument("--base-url", help="openai: an OpenAI-compatible server's URL")
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
        "only if passed again with --policy; an LLM server only if passed with --base-url)",
    )
    r.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective config as YAML and exit",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    a = sub.add_parser(
        "ab",
        help="offline A/B test of policies on the same population",
        description="Simulate the same population against each arm with common random numbers "
        "and compare the arms with user-clustered bootstrap CIs.",
    )
    _add_world_flags(a)
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
    a.add_argument("--out", help="output directory (default datasets_out/ab-<run_id>)")
    a.add_argument("--quiet", action="store_true", help="no progress bars or table")
    a.set_defaults(
        policy=None, param=[], explore=None, epsilon=None, temperature=None, candidates=None
    )

    o = sub.add_parser(
        "ope",
        help="off-policy evaluation of a target policy from a logged run",
        description="Estimate a target policy's first-page value from a run logged by a "
        "stochastic policy: DM, IPS, SNIPS, IIPS, RIPS, DR, SNDR with bootstrap CIs.",
    )
    o.add_argument("run", help="a complete run directory")
    _add_policy_flags(o, "--target", retrain=False)
    o.add_argument("--clip", type=float, help="cap importance weights at this value")
    o.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    o.add_argument(
        "--validate",
        action="store_true",
        help="also simulate the target on the same population and report each error",
    )
    o.add_argument("--out", help="output directory (default RUN-ope-TARGET)")
    o.add_argument(
        "--base-url",
        help="--validate of an LLM run: the OpenAI-compatible server to use (never taken from "
        "the run directory)",
    )
    o.add_argument("--quiet", action="store_true")

    e = sub.add_parser(
        "export",
        help="export a run to RecBole, OBP, Hugging Face or CSV",
        description="Export a complete run: RecBole atomic files, an OBP bandit-feedback "
        "bundle, a Hugging Face layout (train/test splits and a card in the run directory), "
        "or CSV.",
    )
    e.add_argument("run", help="a complete run directory")
    e.add_argument("--to", required=True, choices=("recbole", "obp", "hf", "csv"))
    e.add_argument("--out", help="output directory (default RUN/export/FORMAT; hf: RUN)")
    e.add_argument(
        "--test-fraction", type=float, default=0.2, help="hf: share of the last ticks in test"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export")

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
    _add_augment_input_flags(ai, "write descriptions and attributes")
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
        default="era,mood,audience_group",
        help="attributes the LLM answers (default era,mood,audience_group)",
    )
    ai.add_argument(
        "--free-tags", type=int, default=0, help="free-text tags the LLM may add (default 0)"
    )
    _add_augment_output_flags(ai)
    ap = au_sub.add_parser(
        "profiles",
        help="write profiles.parquet",
        description="A written profile per user from their history before --cutoff: activity, "
        "liked and disliked genres, rating style, favourite titles; no invented demographics.",
    )
    _add_augment_input_flags(ap, "write the profiles")
    _add_augment_output_flags(ap)
    an = au_sub.add_parser(
        "interactions",
        help="write interactions_augmented.parquet (pseudo-positives and -negatives)",
        description="LLMRec-style augmentation: a base recommender proposes candidates, the "
        "calibrated simulator picks each user's pseudo-positives (what it would watch most) and "
        "pseudo-negatives (what it would pass over).",
    )
    _add_augment_input_flags(an, "choose instead of the simulator")
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
    _add_augment_output_flags(an)

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
    _add_world_flags(f)
    _add_policy_flags(f)
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
    f.add_argument("--out", help="output directory (default datasets_out/fidelity-<run_id>)")
    f.add_argument("--quiet", action="store_true", help="no progress bars or table")

    rp = sub.add_parser(
        "report",
        help="an HTML report with plots of a run",
        description="Write RUN/report/report.html: per-tick curves, watches by position, "
        "ratings, concentration of watches, and the run's summary.",
    )
    rp.add_argument("run", help="a complete run directory")
    rp.add_argument("--out", help="report directory (default RUN/report)")
    sub.add_parser(
        "datasets",
        help="list the named datasets (--data NAME) and whether they are installed",
        description="The named datasets --data accepts, where each comes from, and whether it "
        "is installed (else the line that installs it).",
    )
    return p


def _add_data_flags(r: argparse.ArgumentParser) -> None:
    """Where the data comes from (every command that reads a log)."""
    r.add_argument("config", nargs="?", help="YAML or TOML config file (flags override it)")
    r.add_argument(
        "--data",
        help="data directory (MovieLens, RecBole), file (table), or a named dataset "
        "(ml-100k; see `simrec datasets`)",
    )
    r.add_argument(
        "--format",
        choices=("synthetic", *FORMATS),
        help="data format (default: inferred from --data, synthetic without it)",
    )
    r.add_argument(
        "--columns",
        help="table/recbole: user=COL,item=COL[,rating=COL,timestamp=COL,title=COL,genres=COL]",
    )
    r.add_argument("--items-file", help="table format: catalog file with item/title/genres columns")


def _add_augment_input_flags(r: argparse.ArgumentParser, llm_does: str) -> None:
    _add_data_flags(r)
    r.add_argument("--items", type=int, help="real data: keep the N most popular items")
    r.add_argument("--llm", metavar="SPEC", help=f"let an LLM {llm_does}: openai:MODEL, local")
    r.add_argument("--base-url", help="openai: an OpenAI-compatible server's URL")


def _add_augment_output_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--cutoff",
        help="only interactions before this inform anything: a per-user fraction (0.8), "
        "Unix seconds, or an ISO-8601 date/time",
    )
    r.add_argument("--seed", type=int, help="root seed (synthetic worlds, calibration)")
    r.add_argument("--out", help="output directory (default datasets_out/augment-KIND-<hash>)")
    r.add_argument("--overwrite", action="store_true", help="replace an earlier output")


def _add_world_flags(r: argparse.ArgumentParser) -> None:
    """Flags shared by run, ab and eval: data, population, clock, social graph, seed."""
    _add_data_flags(r)
    r.add_argument("--users", type=int, help="agents to simulate (synthetic: users in the world)")
    r.add_argument(
        "--items", type=int, help="items (synthetic: catalog size; real data: top-N popular)"
    )
    r.add_argument("--ticks", type=int, help="ticks (simulated days) to run")
    r.add_argument(
        "--social",
        metavar="GRAPH",
        help="social graph: watts-strogatz, barabasi-albert, or an edge list file of data user ids",
    )
    r.add_argument("--seed", type=int, help="root seed")
    r.add_argument("--page-size", type=int, help="items per page")
    r.add_argument("--max-pages", type=int, help="pages per session at most")
    r.add_argument("--batch-size", type=int, help="agents per batch (does not change results)")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def _add_policy_flags(
    r: argparse.ArgumentParser, flag: str = "--policy", retrain: bool = True
) -> None:
    """The policy flags of run (``--policy``) and ope (``--target``, required)."""
    r.add_argument(
        flag,
        dest="policy",
        required=flag != "--policy",
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
    if retrain:
        r.add_argument(
            "--retrain-every", type=int, metavar="N", help="refit the policy every N ticks"
        )


def _infer_format(path: str) -> str:
    from simrec.data.registry import resolve_name

    p = Path(path)
    named = resolve_name(path)
    if path.startswith("recbole:") or (named is not None and not p.exists()):
        return "recbole"  # the loader resolves the name, or says which names it knows
    if p.is_file():
        return "recbole" if p.suffix == ".inter" else "table"
    if p.is_dir() and any(p.glob("*.inter")):
        return "recbole"
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
        f"{p}: cannot tell the data format (no u.data, ratings.dat, ratings.csv or *.inter); "
        "pass --format"
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


def _key_value(item: str, flag: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (a plain string when it is not valid YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{flag}: expected KEY=VALUE, got {item!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def _apply_policy_flags(pol: dict[str, Any], args: argparse.Namespace) -> None:
    """Apply --policy/--target, --param and the exploration flags to a policy section."""
    if args.policy is not None and args.policy != pol.get("name"):
        pol["name"], pol["params"] = args.policy, {}  # the file's params were for its policy
    pol.setdefault("params", {})
    for item in args.param:
        key, value = _key_value(item, "--param")
        pol["params"][key] = value
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


def _cache_flag(value: str | None) -> str | None:
    """--llm-cache: a file, 'none' for no cache, or absent (the default file)."""
    from simrec.config import LLMConfig

    if value is None:
        return LLMConfig().cache
    return None if value.lower() == "none" else value


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
    if getattr(args, "users", None) is not None:
        (data["synthetic"] if synthetic else pop)["users"] = args.users
    if getattr(args, "items", None) is not None:
        (data["synthetic"] if synthetic else pop)["items"] = args.items
    for flag, section, key in (
        ("ticks", sim, "ticks"),
        ("page_size", sim, "page_size"),
        ("max_pages", sim, "max_pages"),
        ("batch_size", sim, "batch_size"),
    ):
        if getattr(args, flag, None) is not None:
            section[key] = getattr(args, flag)
    pol = raw["policy"]
    if hasattr(args, "policy"):
        _apply_policy_flags(pol, args)
    if getattr(args, "retrain_every", None) is not None:
        pol["retrain_every"] = args.retrain_every
    if getattr(args, "social", None) is not None:
        if args.social in ("none", "watts-strogatz", "barabasi-albert"):
            raw["social"]["graph"] = args.social
        else:
            raw["social"].update(graph="edges", path=args.social)
    if getattr(args, "llm", None) is not None:
        raw["llm"]["backend"] = args.llm
        if raw["brain"]["name"] == "utility":
            raw["brain"]["name"] = "llm"
    if getattr(args, "base_url", None) is not None:
        raw["llm"]["base_url"] = args.base_url
    if getattr(args, "llm_cache", None) is not None:
        raw["llm"]["cache"] = _cache_flag(args.llm_cache)
    if getattr(args, "brain", None) is not None:
        raw["brain"]["name"] = args.brain
    if getattr(args, "seed", None) is not None:
        raw["seed"] = args.seed
    if getattr(args, "out", None) is not None:
        raw["output"]["dir"] = args.out
    if getattr(args, "overwrite", False):
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
            base_url=args.base_url,
            llm_cache=_cache_flag(args.llm_cache),
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


def cmd_ab(args: argparse.Namespace) -> int:
    from simrec.evaluation.ab import ab, parse_arm

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
        key, value = _key_value(rest, "--arm-param")
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
        progress=not args.quiet,
    )
    if not args.quiet:
        print(format_ab_table(table))
        print(f"results and report: {table.attrs['out_dir']}/report.html")
    return 0


def cmd_ope(args: argparse.Namespace) -> int:
    from simrec.evaluation.ope import ope

    target: dict[str, Any] = {}
    _apply_policy_flags(target, args)
    table = ope(
        args.run,
        target,
        clip=args.clip,
        n_resamples=args.bootstrap,
        validate=args.validate,
        out=args.out,
        base_url=args.base_url,
    )
    if not args.quiet:
        cols = ["estimator", "value", "ci_low", "ci_high"]
        cols += ["truth", "relative_error"] if args.validate else []
        print(f"target: {table.target.iloc[0]}   slates: {table.n_slates.iloc[0]:,}")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from simrec import augment

    cfg = build_config(args)
    common = {"cutoff": args.cutoff, "out": args.out, "overwrite": args.overwrite}
    if args.augment_command == "items":
        out = augment.augment_items(
            cfg,
            only_missing=args.only_missing,
            neighbours=args.neighbours,
            genre_threshold=args.genre_threshold,
            llm=args.llm,
            base_url=args.base_url,
            attributes=tuple(a.strip() for a in args.attributes.split(",") if a.strip()),
            free_tags=args.free_tags,
            **common,
        )
    elif args.augment_command == "profiles":
        out = augment.augment_profiles(cfg, llm=args.llm, base_url=args.base_url, **common)
    else:
        out = augment.augment_interactions(
            cfg,
            base=args.base,
            candidates=args.candidates,
            positives=args.positives,
            negatives=args.negatives,
            merge=args.merge,
            llm=args.llm,
            base_url=args.base_url,
            llm_candidates=args.llm_candidates,
            **common,
        )
    manifest = json.loads((out / "manifest.json").read_text())
    for name, path in manifest["outputs"].items():
        print(f"{name}: {out / path}")
    print(", ".join(f"{k} {v:,}" for k, v in manifest["counts"].items()))
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from simrec.evaluation.fidelity_report import (
        POLICIES,
        fidelity,
        ranking_verdict,
        scorecard,
        summary_table,
        targets_met,
    )
    from simrec.simulator.runner import DEFAULT_OUT, run_id_for

    cfg = build_config(args)
    out = Path(args.out) if args.out else DEFAULT_OUT / f"fidelity-{run_id_for(cfg)}"
    names = args.policies.split(",") if args.policies else POLICIES
    policies = [p.strip() for p in names if p.strip()]
    table = fidelity(
        cfg, holdout=args.holdout, policies=policies, out=out, llm_users=args.llm_users
    )
    if not args.quiet:
        fmt = {"float_format": lambda v: f"{v:.4f}", "na_rep": "", "index": False}
        print(f"Policy ranking: {ranking_verdict(table)}.\n")
        print(scorecard(table).to_string(**fmt))
        print()
        print(summary_table(table).to_string(**fmt))
        print()
        print(targets_met(table).to_string(**fmt))
        print(f"\nreport: {out / 'report.html'}   table: {out / 'fidelity.parquet'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from simrec.export import export

    path = export(
        args.run,
        args.to,
        out=args.out,
        test_fraction=args.test_fraction,
        overwrite=args.overwrite,
    )
    print(f"exported {args.run} to {args.to}: {path}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from simrec.data.registry import listing

    for row in listing():
        print(f"{row['name']}  (--data {row['name']}, format {row['format']})")
        print(f"  {row['description']}")
        print(f"  source: {row['source']}")
        where = "path" if row["installed"] == "yes" else "install with"
        print(f"  installed: {row['installed']}; {where}: {row['path_or_install']}")
    print("synthetic  (--format synthetic): the built-in synthetic world, always available")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from simrec.evaluation.report import run_report

    print(f"report: {run_report(args.run, args.out)}")
    return 0


def _load_arms_file(path: str) -> dict[str, Any]:
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: arms file not found")
    try:
        text = p.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"{p}: not a valid arms file: {err}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, (dict, str)) for v in raw.values()):
        raise InputError(
            f"{p}: expected a mapping of arm name to a policy section or name, got {raw!r}"
        )
    return {str(k): ({"name": v} if isinstance(v, str) else dict(v)) for k, v in raw.items()}


def format_ab_table(table) -> str:
    """The A/B comparison as aligned text, one row per metric and arm."""
    lines = [
        f"{'metric':<20}{'arm':<10}{'value':>10}{'diff':>11}{'95% CI of diff':>24}"
        f"{'lift':>9}{'p (Holm)':>10}{'MDE':>10}"
    ]
    for r in table.itertuples():
        if r.arm == r.control:
            lines.append(f"{r.metric:<20}{r.arm:<10}{r.value:>10.4f}{'(control)':>11}")
            continue
        ci = f"[{r.diff_ci_low:+.4f}, {r.diff_ci_high:+.4f}]"
        star = "*" if r.significant else " "
        lines.append(
            f"{r.metric:<20}{r.arm:<10}{r.value:>10.4f}{r.diff:>+11.4f}{ci:>24}"
            f"{r.lift:>+9.1%}{r.p_holm:>9.4f}{star}{r.mde:>10.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "ab":
            return cmd_ab(args)
        if args.command == "ope":
            return cmd_ope(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "eval":
            return cmd_fidelity(args)
        if args.command == "augment":
            return cmd_augment(args)
        if args.command == "datasets":
            return cmd_datasets(args)
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
