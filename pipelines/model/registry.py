"""MLflow tracking and the model registry: where models are logged, found and loaded.

The decision threshold is a tag of the model version (``decision_threshold``), so whatever
loads a version also gets the threshold it was validated with.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.spark
import requests
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.ml import PipelineModel

from pipelines.core.config import MlflowSettings, limit_requests
from pipelines.core.errors import (
    AccessDeniedError,
    InvalidArgumentError,
    ModelNotFoundError,
    ModelNotPortableError,
    ServiceUnavailableError,
)
from pipelines.model.portable.decision import NORMAL_WEIGHT_TAG, THRESHOLD_TAG
from pipelines.model.portable.model import PortableModel
from pipelines.model.portable.pyfunc import load_registered
from pipelines.model.ref import FEATURE_SET_TAG, ModelRef

# The days whose rows (at the version's source.table_version) the model was fitted on.
FITTED_DAYS_TAG = "fitted.days"
log = logging.getLogger(__name__)
_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))")


@contextmanager
def reaching_mlflow(settings: MlflowSettings) -> Iterator[None]:
    """Turn "the tracking server cannot be reached" into :class:`ServiceUnavailableError`,
    and "it refused the credentials or the permission" into :class:`AccessDeniedError` (exit 2).

    Connection refused, a name that does not resolve, a server that does not answer within
    the request timeout, or one that keeps answering 5xx: after the configured retries, one
    clear error naming the tracking URI instead of a stack trace.

    Example::

        with reaching_mlflow(settings.mlflow):
            configure_mlflow(settings.mlflow)
            model_ref = resolve_model(settings.mlflow)
    """
    try:
        yield
    except (MlflowException, requests.exceptions.RequestException) as exc:
        denied = _denied(exc)
        if denied is not None:
            raise AccessDeniedError(f"the MLflow tracking server at {settings.tracking_uri} {denied}") from exc
        reason = _unreachable(exc)
        if reason is None:
            raise
        raise ServiceUnavailableError(
            f"cannot reach the MLflow tracking server at {settings.tracking_uri} ({reason}) after "
            f"{settings.request_max_retries} retries of {settings.request_timeout_seconds:g} s at most; "
            f"[mlflow] request_timeout_seconds and request_max_retries in conf/ set how long to wait"
        ) from exc


def _unreachable(exc: BaseException) -> str | None:
    """What kept the request from an answer, if ``exc`` (or what it came from) is a network failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.RequestException):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _denied(exc: BaseException) -> str | None:
    """What the tracking server refused, if it answered 401 (who) or 403 (what they may do)."""
    if not isinstance(exc, MlflowException) or exc.get_http_status_code() not in (401, 403):
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    who = f"user {user!r}" if user else "no user (MLFLOW_TRACKING_USERNAME is not set)"
    if exc.get_http_status_code() == 401:
        return (f"refused the credentials of {who} (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an account of that server")
    return (f"denied {who} a request (HTTP 403, permission denied): an admin of the server must "
            f"grant that user the permission on the experiment or the registered model")


# The experiment's kind, as the MLflow UI's experiment-type selector writes it: "Machine
# learning" (training runs), not "GenAI apps & agents" (traces). MLflow 3.17's UI itself opens
# an experiment on its sidebar switch (GenAI / Model training), not on this tag; see docs/training.md.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def configure_mlflow(settings: MlflowSettings) -> str:
    """Point MLflow at the environment's tracking server and registry; return the experiment id.

    The experiment is created on first use, with its artifacts under ``artifact_location``, and
    marked as a model-training experiment (:data:`EXPERIMENT_KIND_TAG`); one that lacks the mark
    (a store from before it) gets it, one marked otherwise keeps its kind.
    Requests to a tracking server are bounded in time (:func:`limit_requests`).
    """
    limit_requests(settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    else:
        location = settings.artifact_location
        if location and "://" not in location:
            location = Path(location).resolve().as_uri()
        experiment_id = mlflow.create_experiment(
            settings.experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
        )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def default_model_uri(settings: MlflowSettings) -> str:
    return f"models:/{settings.model_name}@{settings.champion_alias}"


def resolve_model(settings: MlflowSettings, model_uri: str | None = None) -> ModelRef:
    """The registered version behind ``model_uri`` (default: the champion alias).

    Accepts ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``.

    :raises InvalidArgumentError: ``model_uri`` is not of those forms.
    :raises ModelNotFoundError: no such model, version or alias, or the version has no threshold.
    """
    uri = model_uri or default_model_uri(settings)
    match = _MODEL_URI.fullmatch(uri)
    if not match:
        raise InvalidArgumentError(
            f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    name, alias, version = match["name"], match["alias"], match["version"]
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    try:
        model_version = (
            client.get_model_version_by_alias(name, alias) if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as exc:
        if _unreachable(exc) or _denied(exc):
            raise  # not a missing model: the registry did not answer or refused (see reaching_mlflow)
        raise ModelNotFoundError(
            f"the registry at {settings.registry_uri} has no {uri} "
            f"({exc.message.splitlines()[0]}); train and register a model first"
        ) from exc
    return model_ref(model_version)


def model_ref(model_version: ModelVersion) -> ModelRef:
    """A :class:`ModelRef` of a registry entry, with the threshold from its tag."""
    if THRESHOLD_TAG not in model_version.tags:
        raise ModelNotFoundError(
            f"model {model_version.name} version {model_version.version} has no "
            f"{THRESHOLD_TAG!r} tag: it was not registered by the train job"
        )
    return ModelRef(
        name=model_version.name,
        version=str(model_version.version),
        run_id=model_version.run_id,
        threshold=float(model_version.tags[THRESHOLD_TAG]),
        # Versions registered before the tag existed were fitted at the balance they score.
        normal_weight=float(model_version.tags.get(NORMAL_WEIGHT_TAG, "1.0")),
        feature_set=model_version.tags.get(FEATURE_SET_TAG),
    )


def load_model(ref: ModelRef) -> PipelineModel:
    """Load the fitted Spark ML pipeline of a registered version."""
    return mlflow.spark.load_model(ref.uri)


def load_scorer(ref: ModelRef, engine: str) -> PipelineModel | PortableModel:
    """What ``score`` scores ``ref`` with: its portable form (``engine`` "portable") or its
    Spark ML pipeline ("spark").

    The portable form must first reproduce the probabilities Spark gave its parity rows when
    it was released. A version without a portable form (registered before it existed), or
    one that fails that check, is scored by its Spark ML pipeline instead, with a warning:
    slower, never wrong.
    """
    started = time.monotonic()
    if engine == "portable":
        try:
            model = load_registered(ref.name, ref.version)
            failures, largest = model.check()
        except ModelNotPortableError as exc:
            log.warning("score: %s cannot be scored by its portable form (%s); scoring with Spark ML instead",
                        ref.uri, exc)
        else:
            if failures == 0:
                log.info("score: loaded the portable form of %s in %.1f s (parity rows reproduced, "
                         "largest difference %.2g)", ref.uri, time.monotonic() - started, largest)
                return model
            log.warning("score: the portable form of %s differs from Spark on %d parity row(s) (largest "
                        "difference %.3g); scoring with Spark ML instead", ref.uri, failures, largest)
    pipeline = load_model(ref)
    log.info("score: loaded the Spark ML pipeline of %s in %.1f s", ref.uri, time.monotonic() - started)
    return pipeline


def _client(settings: MlflowSettings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def alias_holder(settings: MlflowSettings, alias: str) -> ModelRef | None:
    """The version ``alias`` points at, or None when the alias is not set (yet).

    :raises ModelNotFoundError: the registered model itself does not exist.
    """
    client = _client(settings)
    try:
        model = client.get_registered_model(settings.model_name)
    except MlflowException as exc:
        if _unreachable(exc):
            raise
        raise ModelNotFoundError(
            f"the registry at {settings.registry_uri} has no model {settings.model_name!r}: train one first"
        ) from exc
    if alias not in model.aliases:
        return None
    return model_ref(client.get_model_version_by_alias(settings.model_name, alias))


def version_tags(settings: MlflowSettings, ref: ModelRef) -> dict[str, str]:
    """The tags of a registered version (lineage, threshold, fitted days...)."""
    return dict(_client(settings).get_model_version(ref.name, ref.version).tags)


def run_metrics(settings: MlflowSettings, run_id: str) -> dict[str, float]:
    """The metrics a training run logged (the held-out day's ``auc_pr``, ``recall``, ...)."""
    return dict(_client(settings).get_run(run_id).data.metrics)


def point_alias(settings: MlflowSettings, alias: str, version: str) -> None:
    """Move ``alias`` to ``version``: one registry call, so readers see the old or the new."""
    _client(settings).set_registered_model_alias(settings.model_name, alias, version)
