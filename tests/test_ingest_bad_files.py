"""ingest through ./spark-submit.sh on files that are damaged, or hold values no table or model
can use: exit 2 with the file named, and the table left exactly as it was (checked with
delta-rs, a reader independent of Spark). A file with an extra column is ingested, and the
log says which column was left out."""

from __future__ import annotations

import gzip

import pytest
from deltalake import DeltaTable, QueryBuilder

from jobs import ingest
from pipelines.core.config import load_settings
from tests.test_end_to_end import INGESTED_AT, conf_file, sample_lines, submit, write_csv

pytestmark = pytest.mark.e2e


def table_state(path: str) -> tuple[int, int]:
    """(Delta version, rows) of the table at ``path``, read with delta-rs."""
    table = DeltaTable(path)
    count = QueryBuilder().register("t", table).execute("SELECT count(*) AS n FROM t").read_all()
    return table.version(), count.column("n")[0].as_py()


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A transactions table of 20 real rows, and the conf file that points at it."""
    folder = tmp_path_factory.mktemp("bad_files")
    conf = conf_file(folder)
    header, rows = sample_lines(20)
    ingest.run(spark, load_settings(str(conf)), input_path=write_csv(folder / "good.csv", header, rows),
               ingested_at=INGESTED_AT)
    path = str(folder / "lake" / "transactions")
    assert table_state(path) == (0, 20)
    return folder, conf, path


def replaced(line: str, header: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[header.split(",").index(column)] = value
    return ",".join(fields)


def test_a_truncated_gzip_file_exits_2_naming_it_and_writes_nothing(lake):
    folder, conf, path = lake
    header, rows = sample_lines(2000)
    full = gzip.compress(("\n".join([header, *rows]) + "\n").encode())
    truncated = folder / "truncated.csv.gz"
    truncated.write_bytes(full[: len(full) // 2])
    result = submit("ingest", "--input", str(truncated), conf=conf)
    assert result.returncode == 2, result.output[-3000:]
    assert f"error: cannot read {truncated}: java.io.EOFException" in result.output
    assert "Traceback" not in result.output and "\tat org.apache" not in result.output
    assert table_state(path) == (0, 20)


def test_a_file_that_is_not_gzip_at_all_exits_2(lake):
    folder, conf, path = lake
    fake = folder / "not_gzip.csv.gz"
    fake.write_text("Time,V1\n1,2\n")
    result = submit("ingest", "--input", str(fake), conf=conf)
    assert result.returncode == 2, result.output[-3000:]
    assert f"error: cannot read {fake}: java.io.IOException: not a gzip file" in result.output
    assert table_state(path) == (0, 20)


def test_values_a_table_or_a_model_cannot_use_exit_2_naming_column_count_and_example(lake):
    folder, conf, path = lake
    header, rows = sample_lines(25)
    bad_rows = [rows[20],
                replaced(rows[21], header, "Class", "1e20"),  # no int: hashed as the file is read, must not fail it
                replaced(rows[22], header, "Amount", "Infinity"),
                replaced(rows[23], header, "Time", "1e15"),   # an event in the year 31 million
                replaced(rows[24], header, "V2", "-1e999")]
    bad = write_csv(folder / "unusable.csv", header, bad_rows)
    result = submit("ingest", "--input", bad, conf=conf)
    assert result.returncode == 2, result.output[-3000:]
    assert f"error: {bad} has values that are not finite numbers" in result.output
    for expected in ("Amount: 1 bad value(s), e.g. 'Infinity'", "Time: 1 bad value(s), e.g. '1e15'",
                     "V2: 1 bad value(s), e.g. '-1e999'", "Class: 1 bad value(s), e.g. '1e20'"):
        assert expected in result.output
    assert "Traceback" not in result.output and "OverflowError" not in result.output
    assert table_state(path) == (0, 20)


def test_an_extra_column_is_ingested_without_it_and_named_in_the_log_and_class_1_0_is_1(lake, spark):
    folder, conf, path = lake
    header, rows = sample_lines(22)
    fraud = replaced(rows[21], header, "Class", "1.0")
    extra = write_csv(folder / "extra.csv", header + ",merchant_id",
                      [rows[20] + ",m-1", fraud + ",m-2"])
    result = submit("ingest", "--input", extra, conf=conf)
    assert result.returncode == 0, result.output[-3000:]
    assert f"{extra} has column(s) outside the dataset's format, not ingested: merchant_id" in result.output
    assert "ignored column(s): merchant_id" in result.output
    assert table_state(path) == (1, 22)
    table = spark.read.format("delta").load(path)
    assert "merchant_id" not in table.columns
    assert table.filter("source_file = 'extra.csv' AND Class = 1").count() == 1
