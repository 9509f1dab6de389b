"""The registered model's MLflow flavors: Spark ML's pipeline and, beside it, its portable form.

A version's ``MLmodel`` has the ``spark`` flavor (the nightly batch loads the
``PipelineModel`` from ``sparkml/``) and a ``python_function`` flavor whose loader is this
module, reading ``portable/``: ``mlflow.pyfunc.load_model("models:/fraud_detector@champion")``
then scores with numpy and XGBoost, without Spark or Java. Its ``predict`` takes the feature
columns and returns ``fraud_probability``, ``is_fraud`` and ``threshold`` per row.

This module is the loader; :mod:`pipelines.model.release` writes the flavors. The loader is this
project's code: where the model is loaded, the project is installed (the service's image
installs it without Spark: ``pip install .[serve]``).

Example::

    model = mlflow.pyfunc.load_model("models:/fraud_detector@champion")
    model.predict(transactions[FEATURE_COLS])   # fraud_probability, is_fraud, threshold
    model.get_raw_model()                       # the PortableModel
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from pipelines.core.errors import ModelNotPortableError
from pipelines.model.portable.model import PortableModel

PORTABLE_DIR = "portable"


class PortablePyfunc:
    """What ``mlflow.pyfunc.load_model`` wraps: predict on a frame of the feature columns."""

    def __init__(self, model: PortableModel) -> None:
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.predict(pd.DataFrame(model_input))

    def get_raw_model(self) -> PortableModel:
        return self.model


def _load_pyfunc(path: str) -> PortablePyfunc:
    """MLflow's entry point for the ``python_function`` flavor (``data`` is ``portable/``)."""
    return PortablePyfunc(PortableModel.load(path))


def load_registered(name: str, version: str) -> PortableModel:
    """The portable form of a registered version, read from its ``portable/`` artifact only
    (not the Spark pipeline beside it).

    :raises ModelNotPortableError: the version has no portable form (registered before it
        existed, or by another tool).
    """
    folder = tempfile.mkdtemp(prefix="fraud-portable-")
    try:
        repository = get_artifact_repository(f"models:/{name}/{version}")
        try:
            local = repository.download_artifacts(PORTABLE_DIR, dst_path=folder)
        except (MlflowException, OSError) as exc:
            raise ModelNotPortableError(
                f"{name} version {version} has no {PORTABLE_DIR}/ artifact: it was not registered by this "
                f"project's train job, or before the portable form existed; retrain and promote") from exc
        return PortableModel.load(local)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
