"""A version registered by the code before `pipelines/` was split into stage packages still
loads and scores identically, through Spark and through pyfunc.

The fixture (tests/fixtures/pre_move_model/, made by its make_fixture.py at the pre-move
commit) is a logged model folder: an ensemble of every candidate kind whose saved pipeline
names ``pipelines.model.MeanProbability`` and whose MLmodel names the loader module
``pipelines.portable.pyfunc``. Both are old module paths, kept as permanent aliases.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.ml import PipelineModel

from pipelines.model.portable.decision import Decision
from pipelines.model.portable.model import PARITY_TOLERANCE, PortableModel
from pipelines.model.portable.pyfunc import load_registered
from pipelines.model.stages import fraud_probability

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pre_move_model"
NAME = "fraud_detector"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> str:
    """The fixture's folder registered as version 1 in a fresh MLflow store; its models:/ URI."""
    store = tmp_path_factory.mktemp("store")
    tracking_before, registry_before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    mlflow.set_registry_uri(f"sqlite:///{store}/mlflow.db")
    experiment = mlflow.create_experiment("pre_move", artifact_location=str(store / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(FIXTURE / "model"), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", NAME)
    assert str(version.version) == "1"  # a fresh store
    yield f"models:/{NAME}/{version.version}"
    mlflow.set_tracking_uri(tracking_before)
    mlflow.set_registry_uri(registry_before)


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    return pd.read_csv(FIXTURE / "expected.csv")


def features_of(expected: pd.DataFrame) -> pd.DataFrame:
    return expected.drop(columns=["fraud_probability", "pyfunc_fraud_probability", "pyfunc_is_fraud"])


def test_the_fixture_names_the_old_module_paths():
    """What the aliases are for: if the fixture stopped naming them, this test would prove nothing."""
    ensemble = next((FIXTURE / "model" / "sparkml" / "stages").glob("*_MeanProbability_*"))
    assert '"class":"pipelines.model.MeanProbability"' in next((ensemble / "metadata").glob("part-*")).read_text()
    assert "loader_module: pipelines.portable.pyfunc" in (FIXTURE / "model" / "MLmodel").read_text()


def test_an_old_version_scores_the_same_through_spark(spark, registered, expected):
    model = mlflow.spark.load_model(registered)
    assert isinstance(model, PipelineModel)
    scored = model.transform(spark.createDataFrame(features_of(expected))).select(fraud_probability()).toPandas()
    # Not bit for bit: the ensemble's mean adds its members' probabilities in a plan Spark may
    # order differently from one session to the next (measured: at most 2.2e-16 apart).
    np.testing.assert_allclose(scored["fraud_probability"].to_numpy(), expected["fraud_probability"].to_numpy(),
                               rtol=0, atol=1e-12)


def test_an_old_version_scores_the_same_through_pyfunc(registered, expected):
    features = features_of(expected)
    # pyfunc answers at the real class balance (the version's normal weight), as the service does.
    for predicted in (mlflow.pyfunc.load_model(registered).predict(features),
                      load_registered(NAME, registered.rsplit("/", 1)[1]).predict(features)):
        np.testing.assert_allclose(predicted["fraud_probability"].to_numpy(),
                                   expected["pyfunc_fraud_probability"].to_numpy(), rtol=0, atol=1e-12)
        assert predicted["is_fraud"].tolist() == expected["pyfunc_is_fraud"].tolist()


def test_an_old_saved_pipeline_is_made_portable_again_without_a_jvm(expected):
    """What a release does with a saved pipeline (and what rebuilding a version's portable form
    would): read its stages, the ensemble's old class name included, without Spark."""
    portable = PortableModel.from_spark_pipeline(FIXTURE / "model" / "sparkml", decision=Decision(threshold=0.4))
    assert [stage.kind for stage in portable.stages][-1] == "mean_probability"
    probabilities = portable.sample_probability(features_of(expected).to_numpy(dtype=np.float64))
    np.testing.assert_allclose(probabilities, expected["fraud_probability"].to_numpy(), rtol=0, atol=PARITY_TOLERANCE)
