"""Realized performance of a scored day once its labels exist, each figure with a bootstrap
interval.

Spark joins the day's scores with their labels and counts rows per cell (rounded score,
decision, label) with the frauds' amount (:func:`performance_cells`); only those cells reach
the driver. From them, exactly as the promotion gate measures a version:

- ``auc_pr``: average precision of ``fraud_probability``;
- ``recall``: share of frauds the decision (``is_fraud``) caught;
- ``precision``: share of alerts that were fraud, at the real class balance (normal rows
  weigh ``normal_weight``, as in the gate);
- ``alerts_per_100k``: alerts per 100,000 transactions at the real balance;
- ``fraud_amount_caught_share``: share of the frauds' amount in alerts.

The interval resamples the day's frauds and normal rows separately (each count kept, as the
gate does) ``bootstrap_samples`` times. The limits are the gate's (``[promote]``): a figure
whose whole interval is beyond its limit is an alert, one whose value alone is, a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import MonitorSettings, PromoteSettings
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE
from pipelines.lifecycle.promotion import weighted_average_precision
from pipelines.model.evaluation import SCORE_DECIMALS, card_precision_metric, scored_card_precision
from pipelines.monitoring.labels import fingerprint_text, label_hash
from pipelines.monitoring.tables import ALERT, OK, SCORE_COLUMN, WARN

PERFORMANCE_METRICS = ("auc_pr", "recall", "precision", "alerts_per_100k", "fraud_amount_caught_share")


@dataclass(frozen=True)
class Cells:
    """The labelled rows of a day, counted per (rounded score, decision, label)."""

    scores: np.ndarray
    decisions: np.ndarray  # 1.0 where is_fraud
    labels: np.ndarray
    counts: np.ndarray
    amounts: np.ndarray  # the frauds' amount per cell (0 for normal cells)
    # The labels measured, as pipelines.monitoring.labels.labels_fingerprints gives it (None: no rows).
    fingerprint: str | None = None
    # The day's Card Precision@k where the profile has cards (day_card_precision), else None.
    card_precision: float | None = None

    @property
    def frauds(self) -> int:
        return int(self.counts[self.labels == 1].sum())

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class Figure:
    """One realized metric of a day: value, interval, the gate's limits, and its status."""

    metric: str
    value: float | None
    lower: float | None
    upper: float | None
    limit_low: float | None
    limit_high: float | None
    status: str


def performance_cells(scored_day: DataFrame, labelled: DataFrame) -> Cells:
    """Join the day's scores with their labels (``transaction_id, label, Amount``) and count
    cells, in one pass; the labels' fingerprint comes from the same cells (each cell sums its
    rows' :func:`label_hash`)."""
    rows = scored_day.select(TRANSACTION_ID, SCORE_COLUMN, "is_fraud").join(
        labelled.select(TRANSACTION_ID, "label", "Amount"), TRANSACTION_ID)
    cells = (
        rows.groupBy(F.round(SCORE_COLUMN, SCORE_DECIMALS).alias("score"),
                     F.col("is_fraud").cast("double").alias("decision"),
                     F.col("label").cast("double").alias("label"))
        .agg(F.count(F.lit(1)).alias("count"),
             F.sum(F.when(F.col("label") == 1, F.col("Amount")).otherwise(0.0)).alias("amount"),
             F.sum(label_hash()).alias("hash_sum"))
        .collect()
    )
    column = {name: np.array([row[name] for row in cells], dtype=float)
              for name in ("score", "decision", "label", "count", "amount")}
    fingerprint = None
    if cells:
        frauds = sum(row["count"] for row in cells if row["label"] == 1)
        fingerprint = fingerprint_text(sum(row["count"] for row in cells), frauds,
                                       sum(row["hash_sum"] for row in cells))
    return Cells(scores=column["score"], decisions=column["decision"], labels=column["label"],
                 counts=column["count"], amounts=column["amount"], fingerprint=fingerprint)


def figures(weights: np.ndarray, cells: Cells, normal_weight: float) -> dict[str, np.ndarray]:
    """Every metric for each row of ``weights`` (rows: resamples; columns: how many rows of each cell)."""
    weights = np.atleast_2d(weights)
    fraud, alert = cells.labels, cells.decisions
    caught = weights @ (fraud * alert)
    frauds = weights @ fraud
    false_alarms = weights @ ((1 - fraud) * alert) * normal_weight
    normals = weights @ (1 - fraud) * normal_weight
    amount_share = np.divide(cells.amounts, cells.counts, out=np.zeros_like(cells.amounts), where=cells.counts > 0)
    caught_amount = weights @ (amount_share * alert)
    total_amount = weights @ amount_share

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.full_like(a, np.nan, dtype=float), where=b > 0)

    return {
        "auc_pr": np.where(frauds > 0, weighted_average_precision(cells.scores, fraud, weights), np.nan),
        "recall": ratio(caught, frauds),
        "precision": ratio(caught, caught + false_alarms),
        "alerts_per_100k": ratio(100_000 * (caught + false_alarms), frauds + normals),
        "fraud_amount_caught_share": ratio(caught_amount, total_amount),
    }


def resampled_weights(cells: Cells, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of the cells' counts: frauds and normal rows drawn apart, each total kept."""
    weights = np.zeros((samples, len(cells.counts)))
    for label in (0.0, 1.0):
        cell = np.flatnonzero(cells.labels == label)
        total = int(cells.counts[cell].sum())
        if total:
            weights[:, cell] = rng.multinomial(total, cells.counts[cell] / total, size=samples)
    return weights


def day_card_precision(scored_day: DataFrame, labelled: DataFrame, cards: DataFrame, *, card_col: str,
                       k: int) -> float:
    """The day's Card Precision@k (pipelines/model/card_precision.py) over its labelled rows,
    each card ranked by its highest ``fraud_probability``."""
    rows = (scored_day.select(TRANSACTION_ID, TXN_DATE, SCORE_COLUMN)
            .join(labelled.select(TRANSACTION_ID, "label"), TRANSACTION_ID)
            .join(cards.select(TRANSACTION_ID, card_col), TRANSACTION_ID))
    return scored_card_precision(rows, day_col=TXN_DATE, card_col=card_col, score_col=SCORE_COLUMN,
                                 label_col="label", k=k)


def realized_performance(
    cells: Cells, *, normal_weight: float, monitor: MonitorSettings, limits: PromoteSettings,
    card_precision_k: int = 100,
) -> list[Figure]:
    """Each metric's value, bootstrap interval, the gate's limits and the status.

    Card Precision@k, where measured, has no interval (its unit is the card, not the cell); it
    is ``warn`` below the gate's ``min_card_precision``, never ``alert`` on one day's figure."""
    point = figures(cells.counts, cells, normal_weight)
    rng = np.random.default_rng(monitor.seed)
    drawn: dict[str, list[np.ndarray]] = {metric: [] for metric in PERFORMANCE_METRICS}
    # In chunks, so the resample matrix stays small whatever the number of cells.
    chunk = max(1, min(monitor.bootstrap_samples, 2_000_000 // max(len(cells.counts), 1)))
    for start in range(0, monitor.bootstrap_samples, chunk):
        size = min(chunk, monitor.bootstrap_samples - start)
        for metric, values in figures(resampled_weights(cells, size, rng), cells, normal_weight).items():
            drawn[metric].append(values)
    tail = (1 - monitor.confidence) / 2
    bounds = {
        "auc_pr": (limits.min_auc_pr, None),
        "recall": (limits.min_recall, None),
        "alerts_per_100k": limits.alerts_per_100k,
    }
    result = []
    for metric in PERFORMANCE_METRICS:
        value = float(point[metric][0])
        values = np.concatenate(drawn[metric])
        values = values[~np.isnan(values)]
        if np.isnan(value) or not values.size:
            result.append(Figure(metric, None, None, None, *bounds.get(metric, (None, None)), OK))
            continue
        lower, upper = (float(v) for v in np.quantile(values, [tail, 1 - tail]))
        low, high = bounds.get(metric, (None, None))
        result.append(Figure(metric, value, lower, upper, low, high, _status(value, lower, upper, low, high)))
    if cells.card_precision is not None:
        value, low = cells.card_precision, limits.min_card_precision
        result.append(Figure(card_precision_metric(card_precision_k), value, None, None, low, None,
                             WARN if value < low else OK))
    return result


def _status(value: float, lower: float, upper: float, low: float | None, high: float | None) -> str:
    """'alert' when the whole interval is beyond a limit, 'warn' when only the value is."""
    if (low is not None and upper < low) or (high is not None and lower > high):
        return ALERT
    if (low is not None and value < low) or (high is not None and value > high):
        return WARN
    return OK
