"""features: compute the payments profile's history features into the Delta table ``features``.

    ./spark-submit.sh features --env payments                 # yesterday on the profile's clock (nightly)
    ./spark-submit.sh features --env payments --date 2018-09-30
    ./spark-submit.sh features --env payments --start-date 2018-04-01 --end-date 2018-09-30
    ./spark-submit.sh features --env payments --all           # every day of transactions, from scratch
    ./spark-submit.sh features --env payments --catch-up      # the days missing or stale
    ./spark-submit.sh features --env payments --list-stale    # which days those are, and why; writes nothing

``[features]`` declares them (the Fraud Detection Handbook's 14 by default: a card's count and
mean amount over 1, 7 and 30 days, a terminal's count and fraud share over 1, 7 and 30 days ending
7 days back, weekend and night). Each day is computed from the transactions its windows reach
back to, at one Delta version of ``transactions``, and replaces that day in ``features`` in one
commit; each row records its feature set and what its history held (docs/features.md).

Refused with exit 2 before anything is written: a profile other than ``payments``; a day
without transactions; a day inside the asked days' history without transactions (unless
``--allow-gaps``); days asked for while ``features`` holds other definitions' rows (``--all``
recomputes everything); a date that is not a real calendar date.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.cli import calendar_date, job_parser, log, run_main
from pipelines.core.clock import as_utc, utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError, SchemaError
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.payments import table_columns
from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import (
    DATA_NEUTRAL_OPERATIONS,
    commit_history,
    current_version,
    is_delta_table,
    read_version,
    replace_days,
    replace_table,
)
from pipelines.features.days import (
    FEATURE_SET,
    INPUTS_FINGERPRINT,
    StaleDay,
    check_no_gaps,
    computed_days,
    days_between,
    first_day,
    history_days,
    inputs_fingerprint,
    read_label_history,
    stale_days,
    transactions_per_day,
)
from pipelines.features.definitions import definitions, feature_columns, feature_set_id, history_span_days
from pipelines.features.history import with_features

TRANSACTIONS_VERSION, COMPUTED_AT = "transactions_version", "computed_at"


@dataclass(frozen=True)
class FeatureRun:
    """What one run wrote: the days, their rows, the feature set, the Delta versions read and written."""

    days: tuple[date, ...]
    rows: int
    feature_set: str
    transactions_version: int
    features_version: int | None


def output_columns(settings: Settings) -> list[str]:
    """The ``features`` table's columns: the transaction's own, its features, its bookkeeping."""
    own = [name for name in table_columns(settings.profile) if name not in ("source_file", "ingested_at")]
    return [*own, *feature_columns(settings.features), FEATURE_SET, INPUTS_FINGERPRINT, TRANSACTIONS_VERSION,
            COMPUTED_AT]


def check_profile(settings: Settings) -> None:
    if settings.profile.kind != "payments":
        raise InvalidArgumentError(
            f"features: the {settings.env} environment's [profile] kind is {settings.profile.kind!r}; history "
            f"features are computed for kind = \"payments\" (for example --env payments)")


def _check_one_definition(spark: SparkSession, path: str, feature_set: str, *, everything: bool) -> None:
    """Refuse to add days of one feature set to a table that holds another's (their columns
    may differ). Every commit since the table was last computed whole holds the same set (this
    check), so the newest commit that wrote rows names it in its metadata: no scan of the table
    (an OPTIMIZE, VACUUM or table property change in between writes no rows and is skipped)."""
    if everything or not is_delta_table(spark, path):
        return
    held = next((commit.metadata.get("feature_set") for commit in commit_history(spark, path)
                 if commit.operation not in DATA_NEUTRAL_OPERATIONS), None)
    if held != feature_set:
        raise SchemaError(
            f"features: {path} holds rows computed with other definitions ({held}; now {feature_set}): "
            f"run features --all to compute every day with the current ones")


def run(spark: SparkSession, settings: Settings, *, days: Sequence[date] | None, computed_at: datetime,
        catch_up: bool = False, allow_gaps: bool = False) -> FeatureRun:
    """Compute ``days`` (every day of ``transactions`` when None; with ``catch_up``, the missing
    and stale ones) and replace them in ``features`` in one commit."""
    check_profile(settings)
    started = time.perf_counter()
    source, path = settings.tables.transactions_path, settings.tables.path(settings.tables.features)
    span, zone = history_span_days(settings.features), settings.profile.time_zone
    feature_set = feature_set_id(settings.features, time_zone=zone)
    version = current_version(spark, source)
    transactions = read_version(spark, source, version)
    everything = days is None and not catch_up
    first_ingested = None
    if days and not catch_up:
        # Named days: only their history is read, even for the days' statistics. Where the
        # history's first days hold nothing, the table's first day says whether that is a gap.
        named = sorted(set(days))
        start = history_days(named[0], span)[0]
        per_day = transactions_per_day(transactions.filter(F.col(TXN_DATE).between(F.lit(start), F.lit(named[-1]))))
        if start + timedelta(days=1) not in per_day:
            first_ingested = first_day(transactions)
    else:
        per_day = transactions_per_day(transactions)
    if catch_up:
        stale = _stale(spark, path, per_day, feature_set=feature_set, span_days=span)
        days = sorted({entry.day for entry in stale} | set(days or ()))
        if any(entry.reason == "computed with other definitions" for entry in stale):
            everything = set(days) == set(per_day)
    elif days is None:
        days = sorted(per_day)
    if not days:
        log.info("features: every day of %s is up to date in %s (feature set %s)", source, path, feature_set)
        return FeatureRun((), 0, feature_set, version, None)
    days = sorted(set(days))
    if allow_gaps:
        empty = [day for day in days if day not in per_day]
        if empty:
            check_no_gaps(empty, per_day, 0, transactions=source)
    else:
        check_no_gaps(days, per_day, span, transactions=source, first_ingested=first_ingested)
    _check_one_definition(spark, path, feature_set, everything=everything)

    first, last = history_days(days[0], span)[0], days[-1]
    log.info("features: %d day(s) %s..%s of %s (version %d), from the history %s..%s, feature set %s ...",
             len(days), days[0], days[-1], source, version, first, last, feature_set)
    history = transactions.filter(F.col(TXN_DATE).between(F.lit(first), F.lit(last)))
    labels = read_label_history(spark, settings.tables.path(settings.tables.labels))
    fingerprints = F.create_map(*[value for day in days
                                  for value in (F.lit(day.isoformat()), F.lit(inputs_fingerprint(day, per_day, span)))])
    rows: DataFrame = (
        with_features(history, settings.features, time_zone=zone, label_history=labels)
        .filter(F.col(TXN_DATE).isin(*days))
        .withColumns({
            FEATURE_SET: F.lit(feature_set),
            INPUTS_FINGERPRINT: fingerprints[F.col(TXN_DATE).cast("string")],
            TRANSACTIONS_VERSION: F.lit(version).cast("long"),
            COMPUTED_AT: F.lit(as_utc(computed_at)).cast("timestamp"),
        })
        .select(*output_columns(settings))
    )
    metadata = {"feature_set": feature_set, "definitions": definitions(settings.features, time_zone=zone),
                "transactions_version": version, "days": [day.isoformat() for day in days]}
    if everything:
        commit = replace_table(rows, path, job="features", metadata=metadata)
    else:
        commit = replace_days(rows, path, days=days, metadata=metadata, job="features")
    log.info("features: %d rows for %d day(s) written to %s (version %s); %.1f s", commit.rows, len(days), path,
             commit.version, time.perf_counter() - started)
    return FeatureRun(tuple(days), commit.rows, feature_set, version, commit.version)


def stale_report(stale: Sequence[StaleDay], features_path: str) -> str:
    if not stale:
        return f"every day's features in {features_path} are up to date"
    lines = [f"{len(stale)} day(s) of {features_path} to compute (features --catch-up):"]
    lines += [f"  {entry.day}: {entry.reason}" for entry in stale]
    return "\n".join(lines)


def _stale(spark: SparkSession, path: str, per_day, *, feature_set: str, span_days: int) -> list[StaleDay]:
    """The days of ``per_day`` whose rows in the ``features`` table at ``path`` are missing or stale."""
    computed = computed_days(spark.read.format("delta").load(path)) if is_delta_table(spark, path) else {}
    return stale_days(per_day, computed, feature_set=feature_set, span_days=span_days)


def list_stale(spark: SparkSession, settings: Settings) -> list[StaleDay]:
    check_profile(settings)
    source = settings.tables.transactions_path
    per_day = transactions_per_day(read_version(spark, source, current_version(spark, source)))
    return _stale(spark, settings.tables.path(settings.tables.features), per_day,
                  feature_set=feature_set_id(settings.features, time_zone=settings.profile.time_zone),
                  span_days=history_span_days(settings.features))


def days_asked(args, today: date) -> list[date] | None:
    """The days named on the command line (None: every day, ``--all``); yesterday by default."""
    if args.date and (args.start_date or args.end_date):
        raise InvalidArgumentError("give either --date or --start-date/--end-date, not both")
    if bool(args.start_date) != bool(args.end_date):
        raise InvalidArgumentError("--start-date and --end-date go together")
    named = args.date or args.start_date
    if args.all and (named or args.catch_up):
        raise InvalidArgumentError("--all computes every day; it takes no dates and no --catch-up")
    if args.list_stale and (named or args.all or args.catch_up or args.allow_gaps):
        raise InvalidArgumentError("--list-stale takes no other option: it lists, and computes nothing")
    if args.all:
        return None
    if args.start_date:
        if args.end_date < args.start_date:
            raise InvalidArgumentError(f"--end-date {args.end_date} is before --start-date {args.start_date}")
        return days_between(args.start_date, args.end_date)
    if args.date:
        return [args.date]
    return [] if args.catch_up else [today - timedelta(days=1)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date,
                        help="the day to compute, YYYY-MM-DD (default: yesterday on the profile's clock)")
    parser.add_argument("--start-date", type=calendar_date, help="first day of a range to compute")
    parser.add_argument("--end-date", type=calendar_date, help="last day of a range to compute (inclusive)")
    parser.add_argument("--all", action="store_true", help="every day of transactions, the whole table replaced")
    parser.add_argument("--catch-up", action="store_true",
                        help="the days whose features are missing or stale (their history changed, or the "
                             "definitions did), with any days named, in one commit")
    parser.add_argument("--list-stale", action="store_true",
                        help="print the days --catch-up would compute, and why; writes nothing")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="compute even when days inside the history have no transactions")
    args = parser.parse_args(argv)
    now = utc_now()
    settings = load_settings(args.env)
    check_profile(settings)
    days = days_asked(args, now.astimezone(ZoneInfo(settings.profile.time_zone)).date())
    spark = get_spark(settings.spark)
    if args.list_stale:
        print(stale_report(list_stale(spark, settings), settings.tables.path(settings.tables.features)))
        return 0
    run(spark, settings, days=days, computed_at=now, catch_up=args.catch_up, allow_gaps=args.allow_gaps)
    publish(spark, settings)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
