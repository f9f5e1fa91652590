"""The policy registry: policy names -> classes, and building a policy from a name, a
``policy`` config section or a ready object.

Built-ins are ``random``, ``popular``, ``organic``, ``itemknn``, ``als``, ``bpr``, ``ease``,
``genre`` and ``kg``; anything else is ``package.module:ClassName``, imported only when the
caller (the CLI, or a config file the user wrote) names it. Each policy class declares its
model ``family``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from simrec.config import ExplorationConfig, PolicyConfig, format_validation_error
from simrec.environments.base import Recommender, resolve_class
from simrec.environments.exploration import wrap
from simrec.environments.learned import (
    ALSPolicy,
    BPRPolicy,
    EASEPolicy,
    GenrePolicy,
    ItemKNNPolicy,
    KnowledgePolicy,
)
from simrec.environments.policies import OrganicPolicy, PopularPolicy, RandomPolicy
from simrec.errors import ConfigError

POLICIES: dict[str, type] = {
    "random": RandomPolicy,
    "popular": PopularPolicy,
    "organic": OrganicPolicy,
    "itemknn": ItemKNNPolicy,
    "als": ALSPolicy,
    "bpr": BPRPolicy,
    "ease": EASEPolicy,
    "genre": GenrePolicy,
    "kg": KnowledgePolicy,
}


def policy_family(policy: str | type | Recommender) -> str:
    """The model family a policy (a built-in name, class or object) declares; ``unknown`` for
    an unknown name or a policy that declares none.

    >>> policy_family("als"), policy_family("popular"), policy_family("mine:Thing")
    ('matrix factorisation', 'popularity', 'unknown')
    """
    if isinstance(policy, str):
        policy = POLICIES.get(policy, object)
    family = getattr(policy, "family", None)
    return family if isinstance(family, str) else "unknown"


def make_policy(
    spec: str | PolicyConfig | dict | Recommender,
    params: dict[str, Any] | None = None,
    exploration: ExplorationConfig | None = None,
) -> Recommender:
    """A policy from a built-in name or ``package.module:ClassName`` (instantiated with
    ``params``), from a ``policy`` config section (a PolicyConfig or a mapping: its name, params
    and exploration), or a ready Recommender object (returned as it is, or wrapped).
    ``exploration``: wrap the policy in an exploration policy. Anything else is a ConfigError
    naming what was found."""
    if isinstance(spec, dict):
        try:
            spec = PolicyConfig.model_validate(spec)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "policy")) from None
    if isinstance(spec, PolicyConfig):
        return make_policy(spec.name, spec.params, spec.exploration or exploration)
    if isinstance(spec, str):
        policy = _instantiate(spec, params or {})
    else:
        _check_object(spec, f"policy {type(spec).__name__}")
        policy = spec
    if exploration is not None:
        policy = wrap(
            policy,
            exploration.kind,
            epsilon=exploration.epsilon,
            temperature=exploration.temperature,
            candidates=exploration.candidates,
        )
    return policy


def _instantiate(name: str, params: dict[str, Any]) -> Recommender:
    cls = resolve_class(name, POLICIES, "policy")
    # a class with the Recommender's methods, checked before anything of it runs
    lacking = [m for m in ("fit", "recommend") if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or lacking:
        found = (
            f"a class missing {', '.join(lacking)}"
            if isinstance(cls, type)
            else f"a {type(cls).__name__}"
        )
        raise ConfigError(
            f"policy '{name}': expected a Recommender class (with methods fit and recommend), "
            f"got {found}; nothing of it was run"
        )
    try:
        policy = cls(**params)
    except TypeError as err:
        raise ConfigError(f"policy.params for '{name}': {err}") from None
    _check_object(policy, f"policy '{name}'")
    return policy


def _check_object(policy: object, what: str) -> None:
    """ConfigError unless ``policy`` has a name and callable fit and recommend."""
    missing = [m for m in ("name", "fit", "recommend") if not hasattr(policy, m)]
    if missing:
        raise ConfigError(
            f"{what}: expected a Recommender (attributes name, fit, recommend), "
            f"missing {', '.join(missing)}"
        )
    not_callable = [m for m in ("fit", "recommend") if not callable(getattr(policy, m))]
    if not_callable:
        raise ConfigError(
            f"{what}: expected methods fit() and recommend(), "
            f"{', '.join(not_callable)} is not callable"
        )
