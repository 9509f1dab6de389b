"""`sql` is read-only by construction: only a single query reaches the engine.

Every statement that writes, drops, alters, creates or configures, however it is spelled or
nested, and every query that calls out of the engine (reflect, java_method, try_reflect,
TRANSFORM ... USING), is refused with a named error before anything runs: no Spark job starts
and no Delta table gets a new version. Queries still run and give their rows. The last tests do
the same through ./spark-submit.sh, as an analyst would.
"""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import functions as F

from jobs import ingest, sql
from pipelines.core.config import PROJECT_ROOT
from pipelines.core.errors import InvalidArgumentError
from pipelines.data.read_only_sql import NotAQueryError
from tests.conftest import SAMPLE_CSV, settings_in
from tests.test_end_to_end import conf_file, submit

INGESTED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
SAMPLE_ROWS = 30  # the sample's first rows: both days, a few frauds
START = date(2013, 9, 1)  # [ingest] start in conf/local.toml
REFUSED = "sql runs queries only (SELECT, WITH, VALUES, TABLE)"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A small `transactions` table ingested from the sample, and a `scored_transactions` table
    that flags exactly the frauds, in a temporary folder; with the expected figures per day,
    counted from the CSV text itself."""
    folder = tmp_path_factory.mktemp("sql_read_only")
    with gzip.open(SAMPLE_CSV, "rt") as sample:
        lines = [sample.readline() for _ in range(SAMPLE_ROWS + 1)]
    csv = folder / "small.csv"
    csv.write_text("".join(lines))
    settings = settings_in(folder)
    ingest.run(spark, settings, input_path=str(csv), ingested_at=INGESTED_AT)

    scored = (
        spark.read.format("delta").load(settings.tables.transactions_path)
        .select("transaction_id", "txn_date",
                F.when(F.col("Class") == 1, 0.9).otherwise(0.1).alias("fraud_probability"))
        .withColumns({"is_fraud": F.col("fraud_probability") >= 0.5, "threshold": F.lit(0.5),
                      "model_name": F.lit("fraud_detector"), "model_version": F.lit("1"),
                      "model_run_id": F.lit("run"), "model_uri": F.lit("models:/fraud_detector/1"),
                      "source_table_version": F.lit(0).cast("long"),
                      "scored_at": F.lit(datetime(2026, 11, 25, 2, 0))})
    )
    scored.write.format("delta").partitionBy("txn_date").save(settings.tables.scored_path)

    rows_per_day: dict[date, int] = {}
    frauds_per_day: dict[date, int] = {}
    for line in lines[1:]:
        fields = line.strip().split(",")
        day = START + timedelta(seconds=float(fields[0]))
        rows_per_day[day] = rows_per_day.get(day, 0) + 1
        frauds_per_day[day] = frauds_per_day.get(day, 0) + int(fields[-1] == "1")
    assert len(rows_per_day) == 2 and sum(frauds_per_day.values()) > 0  # the slice is what we think
    return SimpleNamespace(folder=folder, settings=settings, rows_per_day=rows_per_day,
                           frauds_per_day=frauds_per_day, frauds=sum(frauds_per_day.values()))


def delta_version(table_path: str) -> int:
    """The table's version as its log says: the number of the newest commit file."""
    return max(int(commit.stem) for commit in (Path(table_path) / "_delta_log").glob("*.json"))


def table_versions(settings) -> tuple[int, int]:
    return delta_version(settings.tables.transactions_path), delta_version(settings.tables.scored_path)


# (statement, what the refusal says about it)
NOT_QUERIES = [
    ("DELETE FROM transactions WHERE Class = 1", "is a DELETE statement"),
    ("delete from transactions", "is a DELETE statement"),
    ("DeLeTe FrOm transactions WHERE Class = 1", "is a DELETE statement"),
    ("  -- tidy up\n/* frauds */ DELETE\n\tFROM transactions WHERE Class = 1 ;", "is a DELETE statement"),
    ("UPDATE scored_transactions SET is_fraud = false", "is an UPDATE statement"),
    ("MERGE INTO transactions t USING transactions s ON t.transaction_id = s.transaction_id "
     "WHEN MATCHED THEN DELETE", "is a MERGE INTO statement"),
    ("INSERT INTO transactions SELECT * FROM transactions", "is an INSERT INTO statement"),
    ("INSERT OVERWRITE transactions SELECT * FROM transactions WHERE Class = 0",
     "is an INSERT OVERWRITE statement"),
    ("WITH normal AS (SELECT * FROM transactions WHERE Class = 0) "
     "INSERT OVERWRITE transactions SELECT * FROM normal", "is an INSERT OVERWRITE statement"),
    ("FROM transactions INSERT INTO transactions SELECT * INSERT INTO scored_transactions SELECT *",
     "is an INSERT INTO statement"),
    ("INSERT OVERWRITE DIRECTORY '/tmp/sql_read_only_out' USING parquet SELECT * FROM transactions",
     "is an INSERT OVERWRITE DIRECTORY statement"),
    ("CREATE TABLE copy (id STRING) USING delta", "is a CREATE TABLE statement"),
    ("CREATE TABLE copy USING delta AS SELECT * FROM transactions", "is a CREATE TABLE AS SELECT statement"),
    ("CREATE VIEW frauds AS SELECT * FROM transactions WHERE Class = 1", "is a CREATE VIEW statement"),
    ("CREATE OR REPLACE TEMP VIEW transactions AS SELECT * FROM transactions WHERE Class = 0",
     "is a CREATE VIEW statement"),
    ("DROP TABLE transactions", "is a DROP TABLE statement"),
    ("DROP VIEW IF EXISTS transactions", "is a DROP VIEW statement"),
    ("ALTER TABLE transactions ADD COLUMNS (note STRING)", "is an ADD COLUMNS statement"),
    ("ALTER TABLE transactions SET TBLPROPERTIES ('delta.logRetentionDuration' = 'interval 1 hours')",
     "is a SET TABLE PROPERTIES statement"),
    ("TRUNCATE TABLE transactions", "is a TRUNCATE TABLE statement"),
    ("REPLACE TABLE transactions (id STRING) USING delta", "is a REPLACE TABLE statement"),
    ("CACHE TABLE transactions", "is a CACHE TABLE statement"),
    ("UNCACHE TABLE transactions", "is an UNCACHE TABLE statement"),
    ("REFRESH TABLE transactions", "is a REFRESH TABLE statement"),
    ("SET spark.sql.ansi.enabled = false", "is a SET statement"),
    ("RESET", "is a RESET statement"),
    ("ADD JAR /tmp/anything.jar", "is an ADD JAR statement"),
    ("VACUUM transactions RETAIN 0 HOURS", "is a VACUUM statement"),
    ("OPTIMIZE transactions", "is an OPTIMIZE statement"),
    ("RESTORE TABLE transactions TO VERSION AS OF 0", "is a RESTORE TABLE statement"),
    ("CONVERT TO DELTA parquet.`/tmp/sql_read_only_parquet`", "is a CONVERT TO DELTA statement"),
    ("DESCRIBE HISTORY transactions", "is a DESCRIBE HISTORY statement"),
    ("EXPLAIN DELETE FROM transactions WHERE Class = 1", "is an EXPLAIN statement"),
    ("EXECUTE IMMEDIATE 'DELETE FROM transactions WHERE Class = 1'", "is an EXECUTE IMMEDIATE statement"),
    ("BEGIN DELETE FROM transactions WHERE Class = 1; END", "does not parse as a query"),
    # Queries that call out of the engine, however deep the call sits.
    ("SELECT * FROM transactions WHERE Amount > (SELECT max(CAST(reflect('java.lang.System', "
     "'currentTimeMillis') AS DOUBLE)))", "calls reflect"),
    ("SELECT transaction_id, (SELECT java_method('java.lang.Thread', 'sleep', 1000L)) FROM transactions",
     "calls java_method"),
    ("WITH slow AS (SELECT TRY_REFLECT('java.lang.Thread', 'sleep', 1000L) AS nothing) SELECT * FROM slow",
     "calls try_reflect"),
    ("SELECT id FROM range(2) LATERAL VIEW explode(array(`reflect`('java.lang.String', 'valueOf', 1))) v AS w",
     "calls reflect"),
    ("SELECT * FROM range(2) r WHERE EXISTS (SELECT 1 FROM range(1) WHERE id IN "
     "(SELECT JAVA_METHOD('java.lang.String', 'valueOf', r.id)))", "calls java_method"),
    ("SELECT transform(array(1), x -> reflect('java.lang.String', 'valueOf', x))", "calls reflect"),
    # A name that only becomes `reflect` when Spark resolves it: caught after analysis.
    ("SELECT IDENTIFIER('java_' || 'method')('java.lang.Thread', 'sleep', 1000L)", "calls reflect"),
    ("SELECT TRANSFORM(transaction_id) USING 'touch /tmp/sql_read_only_pwned' AS (x) FROM transactions",
     "calls TRANSFORM ... USING"),
]


@pytest.mark.parametrize(("statement", "said"), NOT_QUERIES, ids=[s[:40] for s, _ in NOT_QUERIES])
def test_a_statement_that_is_not_a_plain_query_is_refused_before_anything_runs(spark, lake, statement, said):
    versions_before = table_versions(lake.settings)
    jobs_before = set(spark.sparkContext.statusTracker().getJobIdsForGroup())
    with pytest.raises(NotAQueryError) as refused:
        sql.run(spark, lake.settings, query=statement)
    message = str(refused.value)
    assert message.startswith(f"{REFUSED}; ")
    assert said in message
    assert message.endswith("and was not run. Tables change only through the jobs (ingest, score, train).")
    assert refused.value.exit_code == 2
    assert set(spark.sparkContext.statusTracker().getJobIdsForGroup()) == jobs_before, "a Spark job ran"
    assert table_versions(lake.settings) == versions_before
    assert not Path("/tmp/sql_read_only_pwned").exists()


def test_two_statements_in_one_text_do_not_parse_and_nothing_runs(spark, lake):
    versions_before = table_versions(lake.settings)
    with pytest.raises(InvalidArgumentError) as failed:
        sql.run(spark, lake.settings, query="SELECT 1; DELETE FROM transactions WHERE Class = 1")
    assert "PARSE_SYNTAX_ERROR" in str(failed.value)
    assert "(tables available: transactions, scored_transactions)" in str(failed.value)
    assert table_versions(lake.settings) == versions_before


def test_a_script_stays_refused_when_sql_scripting_is_enabled(spark, lake):
    versions_before = table_versions(lake.settings)
    spark.conf.set("spark.sql.scripting.enabled", "true")
    try:
        for script in ("BEGIN DELETE FROM transactions WHERE Class = 1; END",
                       "BEGIN SELECT 1; DELETE FROM transactions WHERE Class = 1; END"):
            with pytest.raises(NotAQueryError, match="and was not run"):
                sql.run(spark, lake.settings, query=script)
    finally:
        spark.conf.unset("spark.sql.scripting.enabled")
    assert table_versions(lake.settings) == versions_before


def test_queries_run_and_give_their_rows(spark, lake):
    rows = sum(lake.rows_per_day.values())
    day1, day2 = sorted(lake.rows_per_day)
    queries = {
        "SELECT count(*) FROM transactions": [(rows,)],
        "select count(*) from transactions;\n": [(rows,)],
        "WITH frauds AS (SELECT * FROM transactions WHERE Class = 1) SELECT count(*) FROM frauds": [(lake.frauds,)],
        "VALUES (1, 'a'), (2, 'b')": [(1, "a"), (2, "b")],
        "SELECT count(*) FROM (TABLE transactions)": [(rows,)],
        "FROM transactions SELECT txn_date, count(*) GROUP BY txn_date ORDER BY txn_date":
            [(day1, lake.rows_per_day[day1]), (day2, lake.rows_per_day[day2])],
        "SELECT count(*) FROM transactions WHERE transaction_id IN "
        "(SELECT transaction_id FROM scored_transactions WHERE is_fraud)": [(lake.frauds,)],
        "SELECT abs(-1), upper('reflect')": [(1, "REFLECT")],  # the word alone is no call
    }
    for query, expected in queries.items():
        actual = [tuple(row) for row in sql.run(spark, lake.settings, query=query).collect()]
        assert actual == expected, query
    assert [tuple(row) for row in sql.run(spark, lake.settings, query="TABLE transactions")
            .select("transaction_id").distinct().groupBy().count().collect()] == [(rows,)]


def test_the_daily_summary_query_runs(spark, lake):
    query = (PROJECT_ROOT / "queries" / "daily_summary.sql").read_text()
    summary = sql.run(spark, lake.settings, query=query).collect()
    actual = [(row.txn_date, row.scored_rows, row.predicted_frauds, row.actual_frauds, row.caught_frauds)
              for row in summary]
    expected = [(day, lake.rows_per_day[day], lake.frauds_per_day[day], lake.frauds_per_day[day],
                 lake.frauds_per_day[day]) for day in sorted(lake.rows_per_day)]
    assert actual == expected


def row_counts(spark, lake) -> tuple[int, int]:
    """Rows and frauds of `transactions`, read straight from its Delta folder."""
    table = spark.read.format("delta").load(lake.settings.tables.transactions_path)
    return table.count(), table.filter(F.col("Class") == 1).count()


@pytest.mark.e2e
@pytest.mark.parametrize(("statement", "said"), [
    ("DELETE FROM transactions WHERE Class = 1", "is a DELETE statement"),
    ("UPDATE scored_transactions SET is_fraud = NOT is_fraud", "is an UPDATE statement"),
])
def test_a_write_through_spark_submit_exits_2_and_leaves_the_tables_as_they_were(spark, lake, statement, said):
    versions_before = table_versions(lake.settings)
    counts_before = row_counts(spark, lake)
    result = submit("sql", statement, conf=conf_file(lake.folder))
    assert result.returncode == 2, result.output[-2000:]
    assert f"error: {REFUSED}; {statement!r} {said} and was not run." in result.output
    assert "Traceback" not in result.output
    assert table_versions(lake.settings) == versions_before
    assert row_counts(spark, lake) == counts_before == (SAMPLE_ROWS, lake.frauds)


@pytest.mark.e2e
def test_a_query_through_spark_submit_exits_0_and_prints_its_rows(lake):
    result = submit("sql", "SELECT txn_date, count(*) AS n FROM transactions GROUP BY txn_date ORDER BY txn_date",
                    conf=conf_file(lake.folder))
    assert result.returncode == 0, result.output[-2000:]
    table = result.output.replace(" ", "")  # show() pads the cells
    assert "|txn_date|n|" in table
    for day, rows in lake.rows_per_day.items():
        assert f"|{day}|{rows}|" in table
