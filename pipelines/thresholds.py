"""How a decision threshold is chosen on validation scores: the ``[train.threshold]`` policy.

Apart from :mod:`pipelines.evaluation` (which needs Spark) so that the settings can be read
where there is no Spark: the online scoring service reads the same ``conf/`` files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.evaluation import ScoreCurve


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the decision threshold is chosen on validation scores (at the real class balance).

    - ``max_f1``: the threshold with the highest F1;
    - ``target_precision``: the lowest threshold whose precision reaches ``target_precision``
      (the most recall at that precision), else the one with the highest precision;
    - ``min_cost``: the lowest expected cost ``cost_missed_fraud * FN + cost_false_alarm * FP``.
    """

    name: str = "max_f1"
    target_precision: float = 0.9
    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 1.0

    NAMES = ("max_f1", "target_precision", "min_cost")

    def check(self) -> None:
        if self.name not in self.NAMES:
            raise ConfigError(f"unknown threshold policy {self.name!r}; known: {list(self.NAMES)}")
        if not 0 < self.target_precision <= 1:
            raise ConfigError(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.cost_missed_fraud < 0 or self.cost_false_alarm < 0:
            raise ConfigError("threshold costs must not be negative")

    def choose(self, curve: ScoreCurve) -> float:
        """The threshold this policy picks on ``curve`` (one of the curve's distinct scores)."""
        self.check()
        if self.name == "max_f1":
            best = int(np.argmax(curve.f1))
        elif self.name == "target_precision":
            reaching = np.flatnonzero(curve.precision >= self.target_precision)
            best = int(reaching[-1]) if reaching.size else int(np.argmax(curve.precision))
        else:
            missed = curve.positives - curve.true_positives
            cost = self.cost_missed_fraud * missed + self.cost_false_alarm * curve.false_positives
            best = int(np.argmin(cost))
        return float(curve.thresholds[best])
