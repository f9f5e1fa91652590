"""The build layer: from a config to the parts a simulation is made of.

Every entry point (``simrec.run``, ``simrec.ab``, the Gym environment, the fidelity report,
augmentation, the benchmarks) builds its parts here, so a notebook can do the same::

    >>> from simrec import build
    >>> cfg = build.as_config({"data": {"synthetic": {"users": 60, "items": 40}},
    ...                        "brain": {"taste_dim": 4}})
    >>> data = build.load_data(cfg)
    >>> brain, personas = build.calibrate(cfg, data, users=10)
    >>> len(personas), build.make_policy("popular").name
    (10, 'popular')

``calibrate`` fits the statistical brain on a log and binds it to a population of personas;
``make_brain`` puts an LLM brain in front of it when the config asks for one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec import cache
from simrec.agents.brains.base import Brain
from simrec.agents.brains.utility import UtilityBrain
from simrec.agents.persona import Personas, sample_population, with_visit_rate
from simrec.config import RunConfig, load_config, validate_config
from simrec.data import Dataset, load, make_world
from simrec.domain import domain
from simrec.environments.registry import make_policy
from simrec.errors import InputError
from simrec.rng import Streams

if TYPE_CHECKING:
    from simrec.agents.memory import EpisodicMemory
    from simrec.llm.base import LLMBackend

__all__ = ["as_config", "calibrate", "load_data", "make_backend", "make_brain", "make_policy"]

_ALL = object()


def as_config(config: RunConfig | dict | str | Path | None) -> RunConfig:
    """A validated RunConfig from a RunConfig, a mapping, a YAML/TOML path or None
    (defaults)."""
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return validate_config(config)
    return load_config(config)


def load_data(cfg: RunConfig) -> Dataset:
    """The dataset the config names, in the words of ``data.domain`` when it is set (else the
    domain inferred from the data), restricted to ``population.items`` most popular items."""
    d = cfg.data
    if d.format == "synthetic":
        data = make_world(d.synthetic, cfg.seed)
    else:
        if d.path is None:
            raise InputError(
                f"data.path: expected a path for format '{d.format}', got none (use --data PATH)"
            )
        data = load(d.format, d.path, columns=d.columns, items_path=d.items_path)
    if d.kg is not None or d.kg_links is not None:
        data = with_knowledge(data, d.kg, d.kg_links, d.kg_labels)
    if d.domain is not None or d.item_noun is not None:
        words = data.catalog.domain if d.domain is None else domain(d.domain, data.source)
        if d.item_noun is not None:
            words = words.with_words(item=d.item_noun)
        data = dataclasses.replace(data, catalog=data.catalog.described(words))
    if d.impressions_path is not None:
        from simrec.data.dataset import file_sha256
        from simrec.data.impressions import read_impressions

        imp = read_impressions(d.impressions_path, d.impressions_columns)
        hashes = dict(data.file_hashes)
        path = Path(d.impressions_path)
        hashes[str(path)] = file_sha256(str(path)) if path.is_file() else _folder_hash(path)
        data = dataclasses.replace(data, impressions=imp, file_hashes=hashes)
    if cfg.population.items is not None and cfg.population.items < data.catalog.n_items:
        data = top_items(data, cfg.population.items)
    if len(data.interactions) == 0:
        raise InputError(f"{d.path or 'synthetic world'}: no interactions left to calibrate from")
    return data


def with_knowledge(
    data: Dataset, kg: str | None, links: str | None, labels: str | None = None
) -> Dataset:
    """``data`` with the knowledge graph of the triples ``kg`` and item links ``links`` (both
    needed; see :mod:`simrec.data.knowledge`); the files count as inputs of the data."""
    from simrec.data.dataset import file_sha256
    from simrec.data.knowledge import load_knowledge

    if kg is None or links is None:
        raise InputError(
            f"data.kg and data.kg_links: expected both (triples and item links), got "
            f"{'only data.kg' if kg else 'only data.kg_links'} (use --kg FILE --kg-links FILE)"
        )
    knowledge = load_knowledge(kg, links, data.catalog.item_ids, labels)
    catalog = dataclasses.replace(data.catalog, knowledge=knowledge)
    hashes = dict(data.file_hashes)
    for f in (kg, links, labels):
        if f is not None:
            hashes[str(f)] = file_sha256(str(f))
    return dataclasses.replace(data, catalog=catalog, file_hashes=hashes)


def top_items(data: Dataset, n: int) -> Dataset:
    """``data`` restricted to its ``n`` most popular items (ties: lower index first), and to
    the users who interacted with one of them."""
    keep = np.lexsort((np.arange(data.catalog.n_items), -data.catalog.popularity))[:n]
    keep = np.sort(keep)
    new_index = np.full(data.catalog.n_items, -1, np.int64)
    new_index[keep] = np.arange(keep.size)
    log = data.interactions
    rows = np.flatnonzero(new_index[log.item] >= 0)
    users_kept = np.unique(log.user[rows])
    kept = log.take(rows)
    kept = dataclasses.replace(kept, item=new_index[kept.item].astype(np.int32))
    sub = kept.of_users(users_kept)
    truth = data.truth
    if truth is not None:
        truth = dataclasses.replace(
            truth,
            user_vecs=truth.user_vecs[users_kept],
            item_vecs=truth.item_vecs[keep],
            log_pop=truth.log_pop[keep],
        )
    return Dataset(
        data.catalog.subset(keep),
        sub,
        data.scale,
        data.source,
        data.file_hashes,
        truth,
        data.impressions,
    )


def _folder_hash(path: Path) -> str:
    """One hash of a folder of files (simrec's event parts): their names and contents."""
    from simrec.data.dataset import file_sha256

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_sha256(str(f)).encode())
    return h.hexdigest()


IMPRESSION_SETTINGS = ("exposure", "position_decay")  # what an impression log tells the brain


def with_impressions(cfg: RunConfig, data: Dataset) -> RunConfig:
    """``cfg`` with the brain settings ``data.impressions_use`` names (None: brain.exposure and
    brain.position_decay) read from ``data.impressions``
    (:func:`simrec.agents.impressions.estimates`), and ``impressions_use`` then empty, so that
    resolving again (or resuming) reads nothing twice; ``cfg`` itself without an impression log.
    A setting the log cannot tell (a single position, consumption that does not vary) keeps
    the config's value, with a warning."""
    use = cfg.data.impressions_use
    if data.impressions is None or use == []:
        return cfg
    from simrec.agents.impressions import estimates

    found = estimates(data)
    out = cfg.model_copy(deep=True)
    for key in IMPRESSION_SETTINGS if use is None else use:
        if np.isfinite(found[key]):
            setattr(out.brain, key, float(max(found[key], 0.0)))
        else:
            logging.getLogger(__name__).warning(
                "%s: the impression log cannot tell brain.%s; it keeps %g",
                cfg.data.impressions_path,
                key,
                getattr(cfg.brain, key),
            )
    out.data.impressions_use = []
    logging.getLogger(__name__).info(
        "read from the impression log: exposure %.3f, position_decay %.3f",
        out.brain.exposure,
        out.brain.position_decay,
    )
    return out


def calibrate(
    cfg: RunConfig,
    data: Dataset,
    *,
    users: int | None | Any = _ALL,
    streams: Streams | None = None,
) -> tuple[UtilityBrain, Personas]:
    """The statistical brain of ``cfg.brain`` fitted on ``data``, bound to its population.

    ``users``: how many agents (default ``cfg.population.users``; None: one per user of the
    log, in log order); ``streams``: the run's random streams (default: from ``cfg.seed``).
    Returns the brain and the agents' personas (one row per agent).
    """
    cfg = with_impressions(cfg, data)
    streams = Streams(cfg.seed) if streams is None else streams
    n = cfg.population.users if users is _ALL else users
    brain = UtilityBrain(cfg.brain, seed=cfg.seed)
    personas = sample_population(_fit_or_fetch(brain, cfg, data), n, streams)
    if cfg.population.visit_rate is not None:  # set, not measured (a log without times)
        personas = with_visit_rate(personas, cfg.population.visit_rate, data.catalog.domain)
    brain.bind(personas, streams)
    return brain, personas


def _fit_or_fetch(brain: UtilityBrain, cfg: RunConfig, data: Dataset):
    """``brain.fit(data)``, or the same calibration read back from the calibration cache
    (:mod:`simrec.cache`); ``brain.calibration_cache`` says which (``hit``, ``miss``, ``off``,
    or ``ignored: WHY`` for an entry that could not be trusted, then replaced)."""
    if cache.folder() is None:
        brain.calibration_cache = "off"
        return brain.fit(data)
    key = cache.calibration_key(data, cfg.brain.model_dump(mode="json"), cfg.seed)
    state, how = cache.fetch(key)
    if state is not None:
        try:
            personas = brain.restore(state, data)
        except ValueError as err:
            how = f"ignored: {err}"
            logging.getLogger(__name__).warning("calibration cache entry %s %s", key, how)
        else:
            brain.calibration_cache = how
            return personas
    personas = brain.fit(data)
    summary = {
        "source": data.source,
        "users": data.interactions.n_users,
        "items": data.catalog.n_items,
        "interactions": len(data.interactions),
        "seed": cfg.seed,
    }
    stored = cache.keep(key, brain.fitted_state(personas), summary)
    brain.calibration_cache = how if stored else f"{how} (not stored)"
    return personas


def make_backend(cfg: RunConfig) -> LLMBackend:
    """The LLM backend of ``cfg.llm`` (openai, vllm or local), behind the response cache when
    ``llm.cache`` names one."""
    from simrec.llm import CachedBackend
    from simrec.llm import make_backend as backend_for

    c = cfg.llm
    options: dict[str, Any] = {}
    if c.backend.startswith("openai:"):
        options = {
            "concurrency": c.concurrency,
            "timeout": c.timeout,
            "max_retries": c.max_retries,
            "response_format": c.response_format,
            "api_key_env": c.api_key_env,
        }
    backend = backend_for(c.backend, base_url=c.base_url, **options)
    if c.cache:
        backend = CachedBackend(backend, c.cache)
    return backend


def make_brain(
    cfg: RunConfig,
    utility: UtilityBrain,
    data: Dataset,
    *,
    backend: LLMBackend | None = None,
) -> tuple[Brain, EpisodicMemory | None]:
    """The brain of ``cfg.brain.name`` over a calibrated, bound ``utility`` brain (from
    :func:`calibrate`), and the episodic memory LLM brains read (None for ``utility``).

    ``llm`` and ``hybrid`` ask ``backend`` (default: :func:`make_backend` of ``cfg``) and fall
    back to ``utility``, which also supplies arrivals, satisfaction and churn.
    """
    if cfg.brain.name not in ("llm", "hybrid"):
        return utility, None
    from simrec.agents.brains.llm import HybridBrain, LLMBrain

    c = cfg.llm
    memory = episodic_memory(cfg, data, utility, len(utility.source_user))
    backend = make_backend(cfg) if backend is None else backend
    common = {
        "seed": cfg.seed,
        "max_tokens": c.max_tokens,
        "temperature": c.temperature,
        "templates_dir": c.templates_dir,
        "memory_items": cfg.memory.retrieve,
    }
    if cfg.brain.name == "hybrid":
        brain = HybridBrain(backend, utility, narrate_fraction=c.narrate_fraction, **common)
    else:
        brain = LLMBrain(backend, utility, **common)
    return brain, memory


def episodic_memory(
    cfg: RunConfig, data: Dataset, utility: UtilityBrain, n_agents: int
) -> EpisodicMemory:
    """The LLM brains' episodic memory of ``cfg.memory``; relevance from the catalog's TF-IDF
    and the statistical brain's item vectors (or a sentence model)."""
    from simrec.agents.embeddings import make_embedding
    from simrec.agents.memory import EpisodicMemory

    m = cfg.memory
    return EpisodicMemory(
        n_agents,
        make_embedding(m.embedding, data.catalog, utility.choice.items),
        capacity=m.capacity,
        half_life=m.half_life_days * 86400 / cfg.simulation.tick_seconds,
        weights=(m.recency_weight, m.importance_weight, m.relevance_weight),
        reflect_every=m.reflect_every,
        reflect_with=m.reflect_with,
    )
