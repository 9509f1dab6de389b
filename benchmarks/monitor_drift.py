"""Demonstration: ten generated days, two drifts, and what monitoring says about each day.

    .venv/bin/python benchmarks/monitor_drift.py            # prints the verdicts and the drifted columns
    .venv/bin/python benchmarks/monitor_drift.py --keep     # keeps the tables, the MLflow store, the reports

Everything is synthetic (jobs/generate.py) and lives in a temporary folder with its own Delta
tables and MLflow store, driven through ./spark-submit.sh exactly as the nightly schedule runs
the jobs: ``--train-days`` undrifted days are ingested, a model (a logistic regression and a
100-tree forest, averaged) is trained
and promoted on them, then the other days are ingested, every day is scored and the ten days
are monitored as one range. The drifts default to V14 shifted by +1.5 from day 5 and the fraud
rate tripled from day 8.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from monitor_cost import PROJECT, conf_file, job

FIRST_DAY = date(2013, 9, 1)
# The demo's kinds of model, lighter: a logistic regression and a 100-tree forest, averaged.
RECIPE = """
[train.candidates.logistic_regression]
regParam = [0.01]

[train.candidates.random_forest]
numTrees = [100]
maxDepth = [8]
featureSubsetStrategy = ["sqrt"]

[train.ensemble]
members = ["logistic_regression", "random_forest"]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--fraud-rate", type=float, default=0.005)
    parser.add_argument("--train-days", type=int, default=4)
    parser.add_argument("--drift", action="append", default=None,
                        help="as generate's --drift (default: V14:+1.5@day=5 and fraud_rate:0.015@day=8)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    drifts = args.drift or ["V14:+1.5@day=5", "fraud_rate:0.015@day=8"]
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="monitor-drift-"))
    folder.mkdir(parents=True, exist_ok=True)
    conf = conf_file(folder, RECIPE)
    started = time.perf_counter()
    try:
        job("generate", "--days", str(args.days), "--rows-per-day", str(args.rows_per_day), "--fraud-rate",
            str(args.fraud_rate), "--seed", "7", *[f"--drift={d}" for d in drifts], "--output",
            str(folder / "days"), conf=conf)
        files = sorted((folder / "days").glob("*.csv*"))
        for file in files[:args.train_days]:
            job("ingest", "--input", str(file), conf=conf)
        trained = job("train", conf=conf)
        job("promote", conf=conf)
        for file in files[args.train_days:]:
            job("ingest", "--input", str(file), conf=conf)
        last = FIRST_DAY + timedelta(days=args.days - 1)
        scored = job("score", "--start-date", FIRST_DAY.isoformat(), "--end-date", last.isoformat(), conf=conf)
        monitored = job("monitor", "--start-date", FIRST_DAY.isoformat(), "--end-date", last.isoformat(), conf=conf)
        print(f"{args.days} generated days x {args.rows_per_day:,} rows, fraud rate {args.fraud_rate}, drifts "
              f"{', '.join(drifts)}; trained on the first {args.train_days} days in {trained:.0f} s; scored in "
              f"{scored:.0f} s, monitored in {monitored:.0f} s ({time.perf_counter() - started:.0f} s in all)\n")
        for query in (["--file", "queries/monitoring.sql"],
                      # The alert rate's limit bounds its distance from the baseline's rate.
                      ["SELECT txn_date, column, concat_ws(', ', collect_list(concat(metric, ' ', format_number("
                       "IF(metric = 'alert_rate', abs(value - baseline), value), 4), ' > ', "
                       "format_number(`limit`, 4)))) AS beyond_limit FROM monitor_drift WHERE out_of_band "
                       "GROUP BY txn_date, column ORDER BY txn_date, column"]):
            result = subprocess.run([str(PROJECT / "spark-submit.sh"), "sql", *query, "--env", str(conf)],
                                    capture_output=True, text=True)
            print("\n".join(line for line in result.stdout.splitlines() if line.startswith(("+", "|"))))
            print()
        print(f"reports: {folder / 'lake' / 'monitor_reports'}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
