"""retrain: when a day's monitoring verdict is alert, train a new version and put it through the promotion gate.

    ./spark-submit.sh retrain                      # the newest day whose verdict is alert
    ./spark-submit.sh retrain --date 2013-09-02    # that day's verdict must be alert

Reads the day's verdict from ``monitor_verdicts``; refuses unless it is 'alert'. Then, unless an
earlier retraining is still in its cool-down (``[monitor] retrain_cool_down_days``, see
pipelines/monitoring/retrain.py), runs ``train`` and ``promote`` in this process, one after the
other on one Spark session: the new version becomes the champion only if the gate passes it.
Every trigger is recorded as one row of ``retrain_triggers`` (retrained with the gate's decision,
skipped_cool_down with until when, or failed with what failed), written once, after the work.

Exit 0 when the new version was promoted or the cool-down skipped the retraining (recorded), 4
when the gate refused it (the champion is unchanged; recorded), 2 when the day's verdict is not
alert or there is none (nothing recorded) or on bad arguments or config, 3 when MLflow cannot be
reached, 5 when train would not release the model; any other failure exits with its own code,
the failure recorded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime

from pyspark.sql import SparkSession

from jobs import promote, train
from pipelines.core.cli import calendar_date, git_commit, job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import PROJECT_ROOT, Settings, load_settings
from pipelines.core.errors import FraudScoringError, PromotionRefusedError
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.tables import append_rows
from pipelines.lifecycle.promotion import PROMOTED, REFUSED
from pipelines.model.registry import alias_holder, configure_mlflow, reaching_mlflow, resolve_model
from pipelines.monitoring.retrain import (
    FAILED,
    RETRAINED,
    RETRAINS_SCHEMA,
    SKIPPED_COOL_DOWN,
    TriggerRecord,
    cool_down_until,
    find_alert,
    read_triggers,
)
from pipelines.training.search import check_train_settings


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    day: date | None,
    triggered_at: datetime,
    commit: str,
    clock: Callable[[], datetime] = utc_now,
) -> TriggerRecord:
    """Retrain for the alert of ``day`` (None: the newest alert) unless in cool-down; record it.

    :param clock: when promote decides and when the trigger finished (tests pass a fixed one).
    :returns: the row recorded in ``retrain_triggers``.
    :raises NotAnAlertError: the day's verdict is not 'alert' (nothing recorded).
    :raises Exception: whatever train or promote raised, after a 'failed' row was recorded.
    """
    tables, registry = settings.tables, settings.mlflow
    alert = find_alert(spark, tables.path(tables.verdicts), model_name=registry.model_name, day=day)
    log.info("retrain: the verdict of %s (version %s) is alert: %s", alert.txn_date, alert.model_version,
             "; ".join(alert.reasons) or "no reasons given")
    champion = alias_holder(registry, registry.champion_alias)
    champion_before = champion.version if champion else None
    triggers_path = tables.path(tables.retrains)
    cool_down = cool_down_until(read_triggers(spark, triggers_path, model_name=registry.model_name),
                                cool_down_days=settings.monitor.retrain_cool_down_days, now=triggered_at)
    if cool_down is not None:
        record = TriggerRecord(
            triggered_at=triggered_at, alert=alert, action=SKIPPED_COOL_DOWN, champion_before=champion_before,
            champion_after=champion_before, finished_at=clock(), cool_down_until=cool_down.until,
            detail=cool_down.describe())
        append_rows(spark.createDataFrame([record.as_row()], RETRAINS_SCHEMA), triggers_path)
        log.info("retrain: skipped, %s (recorded in %s)", record.detail, triggers_path)
        return record

    trained_version: str | None = None
    try:
        # Inside, an unreachable tracking server is already the named error (exit 3) when recorded.
        with reaching_mlflow(registry):
            trained_version = train.run(spark, settings, commit=commit).model_version
            # The version just trained, by number: the challenger alias could move under this job.
            candidate = resolve_model(registry, f"models:/{registry.model_name}/{trained_version}")
            decision, _ = promote.run(spark, settings, candidate=candidate, decided_at=clock())
    except Exception as failure:
        step = "train" if trained_version is None else "promote"
        record = TriggerRecord(
            triggered_at=triggered_at, alert=alert, action=FAILED, champion_before=champion_before,
            # After a failure inside promote the champion may or may not have moved.
            champion_after=champion_before if step == "train" else None, finished_at=clock(),
            trained_version=trained_version,
            promote_exit_code=None if step == "train" else _exit_code_of(failure),
            detail=f"{step} failed: {type(failure).__name__}: {failure}")
        _record_failure(spark, record, triggers_path)
        raise

    record = TriggerRecord(
        triggered_at=triggered_at, alert=alert, action=RETRAINED, champion_before=champion_before,
        champion_after=trained_version if decision == PROMOTED else champion_before, finished_at=clock(),
        trained_version=trained_version, promote_decision=decision,
        promote_exit_code=PromotionRefusedError.exit_code if decision == REFUSED else 0,
        detail=f"version {trained_version} {decision} by the gate")
    append_rows(spark.createDataFrame([record.as_row()], RETRAINS_SCHEMA), triggers_path)
    log.info("retrain: version %s %s (champion %s -> %s; recorded in %s)", trained_version, decision,
             champion_before, record.champion_after, triggers_path)
    return record


def _exit_code_of(failure: Exception) -> int:
    """The code the job exits with for ``failure``: a named error's own, 1 for anything else."""
    return failure.exit_code if isinstance(failure, FraudScoringError) else 1


def _record_failure(spark: SparkSession, record: TriggerRecord, triggers_path: str) -> None:
    # The failure being raised is what the job must exit with; a second one while recording it
    # (Spark itself failing, say) is logged, not raised in its place.
    try:
        append_rows(spark.createDataFrame([record.as_row()], RETRAINS_SCHEMA), triggers_path)
    except Exception:
        log.exception("retrain: could not record the failure in %s", triggers_path)
    else:
        log.error("retrain: %s (recorded in %s)", record.detail, triggers_path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date,
                        help="the day whose alert starts the retraining, YYYY-MM-DD "
                             "(default: the newest day whose verdict is alert)")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    check_train_settings(settings.train)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        spark = get_spark(settings.spark)
        record = run(spark, settings, day=args.date, triggered_at=utc_now(), commit=git_commit(str(PROJECT_ROOT)))
        publish(spark, settings)
    if record.promote_decision == REFUSED:
        raise PromotionRefusedError(
            f"the gate refused version {record.trained_version}; the champion is unchanged (decision recorded "
            f"in {settings.tables.promotions_path} and {settings.tables.path(settings.tables.retrains)})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
