"""generate: write synthetic transactions, one CSV file per day.

    ./spark-submit.sh generate --days 10 --rows-per-day 1000000 --output /tmp/synthetic
    ./spark-submit.sh generate --days 8 --rows-per-day 5000 --drift "V14:+1.5@day=5" \\
        --drift "fraud_rate:0.01@day=7" --output /tmp/drifted
    ./spark-submit.sh generate --profile payments --output /tmp/payments

Two profiles. ``creditcard`` (the default) is fitted on the real sample and writes the dataset's
own format, ingested as the real file is (``./spark-submit.sh ingest --input
/tmp/synthetic/synthetic-day-001.csv``): see :mod:`pipelines.data.generator`. ``payments``
simulates the Fraud Detection Handbook's chapter 3 design (customers, terminals, three fraud
scenarios) in its raw schema ``TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,
TX_FRAUD``: see :mod:`pipelines.data.payments_generator`. Both are generated, not real.
Every argument is checked before Spark starts; a bad one stops the job with a clear message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date
from fractions import Fraction
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
from pipelines.data.payments_generator import (
    GeneratedPayments,
    PaymentsParams,
    check_payments_params,
    generate_payments,
    payments_manifest,
    write_payments_csv,
)
from pipelines.data.tables import read_csv_as_strings
from pipelines.data.transactions import cast_raw_columns, check_raw_values

DEFAULT_SAMPLE = PROJECT_ROOT / "data" / "creditcard_sample.csv.gz"
DEFAULT_SEED = 20130901
PAYMENTS_DEFAULTS = PaymentsParams()
# Options that only one profile takes: given to the other, they are refused, not ignored.
CREDITCARD_ONLY = {"rows_per_day": "--rows-per-day", "fraud_rate": "--fraud-rate", "drift": "--drift",
                   "sample": "--sample"}
PAYMENTS_ONLY = {
    "customers": "--customers", "terminals": "--terminals", "radius": "--radius",
    "amount_threshold": "--fraud-amount-threshold", "amount_multiplier": "--fraud-amount-multiplier",
    "compromised_terminals_per_day": "--compromised-terminals-per-day",
    "terminal_compromise_days": "--terminal-compromise-days",
    "compromised_customers_per_day": "--compromised-customers-per-day",
    "customer_compromise_days": "--customer-compromise-days", "compromised_share": "--compromised-share",
}


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


@dataclass(frozen=True)
class PaymentsRequest:
    """Checked arguments of one payments run."""

    params: PaymentsParams
    output: Path


def _refuse_other_profiles_options(args: argparse.Namespace) -> None:
    others = CREDITCARD_ONLY if args.profile == "payments" else PAYMENTS_ONLY
    given = [option for name, option in others.items() if getattr(args, name) not in (None, [])]
    if given:
        raise InvalidArgumentError(f"{', '.join(given)}: not an option of --profile {args.profile}")


def _checked_output(text: str, *, overwrite: bool) -> Path:
    if "://" in text:
        raise InvalidArgumentError(f"--output {text}: generate writes to a local folder only")
    output = Path(text).resolve()
    check_output(output, overwrite=overwrite)
    return output


def payments_request_from_args(args: argparse.Namespace) -> PaymentsRequest:
    """Check every argument of a payments run (before any Spark work).

    :raises InvalidArgumentError: the first problem found, naming the option and its value.
    """
    _refuse_other_profiles_options(args)
    given = {field.name: getattr(args, field.name) for field in fields(PaymentsParams)
             if getattr(args, field.name, None) is not None}
    params = PaymentsParams(**{**given, "seed": args.seed if args.seed is not None else PAYMENTS_DEFAULTS.seed})
    check_payments_params(params)
    return PaymentsRequest(params=params, output=_checked_output(args.output, overwrite=args.overwrite))


def request_from_args(args: argparse.Namespace, settings: Settings) -> GenerateRequest:
    """Check every argument of a credit-card run (before any Spark work) and return them as one
    request. Options left out take the credit-card defaults.

    :raises InvalidArgumentError: the first problem found, in words.
    """
    _refuse_other_profiles_options(args)
    if args.days is None:
        raise InvalidArgumentError("--days is required for --profile creditcard")
    rows_per_day = REAL_ROWS_PER_DAY if args.rows_per_day is None else args.rows_per_day
    fraud_rate = REAL_FRAUD_RATE if args.fraud_rate is None else args.fraud_rate
    seed = DEFAULT_SEED if args.seed is None else args.seed
    drifts = tuple(parse_drift(text) for text in args.drift or [])
    check_generation_arguments(
        days=args.days, rows_per_day=rows_per_day, fraud_rate=fraud_rate, seed=seed, drifts=drifts
    )
    ingest_start = settings.ingest.start.date()
    first_date = args.start_date or ingest_start
    first_day_index = (first_date - ingest_start).days
    if first_day_index < 0:
        raise InvalidArgumentError(
            f"--start-date {first_date} is before the ingest start {ingest_start} of env {settings.env!r}: "
            "Time would be negative"
        )
    output = _checked_output(args.output, overwrite=args.overwrite)
    sample = Path(args.sample or DEFAULT_SAMPLE).resolve()
    if not sample.is_file():
        raise InvalidArgumentError(f"--sample {sample} is not a file")
    return GenerateRequest(
        days=args.days, rows_per_day=rows_per_day, fraud_rate=fraud_rate, seed=seed,
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


def run_payments(spark: SparkSession, request: PaymentsRequest) -> list[Path]:
    """Simulate the payments on Spark, write one file per day and the manifest.

    :returns: the files written, day 1 first.
    """
    payments: GeneratedPayments = generate_payments(spark, request.params)
    try:
        written = write_payments_csv(payments.labelled, request.output, start_date=request.params.start_date)
    finally:
        payments.release()
    (request.output / MANIFEST_FILE).write_text(json.dumps(payments_manifest(request.params, written), indent=2) + "\n")
    log.info("generate --profile payments: %d transactions (%d frauds) over %d days into %s",
             written.rows, written.frauds, request.params.days, request.output)
    return written.files


def share(text: str) -> Fraction:
    """An argparse type: a share written as a fraction (``1/3``) or a decimal (``0.5``)."""
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction such as 1/3 or 0.5") from None


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["creditcard", "payments"], default="creditcard",
                        help="creditcard: fitted on the real sample (default); payments: the Fraud Detection "
                             "Handbook's simulator")
    parser.add_argument("--days", type=int, default=None,
                        help=f"how many days (files) to generate (required for creditcard; payments: "
                             f"{PAYMENTS_DEFAULTS.days})")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"same seed, same rows (default {DEFAULT_SEED} for creditcard, {PAYMENTS_DEFAULTS.seed} "
                             "for payments)")
    parser.add_argument("--start-date", type=calendar_date, default=None,
                        help="date of day 1, YYYY-MM-DD (default: the env's ingest start date for creditcard, "
                             f"{PAYMENTS_DEFAULTS.start_date} for payments)")
    parser.add_argument("--output", required=True, help="local folder for synthetic-day-NNN.csv")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --output")

    creditcard = parser.add_argument_group("--profile creditcard")
    creditcard.add_argument("--rows-per-day", type=int, default=None,
                            help=f"transactions per day (default {REAL_ROWS_PER_DAY:,}, as the real data)")
    creditcard.add_argument("--fraud-rate", type=float, default=None,
                            help=f"share of frauds, in (0, 1) (default {REAL_FRAUD_RATE:.5f}, as the real data)")
    creditcard.add_argument("--drift", action="append", default=None,
                            help="TARGET:CHANGE@day=N[,class=0|1], e.g. V14:+1.5@day=5 or fraud_rate:0.01@day=7; "
                                 "repeatable")
    creditcard.add_argument("--sample", default=None,
                            help=f"real data to fit on (dataset's CSV format; default {DEFAULT_SAMPLE})")

    defaults = PAYMENTS_DEFAULTS
    payments = parser.add_argument_group("--profile payments (defaults: the Handbook's published run)")
    payments.add_argument("--customers", type=int, default=None, help=f"default {defaults.customers:,}")
    payments.add_argument("--terminals", type=int, default=None, help=f"default {defaults.terminals:,}")
    payments.add_argument("--radius", type=float, default=None,
                          help=f"a customer uses the terminals closer than this on the 100x100 grid "
                               f"(default {defaults.radius:g})")
    payments.add_argument("--fraud-amount-threshold", dest="amount_threshold", type=float, default=None,
                          help=f"scenario 1: an amount above this is fraud (default {defaults.amount_threshold:g})")
    payments.add_argument("--compromised-terminals-per-day", dest="compromised_terminals_per_day", type=int,
                          default=None, help=f"scenario 2 (default {defaults.compromised_terminals_per_day})")
    payments.add_argument("--terminal-compromise-days", dest="terminal_compromise_days", type=int, default=None,
                          help=f"scenario 2: days a terminal stays compromised (default "
                               f"{defaults.terminal_compromise_days})")
    payments.add_argument("--compromised-customers-per-day", dest="compromised_customers_per_day", type=int,
                          default=None, help=f"scenario 3 (default {defaults.compromised_customers_per_day})")
    payments.add_argument("--customer-compromise-days", dest="customer_compromise_days", type=int, default=None,
                          help=f"scenario 3: days a customer stays compromised (default "
                               f"{defaults.customer_compromise_days})")
    payments.add_argument("--compromised-share", dest="compromised_share", type=share, default=None,
                          help=f"scenario 3: share of the compromised customers' transactions made fraud "
                               f"(default {defaults.compromised_share})")
    payments.add_argument("--fraud-amount-multiplier", dest="amount_multiplier", type=float, default=None,
                          help=f"scenario 3: their amounts are multiplied by this (default "
                               f"{defaults.amount_multiplier:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(args.env)
    if args.profile == "payments":
        payments_request = payments_request_from_args(args)
        run_payments(get_spark(settings.spark), payments_request)
        return 0
    request = request_from_args(args, settings)
    spark = get_spark(settings.spark)
    run(spark, settings, request)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
