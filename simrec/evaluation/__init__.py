"""Evaluation: offline A/B tests (``ab``)."""

from simrec.evaluation.ab import METRICS, ab, compare, holm

__all__ = ["METRICS", "ab", "compare", "holm"]
