"""The Spark ML pipelines a fraud model can be: one assembler, an optional scaler, a classifier.

A fitted pipeline is a ``PipelineModel`` that takes rows of the ``transactions`` table and adds
``probability``; the scoring job loads it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param
from pyspark.sql import Column
from pyspark.sql import functions as F

from pipelines.errors import ConfigError

# Candidate name -> (estimator class, whether its features need scaling).
CANDIDATES: dict[str, tuple[Callable[..., Any], bool]] = {
    "logistic_regression": (LogisticRegression, True),
    "random_forest": (RandomForestClassifier, False),
    "gbt": (GBTClassifier, False),
}


def check_candidate(name: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` if ``name`` is no known candidate or a param is not its own."""
    if name not in CANDIDATES:
        raise ConfigError(f"unknown candidate model {name!r}; known: {sorted(CANDIDATES)}")
    # Params are class attributes, so this needs no SparkContext (an estimator instance would).
    estimator_class = CANDIDATES[name][0]
    known = sorted(attr for attr in dir(estimator_class) if isinstance(getattr(estimator_class, attr), Param))
    unknown = [param for param in params if param not in known]
    if unknown:
        raise ConfigError(f"candidate {name!r} has no parameter(s) {unknown}; its parameters: {known}")


def build_pipeline(
    *,
    candidate: str,
    params: Mapping[str, Any],
    feature_cols: Sequence[str],
    label_col: str,
    weight_col: str | None = None,
    seed: int = 42,
) -> Pipeline:
    """An unfitted pipeline: features -> (scaled features) -> classifier.

    Example::

        pipeline = build_pipeline(candidate="random_forest", params={"numTrees": 200},
                                  feature_cols=FEATURE_COLS, label_col="Class")
        model = pipeline.fit(train_df)
    """
    check_candidate(candidate, params)
    estimator_class, needs_scaling = CANDIDATES[candidate]
    assembler = VectorAssembler(inputCols=list(feature_cols), outputCol="raw_features", handleInvalid="error")
    stages: list[Any] = [assembler]
    features_col = assembler.getOutputCol()
    if needs_scaling:
        scaler = StandardScaler(inputCol=features_col, outputCol="features", withMean=True, withStd=True)
        stages.append(scaler)
        features_col = scaler.getOutputCol()
    classifier = estimator_class(featuresCol=features_col, labelCol=label_col, probabilityCol="probability")
    if classifier.hasParam("seed"):
        classifier.setSeed(seed)
    if weight_col and classifier.hasParam("weightCol"):
        classifier.setWeightCol(weight_col)
    classifier.setParams(**dict(params))
    stages.append(classifier)
    return Pipeline(stages=stages)


def fraud_probability(probability_col: str = "probability") -> Column:
    """The probability of class 1 from a classifier's probability vector, as a double."""
    return vector_to_array(F.col(probability_col))[1].alias("fraud_probability")
