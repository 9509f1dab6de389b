"""Reading and writing the project's Delta tables (and the CSV files that feed them).

Every write here is one Delta transaction: it lands whole or not at all.
"""

from __future__ import annotations

from datetime import date

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.errors import InvalidArgumentError, NoDataError
from pipelines.schema import TRANSACTION_ID, TXN_DATE


def read_csv_as_strings(spark: SparkSession, path: str) -> DataFrame:
    """Read a CSV file with a header, every column as a string (types are checked later)."""
    try:
        return spark.read.option("header", True).option("mode", "PERMISSIVE").csv(path)
    except AnalysisException as exc:
        raise InvalidArgumentError(f"cannot read input {path}: {exc.getMessage()}") from exc


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


def insert_new_transactions(
    spark: SparkSession, prepared: DataFrame, path: str, *, first_day: date, last_day: date
) -> int:
    """Insert the rows of ``prepared`` whose ``transaction_id`` the table does not hold yet.

    Only the partitions from ``first_day`` to ``last_day`` are read to find what is already
    there, so ingesting one more day does not rewrite or rescan the others. Creates the table,
    partitioned by ``txn_date``, on first use.

    :returns: the number of rows inserted.
    """
    if not is_delta_table(spark, path):
        prepared.write.format("delta").partitionBy(TXN_DATE).save(path)
        return int(DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]["numOutputRows"])
    in_days = f"t.{TXN_DATE} BETWEEN {sql_date(first_day)} AND {sql_date(last_day)}"
    metrics = (
        DeltaTable.forPath(spark, path).alias("t")
        .merge(prepared.alias("s"), f"{in_days} AND t.{TXN_DATE} = s.{TXN_DATE} "
                                    f"AND t.{TRANSACTION_ID} = s.{TRANSACTION_ID}")
        .whenNotMatchedInsertAll()
        .execute()
        .first()
    )
    return int(metrics["num_inserted_rows"])


def replace_day(scored: DataFrame, path: str, *, day: date) -> int:
    """Replace the ``day`` partition of the table at ``path`` with ``scored``, atomically.

    Other days are untouched; readers see the old day or the new one, never a mix. Delta
    refuses the write if any row of ``scored`` falls outside ``day``.

    :returns: the Delta version this write created.
    """
    (
        scored.write.format("delta")
        .mode("overwrite")
        .partitionBy(TXN_DATE)
        .option("replaceWhere", f"{TXN_DATE} = {sql_date(day)}")
        .save(path)
    )
    return DeltaTable.forPath(scored.sparkSession, path).history(1).first()["version"]


def days_present(transactions: DataFrame, first_day: date, last_day: date) -> set[date]:
    """The days from ``first_day`` to ``last_day`` that hold at least one transaction."""
    rows = (
        transactions.filter(F.col(TXN_DATE).between(F.lit(first_day), F.lit(last_day)))
        .select(TXN_DATE).distinct().collect()
    )
    return {row[TXN_DATE] for row in rows}


def last_write_rows(spark: SparkSession, path: str) -> int:
    """How many rows the latest commit to the table at ``path`` wrote."""
    metrics = DeltaTable.forPath(spark, path).history(1).first()["operationMetrics"]
    return int(metrics.get("numOutputRows", 0))
