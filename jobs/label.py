"""label: merge late labels (chargebacks) from a CSV into the Delta table ``labels``.

    ./spark-submit.sh label --file chargebacks.csv

The file has a header ``transaction_id,Class`` and one label per row. New ids are inserted,
ids whose label changed are updated, the rest is left alone: the same file twice changes
nothing. Bad input (a column missing or not in the format, a Class other than 0/1, an empty
id, an id labelled both 0 and 1, an id not in ``transactions``, a header without rows, a
damaged file) stops the job with exit 2 before anything is written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.core.cli import job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.tables import current_version, read_version, reading_input
from pipelines.monitoring.labels import LabelChanges, check_label_file, merge_labels


def run(spark: SparkSession, settings: Settings, *, file: str, labelled_at: datetime) -> LabelChanges:
    """Check the label file, then merge it into ``labels``; return what changed."""
    transactions_path = settings.tables.transactions_path
    transactions = read_version(spark, transactions_path, current_version(spark, transactions_path))
    labels_path = settings.tables.path(settings.tables.labels)
    with reading_input(file):
        checked = check_label_file(spark, file, transactions)
        changes = merge_labels(spark, checked, labels_path, labelled_at=labelled_at, source_file=Path(file).name)
    log.info("label: %s: %d new labels, %d changed, %d unchanged -> %s", file, changes.inserted, changes.updated,
             changes.unchanged, "labels unchanged" if changes.version is None else f"labels version {changes.version}")
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="CSV file (optionally .gz) with columns transaction_id,Class")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    spark = get_spark(settings.spark)
    run(spark, settings, file=args.file, labelled_at=utc_now())
    publish(spark, settings)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
