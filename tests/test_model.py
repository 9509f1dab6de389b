"""build_pipeline: the stages of each candidate, and config mistakes named before any fit."""

from __future__ import annotations

import pytest
from pyspark.ml.classification import LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import StandardScaler, VectorAssembler

from pipelines.errors import ConfigError
from pipelines.model import build_pipeline, check_candidate
from pipelines.schema import FEATURE_COLS
from pipelines.training import check_train_settings, grid_points


def test_trees_take_the_assembled_features_as_they_are(spark):
    pipeline = build_pipeline(candidate="random_forest", params={"numTrees": 7}, feature_cols=FEATURE_COLS,
                              label_col="Class", seed=3)
    assembler, forest = pipeline.getStages()
    assert isinstance(assembler, VectorAssembler) and isinstance(forest, RandomForestClassifier)
    assert forest.getFeaturesCol() == assembler.getOutputCol()
    assert (forest.getNumTrees(), forest.getSeed(), forest.getLabelCol()) == (7, 3, "Class")


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
    from dataclasses import replace

    policy = replace(settings.train.threshold, name="max_recall")
    with pytest.raises(ConfigError, match="unknown threshold policy 'max_recall'"):
        check_train_settings(replace(settings.train, threshold=policy))


def test_xgboost_is_a_pipeline_stage_with_the_seed_and_weights(spark):
    pipeline = build_pipeline(candidate="xgboost", params={"n_estimators": 30, "max_depth": 3},
                              feature_cols=FEATURE_COLS, label_col="Class", weight_col="class_weight", seed=5)
    booster = pipeline.getStages()[-1]
    assert booster.getOrDefault("n_estimators") == 30
    assert booster.getOrDefault("random_state") == 5
    assert booster.getOrDefault("weightCol") == "class_weight"
