"""Contract checks that any plug-in must pass; run them on your own implementations.

>>> from simrec.testing import check_recommender
>>> from simrec.environments.policies import PopularPolicy
>>> check_recommender(PopularPolicy)
"""

from simrec.testing.recommender import check_recommender, contract_world

__all__ = ["check_recommender", "contract_world"]
