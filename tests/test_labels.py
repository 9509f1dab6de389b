"""Late labels (chargebacks): a label file is checked whole, merged in one commit that only
inserts and changes what differs, and the effective labels and their per-day fingerprints
follow the newest label."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable

from jobs import label
from pipelines.core.cli import run_main
from pipelines.core.errors import NoDataError, SchemaError, UnreadableInputError
from pipelines.data.tables import commit_history
from pipelines.monitoring.labels import (
    check_label_file,
    labelled_rows,
    labels_fingerprints,
    merge_labels,
    read_labels,
)
from tests.test_end_to_end import conf_file, submit, write_csv

DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)
FIRST_AT = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)
LATER_AT = datetime(2026, 12, 20, 6, 0, tzinfo=timezone.utc)
# The columns of ``transactions`` that labels read (the table has the dataset's others too).
TRANSACTIONS_SCHEMA = "transaction_id string, txn_date date, Amount double, Class int"
TRANSACTIONS = [("t1", DAY1, 10.0, 0), ("t2", DAY1, 20.0, 0), ("t3", DAY1, 30.0, 1), ("t4", DAY2, 40.0, 0)]


def write_transactions(spark, path: str) -> None:
    spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA).write.format("delta").partitionBy("txn_date").save(path)


@pytest.fixture
def lake(spark, settings):
    """A four-row ``transactions`` table; the labels table's path (no table there yet)."""
    write_transactions(spark, settings.tables.transactions_path)
    transactions = spark.read.format("delta").load(settings.tables.transactions_path)
    return transactions, settings.tables.path(settings.tables.labels)


def merge_file(spark, transactions, labels_path: str, file: str, *, at: datetime = FIRST_AT):
    checked = check_label_file(spark, file, transactions)
    return merge_labels(spark, checked, labels_path, labelled_at=at, source_file=Path(file).name)


def labels_of(spark, path: str):
    return spark.read.format("delta").load(path).select("transaction_id", "Class", "source_file")


def test_merge_inserts_new_ids_updates_changed_labels_and_leaves_the_rest(spark, lake, tmp_path):
    transactions, path = lake
    first = write_csv(tmp_path / "first.csv", "transaction_id,Class", ["t1,1", "t2,0"])
    second = write_csv(tmp_path / "second.csv", "Class,transaction_id", ["1,t1", "1,t2", "1,t4", "1.0,t4"])

    created = merge_file(spark, transactions, path, first)
    changes = merge_file(spark, transactions, path, second, at=LATER_AT)

    assert (created.inserted, created.updated, created.unchanged, created.version) == (2, 0, 0, 0)
    # t4 appears twice with the same label ("1.0" is 1): one label, not a conflict.
    assert (changes.inserted, changes.updated, changes.unchanged, changes.version) == (1, 1, 1, 1)
    expected_df = spark.createDataFrame(
        [("t1", 1, "first.csv"), ("t2", 1, "second.csv"), ("t4", 1, "second.csv")],
        "transaction_id string, Class int, source_file string")
    assert_df_equality(labels_of(spark, path), expected_df, ignore_row_order=True, ignore_nullable=True)
    # The unchanged label keeps when it was first given.
    assert spark.read.format("delta").load(path).filter("transaction_id = 't1'").first()["labelled_at"] == \
        FIRST_AT.replace(tzinfo=None)
    history = commit_history(spark, path)
    assert [(commit.version, commit.operation, commit.metadata["job"], commit.metadata["source_file"])
            for commit in history] == [(1, "MERGE", "label", "second.csv"), (0, "WRITE", "label", "first.csv")]
    properties = DeltaTable.forPath(spark, path).detail().first()["properties"]
    assert properties["delta.enableChangeDataFeed"] == "true"


def test_merging_the_same_file_again_changes_nothing_and_makes_no_commit(spark, lake, tmp_path):
    transactions, path = lake
    first = write_csv(tmp_path / "first.csv", "transaction_id,Class", ["t1,1"])
    second = write_csv(tmp_path / "second.csv", "transaction_id,Class", ["t1,1", "t2,1"])
    merge_file(spark, transactions, path, first)
    merge_file(spark, transactions, path, second)

    again = merge_file(spark, transactions, path, second, at=LATER_AT)

    assert (again.inserted, again.updated, again.unchanged, again.version) == (0, 0, 2, None)
    assert [commit.version for commit in commit_history(spark, path)] == [1, 0]


def test_labelled_rows_take_the_late_label_where_there_is_one(spark):
    transactions = spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA)
    labels = spark.createDataFrame([("t1", 1), ("t3", 0)], "transaction_id string, Class int")

    actual_df = labelled_rows(transactions, labels)

    expected_df = spark.createDataFrame(
        [("t1", DAY1, 10.0, 1), ("t2", DAY1, 20.0, 0), ("t3", DAY1, 30.0, 0), ("t4", DAY2, 40.0, 0)],
        "transaction_id string, txn_date date, Amount double, label int")
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_labelled_rows_without_a_labels_table_are_the_ingested_labels(spark):
    transactions = spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA)

    actual_df = labelled_rows(transactions, None)

    expected_df = spark.createDataFrame(
        [("t1", DAY1, 10.0, 0), ("t2", DAY1, 20.0, 0), ("t3", DAY1, 30.0, 1), ("t4", DAY2, 40.0, 0)],
        "transaction_id string, txn_date date, Amount double, label int")
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_read_labels_is_none_before_the_first_label(spark, settings):
    assert read_labels(spark, settings.tables.path(settings.tables.labels)) is None


def fingerprints(spark, labels: list[tuple[str, int]], *, partitions: int = 1) -> dict[date, str]:
    transactions = spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA).repartition(partitions)
    late = spark.createDataFrame(labels, "transaction_id string, Class int") if labels else None
    rows = labels_fingerprints(labelled_rows(transactions, late)).collect()
    return {row["txn_date"]: row["labels_fingerprint"] for row in rows}


def test_a_days_fingerprint_changes_exactly_when_one_of_its_labels_changes(spark):
    before = fingerprints(spark, [])
    again = fingerprints(spark, [("t1", 0)], partitions=3)  # the same labels, spread differently
    one_changed = fingerprints(spark, [("t1", 1)])
    # Two changes that keep the day's row and fraud counts (t1 0 -> 1, t3 1 -> 0).
    swapped = fingerprints(spark, [("t1", 1), ("t3", 0)])

    assert again == before
    assert before[DAY1].startswith("3:1:") and before[DAY2].startswith("1:0:")
    assert one_changed[DAY1].startswith("3:2:") and one_changed[DAY2] == before[DAY2]
    assert swapped[DAY1].startswith("3:1:") and swapped[DAY1] != before[DAY1] and swapped[DAY2] == before[DAY2]


def test_fingerprints_also_give_each_days_labelled_rows_and_frauds(spark):
    transactions = spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA)

    actual_df = labels_fingerprints(labelled_rows(transactions, None)).drop("labels_fingerprint")

    expected_df = spark.createDataFrame([(DAY1, 3, 1), (DAY2, 1, 0)],
                                        "txn_date date, labelled_rows long, frauds long")
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


UNKNOWN_IDS = [f"x{n}" for n in range(7)]


@pytest.mark.parametrize(
    ("header", "rows", "error", "message"),
    [
        ("transaction_id,Class", ["t1,1", "t9,0"], SchemaError, r"1 transaction_id\(s\) not in transactions: 't9'$"),
        ("transaction_id,Class", ["t1,1", *(f"{id_},1" for id_ in UNKNOWN_IDS)], SchemaError,
         r"7 transaction_id\(s\) not in transactions: 'x0', 'x1', 'x2', 'x3', 'x4' and 2 more$"),
        ("transaction_id,Class", ["t1,1", "t2,2"], SchemaError,
         r"values that are not labels .*Class: 1 bad value\(s\), e.g. '2'"),
        ("transaction_id,Class", ["t1,yes", "t2,"], SchemaError, r"Class: 2 bad value\(s\), e.g. 'yes'"),
        ("transaction_id,Class", ["t1,1", " ,0"], SchemaError, r"transaction_id: 1 empty value\(s\)"),
        ("transaction_id,Class", ["t1,1", "t2,0", "t1,0"], SchemaError,
         r"1 transaction_id\(s\) labelled both 0 and 1, e.g. 't1'$"),
        ("transaction_id", ["t1"], SchemaError, r"missing column\(s\) \['Class'\]; it has \['transaction_id'\]"),
        ("transaction_id,Class,note", ["t1,1,card stolen"], SchemaError, r"column\(s\) not in the format \['note'\]"),
        ("transaction_id,Class", [], NoDataError, r"has a header but no rows"),
    ],
    ids=["unknown id", "seven unknown ids", "Class 2", "Class not a number", "empty id", "conflicting duplicate",
         "missing column", "extra column", "header only"],
)
def test_a_bad_label_file_is_refused_naming_the_problem_and_nothing_is_written(
        spark, settings, tmp_path, header, rows, error, message):
    write_transactions(spark, settings.tables.transactions_path)
    bad = write_csv(tmp_path / "bad.csv", header, rows)

    with pytest.raises(error, match=message) as refused:
        label.run(spark, settings, file=bad, labelled_at=FIRST_AT)

    assert str(refused.value).startswith(bad)
    assert read_labels(spark, settings.tables.path(settings.tables.labels)) is None


def test_a_bad_file_leaves_an_existing_labels_table_as_it_was(spark, lake, tmp_path):
    transactions, path = lake
    merge_file(spark, transactions, path, write_csv(tmp_path / "good.csv", "transaction_id,Class", ["t1,1"]))
    bad = write_csv(tmp_path / "bad.csv", "transaction_id,Class", ["t2,1", "t9,1"])

    with pytest.raises(SchemaError, match="not in transactions: 't9'"):
        merge_file(spark, transactions, path, bad)

    assert [commit.version for commit in commit_history(spark, path)] == [0]


def test_a_truncated_gzip_label_file_is_unreadable_input(spark, lake, tmp_path):
    transactions, path = lake
    text = "\n".join(["transaction_id,Class", *(f"t{n % 4 + 1},{n % 4 == 2:d}" for n in range(20_000))]) + "\n"
    compressed = gzip.compress(text.encode())
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(compressed[: len(compressed) // 2])

    with pytest.raises(UnreadableInputError, match=rf"cannot read {truncated}: java.io.EOFException"):
        merge_file(spark, transactions, path, str(truncated))

    assert read_labels(spark, path) is None


@pytest.mark.e2e
def test_the_label_job_exits_0_with_what_changed_then_2_on_a_bad_file(spark, tmp_path, monkeypatch, capsys):
    conf = conf_file(tmp_path)
    write_transactions(spark, str(tmp_path / "lake" / "transactions"))
    good = write_csv(tmp_path / "chargebacks.csv", "transaction_id,Class", ["t1,1", "t3,1"])
    bad = write_csv(tmp_path / "bad.csv", "transaction_id,Class", ["t1,0", "t9,1"])

    done = submit("label", "--file", good, conf=conf)
    # The refusal in this process (a second spark-submit would take about 25 s more); the
    # job's own main and exit code, on this session.
    monkeypatch.setattr(label, "get_spark", lambda _settings: spark)
    refused = run_main(label.main, ["--file", bad, "--env", str(conf)])

    assert done.returncode == 0, done.output[-3000:]
    assert f"label: {good}: 2 new labels, 0 changed, 0 unchanged -> labels version 0" in done.output
    assert refused == 2
    assert capsys.readouterr().err == f"error: {bad}: 1 transaction_id(s) not in transactions: 't9'\n"
    history = commit_history(spark, str(tmp_path / "lake" / "labels"))
    assert [(commit.version, commit.metadata["job"]) for commit in history] == [(0, "label")]
