"""Evaluation: offline A/B tests (``ab``), off-policy evaluation (``ope``), the fidelity
report (``fidelity``) and the synthetic-data report (``synthetic``)."""

from simrec.evaluation.ab import METRICS, ab, compare
from simrec.evaluation.fidelity_report import fidelity
from simrec.evaluation.ope import ESTIMATORS, ope
from simrec.evaluation.resampling import holm
from simrec.evaluation.synthetic import synthetic

__all__ = ["ESTIMATORS", "METRICS", "ab", "compare", "fidelity", "holm", "ope", "synthetic"]
