"""Benchmark: the wall time of `monitor --date D` against `score --date D` on the same day.

    .venv/bin/python benchmarks/monitor_cost.py                      # 142,404 and 1,000,000 rows
    .venv/bin/python benchmarks/monitor_cost.py --sizes 142404 --keep

Everything is synthetic (jobs/generate.py) and lives in a temporary folder with its own Delta
tables and MLflow store. A model of the demo's recipe (the ensemble of a logistic regression,
a 500-tree forest and XGBoost, one grid point each) is trained on two generated days of
``--training-rows`` rows in all; then, for each size, a day of that many rows is ingested, scored and
monitored, each job through ./spark-submit.sh as the nightly schedule runs it (its own JVM,
model or baseline load included). The version's baseline is built once beforehand (its first
monitoring run, timed separately), so each size's monitor run is the nightly case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FIRST_DAY = date(2013, 9, 1)

RECIPE = """
[train.candidates.logistic_regression]
regParam = [0.01]

[train.candidates.random_forest]
numTrees = [500]
maxDepth = [10]
featureSubsetStrategy = ["sqrt"]

[train.candidates.xgboost]
n_estimators = [300]
max_depth = [4]
learning_rate = [0.05]
subsample = [0.8]
colsample_bytree = [0.8]

[train.ensemble]
members = ["logistic_regression", "random_forest", "xgboost"]
"""


def conf_file(folder: Path, recipe: str = RECIPE) -> Path:
    """conf/local.toml with its state in ``folder``, every row real (normal_weight 1), the
    candidates of ``recipe`` (default: the demo's, one grid point per member), and alert
    limits wide enough for generated fraud rates."""
    text = (PROJECT / "conf" / "local.toml").read_text()
    text = text.replace('root = "lake"', f'root = "{folder / "lake"}"')
    text = text.replace('"sqlite:///mlruns/mlflow.db"', f'"sqlite:///{folder / "mlflow.db"}"')
    text = text.replace('"mlruns/artifacts"', f'"{folder / "artifacts"}"')
    text = text.replace("normal_weight = 57.79", "normal_weight = 1.0")
    text = text.replace("alerts_per_100k = [50, 1500]", "alerts_per_100k = [10, 10000]")
    head, _, rest = text.partition("[train.candidates.logistic_regression]")
    tail = rest[rest.index("# The online scoring service"):]
    path = folder / "bench.toml"
    path.write_text(head + recipe.lstrip() + "\n" + tail)
    return path


def job(*args: str, conf: Path) -> float:
    """Run one job through ./spark-submit.sh; its wall time in seconds (exit 6, an alert, is a result)."""
    env = {**os.environ, "FRAUD_PYTHON": sys.executable}
    started = time.perf_counter()
    result = subprocess.run([str(PROJECT / "spark-submit.sh"), *args, "--env", str(conf)],
                            capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 6):
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"{args[0]} failed with exit {result.returncode}")
    return elapsed


def generate(folder: Path, *, rows: int, day: date, conf: Path, days: int = 1) -> list[Path]:
    output = folder / f"from-{day.isoformat()}"
    job("generate", "--days", str(days), "--rows-per-day", str(rows), "--fraud-rate", "0.01",
        "--start-date", day.isoformat(), "--seed", str(rows), "--output", str(output), conf=conf)
    return sorted(output.glob("*.csv*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[142_404, 1_000_000])
    parser.add_argument("--training-rows", type=int, default=50_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="monitor-cost-"))
    folder.mkdir(parents=True, exist_ok=True)
    conf = conf_file(folder)
    try:
        # Two training days: train holds the last one out to measure the search.
        for file in generate(folder, rows=args.training_rows // 2, day=FIRST_DAY, conf=conf, days=2):
            job("ingest", "--input", str(file), conf=conf)
        trained = job("train", conf=conf)
        job("promote", conf=conf)
        job("score", "--date", FIRST_DAY.isoformat(), conf=conf)
        first_monitor = job("monitor", "--date", FIRST_DAY.isoformat(), conf=conf)
        print(f"trained the demo's recipe on {args.training_rows:,} rows in {trained:.0f} s; first monitor run "
              f"(baseline built and stored) {first_monitor:.1f} s", flush=True)
        rows = []
        for n, size in enumerate(args.sizes, start=1):
            day = FIRST_DAY + timedelta(days=n + 1)
            job("ingest", "--input", str(generate(folder, rows=size, day=day, conf=conf)[0]), conf=conf)
            scored = job("score", "--date", day.isoformat(), conf=conf)
            monitored = job("monitor", "--date", day.isoformat(), conf=conf)
            again = job("monitor", "--date", day.isoformat(), conf=conf)
            rows.append((size, scored, monitored, again))
            print(f"{size:,} rows: score {scored:.1f} s, monitor {monitored:.1f} s, again {again:.1f} s", flush=True)
        print()
        print(f"{'rows':>10} | {'score (s)':>9} | {'monitor (s)':>11} | {'rerun (s)':>9} | {'monitor / score':>15}")
        print(f"{'-' * 10}-|-{'-' * 9}-|-{'-' * 11}-|-{'-' * 9}-|-{'-' * 15}")
        for size, scored, monitored, again in rows:
            print(f"{size:>10,} | {scored:>9.1f} | {monitored:>11.1f} | {again:>9.1f} | {monitored / scored:>15.2f}")
        print("\n(job walls through ./spark-submit.sh, JVM start included; the rerun finds the same labels, "
              "so it keeps the realized figures)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
