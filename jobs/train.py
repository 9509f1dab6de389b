"""train: fit the fraud model on the ``transactions`` (or payments ``features``) table, log it to MLflow, register it.

    ./spark-submit.sh train
    ./spark-submit.sh train --env payments

Holds out the last day(s) for evaluation, chooses candidate, parameters and decision threshold
on a validation slice before them, refits on every day (or, with ``[train] window_days``, fits
on that window before a ``gap_days`` gap), and registers the result as the challenger. The
payments profile reads ``features`` at its current feature set and records that set on the
version. A bad config or too little data stops it before any MLflow run is logged.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.core.cli import git_commit, job_parser, run_main
from pipelines.core.config import PROJECT_ROOT, Settings, load_settings
from pipelines.core.session import get_spark
from pipelines.data.tables import current_version, read_version
from pipelines.model.inputs import check_feature_set, model_inputs, model_rows
from pipelines.model.registry import configure_mlflow, reaching_mlflow
from pipelines.training.search import check_train_settings, spread_for_fitting
from pipelines.training.tracking import Lineage, TrainingOutcome, train_and_register


def run(spark: SparkSession, settings: Settings, *, commit: str) -> TrainingOutcome:
    inputs = model_inputs(settings)
    path = inputs.path(settings)
    version = current_version(spark, path)
    rows = read_version(spark, path, version)
    check_feature_set(rows, inputs.feature_set, source=f"{path} version {version}")
    # Rows whose label is not known yet (a payments file without labels) cannot be learnt from.
    rows = model_rows(rows.filter(F.col(inputs.label_col).isNotNull()), inputs)
    transactions = spread_for_fitting(rows, settings.train.fit_partitions).cache()
    lineage = Lineage(table_path=path, table_version=version, row_count=transactions.count(), git_commit=commit)
    train = dataclasses.replace(settings.train, label_col=inputs.label_col)
    try:
        return train_and_register(transactions, lineage=lineage, train=train, registry=settings.mlflow,
                                  inputs=inputs)
    finally:
        transactions.unpersist()


def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__.splitlines()[0]).parse_args(argv)
    settings = load_settings(args.env)
    check_train_settings(settings.train)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        spark = get_spark(settings.spark)
        run(spark, settings, commit=git_commit(str(PROJECT_ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
