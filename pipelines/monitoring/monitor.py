"""Monitor one scored day: compute everything, write the report, then the three tables.

For a day of ``scored_transactions`` (scored by one model version):

1. the version's baseline (built and stored at its first monitoring run);
2. the day's profiles, one pass over its transactions (at the Delta version it was scored
   from) and one over its scores, against the baseline's bins;
3. the drift metrics with their bands and limits, and which columns have drifted given the
   earlier days in ``monitor_drift``;
4. realized performance from the day's labels, recomputed only when the labels' fingerprint
   differs from the one stored with the figures;
5. the verdict and the report (logged to MLflow under the version's training run);
6. ``monitor_drift``, ``monitor_performance`` and ``monitor_verdicts``, each replacing this
   day's rows of this version in one commit, the verdict last.

Everything that can fail on bad input (a day not scored, a version without a baseline)
fails in steps 1-2, before anything is written.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.clock import as_utc
from pipelines.config import Settings
from pipelines.errors import NoDataError, SchemaError
from pipelines.monitoring.baseline import (
    Baseline,
    build_baseline,
    fitted_rows_for,
    read_baseline,
    save_baseline,
)
from pipelines.monitoring.drift import DayProfiles, MetricRow, day_profiles, drift_metrics, mark_drifted
from pipelines.monitoring.labels import labelled_rows, labels_fingerprints, read_labels
from pipelines.monitoring.performance import Figure, performance_cells, realized_performance
from pipelines.monitoring.report import write_report
from pipelines.monitoring.tables import DRIFT_SCHEMA, PERFORMANCE_SCHEMA, VERDICT_SCHEMA
from pipelines.monitoring.verdict import Verdict, verdict_of
from pipelines.portable.pyfunc import load_registered
from pipelines.registry import resolve_model, version_tags
from pipelines.schema import TXN_DATE
from pipelines.tables import is_delta_table, read_version, replace_model_days, sql_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredDay:
    """What ``scored_transactions`` holds for a day: who scored it, from which data, when."""

    day: date
    model_name: str
    model_version: str
    source_table_version: int
    scored_at: datetime
    rows: int
    threshold: float  # at the real balance, as in the scored rows


@dataclass(frozen=True)
class DayResult:
    day: date
    model_version: str
    rows: int
    verdict: Verdict
    performance_recomputed: bool
    report: str | None


def scored_days(spark: SparkSession, settings: Settings, days: list[date]) -> dict[date, ScoredDay]:
    """Who scored each of ``days``, in one query.

    :raises NoDataError: a day is not in ``scored_transactions`` (nothing is written).
    :raises SchemaError: a day holds the scores of more than one model version.
    """
    path = settings.tables.scored_path
    if not is_delta_table(spark, path):
        raise NoDataError(f"there is no scored_transactions table at {path}: run score first; nothing was written")
    rows = (
        spark.read.format("delta").load(path).filter(F.col(TXN_DATE).isin(*days))
        .groupBy(TXN_DATE, "model_name", "model_version")
        .agg(F.count(F.lit(1)).alias("rows"), F.max("source_table_version").alias("source_table_version"),
             F.max("scored_at").alias("scored_at"), F.max("threshold").alias("threshold"))
        .collect()
    )
    found: dict[date, ScoredDay] = {}
    for row in rows:
        day = row[TXN_DATE]
        if day in found:
            raise SchemaError(f"{path} holds scores of more than one model version on {day} "
                              f"({found[day].model_version}, {row['model_version']}); rescore the day")
        found[day] = ScoredDay(day, row["model_name"], row["model_version"], row["source_table_version"],
                               row["scored_at"], row["rows"], row["threshold"])
    missing = [day for day in days if day not in found]
    if missing:
        raise NoDataError(f"{', '.join(day.isoformat() for day in missing)} not scored in {path}: run "
                          f"score for {'it' if len(missing) == 1 else 'them'} first; nothing was written")
    return found


def baseline_for(spark: SparkSession, settings: Settings, model_name: str, model_version: str) -> Baseline:
    """The version's stored baseline, or (first monitoring run) one built from its fitted rows and stored.

    :raises ModelNotFoundError: the registry has no such version, or it carries no lineage.
    :raises NoDataError: its training rows cannot be read at the pinned version any more.
    :raises ModelNotPortableError: it has no portable form to score its fitted rows with.
    """
    path = settings.tables.path(settings.tables.baselines)
    stored = read_baseline(spark, path, model_name, model_version)
    if stored is not None:
        return stored
    ref = resolve_model(settings.mlflow, f"models:/{model_name}/{model_version}")
    fitted = fitted_rows_for(ref, version_tags(settings.mlflow, ref))
    portable = load_registered(model_name, model_version)
    log.info("monitor: building the baseline of %s from %s at version %d (%s)", ref.uri, fitted.table_path,
             fitted.table_version, ", ".join(d.isoformat() for d in fitted.days) if fitted.days else "every day")
    baseline = build_baseline(spark, ref, fitted, portable, bins=settings.monitor.bins,
                              psi_bins=settings.monitor.psi_bins)
    save_baseline(spark, path, baseline, datetime.now().astimezone())
    return baseline


def _drift_history(spark: SparkSession, settings: Settings, scored: ScoredDay) -> dict[date, set[str]]:
    """The columns out of band on each of the version's monitored days before this one."""
    path = settings.tables.path(settings.tables.drift)
    if not is_delta_table(spark, path) or settings.monitor.window_days < 2:
        return {}
    rows = (
        spark.read.format("delta").load(path)
        .filter((F.col("model_name") == scored.model_name) & (F.col("model_version") == scored.model_version)
                & (F.col(TXN_DATE) < F.expr(sql_date(scored.day))))
        .groupBy(TXN_DATE)
        .agg(F.collect_set(F.when(F.col("out_of_band"), F.col("column"))).alias("columns"))
        .orderBy(F.col(TXN_DATE).desc()).limit(settings.monitor.window_days - 1)
        .collect()
    )
    return {row[TXN_DATE]: set(row["columns"]) for row in rows}


@dataclass(frozen=True)
class Performance:
    figures: list[Figure]
    labelled_rows: int
    frauds: int
    fingerprint: str | None
    recomputed: bool


def _performance(spark: SparkSession, settings: Settings, scored: ScoredDay, scored_rows: DataFrame) -> Performance:
    """The day's realized figures: those stored, if its labels are the ones they were measured
    on; else measured again. One pass over the day's scores and labels either way."""
    transactions = spark.read.format("delta").load(settings.tables.transactions_path)
    labels = read_labels(spark, settings.tables.path(settings.tables.labels))
    labelled = labelled_rows(transactions.filter(F.col(TXN_DATE) == F.expr(sql_date(scored.day))), labels)
    cells = performance_cells(scored_rows, labelled)
    if cells.fingerprint is None:
        return Performance([], 0, 0, None, recomputed=False)
    stored = _stored_performance(spark, settings, scored)
    if stored and stored[0]["labels_fingerprint"] == cells.fingerprint:
        figures = [Figure(row["metric"], row["value"], row["lower"], row["upper"], row["limit_low"],
                          row["limit_high"], row["status"]) for row in stored]
        return Performance(figures, cells.rows, cells.frauds, cells.fingerprint, recomputed=False)
    figures = realized_performance(cells, normal_weight=settings.train.normal_weight, monitor=settings.monitor,
                                   limits=settings.promote)
    return Performance(figures, cells.rows, cells.frauds, cells.fingerprint, recomputed=True)


def _stored_performance(spark: SparkSession, settings: Settings, scored: ScoredDay) -> list:
    path = settings.tables.path(settings.tables.performance)
    if not is_delta_table(spark, path):
        return []
    return (spark.read.format("delta").load(path)
            .filter((F.col(TXN_DATE) == F.expr(sql_date(scored.day))) & (F.col("model_name") == scored.model_name)
                    & (F.col("model_version") == scored.model_version))
            .collect())


def monitor_day(spark: SparkSession, settings: Settings, scored: ScoredDay, *, computed_at: datetime) -> DayResult:
    """Monitor one scored day (see the module docstring); return its verdict."""
    baseline = baseline_for(spark, settings, scored.model_name, scored.model_version)
    transactions_day = read_version(spark, settings.tables.transactions_path, scored.source_table_version).filter(
        F.col(TXN_DATE) == F.expr(sql_date(scored.day)))
    scored_rows = spark.read.format("delta").load(settings.tables.scored_path).filter(
        F.col(TXN_DATE) == F.expr(sql_date(scored.day)))
    profiles = day_profiles(transactions_day, scored_rows, baseline)
    monitor = settings.monitor
    rows = mark_drifted(drift_metrics(baseline, profiles, monitor), _drift_history(spark, settings, scored),
                        drift_days=monitor.drift_days, window_days=monitor.window_days)
    performance = _performance(spark, settings, scored, scored_rows)
    verdict = verdict_of(rows, performance.figures, drift_days=monitor.drift_days,
                         window_days=monitor.window_days, confidence=monitor.confidence)
    drift_frame = _drift_frame(spark, scored, rows, computed_at)
    performance_frame = _performance_frame(spark, scored, performance, computed_at)
    report = _report(spark, settings, scored, baseline, profiles, verdict, drift_frame, performance_frame)
    keys = {"days": [scored.day], "model_name": scored.model_name, "model_version": scored.model_version,
            "job": "monitor"}
    replace_model_days(drift_frame, settings.tables.path(settings.tables.drift), **keys)
    if performance.recomputed:
        replace_model_days(performance_frame, settings.tables.path(settings.tables.performance), **keys)
    verdict_row = spark.createDataFrame([(
        scored.day, scored.model_name, scored.model_version, verdict.verdict, verdict.reasons,
        verdict.drifted_columns, verdict.out_of_band_columns, scored.rows, performance.labelled_rows,
        as_utc(scored.scored_at), report, as_utc(computed_at),
    )], VERDICT_SCHEMA)
    replace_model_days(verdict_row, settings.tables.path(settings.tables.verdicts), **keys)
    return DayResult(scored.day, scored.model_version, scored.rows, verdict, performance.recomputed, report)


def _drift_frame(spark: SparkSession, scored: ScoredDay, rows: list[MetricRow], computed_at: datetime) -> DataFrame:
    return spark.createDataFrame([(
        scored.day, scored.model_name, scored.model_version, row.column, row.kind, row.metric, _number(row.value),
        _number(row.baseline), _number(row.band), _number(row.limit), row.out_of_band, row.drifted, scored.rows,
        as_utc(scored.scored_at), as_utc(computed_at),
    ) for row in rows], DRIFT_SCHEMA)


def _performance_frame(spark: SparkSession, scored: ScoredDay, performance: Performance,
                       computed_at: datetime) -> DataFrame:
    return spark.createDataFrame([(
        scored.day, scored.model_name, scored.model_version, figure.metric, _number(figure.value),
        _number(figure.lower), _number(figure.upper), _number(figure.limit_low), _number(figure.limit_high),
        figure.status, performance.labelled_rows, performance.frauds, performance.fingerprint, as_utc(computed_at),
    ) for figure in performance.figures], PERFORMANCE_SCHEMA)


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


# --- The report ----------------------------------------------------------------------------------


def _report(spark: SparkSession, settings: Settings, scored: ScoredDay, baseline: Baseline, profiles: DayProfiles,
            verdict: Verdict, drift_today: DataFrame, performance_today: DataFrame) -> str:
    """Write the day's report next to the tables and log it to MLflow under the version's
    training run (``monitoring/<day>/``); return where it was written."""
    first_day = scored.day - timedelta(days=settings.monitor.report_days - 1)
    drift = _history(spark, settings.tables.path(settings.tables.drift), scored, first_day, drift_today)
    performance = _history(spark, settings.tables.path(settings.tables.performance), scored, first_day,
                           performance_today)
    root = settings.tables.path(settings.tables.reports)
    local = "://" not in root or root.startswith("file:")
    folder = Path(root.removeprefix("file:")) if local else Path(tempfile.mkdtemp(prefix="fraud-report-"))
    files = write_report(
        folder, day=scored.day, model_name=scored.model_name, model_version=scored.model_version,
        verdict=verdict.verdict, reasons=verdict.reasons, drift=drift, performance=performance,
        score_edges=baseline.score.edges, baseline_score_counts=baseline.score.counts,
        day_score_counts=profiles.score.counts, threshold=scored.threshold,
    )
    ref = resolve_model(settings.mlflow, f"models:/{scored.model_name}/{scored.model_version}")
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri, registry_uri=settings.mlflow.registry_uri)
    for file in [files.html, *files.pictures]:
        client.log_artifact(ref.run_id, str(file), artifact_path=f"monitoring/{scored.day.isoformat()}")
    return str(files.html) if local else f"runs:/{ref.run_id}/monitoring/{scored.day.isoformat()}/{files.html.name}"


def _history(spark: SparkSession, path: str, scored: ScoredDay, first_day: date, today: DataFrame) -> pd.DataFrame:
    """The version's rows of a monitoring table from ``first_day`` to the day before, with today's."""
    frames = [today]
    if is_delta_table(spark, path):
        frames.insert(0, spark.read.format("delta").load(path).filter(
            (F.col("model_name") == scored.model_name) & (F.col("model_version") == scored.model_version)
            & (F.col(TXN_DATE) >= F.expr(sql_date(first_day))) & (F.col(TXN_DATE) < F.expr(sql_date(scored.day)))))
    combined = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return combined.toPandas()


# --- Catch-up: which days need monitoring --------------------------------------------------------


def stale_days(spark: SparkSession, settings: Settings) -> dict[date, str]:
    """Every scored day whose verdict is missing or out of date, and why: never monitored,
    scored again (another version, or newer scores) since its verdict, or labels changed since
    its performance was measured. Reads the tables, writes nothing."""
    scored_path = settings.tables.scored_path
    if not is_delta_table(spark, scored_path):
        return {}
    scored = {row[TXN_DATE]: row for row in (
        spark.read.format("delta").load(scored_path).groupBy(TXN_DATE)
        .agg(F.max("model_version").alias("model_version"), F.max("scored_at").alias("scored_at")).collect())}
    verdicts = _per_day(spark, settings.tables.path(settings.tables.verdicts), "scored_at")
    stored = _per_day(spark, settings.tables.path(settings.tables.performance), "labels_fingerprint")
    transactions = spark.read.format("delta").load(settings.tables.transactions_path)
    labels = read_labels(spark, settings.tables.path(settings.tables.labels))
    scored_ids = spark.read.format("delta").load(scored_path).select("transaction_id")
    current = {row[TXN_DATE]: row["labels_fingerprint"] for row in labels_fingerprints(
        labelled_rows(transactions, labels).join(scored_ids, "transaction_id", "left_semi")).collect()}
    stale = {}
    for day, row in sorted(scored.items()):
        verdict = verdicts.get((day, row["model_version"]))
        if verdict is None:
            stale[day] = f"never monitored with version {row['model_version']}"
        elif verdict < row["scored_at"]:
            stale[day] = "scored again since its verdict"
        elif current.get(day) and stored.get((day, row["model_version"])) != current[day]:
            stale[day] = "its labels changed since its performance was measured"
    return stale


def _per_day(spark: SparkSession, path: str, column: str) -> dict[tuple[date, str], object]:
    if not is_delta_table(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).groupBy(TXN_DATE, "model_version").agg(F.max(column).alias(column))
    return {(row[TXN_DATE], row["model_version"]): row[column] for row in rows.collect()}
