"""The held-out split the fidelity report measures against, and what the report's table
holds (its columns, sections and the fidelity issue's targets)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from simrec.data.dataset import Dataset, Interactions
from simrec.errors import ConfigError

SECTIONS = ("discrimination", "rating", "behaviour", "ranking")


TARGETS = {  # (section, setting, metric): (comparison, value), from the fidelity issue
    ("discrimination", "1:1", "accuracy"): (">=", 0.85),
    ("discrimination", "1:9", "f1"): (">=", 0.65),
    ("rating", "held-out", "rmse_expected"): ("<=", 0.88),
    ("rating", "held-out", "wasserstein_normalised"): ("<=", 0.03),
    ("ranking", "recall@20", "kendall_tau"): (">=", 0.8),
}
COLUMNS = ("section", "setting", "metric", "value", "source")


@dataclass
class Split:
    """train: the calibration data (same catalog, popularity counted on the training rows);
    test: the held-out rows, user indices as in ``train``; timed: whether the held-out rows
    are each user's latest (False: a log without times, held out by a seeded random draw)."""

    train: Dataset
    test: Interactions
    timed: bool = True

    @property
    def holdout_kind(self) -> str:
        """How the held-out rows were chosen, in words (:func:`holdout_kind`)."""
        return holdout_kind(self.timed)


def holdout_kind(timed: bool) -> str:
    """How a split chose its held-out rows, in words, for reports.

    >>> holdout_kind(False)
    'a seeded random draw per user (the log has no timestamps)'
    """
    return (
        "each user's latest interactions"
        if timed
        else "a seeded random draw per user (the log has no timestamps)"
    )


def temporal_split(data: Dataset, holdout: float = 0.2, seed: int = 0) -> Split:
    """Per user, the latest ``floor(holdout * n)`` interactions (by timestamp, then item) are
    held out; users with fewer than ``1 / holdout`` interactions keep all of theirs. A log
    without timestamps has no latest: that many are drawn at random per user (``seed``; see
    :meth:`~simrec.data.dataset.Interactions.latest`)."""
    if not 0 < holdout < 1:
        raise ConfigError(f"fidelity holdout: expected a share in (0, 1), got {holdout!r}")
    log = data.interactions
    train_rows, test_rows = log.latest(holdout, seed)
    if test_rows.size == 0:
        raise ConfigError(
            f"fidelity: no user has {math.ceil(1 / holdout)} interactions, so nothing is held "
            f"out (holdout {holdout})"
        )
    train = data.with_log(log.take(train_rows), f"{data.source} (training split)")
    return Split(train, log.take(test_rows), log.timed)
