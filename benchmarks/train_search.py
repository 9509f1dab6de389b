"""Benchmark: the full model search of `train` on generated data of a given size.

    .venv/bin/python benchmarks/train_search.py --days 2 --rows-per-day 142404

Generates synthetic days (fitted on the real sample, at the real fraud rate), ingests them,
then runs the training job's search, logging and registration exactly as `train` does, with
the environment's candidates. Prints the wall time of each step and each candidate's
validation and held-out AUC-PR. Everything goes into a temporary folder (``--workdir``),
never the project's ``lake/`` or ``mlruns/``. Generated data: the metrics say how the search
behaves at that volume, not how a model does on real traffic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from mlflow.tracking import MlflowClient  # noqa: E402

import jobs.generate as generate_job  # noqa: E402
from jobs import ingest, train  # noqa: E402
from pipelines.core.config import load_settings, with_state_in  # noqa: E402
from pipelines.core.session import get_spark  # noqa: E402
from pipelines.data.generator import REAL_FRAUD_RATE  # noqa: E402
from pipelines.model.registry import configure_mlflow  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--rows-per-day", type=int, default=142_404)
    parser.add_argument("--env", default="local")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="train-search-"))
    settings = with_state_in(load_settings(args.env), workdir)
    # Generated at the real fraud rate: every row stands for itself.
    settings = replace(settings, train=replace(settings.train, normal_weight=1.0))
    spark = get_spark(settings.spark)
    generate_args = argparse.Namespace(
        days=args.days, rows_per_day=args.rows_per_day, fraud_rate=REAL_FRAUD_RATE, seed=generate_job.DEFAULT_SEED,
        start_date=None, drift=[], output=str(workdir / "synthetic"), overwrite=False,
        sample=str(generate_job.DEFAULT_SAMPLE),
    )
    started = time.perf_counter()
    files = generate_job.run(spark, settings, generate_job.request_from_args(generate_args, settings))
    generated = time.perf_counter()
    for path in files:
        ingest.run(spark, settings, input_path=str(path), ingested_at=datetime.now(timezone.utc))
    ingested = time.perf_counter()
    configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="benchmark")
    trained = time.perf_counter()

    client = MlflowClient(settings.mlflow.tracking_uri)
    children = client.search_runs(
        [client.get_run(outcome.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'"
    )
    rows = args.days * args.rows_per_day
    print(f"rows: {rows:,} in {args.days} day(s), fraud rate {REAL_FRAUD_RATE:.5f}; workdir {workdir}")
    print(f"generate {generated - started:7.1f} s | ingest {ingested - generated:7.1f} s | "
          f"train (search + log + register) {trained - ingested:7.1f} s")
    for child in sorted(children, key=lambda run: run.data.tags["mlflow.runName"]):
        metrics = child.data.metrics
        seconds = (child.info.end_time - child.info.start_time) / 1000
        print(f"  {child.data.tags['mlflow.runName']:20s} {seconds:7.1f} s  val_auc_pr {metrics['val_auc_pr']:.4f}  "
              f"held-out auc_pr {metrics['auc_pr']:.4f}  recall {metrics['recall']:.3f}  "
              f"alerts/100k {metrics['alerts_per_100k']:.1f}")
    print(f"registered: {outcome.candidate} {outcome.params} -> version {outcome.model_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
