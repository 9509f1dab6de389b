"""Releasing a version: the rule that its portable scorer gives Spark's probabilities (to
1e-9), and the logging of both forms into one MLflow model.

At registration the fitted ``PipelineModel`` and its portable form score the same rows and
the version is not registered if any probability differs by more than
:data:`~pipelines.model.portable.model.PARITY_TOLERANCE`. The rows are where the two could part:

- real rows of the training data (every stage on ordinary values);
- rows exactly on every tree's split thresholds and one step either side (a sample of them
  when there are more than ``max_split_points``): Spark's trees send ``x <= t`` left,
  XGBoost sends ``float32(x) < t`` left, so a threshold rounded anywhere shows here;
- extreme values in each feature in turn (zero, minus zero, the smallest and the largest
  magnitudes float32 can hold), where overflow and rounding differ first.

The rows and Spark's probabilities are saved with the portable form, so whatever loads it
later can check that it still reproduces them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.spark
import numpy as np
import pandas as pd
from mlflow import pyfunc
from mlflow.models import Model, infer_signature
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.errors import ModelNotPortableError
from pipelines.model.portable import pyfunc as portable_pyfunc  # our loader (mlflow's pyfunc module is `pyfunc`)
from pipelines.model.portable.decision import Decision
from pipelines.model.portable.model import PARITY_TOLERANCE, ParityRows, PortableModel, compare
from pipelines.model.portable.pyfunc import PORTABLE_DIR
from pipelines.model.stages import fraud_probability

log = logging.getLogger(__name__)

_FLOAT32_MAX = float(np.finfo(np.float32).max)
EXTREME_VALUES = (0.0, -0.0, 1e-300, -1e-300, 1e30, -1e30, _FLOAT32_MAX, -_FLOAT32_MAX)
_ROW = "_parity_row"


def parity_features(model: PortableModel, examples: np.ndarray, *, max_split_points: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """The rows to compare on (see the module's docstring), built from ``examples`` (real rows)."""
    if examples.ndim != 2 or examples.shape[1] != len(model.feature_cols) or not len(examples):
        raise ValueError(f"examples must be a non-empty array of rows of {len(model.feature_cols)} features")
    rng = np.random.default_rng(seed)
    rows = [examples]
    points = model.split_points()
    if len(points) > max_split_points:
        points = [points[i] for i in sorted(rng.choice(len(points), size=max_split_points, replace=False))]
    if points:
        values = []
        for _, threshold, rule in points:
            if rule == "<=":
                values.append((threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)))
            else:  # XGBoost: compared as float32
                t32 = np.float32(threshold)
                values.append((float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                               float(np.nextafter(float(t32), -np.inf))))
        features = np.asarray([feature for feature, _, _ in points])
        base = examples[rng.integers(len(examples), size=len(points))]
        for column in range(3):
            on_split = base.copy()
            on_split[np.arange(len(points)), features] = [value[column] for value in values]
            rows.append(on_split)
    n_features = len(model.feature_cols)
    for value in EXTREME_VALUES:
        extreme = np.repeat(examples[:1], n_features, axis=0)
        extreme[np.arange(n_features), np.arange(n_features)] = value
        rows.append(extreme)
        rows.append(np.full((1, n_features), value))
    return np.concatenate(rows)


def spark_probabilities(spark: SparkSession, model: PipelineModel, features: np.ndarray,
                        feature_cols: list[str]) -> np.ndarray:
    """The pipeline's ``probability[1]`` for each row of ``features``, in their order."""
    frame = pd.DataFrame(features, columns=feature_cols)
    frame[_ROW] = np.arange(len(frame))
    rows: DataFrame = spark.createDataFrame(frame)
    scored = (model.transform(rows).select(_ROW, fraud_probability().alias("p"))
              .orderBy(F.col(_ROW)).toPandas())
    return scored["p"].to_numpy(dtype=np.float64)


def check_parity(spark: SparkSession, model: PipelineModel, portable: PortableModel,
                 examples: np.ndarray, *, seed: int = 0) -> ParityRows:
    """Score the parity rows both ways; return them with Spark's probabilities.

    :raises ModelNotPortableError: a probability differs by more than the tolerance (the
        message gives how many rows, the largest difference and the worst row).
    """
    features = parity_features(portable, examples, seed=seed)
    expected = spark_probabilities(spark, model, features, portable.feature_cols)
    actual = portable.sample_probability(features)
    failures, largest, worst = compare(expected, actual)
    stages = ", ".join(stage.kind for stage in portable.stages)
    if failures:
        row = dict(zip(portable.feature_cols, features[worst].tolist(), strict=True))
        raise ModelNotPortableError(
            f"the portable scorer ({stages}) differs from Spark on {failures} of {len(features)} rows, by up "
            f"to {largest:.3g} (the release rule allows {PARITY_TOLERANCE:g}); worst row: Spark "
            f"{expected[worst]!r}, portable {actual[worst]!r}, features {row}")
    log.info("parity: the portable scorer (%s) matches Spark on %d rows (largest difference %.3g)",
             stages, len(features), largest)
    return ParityRows(features=features, expected=expected)


# --- logging a version with both flavors ------------------------------------------------------
def save_model(
    path: str,
    mlflow_model: Model,
    *,
    spark_model: PipelineModel,
    make_portable: Callable[[Path], PortableModel],
    input_example: pd.DataFrame,
    pip_requirements: list[str],
) -> None:
    """Save both flavors into ``path`` (MLflow's flavor interface, called by ``Model.log``).

    ``make_portable`` gets the saved ``sparkml/`` folder and returns the portable form; it
    checks parity and raises to stop the logging.
    """
    # signature=False: the signature is the portable predict's, set below, not one Spark infers.
    mlflow.spark.save_model(spark_model, path, mlflow_model=mlflow_model, signature=False,
                            input_example=input_example, pip_requirements=pip_requirements)
    portable = make_portable(Path(path) / "sparkml")
    portable.save(Path(path) / PORTABLE_DIR)
    mlflow_model.signature = infer_signature(input_example, portable.predict(input_example))
    pyfunc.add_to_model(mlflow_model, loader_module=portable_pyfunc.__name__, data=PORTABLE_DIR,
                        conda_env="conda.yaml", python_env="python_env.yaml")
    mlflow_model.save(str(Path(path) / "MLmodel"))


def log_model(
    spark: SparkSession,
    spark_model: PipelineModel,
    *,
    artifact_path: str,
    decision: Decision,
    examples: pd.DataFrame,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
    source: dict[str, str] | None = None,
    seed: int = 0,
) -> Any:
    """Log ``spark_model`` to the active run with its portable form, if it passes the release
    rule; returns MLflow's ``ModelInfo``.

    :param examples: real rows (the feature columns) the parity rows are built from.
    :raises ModelNotPortableError: a stage has no portable form, or parity fails; nothing is
        then registered.
    """

    def make_portable(sparkml: Path) -> PortableModel:
        portable = PortableModel.from_spark_pipeline(sparkml, decision=decision, source=source)
        portable.parity = check_parity(spark, spark_model, portable,
                                       examples[portable.feature_cols].to_numpy(dtype=np.float64), seed=seed)
        return portable

    # This module is the "flavor" Model.log calls: its save_model above writes both forms.
    return Model.log(artifact_path=artifact_path, flavor=sys.modules[__name__], flavor_name="spark",
                     spark_model=spark_model, make_portable=make_portable, input_example=input_example,
                     pip_requirements=pip_requirements)
