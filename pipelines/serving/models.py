"""The model being served, and the watcher that swaps in a new version when the alias moves.

Requests read :attr:`ModelHolder.current` once and score with that object to the end, so an
answer is always produced by one whole version and names it. The watcher loads a new version
on its own thread (download, load, the parity check against the probabilities Spark gave at
registration, a warm-up), and only then replaces the reference: one assignment, atomic in
Python. A version that fails any step is logged and counted in ``/metrics``, and the version
already serving goes on; the failed one is retried after ``RETRY_POLLS`` polls.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.core.config import MlflowSettings, limit_requests
from pipelines.core.errors import ModelNotPortableError
from pipelines.model.portable.decision import NORMAL_WEIGHT_TAG, THRESHOLD_TAG
from pipelines.model.portable.model import PortableModel
from pipelines.model.portable.pyfunc import load_registered
from pipelines.model.ref import FEATURE_SET_TAG
from pipelines.serving.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# A version that failed to load is tried again after this many polls (it may have been a
# network error), not at every poll.
RETRY_POLLS = 12


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    run_id: str
    portable: PortableModel
    loaded_at: float
    # The feature set (pipelines/features) it was trained on; None: its inputs have none.
    feature_set: str | None = None


class ModelHolder:
    """The version serving now (None before the first load) and why none is, if so."""

    def __init__(self) -> None:
        self.current: LoadedModel | None = None
        self.waiting_reason = "no model loaded yet"


def load_version(client: MlflowClient, name: str, version: str) -> LoadedModel:
    """Download a registered version's portable form, load it and check it.

    :raises ModelNotPortableError: the version has no portable form (registered before it
        existed, or by another tool), its decision differs from its registry tags (which the
        batch uses), or it no longer reproduces the probabilities Spark gave at registration.
    """
    model_version = client.get_model_version(name, version)
    portable = load_registered(name, version)
    tags = model_version.tags
    tagged = (float(tags.get(THRESHOLD_TAG, "nan")), float(tags.get(NORMAL_WEIGHT_TAG, "1.0")))
    if tagged != (portable.decision.threshold, portable.decision.normal_weight):
        raise ModelNotPortableError(
            f"{name} version {version}'s tags say threshold {tags.get(THRESHOLD_TAG)} and normal weight "
            f"{tags.get(NORMAL_WEIGHT_TAG, '1.0')}, its portable form {portable.decision.threshold!r} and "
            f"{portable.decision.normal_weight!r}: the nightly batch decides with the tags, so it is not served")
    failures, largest = portable.check()
    if failures:
        raise ModelNotPortableError(
            f"{name} version {version} differs from the probabilities Spark gave at registration on {failures} "
            f"rows (by up to {largest:.3g})")
    # Warm-up: the first call of each stage's compiled code, before any request meets it.
    portable.sample_probability(portable.parity.features[:2])
    return LoadedModel(name=name, version=str(version), run_id=model_version.run_id or "", portable=portable,
                       loaded_at=time.time(), feature_set=tags.get(FEATURE_SET_TAG))


class ModelWatcher:
    """Reads the alias every ``poll_seconds`` and swaps in the version it points at."""

    def __init__(self, settings: MlflowSettings, holder: ModelHolder, metrics: ServiceMetrics, *,
                 poll_seconds: float, alias: str | None = None) -> None:
        limit_requests(settings)
        # MLflow resolves a models:/ URI's artifacts through its global URIs: this process has one store.
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.registry_uri)
        self.client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
        self.name = settings.model_name
        self.alias = alias or settings.champion_alias
        self.holder, self.metrics, self.poll_seconds = holder, metrics, poll_seconds
        self._failed: dict[str, int] = {}  # version -> polls left before it is tried again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        """Read the alias; load and swap in its version if it is not the one serving."""
        try:
            version = str(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message.lower():
                if self.holder.current is None:
                    self.holder.waiting_reason = f"{self.name}@{self.alias} does not exist yet"
                return
            self.metrics.registry_errors.inc()
            log.warning("cannot read %s@%s from the registry: %s", self.name, self.alias, exc.message)
            return
        except Exception as exc:  # a network error: keep serving what is loaded
            self.metrics.registry_errors.inc()
            log.warning("cannot read %s@%s from the registry: %s", self.name, self.alias, exc)
            return
        current = self.holder.current
        if current is not None and current.version == version:
            return
        if self._failed.get(version, 0) > 0:
            self._failed[version] -= 1
            return
        log.info("%s@%s is version %s: loading it", self.name, self.alias, version)
        started = time.monotonic()
        try:
            loaded = load_version(self.client, self.name, version)
        except Exception as exc:
            self._failed[version] = RETRY_POLLS
            self.metrics.load_failures.labels(model_version=version).inc()
            serving = f"version {current.version} goes on serving" if current else "nothing is serving"
            log.error("version %s failed to load, %s: %s", version, serving, exc)
            if current is None:
                self.holder.waiting_reason = f"version {version} failed to load"
            return
        self.holder.current = loaded  # the swap: one assignment
        self._failed.pop(version, None)
        if current is not None:
            self.metrics.model_info.labels(current.name, current.version, current.run_id).set(0)
        self.metrics.model_info.labels(loaded.name, loaded.version, loaded.run_id).set(1)
        self.metrics.model_loaded_at.set(loaded.loaded_at)
        self.metrics.swaps.inc()
        log.info("serving %s version %s (run %s), loaded and checked in %.2f s; it replaced %s", loaded.name,
                 loaded.version, loaded.run_id, time.monotonic() - started,
                 f"version {current.version}" if current else "nothing")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("the model watcher failed; it will try again")
            self._stop.wait(self.poll_seconds)
