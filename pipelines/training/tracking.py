"""One MLflow run per training: a child run per candidate, the best one logged and registered.

Every run, parent and child, logs metrics with the same names (``auc_pr``, ``val_auc_pr``,
``precision``, ...) so that the MLflow UI's compare view lines them up.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any

import mlflow
import pyspark
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import MlflowSettings, TrainSettings
from pipelines.model import release
from pipelines.model.inputs import CREDITCARD, ModelInputs
from pipelines.model.portable.decision import Decision
from pipelines.model.ref import FEATURE_SET_TAG
from pipelines.model.registry import FITTED_DAYS_TAG, NORMAL_WEIGHT_TAG, THRESHOLD_TAG
from pipelines.model.stages import pipeline_members
from pipelines.training import plots
from pipelines.training.search import (
    FINAL_FIT,
    CandidateResult,
    FitRunner,
    best_candidate,
    check_train_settings,
    search_all,
    split_by_time,
    start_final_fit,
)

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
# Real rows of the training window that the release rule's parity rows are built from.
PARITY_EXAMPLE_ROWS = 1000


@dataclass(frozen=True)
class Lineage:
    """Which data and code a model came from; logged as tags of its run and model version."""

    table_path: str
    table_version: int
    row_count: int
    git_commit: str

    def tags(self) -> dict[str, str]:
        return {
            "source.table_path": self.table_path,
            "source.table_version": str(self.table_version),
            "source.row_count": str(self.row_count),
            "git.commit": self.git_commit,
            "versions.spark": pyspark.__version__,
            "versions.delta": importlib.metadata.version("delta-spark"),
            "versions.mlflow": mlflow.__version__,
        }


def training_dataset(transactions: DataFrame, lineage: Lineage) -> MetaDataset:
    """The training input as an MLflow dataset: the Delta table at the version read.

    Named ``<table>@v<version>`` (as MLflow names a Delta table's version), with the table's
    path and version as its source and the DataFrame's columns as its schema. Made of metadata
    only: MLflow's Spark dataset would count the rows with a Spark job each time it is logged
    (its profile), and the count is known already (``source.row_count``, a tag of the run).

    Example::

        with mlflow.start_run():
            mlflow.log_input(training_dataset(transactions, lineage), context="training")
    """
    table = lineage.table_path.rstrip("/").rsplit("/", 1)[-1]
    # As text: MLflow's Delta source leaves a version 0 out of what it logs (it tests truth).
    source = DeltaDatasetSource(path=lineage.table_path, delta_table_version=str(lineage.table_version))
    with warnings.catch_warnings():
        # Its hint about integer columns is for a model's inputs. It reads the schema, not the rows.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        schema = infer_signature(transactions).inputs
    return MetaDataset(source, name=f"{table}@v{lineage.table_version}", schema=schema)


@dataclass(frozen=True)
class TrainingOutcome:
    run_id: str
    model_name: str
    model_version: str
    candidate: str
    params: dict[str, Any]
    threshold: float
    holdout_metrics: dict[str, float]
    holdout_days: list[date]


def train_and_register(
    transactions: DataFrame,
    *,
    lineage: Lineage,
    train: TrainSettings,
    registry: MlflowSettings,
    inputs: ModelInputs = CREDITCARD,
) -> TrainingOutcome:
    """Search the candidates, log every one, register the best as the challenger.

    The settings' checks and the time split (and its checks) run before any MLflow run
    starts; an error inside the run marks it failed.
    """
    check_train_settings(train)
    split = split_by_time(
        transactions, holdout_days=train.holdout_days, validation_fraction=train.validation_fraction,
        validation_folds=train.validation_folds, label_col=train.label_col, gap_days=train.gap_days,
        window_days=train.window_days, time_col=inputs.time_col,
    )
    holdout_label = ",".join(day.isoformat() for day in split.holdout_days)
    dataset = training_dataset(transactions, lineage)
    with mlflow.start_run(run_name=f"train v{lineage.table_version} holdout {holdout_label}") as run:
        mlflow.set_tags(lineage.tags())
        mlflow.log_input(dataset, context="training")
        mlflow.log_params({
            "holdout_days": holdout_label,
            "training_days": ",".join(day.isoformat() for day in split.training_days),
            "gap_days": train.gap_days,
            "window_days": train.window_days or "all",
            "feature_set": inputs.feature_set or "none",
            "feature_columns": ",".join(inputs.feature_cols),
            "validation_fraction": train.validation_fraction,
            "validation_folds": train.validation_folds,
            "class_weighting": train.class_weighting,
            "normal_weight": train.normal_weight,
            "threshold_policy": train.threshold.name,
            "threshold_target_precision": train.threshold.target_precision,
            "threshold_costs": f"missed fraud {train.threshold.cost_missed_fraud}, "
                               f"false alarm {train.threshold.cost_false_alarm}",
            "seed": train.seed,
            "refit_on_all_days": train.refit_on_all_days,
            "search_space": json.dumps(train.candidates, sort_keys=True),
            "ensemble_members": ",".join(train.ensemble_members) or "none",
            "fit_partitions": train.fit_partitions,
            "parallel_fits": train.parallel_fits,
            "reuse_member_fits": train.reuse_member_fits,
        })
        # Every fit first (several at once, see FitRunner), then one child run per candidate.
        with FitRunner(parallel=train.parallel_fits, clock=time.monotonic) as runner:
            if train.refit_on_all_days:
                runner.expect([FINAL_FIT])  # counted in the progress from the start
            results = search_all(split, settings=train, runner=runner, inputs=inputs)
            chosen = best_candidate(results)
            best = results[chosen]
            # The refit on every day runs while the candidates are logged.
            final_fit = (
                start_final_fit(transactions, candidate=chosen, params=best.best.params, settings=train,
                                runner=runner, inputs=inputs)
                if train.refit_on_all_days else lambda: best.model
            )
            for candidate, result in results.items():
                with mlflow.start_run(run_name=candidate, nested=True):
                    mlflow.set_tags(lineage.tags())
                    mlflow.log_input(dataset, context="training")
                    _log_candidate(result, inputs)
            _log_candidate(best, inputs)
            mlflow.set_tag("chosen_candidate", chosen)
            final_model = final_fit()
        fitted_days = split.training_days + (split.holdout_days if train.refit_on_all_days else [])
        model_version = _log_and_register(
            final_model, split.training_window, best, lineage, registry, train,
            fitted_days=fitted_days, inputs=inputs,
        )
    log.info(
        "train: %s %s, threshold %.4f, held-out AUC-PR %.4f -> %s version %s (%s)",
        chosen, best.best.params, best.threshold, best.holdout_metrics["auc_pr"],
        registry.model_name, model_version, registry.challenger_alias,
    )
    return TrainingOutcome(
        run_id=run.info.run_id,
        model_name=registry.model_name,
        model_version=model_version,
        candidate=chosen,
        params=best.best.params,
        threshold=best.threshold,
        holdout_metrics=best.holdout_metrics,
        holdout_days=split.holdout_days,
    )


def _log_candidate(result: CandidateResult, inputs: ModelInputs) -> None:
    """Log a candidate's chosen parameters, metrics and pictures to the active run."""
    candidate = result.best.candidate
    mlflow.log_params({
        "candidate": candidate,
        **{f"model.{k}": json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
           for k, v in result.best.params.items()},
    })
    mlflow.log_param("decision_threshold", result.threshold)
    mlflow.log_metrics({**result.validation_metrics, **result.holdout_metrics, "threshold": result.threshold})
    for step, point in enumerate(result.points):
        mlflow.log_metric("search_val_auc_pr", point.validation_auc_pr, step=step)
    curve, threshold = result.holdout_curve, result.threshold
    figures = {
        "plots/precision_recall.png": plots.precision_recall_figure(curve, threshold, f"{candidate}: held-out PR"),
        "plots/roc.png": plots.roc_figure(curve, f"{candidate}: held-out ROC"),
        "plots/confusion_matrix.png": plots.confusion_matrix_figure(curve, threshold, f"{candidate}: held-out"),
        "plots/score_distribution.png": plots.score_distribution_figure(
            curve, threshold, f"{candidate}: held-out scores"),
    }
    importances = _feature_importances(result.model, len(inputs.feature_cols))
    if importances is not None:
        figures["plots/feature_importance.png"] = plots.feature_importance_figure(
            list(inputs.feature_cols), importances, f"{candidate}: feature importance")
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)


def _feature_importances(model: PipelineModel, n_features: int) -> list[float] | None:
    """Tree importances (XGBoost: total gain), or the size of a linear model's scaled coefficients."""
    classifier = model.stages[-1]
    if hasattr(classifier, "get_booster"):
        gain = classifier.get_booster().get_score(importance_type="total_gain")
        return [gain.get(f"f{index}", 0.0) for index in range(n_features)]
    if hasattr(classifier, "featureImportances"):
        return classifier.featureImportances.toArray().tolist()
    if hasattr(classifier, "coefficients"):
        return [abs(value) for value in classifier.coefficients.toArray()]
    return None


def _log_and_register(
    model: PipelineModel,
    example_rows: DataFrame,
    result: CandidateResult,
    lineage: Lineage,
    registry: MlflowSettings,
    train: TrainSettings,
    *,
    fitted_days: list[date],
    inputs: ModelInputs,
) -> str:
    """Log the model (its Spark pipeline and its portable form, which must pass the release
    rule of :mod:`pipelines.model.release`), register it as the challenger.

    The version's tags say which rows it was fitted on (the days, at the table version of its
    lineage), so that a promotion gate can find rows that neither it nor the champion saw.
    """
    # Real rows for the release rule's parity check (pipelines/model/release.py), spread over the
    # window; the first five are also the logged input example (one Spark job for both).
    parity_examples = (example_rows.select(*inputs.feature_cols).orderBy(F.rand(train.seed))
                       .limit(PARITY_EXAMPLE_ROWS).toPandas())
    input_example = parity_examples.head(5)
    info = release.log_model(
        example_rows.sparkSession,
        model,
        artifact_path=MODEL_ARTIFACT,
        decision=Decision(threshold=result.threshold, normal_weight=train.normal_weight),
        examples=parity_examples,
        input_example=input_example,
        # Named, not inferred: inference loads the model in a second Python process.
        pip_requirements=_model_requirements(result.best.candidate, result.best.params),
        source={"candidate": result.best.candidate, **lineage.tags()},
        seed=train.seed,
    )
    version_tags = {
        **lineage.tags(),
        THRESHOLD_TAG: repr(result.threshold),
        "threshold_policy": train.threshold.name,
        FITTED_DAYS_TAG: ",".join(day.isoformat() for day in fitted_days),
        NORMAL_WEIGHT_TAG: repr(train.normal_weight),
        "candidate": result.best.candidate,
        "holdout.auc_pr": f"{result.holdout_metrics['auc_pr']:.6f}",
        "holdout.auc_pr_ci95": f"{result.holdout_metrics['auc_pr_ci95_low']:.4f}-"
                               f"{result.holdout_metrics['auc_pr_ci95_high']:.4f}",
        "validation.auc_pr": f"{result.validation_metrics['val_auc_pr']:.6f}",
        **({FEATURE_SET_TAG: inputs.feature_set} if inputs.feature_set else {}),
    }
    model_version = mlflow.register_model(info.model_uri, registry.model_name, tags=version_tags)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(registry.model_name, registry.challenger_alias, model_version.version)
    return str(model_version.version)


def _model_requirements(candidate: str, params: dict[str, Any]) -> list[str]:
    """The pinned packages a logged model of ``candidate`` needs to load and score."""
    requirements = [
        f"pyspark=={pyspark.__version__}",
        f"mlflow=={mlflow.__version__}",
        f"delta-spark=={importlib.metadata.version('delta-spark')}",
        # The portable form's scorer (pipelines/portable): trees compiled by numba.
        f"numba=={importlib.metadata.version('numba')}",
    ]
    if "xgboost" in pipeline_members(candidate, params):
        # The distribution that provides the module: xgboost-cpu here, xgboost elsewhere.
        distribution = importlib.metadata.packages_distributions()["xgboost"][0]
        requirements.append(f"{distribution}=={importlib.metadata.version(distribution)}")
    return requirements
