"""sql: run Spark SQL over the project's tables and print the result as a table.

    ./spark-submit.sh sql "SELECT txn_date, count(*) FROM scored_transactions GROUP BY 1"
    ./spark-submit.sh sql --file queries/daily_summary.sql

Every table of the project that exists is addressable by name: ``transactions``,
``scored_transactions``, ``shadow_scored_transactions``, ``promotions``, ``labels`` and the
monitoring tables (``monitor_baselines``, ``monitor_drift``, ``monitor_performance``,
``monitor_verdicts``, ``retrain_triggers``). Only one query runs
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

from pipelines.cli import job_parser, run_main
from pipelines.config import Settings, load_settings
from pipelines.errors import InvalidArgumentError
from pipelines.read_only_sql import parse_read_only_query, query_dataframe
from pipelines.session import get_spark
from pipelines.tables import is_delta_table


def existing_tables(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """The project's tables that exist, by name, with their locations."""
    tables = settings.tables
    names = [tables.transactions, tables.scored, tables.shadow, tables.promotions, tables.labels,
             tables.baselines, tables.drift, tables.performance, tables.verdicts, tables.retrains]
    return {name: tables.path(name) for name in names if is_delta_table(spark, tables.path(name))}


def register_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Make each existing table addressable by its name; return the names registered."""
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
