"""ingest: load input files into the Delta table ``transactions`` of the environment's profile.

    ./spark-submit.sh ingest --input data/creditcard_sample.csv.gz
    ./spark-submit.sh ingest --env payments --input 'landing/2018-04-*.csv' more/

``[profile] kind`` says what the files are. ``creditcard`` (the default): one CSV in the public
data set's format, as described below. ``payments``: a bank's transactions, columns named in
``[profile]``; many files, folders or globs in one job and one commit, the card replaced by a
keyed hash whose secret comes from ``$FRAUD_CARD_KEY_SECRET`` or ``[profile]
card_key_secret_file`` (pipelines/data/payments.py, docs/jobs.md).

For ``creditcard``, bad input (a missing column, a value that is not a finite number, a damaged or unreadable
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
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.core.cli import job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError
from pipelines.core.secrets import card_key_secret
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.payments import (
    check_against_table,
    check_headers,
    check_one_content_per_id,
    check_payment_values,
    check_table_columns,
    distinct_payment_rows,
    one_row_per_id,
    read_payment_files,
    repeated_ids,
    table_columns,
    typed_payment_rows,
)
from pipelines.data.tables import (
    csv_header,
    input_files,
    insert_new_transactions,
    is_delta_table,
    persisted,
    read_csv_as_strings,
    read_csv_with_schema,
    reading_input,
    reading_inputs,
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


def run_payments(spark: SparkSession, settings: Settings, *, inputs: Sequence[str], secret: bytes,
                 ingested_at: datetime) -> int:
    """Ingest payment files (``[profile] kind = "payments"``) in one commit; return how many
    new rows they added.

    The files are read and each value parsed once; the typed rows are kept on local disk for the
    checks and the write. An id that comes more than once is looked at only when the count of
    ids says there is one (an identical re-send is written once); against an existing table the
    ids are checked with a join on the whole table's ids and contents.
    """
    started = time.perf_counter()
    profile, table = settings.profile, settings.tables.transactions_path
    files = input_files(spark, inputs)
    headers = {uri: csv_header(spark, uri) for uri in files}
    extra_columns = check_headers(headers, profile)
    log.info("ingest: reading and checking %d file(s) ...", len(files))
    with reading_inputs(files), persisted(typed_payment_rows(
            read_payment_files(spark, headers, profile=profile, secret=secret),
            profile=profile, ingested_at=ingested_at)) as typed:
        summary = check_payment_values(typed, profile=profile)
        checked = time.perf_counter()
        with ExitStack() as stack:
            unique = typed
            repeated = repeated_ids(typed)
            if repeated:
                per_id = stack.enter_context(persisted(one_row_per_id(typed, profile=profile)))
                check_one_content_per_id(per_id, profile=profile)
                unique = distinct_payment_rows(per_id, profile=profile)
            if is_delta_table(spark, table):
                existing = spark.read.format("delta").load(table)
                check_table_columns(existing, profile=profile, path=table)
                check_against_table(unique, existing, profile=profile)
            log.info("ingest: %d rows in %d file(s) checked, %s..%s (%s), %d id(s) on more than one row "
                     "(values %.1f s, ids %.1f s); writing the new ones into %s ...",
                     summary.rows, summary.files, summary.first_day, summary.last_day, profile.time_zone, repeated,
                     checked - started, time.perf_counter() - checked, table)
            commit = insert_new_transactions(spark, unique.select(*table_columns(profile)), table,
                                             first_day=summary.first_day, last_day=summary.last_day)
    if extra_columns:
        log.warning("ingest: column(s) outside [profile], not ingested: %s", ", ".join(extra_columns))
    log.info("ingest: %d file(s), %d rows covering %s..%s; %d new, %d already in %s (%s); %.1f s",
             summary.files, summary.rows, summary.first_day, summary.last_day, commit.rows,
             summary.rows - commit.rows, table, "unchanged" if commit.version is None else f"version {commit.version}",
             time.perf_counter() - started)
    return commit.rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="creditcard: one CSV file (optionally .gz) in the dataset's format; "
                             "payments: CSV files, folders or globs (quoted), all in one commit")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    if settings.profile.kind == "payments":
        # Before Spark starts: a missing or exposed secret is a configuration error.
        secret = card_key_secret(settings.profile.card_key_secret_file)
        spark = get_spark(settings.spark)
        run_payments(spark, settings, inputs=args.input, secret=secret, ingested_at=utc_now())
    else:
        if len(args.input) != 1:
            raise InvalidArgumentError(f"--input: the creditcard profile ingests one file per job, got "
                                       f"{len(args.input)}: {', '.join(args.input)}")
        spark = get_spark(settings.spark)
        run(spark, settings, input_path=args.input[0], ingested_at=utc_now())
    publish(spark, settings)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
