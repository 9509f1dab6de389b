"""Metrics of a fraud score: AUC-PR, AUC-ROC, and the confusion matrix at a threshold.

Spark aggregates the scored rows into one row per distinct score (:func:`score_counts`), so
only that small table reaches the driver; the curves and metrics are then computed exactly
from it with numpy. ``auc_pr`` is average precision, the step-wise area that
scikit-learn's ``average_precision_score`` computes (no interpolation between points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

# Scores are rounded to this many decimals before counting, which bounds the table sent to
# the driver to about a million rows whatever the data's size.
SCORE_DECIMALS = 6


def score_counts(
    scored: DataFrame, *, score_col: str, label_col: str, weight_col: str | None = None
) -> DataFrame:
    """One row per distinct score: the (weighted) number of frauds and of normal rows with it."""
    weight = F.col(weight_col).cast("double") if weight_col else F.lit(1.0)
    label = F.col(label_col).cast("int")
    return (
        scored.select(F.round(F.col(score_col), SCORE_DECIMALS).alias("score"), label.alias("label"),
                      weight.alias("weight"))
        .groupBy("score")
        .agg(
            F.sum(F.when(F.col("label") == 1, F.col("weight")).otherwise(0.0)).alias("positives"),
            F.sum(F.when(F.col("label") == 0, F.col("weight")).otherwise(0.0)).alias("negatives"),
        )
    )


@dataclass(frozen=True)
class ScoreCurve:
    """Cumulative counts at each distinct score, highest score first.

    ``true_positives[i]`` and ``false_positives[i]`` count the rows with a score of at least
    ``thresholds[i]``: what a threshold of ``thresholds[i]`` flags as fraud.
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    positives: float
    negatives: float

    @classmethod
    def from_counts(cls, scores, positives, negatives) -> ScoreCurve:
        """Build from per-score counts (any order), e.g. the rows of :func:`score_counts`."""
        # Equal scores are one point of the curve: a threshold cannot split them.
        distinct, index = np.unique(np.asarray(scores, dtype=float), return_inverse=True)
        pos = np.zeros_like(distinct)
        neg = np.zeros_like(distinct)
        np.add.at(pos, index, np.asarray(positives, dtype=float))
        np.add.at(neg, index, np.asarray(negatives, dtype=float))
        pos, neg = pos[::-1], neg[::-1]
        return cls(distinct[::-1], np.cumsum(pos), np.cumsum(neg), float(pos.sum()), float(neg.sum()))

    @classmethod
    def from_frame(cls, counts: DataFrame) -> ScoreCurve:
        """Collect a :func:`score_counts` frame (one row per distinct score) and build the curve."""
        rows = counts.collect()
        return cls.from_counts(
            [row["score"] for row in rows], [row["positives"] for row in rows],
            [row["negatives"] for row in rows],
        )

    @property
    def precision(self) -> np.ndarray:
        flagged = self.true_positives + self.false_positives
        return np.divide(self.true_positives, flagged, out=np.ones_like(flagged), where=flagged > 0)

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / self.positives if self.positives else np.zeros_like(self.true_positives)

    @property
    def false_positive_rate(self) -> np.ndarray:
        return self.false_positives / self.negatives if self.negatives else np.zeros_like(self.false_positives)


def average_precision(curve: ScoreCurve) -> float:
    """Area under the precision-recall curve as average precision: sum of (R_k - R_k-1) * P_k."""
    recall = np.concatenate([[0.0], curve.recall])
    return float(np.sum(np.diff(recall) * curve.precision))


def roc_auc(curve: ScoreCurve) -> float:
    """Area under the ROC curve (trapezoids, so tied scores count one half)."""
    fpr = np.concatenate([[0.0], curve.false_positive_rate])
    tpr = np.concatenate([[0.0], curve.recall])
    return float(np.trapezoid(tpr, fpr))


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts (weighted, if the rows were) of a score cut at ``threshold``: fraud if score >= it."""

    threshold: float
    true_positives: float
    false_positives: float
    false_negatives: float
    true_negatives: float

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        frauds = self.true_positives + self.false_negatives
        return self.true_positives / frauds if frauds else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def confusion_at(curve: ScoreCurve, threshold: float) -> ConfusionMatrix:
    """The confusion matrix when every score >= ``threshold`` is called fraud."""
    flagged = np.searchsorted(-curve.thresholds, -threshold, side="right")
    tp = float(curve.true_positives[flagged - 1]) if flagged else 0.0
    fp = float(curve.false_positives[flagged - 1]) if flagged else 0.0
    return ConfusionMatrix(threshold, tp, fp, curve.positives - tp, curve.negatives - fp)


def max_f1_threshold(curve: ScoreCurve) -> float:
    """The distinct score that, used as the threshold, gives the highest F1."""
    precision, recall = curve.precision, curve.recall
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(curve.thresholds[int(np.argmax(f1))])


def binary_metrics(curve: ScoreCurve, threshold: float, *, prefix: str = "") -> dict[str, float]:
    """The metrics logged for a score at ``threshold``, with the same names for every model."""
    confusion = confusion_at(curve, threshold)
    metrics = {
        "auc_pr": average_precision(curve),
        "auc_roc": roc_auc(curve),
        "precision": confusion.precision,
        "recall": confusion.recall,
        "f1": confusion.f1,
        "true_positives": confusion.true_positives,
        "false_positives": confusion.false_positives,
        "false_negatives": confusion.false_negatives,
        "true_negatives": confusion.true_negatives,
        "frauds": curve.positives,
        "rows": curve.positives + curve.negatives,
    }
    return {f"{prefix}{name}": float(value) for name, value in metrics.items()}
