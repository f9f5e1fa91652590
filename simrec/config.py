"""Typed run configuration: pydantic models with ``extra="forbid"``, loaded from YAML or TOML.

A config round-trips: ``load_config(path)`` of the YAML that :func:`dump_config` printed gives an
equal model.

>>> cfg = RunConfig()
>>> RunConfig.model_validate(yaml.safe_load(dump_config(cfg))) == cfg
True
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from simrec.domain import DOMAINS, Domain, checked_domain
from simrec.errors import ConfigError

DataFormat = Literal[
    "synthetic", "movielens-100k", "movielens-1m", "movielens-latest", "recbole", "table"
]
# the log's columns, then the items file's (items_item: its id column, when not named as the log's)
REPEAT_LOGS = 0.05  # a log's repeat share from which simulation.repeats is on by default
TABLE_COLUMN_KEYS = (
    *("user", "item", "rating", "timestamp", "count"),
    *("title", "genres", "items_item"),
)
# the two ends of brain.exposure that a ranking of policies is also simulated at (the fidelity
# report, simrec ab): how much of a log's popularity is exposure is not in a log without
# impressions, so an order of policies that changes between them rests on that assumption
EXPOSURE_READINGS = (0.0, 1.0)


def exposure_readings(
    values: tuple[float, ...] | list[float] | None, configured: float, where: str
) -> list[float]:
    """The distinct ``brain.exposure`` readings of ``values`` (None: EXPOSURE_READINGS) other
    than the ``configured`` one, in order; a value outside [0, 2] is a ConfigError naming
    ``where``.

    >>> exposure_readings([0, 1, 0.5, 0], 1.0, "ab exposures")
    [0.0, 0.5]
    """
    out = []
    for v in EXPOSURE_READINGS if values is None else values:
        e = float(v)
        if not 0 <= e <= 2:
            raise ConfigError(f"{where}: expected values in [0, 2], got {e:g}")
        if e != configured and e not in out:
            out.append(e)
    return out


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticWorldConfig(_Section):
    """The built-in synthetic world used by the demo and the benchmarks."""

    users: int = Field(2000, gt=0, description="number of users in the world")
    items: int = Field(3000, gt=0, description="number of items in the catalog")
    genres: int = Field(18, ge=1, le=64, description="number of genres")
    dim: int = Field(16, ge=2, le=256, description="latent taste dimensions")
    interactions_per_user: float = Field(
        40.0, gt=0, description="mean seed-log interactions per user"
    )
    popularity_exponent: float = Field(0.9, ge=0, description="Zipf exponent of item popularity")
    log_days: int = Field(180, gt=0, description="days spanned by the seed log")


class DataConfig(_Section):
    """Where the logs that calibrate the population come from."""

    format: DataFormat = "synthetic"
    path: str | None = Field(
        None,
        description="data directory (MovieLens, RecBole), file (table) or a named dataset "
        "(ml-100k; see `simrec datasets`)",
    )
    items_path: str | None = Field(None, description="table format: optional catalog file")
    impressions_path: str | None = Field(
        None,
        description="an impression log of the same users and items (what was shown, where, "
        "whether it was clicked; the layouts of `simrec eval impressions`): the brain settings "
        "data.impressions_use names are read from it",
    )
    impressions_use: list[Literal["exposure", "position_decay"]] | None = Field(
        None,
        description="which brain settings the impression log sets (brain.exposure: how "
        "impressions grow with consumption; brain.position_decay: how attention falls down a "
        "slate); None: both; []: none (they were read already, or are the config's own)",
    )
    impressions_columns: dict[str, str] | None = Field(
        None,
        description="the impression log's field mapping (request,user,item,position,clicked,"
        "propensity,timestamp) when its columns have other names",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="table and recbole formats: mapping of user,item,rating,timestamp,count "
        "(the log; count: plays, purchases or views, the strength of an interaction) and "
        "title,genres,items_item (the items file; items_item: its id column, default the item "
        "column's name) to columns (fields)",
    )
    kg: str | None = Field(
        None,
        description="knowledge-graph triples (TSV/CSV/Parquet: head, relation, tail) for any "
        "format; RecBole datasets with NAME.kg/.link have theirs already",
    )
    kg_links: str | None = Field(
        None, description="with kg: the item-to-entity links (item, entity)"
    )
    kg_labels: str | None = Field(
        None, description="with kg: optional entity labels (entity, label)"
    )
    domain: str | Domain | None = Field(
        None,
        description="the catalog's domain: "
        + ", ".join(DOMAINS)
        + ", or a mapping defining one (name, item, verb, ...); None: inferred from the data",
    )
    item_noun: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        description="what one item is called, over the domain's noun (music: artist, album)",
    )
    synthetic: SyntheticWorldConfig = Field(default_factory=SyntheticWorldConfig)

    @model_validator(mode="before")
    @classmethod
    def _format_of_path(cls, v: Any) -> Any:
        """A path without a format: the format is told from the path (as ``--data`` does),
        never the synthetic world with the path left unread."""
        if isinstance(v, dict) and v.get("path") is not None and v.get("format") is None:
            from simrec.datasets import infer_format

            v = {**v, "format": infer_format(str(v["path"]))}
        return v

    @field_validator("domain", mode="before")
    @classmethod
    def _known_domain(cls, v: Any) -> Any:
        return None if v is None else checked_domain(v)

    @field_validator("columns")
    @classmethod
    def _known_column_keys(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(TABLE_COLUMN_KEYS))
        if unknown:
            raise ValueError(
                f"unknown keys {', '.join(unknown)}: expected keys among "
                f"{', '.join(TABLE_COLUMN_KEYS)}"
            )
        return v


class PopulationConfig(_Section):
    """Which users and items of the data the simulation uses."""

    users: int | None = Field(
        None,
        gt=0,
        description="agents to simulate (None: one per user in the data); "
        "fewer are sampled, more are cloned personas",
    )
    items: int | None = Field(
        None, gt=0, description="keep only the N most popular items (None: whole catalog)"
    )
    visit_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="every agent's chance of a visit per tick at neutral satisfaction (None: "
        "each user's own rate, from the log's sessions; a log without timestamps has none, "
        "and gets one visit in 30 days)",
    )


class SimulationConfig(_Section):
    """Clock, pages and batching."""

    ticks: int = Field(30, gt=0, le=100_000, description="simulated ticks (days by default)")
    page_size: int = Field(10, gt=0, le=1000, description="items per page (slate size k)")
    max_pages: int = Field(5, gt=0, le=1000, description="pages a session may last")
    repeats: bool | None = Field(
        None,
        description="whether users may consume an item again (policies may show what a user "
        "consumed; a replay's pull is calibrated to the log's repeat share); None: on when "
        f"the log repeats (repeat share >= {REPEAT_LOGS:g}: play counts, replays)",
    )
    inherit_history: bool | None = Field(
        None,
        description="whether each agent starts having consumed what its source user "
        "consumed in the log (kept off its slates, counted as consumed before); false: agents "
        "start as new people with their source user's tastes, free to consume anything (a "
        "synthetic log then repeats its sources' items: see `simrec eval synthetic --start`); "
        "None: true",
    )
    batch_size: int = Field(
        8192, gt=0, description="agents per recommend/decide call; never changes the results"
    )
    tick_seconds: int = Field(86400, gt=0, description="simulated seconds per tick")
    start_time: dt.datetime = Field(
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC), description="timestamp of tick 0"
    )
    checkpoint_every: int = Field(5, gt=0, description="ticks between checkpoints")

    @field_validator("start_time")
    @classmethod
    def _utc(cls, v: dt.datetime) -> dt.datetime:
        return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)


class ExplorationConfig(_Section):
    """Wraps the policy in a stochastic logging policy with exact propensities."""

    kind: Literal["epsilon-greedy", "softmax"] = Field(
        ..., description="epsilon-greedy (whole slates) or softmax (Plackett-Luce)"
    )
    epsilon: float = Field(0.1, gt=0, le=1, description="epsilon-greedy: P(random slate)")
    temperature: float = Field(
        1.0, gt=0, description="softmax: temperature, in units of the policy's scores"
    )
    candidates: int = Field(
        50, ge=1, le=10_000, description="softmax: the policy's top-N items sampled from"
    )


class PolicyConfig(_Section):
    """The recommender: a built-in name or ``package.module:ClassName``, and its parameters."""

    name: str = "popular"
    params: dict[str, Any] = Field(default_factory=dict)
    exploration: ExplorationConfig | None = Field(
        None, description="log a stochastic version of the policy (None: as it is)"
    )
    retrain_every: int | None = Field(
        None,
        gt=0,
        description="refit the policy every N ticks on the seed log plus everything watched "
        "so far (None: never; the feedback loop)",
    )


class SocialConfig(_Section):
    """A social graph over the agents: users share what they rated highly with their friends."""

    graph: Literal["none", "watts-strogatz", "barabasi-albert", "edges"] = Field(
        "none", description="none, a generated graph, or 'edges' read from path"
    )
    path: str | None = Field(None, description="edges: a file of 'user user' lines (data ids)")
    degree: int = Field(10, ge=1, description="mean degree of a generated graph")
    rewire: float = Field(0.1, ge=0, le=1, description="watts-strogatz rewiring probability")
    share_threshold: float = Field(
        0.75, ge=0, le=1, description="normalised rating (0..1) from which a watch may be shared"
    )
    share_probability: float = Field(0.3, ge=0, le=1, description="P(share | liked a watch)")
    signal_decay: float = Field(
        0.5, ge=0, lt=1, description="per-tick factor on the signal friends' shares left"
    )


class LLMConfig(_Section):
    """The LLM behind ``brain.name: llm``."""

    backend: str = Field(
        "local", description="openai:MODEL, vllm:MODEL or local (the embedded SmolLM2)"
    )
    base_url: str | list[str] | None = Field(
        None,
        description="openai: server URL, or a list of servers of the same model that share the "
        "requests with failover (None: api.openai.com)",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="openai: environment variable holding the key for base_url's server (None: "
        "OPENAI_API_KEY for api.openai.com, no key for any other server)",
    )
    max_fallback_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="the run exits non-zero (after writing everything) when more than this "
        "share of LLM pages fell back to the statistical brain",
    )
    response_format: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="openai: structured-output style (auto: by server)"
    )
    concurrency: int = Field(8, ge=1, le=1024, description="openai: requests in flight")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(2, ge=0, le=10, description="openai: the client's retries")
    max_tokens: int = Field(200, ge=16, le=8192, description="answer budget per page")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature")
    cache: str | None = Field(
        "datasets_out/.llm-cache.sqlite",
        description="response cache file (None: no cache); a rerun replays from it",
    )
    templates_dir: str | None = Field(None, description="folder with system.txt / page.txt")
    narrate_fraction: float = Field(
        0.1, gt=0, le=1, description="hybrid brain: share of pages the LLM narrates"
    )
    interview_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of agents with a session interviewed after the run (0: none)",
    )


class MemoryConfig(_Section):
    """The LLM brains' episodic memory (see ``simrec.agents.memory.EpisodicMemory``)."""

    capacity: int = Field(64, ge=1, le=4096, description="entries kept per agent")
    retrieve: int = Field(5, ge=0, le=100, description="memories put in each prompt")
    half_life_days: float = Field(
        7.0, gt=0, description="recency halves every this many simulated days"
    )
    reflect_every: int = Field(
        10, ge=0, description="watched/felt/shared entries between reflections (0: never)"
    )
    reflect_with: Literal["llm", "template"] = Field(
        "llm", description="who writes reflections: the LLM (template on failure) or a template"
    )
    embedding: str = Field(
        "default",
        description="relevance vectors: default (tfidf+items), tfidf, items, sentence:MODEL",
    )
    recency_weight: float = Field(1.0, ge=0, description="retrieval weight of recency")
    importance_weight: float = Field(1.0, ge=0, description="retrieval weight of importance")
    relevance_weight: float = Field(1.0, ge=0, description="retrieval weight of relevance")

    @field_validator("embedding")
    @classmethod
    def _known_embedding(cls, v: str) -> str:
        if v in ("default", "tfidf", "items") or (v.startswith("sentence:") and len(v) > 9):
            return v
        raise ValueError("expected default, tfidf, items or sentence:MODEL")


class UtilityBrainConfig(_Section):
    """The statistical brain. Click weights are calibrated by ``fit``; these set the rest.
    ``name: llm`` lets the LLM in the ``llm`` section decide pages (this brain then calibrates
    the personas, drives arrivals and churn, and decides pages whose answers are unusable);
    ``name: hybrid`` keeps this brain's decisions and lets the LLM narrate a sample of pages."""

    name: Literal["utility", "llm", "hybrid"] = "utility"
    first_examination: float = Field(
        0.95, gt=0, le=1, description="probability of examining position 1"
    )
    position_decay: float = Field(0.5, ge=0, description="examination falls as (position)^-decay")
    random_item_watch_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="P(watch | examined a random item); None: the log's density",
    )
    social_weight: float = Field(1.0, ge=0, description="weight of friends' shares x conformity")
    session_length: Literal["log", "fatigue"] = Field(
        "log",
        description="how a session ends. log: after each page with a fixed probability per "
        "user, set so that, shown items drawn from the log's exposure, the user would consume "
        "per session as many items as their source user's sessions in the log hold (sessions "
        "are bursts separated by 30 minutes); fatigue: with probability sigmoid(leave_base + "
        "fatigue_per_page * page - leave_satisfaction_weight * page value). sim.max_pages caps "
        "both",
    )
    leave_base: float = Field(
        -0.8, description="logit of leaving after a page (session_length: fatigue)"
    )
    fatigue_per_page: float = Field(
        0.45, ge=0, description="added leave logit per page (session_length: fatigue)"
    )
    leave_satisfaction_weight: float = Field(
        4.0,
        ge=0,
        description="how much a good page keeps the user browsing (session_length: fatigue)",
    )
    satisfaction_memory: float = Field(
        0.3, gt=0, le=1, description="weight of the last session in satisfaction"
    )
    churn_threshold: float = Field(
        0.15, ge=0, le=1, description="satisfaction below which users may churn"
    )
    churn_hazard: float = Field(0.05, ge=0, le=1, description="P(churn) per unhappy session")
    taste_dim: int | Literal["auto"] = Field(
        "auto",
        description="dimensions of the choice (taste) model fitted from the log: a number, or "
        "auto: the one of 8, 16 and 32 whose model, fitted on each user's earlier "
        "interactions, best ranks the user's latest 20% above unconsumed items (ROC AUC on a "
        "seeded sample of at most 20,000 users, smallest first, stopping at the first that "
        "scores lower; the manifest records each score)",
    )
    rating_dim: Annotated[int, Field(ge=1, le=256)] | None = Field(
        None,
        description="latent dimensions of the rating model (biased MF); default: taste_dim "
        "when that is a number, 16 with auto",
    )
    taste_model: Literal["lda", "svd", "oracle"] = Field(
        "lda",
        description="choice taste: LDA topics (a family no built-in policy uses), truncated SVD "
        "(a matrix factorisation, like als/bpr: it flatters them), or oracle (a synthetic "
        "world's own choice utility: the ideal taste model, synthetic data only)",
    )
    click_calibration: Literal["in-sample", "cross-fit"] = Field(
        "in-sample",
        description="click weights from the rows the taste model was fitted on (in-sample), or "
        "from each user's latest interactions scored by a taste model of the earlier ones "
        "(cross-fit: the taste model is trusted as far as it predicts choices it has not seen)",
    )
    collaborative: Literal["out-of-fold", "in-sample", "none"] = Field(
        "out-of-fold",
        description="the collaborative (item-to-item) evidence of the watch model, and how its "
        "weight is calibrated: out-of-fold (each user's scores from weights fitted on the other "
        "folds of users, so no user's own rows vouch for their items), in-sample (scores from "
        "weights fitted on every user: they flatter themselves), or none (topics, genres, "
        "quality and popularity only)",
    )
    exposure: float = Field(
        1.0,
        ge=0,
        le=2,
        description="how much of an item's popularity in the log is exposure (people came "
        "across it) rather than taste: the click model is calibrated against items drawn in "
        "proportion to (interactions + 1) ** exposure, and inside the simulation the slate is "
        "the exposure. 0: popularity counts as taste (uniform negatives); 1: all of it is "
        "exposure",
    )
    fit_iterations: int = Field(5, ge=1, le=100, description="ALS sweeps of the rating model")
    fit_regularization: float = Field(20.0, gt=0, description="L2 penalty of the rating model")

    @field_validator("taste_dim", mode="before")
    @classmethod
    def _dims_or_auto(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 256):
            return v
        raise ValueError("expected an integer from 2 to 256, or auto")


class OutputConfig(_Section):
    """Where and how the run is written."""

    dir: str | None = Field(None, description="run directory (None: datasets_out/<run_id>)")
    overwrite: bool = Field(False, description="replace a complete run already in dir")
    row_group_size: int = Field(131072, gt=0, description="events rows per Parquet row group")
    compression_level: int | None = Field(None, ge=1, le=22, description="zstd level")
    events_uri: str | None = Field(
        None,
        description="where the event parts go instead of <dir>/events: a pyarrow.fs URI "
        "(file:///shared/run1/events, s3://bucket/run1/events, gs://bucket/run1/events); "
        "credentials come from the environment, never from the URI",
    )

    @field_validator("events_uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if not parts.scheme or len(parts.scheme) == 1:  # 'C:' is a drive, not a scheme
            raise ValueError(
                "expected a URI with a scheme (file:///path, s3://bucket/path, gs://...)"
            )
        secret_query = re.search(r"key|secret|token|password", parts.query, re.IGNORECASE)
        if parts.username or parts.password or secret_query:
            raise ValueError(
                "the URI holds credentials, which would be written to the manifest; give "
                "them through the environment (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS"
                "...) instead"
            )
        return v


class EngineConfig(_Section):
    """Where the agents are simulated: in this process (``local``) or in shards of the
    population on Ray actors (``ray``). The engine never changes the events."""

    kind: Literal["local", "ray"] = Field("local", description="local | ray")
    address: str | None = Field(
        None,
        description="ray: the cluster to join, as ray.init(address=...) takes it ('auto' = the "
        "one running on this machine, HOST:PORT, ray://HOST:PORT); None: start a local Ray "
        "instance for the run",
    )
    shards: int = Field(2, ge=1, le=100_000, description="ray: shards of the population (actors)")
    num_cpus: int | None = Field(
        None, ge=1, description="ray: CPUs of the local instance started when address is None"
    )
    max_restarts: int = Field(
        3, ge=0, le=100, description="ray: shard failures recovered from the last checkpoint"
    )


class RunConfig(_Section):
    """Everything one run needs. ``simrec run --print-config`` prints it as YAML."""

    name: str | None = Field(
        None,
        description="run id, also the run directory's name: letters, digits, '.', '_', '-' "
        "(None: derived from the config)",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="root seed of every random draw")
    data: DataConfig = Field(default_factory=DataConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    social: SocialConfig = Field(default_factory=SocialConfig)
    brain: UtilityBrainConfig = Field(default_factory=UtilityBrainConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is None or is_safe_name(v):
            return v
        raise ValueError("expected 1-128 letters, digits, '.', '_' or '-' (it names a folder)")


_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can name a folder and nothing more: no separators, not . or .."""
    return bool(_SAFE_NAME.fullmatch(name)) and name not in (".", "..")


_MAX_CONFIG_DEPTH = 20


# settings added after run ids were first derived from configs: while unset, they stay out
# of every id and default path, so a config that does not use them keeps its old run id
_LATER_FIELDS = {
    "data": (
        "kg",
        "kg_links",
        "kg_labels",
        "domain",
        "item_noun",
        "impressions_path",
        "impressions_columns",
        "impressions_use",
    ),
    "population": ("visit_rate",),
    "simulation": ("repeats", "inherit_history"),
}


def identity_dump(cfg: BaseModel, **dump: Any) -> dict:
    """``cfg.model_dump(mode="json", **dump)`` for hashing into ids and default paths: the
    unset settings of :data:`_LATER_FIELDS` left out."""
    raw = cfg.model_dump(mode="json", **dump)
    for section, names in _LATER_FIELDS.items():
        part = raw.get(section)
        if isinstance(part, dict):
            for name in names:
                if part.get(name) is None:
                    part.pop(name, None)
    return raw


def _without_secrets(value: Any) -> Any:
    """A URI-like string without its user info and query (where credentials hide), so an
    error message never repeats them.

    >>> _without_secrets("s3://KEY:SECRET@bucket/x?secret_key=1")
    's3://***@bucket/x?***'
    """
    if not isinstance(value, str) or "://" not in value:
        return value
    scheme, _, rest = value.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    path, q, _ = path.partition("?")
    return f"{scheme}://{netloc}{slash}{path}{'?***' if q else ''}"


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field a.b: expected ..., got ...``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = _without_secrets(e.get("input"))
        msg = e["msg"].replace("Extra inputs are not permitted", "unknown field")
        msg = msg.removeprefix("Value error, ")  # simrec's own checks: the message alone
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: field '{loc}': unknown field")
        else:
            lines.append(f"{source}: field '{loc}': {_short(msg)}, got {_short(repr(got))}")
    return "\n".join(lines)


def validate_config(raw: Any, source: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`, raising :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


MAX_CONFIG_BYTES = 1_000_000  # a config is settings, not data


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file."""
    p = Path(path)
    return validate_config(read_settings(p, "config file"), str(p))


def read_settings(p: Path, what: str, any_suffix: bool = False) -> Any:
    """The YAML or TOML file ``p`` (a config, an arms file) parsed, or ConfigError naming it:
    at most 1 MB, UTF-8, no YAML aliases, no duplicate keys, integers of at most 4,300 digits,
    at most 20 levels of nesting. ``any_suffix``: a file not named .toml is YAML."""
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{p}: expected a {what} of at most {MAX_CONFIG_BYTES:,} bytes, found {size:,}"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{p}: expected UTF-8 text, found byte {err.object[err.start]:#x} at offset {err.start}"
        ) from None
    try:
        if p.suffix.lower() == ".toml":
            raw = tomllib.loads(text)
        elif any_suffix or p.suffix.lower() in (".yaml", ".yml"):
            raw = yaml.load(text, Loader=_PlainLoader) or {}
        else:
            raise ConfigError(f"{p}: expected a .yaml, .yml or .toml file, got '{p.suffix}'")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{p}: not valid {p.suffix[1:].upper()}: {_short(str(err))}") from None
    except ValueError as err:  # an integer past Python's 4,300-digit limit
        raise ConfigError(f"{p}: a value cannot be read: {_short(str(err))}") from None
    except RecursionError:
        raise ConfigError(
            f"{p}: nested too deeply (a {what} is sections of settings, {_MAX_CONFIG_DEPTH} "
            f"levels at most)"
        ) from None
    depth = _depth(raw)
    if depth > _MAX_CONFIG_DEPTH:
        raise ConfigError(
            f"{p}: nested {depth} levels deep, expected at most {_MAX_CONFIG_DEPTH} (a {what} "
            f"is sections of settings)"
        )
    return raw


def parse_value(text: str) -> Any:
    """A flag's value read as YAML (``factors=64`` -> 64), the text itself when it is not
    YAML or not a plain value."""
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return text


def _short(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters (a message never echoes a huge value whole)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


class _PlainLoader(yaml.SafeLoader):
    """safe_load without aliases: a config has no use for them, and nested aliases expand
    exponentially (a 'billion laughs' file would hang the run)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"aliases (*{event.anchor}) are not supported in config files, found one at "
                f"line {event.start_mark.line + 1}; write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if duplicate:
                raise yaml.YAMLError(
                    f"the key {_short(repr(key), 80)} appears twice in one mapping (line "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
        return super().construct_mapping(node, deep=deep)


def _depth(value: Any, limit: int = _MAX_CONFIG_DEPTH + 1) -> int:
    """Nesting depth of mappings and lists, counted up to ``limit``."""
    stack, deepest = [(value, 0)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d >= limit:
            continue
        if isinstance(v, dict):
            stack += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, d + 1) for x in v]
    return deepest


def dump_config(cfg: RunConfig, fmt: Literal["yaml", "toml"] = "yaml") -> str:
    """The full effective config as YAML (or TOML) text that loads back unchanged."""
    data = cfg.model_dump(mode="json")
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(_drop_none(data))
    return yaml.safe_dump(data, sort_keys=False)


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    return d
