"""sql: run Spark SQL over the project's tables and print the result as a table.

    ./spark-submit.sh sql "SELECT txn_date, count(*) FROM scored_transactions GROUP BY 1"
    ./spark-submit.sh sql --file queries/daily_summary.sql

``transactions`` and ``scored_transactions`` are addressable by name. A query that does not
parse or names an unknown table or column prints Spark's message and exits non-zero.
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
from pipelines.session import get_spark
from pipelines.tables import is_delta_table


def register_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Make each existing table addressable by its name; return the names registered."""
    names = []
    for name, path in (
        (settings.tables.transactions, settings.tables.transactions_path),
        (settings.tables.scored, settings.tables.scored_path),
    ):
        if is_delta_table(spark, path):
            spark.read.format("delta").load(path).createOrReplaceTempView(name)
            names.append(name)
    return names


def run(spark: SparkSession, settings: Settings, *, query: str) -> DataFrame:
    tables = register_tables(spark, settings)
    try:
        return spark.sql(query)
    except (AnalysisException, ParseException) as exc:
        raise InvalidArgumentError(
            f"the query failed: {exc.getMessage()}\n(tables available: {', '.join(tables) or 'none yet'})"
        ) from exc


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
