"""From CSV strings to rows of the transactions table: types, event time, ids, refusals."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipelines.core.errors import NoDataError, SchemaError
from pipelines.data.schema import RAW_COLS
from pipelines.data.transactions import (
    cast_raw_columns,
    check_raw_values,
    count_copies,
    max_time_seconds,
    prepare_transactions,
    repeated_rows,
    with_event_time,
    with_row_hash,
    with_transaction_id,
)

UTC = timezone.utc
# Naive, as in conf/: the library takes it as UTC.
START = datetime(2013, 9, 1)


def raw_row(time: str, amount: str = "10.0", label: str = "0", v1: str = "0.5") -> tuple[str, ...]:
    """A CSV row as strings: Time, V1..V28, Amount, Class."""
    return (time, v1, *["0.0"] * 27, amount, label)


def raw_frame(spark, rows, columns=RAW_COLS):
    return spark.createDataFrame(rows, ", ".join(f"`{c}` string" for c in columns))


@pytest.mark.timezone
def test_event_time_counts_seconds_from_the_start_in_utc(spark):
    source_df = spark.createDataFrame([(0.0,), (86399.5,), (86400.0,)], "Time double")
    actual_df = with_event_time(source_df, start=START)
    expected_df = spark.createDataFrame(
        [
            (0.0, datetime(2013, 9, 1, 0, 0, 0, tzinfo=UTC), date(2013, 9, 1)),
            (86399.5, datetime(2013, 9, 1, 23, 59, 59, 500000, tzinfo=UTC), date(2013, 9, 1)),
            (86400.0, datetime(2013, 9, 2, 0, 0, 0, tzinfo=UTC), date(2013, 9, 2)),
        ],
        "Time double, event_ts timestamp, txn_date date",
    )
    assert_df_equality(actual_df, expected_df)


@pytest.mark.timezone
def test_naive_instants_are_utc_whatever_the_machines_zone(spark):
    # A naive datetime reaches Spark in the process's zone unless the library makes it UTC.
    prepared = prepare_transactions(raw_frame(spark, [raw_row("0.0")]), start=START, source_file="x.csv",
                                    ingested_at=datetime(2026, 11, 25, 23, 30))
    as_text = prepared.select(F.date_format("event_ts", "yyyy-MM-dd HH:mm").alias("event_ts"),
                              F.date_format("ingested_at", "yyyy-MM-dd HH:mm").alias("ingested_at"), "txn_date")
    assert as_text.first().asDict() == {"event_ts": "2013-09-01 00:00", "ingested_at": "2026-11-25 23:30",
                                        "txn_date": date(2013, 9, 1)}


def test_exact_duplicate_rows_get_different_ids(spark):
    source_df = cast_raw_columns(raw_frame(spark, [raw_row("5.0"), raw_row("5.0"), raw_row("6.0")]))
    ids = [row.transaction_id for row in with_transaction_id(source_df).collect()]
    assert len(set(ids)) == 3
    assert all(len(i) == 32 for i in ids)


def test_ids_do_not_depend_on_row_order_or_partitioning(spark):
    rows = [raw_row("5.0"), raw_row("5.0"), raw_row("6.0"), raw_row("7.0", amount="1.5")]
    first = with_transaction_id(cast_raw_columns(raw_frame(spark, rows)))
    second = with_transaction_id(cast_raw_columns(raw_frame(spark, list(reversed(rows))).repartition(3)))
    assert_df_equality(first, second, ignore_row_order=True)


def test_numbering_only_the_copies_gives_the_ids_numbering_every_row_does(spark):
    rows = [raw_row("5.0"), raw_row("6.0"), raw_row("5.0"), raw_row("7.0"), raw_row("5.0"), raw_row("6.0"),
            raw_row("8.0", label="1")]
    hashed = with_row_hash(cast_raw_columns(raw_frame(spark, rows).repartition(3)))
    repeated = repeated_rows(hashed)
    assert count_copies(repeated) == (2, 5)
    assert sorted(row.copies for row in repeated.collect()) == [2, 3]
    every_row = with_transaction_id(hashed)
    copies_only = with_transaction_id(hashed, repeated=repeated)
    assert copies_only.select("transaction_id").distinct().count() == 7
    assert_df_equality(copies_only, every_row, ignore_row_order=True)
    assert count_copies(repeated_rows(with_row_hash(cast_raw_columns(raw_frame(spark, rows[:2]))))) == (0, 0)


def test_check_names_missing_columns_and_the_file(spark):
    columns = [c for c in RAW_COLS if c not in ("V7", "Amount")]
    source_df = raw_frame(spark, [tuple("1" for _ in columns)], columns)
    with pytest.raises(SchemaError, match=r"day9\.csv is missing column\(s\) \['V7', 'Amount'\]"):
        check_raw_values(source_df, source="day9.csv", start=START)


def test_check_names_non_numeric_columns_with_an_example(spark):
    source_df = raw_frame(spark, [raw_row("1.0"), raw_row("2.0", amount="12,50"), raw_row("3.0", v1="")])
    with pytest.raises(SchemaError) as error:
        check_raw_values(source_df, source="bad.csv", start=START)
    message = str(error.value)
    assert "bad.csv" in message
    assert "Amount: 1 bad value(s), e.g. '12,50'" in message
    assert "V1: 1 bad value(s)" in message
    assert "Time: " not in message


def test_check_refuses_a_label_that_is_not_0_or_1(spark):
    source_df = raw_frame(spark, [raw_row("1.0", label="2")])
    with pytest.raises(SchemaError, match=r"Class: 1 bad value\(s\), e.g. '2'"):
        check_raw_values(source_df, source="x.csv", start=START)


@pytest.mark.parametrize("column, value", [
    ("Amount", "Infinity"), ("Amount", "-inf"), ("V3", "1e999"), ("V1", "NaN"), ("Time", "-1"), ("Amount", "-0.5"),
    # an event time past the last valid timestamp (9999-12-31), which Python cannot even hold
    ("Time", "1e300"), ("Time", "252423993600"),
])
def test_check_refuses_values_that_cannot_be_stored_or_used(spark, column, value):
    row = dict(zip(RAW_COLS, raw_row("1.0"), strict=True)) | {column: value}
    source_df = raw_frame(spark, [raw_row("2.0"), tuple(row[c] for c in RAW_COLS)])
    with pytest.raises(SchemaError, match=rf"big\.csv has values that are not finite numbers.*{column}: 1 bad value"):
        check_raw_values(source_df, source="big.csv", start=START)


def test_the_largest_time_that_a_timestamp_holds_is_accepted(spark):
    last = max_time_seconds(START)
    summary = check_raw_values(raw_frame(spark, [raw_row(repr(last))]), source="x.csv", start=START)
    assert summary.last_day == date(9999, 12, 31)
    prepared = prepare_transactions(raw_frame(spark, [raw_row(repr(last))]), start=START, source_file="x.csv",
                                    ingested_at=datetime(2026, 11, 25, tzinfo=UTC))
    assert prepared.first()["txn_date"] == date(9999, 12, 31)


def test_a_label_written_1_point_0_is_ingested_as_1(spark):
    source_df = raw_frame(spark, [raw_row("1.0", label="1.0"), raw_row("2.0", label=" 0.0 ")])
    check_raw_values(source_df, source="x.csv", start=START)
    assert [row.Class for row in cast_raw_columns(source_df).collect()] == [1, 0]
    one = with_transaction_id(cast_raw_columns(raw_frame(spark, [raw_row("1.0", label="1")]))).first()
    one_point_0 = with_transaction_id(cast_raw_columns(source_df)).first()
    assert one.transaction_id == one_point_0.transaction_id


def test_extra_columns_are_accepted_and_reported(spark):
    source_df = raw_frame(spark, [(*raw_row("1.0"), "x")], [*RAW_COLS, "merchant_id"])
    assert check_raw_values(source_df, source="x.csv", start=START).extra_columns == ("merchant_id",)


def test_a_header_that_is_not_utf8_text_is_named_as_an_encoding_problem(spark):
    utf16_header = ["\ufffd\ufffdT\x00i\x00m\x00e\x00", *RAW_COLS[1:]]
    with pytest.raises(SchemaError, match=r"u16\.csv is not UTF-8 text .*check the file's encoding"):
        check_raw_values(raw_frame(spark, [raw_row("1.0")], utf16_header), source="u16.csv", start=START)


def test_check_refuses_a_header_without_rows(spark):
    with pytest.raises(NoDataError, match=r"empty\.csv has a header but no rows"):
        check_raw_values(raw_frame(spark, []), source="empty.csv", start=START)


def test_check_returns_rows_and_days_covered(spark):
    source_df = raw_frame(spark, [raw_row("10.0"), raw_row("90000.0"), raw_row("172800.0")])
    summary = check_raw_values(source_df, source="x.csv", start=START)
    assert (summary.rows, summary.first_day, summary.last_day) == (3, date(2013, 9, 1), date(2013, 9, 3))


def test_prepared_rows_keep_the_values_and_add_lineage(spark):
    ingested_at = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    actual_df = prepare_transactions(
        raw_frame(spark, [raw_row("3600.0", amount="42.5", label="1")]),
        start=START, source_file="day1.csv", ingested_at=ingested_at,
    ).drop("transaction_id")
    expected_df = spark.createDataFrame(
        [(datetime(2013, 9, 1, 1, tzinfo=UTC), date(2013, 9, 1), 3600.0, 0.5, *[0.0] * 27, 42.5, 1, "day1.csv",
          ingested_at)],
        "event_ts timestamp, txn_date date, Time double, "
        + ", ".join(f"V{i} double" for i in range(1, 29))
        + ", Amount double, Class int, source_file string, ingested_at timestamp",
    )
    assert_df_equality(actual_df, expected_df, ignore_nullable=True)
