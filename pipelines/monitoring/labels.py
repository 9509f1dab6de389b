"""Labels that arrive after ingest (chargebacks): checked, merged into the Delta table ``labels``,
and combined with the labels ``transactions`` was ingested with.

``transactions.Class`` is the label as known at ingest; fraud is often only known weeks later.
A label file (``transaction_id,Class``) is checked whole before anything is written, then merged
in one commit: new ids are inserted, ids whose label changed are updated, the rest is left
alone, so the same file twice changes nothing. A transaction's effective label is the
``labels`` table's where it has one, else its ``Class``. Monitoring measures a day's realized
performance from those labels, and :func:`labels_fingerprints` tells it when a day's labels
changed since it last measured them.

Example::

    checked = check_label_file(spark, "chargebacks.csv", transactions)
    changes = merge_labels(spark, checked, settings.tables.path(settings.tables.labels),
                           labelled_at=now, source_file="chargebacks.csv")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.core.clock import as_utc
from pipelines.core.errors import NoDataError, SchemaError
from pipelines.data.schema import LABEL_COL, TRANSACTION_ID, TXN_DATE
from pipelines.data.tables import (
    CHANGE_FEED_PROPERTY,
    _commit_metadata,
    _is_conflict,
    _session_conf,
    _with_retries,
    find_commit,
    is_delta_table,
    read_csv_as_strings,
    reading_input,
)

# transaction_id is a string in ``transactions`` (32 hex characters of a SHA-256).
LABELS_SCHEMA = "transaction_id string, Class int, labelled_at timestamp, source_file string"
# What a label file holds, and nothing else.
LABEL_FILE_COLS = [TRANSACTION_ID, LABEL_COL]
# How many ids a refusal names at most.
EXAMPLES = 5
JOB = "label"
_LABELLED_AT, _SOURCE_FILE = "labelled_at", "source_file"


@dataclass(frozen=True)
class LabelChanges:
    """What one merge of a label file did: labels inserted (ids not labelled before), updated
    (a different label than the table held), unchanged, and the Delta version of its commit
    (None when nothing changed, so no commit was made)."""

    inserted: int
    updated: int
    unchanged: int
    version: int | None


def _class_value(raw: Column) -> Column:
    # As ingest reads Class: through double, so "1.0" (and " 1 ") is 1 under ANSI casts too.
    return F.trim(raw).try_cast("double")


def check_label_file(spark: SparkSession, path: str, transactions: DataFrame) -> DataFrame:
    """Read and check the label file at ``path``; return its labels, one row per id.

    The file is a CSV with a header of exactly ``transaction_id`` and ``Class`` (either order).
    Every ``Class`` must be 0 or 1 (``1.0`` is 1, as ingest reads it), every ``transaction_id``
    non-empty and in ``transactions``; an id may appear twice only with the same label. Two
    Spark passes over the file: its values, then its ids against ``transactions``.

    :param transactions: the ``transactions`` table (only ``transaction_id`` is read).
    :returns: ``transaction_id`` (trimmed), ``Class`` (int); exact duplicates once.
    :raises SchemaError: a column missing or not in the format (each named, with the columns
        the file has); a bad ``Class`` or an empty id (how many, one bad value); an id labelled
        both 0 and 1 (how many, one id); ids not in ``transactions`` (how many, up to five).
    :raises NoDataError: the file has a header but no rows, or is empty.
    :raises UnreadableInputError: the file is damaged (a truncated ``.gz``) or unreadable.
    :raises InvalidArgumentError: there is no file at ``path``.

    Example::

        checked = check_label_file(spark, "chargebacks.csv", spark.read.format("delta").load(path))
    """
    with reading_input(path):
        raw = read_csv_as_strings(spark, path)
        _check_columns(raw.columns, source=path)
        _check_values(raw, source=path)
        labels = raw.select(F.trim(F.col(TRANSACTION_ID)).alias(TRANSACTION_ID),
                            _class_value(F.col(LABEL_COL)).cast("int").alias(LABEL_COL))
        _check_ids(labels, transactions, source=path)
    return labels.distinct()


def _check_columns(columns: list[str], *, source: str) -> None:
    if not columns:
        raise NoDataError(f"{source} is empty: a label file has a header transaction_id,Class and one row per label")
    missing = [column for column in LABEL_FILE_COLS if column not in columns]
    extra = [column for column in columns if column not in LABEL_FILE_COLS]
    if missing or extra:
        problems = ([f"missing column(s) {missing}"] if missing else []) + (
            [f"column(s) not in the format {extra}"] if extra else [])
        raise SchemaError(f"{source} is not a label file (columns transaction_id and Class, nothing else): "
                          f"{'; '.join(problems)}; it has {columns}")


def _check_values(raw: DataFrame, *, source: str) -> None:
    """One aggregation: the row count, bad ``Class`` values (with one) and empty ids."""
    number = _class_value(F.col(LABEL_COL))
    bad_class = number.isNull() | ~number.isin(0.0, 1.0)
    trimmed_id = F.trim(F.col(TRANSACTION_ID))
    empty_id = trimmed_id.isNull() | (trimmed_id == "")
    summary = raw.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(bad_class.cast("int")).alias("bad_class"),
        F.first(F.when(bad_class, F.coalesce(F.col(LABEL_COL), F.lit("<empty>"))), ignorenulls=True)
        .alias("example_class"),
        F.sum(empty_id.cast("int")).alias("empty_ids"),
    ).first()
    if not summary["rows"]:
        raise NoDataError(f"{source} has a header but no rows")
    problems = []
    if summary["bad_class"]:
        problems.append(f"{LABEL_COL}: {summary['bad_class']} bad value(s), e.g. {summary['example_class']!r}")
    if summary["empty_ids"]:
        problems.append(f"{TRANSACTION_ID}: {summary['empty_ids']} empty value(s)")
    if problems:
        raise SchemaError(f"{source} has values that are not labels ({LABEL_COL} 0 or 1, "
                          f"{TRANSACTION_ID} not empty): " + "; ".join(problems))


def _check_ids(labels: DataFrame, transactions: DataFrame, *, source: str) -> None:
    """One query: ids labelled both 0 and 1, and ids ``transactions`` does not hold; for each,
    how many and the first few (in id order, so a refusal reads the same each time)."""
    per_id = labels.groupBy(TRANSACTION_ID).agg(F.countDistinct(LABEL_COL).alias("_labels"))
    conflicting = per_id.filter(F.col("_labels") > 1).select(TRANSACTION_ID, F.lit("conflicting").alias("_problem"))
    unknown = (per_id.join(transactions.select(TRANSACTION_ID), TRANSACTION_ID, "left_anti")
               .select(TRANSACTION_ID, F.lit("unknown").alias("_problem")))
    # Only the problem rows are ranked: on a good file this is empty, on a bad one the few
    # examples come back with their total, without collecting every bad id.
    examples = (
        conflicting.unionByName(unknown)
        .withColumn("_rank", F.row_number().over(Window.partitionBy("_problem").orderBy(TRANSACTION_ID)))
        .withColumn("_count", F.count(F.lit(1)).over(Window.partitionBy("_problem")))
        .filter(F.col("_rank") <= EXAMPLES)
        .orderBy("_problem", "_rank")
        .collect()
    )
    found: dict[str, tuple[int, list[str]]] = {}
    for row in examples:
        count, ids = found.setdefault(row["_problem"], (row["_count"], []))
        ids.append(row[TRANSACTION_ID])
    problems = []
    if "conflicting" in found:
        count, ids = found["conflicting"]
        problems.append(f"{count} {TRANSACTION_ID}(s) labelled both 0 and 1, e.g. {ids[0]!r}")
    if "unknown" in found:
        count, ids = found["unknown"]
        problems.append(f"{count} {TRANSACTION_ID}(s) not in transactions: {', '.join(map(repr, ids))}"
                        + (f" and {count - len(ids)} more" if count > len(ids) else ""))
    if problems:
        raise SchemaError(f"{source}: " + "; ".join(problems))


def merge_labels(
    spark: SparkSession, checked: DataFrame, path: str, *, labelled_at: datetime, source_file: str
) -> LabelChanges:
    """Merge checked labels into the Delta table at ``path`` in one commit.

    Ids the table does not hold are inserted; ids whose label differs are updated (with
    ``labelled_at`` and ``source_file``); ids with the same label are left as they are, so
    merging the same labels again makes no commit at all. Creates the table on first use, with
    Delta's change data feed on (later readers can follow which labels changed). The commit is
    tagged ``{"job": "label", "write_id": ..., "source_file": ...}``; a conflicting concurrent
    writer makes it run again.

    :param checked: ``transaction_id``, ``Class``, one row per id (:func:`check_label_file`).
    :returns: how many labels were inserted, updated and unchanged, and the commit's version.

    Example::

        changes = merge_labels(spark, checked, labels_path, labelled_at=now, source_file="cb.csv")
        changes.version   # None: the table already held exactly these labels
    """
    source = checked.select(
        TRANSACTION_ID,
        F.col(LABEL_COL).cast("int").alias(LABEL_COL),
        F.lit(as_utc(labelled_at)).cast("timestamp").alias(_LABELLED_AT),
        F.lit(source_file).alias(_SOURCE_FILE),
    )
    write_id = uuid.uuid4().hex
    metadata = _commit_metadata(JOB, write_id, {"source_file": source_file})
    if not is_delta_table(spark, path):
        try:
            (source.write.format("delta").option(CHANGE_FEED_PROPERTY, "true")
             .option("userMetadata", metadata).save(path))
            commit = find_commit(spark, path, write_id)
            return LabelChanges(inserted=commit.rows, updated=0, unchanged=0, version=commit.version)
        except Exception as exc:
            # Another label job created the table first: merge into it like any later file.
            if not (isinstance(exc, AnalysisException) or _is_conflict(exc)) or not is_delta_table(spark, path):
                raise

    def merge() -> LabelChanges:
        # Delta's MERGE commits (and rewrites every file holding a matched row) even when no
        # row changes, so only new and changed labels go into it, and none at all makes no commit.
        current = spark.read.format("delta").load(path).select(
            TRANSACTION_ID, F.col(LABEL_COL).alias("_current"))
        compared = source.join(current, TRANSACTION_ID, "left")
        changed = compared.filter(~F.col(LABEL_COL).eqNullSafe(F.col("_current"))).drop("_current")
        counts = compared.agg(F.count(F.lit(1)).alias("rows"),
                              F.count_if(F.col("_current").isNull()).alias("new"),
                              F.count_if(F.col("_current") != F.col(LABEL_COL)).alias("changed")).first()
        if not counts["new"] and not counts["changed"]:
            return LabelChanges(inserted=0, updated=0, unchanged=counts["rows"], version=None)
        with _session_conf(spark, "spark.databricks.delta.commitInfo.userMetadata", metadata):
            metrics = (
                DeltaTable.forPath(spark, path).alias("t")
                .merge(changed.alias("s"), f"t.{TRANSACTION_ID} = s.{TRANSACTION_ID}")
                # Checked again inside the commit: another writer may have set the label since.
                .whenMatchedUpdate(condition=f"NOT (t.{LABEL_COL} <=> s.{LABEL_COL})",
                                   set={column: f"s.{column}" for column in (LABEL_COL, _LABELLED_AT, _SOURCE_FILE)})
                .whenNotMatchedInsertAll()
                .execute()
                .first()
            )
        inserted, updated = int(metrics["num_inserted_rows"]), int(metrics["num_updated_rows"])
        return LabelChanges(inserted=inserted, updated=updated, unchanged=counts["rows"] - inserted - updated,
                            version=find_commit(spark, path, write_id).version)

    return _with_retries(merge)


def read_labels(spark: SparkSession, path: str) -> DataFrame | None:
    """The ``labels`` table at ``path``, or None when no label has been merged yet."""
    if not is_delta_table(spark, path):
        return None
    return spark.read.format("delta").load(path)


def labelled_rows(transactions: DataFrame, labels: DataFrame | None, *, label_col: str = LABEL_COL,
                  amount_col: str = "Amount") -> DataFrame:
    """Each transaction with its effective label: the ``labels`` table's where it has one,
    else the one it was ingested with (``label_col``: ``Class``, or the payments ``label``).

    :param labels: the ``labels`` table (:func:`read_labels`), or None when there is none yet.
    :returns: ``transaction_id``, ``txn_date``, ``Amount`` (``amount_col`` as a double),
        ``label`` (int), one row per labelled transaction (a payments row whose label is not
        known yet is left out); a filter on ``txn_date`` reaches the read.

    Example::

        day = labelled_rows(transactions, read_labels(spark, labels_path)).filter(F.col("txn_date") == day)
    """
    rows = transactions.select(TRANSACTION_ID, TXN_DATE, F.col(amount_col).cast("double").alias("_amount"),
                               F.col(label_col).alias("_label"))
    amount = F.col("_amount").alias("Amount")
    if labels is None:
        labelled = rows.select(TRANSACTION_ID, TXN_DATE, amount, F.col("_label").cast("int").alias("label"))
    else:
        late = labels.select(TRANSACTION_ID, F.col(LABEL_COL).alias("_late"))
        labelled = rows.join(late, TRANSACTION_ID, "left").select(
            TRANSACTION_ID, TXN_DATE, amount, F.coalesce(F.col("_late"), F.col("_label")).cast("int").alias("label"))
    return labelled.filter(F.col("label").isNotNull())


def labels_fingerprints(rows: DataFrame) -> DataFrame:
    """Per day, a fingerprint of its labels: the same labels give the same string, any changed
    label a different one, whatever the rows' order or partitioning.

    ``labels_fingerprint`` is ``rows:frauds:hashsum``, the hash sum being the exact sum of
    ``xxhash64(transaction_id, label)`` over the day's rows (as a decimal, so it cannot
    overflow). A single changed label changes the fraud count; several that cancel out there
    change the hash sum (two sums colliding is a 1 in 2^64 chance).

    :param rows: ``transaction_id``, ``txn_date``, ``label`` (:func:`labelled_rows`).
    :returns: ``txn_date``, ``labelled_rows`` (long), ``frauds`` (long), ``labels_fingerprint``.
    """
    hashed = label_hash()
    per_day = rows.groupBy(TXN_DATE).agg(
        F.count(F.lit(1)).alias("labelled_rows"),
        F.sum(F.col("label").cast("long")).alias("frauds"),
        F.sum(hashed).alias("_hash_sum"),
    )
    return per_day.select(
        TXN_DATE, "labelled_rows", "frauds",
        F.concat_ws(":", F.col("labelled_rows").cast("string"), F.col("frauds").cast("string"),
                    F.col("_hash_sum").cast("string")).alias("labels_fingerprint"),
    )


def label_hash() -> Column:
    """One row's part of the fingerprint: ``xxhash64(transaction_id, label)`` as an exact decimal,
    so that sums of it, in any order or grouping, are exact."""
    return F.xxhash64(F.col(TRANSACTION_ID), F.col("label").cast("int")).cast("decimal(38,0)")


def fingerprint_text(rows: int, frauds: int, hash_sum: object) -> str:
    """The fingerprint as :func:`labels_fingerprints` writes it, from totals summed elsewhere
    (``hash_sum`` the exact sum of :func:`label_hash`)."""
    return f"{rows}:{frauds}:{hash_sum}"
