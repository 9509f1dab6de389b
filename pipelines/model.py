"""The Spark ML pipelines a fraud model can be: one assembler, an optional scaler, a classifier.

A fitted pipeline is a ``PipelineModel`` that takes rows of the ``transactions`` table and adds
``probability``; the scoring job loads it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param
from pyspark.sql import Column
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBClassifier

from pipelines.errors import ConfigError


@dataclass(frozen=True)
class Candidate:
    """A kind of classifier the search can try: its estimator class and how to make one."""

    estimator_class: type
    needs_scaling: bool
    make: Callable[..., Any]


def _spark_ml(estimator_class: type) -> Callable[..., Any]:
    def make(*, features_col: str, label_col: str, weight_col: str | None, seed: int) -> Any:
        estimator = estimator_class(featuresCol=features_col, labelCol=label_col)
        estimator.set(estimator.getParam("probabilityCol"), "probability")
        if estimator.hasParam("seed"):
            estimator.setSeed(seed)
        if weight_col:
            estimator.setWeightCol(weight_col)
        return estimator

    return make


def _xgboost(*, features_col: str, label_col: str, weight_col: str | None, seed: int) -> SparkXGBClassifier:
    # One XGBoost worker by default: on small data more workers only add barrier overhead
    # (measured 3.2 s with one, 5.3 s with two on the real sample); `num_workers` in the grid
    # changes it.
    weight = {"weight_col": weight_col} if weight_col else {}
    return SparkXGBClassifier(features_col=features_col, label_col=label_col, random_state=seed,
                              num_workers=1, verbose=False, **weight)


CANDIDATES: dict[str, Candidate] = {
    "logistic_regression": Candidate(LogisticRegression, True, _spark_ml(LogisticRegression)),
    "random_forest": Candidate(RandomForestClassifier, False, _spark_ml(RandomForestClassifier)),
    "gbt": Candidate(GBTClassifier, False, _spark_ml(GBTClassifier)),
    "xgboost": Candidate(SparkXGBClassifier, False, _xgboost),
}


def check_candidate(name: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` if ``name`` is no known candidate or a param is not its own."""
    if name not in CANDIDATES:
        raise ConfigError(f"unknown candidate model {name!r}; known: {sorted(CANDIDATES)}")
    # Params are class attributes, so this needs no SparkContext (an estimator instance would).
    estimator_class = CANDIDATES[name].estimator_class
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
    kind = CANDIDATES[candidate]
    assembler = VectorAssembler(inputCols=list(feature_cols), outputCol="raw_features", handleInvalid="error")
    stages: list[Any] = [assembler]
    features_col = assembler.getOutputCol()
    if kind.needs_scaling:
        scaler = StandardScaler(inputCol=features_col, outputCol="features", withMean=True, withStd=True)
        stages.append(scaler)
        features_col = scaler.getOutputCol()
    classifier = kind.make(features_col=features_col, label_col=label_col, weight_col=weight_col, seed=seed)
    classifier.setParams(**dict(params))
    stages.append(classifier)
    return Pipeline(stages=stages)


def fraud_probability(probability_col: str = "probability") -> Column:
    """The probability of class 1 from a classifier's probability vector, as a double."""
    return vector_to_array(F.col(probability_col))[1].alias("fraud_probability")
