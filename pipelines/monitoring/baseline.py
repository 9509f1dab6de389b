"""The baseline of a model version: the profile of the rows it was fitted on, stored once.

The rows are those its lineage names (``source.table_path`` at ``source.table_version``, the
days of ``fitted.days``), read at that pinned Delta version, so the baseline is what the
version saw even after later ingests. Each feature gets fine bins at its quantiles and their
counts; the version's own score (``fraud_probability`` at the real balance, exactly as the
nightly ``score`` writes it) gets the same, plus the share of rows it flags. The score comes
from the version's portable form, which reproduces Spark's probabilities within 1e-9 (the
release rule), without loading the Spark pipeline.

Stored in ``monitor_baselines`` (one row per column, keyed by model name and version), so
monitoring never reads the training data again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import reduce

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from pipelines.core.clock import as_utc
from pipelines.core.errors import ModelNotFoundError, NoDataError
from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import append_rows, is_delta_table, read_version
from pipelines.lifecycle.promotion import FittedRows, fitted_rows_of
from pipelines.model.portable.model import PortableModel
from pipelines.model.ref import ModelRef
from pipelines.monitoring.profile import Profile, coarse_groups, distribution_metrics
from pipelines.monitoring.spark_profiles import profiles_by, quantile_cuts
from pipelines.monitoring.tables import BASELINE_SCHEMA, SCORE_COLUMN

log = logging.getLogger(__name__)

ALERT_COLUMN = "is_fraud"


@dataclass(frozen=True)
class Baseline:
    """A version's profile: every feature's and its score's, over their own bins."""

    model_name: str
    model_version: str
    source_table_path: str
    source_table_version: int
    fitted_days: tuple[date, ...] | None
    features: dict[str, Profile]
    score: Profile
    alert_rate: float
    groups: dict[str, np.ndarray]  # each column's fine bin -> coarse bin
    # Per column and metric, the largest distance of one fitted day from the other fitted days:
    # how far days stray from each other in the training data itself (empty with one day).
    day_spread: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.score.rows


def fitted_rows_for(ref: ModelRef, tags: dict[str, str]) -> FittedRows:
    """The rows ``ref`` was fitted on, from its lineage tags.

    :raises ModelNotFoundError: the version carries no lineage (not registered by ``train``).
    """
    try:
        return fitted_rows_of(tags)
    except (KeyError, ValueError) as exc:
        raise ModelNotFoundError(
            f"{ref.uri} has no baseline and none can be built: its registry tags do not name the rows it "
            f"was fitted on (source.table_path, source.table_version, fitted.days; missing or bad: {exc}); "
            f"it was not registered by this project's train job") from exc


def build_baseline(
    spark: SparkSession, ref: ModelRef, fitted: FittedRows, portable: PortableModel, *, bins: int, psi_bins: int
) -> Baseline:
    """Profile the rows ``ref`` was fitted on: features and score, two passes over them.

    :raises NoDataError: the pinned version of the table cannot be read any more (vacuumed or
        moved), or holds none of the fitted days.
    """
    feature_cols = list(portable.feature_cols)
    rows = _fitted_rows(spark, ref, fitted, feature_cols)
    scored = _with_scores(rows, portable)
    columns = [*feature_cols, SCORE_COLUMN]
    edges = quantile_cuts(scored, columns, bins)
    edges[ALERT_COLUMN] = np.array([0.5])
    per_day = profiles_by(scored, edges, by=TXN_DATE)
    if not per_day:
        raise NoDataError(f"{ref.uri} has no baseline and none can be built: {fitted.table_path} at version "
                          f"{fitted.table_version} holds no rows on its fitted days {fitted.days}")
    measured = {column: reduce(Profile.merged, [day[column] for day in per_day.values()]) for column in edges}
    groups = {column: coarse_groups(measured[column].counts, psi_bins) for column in columns}
    return Baseline(
        model_name=ref.name, model_version=ref.version, source_table_path=fitted.table_path,
        source_table_version=fitted.table_version, fitted_days=fitted.days,
        features={column: measured[column] for column in feature_cols}, score=measured[SCORE_COLUMN],
        alert_rate=measured[ALERT_COLUMN].mean, groups=groups,
        day_spread=day_spread(measured, list(per_day.values()), groups),
    )


def day_spread(pooled: dict[str, Profile], days: list[dict[str, Profile]],
               groups: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per column and metric, the largest distance of one fitted day from all the others (for the
    score, the alert rate's too): the day-to-day variation of the training data, which a new day
    is as entitled to as sampling noise. Empty with fewer than two days."""
    if len(days) < 2:
        return {}
    spread: dict[str, dict[str, float]] = {}
    for column, column_groups in groups.items():
        values: dict[str, float] = {}
        for day in days:
            others = pooled[column].counts - day[column].counts
            if day[column].values == 0 or others.sum() <= 0:
                continue
            for metric, value in distribution_metrics(pooled[column], day[column].counts, column_groups,
                                                      against=others).items():
                values[metric] = max(values.get(metric, 0.0), float(value[0]))
            if column == SCORE_COLUMN:
                alerts, rest = day[ALERT_COLUMN], pooled[ALERT_COLUMN].values - day[ALERT_COLUMN].values
                if rest > 0:
                    gap = abs(alerts.mean - (pooled[ALERT_COLUMN].total - alerts.total) / rest)
                    values["alert_rate"] = max(values.get("alert_rate", 0.0), gap)
        spread[column] = values
    return spread


def _fitted_rows(spark: SparkSession, ref: ModelRef, fitted: FittedRows, feature_cols: list[str]) -> DataFrame:
    try:
        rows = read_version(spark, fitted.table_path, fitted.table_version)
        rows.schema  # noqa: B018 - resolves the version now, so a missing one fails here
    except Exception as exc:  # any failure to read the pinned version is the same problem
        raise NoDataError(
            f"{ref.uri} has no baseline and none can be built: its training rows ({fitted.table_path} at "
            f"version {fitted.table_version}) cannot be read: {str(exc).splitlines()[0][:300]}") from exc
    if fitted.days is not None:
        rows = rows.filter(F.col(TXN_DATE).isin(*fitted.days))
    # As doubles: the payments amount is an exact decimal, its counts and flags integers.
    return rows.select(TXN_DATE, *(F.col(column).cast("double").alias(column) for column in feature_cols))


def _with_scores(rows: DataFrame, portable: PortableModel) -> DataFrame:
    """``rows`` with the version's ``fraud_probability`` and ``is_fraud`` (as 0/1), scored by the
    portable form over whole Arrow batches."""
    features = list(portable.feature_cols)

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            predicted = portable.predict(batch[features])
            yield batch.assign(**{SCORE_COLUMN: predicted["fraud_probability"].to_numpy(),
                                  ALERT_COLUMN: predicted["is_fraud"].to_numpy().astype(float)})

    schema = StructType([*rows.schema.fields, StructField(SCORE_COLUMN, DoubleType()),
                         StructField(ALERT_COLUMN, DoubleType())])
    return rows.mapInPandas(score_batches, schema)


# --- Stored in monitor_baselines ----------------------------------------------------------------


def baseline_rows(baseline: Baseline, created_at: datetime) -> list[tuple]:
    """The baseline as rows of ``monitor_baselines`` (one per column)."""
    days = ",".join(day.isoformat() for day in baseline.fitted_days) if baseline.fitted_days else None
    rows = []
    for column, profile in [*baseline.features.items(), (SCORE_COLUMN, baseline.score)]:
        kind = "score" if column == SCORE_COLUMN else "input"
        rows.append((
            baseline.model_name, baseline.model_version, column, kind, baseline.source_table_path,
            baseline.source_table_version, days, profile.rows, profile.null_share, profile.mean, profile.std,
            profile.minimum, profile.maximum, profile.edges.tolist(), profile.counts.tolist(),
            baseline.groups[column].tolist(), baseline.alert_rate if kind == "score" else None,
            baseline.day_spread.get(column, {}), as_utc(created_at),
        ))
    return rows


def save_baseline(spark: SparkSession, path: str, baseline: Baseline, created_at: datetime) -> None:
    """Append the baseline to ``monitor_baselines`` (created on first use), in one commit."""
    frame = spark.createDataFrame(baseline_rows(baseline, created_at), BASELINE_SCHEMA)
    append_rows(frame, path)


def read_baseline(spark: SparkSession, path: str, model_name: str, model_version: str) -> Baseline | None:
    """The stored baseline of a version, or None if it has none yet."""
    if not is_delta_table(spark, path):
        return None
    rows = (spark.read.format("delta").load(path)
            .filter((F.col("model_name") == model_name) & (F.col("model_version") == model_version))
            .collect())
    if not rows:
        return None
    # Two first runs at once may both have stored one: the earlier is the baseline.
    first_created = min(row["created_at"] for row in rows)
    rows = [row for row in rows if row["created_at"] == first_created]
    profiles_by_column, groups, spread = {}, {}, {}
    for row in rows:
        counts = np.asarray(row["counts"], dtype=float)
        nulls = round(row["null_share"] * row["rows"])
        values = row["rows"] - nulls
        mean, std = row["mean"], row["std"]
        total = mean * values if values else 0.0
        total_sq = (std * std * (values - 1) + total * total / values) if values > 1 else total * total
        profiles_by_column[row["column"]] = Profile(
            edges=np.asarray(row["edges"], dtype=float), counts=counts, rows=row["rows"], nulls=nulls,
            total=total, total_sq=total_sq, minimum=row["min"], maximum=row["max"])
        groups[row["column"]] = np.asarray(row["psi_groups"], dtype=int)
        spread[row["column"]] = dict(row["day_spread"] or {})
    first = rows[0]
    score_row = next(row for row in rows if row["column"] == SCORE_COLUMN)
    return Baseline(
        model_name=model_name, model_version=model_version, source_table_path=first["source_table_path"],
        source_table_version=first["source_table_version"],
        fitted_days=(tuple(date.fromisoformat(day) for day in first["fitted_days"].split(","))
                     if first["fitted_days"] else None),
        features={column: profile for column, profile in profiles_by_column.items() if column != SCORE_COLUMN},
        score=profiles_by_column[SCORE_COLUMN], alert_rate=score_row["alert_rate"], groups=groups,
        day_spread=spread,
    )
