"""ingest: load a CSV in the dataset's format into the Delta table ``transactions``.

    ./spark-submit.sh ingest --input data/creditcard_sample.csv.gz

Bad input (a missing column, a value that is not a finite number, a damaged or unreadable
file) stops the job before anything is written. Ingesting the same rows again inserts nothing.
Columns beyond the dataset's are accepted, named in the log, and not stored.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.cli import job_parser, log, run_main
from pipelines.config import Settings, load_settings
from pipelines.session import get_spark
from pipelines.tables import insert_new_transactions, read_csv_as_strings, reading_input
from pipelines.transactions import check_raw_values, prepare_transactions


def run(spark: SparkSession, settings: Settings, *, input_path: str, ingested_at: datetime) -> int:
    """Ingest one file; return how many new rows it added."""
    with reading_input(input_path):
        raw = read_csv_as_strings(spark, input_path)
        summary = check_raw_values(raw, source=input_path, start=settings.ingest.start)
        prepared = prepare_transactions(
            raw, start=settings.ingest.start, source_file=Path(input_path).name, ingested_at=ingested_at
        )
        commit = insert_new_transactions(
            spark, prepared, settings.tables.transactions_path,
            first_day=summary.first_day, last_day=summary.last_day,
        )
    if summary.extra_columns:
        # Not an error (the dataset's columns are all there), but a renamed column upstream
        # would show up here first.
        log.warning("ingest: %s has column(s) outside the dataset's format, not ingested: %s",
                    input_path, ", ".join(summary.extra_columns))
    log.info(
        "ingest: %s: %d rows covering %s..%s; %d new, %d already in %s (%s)%s",
        input_path, summary.rows, summary.first_day, summary.last_day,
        commit.rows, summary.rows - commit.rows, settings.tables.transactions_path,
        "unchanged" if commit.version is None else f"version {commit.version}",
        f"; ignored column(s): {', '.join(summary.extra_columns)}" if summary.extra_columns else "",
    )
    return commit.rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="CSV file (optionally .gz) in the dataset's format")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    spark = get_spark(settings.spark)
    run(spark, settings, input_path=args.input, ingested_at=datetime.now(timezone.utc))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
