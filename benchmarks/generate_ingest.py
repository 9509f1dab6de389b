"""Benchmark: generate N days x M synthetic rows, ingest them day by day, report speed and fidelity.

    .venv/bin/python benchmarks/generate_ingest.py --days 10 --rows-per-day 1000000

Everything goes into a temporary folder (``--workdir``; removed at the end unless ``--keep``):
the synthetic CSV files and a Delta table, never the project's ``lake/`` or ``mlruns/``.
Timings are wall-clock on this machine, session start excluded. Fidelity is measured on the
ingested table against the real sample, on all generated frauds (up to ``--max-frauds``) and
ten times as many randomly drawn normal rows, the real sample's own 1:10 balance, so the cross
AUC-PR figures are comparable both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import pandas as pd  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import jobs.generate as generate_job  # noqa: E402
from jobs import ingest  # noqa: E402
from pipelines.core.config import load_settings, with_state_in  # noqa: E402
from pipelines.core.session import get_spark  # noqa: E402
from pipelines.data.generator import REAL_FRAUD_RATE, fidelity_report  # noqa: E402
from pipelines.data.schema import LABEL_COL, RAW_COLS  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--fraud-rate", type=float, default=REAL_FRAUD_RATE)
    parser.add_argument("--seed", type=int, default=generate_job.DEFAULT_SEED)
    parser.add_argument("--env", default="local", help="config for the Spark settings and the ingest start")
    parser.add_argument("--workdir", default=None, help="folder for files and table (default: a new temp folder)")
    parser.add_argument("--max-frauds", type=int, default=20_000, help="frauds used for the fidelity figures")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and the table")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="generate-ingest-"))
    settings = with_state_in(load_settings(args.env), workdir)
    output = workdir / "synthetic"
    request = generate_job.request_from_args(
        generate_job.build_parser().parse_args([
            "--days", str(args.days), "--rows-per-day", str(args.rows_per_day),
            "--fraud-rate", str(args.fraud_rate), "--seed", str(args.seed), "--output", str(output),
        ]),
        settings,
    )
    spark = get_spark(settings.spark)
    total_rows = args.days * args.rows_per_day
    results: dict = {"days": args.days, "rows_per_day": args.rows_per_day, "total_rows": total_rows,
                     "cores": os.cpu_count(), "workdir": str(workdir)}
    try:
        started = time.perf_counter()
        files = generate_job.run(spark, settings, request)
        generate_seconds = time.perf_counter() - started
        results["generate_seconds"] = round(generate_seconds, 1)
        results["generate_rows_per_second"] = round(total_rows / generate_seconds)
        results["csv_bytes"] = sum(path.stat().st_size for path in files)
        print(f"generate: {total_rows:,} rows in {generate_seconds:.1f} s "
              f"({total_rows / generate_seconds:,.0f} rows/s, {results['csv_bytes'] / 1e9:.2f} GB of CSV)")

        ingest_seconds = []
        for path in files:
            started = time.perf_counter()
            inserted = ingest.run(spark, settings, input_path=str(path), ingested_at=datetime.now(timezone.utc))
            ingest_seconds.append(time.perf_counter() - started)
            print(f"ingest {path.name}: {inserted:,} rows in {ingest_seconds[-1]:.1f} s")
        results["ingest_seconds_per_day"] = [round(seconds, 1) for seconds in ingest_seconds]
        results["ingest_seconds"] = round(sum(ingest_seconds), 1)
        results["ingest_rows_per_second"] = round(total_rows / sum(ingest_seconds))
        print(f"ingest: {total_rows:,} rows in {sum(ingest_seconds):.1f} s "
              f"({total_rows / sum(ingest_seconds):,.0f} rows/s)")

        table = spark.read.format("delta").load(settings.tables.transactions_path)
        results["table_rows"] = table.count()
        results["fidelity"] = fidelity(spark, table, args.max_frauds, args.seed)
        print(json.dumps(results, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def fidelity(spark, table, max_frauds: int, seed: int) -> dict:
    """Fidelity figures of the ingested rows against the real sample (see the module docstring)."""
    frauds = table.filter(F.col(LABEL_COL) == 1)
    fraud_count = frauds.count()
    normal_count = table.count() - fraud_count
    keep_frauds = min(fraud_count, max_frauds)
    fraud_rows = frauds.sample(fraction=min(1.0, keep_frauds / max(fraud_count, 1)), seed=seed)
    normal_rows = table.filter(F.col(LABEL_COL) == 0).sample(
        fraction=min(1.0, 10 * keep_frauds / max(normal_count, 1)), seed=seed
    )
    synthetic = fraud_rows.unionByName(normal_rows).select(*RAW_COLS).toPandas()
    real = pd.read_csv(generate_job.DEFAULT_SAMPLE)
    return fidelity_report(real=real, synthetic=synthetic)


if __name__ == "__main__":
    sys.exit(main())
