"""Query the project's Delta tables without Spark or a JVM: delta-rs reads them, DuckDB runs SQL.

    .venv/bin/python queries/without_spark.py --file queries/daily_summary.sql
    .venv/bin/python queries/without_spark.py --env standalone "SELECT count(*) FROM transactions"

Delta is an open format: what the jobs commit, any Delta reader sees, at the same version.
Each table that exists is a view of its name (``transactions``, ``scored_transactions``, ...,
as ``./spark-submit.sh sql`` names them), in an in-memory DuckDB database that cannot touch
files: a query reads the tables and nothing else, and writes nowhere. A missing table or a
query DuckDB refuses exits 2 with its message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipelines.core.config import load_settings


def connect(locations: dict[str, str]) -> tuple[duckdb.DuckDBPyConnection, dict[str, int]]:
    """An in-memory DuckDB with a view per existing table; the Delta version each one reads."""
    con = duckdb.connect()
    versions = {}
    for name, path in locations.items():
        try:
            table = DeltaTable(path)
        except TableNotFoundError:
            continue  # not written yet
        con.register(name, table.to_pyarrow_dataset())
        versions[name] = table.version()
    # From here on SQL can read the views only: no file, no URL, no extension.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", help="a SQL query (DuckDB's dialect)")
    parser.add_argument("--file", help="read the query from this file instead")
    parser.add_argument("--env", default="local", help="conf/<env>.toml, for where the tables are")
    parser.add_argument("--limit", type=int, default=1000, help="print at most this many rows")
    args = parser.parse_args(argv)
    if bool(args.query) == bool(args.file):
        parser.error("give a query or --file, one of the two")
    query = Path(args.file).read_text() if args.file else args.query
    con, versions = connect(load_settings(args.env).tables.locations())
    print("tables: " + (", ".join(f"{name} (version {v})" for name, v in versions.items()) or "none yet"))
    try:
        result = con.sql(query)
    except duckdb.Error as exc:
        print(f"without_spark: the query failed: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        result.show(max_rows=args.limit, max_width=200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
