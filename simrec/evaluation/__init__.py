"""Evaluation: offline A/B tests (``ab``) and off-policy evaluation (``ope``)."""

from simrec.evaluation.ab import METRICS, ab, compare, holm
from simrec.evaluation.ope import ESTIMATORS, ope

__all__ = ["ESTIMATORS", "METRICS", "ab", "compare", "holm", "ope"]
