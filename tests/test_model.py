"""build_pipeline: the stages of each candidate, and config mistakes named before any fit."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import mlflow.spark
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pydantic import ValidationError
from pyspark.ml.classification import LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from pipelines.core.config import EnsembleSettings
from pipelines.core.errors import ConfigError
from pipelines.data.schema import FEATURE_COLS
from pipelines.model.registry import configure_mlflow
from pipelines.model.stages import (
    ENSEMBLE,
    MeanProbability,
    build_pipeline,
    check_candidate,
    check_ensemble_members,
    compose_ensemble,
    fraud_probability,
    pipeline_members,
)
from pipelines.training.search import check_train_settings, curve_of, grid_points
from pipelines.training.tracking import _model_requirements


def test_trees_take_the_assembled_features_as_they_are(spark):
    pipeline = build_pipeline(candidate="random_forest", params={"numTrees": 7}, feature_cols=FEATURE_COLS,
                              label_col="Class", seed=3)
    assembler, forest = pipeline.getStages()
    assert isinstance(assembler, VectorAssembler) and isinstance(forest, RandomForestClassifier)
    assert forest.getFeaturesCol() == assembler.getOutputCol()
    assert (forest.getNumTrees(), forest.getSeed(), forest.getLabelCol()) == (7, 3, "Class")


@pytest.mark.parametrize("candidate, params", [("random_forest", {"numTrees": 12, "maxDepth": 8}),
                                               ("gbt", {"maxIter": 5, "maxDepth": 4})])
def test_trees_cache_each_rows_node_and_grow_the_same_trees_as_without(spark, candidate, params):
    columns = [F.rand(seed=n).alias(name) for n, name in enumerate(FEATURE_COLS)]
    rows = spark.range(4000, numPartitions=2).select(*columns)
    rows = rows.withColumn("Class", ((F.col("V1") + F.col("V2") * F.col("V3") + F.rand(seed=99) / 4) > 0.9)
                           .cast("double"))
    cached = build_pipeline(candidate=candidate, params=params, feature_cols=FEATURE_COLS, label_col="Class")
    assert cached.getStages()[-1].getCacheNodeIds() is True
    walked = build_pipeline(candidate=candidate, params={**params, "cacheNodeIds": False},
                            feature_cols=FEATURE_COLS, label_col="Class")

    def trees(pipeline):
        # toDebugString's first line names the model's uid, which differs between any two fits
        return pipeline.fit(rows).stages[-1].toDebugString.split("\n", 1)[1]

    cached_trees, walked_trees = trees(cached), trees(walked)
    assert cached_trees.count("If (feature") > 50
    assert cached_trees == walked_trees


def test_logistic_regression_gets_scaled_features(spark):
    pipeline = build_pipeline(candidate="logistic_regression", params={"regParam": 0.01},
                              feature_cols=FEATURE_COLS, label_col="Class")
    _, scaler, regression = pipeline.getStages()
    assert isinstance(scaler, StandardScaler) and isinstance(regression, LogisticRegression)
    assert regression.getFeaturesCol() == scaler.getOutputCol()


def test_unknown_candidate_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown candidate model 'svm'; known: \['gbt', "):
        check_candidate("svm", {})


def test_unknown_parameter_is_named_with_the_candidates_parameters():
    with pytest.raises(ConfigError, match=r"'random_forest' has no parameter\(s\) \['numTree'\].*'numTrees'"):
        check_candidate("random_forest", {"numTree": [10]})


def test_grid_points_cover_every_combination():
    assert grid_points({"maxDepth": [4, 8], "numTrees": [10]}) == [
        {"maxDepth": 4, "numTrees": 10},
        {"maxDepth": 8, "numTrees": 10},
    ]


def test_unknown_threshold_policy_is_refused(settings):
    with pytest.raises(ValidationError, match="max_recall"):
        replace(settings.train, threshold=replace(settings.train.threshold, name="max_recall"))


def test_xgboost_is_a_pipeline_stage_with_the_seed_and_weights(spark):
    pipeline = build_pipeline(candidate="xgboost", params={"n_estimators": 30, "max_depth": 3},
                              feature_cols=FEATURE_COLS, label_col="Class", weight_col="class_weight", seed=5)
    booster = pipeline.getStages()[-1]
    assert booster.getOrDefault("n_estimators") == 30
    assert booster.getOrDefault("random_state") == 5
    assert booster.getOrDefault("weightCol") == "class_weight"


def two_class_rows(spark):
    """40 rows whose features lean with the class, so both members learn something."""
    rows = spark.range(40).withColumn("Class", (F.col("id") % 2).cast("int"))
    features = [
        (F.col("Class") * (index % 5) + (F.col("id") % (index + 3)) / 10).cast("double").alias(column)
        for index, column in enumerate(FEATURE_COLS)
    ]
    return rows.select("id", "Class", *features)


def test_an_ensemble_scores_the_mean_of_its_members_probabilities(spark, settings):
    members = {"logistic_regression": {"regParam": 0.1}, "random_forest": {"numTrees": 5, "maxDepth": 3}}
    pipeline = build_pipeline(candidate=ENSEMBLE, params={"members": members}, feature_cols=FEATURE_COLS,
                              label_col="Class")
    assert isinstance(pipeline.getStages()[-1], MeanProbability)
    rows = two_class_rows(spark)
    model = pipeline.fit(rows)

    scored = model.transform(rows)
    member_mean = (vector_to_array("logistic_regression_probability")[1]
                   + vector_to_array("random_forest_probability")[1]) / 2
    checked = scored.select(fraud_probability(), member_mean.alias("member_mean"), "prediction")
    assert checked.filter(F.abs(F.col("fraud_probability") - F.col("member_mean")) > 1e-12).count() == 0
    assert checked.filter((F.col("fraud_probability") >= 0.5) != (F.col("prediction") == 1.0)).count() == 0
    assert checked.select(F.countDistinct("fraud_probability")).first()[0] > 2

    # Logged to MLflow and loaded back the way the scoring job loads a registered model.
    configure_mlflow(settings.mlflow)
    with mlflow.start_run():
        info = mlflow.spark.log_model(model, artifact_path="model",
                                      pip_requirements=_model_requirements(ENSEMBLE, {"members": members}))
    reloaded = mlflow.spark.load_model(info.model_uri).transform(rows)
    assert_df_equality(reloaded.select("id", fraud_probability()), scored.select("id", fraud_probability()),
                       ignore_row_order=True)


def test_an_ensemble_made_of_its_fitted_members_scores_as_fitting_the_ensemble_would(spark):
    members = {"logistic_regression": {"regParam": 0.1}, "random_forest": {"numTrees": 5, "maxDepth": 3},
               "xgboost": {"n_estimators": 5, "max_depth": 2}}
    source_df = two_class_rows(spark).cache()
    fitted = build_pipeline(candidate=ENSEMBLE, params={"members": members}, feature_cols=FEATURE_COLS,
                            label_col="Class").fit(source_df)
    each_alone = {
        member: build_pipeline(candidate=member, params=params, feature_cols=FEATURE_COLS,
                               label_col="Class").fit(source_df)
        for member, params in members.items()
    }

    composed = compose_ensemble(each_alone)

    assert [type(stage) for stage in composed.stages] == [type(stage) for stage in fitted.stages]
    # Each member's fraud probability (what the mean takes). Two fits of the same logistic
    # regression may differ in their last bits: Spark adds the partitions' gradients in the order
    # their tasks finish (RDD.fold), so the comparison allows 1e-12 and no more.
    member_probabilities = [vector_to_array(f"{member}_probability")[1].alias(member) for member in members]
    expected_df = fitted.transform(source_df).select("id", fraud_probability(), *member_probabilities, "prediction")
    actual_df = composed.transform(source_df).select("id", fraud_probability(), *member_probabilities, "prediction")
    assert_approx_df_equality(actual_df, expected_df, 1e-12, ignore_row_order=True)
    expected_curve = curve_of(fitted, source_df, label_col="Class")
    actual_curve = curve_of(composed, source_df, label_col="Class")
    assert len(expected_curve.thresholds) > 2
    assert actual_curve.thresholds.tolist() == pytest.approx(expected_curve.thresholds.tolist(), rel=0, abs=1e-12)
    assert actual_curve.true_positives.tolist() == expected_curve.true_positives.tolist()
    assert actual_curve.false_positives.tolist() == expected_curve.false_positives.tolist()
    # The members' own models still score under their own column names.
    assert "probability" in each_alone["random_forest"].transform(source_df).columns
    source_df.unpersist()


@pytest.mark.parametrize("members, message", [
    ({"svm": {}, "random_forest": {}}, r"ensemble member\(s\) \['svm'\] are no candidate models"),
    ({"random_forest": {}}, "two or more different members"),
    ({"random_forest": {"numTree": 3}, "gbt": {}}, r"'random_forest' has no parameter\(s\) \['numTree'\]"),
])
def test_an_ensemble_needs_two_known_members_with_their_own_params(members, message):
    with pytest.raises(ConfigError, match=message):
        pipeline_members(ENSEMBLE, {"members": members})


def test_an_ensemble_member_is_named_once():
    with pytest.raises(ConfigError, match="two or more different members"):
        check_ensemble_members(["random_forest", "random_forest"])


def test_an_ensemble_member_must_have_been_searched(settings):
    train = replace(settings.train, ensemble=EnsembleSettings(members=("logistic_regression", "xgboost")))
    with pytest.raises(ConfigError, match=r"\['xgboost'\] have no \[train.candidates\] table"):
        check_train_settings(train)


def test_an_ensemble_is_not_a_candidate_table(settings):
    train = replace(settings.train, candidates={**settings.train.candidates, ENSEMBLE: {"members": ["gbt"]}})
    with pytest.raises(ConfigError, match=r"'ensemble' is no \[train.candidates\] table"):
        check_train_settings(train)


@pytest.mark.parametrize("candidate, params, needs_xgboost", [
    ("xgboost", {}, True),
    ("random_forest", {}, False),
    (ENSEMBLE, {"members": {"logistic_regression": {}, "xgboost": {}}}, True),
    (ENSEMBLE, {"members": {"logistic_regression": {}, "random_forest": {}}}, False),
])
def test_a_logged_model_requires_xgboost_only_when_it_holds_one(candidate, params, needs_xgboost):
    requirements = _model_requirements(candidate, params)
    assert requirements[0] == "pyspark==4.0.1"
    assert any(requirement.startswith("xgboost") for requirement in requirements) == needs_xgboost
