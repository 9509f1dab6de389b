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

import dataclasses
import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.clock import as_utc
from pipelines.core.config import Settings
from pipelines.core.errors import NoDataError, SchemaError
from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import is_delta_table, read_version, replace_model_days, sql_date
from pipelines.model.inputs import model_inputs
from pipelines.model.portable.pyfunc import load_registered
from pipelines.model.registry import resolve_model, version_tags
from pipelines.monitoring.baseline import (
    Baseline,
    build_baseline,
    fitted_rows_for,
    read_baseline,
    save_baseline,
)
from pipelines.monitoring.drift import DayProfiles, MetricRow, day_profiles, drift_metrics, mark_drifted
from pipelines.monitoring.labels import labelled_rows, labels_fingerprints, read_labels
from pipelines.monitoring.performance import (
    Cells,
    Figure,
    day_card_precision,
    performance_cells,
    realized_performance,
)
from pipelines.monitoring.report import write_report
from pipelines.monitoring.skew import day_skew, read_echo, with_skew
from pipelines.monitoring.tables import DRIFT_SCHEMA, PERFORMANCE_SCHEMA, VERDICT_SCHEMA
from pipelines.monitoring.verdict import Verdict, verdict_of

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


def baseline_for(spark: SparkSession, settings: Settings, model_name: str, model_version: str, *,
                 created_at: datetime) -> Baseline:
    """The version's stored baseline, or (first monitoring run) one built from its fitted rows and stored
    (``created_at`` is when).

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
    save_baseline(spark, path, baseline, created_at)
    return baseline


# --- What earlier runs wrote ---------------------------------------------------------------------

# Drift rows are read back this far: the k-of-n rule counts the last monitored days, whatever
# the gaps between them.
DRIFT_HISTORY_DAYS = 366


@dataclass(frozen=True)
class History:
    """The version's rows from earlier runs: its drift before the day, its performance over the
    report's days (the day included: the figures stored for it). One read of each table."""

    drift: pd.DataFrame
    performance: pd.DataFrame

    def out_of_band(self, window_days: int) -> dict[date, set[str]]:
        """The columns out of band on each of the last ``window_days - 1`` monitored days."""
        if self.drift.empty or window_days < 2:
            return {}
        days = sorted(set(self.drift[TXN_DATE]))[-(window_days - 1):]
        recent = self.drift[self.drift[TXN_DATE].isin(days)]
        return {day: set(recent.loc[(recent[TXN_DATE] == day) & recent["out_of_band"], "column"]) for day in days}

    def stored_figures(self, day: date) -> tuple[str | None, list[Figure]]:
        """The labels' fingerprint and the figures stored for ``day`` (None, [] if none)."""
        rows = self.performance[self.performance[TXN_DATE] == day]
        if rows.empty:
            return None, []
        figures = [Figure(row.metric, _float(row.value), _float(row.lower), _float(row.upper),
                          _float(row.limit_low), _float(row.limit_high), row.status) for row in rows.itertuples()]
        return rows["labels_fingerprint"].iloc[0], figures


def read_history(spark: SparkSession, settings: Settings, scored: ScoredDay) -> History:
    report_start = scored.day - timedelta(days=settings.monitor.report_days - 1)
    drift = _version_rows(spark, settings.tables.path(settings.tables.drift), DRIFT_SCHEMA, scored,
                          first=scored.day - timedelta(days=DRIFT_HISTORY_DAYS), last=scored.day - timedelta(days=1))
    performance = _version_rows(spark, settings.tables.path(settings.tables.performance), PERFORMANCE_SCHEMA,
                                scored, first=report_start, last=scored.day)
    return History(drift, performance)


def _version_rows(spark: SparkSession, path: str, schema: str, scored: ScoredDay, *, first: date,
                  last: date) -> pd.DataFrame:
    """The rows of the scoring version from ``first`` to ``last`` (both included), as pandas."""
    if not is_delta_table(spark, path):
        return pd.DataFrame(columns=_columns(schema))
    return (spark.read.format("delta").load(path)
            .filter((F.col("model_name") == scored.model_name) & (F.col("model_version") == scored.model_version)
                    & F.col(TXN_DATE).between(F.expr(sql_date(first)), F.expr(sql_date(last))))
            .toPandas())


def _columns(schema: str) -> list[str]:
    return [field.split()[0] for field in schema.split(", ")]


def _float(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


@dataclass(frozen=True)
class Performance:
    figures: list[Figure]
    labelled_rows: int
    frauds: int
    fingerprint: str | None
    recomputed: bool


def day_cells(spark: SparkSession, settings: Settings, scored: ScoredDay, scored_rows: DataFrame) -> Cells:
    """The day's scores joined with their labels, counted per cell (one pass)."""
    inputs = model_inputs(settings)
    transactions = spark.read.format("delta").load(inputs.path(settings))
    labels = read_labels(spark, settings.tables.path(settings.tables.labels))
    day_rows = transactions.filter(F.col(TXN_DATE) == F.expr(sql_date(scored.day)))
    labelled = labelled_rows(day_rows, labels, label_col=inputs.label_col, amount_col=inputs.amount_col)
    cells = performance_cells(scored_rows, labelled)
    if inputs.card_col is None or cells.fingerprint is None:
        return cells
    return dataclasses.replace(cells, card_precision=day_card_precision(
        scored_rows, labelled, day_rows, card_col=inputs.card_col, k=settings.train.card_precision_k))


def _performance(settings: Settings, scored: ScoredDay, cells: Cells, history: History) -> Performance:
    """The day's realized figures: those stored, if its labels are the ones they were measured
    on; else measured again."""
    if cells.fingerprint is None:
        return Performance([], 0, 0, None, recomputed=False)
    fingerprint, stored = history.stored_figures(scored.day)
    if stored and fingerprint == cells.fingerprint:
        return Performance(stored, cells.rows, cells.frauds, cells.fingerprint, recomputed=False)
    figures = realized_performance(cells, normal_weight=settings.train.normal_weight, monitor=settings.monitor,
                                   limits=settings.promote, card_precision_k=settings.train.card_precision_k)
    return Performance(figures, cells.rows, cells.frauds, cells.fingerprint, recomputed=True)


def monitor_day(spark: SparkSession, settings: Settings, scored: ScoredDay, *, computed_at: datetime) -> DayResult:
    """Monitor one scored day (see the module docstring); return its verdict."""
    baseline = baseline_for(spark, settings, scored.model_name, scored.model_version, created_at=computed_at)
    transactions_day = read_version(spark, model_inputs(settings).path(settings), scored.source_table_version).filter(
        F.col(TXN_DATE) == F.expr(sql_date(scored.day)))
    scored_rows = spark.read.format("delta").load(settings.tables.scored_path).filter(
        F.col(TXN_DATE) == F.expr(sql_date(scored.day)))
    # Three independent reads, run at once: most of a small day's time is each Spark job's own
    # planning and compiling, which overlaps on two cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        profiles_read = pool.submit(day_profiles, transactions_day, scored_rows, baseline)
        cells_read = pool.submit(day_cells, spark, settings, scored, scored_rows)
        history_read = pool.submit(read_history, spark, settings, scored)
        profiles, cells, history = profiles_read.result(), cells_read.result(), history_read.result()
    monitor = settings.monitor
    rows = mark_drifted(drift_metrics(baseline, profiles, monitor), history.out_of_band(monitor.window_days),
                        drift_days=monitor.drift_days, window_days=monitor.window_days)
    performance = _performance(settings, scored, cells, history)
    verdict = verdict_of(rows, performance.figures, drift_days=monitor.drift_days,
                         window_days=monitor.window_days, confidence=monitor.confidence)
    inputs = model_inputs(settings)
    if inputs.feature_set is not None and settings.online.echo_dir:
        echoed = read_echo(settings.online.echo_dir, scored.day, inputs.feature_set)
        skew = day_skew(spark, echoed, transactions_day, list(inputs.feature_cols))
        log.info("monitor: %s: %d sampled online answers compared with the batch features: %s", scored.day,
                 skew.compared, skew.reason or "no difference")
        verdict = with_skew(verdict, skew)
    drift_today = _drift_rows(scored, rows, computed_at)
    performance_today = _performance_rows(scored, performance, computed_at)
    keys = {"days": [scored.day], "model_name": scored.model_name, "model_version": scored.model_version,
            "job": "monitor"}
    # The report and the two tables at once; the verdict, which says the day is done, last.
    with ThreadPoolExecutor(max_workers=3) as pool:
        report_written = pool.submit(_report, settings, scored, baseline, profiles, verdict, history, drift_today,
                                     performance_today)
        writes = [pool.submit(replace_model_days, spark.createDataFrame(drift_today, DRIFT_SCHEMA),
                              settings.tables.path(settings.tables.drift), **keys)]
        if performance.recomputed:
            writes.append(pool.submit(replace_model_days, spark.createDataFrame(performance_today, PERFORMANCE_SCHEMA),
                                      settings.tables.path(settings.tables.performance), **keys))
        report = report_written.result()
        for write in writes:
            write.result()
    verdict_row = spark.createDataFrame([(
        scored.day, scored.model_name, scored.model_version, verdict.verdict, verdict.reasons,
        verdict.drifted_columns, verdict.out_of_band_columns, scored.rows, performance.labelled_rows,
        as_utc(scored.scored_at), report, as_utc(computed_at),
    )], VERDICT_SCHEMA)
    replace_model_days(verdict_row, settings.tables.path(settings.tables.verdicts), **keys)
    return DayResult(scored.day, scored.model_version, scored.rows, verdict, performance.recomputed, report)


def _drift_rows(scored: ScoredDay, rows: list[MetricRow], computed_at: datetime) -> list[tuple]:
    return [(
        scored.day, scored.model_name, scored.model_version, row.column, row.kind, row.metric, _number(row.value),
        _number(row.baseline), _number(row.band), _number(row.limit), row.out_of_band, row.drifted, scored.rows,
        as_utc(scored.scored_at), as_utc(computed_at),
    ) for row in rows]


def _performance_rows(scored: ScoredDay, performance: Performance, computed_at: datetime) -> list[tuple]:
    return [(
        scored.day, scored.model_name, scored.model_version, figure.metric, _number(figure.value),
        _number(figure.lower), _number(figure.upper), _number(figure.limit_low), _number(figure.limit_high),
        figure.status, performance.labelled_rows, performance.frauds, performance.fingerprint, as_utc(computed_at),
    ) for figure in performance.figures]


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


# --- The report ----------------------------------------------------------------------------------


def _report(settings: Settings, scored: ScoredDay, baseline: Baseline, profiles: DayProfiles, verdict: Verdict,
            history: History, drift_today: list[tuple], performance_today: list[tuple]) -> str:
    """Write the day's report next to the tables and log it to MLflow under the version's
    training run (``monitoring/<day>/``); return where it was written."""
    first_day = scored.day - timedelta(days=settings.monitor.report_days - 1)
    drift = _with_today(history.drift[history.drift[TXN_DATE] >= first_day], drift_today, DRIFT_SCHEMA)
    performance = _with_today(history.performance[history.performance[TXN_DATE] < scored.day], performance_today,
                              PERFORMANCE_SCHEMA)
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
    if not local:
        shutil.rmtree(folder, ignore_errors=True)
        return f"runs:/{ref.run_id}/monitoring/{scored.day.isoformat()}/{files.html.name}"
    return str(files.html)


def _with_today(earlier: pd.DataFrame, today: list[tuple], schema: str) -> pd.DataFrame:
    current = pd.DataFrame(today, columns=_columns(schema))
    return current if earlier.empty else pd.concat([earlier, current], ignore_index=True)


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
    inputs = model_inputs(settings)
    transactions = spark.read.format("delta").load(inputs.path(settings))
    labels = read_labels(spark, settings.tables.path(settings.tables.labels))
    scored_ids = spark.read.format("delta").load(scored_path).select("transaction_id")
    current = {row[TXN_DATE]: row["labels_fingerprint"] for row in labels_fingerprints(
        labelled_rows(transactions, labels, label_col=inputs.label_col, amount_col=inputs.amount_col)
        .join(scored_ids, "transaction_id", "left_semi")).collect()}
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
