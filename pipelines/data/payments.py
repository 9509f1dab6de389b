"""From payment files (``[profile] kind = "payments"``) to rows of that profile's ``transactions``.

A bank's transactions: an id, a wall-clock time in the profile's zone, a card (or customer), a
terminal (or merchant), an amount, maybe a label, maybe further numeric columns; which input
column plays which role is :class:`~pipelines.core.config.ProfileSettings`'. The table's rows:

- ``transaction_id`` (string), as the file gives it;
- ``event_time`` (timestamp): the instant, parsed in the profile's zone, not the session's;
- ``txn_date``: the day in the profile's zone (the partition);
- ``card_key``: the HMAC-SHA256 (hex) of the card under the profile's secret. The card number
  itself is dropped as the file is read: it reaches no table, no cached row and no message;
- ``terminal_id`` (string), ``amount`` (decimal(18,2), exact), ``label`` (int, null when the
  files carry none), the extra numeric columns (double), ``source_file``, ``ingested_at``.

:func:`check_payment_values` and :func:`check_one_content_per_id` are the steps that run a Spark
action, to refuse bad input before anything is written; the others are lazy transforms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType, StructField, StructType

from pipelines.core.clock import as_utc
from pipelines.core.config import ProfileSettings
from pipelines.core.errors import InvalidInputError, NoDataError, SchemaError
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE, require_columns
from pipelines.data.tables import shown_path

EVENT_TIME, CARD_KEY, TERMINAL_ID, AMOUNT, LABEL = "event_time", "card_key", "terminal_id", "amount", "label"
SOURCE_FILE, INGESTED_AT = "source_file", "ingested_at"
AMOUNT_TYPE = DecimalType(18, 2)
# The input file a row came from (its URI), for messages; never written.
FILE = "_file"
_IPAD, _OPAD, _CONTENT = "_hmac_ipad", "_hmac_opad", "_content"
# SHA-256's block size: an HMAC key longer than this is hashed first (RFC 2104).
_HMAC_BLOCK = 64
# At most this many files' problems are spelt out in one message.
_FILES_SHOWN = 5


def content_columns(profile: ProfileSettings) -> list[str]:
    """The columns that make a transaction's content: two rows with one id must agree on all."""
    return [EVENT_TIME, CARD_KEY, TERMINAL_ID, AMOUNT, LABEL, *profile.extra_numeric_columns]


def table_columns(profile: ProfileSettings) -> list[str]:
    """The payments ``transactions`` table's columns, in order."""
    return [TRANSACTION_ID, EVENT_TIME, TXN_DATE, CARD_KEY, TERMINAL_ID, AMOUNT, LABEL,
            *profile.extra_numeric_columns, SOURCE_FILE, INGESTED_AT]


# --- The card key -----------------------------------------------------------------------------

def hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer padded keys for ``secret``: K xor ipad, K xor opad (RFC 2104)."""
    key = hashlib.sha256(secret).digest() if len(secret) > _HMAC_BLOCK else secret
    block = key.ljust(_HMAC_BLOCK, b"\0")
    return bytes(byte ^ 0x36 for byte in block), bytes(byte ^ 0x5C for byte in block)


def hmac_sha256_hex(message: Column, *, inner_pad: Column, outer_pad: Column) -> Column:
    """HMAC-SHA256 of ``message`` (a string, as UTF-8, or binary) in hex, from the padded keys
    of :func:`hmac_pads`: SHA256(K^opad || SHA256(K^ipad || m)), in the JVM."""
    inner = F.unhex(F.sha2(F.concat(inner_pad, message.cast("binary")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def with_card_key(df: DataFrame, *, card_column: str, secret: bytes) -> DataFrame:
    """Replace ``card_column`` by ``card_key``, its HMAC-SHA256 under ``secret`` (spaces around
    the card trimmed first); null where the card is empty.

    The padded keys reach the executors as a one-row broadcast table, not as literals: a
    literal would be printed in every plan (Spark's UI, its event log), and either padded key
    is as good as the secret.

    Example::

        keyed = with_card_key(raw, card_column="CUSTOMER_ID", secret=b"...")
    """
    inner_pad, outer_pad = hmac_pads(secret)
    pads = df.sparkSession.createDataFrame([(bytearray(inner_pad), bytearray(outer_pad))],
                                           f"{_IPAD} binary, {_OPAD} binary")
    card = F.trim(F.col(card_column))
    key = F.when(card.isNull() | (card == ""), F.lit(None).cast("string")).otherwise(
        hmac_sha256_hex(card, inner_pad=F.col(_IPAD), outer_pad=F.col(_OPAD)))
    return df.crossJoin(F.broadcast(pads)).withColumn(CARD_KEY, key).drop(card_column, _IPAD, _OPAD)


# --- Reading ----------------------------------------------------------------------------------

def check_headers(headers: Mapping[str, Sequence[str]], profile: ProfileSettings) -> tuple[str, ...]:
    """Check every file's header has the profile's columns; return the other columns found
    (read, then left out of the table).

    :raises SchemaError: a file lacks a declared column (naming the file, the missing and the
        present columns) or names one twice.
    """
    required = profile.required_columns()
    for uri, columns in headers.items():
        repeated = sorted({column for column in columns if column in required and columns.count(column) > 1})
        if repeated:
            raise SchemaError(f"{shown_path(uri)} names column(s) {repeated} more than once in its header")
        require_columns(columns, required, source=f"{shown_path(uri)} (for [profile] {profile.kind})")
    return tuple(dict.fromkeys(column for columns in headers.values() for column in columns
                               if column not in required))


def read_payment_files(spark: SparkSession, headers: Mapping[str, Sequence[str]], *,
                       profile: ProfileSettings, secret: bytes) -> DataFrame:
    """The files of ``headers`` (URI -> its header, :func:`pipelines.data.tables.csv_header`)
    read in one scan per distinct header, every value a string: the profile's columns, with the
    card already replaced by ``card_key`` (:func:`with_card_key`), and ``_file``/``source_file``.

    A CSV is read by position, so files whose headers differ are read apart and joined by name.
    """
    by_header: dict[tuple[str, ...], list[str]] = {}
    for uri, columns in headers.items():
        by_header.setdefault(tuple(columns), []).append(uri)
    wanted = profile.required_columns()
    parts = []
    for columns, uris in by_header.items():
        schema = StructType([StructField(column, StringType()) for column in columns])
        frame = spark.read.option("header", True).option("mode", "PERMISSIVE").schema(schema).csv(uris)
        parts.append(frame.select(*wanted, F.col("_metadata.file_path").alias(FILE),
                                  F.col("_metadata.file_name").alias(SOURCE_FILE)))
    rows = parts[0]
    for part in parts[1:]:
        rows = rows.unionByName(part)
    return with_card_key(rows, card_column=profile.card_column, secret=secret)


# --- Parsing ----------------------------------------------------------------------------------

def _wall_clock(raw: Column, time_format: str) -> Column:
    """The instant whose UTC wall clock reads as ``raw`` does in ``time_format`` (null if it does
    not parse): the text is read with an explicit +00:00, so the session's zone plays no part."""
    return F.try_to_timestamp(F.concat(F.trim(raw), F.lit(" +00:00")), F.lit(f"{time_format} XXX"))


def event_time(raw: Column, *, time_format: str, time_zone: str) -> Column:
    """The instant a wall-clock time ``raw`` in ``time_zone`` names (null if it does not parse).

    ``to_utc_timestamp`` reads the wall clock of its input in UTC and places it in the zone, so
    the session's zone plays no part. A time that a zone's clock skips (the hour lost to summer
    time) is moved forward by the gap; one it shows twice is the earlier instant (Java's rules).
    """
    return F.to_utc_timestamp(_wall_clock(raw, time_format), F.lit(time_zone))


def local_day(raw: Column, *, time_format: str) -> Column:
    """The calendar day a wall-clock time ``raw`` is written on: the day in its own zone."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(_wall_clock(raw, time_format)) / 86_400).cast("int"))


def exact_amount(raw: Column) -> Column:
    """``raw`` as decimal(18,2) when that holds it exactly (null otherwise: more than two
    decimal places, too large, not a finite number)."""
    exact = F.trim(raw).try_cast(DecimalType(38, 18))
    amount = exact.try_cast(AMOUNT_TYPE)
    return F.when(amount == exact, amount)


def _number(raw: Column) -> Column:
    return F.trim(raw).try_cast("double")


def _empty(raw: Column) -> Column:
    return raw.isNull() | (F.trim(raw) == "")


@dataclass(frozen=True)
class _Check:
    column: str
    bad: Column  # over the columns of _parsed_columns
    example: Column  # what the message shows of a bad row
    expected: str


# A number the value checks need but the table keeps in another type (the label as a double,
# so that 1.5 is refused rather than cast to 1).
_LABEL_NUMBER = "_label_number"


def _parsed_columns(profile: ProfileSettings, *, ingested_at: datetime) -> list[Column]:
    """Each table column parsed from its input column (null where it does not parse), then the
    input columns the checks' messages quote."""
    label = _number(F.col(profile.label_column)) if profile.label_column else F.lit(None).cast("double")
    quoted = [column for column in profile.required_columns() if column != profile.card_column]
    return [
        F.trim(F.col(profile.id_column)).alias(TRANSACTION_ID),
        event_time(F.col(profile.event_time_column), time_format=profile.time_format,
                   time_zone=profile.time_zone).alias(EVENT_TIME),
        local_day(F.col(profile.event_time_column), time_format=profile.time_format).alias(TXN_DATE),
        F.col(CARD_KEY),
        F.trim(F.col(profile.terminal_column)).alias(TERMINAL_ID),
        exact_amount(F.col(profile.amount_column)).alias(AMOUNT),
        label.alias(_LABEL_NUMBER),
        *[_number(F.col(column)).alias(f"_number_{column}") for column in profile.extra_numeric_columns],
        F.col(SOURCE_FILE),
        F.lit(as_utc(ingested_at)).cast("timestamp").alias(INGESTED_AT),
        F.col(FILE),
        *[F.col(column).alias(f"_raw_{column}") for column in quoted],
    ]


def _checks(profile: ProfileSettings) -> list[_Check]:
    """The value checks, over the columns of :func:`_parsed_columns`."""
    def raw(column: str) -> Column:
        return F.col(f"_raw_{column}")

    row_of = F.concat(F.lit(f"the row of {profile.id_column} "),
                      F.coalesce(F.concat(F.lit("'"), F.col(TRANSACTION_ID), F.lit("'")), F.lit("<empty>")))
    amount = F.col(AMOUNT)
    checks = [
        _Check(profile.id_column, _empty(F.col(TRANSACTION_ID)), F.lit("''"), "not empty"),
        _Check(profile.event_time_column, F.col(EVENT_TIME).isNull(),
               _quoted(raw(profile.event_time_column)), f"a time written {profile.time_format!r}"),
        # The card is only ever empty here (else it has a key): the message shows the row's id.
        _Check(profile.card_column, F.col(CARD_KEY).isNull(), row_of, "not empty"),
        _Check(profile.terminal_column, _empty(F.col(TERMINAL_ID)), row_of, "not empty"),
        _Check(profile.amount_column, amount.isNull() | (amount < 0), _quoted(raw(profile.amount_column)),
               "a finite number, not negative, with at most 2 decimal places"),
    ]
    if profile.label_column:
        label = F.col(_LABEL_NUMBER)
        checks.append(_Check(profile.label_column, label.isNull() | ~label.isin(0.0, 1.0),
                             _quoted(raw(profile.label_column)), "0 or 1"))
    for column in profile.extra_numeric_columns:
        number = F.col(f"_number_{column}")
        checks.append(_Check(column, number.isNull() | F.isnan(number) | (F.abs(number) == F.lit(float("inf"))),
                             _quoted(raw(column)), "a finite number"))
    return checks


def _quoted(value: Column) -> Column:
    return F.concat(F.lit("'"), F.coalesce(value, F.lit("")), F.lit("'"))


def _failed(index: int) -> str:
    """The column of :func:`typed_payment_rows` that shows a row failing check ``index``."""
    return f"_failed_{index}"


def typed_payment_rows(rows: DataFrame, *, profile: ProfileSettings, ingested_at: datetime) -> DataFrame:
    """The table's columns (:func:`table_columns`) parsed from ``rows`` (:func:`read_payment_files`),
    ``_file``, and per value check a ``_failed_<i>`` column: what a message shows of the row when
    it fails that check, null when it passes (:func:`check_payment_values` reads them).

    Each value is parsed once, here: kept on disk (:func:`pipelines.data.tables.persisted`),
    these rows feed the checks and the write alike. A row that fails a check holds a null where
    its value did not parse; such rows are refused, never written. An id may still come more
    than once (:func:`repeated_ids`).
    """
    checks = _checks(profile)
    parsed = rows.select(*_parsed_columns(profile, ingested_at=ingested_at))
    return parsed.select(
        *[F.col(_LABEL_NUMBER).cast("int").alias(column) if column == LABEL
          else F.col(f"_number_{column}").alias(column) if column in profile.extra_numeric_columns
          else F.col(column) for column in table_columns(profile)],
        F.col(FILE),
        *[F.when(check.bad, check.example).alias(_failed(index)) for index, check in enumerate(checks)],
    )


@dataclass(frozen=True)
class PaymentFilesSummary:
    """What the check pass learned: how many rows and files, and the days (in the profile's
    zone) they cover."""

    rows: int
    files: int
    first_day: date
    last_day: date


def check_payment_values(typed: DataFrame, *, profile: ProfileSettings) -> PaymentFilesSummary:
    """Check every value of ``typed`` (:func:`typed_payment_rows`) in one aggregation, per file.

    Refused: an empty id, card or terminal; a time that does not parse as ``time_format``; an
    amount that is not a finite number, is negative or has more than 2 decimal places; a label
    other than 0/1; an extra column that is not a finite number.

    :raises InvalidInputError: naming each file with bad values, each bad column, how many
        rows and one bad value (for the card and terminal, the row's id instead: a card number
        never reaches a message).
    :raises NoDataError: the files have headers but no rows.
    """
    checks = _checks(profile)
    aggregates = [F.count(F.lit(1)).alias("rows"), F.min(TXN_DATE).alias("first_day"),
                  F.max(TXN_DATE).alias("last_day")]
    for index in range(len(checks)):
        failed = F.col(_failed(index))
        aggregates.append(F.count(failed).alias(f"bad_{index}"))
        aggregates.append(F.first(failed, ignorenulls=True).alias(f"example_{index}"))
    per_file = typed.groupBy(FILE).agg(*aggregates).collect()
    total = sum(row["rows"] for row in per_file)
    if not total:
        raise NoDataError("the input files have a header but no rows")
    problems = []
    for row in sorted(per_file, key=lambda row: row[FILE]):
        found = [f"{check.column}: {row[f'bad_{index}']} bad value(s), e.g. {row[f'example_{index}']} "
                 f"(expected {check.expected})"
                 for index, check in enumerate(checks) if row[f"bad_{index}"]]
        if found:
            problems.append(f"{shown_path(row[FILE])}: " + "; ".join(found))
    if problems:
        more = f"\n... and {len(problems) - _FILES_SHOWN} more file(s)" if len(problems) > _FILES_SHOWN else ""
        raise InvalidInputError("bad values, nothing was written:\n" + "\n".join(problems[:_FILES_SHOWN]) + more)
    return PaymentFilesSummary(rows=total, files=len(per_file),
                               first_day=min(row["first_day"] for row in per_file if row["first_day"]),
                               last_day=max(row["last_day"] for row in per_file if row["last_day"]))


# --- One content per id -----------------------------------------------------------------------

_LEAST, _GREATEST, _FIRST_FILE, _LAST_FILE = "_least", "_greatest", "_first_file", "_last_file"


def repeated_ids(typed: DataFrame) -> int:
    """How many ids of ``typed`` (:func:`typed_payment_rows`) come on more than one row: an
    aggregation of the ids alone, so that the usual input, every id once, needs no more."""
    return typed.groupBy(TRANSACTION_ID).count().filter(F.col("count") > 1).count()


def one_row_per_id(typed: DataFrame, *, profile: ProfileSettings) -> DataFrame:
    """One row per id of ``typed`` (:func:`typed_payment_rows`), in one aggregation: its least
    and greatest content (:func:`content_columns`, with its day), the first and last input file
    that holds it, the first file name by name (``source_file``) and ``ingested_at``.

    The contents of an id differ exactly when its least and greatest differ; when they agree,
    the least is the row to write (:func:`distinct_payment_rows`).
    """
    content = F.struct(TXN_DATE, *content_columns(profile))
    return typed.groupBy(TRANSACTION_ID).agg(
        F.min(content).alias(_LEAST), F.max(content).alias(_GREATEST),
        F.min(FILE).alias(_FIRST_FILE), F.max(FILE).alias(_LAST_FILE),
        F.min(SOURCE_FILE).alias(SOURCE_FILE), F.max(INGESTED_AT).alias(INGESTED_AT))


def check_one_content_per_id(per_id: DataFrame, *, profile: ProfileSettings) -> None:
    """Refuse an id that comes with two different contents (:func:`content_columns`) in the
    input. An identical re-send is fine.

    :param per_id: the input, :func:`one_row_per_id`.
    :raises InvalidInputError: naming how many ids, one of them and the files it is in.
    """
    clash = (per_id.filter(~F.col(_LEAST).eqNullSafe(F.col(_GREATEST)))
             .agg(F.count(F.lit(1)).alias("ids"), F.first(TRANSACTION_ID).alias("id"),
                  F.first(F.array(_FIRST_FILE, _LAST_FILE)).alias("files")).first())
    if clash["ids"]:
        files = ", ".join(shown_path(uri) for uri in dict.fromkeys(clash["files"]))
        raise InvalidInputError(
            f"{profile.id_column}: {clash['ids']} id(s) given with two different contents in the input, "
            f"e.g. {clash['id']!r} (in {files}); nothing was written")


def distinct_payment_rows(per_id: DataFrame, *, profile: ProfileSettings) -> DataFrame:
    """The rows of :func:`one_row_per_id`, once :func:`check_one_content_per_id` passed (each
    id's copies are identical), as :func:`typed_payment_rows` has them: the table's columns
    and ``_file`` (the first file that holds the id)."""
    return per_id.select(TRANSACTION_ID, f"{_LEAST}.*", SOURCE_FILE, INGESTED_AT,
                         F.col(_FIRST_FILE).alias(FILE)).select(*table_columns(profile), FILE)


def check_against_table(rows: DataFrame, existing: DataFrame, *, profile: ProfileSettings) -> None:
    """Refuse an id of ``rows`` (one row per id: the table's columns and ``_file``) that the
    whole ``existing`` table holds with another content (:func:`content_columns`): every day of
    it, since an id re-sent with another time must not land on another day. An id held with the
    same content is fine (it is not written again).

    Only the ids and contents of both sides are read, and only the ids found in both compared.

    :raises InvalidInputError: naming the file, how many ids, one of them and which columns
        differ (never their values: one may be a card key).
    """
    columns = content_columns(profile)
    incoming = rows.select(TRANSACTION_ID, FILE, *[F.col(column).alias(f"s_{column}") for column in columns])
    differing = [F.when(~F.col(f"s_{column}").eqNullSafe(F.col(column)), F.lit(column)) for column in columns]
    differs = (incoming.join(existing.select(TRANSACTION_ID, *columns), TRANSACTION_ID)
               .withColumn("_differs", F.array_compact(F.array(*differing)))
               .filter(F.size("_differs") > 0))
    clash = differs.agg(F.count(F.lit(1)).alias("ids"), F.first(TRANSACTION_ID).alias("id"),
                        F.first(FILE).alias("file"), F.first("_differs").alias("columns")).first()
    if clash["ids"]:
        raise InvalidInputError(
            f"{shown_path(clash['file'])}: {profile.id_column}: {clash['ids']} id(s) already in the table with "
            f"other contents, e.g. {clash['id']!r} ({', '.join(clash['columns'])} differ(s)); an id names one "
            f"transaction for good; nothing was written")


def check_table_columns(existing: DataFrame, *, profile: ProfileSettings, path: str) -> None:
    """Refuse to write into a table made with other columns (another profile, other extras).

    :raises SchemaError: naming the table's columns and the profile's.
    """
    if list(existing.columns) != table_columns(profile):
        raise SchemaError(f"the table at {path} has columns {list(existing.columns)}, but [profile] makes "
                          f"{table_columns(profile)}: ingest into another [tables] root, or keep the profile "
                          f"the table was made with")
