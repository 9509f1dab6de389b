"""score: score one day (or a range of days) of ``transactions`` into ``scored_transactions``.

    ./spark-submit.sh score --date 2013-09-02
    ./spark-submit.sh score --start-date 2013-09-01 --end-date 2013-09-02 --model-uri models:/fraud_detector/3

Loads the registered PipelineModel (default ``models:/fraud_detector@champion``) and its
decision threshold, reads each day's partition at one Delta version of ``transactions``, checks
that the model can take every row, and replaces those days in ``scored_transactions`` in one
commit. A date that is not a real calendar date is refused before Spark starts; a day without
transactions, a row the model cannot take, or a missing model stops the job before anything
is written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from pyspark.ml import Transformer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.cli import calendar_date, job_parser, log, run_main
from pipelines.config import Settings, load_settings
from pipelines.errors import InvalidArgumentError, NoDataError
from pipelines.registry import configure_mlflow, load_model, reaching_mlflow, resolve_model
from pipelines.schema import TXN_DATE
from pipelines.score_checks import check_model_input
from pipelines.scoring import ModelRef, score
from pipelines.session import get_spark
from pipelines.tables import current_version, days_present, read_version, replace_days, rows_per_day


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    days: list[date],
    model_ref: ModelRef,
    scored_at: datetime,
    model: Transformer | None = None,
) -> dict[date, int]:
    """Score ``days`` and replace them in ``scored_transactions`` in one Delta commit; return
    the rows written per day.

    Every day is checked for transactions, and every row for values the model can take,
    before the model is loaded (unless given). A range
    is one commit, so a job that fails or is killed part-way leaves every day as it was.
    """
    source_path = settings.tables.transactions_path
    version = current_version(spark, source_path)
    transactions = read_version(spark, source_path, version)
    missing = sorted(set(days) - days_present(transactions, days[0], days[-1]))
    if missing:
        raise NoDataError(
            f"no transactions on {', '.join(d.isoformat() for d in missing)} in {source_path} "
            f"(version {version}); nothing was scored"
        )
    day_rows = transactions.filter(F.col(TXN_DATE).isin(*days))
    days_text = days[0].isoformat() if len(days) == 1 else f"{len(days)} days {days[0]}..{days[-1]}"
    check_model_input(day_rows, source=f"{source_path} version {version}, {days_text}")
    if model is None:
        model = load_model(model_ref)
    scored = score(day_rows, model, model_ref=model_ref, source_table_version=version, scored_at=scored_at)
    commit = replace_days(scored, settings.tables.scored_path, days=days)
    written = rows_per_day(read_version(spark, settings.tables.scored_path, commit.version), days)
    for day in days:
        log.info(
            "score: %s: %d rows with %s (threshold %.4f) -> %s version %d",
            day, written[day], model_ref.uri, model_ref.threshold, settings.tables.scored_path, commit.version,
        )
    return written


def days_to_score(args, today: date) -> list[date]:
    """The days named on the command line: --date, --start-date/--end-date, or yesterday."""
    if args.date and (args.start_date or args.end_date):
        raise InvalidArgumentError("give either --date or --start-date/--end-date, not both")
    if bool(args.start_date) != bool(args.end_date):
        raise InvalidArgumentError("--start-date and --end-date go together")
    if args.start_date:
        if args.end_date < args.start_date:
            raise InvalidArgumentError(f"--end-date {args.end_date} is before --start-date {args.start_date}")
        return [args.start_date + timedelta(days=n) for n in range((args.end_date - args.start_date).days + 1)]
    return [args.date or today - timedelta(days=1)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date, help="the day to score, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--start-date", type=calendar_date, help="first day of a range to score")
    parser.add_argument("--end-date", type=calendar_date, help="last day of a range to score (inclusive)")
    parser.add_argument("--model-uri", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the champion)")
    args = parser.parse_args(argv)
    now = datetime.now(timezone.utc)
    days = days_to_score(args, now.date())
    settings = load_settings(args.env)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        model_ref = resolve_model(settings.mlflow, args.model_uri)
        spark = get_spark(settings.spark)
        run(spark, settings, days=days, model_ref=model_ref, scored_at=now)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
