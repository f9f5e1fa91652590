"""Recommender environments: the Recommender contract and built-in policies (the Gymnasium
environment is :class:`simrec.gym.RecEnv`)."""

from simrec.environments.base import PolicyRandomness, Recommender, Slates
from simrec.environments.policies import PopularPolicy, RandomPolicy
from simrec.environments.registry import POLICIES, make_policy, policy_family

__all__ = [
    "POLICIES",
    "PolicyRandomness",
    "PopularPolicy",
    "RandomPolicy",
    "Recommender",
    "Slates",
    "make_policy",
    "policy_family",
]
