"""ingest reads its file once, as numbers: the same checks, the same rows and the same ids as
reading it as strings did (ids pinned to the ones earlier versions wrote, so a table ingested
before does not get second copies), and a log a person can follow."""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timezone

import pytest
from chispa import assert_df_equality

from jobs import ingest
from pipelines.core.errors import NoDataError, SchemaError
from pipelines.data.schema import RAW_COLS
from pipelines.data.tables import read_csv_as_strings, read_csv_with_schema
from pipelines.data.transactions import (
    check_raw_values,
    check_values,
    numeric_schema,
    prepare_checked_numbers,
    prepare_transactions,
    repeated_rows,
    with_row_hash,
)
from tests.conftest import SAMPLE_CSV

START = datetime(2013, 9, 1)
INGESTED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)


def raw_line(time: str, amount: str = "10.0", label: str = "0", v1: str = "0.5") -> str:
    """A CSV line: Time, V1..V28, Amount, Class."""
    return ",".join([time, v1, *["0.0"] * 27, amount, label])


def csv_file(tmp_path, lines: list[str], header: str = ",".join(RAW_COLS), name: str = "day.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def read_both(spark, path: str):
    """The file as strings (header and messages) and as numbers (the one pass)."""
    raw = read_csv_as_strings(spark, path)
    return raw, read_csv_with_schema(spark, path, numeric_schema(raw.columns))


def prepared_from_numbers(spark, path: str, *, copies_only: bool = True):
    """As the job does: hashed as read, checked, and (``copies_only``) only the copies numbered;
    otherwise a window numbers every row (what the job does for a file with very many copies)."""
    raw, numbers = read_both(spark, path)
    numbers = with_row_hash(numbers)
    summary = check_values(numbers, raw, source=path, start=START)
    return summary, prepare_checked_numbers(numbers, start=START, source_file="day.csv", ingested_at=INGESTED_AT,
                                            repeated=repeated_rows(numbers) if copies_only else None)


@pytest.mark.parametrize("copies_only", [True, False], ids=["copies numbered", "every row numbered"])
def test_ids_are_the_ones_earlier_versions_wrote(spark, tmp_path, copies_only):
    # Computed by the two-pass ingest (strings, then casts) that wrote the tables before.
    path = csv_file(tmp_path, [raw_line("0"), raw_line("0.0"), raw_line("5.0"), raw_line("5.0"), raw_line("5.0"),
                               raw_line("86399.5", amount="149.62", label="1", v1="-1.3598071336738"),
                               raw_line("1e3", amount=" 2.69 ", label="1.0", v1="8.497679509924107E-4")])
    _, prepared = prepared_from_numbers(spark, path, copies_only=copies_only)
    ids = {}
    for row in prepared.collect():
        ids.setdefault((row.Time, row.V1, row.Amount, row.Class), set()).add(row.transaction_id)
    assert ids == {
        (0.0, 0.5, 10.0, 0): {"0d6319b269b1e07e1ec29960b706d37f", "f11129f1d4e8366927ae8151f02b8858"},
        (5.0, 0.5, 10.0, 0): {"72bcaaf2fb72afcd3caa11d9d1c53de2", "6046df11028fd98fc725661ad17fbfd6",
                              "ae53ebeb63d226e624626c39a0d809d1"},
        (86399.5, -1.3598071336738, 149.62, 1): {"4795de0d631b651fe25d2b475c369b4c"},
        (1000.0, 0.0008497679509924107, 2.69, 1): {"e5d49377c11cb627f9e27c9ab9c2b979"},
    }


@pytest.mark.parametrize("copies_only", [True, False], ids=["copies numbered", "every row numbered"])
def test_the_real_samples_ids_are_the_ones_earlier_versions_wrote(spark, copies_only):
    # Every id of the shipped sample (5,412 rows, 13 groups of exact duplicates, 32 rows in
    # them), as the two-pass ingest computed them: the digest of the sorted ids.
    summary, prepared = prepared_from_numbers(spark, str(SAMPLE_CSV), copies_only=copies_only)
    ids = sorted(row.transaction_id for row in prepared.select("transaction_id").collect())
    assert summary.rows == len(set(ids)) == 5412
    assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == (
        "bdddd661e015179953a5bded1ae94c070b6ed4627ab55ef66e88270f52676946")


def test_numbers_read_as_the_strings_cast_do_whatever_their_spelling(spark, tmp_path):
    spellings = ["0", "-0.0", "1e-400", "0x1p3", "1d", "  7.25 ", "1.0E7", "8.497679509924107E-4", "123456789012345678"]
    path = csv_file(tmp_path, [raw_line(str(i), v1=v1) for i, v1 in enumerate(spellings)])
    raw, _ = read_both(spark, path)
    check_raw_values(raw, source=path, start=START)
    expected_df = prepare_transactions(raw, start=START, source_file="day.csv", ingested_at=INGESTED_AT)
    _, actual_df = prepared_from_numbers(spark, path)
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_columns_in_another_order_and_extra_ones_are_read_by_name(spark, tmp_path):
    header = ",".join(["Class", "merchant_id", *RAW_COLS[:-1]])
    line = ",".join(["1", "m-7", "3600.0", "0.5", *["0.0"] * 27, "42.5"])
    summary, prepared = prepared_from_numbers(spark, csv_file(tmp_path, [line], header=header))
    assert summary.extra_columns == ("merchant_id",)
    row = prepared.first()
    assert (row.Time, row.V1, row.Amount, row.Class, row.txn_date) == (3600.0, 0.5, 42.5, 1, date(2013, 9, 1))


def test_a_bad_value_is_named_as_written_in_the_file(spark, tmp_path):
    path = csv_file(tmp_path, [raw_line("1.0"), raw_line("2.0", amount="12.5 EUR"), raw_line("3.0", v1=""),
                               raw_line("1e15"), raw_line("4.0", label="2"), raw_line("5.0", v1="Infinity")])
    raw, numbers = read_both(spark, path)
    with pytest.raises(SchemaError) as from_numbers:
        check_values(numbers, raw, source=path, start=START)
    with pytest.raises(SchemaError) as from_strings:
        check_raw_values(raw, source=path, start=START)
    assert str(from_numbers.value) == str(from_strings.value)
    for expected in ("Time: 1 bad value(s), e.g. '1e15'", "V1: 2 bad value(s)", "Class: 1 bad value(s), e.g. '2'",
                     "Amount: 1 bad value(s), e.g. '12.5 EUR'"):
        assert expected in str(from_numbers.value)


def test_a_header_without_rows_or_without_a_column_is_refused(spark, tmp_path):
    raw, numbers = read_both(spark, csv_file(tmp_path, [], name="empty.csv"))
    with pytest.raises(NoDataError, match=r"empty\.csv has a header but no rows"):
        check_values(numbers, raw, source="empty.csv", start=START)
    header = ",".join(column for column in RAW_COLS if column != "V7")
    path = csv_file(tmp_path, [",".join(["1"] * (len(RAW_COLS) - 1))], header=header, name="no_v7.csv")
    raw, numbers = read_both(spark, path)
    with pytest.raises(SchemaError, match=r"no_v7\.csv is missing column\(s\) \['V7'\]"):
        check_values(numbers, raw, source=path, start=START)


@pytest.mark.e2e
def test_ingest_logs_its_stages_and_counts_duplicates_as_rows(spark, settings, tmp_path, caplog):
    path = csv_file(tmp_path, [raw_line("1.0"), raw_line("1.0"), raw_line("90000.0")])
    with caplog.at_level(logging.INFO, logger="fraud_scoring"):
        inserted = ingest.run(spark, settings, input_path=path, ingested_at=INGESTED_AT)
    assert inserted == 3
    messages = [record.getMessage() for record in caplog.records]
    assert f"ingest: reading and checking {path} ..." in messages
    assert any(message.startswith("ingest: 3 rows checked, 2013-09-01..2013-09-02, 2 of them in 1 set(s) of "
                                  "exact copies (") and
               message.endswith(f"writing the new ones into {settings.tables.transactions_path} ...")
               for message in messages)
    again = ingest.run(spark, settings, input_path=path, ingested_at=INGESTED_AT)
    assert again == 0
