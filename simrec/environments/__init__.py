"""Recommender environments: the Recommender contract and built-in policies."""

from simrec.environments.base import PolicyRandomness, Recommender, Slates
from simrec.environments.policies import POLICIES, PopularPolicy, RandomPolicy, make_policy

__all__ = [
    "POLICIES",
    "PolicyRandomness",
    "PopularPolicy",
    "RandomPolicy",
    "Recommender",
    "Slates",
    "make_policy",
]
