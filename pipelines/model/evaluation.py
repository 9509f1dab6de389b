"""Metrics of a fraud score: AUC-PR, AUC-ROC, money caught, alert volume, and the threshold.

Spark aggregates the scored rows into one row per distinct score (:func:`score_counts`), so
only that small table reaches the driver; the curves and metrics are then computed exactly
from it with numpy. ``auc_pr`` is average precision, the step-wise area that
scikit-learn's ``average_precision_score`` computes (no interpolation between points).

The real sample keeps every fraud but only one normal transaction in ~58. Where the class
balance matters (alert volume, precision in production, the threshold policies) normal rows
are weighted by ``normal_weight`` to restore it; AUC-PR, precision, recall and F1 are also
reported on the rows as they are, which is what published figures on this data use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

# Re-exported: the policy lives in its own module so that conf/ can be read without Spark.
from pipelines.core.config import ThresholdPolicy
from pipelines.model.card_precision import card_precision_at_k

# Scores are rounded to this many decimals before counting, which bounds the table sent to
# the driver to about a million rows whatever the data's size.
SCORE_DECIMALS = 6


def score_counts(
    scored: DataFrame, *, score_col: str, label_col: str, amount_col: str | None = None
) -> DataFrame:
    """One row per distinct score: how many frauds and normal rows have it, and the frauds' amount."""
    label = F.col(label_col).cast("int")
    amount = F.col(amount_col).cast("double") if amount_col else F.lit(0.0)
    return (
        scored.select(F.round(F.col(score_col), SCORE_DECIMALS).alias("score"), label.alias("label"),
                      amount.alias("amount"))
        .groupBy("score")
        .agg(
            F.sum((F.col("label") == 1).cast("double")).alias("positives"),
            F.sum((F.col("label") == 0).cast("double")).alias("negatives"),
            F.sum(F.when(F.col("label") == 1, F.col("amount")).otherwise(0.0)).alias("fraud_amount"),
        )
    )


@dataclass(frozen=True)
class ScoreCurve:
    """Cumulative counts at each distinct score, highest score first.

    ``true_positives[i]``, ``false_positives[i]`` and ``caught_amount[i]`` count the rows with a
    score of at least ``thresholds[i]``: what a threshold of ``thresholds[i]`` flags as fraud.
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    caught_amount: np.ndarray
    positives: float
    negatives: float
    fraud_amount: float

    @classmethod
    def from_counts(cls, scores, positives, negatives, fraud_amounts=None) -> ScoreCurve:
        """Build from per-score counts (any order), e.g. the rows of :func:`score_counts`."""
        # Equal scores are one point of the curve: a threshold cannot split them.
        distinct, index = np.unique(np.asarray(scores, dtype=float), return_inverse=True)
        amounts = np.zeros(len(index)) if fraud_amounts is None else np.asarray(fraud_amounts, dtype=float)
        sums = np.zeros((3, len(distinct)))
        for row, values in enumerate((positives, negatives, amounts)):
            np.add.at(sums[row], index, np.asarray(values, dtype=float))
        pos, neg, amount = sums[:, ::-1]
        return cls(distinct[::-1], np.cumsum(pos), np.cumsum(neg), np.cumsum(amount),
                   float(pos.sum()), float(neg.sum()), float(amount.sum()))

    @classmethod
    def from_frame(cls, counts: DataFrame) -> ScoreCurve:
        """Collect a :func:`score_counts` frame (one row per distinct score) and build the curve."""
        rows = counts.collect()
        return cls.from_counts(*(
            [row[name] for row in rows] for name in ("score", "positives", "negatives", "fraud_amount")
        ))

    @classmethod
    def combine(cls, curves: list[ScoreCurve]) -> ScoreCurve:
        """One curve of the rows of several (e.g. the validation folds of one search point)."""
        return cls.from_counts(
            np.concatenate([c.thresholds for c in curves]),
            np.concatenate([c.positives_per_score for c in curves]),
            np.concatenate([c.negatives_per_score for c in curves]),
            np.concatenate([np.diff(c.caught_amount, prepend=0.0) for c in curves]),
        )

    @property
    def positives_per_score(self) -> np.ndarray:
        """How many frauds have each score (``thresholds[i]``), undoing the cumulation."""
        return np.diff(self.true_positives, prepend=0.0)

    @property
    def negatives_per_score(self) -> np.ndarray:
        """How many normal rows have each score (``thresholds[i]``)."""
        return np.diff(self.false_positives, prepend=0.0)

    def with_normal_weight(self, weight: float) -> ScoreCurve:
        """The same curve with every normal row counted ``weight`` times (the real balance)."""
        return replace(self, false_positives=self.false_positives * weight, negatives=self.negatives * weight)

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

    @property
    def f1(self) -> np.ndarray:
        total = self.precision + self.recall
        return np.divide(2 * self.precision * self.recall, total, out=np.zeros_like(total), where=total > 0)


def average_precision(curve: ScoreCurve) -> float:
    """Area under the precision-recall curve as average precision: sum of (R_k - R_k-1) * P_k."""
    recall = np.concatenate([[0.0], curve.recall])
    return float(np.sum(np.diff(recall) * curve.precision))


def average_precision_interval(
    curve: ScoreCurve, *, level: float = 0.95, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap confidence interval of :func:`average_precision` (percentile method).

    Frauds and normal rows are resampled separately, each with its own count kept, so every
    resample has the class balance of the rows measured. It is one model's sampling
    uncertainty: with a few hundred frauds it is wide. (Two models scored on the same rows
    move together, so their difference varies less than either interval.) Needs unweighted
    counts (whole rows); the same ``seed`` gives the same interval.
    """
    positives = np.rint(curve.positives_per_score).astype(np.int64)
    negatives = np.rint(curve.negatives_per_score).astype(np.int64)
    frauds, normals = int(positives.sum()), int(negatives.sum())
    if frauds == 0:
        return 0.0, 0.0
    # Precision only matters at the scores frauds have, and there only the normal rows at or
    # above it count: so normals are drawn into the bins between consecutive fraud scores
    # (merged cells of a multinomial are a multinomial: the same distribution, far fewer cells).
    fraud_at = np.flatnonzero(positives)
    bin_of_score = np.searchsorted(fraud_at, np.arange(len(negatives)))
    normal_bins = np.bincount(bin_of_score, weights=negatives, minlength=len(fraud_at) + 1)[:len(fraud_at)]
    rng = np.random.default_rng(seed)
    drawn_frauds = rng.multinomial(frauds, positives[fraud_at] / frauds, size=samples)
    # One more cell holds the normals below the lowest fraud score; it is drawn, then dropped.
    normals_below_every_fraud = normals - int(normal_bins.sum())
    drawn_normals = (
        rng.multinomial(normals, np.append(normal_bins, normals_below_every_fraud) / normals,
                        size=samples)[:, :-1]
        if normals else np.zeros_like(drawn_frauds)
    )
    true_positives = np.cumsum(drawn_frauds, axis=1)
    flagged = true_positives + np.cumsum(drawn_normals, axis=1)
    precision = np.divide(true_positives, flagged, out=np.ones(flagged.shape), where=flagged > 0)
    values = np.sum(drawn_frauds * precision, axis=1) / frauds
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def roc_auc(curve: ScoreCurve) -> float:
    """Area under the ROC curve (trapezoids, so tied scores count one half)."""
    fpr = np.concatenate([[0.0], curve.false_positive_rate])
    tpr = np.concatenate([[0.0], curve.recall])
    return float(np.trapezoid(tpr, fpr))


def recall_at_precision(curve: ScoreCurve, min_precision: float) -> float:
    """The highest recall of any threshold whose precision is at least ``min_precision`` (0 if none)."""
    reachable = curve.precision >= min_precision
    return float(curve.recall[reachable].max()) if reachable.any() else 0.0


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of a score cut at ``threshold``: fraud if score >= it."""

    threshold: float
    true_positives: float
    false_positives: float
    false_negatives: float
    true_negatives: float
    caught_amount: float

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
    flagged = int(np.searchsorted(-curve.thresholds, -threshold, side="right"))
    at = flagged - 1
    tp = float(curve.true_positives[at]) if flagged else 0.0
    fp = float(curve.false_positives[at]) if flagged else 0.0
    amount = float(curve.caught_amount[at]) if flagged else 0.0
    return ConfusionMatrix(threshold, tp, fp, curve.positives - tp, curve.negatives - fp, amount)


def binary_metrics(
    curve: ScoreCurve,
    threshold: float,
    *,
    normal_weight: float = 1.0,
    min_precision: float = 0.9,
    prefix: str = "",
) -> dict[str, float]:
    """The metrics logged for a score at ``threshold``, with the same names for every model.

    :param normal_weight: how many real normal transactions one normal row stands for; used for
        ``alerts_per_100k`` and ``precision_real_balance``.
    """
    confusion = confusion_at(curve, threshold)
    real = confusion_at(curve.with_normal_weight(normal_weight), threshold)
    real_rows = real.true_positives + real.false_positives + real.false_negatives + real.true_negatives
    metrics = {
        "auc_pr": average_precision(curve),
        "auc_roc": roc_auc(curve),
        "precision": confusion.precision,
        "recall": confusion.recall,
        "f1": confusion.f1,
        f"recall_at_precision_{min_precision:g}": recall_at_precision(curve, min_precision),
        "fraud_amount_caught_share": confusion.caught_amount / curve.fraud_amount if curve.fraud_amount else 0.0,
        "precision_real_balance": real.precision,
        "alerts_per_100k": 100_000 * (real.true_positives + real.false_positives) / real_rows if real_rows else 0.0,
        "true_positives": confusion.true_positives,
        "false_positives": confusion.false_positives,
        "false_negatives": confusion.false_negatives,
        "true_negatives": confusion.true_negatives,
        "frauds": curve.positives,
        "rows": curve.positives + curve.negatives,
    }
    return {f"{prefix}{name}": float(value) for name, value in metrics.items()}


def choose_threshold(policy: ThresholdPolicy, curve: ScoreCurve) -> float:
    """The threshold ``policy`` (``[train.threshold]``) picks on ``curve`` (one of the curve's distinct scores)."""
    if policy.name == "max_f1":
        best = int(np.argmax(curve.f1))
    elif policy.name == "target_precision":
        reaching = np.flatnonzero(curve.precision >= policy.target_precision)
        best = int(reaching[-1]) if reaching.size else int(np.argmax(curve.precision))
    else:
        missed = curve.positives - curve.true_positives
        cost = policy.cost_missed_fraud * missed + policy.cost_false_alarm * curve.false_positives
        best = int(np.argmin(cost))
    return float(curve.thresholds[best])


def card_precision_metric(k: int) -> str:
    """Card Precision@k's name as a metric (MLflow, the gate, monitoring): ``card_precision_at_100``."""
    return f"card_precision_at_{k}"


def scored_card_precision(scored: DataFrame, *, day_col: str, card_col: str, score_col: str, label_col: str,
                          k: int) -> float:
    """Card Precision@k (pipelines/model/card_precision.py) of scored rows, the mean over their
    days. Spark reduces them to one row per day and card (the card's highest score and label),
    which is all that comes to the driver."""
    per_card = (scored.groupBy(day_col, card_col)
                .agg(F.max(score_col).alias(score_col), F.max(F.col(label_col)).cast("int").alias(label_col))
                .toPandas())
    return card_precision_at_k(per_card, k=k, day_col=day_col, card_col=card_col, score_col=score_col,
                               label_col=label_col).mean
