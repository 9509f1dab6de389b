"""Reading and writing the project's Delta tables (and the CSV files that feed them).

Every write here is one Delta transaction: it lands whole or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.errors import InvalidArgumentError, NoDataError, UnreadableInputError
from pipelines.schema import TRANSACTION_ID, TXN_DATE

T = TypeVar("T")


def read_csv_as_strings(spark: SparkSession, path: str) -> DataFrame:
    """Read a CSV file with a header, every column as a string (types are checked later)."""
    try:
        return spark.read.option("header", True).option("mode", "PERMISSIVE").csv(path)
    except AnalysisException as exc:
        raise InvalidArgumentError(f"cannot read input {path}: {exc.getMessage()}") from exc


@contextmanager
def reading_input(source: str) -> Iterator[None]:
    """Turn a failure to read the file ``source`` into :class:`UnreadableInputError`.

    Spark reads lazily, so a truncated ``.gz``, a file that is not gzip at all, or any other
    I/O failure surfaces in whichever action first reads the file, as a Java stack trace.
    Only failures that name ``source`` are translated: an error reading a Delta table in the
    same block keeps its stack trace.

    Example::

        with reading_input(path):
            summary = check_raw_values(read_csv_as_strings(spark, path), source=path, start=start)
    """
    try:
        yield
    except Exception as exc:
        reason = _read_failure(exc, PurePosixPath(source).name)
        if reason is None:
            raise
        raise UnreadableInputError(f"cannot read {source}: {reason}; nothing was written") from exc


def _java_causes(exc: Exception) -> list:
    """The Java exception behind a PySpark error, then its causes, outermost first."""
    causes, cause = [], getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    while cause is not None and len(causes) < 20:
        causes.append(cause)
        cause = cause.getCause()
    return causes


def _read_failure(exc: Exception, file_name: str) -> str | None:
    """The I/O error behind a Spark failure to read ``file_name``, or None if it is not one."""
    names_file, io_error = False, None
    for cause in _java_causes(exc):
        names_file = names_file or file_name in str(cause.getMessage() or "")
        classes, klass = [], cause.getClass()
        while klass is not None:
            classes.append(klass.getName())
            klass = klass.getSuperclass()
        if "java.io.IOException" in classes:
            io_error = f"{classes[0]}: {cause.getMessage()}"
    return io_error if names_file and io_error else None


def is_delta_table(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def current_version(spark: SparkSession, path: str) -> int:
    """The latest committed version of the Delta table at ``path``.

    :raises NoDataError: there is no Delta table at ``path``.
    """
    if not is_delta_table(spark, path):
        raise NoDataError(f"there is no Delta table at {path}: run ingest first")
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def read_version(spark: SparkSession, path: str, version: int) -> DataFrame:
    """The Delta table at ``path`` as it was at ``version`` (so lineage can name it)."""
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def sql_date(day: date) -> str:
    """A date as a SQL literal. Only a real ``date`` object gets here, never user text."""
    if not isinstance(day, date):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__}")
    return f"DATE'{day.isoformat()}'"


@dataclass(frozen=True)
class Commit:
    """What one write committed: the Delta version it created and the rows it wrote.

    ``version`` is None when the write changed nothing, so Delta made no commit (an insert-only
    MERGE of rows that are all there already).
    """

    version: int | None
    rows: int


# Delta's conflicts between two writers that touched the same files: the loser's whole write
# can simply run again (both writes here are idempotent), on the table as the winner left it.
# They reach Python as Delta's own exceptions or, from a DataFrameWriter, as a Py4JJavaError.
_CONFLICTS = (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentDeleteDeleteException,
              ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException,
              ProtocolChangedException)
_JAVA_CONFLICTS = {f"io.delta.exceptions.{conflict.__name__}" for conflict in _CONFLICTS}
WRITE_ATTEMPTS = 3
# How far back a table's history is searched for a write's own commit.
HISTORY_SEARCHED = 100


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, _CONFLICTS) or any(
        cause.getClass().getName() in _JAVA_CONFLICTS for cause in _java_causes(exc)
    )


def _with_retries(write: Callable[[], T]) -> T:
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return write()
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or not _is_conflict(exc):
                raise
    raise AssertionError("unreachable")


def find_commit(spark: SparkSession, path: str, write_id: str) -> Commit:
    """The commit that the write tagged ``write_id`` created (its ``userMetadata`` names it).

    With other writers at work the newest commit may be theirs, so the figures are taken from
    the write's own entry in the table's history.
    """
    for entry in DeltaTable.forPath(spark, path).history(HISTORY_SEARCHED).collect():
        if entry["userMetadata"] and json.loads(entry["userMetadata"]).get("write_id") == write_id:
            metrics = entry["operationMetrics"] or {}
            # A MERGE's own count of what it inserted; a write's count of what it wrote.
            rows = metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0))
            return Commit(version=int(entry["version"]), rows=int(rows))
    raise RuntimeError(f"the commit of write {write_id} is not among the last {HISTORY_SEARCHED} of {path}")


def _commit_metadata(job: str, write_id: str) -> str:
    """The ``userMetadata`` of a commit (shown by DESCRIBE HISTORY): which job wrote it."""
    return json.dumps({"job": job, "write_id": write_id})


def insert_new_transactions(
    spark: SparkSession, prepared: DataFrame, path: str, *, first_day: date, last_day: date
) -> Commit:
    """Insert the rows of ``prepared`` whose ``transaction_id`` the table does not hold yet.

    Only the partitions from ``first_day`` to ``last_day`` are read to find what is already
    there, so ingesting one more day does not rewrite or rescan the others. Creates the table,
    partitioned by ``txn_date``, on first use. One Delta commit; a conflicting concurrent
    writer makes it run again.

    :returns: the commit, with the number of rows inserted.
    """
    write_id = uuid.uuid4().hex
    metadata = _commit_metadata("ingest", write_id)
    if not is_delta_table(spark, path):
        try:
            prepared.write.format("delta").partitionBy(TXN_DATE).option("userMetadata", metadata).save(path)
            return find_commit(spark, path, write_id)
        except Exception as exc:
            # Another ingest created the table first: insert into it like any later file.
            if not (isinstance(exc, AnalysisException) or _is_conflict(exc)) or not is_delta_table(spark, path):
                raise
    in_days = f"t.{TXN_DATE} BETWEEN {sql_date(first_day)} AND {sql_date(last_day)}"

    def merge() -> Commit:
        with _session_conf(spark, "spark.databricks.delta.commitInfo.userMetadata", metadata):
            metrics = (
                DeltaTable.forPath(spark, path).alias("t")
                .merge(prepared.alias("s"), f"{in_days} AND t.{TXN_DATE} = s.{TXN_DATE} "
                                            f"AND t.{TRANSACTION_ID} = s.{TRANSACTION_ID}")
                .whenNotMatchedInsertAll()
                .execute()
                .first()
            )
        if int(metrics["num_inserted_rows"]) == 0:
            return Commit(version=None, rows=0)
        return find_commit(spark, path, write_id)

    return _with_retries(merge)


@contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def replace_days(scored: DataFrame, path: str, *, days: Sequence[date]) -> Commit:
    """Replace the partitions of ``days`` in the table at ``path`` with ``scored``, in one commit.

    Other days are untouched; readers see the old days or the new ones, never a mix, and a
    job killed part-way leaves the table as it was. Delta refuses the write if any row of
    ``scored`` falls outside ``days``. A conflicting concurrent writer makes it run again.

    :returns: the commit this write created, with the number of rows written.
    """
    if not days:
        raise ValueError("replace_days needs at least one day")
    write_id = uuid.uuid4().hex
    in_days = f"{TXN_DATE} IN ({', '.join(sql_date(day) for day in sorted(set(days)))})"

    def write() -> Commit:
        (
            scored.write.format("delta")
            .mode("overwrite")
            .partitionBy(TXN_DATE)
            .option("replaceWhere", in_days)
            .option("userMetadata", _commit_metadata("score", write_id))
            .save(path)
        )
        return find_commit(scored.sparkSession, path, write_id)

    return _with_retries(write)


def replace_day(scored: DataFrame, path: str, *, day: date) -> Commit:
    """Replace the ``day`` partition of the table at ``path`` with ``scored`` (see :func:`replace_days`)."""
    return replace_days(scored, path, days=[day])


def rows_per_day(table: DataFrame, days: Sequence[date]) -> dict[date, int]:
    """How many rows ``table`` holds on each of ``days`` (0 for a day it does not hold)."""
    counts = table.filter(F.col(TXN_DATE).isin(*days)).groupBy(TXN_DATE).count().collect()
    return {day: 0 for day in days} | {row[TXN_DATE]: row["count"] for row in counts}


def days_present(transactions: DataFrame, first_day: date, last_day: date) -> set[date]:
    """The days from ``first_day`` to ``last_day`` that hold at least one transaction."""
    rows = (
        transactions.filter(F.col(TXN_DATE).between(F.lit(first_day), F.lit(last_day)))
        .select(TXN_DATE).distinct().collect()
    )
    return {row[TXN_DATE] for row in rows}
