"""Flags several commands share, and the config the command line describes."""

from __future__ import annotations

import argparse
from typing import Any

from simrec.config import RunConfig, load_config, parse_value, validate_config
from simrec.data.loaders import FORMATS
from simrec.datasets import infer_format
from simrec.domain import DOMAINS
from simrec.errors import ConfigError, InputError

KG_OF_DATA = "(the data's own)"  # --kg without a file
GRAPHS = ("none", "watts-strogatz", "barabasi-albert")  # --social values that are not files


def add_data_flags(r: argparse.ArgumentParser) -> None:
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
        help="table/recbole: user=COL,item=COL[,rating=COL,timestamp=COL,count=COL (plays, "
        "purchases, views)]; the items file's "
        "[title=COL,genres=COL,items_item=COL (its id column: default the item column's name)]",
    )
    r.add_argument("--items-file", help="table format: catalog file with item/title/genres columns")
    r.add_argument(
        "--impressions",
        metavar="LOG",
        help="an impression log of the same users and items (the layouts of `simrec eval "
        "impressions`): brain.exposure and brain.position_decay are read from it",
    )
    r.add_argument(
        "--domain",
        choices=tuple(DOMAINS),
        help="what the catalog holds, for prompts, profiles and reports (default: inferred "
        "from the data, else items; define others in config under data.domain)",
    )
    r.add_argument(
        "--item-noun",
        metavar="NOUN",
        help="what one item is called, over the domain's own noun (music: artist, album; the "
        "plural is inflected: set data.domain.items in config for an irregular one)",
    )
    r.add_argument(
        "--kg",
        metavar="TRIPLES",
        nargs="?",
        const=KG_OF_DATA,
        help="knowledge graph: a triples file (TSV/CSV/Parquet with head, relation, tail); "
        "alone, the data's own (RecBole NAME.kg/.link); augment items uses it when given",
    )
    r.add_argument(
        "--kg-links",
        "--link",
        dest="kg_links",
        metavar="LINKS",
        help="with --kg TRIPLES: item-to-entity links (item, entity)",
    )
    r.add_argument(
        "--kg-labels", metavar="LABELS", help="with --kg: optional entity labels (entity, label)"
    )
    add_cache_flags(r)


def add_cache_flags(r: argparse.ArgumentParser) -> None:
    """Where calibrations are cached (every command that calibrates on a log)."""
    r.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the calibration cache folder (default: $SIMREC_CACHE_DIR, else "
        "~/.cache/simrec; see `simrec cache info`)",
    )
    r.add_argument(
        "--no-cache",
        action="store_true",
        help="calibrate afresh and store nothing (the manifest says calibration_cache: off)",
    )


def apply_cache_flags(args: argparse.Namespace) -> None:
    """Use the cache folder and setting the command line named (nothing when it named none)."""
    from simrec import cache

    if getattr(args, "no_cache", False):
        cache.configure(enabled=False)
    elif getattr(args, "cache_dir", None):
        cache.configure(args.cache_dir)


def add_augment_input_flags(r: argparse.ArgumentParser, llm_does: str) -> None:
    add_data_flags(r)
    r.add_argument("--items", type=int, help="real data: keep the N most popular items")
    r.add_argument("--llm", metavar="SPEC", help=f"let an LLM {llm_does}: openai:MODEL, local")
    add_base_url_flag(r)


def add_base_url_flag(r: argparse.ArgumentParser, help: str = "") -> None:
    """``--base-url URL``, repeatable: several servers of the same model share the requests."""
    r.add_argument(
        "--base-url",
        action="append",
        metavar="URL",
        help=help
        or "openai: an OpenAI-compatible server's URL; repeat it to spread the requests over "
        "several servers of the same model, with failover",
    )


def base_urls(args: argparse.Namespace) -> str | list[str] | None:
    """The ``--base-url`` flags as ``llm.base_url``: one URL, a list, or None."""
    urls = getattr(args, "base_url", None)
    if not urls:
        return None
    return urls[0] if len(urls) == 1 else list(urls)


def add_augment_output_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--cutoff",
        help="only interactions before this inform anything: a per-user fraction (0.8), "
        "Unix seconds, or an ISO-8601 date/time",
    )
    r.add_argument("--seed", type=int, help="root seed (synthetic worlds, calibration)")
    r.add_argument("--out", help="output directory (default datasets_out/augment-KIND-<hash>)")
    r.add_argument("--overwrite", action="store_true", help="replace an earlier output")


def add_events_uri_flag(r: argparse.ArgumentParser, reads: bool = False) -> None:
    """--events-uri: where the commands whose runs are kept (run, ab) write the event parts,
    or (``reads``) where the commands that read a run (report, export, ope) find them."""
    r.add_argument(
        "--events-uri",
        metavar="URI",
        help="where the run's event parts are, when they are not in RUN/events (a run "
        "directory's own record of it is never used)"
        if reads
        else "write the event parts there instead of RUN/events: a pyarrow.fs URI "
        "(file:///shared/x, s3://bucket/x, gs://bucket/x); --resume: where they went",
    )


def add_templates_flag(r: argparse.ArgumentParser) -> None:
    """--templates-dir: the LLM user's prompt templates (system.txt, page.txt)."""
    r.add_argument(
        "--templates-dir",
        metavar="DIR",
        help="LLM users: a folder with your own prompt templates (system.txt, page.txt)",
    )


def add_location_flags(r: argparse.ArgumentParser) -> None:
    """The locations a command that reads a run takes again from this command line, never
    from the run directory: where its data, social edges and event parts are."""
    r.add_argument("--data", help="the run's data (a file or folder), when it was not built in")
    r.add_argument("--items-file", help="the run's catalog file, when it had one")
    r.add_argument("--kg", metavar="TRIPLES", help="the run's knowledge-graph triples file")
    r.add_argument("--kg-links", metavar="LINKS", help="the run's item-to-entity links file")
    r.add_argument("--kg-labels", metavar="LABELS", help="the run's entity labels file")
    r.add_argument("--social", metavar="EDGES", help="the run's social-graph edge list file")
    add_templates_flag(r)
    add_events_uri_flag(r, reads=True)


def locations(args: argparse.Namespace) -> dict[str, str | None]:
    """The locations this command line names (:data:`simrec.trust.LOCATIONS`)."""
    social = getattr(args, "social", None)
    kg = getattr(args, "kg", None)
    return {
        "data.path": getattr(args, "data", None),
        "data.items_path": getattr(args, "items_file", None),
        "data.kg": None if kg == KG_OF_DATA else kg,
        "data.kg_links": getattr(args, "kg_links", None),
        "data.kg_labels": getattr(args, "kg_labels", None),
        "social.path": None if social in GRAPHS else social,
        "llm.templates_dir": getattr(args, "templates_dir", None),
        "output.events_uri": getattr(args, "events_uri", None),
    }


def add_world_flags(r: argparse.ArgumentParser) -> None:
    """Flags shared by run, ab and eval: data, population, clock, social graph, seed."""
    add_data_flags(r)
    r.add_argument("--users", type=int, help="agents to simulate (synthetic: users in the world)")
    r.add_argument(
        "--items", type=int, help="items (synthetic: catalog size; real data: top-N popular)"
    )
    r.add_argument("--ticks", type=int, help="ticks (simulated days) to run")
    r.add_argument(
        "--visit-rate",
        type=float,
        metavar="P",
        help="every agent's chance of a visit per tick (default: each user's own, from the "
        "log's sessions; set it for a log without timestamps)",
    )
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
    r.add_argument(
        "--engine",
        choices=("local", "ray"),
        help="where agents are simulated: this process, or shards on Ray actors (same results)",
    )
    r.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="ray: the cluster to join (auto, HOST:PORT); default: a local Ray instance",
    )
    r.add_argument("--shards", type=int, help="ray: shards of the population (actors)")


def add_policy_flags(
    r: argparse.ArgumentParser, flag: str = "--policy", retrain: bool = True
) -> None:
    """The policy flags of run (``--policy``) and ope (``--target``, required)."""
    r.add_argument(
        flag,
        dest="policy",
        required=flag != "--policy",
        help="recommender: random, popular, itemknn, als, bpr, genre, kg or package.module:Class",
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


def parse_columns(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(
                f"--columns: expected KEY=COLUMN pairs separated by commas, got {part!r}"
            )
        out[key.strip()] = value.strip()
    return out


def key_value(item: str, flag: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (a plain string when it is not valid YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{flag}: expected KEY=VALUE, got {item!r}")
    return key.strip(), parse_value(value) if value.strip() else ""


def apply_policy_flags(pol: dict[str, Any], args: argparse.Namespace) -> None:
    """Apply --policy/--target, --param and the exploration flags to a policy section."""
    if args.policy is not None and args.policy != pol.get("name"):
        pol["name"], pol["params"] = args.policy, {}  # the file's params were for its policy
    pol.setdefault("params", {})
    for item in args.param:
        key, value = key_value(item, "--param")
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


def engine_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """The engine section given by --engine, --ray-address and --shards (None: none given)."""
    given = {
        key: getattr(args, flag)
        for flag, key in (("engine", "kind"), ("ray_address", "address"), ("shards", "shards"))
        if getattr(args, flag, None) is not None
    }
    return given or None


def cache_flag(value: str | None) -> str | None:
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
        data["format"] = args.format or infer_format(args.data)
    elif args.format is not None:
        data["format"] = args.format
    if args.columns is not None:
        data["columns"] = parse_columns(args.columns)
    if args.items_file is not None:
        data["items_path"] = args.items_file
    if getattr(args, "impressions", None) is not None:
        data["impressions_path"] = args.impressions
    for flag in ("kg", "kg_links", "kg_labels"):
        if getattr(args, flag, None) not in (None, KG_OF_DATA):
            data[flag] = getattr(args, flag)
    if getattr(args, "domain", None) is not None:
        data["domain"] = args.domain
    if getattr(args, "item_noun", None) is not None:
        data["item_noun"] = args.item_noun
    synthetic = data["format"] == "synthetic"
    if getattr(args, "users", None) is not None:
        (data["synthetic"] if synthetic else pop)["users"] = args.users
    if getattr(args, "items", None) is not None:
        (data["synthetic"] if synthetic else pop)["items"] = args.items
    if getattr(args, "visit_rate", None) is not None:
        pop["visit_rate"] = args.visit_rate
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
        apply_policy_flags(pol, args)
    if getattr(args, "retrain_every", None) is not None:
        pol["retrain_every"] = args.retrain_every
    if getattr(args, "social", None) is not None:
        if args.social in GRAPHS:
            raw["social"]["graph"] = args.social
        else:
            raw["social"].update(graph="edges", path=args.social)
    if getattr(args, "llm", None) is not None:
        raw["llm"]["backend"] = args.llm
        if raw["brain"]["name"] == "utility":
            raw["brain"]["name"] = "llm"
    if base_urls(args) is not None:
        raw["llm"]["base_url"] = base_urls(args)
    if getattr(args, "llm_cache", None) is not None:
        raw["llm"]["cache"] = cache_flag(args.llm_cache)
    if getattr(args, "brain", None) is not None:
        raw["brain"]["name"] = args.brain
    if getattr(args, "seed", None) is not None:
        raw["seed"] = args.seed
    raw["engine"].update(engine_flags(args) or {})
    if getattr(args, "out", None) is not None:
        raw["output"]["dir"] = args.out
    if getattr(args, "events_uri", None) is not None:
        raw["output"]["events_uri"] = args.events_uri
    if getattr(args, "templates_dir", None) is not None:
        raw["llm"]["templates_dir"] = args.templates_dir
    if getattr(args, "overwrite", False):
        raw["output"]["overwrite"] = True
    return validate_config(raw, "command line")


def add_exposures_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--exposures``: the brain.exposure readings ``what`` is also simulated at."""
    parser.add_argument(
        "--exposures",
        help=f"comma-separated brain.exposure values {what} also simulated at, to show which "
        "orders depend on how much of the log's popularity is exposure (default: 0,1 with the "
        "utility brain, the config's own value left out; none: skip)",
    )


def exposures_flag(text: str | None) -> tuple[float, ...] | None:
    """--exposures: numbers, comma-separated, or none; absent: None, the command's default
    (their range is checked where they are used: :func:`simrec.config.exposure_readings`)."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise ConfigError(f"--exposures: expected numbers, comma-separated, or none; got {text!r}")
    return values
