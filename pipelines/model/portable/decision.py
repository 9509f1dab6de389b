"""A registered version's decision, on numpy arrays: the same arithmetic as the nightly batch.

The model's score ``p`` is a probability at the training sample's class balance; the
probability reported is ``p / (p + (1 - p) * w)`` at the real balance, and the decision is
``p >= threshold`` on the uncorrected score (see :mod:`pipelines.scoring.batch`, which does the same
on Spark columns, written there with Spark's functions). The threshold's own arithmetic is here
only, and both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The registry tags of a version that hold its decision (read by the batch, checked by the service).
THRESHOLD_TAG = "decision_threshold"
# How many real normal transactions one normal training row stood for (the sample's
# down-sampling): what turns the model's score into a probability at the real class balance.
NORMAL_WEIGHT_TAG = "normal_weight"


def check_normal_weight(normal_weight: float) -> None:
    if not (math.isfinite(normal_weight) and normal_weight > 0):
        raise ValueError(f"normal_weight must be a positive finite number, got {normal_weight!r}")


def real_balance_threshold(threshold: float, normal_weight: float) -> float:
    """A threshold on the sample-balance score, moved to the real balance like the score itself.

    The same arithmetic, in the same order, as the probability's correction: IEEE doubles in
    Python, numpy and the JVM give the same bits. ``normal_weight`` 1 returns ``threshold``.

    Example::

        real_balance_threshold(0.5, 57.79)   # 0.0170...
    """
    check_normal_weight(normal_weight)
    if normal_weight == 1.0:
        return threshold
    return threshold / (threshold + (1.0 - threshold) * normal_weight)


@dataclass(frozen=True)
class Decision:
    """The version's threshold (on the sample-balance score) and its normal weight ``w``."""

    threshold: float
    normal_weight: float = 1.0

    def __post_init__(self) -> None:
        check_normal_weight(self.normal_weight)
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")

    @property
    def real_threshold(self) -> float:
        """The threshold at the real balance: what ``fraud_probability`` is compared with."""
        return real_balance_threshold(self.threshold, self.normal_weight)

    def apply(self, sample_probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fraud_probability at the real balance, is_fraud) for scores at the sample's balance.

        As in the batch, a corrected probability within rounding of the corrected threshold is
        moved (by ~1e-18) to the side its decision is on, so ``is_fraud`` equals
        ``fraud_probability >= threshold`` on every row.
        """
        p = np.asarray(sample_probability, dtype=np.float64)
        decided = p >= self.threshold
        w = self.normal_weight
        if w == 1.0:
            return p.copy(), decided
        corrected = p / (p + (1.0 - p) * w)
        threshold = self.real_threshold
        below = max(0.0, math.nextafter(threshold, -math.inf))
        corrected = np.where(decided, np.maximum(corrected, threshold), np.minimum(corrected, below))
        return corrected, decided

    def to_record(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "normal_weight": self.normal_weight}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Decision:
        return cls(threshold=float(record["threshold"]), normal_weight=float(record["normal_weight"]))
