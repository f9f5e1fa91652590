"""Contract checks that any plug-in must pass; run them on your own implementations.

One checker per plug-in point: :func:`check_recommender` (policies), :func:`check_brain`
(brains), :func:`check_crs` (conversational recommenders), :func:`check_backend` (LLM
backends) and :func:`check_augmenter` (augmenters);
:class:`FakeBackend` is a scripted LLM backend for your own tests.

>>> from simrec.testing import check_recommender
>>> from simrec.environments.policies import PopularPolicy
>>> check_recommender(PopularPolicy)
"""

from simrec.testing.augmenter import check_augmenter
from simrec.testing.backend import FakeBackend, check_backend
from simrec.testing.brain import check_brain
from simrec.testing.crs import check_crs
from simrec.testing.recommender import check_recommender, contract_world

__all__ = [
    "FakeBackend",
    "check_augmenter",
    "check_backend",
    "check_brain",
    "check_crs",
    "check_recommender",
    "contract_world",
]
