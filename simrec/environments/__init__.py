"""Recommender environments: the Recommender contract and built-in policies."""

from simrec.environments.base import PolicyRandomness, Recommender, Slates
from simrec.environments.policies import PopularPolicy, RandomPolicy
from simrec.environments.registry import POLICIES, make_policy, policy_family

__all__ = [
    "POLICIES",
    "RecEnv",
    "PolicyRandomness",
    "PopularPolicy",
    "RandomPolicy",
    "Recommender",
    "Slates",
    "make_policy",
    "policy_family",
]


def __getattr__(name: str):
    """``RecEnv`` is imported on first use: it needs the optional ``gymnasium`` package."""
    if name == "RecEnv":
        try:
            from simrec.environments.gym import RecEnv
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "simrec.environments.RecEnv needs gymnasium: pip install 'simrec[gym]'"
            ) from err
        return RecEnv
    raise AttributeError(f"module 'simrec.environments' has no attribute {name!r}")
