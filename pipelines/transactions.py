"""From the dataset's CSV rows to rows of the ``transactions`` table.

The steps are pure ``DataFrame -> DataFrame`` functions; :func:`check_raw_values` is the one
place that runs a Spark action, to refuse a bad file before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.errors import NoDataError, SchemaError
from pipelines.schema import EVENT_TS, LABEL_COL, RAW_COLS, TRANSACTION_ID, TXN_DATE, require_columns


@dataclass(frozen=True)
class RawFileSummary:
    """What the validation pass learned about a file: its size and the days it covers."""

    rows: int
    first_day: date
    last_day: date


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _value_problem(column: str) -> Column:
    """True where the raw string of ``column`` is not an acceptable value for it."""
    raw = F.trim(F.col(column))
    number = raw.try_cast("double")
    bad = raw.isNull() | (raw == "") | number.isNull() | F.isnan(number)
    if column == LABEL_COL:
        bad = bad | ~number.isin(0.0, 1.0)
    elif column in ("Time", "Amount"):
        bad = bad | (number < 0)
    return bad


def check_raw_values(raw_df: DataFrame, *, source: str, start: datetime) -> RawFileSummary:
    """Check a CSV read as strings; return its row count and the days it covers.

    Every column of :data:`RAW_COLS` must be present and hold a number in every row (``Class``
    0 or 1, ``Time`` and ``Amount`` not negative). One aggregation pass over the file.

    :raises SchemaError: naming each bad column, how many rows are bad and one bad value.
    :raises NoDataError: the file has a header but no rows.
    """
    require_columns(raw_df.columns, RAW_COLS, source=source)
    aggregates = [F.count(F.lit(1)).alias("rows"), F.min(F.col("Time").try_cast("double")).alias("min_time"),
                  F.max(F.col("Time").try_cast("double")).alias("max_time")]
    for column in RAW_COLS:
        bad = _value_problem(column)
        aggregates.append(F.sum(bad.cast("int")).alias(f"bad_{column}"))
        aggregates.append(F.first(F.when(bad, F.coalesce(F.col(column), F.lit("<empty>"))), ignorenulls=True)
                          .alias(f"example_{column}"))
    summary = raw_df.agg(*aggregates).first()
    if not summary["rows"]:
        raise NoDataError(f"{source} has a header but no rows")
    problems = [
        f"{column}: {summary[f'bad_{column}']} bad value(s), e.g. {summary[f'example_{column}']!r}"
        for column in RAW_COLS
        if summary[f"bad_{column}"]
    ]
    if problems:
        expected = "numbers (Class 0 or 1; Time and Amount not negative)"
        raise SchemaError(f"{source} has values that are not {expected}: " + "; ".join(problems))
    return RawFileSummary(
        rows=summary["rows"],
        first_day=(_as_utc(start) + timedelta(seconds=summary["min_time"])).date(),
        last_day=(_as_utc(start) + timedelta(seconds=summary["max_time"])).date(),
    )


def cast_raw_columns(raw_df: DataFrame) -> DataFrame:
    """Cast the dataset's columns from strings to numbers (``Class`` to int), in their order."""
    return raw_df.select(
        *[
            F.trim(F.col(column)).cast("int" if column == LABEL_COL else "double").alias(column)
            for column in RAW_COLS
        ]
    )


def with_event_time(df: DataFrame, *, start: datetime) -> DataFrame:
    """Add ``event_ts`` (``start`` + ``Time`` seconds) and its day ``txn_date``, in UTC.

    A ``start`` without a time zone is taken as UTC.
    """
    event_ts = F.timestamp_seconds(F.lit(_as_utc(start).timestamp()) + F.col("Time"))
    return df.withColumn(EVENT_TS, event_ts).withColumn(TXN_DATE, F.to_date(F.col(EVENT_TS)))


def with_transaction_id(df: DataFrame) -> DataFrame:
    """Add a ``transaction_id`` that is the same each time the same rows are ingested.

    The data holds exact duplicate rows, so the values alone cannot identify a transaction: the
    id hashes the row's values together with which copy of those values it is (1st, 2nd, ...).
    Copies are identical, so which copy gets which number does not matter, and the ids do not
    depend on the order or partitioning of the file.
    """
    row_hash = F.sha2(F.concat_ws("|", *[F.col(column).cast("string") for column in RAW_COLS]), 256)
    copy_number = F.row_number().over(Window.partitionBy("_row_hash").orderBy("_row_hash"))
    return (
        df.withColumn("_row_hash", row_hash)
        .withColumn("_copy", copy_number)
        .withColumn(TRANSACTION_ID, F.substring(F.sha2(F.concat_ws("#", "_row_hash", "_copy"), 256), 1, 32))
        .drop("_row_hash", "_copy")
    )


def prepare_transactions(
    raw_df: DataFrame, *, start: datetime, source_file: str, ingested_at: datetime
) -> DataFrame:
    """Rows of the ``transactions`` table from checked raw CSV rows.

    Example::

        prepared = prepare_transactions(raw, start=datetime(2013, 9, 1), source_file="day1.csv",
                                        ingested_at=datetime.now(timezone.utc))
    """
    typed = cast_raw_columns(raw_df)
    enriched = with_transaction_id(with_event_time(typed, start=start))
    return enriched.select(
        TRANSACTION_ID,
        EVENT_TS,
        TXN_DATE,
        *RAW_COLS,
        F.lit(source_file).alias("source_file"),
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
    )
