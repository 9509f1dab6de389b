"""score: score one day (or a range of days) of ``transactions`` (payments: ``features``) into ``scored_transactions``.

    ./spark-submit.sh score --date 2013-09-02
    ./spark-submit.sh score --start-date 2013-09-01 --end-date 2013-09-02 --model-uri models:/fraud_detector/3
    ./spark-submit.sh score --catch-up            # yesterday, and every day with rows newer than its scores
    ./spark-submit.sh score --list-stale          # which days those are, and why; writes nothing
    ./spark-submit.sh score --shadow --date 2013-09-02   # the challenger, into shadow_scored_transactions

Loads the registered version (default ``models:/fraud_detector@champion``) and its decision
threshold: its portable form, or its Spark ML PipelineModel with ``[score] engine = "spark"``
(or when the version has no portable form), reads each day's partition at one Delta version of ``transactions``, checks
that the model can take every row, and replaces those days in ``scored_transactions`` in one
commit. A date that is not a real calendar date is refused before Spark starts; a day without
transactions, a row the model cannot take, or a missing model stops the job before anything
is written.

The payments profile scores the rows of ``features`` instead (their ``source_table_version``
is that table's version, which records the ``transactions`` version it was computed from),
and refuses, with nothing written, rows computed with feature definitions other than the
ones the version was trained on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from pyspark.ml import Transformer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.core.cli import calendar_date, job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError, NoDataError
from pipelines.core.session import get_spark, starting_spark
from pipelines.data.catalog import publish
from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import (
    current_version,
    enable_change_feed,
    read_version,
    replace_days,
    replace_model_days,
    rows_per_day,
)
from pipelines.model.inputs import FeatureSetMismatchError, check_feature_set, model_inputs, model_rows
from pipelines.scoring.catch_up import StaleDays, days_with_rows, find_stale_days, score_commit_metadata
from pipelines.scoring.checks import check_model_input

# MLflow, XGBoost and the scorer take about 2 s to import: main() imports them while Spark
# starts (pipelines.core.session.starting_spark), run() where it needs them.
if TYPE_CHECKING:
    from pipelines.model.portable.model import PortableModel
    from pipelines.model.ref import ModelRef


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    days: list[date],
    model_ref: ModelRef,
    scored_at: datetime,
    model: Transformer | PortableModel | None = None,
    shadow: bool = False,
    source_version: int | None = None,
    catch_up: bool = False,
) -> dict[date, int]:
    """Score ``days`` and replace them in ``scored_transactions`` in one Delta commit; return
    the rows written per day.

    Every day is checked for transactions, and every row for values the model can take,
    before the model is loaded (unless given; otherwise as ``[score] engine`` says). A range
    is one commit, so a job that fails or is killed part-way leaves every day as it was.

    :param shadow: write ``shadow_scored_transactions`` instead, replacing only this model
        version's rows of ``days`` (other versions' scores of those days stay).
    :param source_version: the version of ``transactions`` to read (default: the newest).
    :param catch_up: the commit vouches that every change up to ``source_version`` is scored
        (see pipelines/scoring/catch_up.py); only a catch-up run may say so.
    """
    from pipelines.model.portable.model import PortableModel
    from pipelines.model.registry import load_scorer
    from pipelines.scoring.batch import score

    started = time.monotonic()
    days = sorted(set(days))
    inputs = model_inputs(settings)
    source_path = inputs.path(settings)
    version = current_version(spark, source_path) if source_version is None else source_version
    transactions = read_version(spark, source_path, version)
    day_rows = model_rows(transactions.filter(F.col(TXN_DATE).isin(*days)), inputs)
    source = f"{source_path} version {version}, {_days_text(days)}"
    log.info("score: checking the rows of %s", source)
    if inputs.feature_set and not model_ref.feature_set:
        raise FeatureSetMismatchError(
            f"{model_ref.uri} records no feature set: it was not trained on this profile's features "
            f"({inputs.feature_set}); nothing was written")
    check_feature_set(day_rows, model_ref.feature_set, source=source)
    present = check_model_input(day_rows, source=source, feature_cols=inputs.feature_cols)
    missing = sorted(set(days) - set(present))
    if missing:
        raise NoDataError(
            f"no transactions on {', '.join(d.isoformat() for d in missing)} in {source_path} "
            f"(version {version}); nothing was scored"
        )
    if model is None:
        model = load_scorer(model_ref, settings.score.engine)
    engine = "portable" if isinstance(model, PortableModel) else "spark"
    log.info("score: scoring and writing %s with %s (%s engine), %.1f s in", _days_text(days), model_ref.uri,
             engine, time.monotonic() - started)
    scored = score(day_rows, model, model_ref=model_ref, source_table_version=version, scored_at=scored_at)
    metadata = score_commit_metadata(source_table_version=version, catch_up=catch_up)
    if shadow:
        target = settings.tables.shadow_path
        commit = replace_model_days(scored, target, days=days, model_name=model_ref.name,
                                    model_version=model_ref.version, metadata=metadata)
    else:
        target = settings.tables.scored_path
        commit = replace_days(scored, target, days=days, metadata=metadata)
    if len(days) == 1:
        written = {days[0]: commit.rows}
    else:
        written_rows = read_version(spark, target, commit.version)
        if shadow:
            written_rows = written_rows.filter(
                (F.col("model_name") == model_ref.name) & (F.col("model_version") == model_ref.version))
        written = rows_per_day(written_rows, days)
    log.info("score: wrote %d rows in %.1f s", sum(written.values()), time.monotonic() - started)
    for day in days:
        log.info(
            "score: %s: %d rows with %s (threshold %.4f) -> %s version %d",
            day, written[day], model_ref.uri, model_ref.threshold, target, commit.version,
        )
    return written


def _days_text(days: Sequence[date]) -> str:
    return days[0].isoformat() if len(days) == 1 else f"{len(days)} days {days[0]}..{days[-1]}"


def catch_up(
    spark: SparkSession,
    settings: Settings,
    *,
    model_ref: ModelRef,
    scored_at: datetime,
    named_days: Sequence[date] = (),
    yesterday: date | None = None,
    model: Transformer | PortableModel | None = None,
) -> dict[date, int]:
    """Score ``named_days``, ``yesterday`` if it has transactions, and every stale day, in one
    commit; return the rows written per day ({} when there was nothing to score).

    A named day without transactions stops the run (nothing written), as in :func:`run`;
    ``yesterday`` (the default day of a nightly run) without transactions is left out with a
    warning, so that a run with nothing new to score succeeds and writes nothing.
    Turns on the change data feed of ``transactions`` first if it is off (see
    pipelines/scoring/catch_up.py).
    """
    source_path = model_inputs(settings).path(settings)
    current_version(spark, source_path)  # no table: NoDataError before anything else
    if enable_change_feed(spark, source_path, job="score"):
        log.warning("score: turned on the change data feed of %s; changes before it cannot be read, "
                    "so days scored before it are rescored once", source_path)
    version = current_version(spark, source_path)
    stale = find_stale_days(spark, transactions_path=source_path, scored_path=settings.tables.scored_path,
                            version=version)
    transactions = read_version(spark, source_path, version)
    optional = {day.day for day in stale.days} | ({yesterday} if yesterday else set())
    present = days_with_rows(transactions, optional)
    for day in stale.days:
        if day.day in present:
            log.info("score: %s is stale: %s", day.day, day.reason)
        else:
            log.warning("score: %s is stale (%s) but has no transactions left at version %d: not scored",
                        day.day, day.reason, version)
    if yesterday and yesterday not in present and yesterday not in named_days:
        log.warning("score: no transactions on %s (yesterday, UTC) in %s version %d: not scored",
                    yesterday, source_path, version)
    days = sorted(set(named_days) | (optional & present))
    if not days:
        log.info("score: nothing to score: no stale day since version %d of %s", stale.first_version, source_path)
        return {}
    return run(spark, settings, days=days, model_ref=model_ref, scored_at=scored_at, model=model,
               source_version=version, catch_up=True)


def list_stale(spark: SparkSession, settings: Settings) -> StaleDays:
    """The stale days against the newest version of ``transactions`` (payments: ``features``);
    reads only, writes nothing."""
    source_path = model_inputs(settings).path(settings)
    return find_stale_days(spark, transactions_path=source_path, scored_path=settings.tables.scored_path,
                           version=current_version(spark, source_path))


def stale_report(stale: StaleDays, transactions_path: str) -> str:
    """What ``--list-stale`` prints: one line per stale day and why, or that there is none."""
    looked_at = (f"changes of versions {stale.first_version}..{stale.version}"
                 if stale.first_version <= stale.version else "no version newer than the last check")
    lines = [f"{transactions_path} at version {stale.version} ({looked_at}): {len(stale.days)} stale day(s)"]
    lines += [f"{day.day}  {day.reason}" for day in stale.days]
    return "\n".join(lines)


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


def check_modes(args) -> None:
    """Refuse options that do not go together, before Spark starts."""
    named = args.date or args.start_date or args.end_date
    if args.list_stale and (named or args.catch_up or args.shadow or args.model_uri):
        raise InvalidArgumentError("--list-stale takes no other option: it lists, and scores nothing")
    if args.shadow and args.catch_up:
        raise InvalidArgumentError("--shadow scores named days (or yesterday); it does not catch up")


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date, help="the day to score, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--start-date", type=calendar_date, help="first day of a range to score")
    parser.add_argument("--end-date", type=calendar_date, help="last day of a range to score (inclusive)")
    parser.add_argument("--model-uri", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the champion; "
                                            "with --shadow, the challenger)")
    parser.add_argument("--catch-up", action="store_true",
                        help="also score every day whose transactions changed after it was scored, in the same "
                             "commit; yesterday is scored only if it has transactions")
    parser.add_argument("--list-stale", action="store_true",
                        help="print the days whose transactions changed after they were scored, and why; "
                             "writes nothing")
    parser.add_argument("--shadow", action="store_true",
                        help="write shadow_scored_transactions ([tables] shadow), never scored_transactions: "
                             "a challenger's scores beside the champion's")
    args = parser.parse_args(argv)
    check_modes(args)
    now = utc_now()
    days = days_to_score(args, now.date())
    named = bool(args.date or args.start_date)
    settings = load_settings(args.env)
    if args.list_stale:
        spark = get_spark(settings.spark)
        print(stale_report(list_stale(spark, settings), model_inputs(settings).path(settings)))
        return 0
    model_uri = args.model_uri
    if args.shadow and model_uri is None:
        model_uri = f"models:/{settings.mlflow.model_name}@{settings.mlflow.challenger_alias}"
    with starting_spark(settings.spark) as spark_started:
        from pipelines.model.registry import configure_mlflow, reaching_mlflow, resolve_model

        with reaching_mlflow(settings.mlflow):
            configure_mlflow(settings.mlflow)
            model_ref = resolve_model(settings.mlflow, model_uri)
            spark = spark_started.result()
            if args.catch_up:
                catch_up(spark, settings, model_ref=model_ref, scored_at=now, named_days=days if named else (),
                         yesterday=None if named else days[0])
            else:
                run(spark, settings, days=days, model_ref=model_ref, scored_at=now, shadow=args.shadow)
            publish(spark, settings)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
