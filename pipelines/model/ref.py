"""Which registered model version scores: what the registry resolves and every stage after it
passes along (training tags it, the gate judges it, scoring and monitoring record it)."""

from __future__ import annotations

from dataclasses import dataclass

# The version's tag naming the feature set (pipelines/features) it was trained on: payments only.
FEATURE_SET_TAG = "feature_set"


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version scores, and the decision threshold that travels with it."""

    name: str
    version: str
    run_id: str
    threshold: float
    # How many real normal transactions one normal training row stood for (1: none dropped).
    normal_weight: float = 1.0
    # The feature set its rows must have been computed with; None: rows carry none (creditcard).
    feature_set: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"
