"""The Spark ML pipelines a fraud model can be: one assembler, an optional scaler, a classifier.

A fitted pipeline is a ``PipelineModel`` that takes rows of the ``transactions`` table and adds
``probability``; the scoring job loads it as it is. The ``ensemble`` candidate is one pipeline
too: several classifiers side by side, then :class:`MeanProbability` averages their fraud
probabilities into the same ``probability`` column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param
from pyspark.ml.param.shared import HasInputCols, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBClassifier

from pipelines.core.errors import ConfigError


@dataclass(frozen=True)
class Candidate:
    """A kind of classifier the search can try: its estimator class and how to make one."""

    estimator_class: type
    needs_scaling: bool
    make: Callable[..., Any]


def _spark_ml(estimator_class: type) -> Callable[..., Any]:
    def make(*, features_col: str, label_col: str, weight_col: str | None, seed: int) -> Any:
        estimator = estimator_class(featuresCol=features_col, labelCol=label_col)
        if estimator.hasParam("cacheNodeIds"):
            # Trees: each pass over the rows looks up the node every row is at instead of walking
            # every tree down to it again (a cached int per row and tree). The same trees to the
            # last threshold (tests/test_model.py); measured on 50,000 generated rows, 100 trees
            # of depth 12 fit 1.6-1.9x faster. A grid can still set it (`cacheNodeIds = [false]`).
            estimator.setCacheNodeIds(True)
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


ENSEMBLE = "ensemble"


def check_candidate(name: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` if ``name`` is no known candidate or a param is not its own."""
    if name == ENSEMBLE:
        raise ConfigError(f"{ENSEMBLE!r} is no [train.candidates] table: name its members in [train.ensemble]")
    if name not in CANDIDATES:
        raise ConfigError(f"unknown candidate model {name!r}; known: {sorted(CANDIDATES)}")
    # Params are class attributes, so this needs no SparkContext (an estimator instance would).
    estimator_class = CANDIDATES[name].estimator_class
    known = sorted(attr for attr in dir(estimator_class) if isinstance(getattr(estimator_class, attr), Param))
    unknown = [param for param in params if param not in known]
    if unknown:
        raise ConfigError(f"candidate {name!r} has no parameter(s) {unknown}; its parameters: {known}")


def check_ensemble_members(members: Sequence[str]) -> None:
    """An ensemble needs two or more different known candidates."""
    unknown = [member for member in members if member not in CANDIDATES]
    if unknown:
        raise ConfigError(f"ensemble member(s) {unknown} are no candidate models; known: {sorted(CANDIDATES)}")
    if len(set(members)) < 2 or len(set(members)) != len(members):
        raise ConfigError(f"an ensemble needs two or more different members, got {list(members)}")


def pipeline_members(candidate: str, params: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The classifiers a pipeline of ``candidate`` holds, each with its params (checked).

    One for a single candidate; for ``ensemble`` its members, from ``params["members"]``.
    """
    if candidate != ENSEMBLE:
        check_candidate(candidate, params)
        return {candidate: params}
    members = params.get("members")
    if not isinstance(members, Mapping):
        raise ConfigError(f"an ensemble's params are {{'members': {{candidate: params}}}}, got {dict(params)}")
    check_ensemble_members(list(members))
    for member, member_params in members.items():
        check_candidate(member, member_params)
    return dict(members)


class MeanProbability(Transformer, HasInputCols, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """The mean of several classifiers' fraud probabilities, as a classifier's outputs.

    ``outputCol`` gets the vector ``[1 - p, p]`` and ``prediction`` is 1.0 where ``p >= 0.5``,
    the columns a single classifier adds, so scoring and evaluation treat an ensemble like
    any model. Saved and loaded with its pipeline: the saved model names this class by its
    module path, so moving or renaming it breaks loading the registered ensembles.
    """

    def __init__(self, *, inputCols: list[str] | None = None, outputCol: str = "probability") -> None:
        super().__init__()
        self._set(outputCol=outputCol)
        if inputCols is not None:
            self._set(inputCols=inputCols)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        columns = self.getInputCols()
        mean = sum(vector_to_array(F.col(column))[1] for column in columns) / len(columns)
        return (
            dataset.withColumn(self.getOutputCol(), array_to_vector(F.array(1 - mean, mean)))
            .withColumn("prediction", (mean >= 0.5).cast("double"))
        )


def _classifier(
    candidate: str, params: Mapping[str, Any], *, features_col: str, label_col: str, weight_col: str | None,
    seed: int, output_prefix: str = "",
) -> Any:
    """One candidate's estimator with ``params``; its output columns get ``output_prefix``."""
    estimator = CANDIDATES[candidate].make(features_col=features_col, label_col=label_col, weight_col=weight_col,
                                           seed=seed)
    for param in ("probabilityCol", "rawPredictionCol", "predictionCol"):
        default = estimator.getOrDefault(estimator.getParam(param))
        estimator.set(estimator.getParam(param), output_prefix + default)
    estimator.setParams(**dict(params))
    return estimator


def build_pipeline(
    *,
    candidate: str,
    params: Mapping[str, Any],
    feature_cols: Sequence[str],
    label_col: str,
    weight_col: str | None = None,
    seed: int = 42,
) -> Pipeline:
    """An unfitted pipeline: features -> (scaled features) -> classifier(s) [-> mean].

    For the ``ensemble`` candidate, ``params`` is ``{"members": {candidate: its params}}``:
    each member is fitted on the same rows and their fraud probabilities are averaged.

    Example::

        pipeline = build_pipeline(candidate="random_forest", params={"numTrees": 200},
                                  feature_cols=FEATURE_COLS, label_col="Class")
        model = pipeline.fit(train_df)
    """
    members = pipeline_members(candidate, params)
    ensemble = candidate == ENSEMBLE
    assembler = VectorAssembler(inputCols=list(feature_cols), outputCol="raw_features", handleInvalid="error")
    stages: list[Any] = [assembler]
    scaler = StandardScaler(inputCol=assembler.getOutputCol(), outputCol="features", withMean=True, withStd=True)
    if any(CANDIDATES[member].needs_scaling for member in members):
        stages.append(scaler)
    for member, member_params in members.items():
        features_col = scaler.getOutputCol() if CANDIDATES[member].needs_scaling else assembler.getOutputCol()
        stages.append(_classifier(
            member, member_params, features_col=features_col, label_col=label_col, weight_col=weight_col, seed=seed,
            output_prefix=f"{member}_" if ensemble else "",
        ))
    if ensemble:
        stages.append(MeanProbability(inputCols=[f"{member}_probability" for member in members]))
    return Pipeline(stages=stages)


def compose_ensemble(members: Mapping[str, PipelineModel]) -> PipelineModel:
    """The fitted ensemble of ``members`` (candidate -> its fitted single-candidate pipeline).

    Fitting :func:`build_pipeline`'s ensemble fits the same assembler, scaler and classifiers
    on the same rows in the same order as fitting each member alone does, so the models the
    members' own searches fitted make that ensemble without fitting again: the shared stages
    are taken from the members, each classifier's output columns get its name as prefix, and
    :class:`MeanProbability` averages them. The result has the fitted ensemble's stages, in
    its order.

    Example::

        model = compose_ensemble({"logistic_regression": lr_model, "random_forest": rf_model})
    """
    check_ensemble_members(list(members))
    stages: list[Any] = [members[next(iter(members))].stages[0]]  # the assembler: a plain transformer
    scaled = [model for member, model in members.items() if CANDIDATES[member].needs_scaling]
    if scaled:
        stages.append(scaled[0].stages[1])  # fitted on the same rows by every member that scales
    for member, model in members.items():
        classifier = model.stages[-1].copy()
        for param in ("probabilityCol", "rawPredictionCol", "predictionCol"):
            classifier.set(classifier.getParam(param), f"{member}_{classifier.getOrDefault(param)}")
        stages.append(classifier)
    stages.append(MeanProbability(inputCols=[f"{member}_probability" for member in members]))
    return PipelineModel(stages=stages)


def fraud_probability(probability_col: str = "probability") -> Column:
    """The probability of class 1 from a classifier's probability vector, as a double."""
    return vector_to_array(F.col(probability_col))[1].alias("fraud_probability")
