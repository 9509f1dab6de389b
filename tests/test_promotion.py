"""The promotion gate, promote and rollback: the paired bootstrap by hand, then the lifecycle on
the real sample with a real MLflow registry and real Delta tables.

Models are fitted on day 1 only (``refit_on_all_days = false``), so day 2 is labelled and seen
by no version: the gate measures and compares on it.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from jobs import ingest, promote, rollback, train
from pipelines.core.config import EnsembleSettings, PromoteSettings
from pipelines.core.errors import InvalidArgumentError
from pipelines.lifecycle.promotion import (
    DRY_RUN,
    FORCED,
    PROMOTED,
    REFUSED,
    Cells,
    comparison_check,
    paired_difference_interval,
    weighted_average_precision,
)
from pipelines.model.evaluation import ScoreCurve, average_precision
from pipelines.model.registry import configure_mlflow, resolve_model
from tests.conftest import SAMPLE_CSV, settings_in
from tests.test_end_to_end import INGESTED_AT, conf_file, submit

_DECISIONS = itertools.count()


def decided_at() -> datetime:
    """A later instant at each call, as decisions have in real life (the table orders by it)."""
    return datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc) + timedelta(minutes=next(_DECISIONS))


def test_weighted_average_precision_with_unit_weights_is_average_precision_ties_included():
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.3, 0.3, 0.1])
    labels = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    curve = ScoreCurve.from_counts(scores, labels, 1 - labels)
    assert weighted_average_precision(scores, labels, np.ones(7))[0] == pytest.approx(average_precision(curve))
    # Weights are row counts: a row weighted 2 is that row twice.
    doubled = np.array([2.0, 1, 1, 1, 1, 1, 1])
    twice = ScoreCurve.from_counts(np.append(scores, 0.9), np.append(labels, 1.0), np.append(1 - labels, 0.0))
    assert weighted_average_precision(scores, labels, doubled)[0] == pytest.approx(average_precision(twice))


def cells_of(labels, new, old) -> Cells:
    labels = np.asarray(labels, dtype=float)
    return Cells(labels=labels, scores={"new": np.asarray(new, float), "old": np.asarray(old, float)},
                 counts=np.ones(len(labels)))


def test_the_paired_interval_of_a_model_against_itself_is_exactly_zero():
    rng = np.random.default_rng(1)
    labels = (rng.random(400) < 0.1).astype(float)
    scores = np.clip(labels * 0.4 + rng.random(400) * 0.6, 0, 1)
    assert paired_difference_interval(cells_of(labels, scores, scores), "new", "old", samples=200, seed=0) == (
        0.0, 0.0, 0.0)


def test_a_clearly_worse_model_has_an_interval_entirely_below_zero_and_fails_the_comparison():
    rng = np.random.default_rng(2)
    labels = (rng.random(2000) < 0.1).astype(float)
    good = np.clip(labels * 0.5 + rng.random(2000) * 0.5, 0, 1)
    noise = rng.random(2000)
    point, low, high = paired_difference_interval(cells_of(labels, noise, good), "new", "old", samples=300, seed=0)
    assert low <= point <= high < -0.3
    check = comparison_check(cells_of(labels, noise, good), PromoteSettings(bootstrap_samples=300))
    assert not check.passed and check.value == pytest.approx(point)


@pytest.mark.parametrize("policy, passes", [("refuse", False), ("absolute_only", True)])
def test_without_unseen_rows_the_comparison_follows_the_policy(policy, passes):
    check = comparison_check(None, PromoteSettings(without_unseen_rows=policy))
    assert check.passed is passes and check.value is None
    assert "no labelled rows" in check.note


# --- The lifecycle, end to end -------------------------------------------------------------------

GOOD = {"logistic_regression": {"regParam": [0.01]}}
# One tree with one split: a deliberately weak challenger.
WEAK = {"random_forest": {"numTrees": [1], "maxDepth": [1]}}


@pytest.fixture(scope="module")
def lifecycle(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lifecycle")
    settings = settings_in(folder)
    settings = replace(settings, train=replace(settings.train, refit_on_all_days=False, ensemble=EnsembleSettings()))
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    return settings


def train_challenger(spark, settings, candidates):
    outcome = train.run(spark, replace(settings, train=replace(settings.train, candidates=candidates)),
                        commit="lifecycle")
    return resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}@challenger"), outcome


def champion_version(settings) -> str | None:
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    version = client.get_registered_model(settings.mlflow.model_name).aliases.get("champion")
    return None if version is None else str(version)


def promotions(spark, settings):
    return spark.read.format("delta").load(settings.tables.promotions_path).orderBy("decided_at").collect()


@pytest.mark.e2e
def test_the_lifecycle_gate_promote_refuse_force_rollback(spark, lifecycle):
    settings = lifecycle

    # train registers a challenger and never touches the champion
    first, outcome = train_challenger(spark, settings, GOOD)
    assert first.version == outcome.model_version == "1" and champion_version(settings) is None
    tags = MlflowClient(settings.mlflow.tracking_uri).get_model_version("fraud_detector", "1").tags
    assert tags["fitted.days"] == "2013-09-01" and tags["normal_weight"] == repr(settings.train.normal_weight)

    # no champion yet: only the absolute checks, on day 2 (which version 1 never saw)
    decision, result = promote.run(spark, settings, candidate=first, decided_at=decided_at())
    assert decision == PROMOTED and champion_version(settings) == "1"
    assert [check.name for check in result.checks] == ["auc_pr", "recall_at_threshold", "alerts_per_100k"]
    assert (result.evidence.rows, result.evidence.frauds) == (2643, 211)
    assert result.evidence.days[0].isoformat() == "2013-09-02"

    # a weak challenger: a dry run moves nothing; the real run is refused; the champion stays
    weak, _ = train_challenger(spark, settings, WEAK)
    decision, result = promote.run(spark, settings, candidate=weak, dry_run=True, decided_at=decided_at())
    assert decision == DRY_RUN and champion_version(settings) == "1"
    decision, result = promote.run(spark, settings, candidate=weak, decided_at=decided_at())
    comparison = result.checks[-1]
    assert decision == REFUSED and not result.passed and champion_version(settings) == "1"
    assert comparison.name == "auc_pr_change_vs_champion" and not comparison.passed and comparison.value < 0
    assert "95% interval" in comparison.note

    # a forced promotion is recorded with its reason, and rollback undoes it in one step
    decision, _ = promote.run(spark, settings, candidate=weak, force_reason="drill", decided_at=decided_at())
    assert decision == FORCED and champion_version(settings) == weak.version
    assert rollback.run(spark, settings, reason="drill over", decided_at=decided_at()) == (weak.version, "1")
    assert champion_version(settings) == "1"

    # a challenger as good as the champion passes the paired comparison
    better, _ = train_challenger(spark, settings, GOOD)
    decision, result = promote.run(spark, settings, candidate=better, decided_at=decided_at())
    assert decision == PROMOTED and result.checks[-1].passed and champion_version(settings) == better.version
    with pytest.raises(InvalidArgumentError, match="is the champion already"):
        promote.run(spark, settings, candidate=better, decided_at=decided_at())

    rows = promotions(spark, settings)
    assert [(row.action, row.decision, row.candidate_version, row.champion_before, row.champion_after)
            for row in rows] == [
        ("promote", PROMOTED, "1", None, "1"),
        ("promote", DRY_RUN, weak.version, "1", "1"),
        ("promote", REFUSED, weak.version, "1", "1"),
        ("promote", FORCED, weak.version, "1", weak.version),
        ("rollback", "rolled_back", "1", weak.version, "1"),
        ("promote", PROMOTED, better.version, "1", better.version),
    ]
    assert rows[3].reason == "drill" and rows[2].gate_passed is False
    assert {check.name for check in rows[2].checks} >= {"auc_pr", "auc_pr_change_vs_champion"}


@pytest.mark.e2e
def test_promote_refuses_bad_arguments_before_spark_starts(tmp_path):
    conf = conf_file(tmp_path)
    forced = submit("promote", "--force", conf=conf)
    assert forced.returncode == 2 and "--force needs --reason TEXT" in forced.output
    empty_registry = submit("promote", "--dry-run", conf=conf)
    assert empty_registry.returncode == 2, empty_registry.output[-2000:]
    assert "has no models:/fraud_detector@challenger" in empty_registry.output
    assert "Traceback" not in empty_registry.output
    assert not (tmp_path / "lake").exists()
