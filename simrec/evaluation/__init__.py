"""Evaluation: offline A/B tests (``ab``), off-policy evaluation (``ope``) and the fidelity
report (``fidelity``)."""

from simrec.evaluation.ab import METRICS, ab, compare, holm
from simrec.evaluation.fidelity_report import fidelity
from simrec.evaluation.ope import ESTIMATORS, ope

__all__ = ["ESTIMATORS", "METRICS", "ab", "compare", "fidelity", "holm", "ope"]
