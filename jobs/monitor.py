"""monitor: check scored days against their model version's baseline and labels; say ok, warn or alert.

    ./spark-submit.sh monitor --date 2013-09-02
    ./spark-submit.sh monitor --start-date 2013-09-01 --end-date 2013-09-10
    ./spark-submit.sh monitor --catch-up     # every scored day not yet monitored, rescored, or relabelled
    ./spark-submit.sh monitor                # yesterday (UTC)

For each day: input drift per feature and score drift against the version's baseline (built
at the version's first monitoring run), realized performance once labels exist, a verdict
with its reasons, written to monitor_drift, monitor_performance and monitor_verdicts, and a
report (HTML and PNG) under the lake's monitor_reports/ and in MLflow under the version's run.

Exit status: 0 when every day is ok or warn; 6 when a day's verdict is alert (an orchestrator
branches on it: see deploy/); 2 for bad input (a bad date, a day not scored, a version without
a baseline that cannot be built), with nothing written; 3 when MLflow cannot be reached.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date, datetime

from pyspark.sql import SparkSession

from jobs.score import days_to_score
from pipelines.core.cli import calendar_date, job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.model.registry import configure_mlflow, reaching_mlflow
from pipelines.monitoring.monitor import DayResult, monitor_day, scored_days, stale_days
from pipelines.monitoring.tables import ALERT, ALERT_EXIT_CODE


def run(spark: SparkSession, settings: Settings, *, days: list[date], computed_at: datetime) -> list[DayResult]:
    """Monitor ``days`` in order (each day's k-of-n count sees the days before it).

    Every day is checked to be scored before the first is monitored: a missing one stops the
    run with nothing written.
    """
    days = sorted(set(days))
    found = scored_days(spark, settings, days)
    results = []
    for day in days:
        result = monitor_day(spark, settings, found[day], computed_at=computed_at)
        log.info("monitor: %s (version %s, %d rows): %s%s", day, result.model_version, result.rows,
                 result.verdict.verdict.upper(),
                 "".join(f"\n  - {reason}" for reason in result.verdict.reasons))
        results.append(result)
    return results


def catch_up(spark: SparkSession, settings: Settings, *, named_days: Sequence[date],
             computed_at: datetime) -> list[DayResult]:
    """Monitor ``named_days`` and every stale day: every scored day without an up-to-date
    verdict, yesterday's new scores among them."""
    stale = stale_days(spark, settings)
    for day, reason in stale.items():
        log.info("monitor: %s: %s", day, reason)
    days = set(stale) | set(named_days)
    if not days:
        log.info("monitor: nothing to monitor: every scored day has an up-to-date verdict")
        return []
    return run(spark, settings, days=sorted(days), computed_at=computed_at)


def summary(results: Sequence[DayResult]) -> str:
    """One line per day, for the terminal."""
    return "\n".join(
        f"{result.day}  version {result.model_version}  {result.rows:>9,} rows  {result.verdict.verdict:<5}  "
        f"{'; '.join(result.verdict.reasons) or '-'}" for result in results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date, help="the day to monitor, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--start-date", type=calendar_date, help="first day of a range to monitor")
    parser.add_argument("--end-date", type=calendar_date, help="last day of a range to monitor (inclusive)")
    parser.add_argument("--catch-up", action="store_true",
                        help="also monitor every scored day without an up-to-date verdict (never monitored, "
                             "rescored, or relabelled); without --date, only those")
    args = parser.parse_args(argv)
    now = utc_now()
    days = days_to_score(args, now.date())
    named = bool(args.date or args.start_date)
    settings = load_settings(args.env)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        spark = get_spark(settings.spark)
        if args.catch_up:
            results = catch_up(spark, settings, named_days=days if named else (), computed_at=now)
        else:
            results = run(spark, settings, days=days, computed_at=now)
        publish(spark, settings)
    if results:
        print(summary(results))
    return ALERT_EXIT_CODE if any(result.verdict.verdict == ALERT for result in results) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
