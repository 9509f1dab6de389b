"""Reading and writing the project's Delta tables (and the CSV files that feed them).

Every write here is one Delta transaction: it lands whole or not at all.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import TypeVar
from urllib.parse import unquote

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
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipelines.core.errors import InvalidArgumentError, NoDataError, UnreadableInputError
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE

T = TypeVar("T")

# Delta's table property that makes every later commit record its row changes.
CHANGE_FEED_PROPERTY = "delta.enableChangeDataFeed"


def read_csv_as_strings(spark: SparkSession, path: str) -> DataFrame:
    """Read a CSV file with a header, every column as a string (types are checked later)."""
    try:
        return spark.read.option("header", True).option("mode", "PERMISSIVE").csv(path)
    except AnalysisException as exc:
        raise InvalidArgumentError(f"cannot read input {path}: {exc.getMessage()}") from exc


def read_csv_with_schema(spark: SparkSession, path: str, schema: StructType) -> DataFrame:
    """Read a CSV file with a header, its columns (by position) as ``schema`` says; a value that
    does not parse as its column's type reads as null."""
    return spark.read.option("header", True).option("mode", "PERMISSIVE").schema(schema).csv(path)


def shown_path(uri: str) -> str:
    """A file's path as a user wrote it: a local ``file:`` URI as a plain path, others as they are."""
    if uri.startswith("file:"):
        return unquote(re.sub(r"^file:(//)?", "", uri))
    return uri


def input_files(spark: SparkSession, inputs: Sequence[str]) -> list[str]:
    """Every file ``inputs`` name: files, folders (their files, at any depth) and globs, in the
    order given, each once; as Hadoop URIs (``file:/...``, ``s3a://...``).

    Files whose name starts with ``_`` or ``.`` are left out of a folder, as Spark's own reader
    does (``_SUCCESS``, ``.crc``).

    :raises InvalidArgumentError: an input that names no file.
    """
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    found: list[str] = []
    for text in inputs:
        pattern = jvm.org.apache.hadoop.fs.Path(text)
        fs = pattern.getFileSystem(conf)
        statuses = fs.globStatus(pattern) or []
        files = []
        for status in statuses:
            if not status.isDirectory():
                files.append(status.getPath().toString())
                continue
            listing = fs.listFiles(status.getPath(), True)
            while listing.hasNext():
                path = listing.next().getPath()
                relative = path.toString()[len(status.getPath().toString()):]
                if not any(part.startswith(("_", ".")) for part in relative.split("/") if part):
                    files.append(path.toString())
        if not files:
            raise InvalidArgumentError(f"--input {text}: no such file, or no file in that folder or glob")
        found.extend(sorted(files))
    return list(dict.fromkeys(found))


def csv_header(spark: SparkSession, uri: str) -> list[str]:
    """The column names on the first line of the CSV file ``uri`` (decompressed as its name says,
    like Spark's reader), read without starting a Spark job.

    :raises UnreadableInputError: the file cannot be read (damaged, not the compression its
        name says), or it is empty.
    """
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        stream = path.getFileSystem(conf).open(path)
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
        if codec is not None:
            stream = codec.createInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        try:
            line = reader.readLine()
        finally:
            reader.close()
    except Py4JJavaError as exc:
        cause = exc.java_exception
        raise UnreadableInputError(f"cannot read {shown_path(uri)}: {cause.getClass().getName()}: "
                                   f"{cause.getMessage()}; nothing was written") from None
    if not line:
        raise UnreadableInputError(f"{shown_path(uri)} is empty: expected a CSV header on its first line")
    return next(csv.reader([line.removeprefix("\ufeff")]))


@contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """``df``, kept on local disk after the first action computes it, so later actions read it
    there instead of computing it again (a file is read once); dropped on leaving the block.

    Disk, not memory: the driver's memory does not grow with the file.
    """
    kept = df.persist(StorageLevel.DISK_ONLY)
    try:
        yield kept
    finally:
        kept.unpersist()


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


@contextmanager
def reading_inputs(sources: Sequence[str]) -> Iterator[None]:
    """:func:`reading_input` for a read of several files: a failure that names one of them is
    :class:`UnreadableInputError` naming it."""
    try:
        yield
    except Exception as exc:
        for source in sources:
            reason = _read_failure(exc, PurePosixPath(shown_path(source)).name)
            if reason is not None:
                raise UnreadableInputError(f"cannot read {shown_path(source)}: {reason}; nothing was written") from exc
        raise


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


def _commit_metadata(job: str, write_id: str, extra: Mapping[str, object] | None = None) -> str:
    """The ``userMetadata`` of a commit (shown by DESCRIBE HISTORY): which job wrote it (and
    whatever else the job records with its commit, ``extra``)."""
    return json.dumps({**(extra or {}), "job": job, "write_id": write_id})


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
            # The change data feed records which days each later commit touches, from the first
            # commit on (score --catch-up reads it to find days that changed after scoring).
            (prepared.write.format("delta").partitionBy(TXN_DATE).option(CHANGE_FEED_PROPERTY, "true")
             .option("userMetadata", metadata).save(path))
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


def replace_days(
    scored: DataFrame, path: str, *, days: Sequence[date], metadata: Mapping[str, object] | None = None,
    job: str = "score",
) -> Commit:
    """Replace the partitions of ``days`` in the table at ``path`` with ``scored``, in one commit.

    Other days are untouched; readers see the old days or the new ones, never a mix, and a
    job killed part-way leaves the table as it was. Delta refuses the write if any row of
    ``scored`` falls outside ``days``. A conflicting concurrent writer makes it run again.

    :param metadata: recorded in the commit's ``userMetadata`` beside the job and write id.
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
            .option("userMetadata", _commit_metadata(job, write_id, metadata))
            .save(path)
        )
        return find_commit(scored.sparkSession, path, write_id)

    return _with_retries(write)


def replace_table(rows: DataFrame, path: str, *, job: str, metadata: Mapping[str, object] | None = None) -> Commit:
    """Replace every row of the table at ``path`` (partitioned by day) with ``rows``, in one
    commit, its columns too: for a table computed again from scratch under new definitions."""
    write_id = uuid.uuid4().hex

    def write() -> Commit:
        (rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(TXN_DATE)
         .option("userMetadata", _commit_metadata(job, write_id, metadata)).save(path))
        return find_commit(rows.sparkSession, path, write_id)

    return _with_retries(write)


def replace_day(scored: DataFrame, path: str, *, day: date) -> Commit:
    """Replace the ``day`` partition of the table at ``path`` with ``scored`` (see :func:`replace_days`)."""
    return replace_days(scored, path, days=[day])


def rows_per_day(table: DataFrame, days: Sequence[date]) -> dict[date, int]:
    """How many rows ``table`` holds on each of ``days`` (0 for a day it does not hold)."""
    counts = table.filter(F.col(TXN_DATE).isin(*days)).groupBy(TXN_DATE).count().collect()
    return {day: 0 for day in days} | {row[TXN_DATE]: row["count"] for row in counts}


def append_rows(rows: DataFrame, path: str) -> Commit:
    """Append ``rows`` to the Delta table at ``path`` (created on first use), in one commit."""
    write_id = uuid.uuid4().hex
    rows.write.format("delta").mode("append").option("userMetadata", _commit_metadata("append", write_id)).save(path)
    return find_commit(rows.sparkSession, path, write_id)


# --- score: the change data feed of transactions, and a shadow table's rows per model -------

# Commits that change no row: a history holding only these after a point says nothing changed.
DATA_NEUTRAL_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES",
                                     "UNSET TBLPROPERTIES"})
# What Delta says when its change data feed cannot be read over the versions asked for: a
# version committed while the feed was off, log files cleaned up, a gap in the log.
_FEED_UNREADABLE = frozenset({"DELTA_MISSING_CHANGE_DATA", "DELTA_VERSIONS_NOT_CONTIGUOUS", "DELTA_FILE_NOT_FOUND",
                              "DELTA_FILE_OR_DIR_NOT_FOUND", "DELTA_FILE_NOT_FOUND_DETAILED"})
_MODEL_KEY = re.compile(r"[\w.\- ]+")


def replace_model_days(
    scored: DataFrame, path: str, *, days: Sequence[date], model_name: str, model_version: str,
    metadata: Mapping[str, object] | None = None, job: str = "score",
) -> Commit:
    """Replace what one model version scored on ``days`` in the table at ``path``, in one commit.

    The table is partitioned by day, model name and model version, so several models' scores
    of one day live side by side: the write swaps only this version's partitions of ``days``
    (metadata only; no file of another version is rewritten), and two models written at once
    touch different partitions. Delta refuses the write if a row of ``scored`` belongs to
    another day or model. Created on first use.

    :param model_name: letters, digits, ``_``, ``-``, ``.`` and spaces only (it reaches SQL).
    :param model_version: the registry's version number.
    :param job: the job named in the commit's metadata.
    :returns: the commit this write created, with the number of rows written.

    Example::

        replace_model_days(scored, settings.tables.shadow_path, days=[day],
                           model_name="fraud_detector", model_version="7")
    """
    if not days:
        raise ValueError("replace_model_days needs at least one day")
    if not _MODEL_KEY.fullmatch(model_name) or not model_version.isdigit():
        raise ValueError(f"not a model name and version this table can hold: {model_name!r}, {model_version!r}")
    write_id = uuid.uuid4().hex
    where = (f"{TXN_DATE} IN ({', '.join(sql_date(day) for day in sorted(set(days)))}) "
             f"AND model_name = '{model_name}' AND model_version = '{model_version}'")

    def write() -> Commit:
        (
            scored.write.format("delta")
            .mode("overwrite")
            .partitionBy(TXN_DATE, "model_name", "model_version")
            .option("replaceWhere", where)
            .option("userMetadata", _commit_metadata(job, write_id, metadata))
            .save(path)
        )
        return find_commit(scored.sparkSession, path, write_id)

    return _with_retries(write)


@dataclass(frozen=True)
class CommitInfo:
    """One entry of a Delta table's history: its version, operation and what the writer recorded."""

    version: int
    operation: str
    parameters: Mapping[str, str]
    # The commit's userMetadata as JSON ({} when there is none or it is not a JSON object).
    metadata: Mapping[str, object]


def commit_history(spark: SparkSession, path: str) -> list[CommitInfo]:
    """Every commit the table's log still holds, newest first. Reads the log only, no data."""
    entries = (
        DeltaTable.forPath(spark, path).history()
        .select("version", "operation", "operationParameters", "userMetadata").collect()
    )
    return sorted((CommitInfo(version=int(entry["version"]), operation=entry["operation"],
                              parameters=dict(entry["operationParameters"] or {}),
                              metadata=_json_object(entry["userMetadata"]))
                   for entry in entries), key=lambda commit: commit.version, reverse=True)


def _json_object(text: str | None) -> Mapping[str, object]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def change_feed_enabled(spark: SparkSession, path: str) -> bool:
    """Whether the table at ``path`` records its changes now (Delta's change data feed)."""
    properties = DeltaTable.forPath(spark, path).detail().first()["properties"] or {}
    return str(properties.get(CHANGE_FEED_PROPERTY, "false")).lower() == "true"


def enable_change_feed(spark: SparkSession, path: str, *, job: str) -> bool:
    """Turn on the change data feed of the table at ``path`` if it is off; True if this call did.

    One metadata-only commit (tagged with ``job``). Only commits made from then on record their
    changes: Delta refuses to read the feed over an earlier version (``DELTA_MISSING_CHANGE_DATA``).
    """
    if change_feed_enabled(spark, path):
        return False
    metadata = _commit_metadata(job, uuid.uuid4().hex)
    table = path.replace("`", "``")

    def alter() -> None:
        with _session_conf(spark, "spark.databricks.delta.commitInfo.userMetadata", metadata):
            spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ({CHANGE_FEED_PROPERTY} = true)")

    _with_retries(alter)
    return True


def change_feed_turned_on(history: Sequence[CommitInfo]) -> int | None:
    """The version of the newest commit that turned the change data feed on, if ``history``
    (newest first) shows one and no later commit turned it off."""
    for commit in history:
        if commit.operation == "SET TBLPROPERTIES":
            properties = _json_object(commit.parameters.get("properties"))
            if CHANGE_FEED_PROPERTY in properties:
                return commit.version if str(properties[CHANGE_FEED_PROPERTY]).lower() == "true" else None
    return None


def changes_per_day(spark: SparkSession, path: str, *, first_version: int, last_version: int) -> DataFrame:
    """How many rows each commit from ``first_version`` to ``last_version`` (both included)
    inserted, deleted or updated on each day: ``txn_date``, ``version``, ``changed_rows``.

    Read from Delta's change data feed: the log of those commits and the files they added, of
    which only the partition value is needed (row counts come from the files' footers). Lazy;
    an action fails as :func:`is_unreadable_feed` tells when the feed does not cover a version.
    """
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", first_version)
        .option("endingVersion", last_version)
        .load(path)
        .groupBy(TXN_DATE, F.col("_commit_version").alias("version"))
        .agg(F.count(F.lit(1)).alias("changed_rows"))
    )


def is_unreadable_feed(exc: Exception) -> bool:
    """Whether ``exc`` says the change data feed cannot be read over the versions asked for: a
    version committed while it was off, log files cleaned up, or data files already vacuumed."""
    condition = getattr(exc, "getCondition", lambda: None)()
    return condition in _FEED_UNREADABLE or any(
        cause.getClass().getName() == "java.io.FileNotFoundException" for cause in _java_causes(exc)
    )
