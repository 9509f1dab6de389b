"""generate: write synthetic transactions, one CSV file per day, fitted on the real sample.

    ./spark-submit.sh generate --days 10 --rows-per-day 1000000 --output /tmp/synthetic
    ./spark-submit.sh generate --days 8 --rows-per-day 5000 --drift "V14:+1.5@day=5" \\
        --drift "fraud_rate:0.01@day=7" --output /tmp/drifted

The files (``synthetic-day-001.csv``, ...) are in the dataset's own format and are ingested as
the real file is (``./spark-submit.sh ingest --input /tmp/synthetic/synthetic-day-001.csv``).
They are generated, not real: see :mod:`pipelines.data.generator` for what is fitted and how.
Every argument is checked before Spark starts; a bad one stops the job with a clear message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.core.cli import calendar_date, job_parser, log, run_main
from pipelines.core.config import PROJECT_ROOT, Settings, load_settings
from pipelines.core.errors import InvalidArgumentError
from pipelines.core.session import get_spark
from pipelines.data.generator import (
    MANIFEST_FILE,
    REAL_FRAUD_RATE,
    REAL_ROWS_PER_DAY,
    Drift,
    check_generation_arguments,
    fit_model,
    generate_transactions,
    is_generator_output,
    parse_drift,
    write_daily_csv,
)
from pipelines.data.tables import read_csv_as_strings
from pipelines.data.transactions import cast_raw_columns, check_raw_values

DEFAULT_SAMPLE = PROJECT_ROOT / "data" / "creditcard_sample.csv.gz"
DEFAULT_SEED = 20130901


@dataclass(frozen=True)
class GenerateRequest:
    """Checked arguments of one generation run."""

    days: int
    rows_per_day: int
    fraud_rate: float
    seed: int
    first_date: date
    first_day_index: int
    drifts: tuple[Drift, ...]
    output: Path
    sample: Path


def check_output(output: Path, *, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty folder without ``overwrite``.

    Even with ``overwrite`` only a folder that holds nothing but an earlier run's files is
    reused, so a mistyped path never costs anyone their files.

    :raises InvalidArgumentError: naming the path and what is in it.
    """
    if not output.exists():
        return
    if not output.is_dir():
        raise InvalidArgumentError(f"--output {output} exists and is not a folder")
    entries = sorted(entry.name for entry in output.iterdir())
    if not entries:
        return
    if not overwrite:
        raise InvalidArgumentError(
            f"--output {output} exists and is not empty ({len(entries)} entries, e.g. {entries[:3]}); "
            "pass --overwrite to replace an earlier run's files, or choose another folder"
        )
    foreign = [name for name in entries if not is_generator_output(name)]
    if foreign:
        raise InvalidArgumentError(
            f"--output {output} holds files that generate did not write: {foreign[:5]}; "
            "--overwrite only replaces an earlier run's synthetic-day-*.csv files"
        )


def request_from_args(args: argparse.Namespace, settings: Settings) -> GenerateRequest:
    """Check every argument (before any Spark work) and return them as one request.

    :raises InvalidArgumentError: the first problem found, in words.
    """
    drifts = tuple(parse_drift(text) for text in args.drift)
    check_generation_arguments(
        days=args.days, rows_per_day=args.rows_per_day, fraud_rate=args.fraud_rate, seed=args.seed, drifts=drifts
    )
    ingest_start = settings.ingest.start.date()
    first_date = args.start_date or ingest_start
    first_day_index = (first_date - ingest_start).days
    if first_day_index < 0:
        raise InvalidArgumentError(
            f"--start-date {first_date} is before the ingest start {ingest_start} of env {settings.env!r}: "
            "Time would be negative"
        )
    output = Path(args.output).resolve()
    if "://" in args.output:
        raise InvalidArgumentError(f"--output {args.output}: generate writes to a local folder only")
    check_output(output, overwrite=args.overwrite)
    sample = Path(args.sample).resolve()
    if not sample.is_file():
        raise InvalidArgumentError(f"--sample {sample} is not a file")
    return GenerateRequest(
        days=args.days, rows_per_day=args.rows_per_day, fraud_rate=args.fraud_rate, seed=args.seed,
        first_date=first_date, first_day_index=first_day_index, drifts=drifts, output=output, sample=sample,
    )


def run(spark: SparkSession, settings: Settings, request: GenerateRequest) -> list[Path]:
    """Fit on the real sample, generate every day on Spark, write one file per day.

    :returns: the files written, day 1 first.
    """
    raw = read_csv_as_strings(spark, str(request.sample))
    check_raw_values(raw, source=str(request.sample), start=settings.ingest.start)
    # 5,412 rows: the fit runs on the driver, with numpy.
    sample = cast_raw_columns(raw).toPandas()
    model = fit_model(sample)
    transactions = generate_transactions(
        spark, model, days=request.days, rows_per_day=request.rows_per_day, fraud_rate=request.fraud_rate,
        seed=request.seed, first_day_index=request.first_day_index, drifts=request.drifts,
    )
    files = write_daily_csv(transactions, request.output, first_day_index=request.first_day_index)
    manifest = {
        "synthetic": True,
        "note": "Generated by jobs/generate.py from statistics fitted on the real sample; not real transactions.",
        "sample": str(request.sample),
        "sample_rows": len(sample),
        "days": request.days,
        "rows_per_day": request.rows_per_day,
        "fraud_rate": request.fraud_rate,
        "seed": request.seed,
        "first_date": request.first_date.isoformat(),
        "first_day_index": request.first_day_index,
        "drifts": [drift.text for drift in request.drifts],
        "files": [path.name for path in files],
    }
    (request.output / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("generate: %d days x %d rows into %s", request.days, request.rows_per_day, request.output)
    return files


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, required=True, help="how many days (files) to generate")
    parser.add_argument("--rows-per-day", type=int, default=REAL_ROWS_PER_DAY,
                        help=f"transactions per day (default {REAL_ROWS_PER_DAY:,}, as the real data)")
    parser.add_argument("--fraud-rate", type=float, default=REAL_FRAUD_RATE,
                        help=f"share of frauds, in (0, 1) (default {REAL_FRAUD_RATE:.5f}, as the real data)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same rows")
    parser.add_argument("--start-date", type=calendar_date, default=None,
                        help="date of day 1, YYYY-MM-DD (default: the env's ingest start date)")
    parser.add_argument("--drift", action="append", default=[],
                        help="TARGET:CHANGE@day=N[,class=0|1], e.g. V14:+1.5@day=5 or fraud_rate:0.01@day=7; "
                             "repeatable")
    parser.add_argument("--output", required=True, help="local folder for synthetic-day-NNN.csv")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --output")
    parser.add_argument("--sample", default=str(DEFAULT_SAMPLE), help="real data to fit on (dataset's CSV format)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(args.env)
    request = request_from_args(args, settings)
    spark = get_spark(settings.spark)
    run(spark, settings, request)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
