"""From the dataset's CSV rows to rows of the ``transactions`` table.

The steps are pure ``DataFrame -> DataFrame`` functions; :func:`check_values` (on the file read
with :func:`numeric_schema`, the job's one pass over it) and :func:`check_raw_values` (on the
file read as strings) are the places that run a Spark action, to refuse a bad file before
anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from pipelines.core.clock import as_utc
from pipelines.core.errors import NoDataError, SchemaError
from pipelines.data.schema import EVENT_TS, LABEL_COL, RAW_COLS, TRANSACTION_ID, TXN_DATE, require_columns

# The last instant Spark's timestamp type is defined for: an event time must not pass it.
LAST_EVENT_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
# U+FFFD is what a UTF-8 reader puts where the bytes are not UTF-8; NUL does not occur in text.
_NOT_TEXT = re.compile("[\ufffd\x00]")
# The hash of a row's values (with_row_hash), and its copy number among exact copies.
ROW_HASH, _COPY, _REPEATED = "_row_hash", "_copy", "_repeated"
# Up to this many sets of exact copies in a file, only their rows are numbered (the sets are
# broadcast to every task, about 100 bytes each); more, and a window numbers every row
# (with_transaction_id). The shipped sample has 13 sets (32 rows).
MAX_REPEATED_TO_BROADCAST = 200_000


@dataclass(frozen=True)
class RawFileSummary:
    """What the validation pass learned about a file: its size, the days it covers, and the
    columns it has beyond the dataset's (read, then left out of the table)."""

    rows: int
    first_day: date
    last_day: date
    extra_columns: tuple[str, ...] = ()


def max_time_seconds(start: datetime) -> float:
    """The largest ``Time`` whose event time (``start`` + ``Time`` seconds) a timestamp holds."""
    return (LAST_EVENT_TS - as_utc(start)).total_seconds()


def _number_problem(column: str, number: Column, *, max_time: float) -> Column:
    """True where ``number``, the value of ``column`` read as a double (null: not a number),
    is not an acceptable value for it.

    Every value must be a finite number (``Infinity`` and ``1e999`` parse as doubles, but no
    model or metric can use them); ``Class`` 0 or 1 (``1.0`` is 1); ``Time`` and ``Amount`` not
    negative, and ``Time`` small enough that its event time is a valid timestamp.
    """
    bad = number.isNull() | F.isnan(number) | (F.abs(number) == F.lit(float("inf")))
    if column == LABEL_COL:
        bad = bad | ~number.isin(0.0, 1.0)
    elif column == "Time":
        bad = bad | (number < 0) | (number > F.lit(max_time))
    elif column == "Amount":
        bad = bad | (number < 0)
    return bad


def _value_problem(column: str, *, max_time: float) -> Column:
    """True where the raw string of ``column`` is not an acceptable value for it (see
    :func:`_number_problem`)."""
    raw = F.trim(F.col(column))
    return raw.isNull() | (raw == "") | _number_problem(column, raw.try_cast("double"), max_time=max_time)


def check_header(columns: Sequence[str], *, source: str) -> None:
    """Check a CSV file's header: UTF-8 text, and every column of :data:`RAW_COLS` there.

    :raises SchemaError: a header that is not UTF-8 text, or a missing column.
    """
    if any(_NOT_TEXT.search(column) for column in columns):
        raise SchemaError(
            f"{source} is not UTF-8 text in the dataset's CSV format (its header reads "
            f"{','.join(columns)[:80]!r}): check the file's encoding"
        )
    require_columns(columns, RAW_COLS, source=source)


def numeric_schema(columns: Sequence[str]) -> StructType:
    """The schema to read a CSV file whose header is ``columns`` with: the dataset's columns as
    doubles, any other column as a string, in the file's order (a CSV schema goes by position).

    A value that is not a number reads as null, which :func:`check_values` refuses. The CSV
    reader parses a double as a cast from a string does (Java's ``Double.parseDouble``), so a
    value reads as the same double either way and the ids do not depend on the path.
    """
    return StructType([StructField(column, DoubleType() if column in RAW_COLS else StringType())
                       for column in columns])


def check_raw_values(raw_df: DataFrame, *, source: str, start: datetime) -> RawFileSummary:
    """Check a CSV read as strings; return its row count and the days it covers.

    Every column of :data:`RAW_COLS` must be present and hold a finite number in every row
    (``Class`` 0 or 1, ``Time`` and ``Amount`` not negative, ``Time`` within the timestamp
    range from ``start``). One aggregation pass over the file. Columns beyond those are
    allowed (and reported in the summary).

    :raises SchemaError: a header that is not UTF-8 text, a missing column, or bad values:
        naming each bad column, how many rows are bad and one bad value.
    :raises NoDataError: the file has a header but no rows.
    """
    check_header(raw_df.columns, source=source)
    max_time = max_time_seconds(start)
    aggregates = [F.count(F.lit(1)).alias("rows"), F.min(F.col("Time").try_cast("double")).alias("min_time"),
                  F.max(F.col("Time").try_cast("double")).alias("max_time")]
    for column in RAW_COLS:
        bad = _value_problem(column, max_time=max_time)
        aggregates.append(F.sum(bad.cast("int")).alias(f"bad_{column}"))
        aggregates.append(F.first(F.when(bad, F.coalesce(F.col(column), F.lit("<empty>"))), ignorenulls=True)
                          .alias(f"example_{column}"))
    summary = raw_df.agg(*aggregates).first()
    if not summary["rows"]:
        raise NoDataError(f"{source} has a header but no rows")
    problems = [
        f"{column}: {summary[f'bad_{column}']} bad value(s), e.g. {summary[f'example_{column}']!r}"
        + (" (not UTF-8: check the file's encoding)" if _NOT_TEXT.search(summary[f"example_{column}"]) else "")
        for column in RAW_COLS
        if summary[f"bad_{column}"]
    ]
    if problems:
        expected = (f"finite numbers (Class 0 or 1; Time and Amount not negative; Time at most {max_time:.0f} "
                    f"seconds, so that the event time is a valid timestamp)")
        raise SchemaError(f"{source} has values that are not {expected}: " + "; ".join(problems))
    return RawFileSummary(
        rows=summary["rows"],
        first_day=(as_utc(start) + timedelta(seconds=summary["min_time"])).date(),
        last_day=(as_utc(start) + timedelta(seconds=summary["max_time"])).date(),
        extra_columns=tuple(column for column in raw_df.columns if column not in RAW_COLS),
    )


def check_values(numbers_df: DataFrame, raw_df: DataFrame, *, source: str, start: datetime) -> RawFileSummary:
    """Check a CSV file read with :func:`numeric_schema` (``numbers_df``); return its row count
    and the days it covers.

    The same checks as :func:`check_raw_values`, in one aggregation over the numbers. Only when
    a value fails does ``raw_df``, the same file read as strings, get read (by
    :func:`check_raw_values`) for the message, which names each bad column, how many rows are
    bad and one bad value as written in the file.

    :raises SchemaError: a header that is not UTF-8 text, a missing column, or bad values.
    :raises NoDataError: the file has a header but no rows.
    """
    check_header(raw_df.columns, source=source)
    max_time = max_time_seconds(start)
    bad = {column: _number_problem(column, F.col(column), max_time=max_time) for column in RAW_COLS}
    summary = numbers_df.agg(
        F.count(F.lit(1)).alias("rows"), F.min("Time").alias("min_time"), F.max("Time").alias("max_time"),
        *[F.sum(bad[column].cast("int")).alias(f"bad_{column}") for column in RAW_COLS],
    ).first()
    if not summary["rows"]:
        raise NoDataError(f"{source} has a header but no rows")
    bad_counts = {column: summary[f"bad_{column}"] for column in RAW_COLS if summary[f"bad_{column}"]}
    if bad_counts:
        check_raw_values(raw_df, source=source, start=start)
        # Both read a value with Java's parser, so this is not expected; refuse all the same.
        raise SchemaError(f"{source} has values that are not finite numbers in the dataset's format: "
                          + "; ".join(f"{column}: {count} bad value(s)" for column, count in bad_counts.items()))
    return RawFileSummary(
        rows=summary["rows"],
        first_day=(as_utc(start) + timedelta(seconds=summary["min_time"])).date(),
        last_day=(as_utc(start) + timedelta(seconds=summary["max_time"])).date(),
        extra_columns=tuple(column for column in raw_df.columns if column not in RAW_COLS),
    )


def cast_raw_columns(raw_df: DataFrame) -> DataFrame:
    """Cast the dataset's columns from strings to numbers (``Class`` to int), in their order.

    ``Class`` goes through double, so ``1.0`` (which the check accepts) becomes 1 under ANSI
    casts too.
    """
    return raw_df.select(
        *[
            (F.trim(F.col(column)).cast("double").cast("int") if column == LABEL_COL
             else F.trim(F.col(column)).cast("double")).alias(column)
            for column in RAW_COLS
        ]
    )


def with_event_time(df: DataFrame, *, start: datetime) -> DataFrame:
    """Add ``event_ts`` (``start`` + ``Time`` seconds) and its day ``txn_date``, in UTC.

    A ``start`` without a time zone is taken as UTC.
    """
    event_ts = F.timestamp_seconds(F.lit(as_utc(start).timestamp()) + F.col("Time"))
    return df.withColumn(EVENT_TS, event_ts).withColumn(TXN_DATE, F.to_date(F.col(EVENT_TS)))


def with_row_hash(df: DataFrame) -> DataFrame:
    """Add ``_row_hash``: the SHA-256 (hex) of the row's values as text, the same for exact copies.

    ``Class`` is hashed as the integer it is stored as (``1``, whether the file says ``1`` or
    ``1.0``), so the hash is the same on a file read as numbers as on its typed rows: the job
    computes it while it reads the file, in the one pass. A ``Class`` that is no integer gets
    no text (such a file is refused by the checks; the read must not fail on it first).
    """
    as_text = [F.col(column).try_cast("int").cast("string") if column == LABEL_COL else F.col(column).cast("string")
               for column in RAW_COLS]
    return df.withColumn(ROW_HASH, F.sha2(F.concat_ws("|", *as_text), 256))


def repeated_rows(hashed: DataFrame) -> DataFrame:
    """One row per set of exact copies in ``hashed`` (rows of :func:`with_row_hash`): its
    ``_row_hash`` and how many ``copies`` there are (2 or more). Rows that occur once are left out."""
    return hashed.groupBy(ROW_HASH).agg(F.count(F.lit(1)).alias("copies")).filter(F.col("copies") > 1)


def count_copies(repeated: DataFrame) -> tuple[int, int]:
    """How many sets of exact copies :func:`repeated_rows` found, and how many rows they hold."""
    totals = repeated.agg(F.count(F.lit(1)).alias("sets"), F.sum("copies").alias("rows")).first()
    return totals["sets"], totals["rows"] or 0


def with_transaction_id(df: DataFrame, *, repeated: DataFrame | None = None) -> DataFrame:
    """Add a ``transaction_id`` that is the same each time the same rows are ingested.

    The data holds exact duplicate rows, so the values alone cannot identify a transaction: the
    id hashes the row's values together with which copy of those values it is (1st, 2nd, ...).
    Copies are identical, so which copy gets which number does not matter, and the ids do not
    depend on the order or partitioning of the file.

    :param repeated: the sets of copies in ``df`` (:func:`repeated_rows`), few enough to
        broadcast (see :data:`MAX_REPEATED_TO_BROADCAST`). Given, only the rows in them are
        numbered (a broadcast join picks them out, a window numbers them) and every other row
        is copy 1; otherwise a window numbers every row, which sorts the whole file. The ids
        are the same either way.
    """
    hashed = df if ROW_HASH in df.columns else with_row_hash(df)
    copy_number = F.row_number().over(Window.partitionBy(ROW_HASH).orderBy(ROW_HASH))
    if repeated is None:
        numbered = hashed.withColumn(_COPY, copy_number)
    else:
        marked = hashed.join(F.broadcast(repeated.select(ROW_HASH, F.lit(True).alias(_REPEATED))), ROW_HASH, "left")
        once = marked.filter(F.col(_REPEATED).isNull()).withColumn(_COPY, F.lit(1))
        copies = marked.filter(F.col(_REPEATED).isNotNull()).withColumn(_COPY, copy_number)
        numbered = once.unionByName(copies).drop(_REPEATED)
    return (
        numbered.withColumn(TRANSACTION_ID, F.substring(F.sha2(F.concat_ws("#", ROW_HASH, _COPY), 256), 1, 32))
        .drop(ROW_HASH, _COPY)
    )


def prepare_transactions(
    raw_df: DataFrame, *, start: datetime, source_file: str, ingested_at: datetime
) -> DataFrame:
    """Rows of the ``transactions`` table from checked raw CSV rows (strings).

    Example::

        prepared = prepare_transactions(raw, start=datetime(2013, 9, 1), source_file="day1.csv",
                                        ingested_at=utc_now())
    """
    return _transaction_rows(cast_raw_columns(raw_df), start=start, source_file=source_file,
                             ingested_at=ingested_at)


def prepare_checked_numbers(
    numbers_df: DataFrame, *, start: datetime, source_file: str, ingested_at: datetime,
    repeated: DataFrame | None = None,
) -> DataFrame:
    """Rows of the ``transactions`` table from a file read with :func:`numeric_schema` whose
    values :func:`check_values` accepted: the same rows (and ids) as :func:`prepare_transactions`
    makes from the file read as strings.

    ``numbers_df`` may carry its ``_row_hash`` already (:func:`with_row_hash`, computed as the
    file was read), and ``repeated`` its sets of copies (see :func:`with_transaction_id`).

    Example::

        prepared = prepare_checked_numbers(numbers, start=datetime(2013, 9, 1), source_file="day1.csv",
                                           ingested_at=utc_now())
    """
    typed = numbers_df.select(*[F.col(column).cast("int").alias(column) if column == LABEL_COL else F.col(column)
                                for column in RAW_COLS], *([ROW_HASH] if ROW_HASH in numbers_df.columns else []))
    return _transaction_rows(typed, start=start, source_file=source_file, ingested_at=ingested_at, repeated=repeated)


def _transaction_rows(typed_df: DataFrame, *, start: datetime, source_file: str, ingested_at: datetime,
                      repeated: DataFrame | None = None) -> DataFrame:
    enriched = with_transaction_id(with_event_time(typed_df, start=start), repeated=repeated)
    return enriched.select(
        TRANSACTION_ID,
        EVENT_TS,
        TXN_DATE,
        *RAW_COLS,
        F.lit(source_file).alias("source_file"),
        F.lit(as_utc(ingested_at)).cast("timestamp").alias("ingested_at"),
    )
