"""Delta writes: a day is replaced whole and alone; re-ingesting inserts nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable

from pipelines.data.tables import (
    Commit,
    find_commit,
    insert_new_transactions,
    replace_day,
    replace_days,
    rows_per_day,
    sql_date,
)

SCHEMA = "transaction_id string, txn_date date, fraud_probability double"


def test_replace_day_replaces_only_that_day(spark, tmp_path):
    path = str(tmp_path / "scored")
    day1, day2 = date(2013, 9, 1), date(2013, 9, 2)
    replace_day(spark.createDataFrame([("a", day1, 0.1)], SCHEMA), path, day=day1)
    replace_day(spark.createDataFrame([("b", day2, 0.2), ("c", day2, 0.3)], SCHEMA), path, day=day2)
    commit = replace_day(spark.createDataFrame([("b", day2, 0.9)], SCHEMA), path, day=day2)

    actual_df = spark.read.format("delta").load(path)
    expected_df = spark.createDataFrame([("a", day1, 0.1), ("b", day2, 0.9)], SCHEMA)
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)
    assert commit == Commit(version=2, rows=1)


def test_replace_days_writes_a_range_in_one_commit_and_keeps_the_other_days(spark, tmp_path):
    path = str(tmp_path / "scored")
    day1, day2, day3 = date(2013, 9, 1), date(2013, 9, 2), date(2013, 9, 3)
    replace_days(spark.createDataFrame([("a", day1, 0.1), ("b", day2, 0.2), ("c", day3, 0.3)], SCHEMA), path,
                 days=[day1, day2, day3])
    commit = replace_days(spark.createDataFrame([("a", day1, 0.5), ("d", day2, 0.6), ("e", day2, 0.7)], SCHEMA),
                          path, days=[day1, day2])

    assert commit == Commit(version=1, rows=3)
    actual_df = spark.read.format("delta").load(path)
    expected_df = spark.createDataFrame([("a", day1, 0.5), ("d", day2, 0.6), ("e", day2, 0.7), ("c", day3, 0.3)],
                                        SCHEMA)
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)
    assert rows_per_day(actual_df, [day1, day2, date(2013, 9, 4)]) == {day1: 1, day2: 2, date(2013, 9, 4): 0}


def test_a_write_reports_its_own_commit_even_when_another_writer_committed_after_it(spark, tmp_path):
    path = str(tmp_path / "scored")
    day1, day2 = date(2013, 9, 1), date(2013, 9, 2)
    ours = replace_day(spark.createDataFrame([("a", day1, 0.1), ("b", day1, 0.2)], SCHEMA), path, day=day1)
    theirs = replace_day(spark.createDataFrame([("c", day2, 0.3)], SCHEMA), path, day=day2)
    write_id = json.loads(DeltaTable.forPath(spark, path).history().filter("version = 0").first()["userMetadata"])
    assert write_id["job"] == "score"
    assert find_commit(spark, path, write_id["write_id"]) == ours == Commit(version=0, rows=2)
    assert theirs == Commit(version=1, rows=1)


def test_replace_day_refuses_rows_of_another_day_and_writes_nothing(spark, tmp_path):
    path = str(tmp_path / "scored")
    day1 = date(2013, 9, 1)
    replace_day(spark.createDataFrame([("a", day1, 0.1)], SCHEMA), path, day=day1)
    stray = spark.createDataFrame([("x", day1, 0.5), ("y", date(2013, 9, 3), 0.5)], SCHEMA)
    with pytest.raises(Exception, match=r"(?i)replaceWhere|DELTA_REPLACE_WHERE_MISMATCH"):
        replace_day(stray, path, day=day1)
    assert DeltaTable.forPath(spark, path).history().count() == 1


def test_inserting_the_same_rows_twice_keeps_one_copy(spark, tmp_path):
    path = str(tmp_path / "transactions")
    day = date(2013, 9, 1)
    source_df = spark.createDataFrame([("a", day, 1.0), ("b", day, 2.0)], SCHEMA)
    assert insert_new_transactions(spark, source_df, path, first_day=day, last_day=day) == Commit(0, 2)
    more_df = spark.createDataFrame([("b", day, 2.0), ("c", day, 3.0)], SCHEMA)
    assert insert_new_transactions(spark, more_df, path, first_day=day, last_day=day) == Commit(1, 1)
    # Nothing new: Delta makes no commit, and the write says so.
    assert insert_new_transactions(spark, more_df, path, first_day=day, last_day=day) == Commit(None, 0)
    assert DeltaTable.forPath(spark, path).history().count() == 2
    actual_df = spark.read.format("delta").load(path)
    expected_df = spark.createDataFrame([("a", day, 1.0), ("b", day, 2.0), ("c", day, 3.0)], SCHEMA)
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_sql_date_takes_only_real_dates():
    assert sql_date(date(2013, 9, 1)) == "DATE'2013-09-01'"
    with pytest.raises(TypeError):
        sql_date("2013-09-01' OR '1'='1")


def test_two_writers_replacing_the_same_day_at_once_both_finish_and_leave_one_copy(spark, tmp_path):
    path = str(tmp_path / "scored")
    day = date(2013, 9, 1)
    replace_day(spark.createDataFrame([("a", day, 0.1)], SCHEMA), path, day=day)
    first = spark.createDataFrame([("a", day, 0.2), ("b", day, 0.2)], SCHEMA)
    second = spark.createDataFrame([("a", day, 0.3), ("b", day, 0.3)], SCHEMA)
    with ThreadPoolExecutor(max_workers=2) as pool:
        commits = list(pool.map(lambda scored: replace_day(scored, path, day=day), [first, second]))
    assert sorted(commit.version for commit in commits) == [1, 2]
    actual = spark.read.format("delta").load(path)
    assert actual.count() == 2
    # the last commit's rows, whole
    last = max(commits, key=lambda commit: commit.version)
    expected = first if last is commits[0] else second
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_two_ingests_creating_the_table_at_once_keep_every_row_once(spark, tmp_path):
    path = str(tmp_path / "transactions")
    day = date(2013, 9, 1)
    first = spark.createDataFrame([("a", day, 1.0), ("b", day, 2.0)], SCHEMA)
    second = spark.createDataFrame([("b", day, 2.0), ("c", day, 3.0)], SCHEMA)
    with ThreadPoolExecutor(max_workers=2) as pool:
        commits = list(pool.map(lambda rows: insert_new_transactions(spark, rows, path, first_day=day, last_day=day),
                                [first, second]))
    assert sum(commit.rows for commit in commits) == 3
    actual_df = spark.read.format("delta").load(path)
    expected_df = spark.createDataFrame([("a", day, 1.0), ("b", day, 2.0), ("c", day, 3.0)], SCHEMA)
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)
