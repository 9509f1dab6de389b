"""The portable scorer against Spark ML itself: every candidate kind, fitted by Spark on the real
sample, rebuilt from its saved folder without a JVM, must give Spark's probabilities to 1e-9 on
real rows, rows on every split threshold and extreme values (the release rule), and keep them
through its own files. A stage it does not know, or a rounded threshold, is caught.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import DecisionTreeClassifier
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import functions as F

from pipelines.core.errors import ModelNotPortableError
from pipelines.data.schema import FEATURE_COLS
from pipelines.model.portable.decision import Decision
from pipelines.model.portable.model import PortableModel, compare
from pipelines.model.release import EXTREME_VALUES, check_parity, parity_features, spark_probabilities
from pipelines.model.stages import ENSEMBLE, build_pipeline
from pipelines.scoring.batch import real_balance_probability
from tests.conftest import SAMPLE_CSV

# Small fits: what is checked is the arithmetic of each kind of stage, not model quality.
KINDS = {
    "logistic_regression": {"regParam": 0.01},
    "random_forest": {"numTrees": 12, "maxDepth": 6},
    "gbt": {"maxIter": 8, "maxDepth": 3},
    "xgboost": {"n_estimators": 15, "max_depth": 3},
    ENSEMBLE: {"members": {"logistic_regression": {"regParam": 0.1}, "random_forest": {"numTrees": 8, "maxDepth": 5},
                           "xgboost": {"n_estimators": 10, "max_depth": 3}}},
}
DECISION = Decision(threshold=0.45, normal_weight=57.79)


@pytest.fixture(scope="module")
def sample(spark):
    frame = spark.read.csv(str(SAMPLE_CSV), header=True, inferSchema=True)
    return frame.select(*[F.col(c).cast("double") for c in FEATURE_COLS], F.col("Class").cast("double")).cache()


@pytest.fixture(scope="module")
def examples(sample) -> np.ndarray:
    return sample.select(*FEATURE_COLS).limit(300).toPandas().to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def fitted(sample, tmp_path_factory):
    """Each kind fitted by Spark and saved, as the registry stores it."""
    models = {}
    for kind, params in KINDS.items():
        model = build_pipeline(candidate=kind, params=params, feature_cols=FEATURE_COLS, label_col="Class").fit(sample)
        path = tmp_path_factory.mktemp(kind) / "sparkml"
        model.write().save(str(path))
        models[kind] = (model, path)
    return models


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_matches_spark_on_real_split_and_extreme_rows(spark, fitted, examples, kind):
    model, path = fitted[kind]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    parity = check_parity(spark, model, portable, examples)
    # The rows really include the boundaries: for trees, rows on split thresholds.
    n_splits = len(portable.split_points())
    extreme_rows = len(EXTREME_VALUES) * (len(FEATURE_COLS) + 1)
    assert len(parity.features) == len(examples) + 3 * min(n_splits, 2000) + extreme_rows
    if kind != "logistic_regression":
        assert n_splits > 0
    failures, largest, _ = compare(parity.expected, portable.sample_probability(parity.features))
    assert failures == 0 and largest <= 1e-9


@pytest.mark.parametrize("kind", ["random_forest", "xgboost", ENSEMBLE])
def test_a_saved_portable_model_loads_scores_the_same_and_checks_itself(spark, fitted, examples, kind, tmp_path):
    model, path = fitted[kind]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    portable.parity = check_parity(spark, model, portable, examples)
    portable.save(tmp_path / "portable")
    loaded = PortableModel.load(tmp_path / "portable")
    failures, largest = loaded.check()
    assert failures == 0 and largest <= 1e-9
    np.testing.assert_array_equal(loaded.sample_probability(examples), portable.sample_probability(examples))
    assert [stage.kind for stage in loaded.stages] == [stage.kind for stage in portable.stages]


def test_predict_applies_the_versions_decision_as_the_batch_does(spark, fitted, examples):
    model, path = fitted["random_forest"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    frame = pd.DataFrame(examples, columns=FEATURE_COLS)
    predicted = portable.predict(frame)
    assert list(predicted.columns) == ["fraud_probability", "is_fraud", "threshold"]
    # The batch's arithmetic on Spark columns, on the same sample-balance probabilities.
    sample_p = spark_probabilities(spark, model, examples, FEATURE_COLS)
    batch = (spark.createDataFrame(pd.DataFrame({"p": sample_p}))
             .select(real_balance_probability(F.col("p"), DECISION.normal_weight).alias("q")).toPandas()["q"])
    decided = sample_p >= DECISION.threshold
    np.testing.assert_array_equal(predicted["is_fraud"].to_numpy(), decided)
    assert np.abs(predicted["fraud_probability"].to_numpy() - batch.to_numpy()).max() <= 1e-12
    assert (predicted["is_fraud"] == (predicted["fraud_probability"] >= predicted["threshold"])).all()
    assert predicted["threshold"].iloc[0] == DECISION.real_threshold


def test_a_stage_without_a_portable_form_is_named(sample, tmp_path):
    assembler = VectorAssembler(inputCols=FEATURE_COLS, outputCol="raw_features")
    tree = DecisionTreeClassifier(featuresCol="raw_features", labelCol="Class", maxDepth=3)
    Pipeline(stages=[assembler, tree]).fit(sample).write().save(str(tmp_path / "sparkml"))
    with pytest.raises(ModelNotPortableError, match=r"stage 1 \(org.apache.spark.ml.classification."
                                                    r"DecisionTreeClassificationModel.*has no portable form"):
        PortableModel.from_spark_pipeline(tmp_path / "sparkml", decision=DECISION)


def test_split_rows_catch_a_threshold_rounded_to_float32(spark, fitted, examples):
    """What the release rule exists for: thresholds kept in float32 (as onnx or treelite's
    float32 builds would) misroute rows on the boundary, and registration must stop."""
    model, path = fitted["random_forest"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    stage = portable.stages[-1]
    inner = stage.trees.feature >= 0
    rounded = stage.trees.threshold.astype(np.float32).astype(np.float64)
    assert (rounded[inner] != stage.trees.threshold[inner]).any()
    stage.trees.threshold[:] = rounded
    # Real rows alone rarely sit on a threshold; the split rows do.
    assert compare(spark_probabilities(spark, model, examples, FEATURE_COLS),
                   portable.sample_probability(examples))[0] == 0
    with pytest.raises(ModelNotPortableError, match=r"differs from Spark on \d+ of \d+ rows"):
        check_parity(spark, model, portable, examples)


def test_a_changed_coefficient_fails_parity_with_the_worst_row_named(spark, fitted, examples):
    model, path = fitted["logistic_regression"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    portable.stages[-1].coefficients[0] += 1e-6
    with pytest.raises(ModelNotPortableError, match=r"worst row: Spark .*, portable .*, features \{'V1'"):
        check_parity(spark, model, portable, examples)


def test_parity_rows_sit_on_and_either_side_of_each_split(fitted, examples):
    _, path = fitted["gbt"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    rows = parity_features(portable, examples[:10])
    feature, threshold, _ = portable.split_points()[0]
    column = rows[:, feature]
    assert threshold in column
    assert np.nextafter(threshold, np.inf) in column and np.nextafter(threshold, -np.inf) in column
    assert np.float32(np.finfo(np.float32).max) in rows


def test_a_folder_that_is_not_a_portable_model_is_refused(tmp_path):
    with pytest.raises(ModelNotPortableError, match=r"no portable\.json"):
        PortableModel.load(tmp_path)
    (tmp_path / "portable.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ModelNotPortableError, match="portable format 99; this code reads 1"):
        PortableModel.load(tmp_path)


@pytest.mark.parametrize(("p", "threshold", "weight"), [
    (np.array([0.0, 0.2, 0.45, 0.4500000000000001, 0.9, 1.0]), 0.45, 57.79),
    (np.array([0.0, 0.5, 1.0]), 0.5, 1.0),
])
def test_the_decision_flags_what_the_uncorrected_score_flags(p, threshold, weight):
    decision = Decision(threshold, weight)
    probability, flagged = decision.apply(p)
    np.testing.assert_array_equal(flagged, p >= threshold)
    np.testing.assert_array_equal(flagged, probability >= decision.real_threshold)
    assert ((probability >= 0) & (probability <= 1)).all()


@pytest.mark.e2e
def test_train_does_not_register_a_model_without_a_portable_form(spark, tmp_path, monkeypatch):
    """A stage the portable scorer does not know is a clear error at registration (exit 5),
    not at 2 a.m. in the service: the run fails and no version is registered."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from jobs import ingest, train
    from pipelines.model.portable import stages
    from pipelines.model.registry import configure_mlflow
    from tests.conftest import quick_settings_in
    from tests.test_end_to_end import INGESTED_AT

    settings = quick_settings_in(tmp_path)
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    monkeypatch.delitem(stages.SPARK_STAGES, "org.apache.spark.ml.classification.LogisticRegressionModel")
    with pytest.raises(ModelNotPortableError, match=r"LogisticRegressionModel.*has no portable form") as raised:
        train.run(spark, settings, commit="test")
    assert raised.value.exit_code == 5
    assert MlflowClient().search_model_versions("name = 'fraud_detector'") == []
    (run,) = mlflow.search_runs(filter_string="tags.mlflow.runName LIKE 'train%'", output_format="list")
    assert run.info.status == "FAILED"


def test_a_multinomial_logistic_regression_is_refused(sample, tmp_path):
    from pyspark.ml.classification import LogisticRegression

    assembler = VectorAssembler(inputCols=FEATURE_COLS, outputCol="raw_features")
    multinomial = LogisticRegression(featuresCol="raw_features", labelCol="Class", family="multinomial", maxIter=5)
    Pipeline(stages=[assembler, multinomial]).fit(sample).write().save(str(tmp_path / "sparkml"))
    with pytest.raises(ModelNotPortableError, match="is multinomial"):
        PortableModel.from_spark_pipeline(tmp_path / "sparkml", decision=DECISION)


def test_damaged_tree_arrays_are_refused_on_load(fitted, tmp_path):
    """A corrupt file must never reach the compiled walk: a child before its parent would loop."""
    _, path = fitted["random_forest"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    portable.save(tmp_path / "portable")
    with np.load(tmp_path / "portable" / "arrays.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    key = next(name for name in arrays if name.endswith(".left"))
    feature = arrays[key.replace(".left", ".feature")]
    arrays[key][np.flatnonzero(feature >= 0)[1]] = 0  # an inner node pointing back at the root
    np.savez(tmp_path / "portable" / "arrays.npz", **arrays)
    with pytest.raises(ModelNotPortableError, match="not in pre-order"):
        PortableModel.load(tmp_path / "portable")


def test_a_folder_saved_before_tree_stages_recorded_their_width_still_loads(fitted, examples, tmp_path):
    _, path = fitted["random_forest"]
    portable = PortableModel.from_spark_pipeline(path, decision=DECISION)
    portable.save(tmp_path / "portable")
    manifest = json.loads((tmp_path / "portable" / "portable.json").read_text())
    for record in manifest["stages"]:
        record.pop("n_features", None)
    (tmp_path / "portable" / "portable.json").write_text(json.dumps(manifest))
    loaded = PortableModel.load(tmp_path / "portable")
    np.testing.assert_array_equal(loaded.sample_probability(examples), portable.sample_probability(examples))
    del manifest["stages"][-1]["arrays"]
    (tmp_path / "portable" / "portable.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelNotPortableError, match="its random_forest stage lacks 'arrays': damaged"):
        PortableModel.load(tmp_path / "portable")
