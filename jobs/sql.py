"""sql: run Spark SQL over the project's tables and print the result as a table.

    ./spark-submit.sh sql "SELECT txn_date, count(*) FROM scored_transactions GROUP BY 1"
    ./spark-submit.sh sql --file queries/daily_summary.sql

Every table of the project that exists is addressable by name: ``transactions``,
``scored_transactions``, ``shadow_scored_transactions``, ``promotions``, ``labels`` and the
monitoring tables (``monitor_baselines``, ``monitor_drift``, ``monitor_performance``,
``monitor_verdicts``, ``retrain_triggers``); with a ``[catalog]`` in the config, through the
metastore's database (``fraud.scored_transactions`` works too). Only one query runs
(SELECT, WITH, VALUES, TABLE): a statement that would write, drop, alter, create or configure,
or a query calling reflect/java_method/try_reflect or TRANSFORM ... USING, is refused with exit
2 before anything runs. A query that does not parse or names an unknown table or column prints
Spark's message and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, SparkSession

from pipelines.core.cli import job_parser, run_main
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError
from pipelines.core.session import get_spark
from pipelines.data.catalog import existing_tables, publish
from pipelines.data.read_only_sql import parse_read_only_query, query_dataframe


def register_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Make each existing table addressable by its name; return the names.

    With a ``[catalog]``, the names are the metastore's (its database becomes the current one);
    without, each table becomes a temporary view of this session.
    """
    if settings.catalog is not None:
        publish(spark, settings)
        spark.catalog.setCurrentDatabase(settings.catalog.database)
        return sorted(table.name for table in spark.catalog.listTables(settings.catalog.database))
    tables = existing_tables(spark, settings)
    for name, path in tables.items():
        spark.read.format("delta").load(path).createOrReplaceTempView(name)
    return list(tables)


def run(spark: SparkSession, settings: Settings, *, query: str) -> DataFrame:
    """The result of one read-only query over the project's tables (lazy: run when shown).

    :raises NotAQueryError: ``query`` is not a single query, or calls out of the engine; it is
        refused before it runs (a statement that is not a query, before any table is read).
    :raises InvalidArgumentError: it does not parse, or names an unknown table or column.
    """
    try:
        checked = parse_read_only_query(spark, query)
    except ParseException as exc:
        raise _query_failed(exc, list(existing_tables(spark, settings))) from exc
    tables = register_tables(spark, settings)
    try:
        return query_dataframe(spark, checked)
    except AnalysisException as exc:
        raise _query_failed(exc, tables) from exc


def _query_failed(exc: AnalysisException, tables: list[str]) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"the query failed: {exc.getMessage()}\n(tables available: {', '.join(tables) or 'none yet'})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", help="a Spark SQL query")
    parser.add_argument("--file", help="read the query from this file instead")
    parser.add_argument("--limit", type=int, default=1000, help="print at most this many rows (default 1000)")
    args = parser.parse_args(argv)
    if bool(args.query) == bool(args.file):
        parser.error("give a query or --file, one of the two")
    query = Path(args.file).read_text() if args.file else args.query
    settings = load_settings(args.env)
    spark = get_spark(settings.spark)
    run(spark, settings, query=query).show(args.limit, truncate=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
