"""ingest: load a CSV in the dataset's format into the Delta table ``transactions``.

    ./spark-submit.sh ingest --input data/creditcard_sample.csv.gz

Bad input (a missing column, a value that is not a finite number, a damaged or unreadable
file) stops the job before anything is written. Ingesting the same rows again inserts nothing.
Columns beyond the dataset's are accepted, named in the log, and not stored. The file is read
once: its rows are checked and hashed as they are read and kept on local disk until they are
written. Exact copies of a row (the data set has some) are counted and numbered, so each gets
its own stable id.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.core.cli import job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.tables import (
    insert_new_transactions,
    persisted,
    read_csv_as_strings,
    read_csv_with_schema,
    reading_input,
)
from pipelines.data.transactions import (
    MAX_REPEATED_TO_BROADCAST,
    check_header,
    check_values,
    count_copies,
    numeric_schema,
    prepare_checked_numbers,
    repeated_rows,
    with_row_hash,
)


def run(spark: SparkSession, settings: Settings, *, input_path: str, ingested_at: datetime) -> int:
    """Ingest one file; return how many new rows it added."""
    started = time.perf_counter()
    table = settings.tables.transactions_path
    with reading_input(input_path):
        raw = read_csv_as_strings(spark, input_path)  # reads the header only
        check_header(raw.columns, source=input_path)
        log.info("ingest: reading and checking %s ...", input_path)
        file_rows = with_row_hash(read_csv_with_schema(spark, input_path, numeric_schema(raw.columns)))
        with persisted(file_rows) as numbers:
            summary = check_values(numbers, raw, source=input_path, start=settings.ingest.start)
            with persisted(repeated_rows(numbers)) as repeated:
                sets, copies = count_copies(repeated)
                log.info("ingest: %d rows checked, %s..%s, %d of them in %d set(s) of exact copies (%.1f s); "
                         "writing the new ones into %s ...", summary.rows, summary.first_day, summary.last_day,
                         copies, sets, time.perf_counter() - started, table)
                prepared = prepare_checked_numbers(
                    numbers, start=settings.ingest.start, source_file=Path(input_path).name, ingested_at=ingested_at,
                    repeated=repeated if sets <= MAX_REPEATED_TO_BROADCAST else None)
                commit = insert_new_transactions(spark, prepared, table,
                                                 first_day=summary.first_day, last_day=summary.last_day)
    if summary.extra_columns:
        # Not an error (the dataset's columns are all there), but a renamed column upstream
        # would show up here first.
        log.warning("ingest: %s has column(s) outside the dataset's format, not ingested: %s",
                    input_path, ", ".join(summary.extra_columns))
    log.info(
        "ingest: %s: %d rows covering %s..%s; %d new, %d already in %s (%s)%s; %.1f s",
        input_path, summary.rows, summary.first_day, summary.last_day,
        commit.rows, summary.rows - commit.rows, table,
        "unchanged" if commit.version is None else f"version {commit.version}",
        f"; ignored column(s): {', '.join(summary.extra_columns)}" if summary.extra_columns else "",
        time.perf_counter() - started,
    )
    return commit.rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="CSV file (optionally .gz) in the dataset's format")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    spark = get_spark(settings.spark)
    run(spark, settings, input_path=args.input, ingested_at=utc_now())
    publish(spark, settings)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
