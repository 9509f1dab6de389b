"""The payments profile through ingest, features, train, promote, score and monitor (#23 section 4).

A small file in a bank's own column names (mapped in ``[profile]`` alone), with a signal a
logistic regression can learn (large amounts are fraud), ingested and its features computed;
then each job's ``run`` on a real Delta lake and a real MLflow store: the time split of the
Handbook's protocol (a window, a gap, held-out days), the feature set recorded on the version
and enforced by ``score`` and ``train``, Card Precision@k logged by training, checked by the
gate and tracked by monitoring.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from jobs import features as features_job
from jobs import ingest as ingest_job
from jobs import monitor as monitor_job
from jobs import promote as promote_job
from jobs import score as score_job
from jobs import train as train_job
from pipelines.core.config import (
    EnsembleSettings,
    FeatureSettings,
    HistoryFeatures,
    config_path,
    load_settings,
    with_state_in,
)
from pipelines.core.errors import ConfigError, NoDataError
from pipelines.features.definitions import feature_columns, feature_set_id
from pipelines.model.inputs import FeatureSetMismatchError, model_inputs
from pipelines.model.registry import configure_mlflow, resolve_model, version_tags
from pipelines.training.search import split_by_time

SHORT = FeatureSettings(card=HistoryFeatures(windows_days=(1, 2), aggregates=("count", "mean_amount")),
                        terminal=HistoryFeatures(windows_days=(1, 2), aggregates=("count", "fraud_share"),
                                                 delay_days=2))
NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)
FIRST_DAY = date(2018, 4, 1)
DAYS = 12
K = 5


# A bank's own file, not the generator's: its own column names, mapped in [profile] alone.
BANK_HEADER = "booked_at,tx_ref,merchant,pan,value_eur,chargeback"


def bank_file(path: Path, rows_per_day: int = 60, seed: int = 11) -> Path:
    """``DAYS`` days of 20 cards (16-digit numbers) and 8 terminals; an amount over 70 is
    fraud (about a quarter), with 5% of the labels the other way."""
    rng = random.Random(seed)
    lines = [BANK_HEADER]
    for day in range(DAYS):
        for i in range(rows_per_day):
            when = datetime(2018, 4, 1, rng.randrange(24), rng.randrange(60), rng.randrange(60)) + timedelta(days=day)
            amount = rng.randrange(100, 10_000) / 100
            label = int(amount > 70) if rng.random() > 0.05 else int(amount <= 70)
            lines.append(f"{when:%Y-%m-%d %H:%M:%S},p{day:02d}-{i:03d},m{rng.randrange(8)},"
                         f"4000{rng.randrange(20):012d},{amount:.2f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def day(n: int) -> date:
    return FIRST_DAY + timedelta(days=n - 1)


@pytest.fixture
def settings(tmp_path):
    base = with_state_in(load_settings("payments"), tmp_path)
    profile = replace(base.profile, id_column="tx_ref", event_time_column="booked_at", card_column="pan",
                      terminal_column="merchant", amount_column="value_eur", label_column="chargeback")
    train = replace(base.train, candidates={"logistic_regression": {"regParam": [0.0]}}, ensemble=EnsembleSettings(),
                    holdout_days=2, gap_days=2, window_days=4, parallel_fits=1, card_precision_k=K)
    promote = replace(base.promote, min_auc_pr=0.3, min_recall=0.1, alerts_per_100k=(1.0, 100_000.0),
                      min_card_precision=0.05)
    return replace(base, profile=profile, features=SHORT, train=train, promote=promote)


@pytest.fixture
def lake(spark, settings, tmp_path):
    """The bank's file ingested, and the features of every day."""
    added = ingest_job.run_payments(spark, settings, inputs=[str(bank_file(tmp_path / "bank.csv"))],
                                    secret=b"test-only-card-key", ingested_at=NOW)
    assert added == DAYS * 60
    features_job.run(spark, settings, days=None, computed_at=NOW)
    configure_mlflow(settings.mlflow)
    return settings


def test_the_payments_inputs_are_the_amount_and_the_declared_features_of_the_features_table():
    settings = load_settings("payments")
    inputs = model_inputs(settings)
    assert inputs.path(settings).endswith("/features")
    assert inputs.feature_cols == ("amount", *feature_columns(settings.features))
    assert len(inputs.feature_cols) == 15  # the amount and the Handbook's 14
    assert (inputs.label_col, inputs.card_col) == ("label", "card_key")
    assert inputs.feature_set == feature_set_id(settings.features, time_zone=settings.profile.time_zone)
    local = model_inputs(load_settings("local"))
    assert (local.path(load_settings("local")).endswith("/transactions"), local.card_col, local.feature_set) == (
        True, None, None)


def test_a_window_with_a_refit_on_every_day_is_refused_naming_both_keys(tmp_path):
    text = config_path("payments").read_text().replace("refit_on_all_days = false", "refit_on_all_days = true")
    path = tmp_path / "payments.toml"
    path.write_text(text.replace('extends = "local"', f'extends = "{config_path("local")}"'))
    with pytest.raises(ConfigError, match=r"refit_on_all_days.*window_days"):
        load_settings(str(path))


def test_the_split_leaves_a_gap_between_a_window_and_the_held_out_days(spark):
    rows = spark.createDataFrame(
        [(f"{d}-{i}", datetime(2018, 4, d, 1 + i), date(2018, 4, d), i % 2) for d in range(1, 11) for i in range(4)],
        "transaction_id string, event_ts timestamp, txn_date date, Class int")
    split = split_by_time(rows, holdout_days=2, gap_days=3, window_days=3, validation_fraction=0.3,
                          validation_folds=1, label_col="Class")
    assert split.holdout_days == [date(2018, 4, 9), date(2018, 4, 10)]
    assert split.training_days == [date(2018, 4, 3), date(2018, 4, 4), date(2018, 4, 5)]
    assert {r[0] for r in split.training_window.select("txn_date").distinct().collect()} == set(split.training_days)
    with pytest.raises(NoDataError, match="more than 10 day"):
        split_by_time(rows, holdout_days=7, gap_days=3, window_days=3, validation_fraction=0.3,
                      validation_folds=1, label_col="Class")


def test_train_promote_score_and_monitor_run_on_the_features_table(spark, lake):
    settings = lake
    inputs = model_inputs(settings)
    outcome = train_job.run(spark, settings, commit="test")
    # 12 days: held out 11 and 12, a gap of 9 and 10, the window 5 to 8.
    assert outcome.holdout_days == [day(11), day(12)]
    ref = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}/{outcome.model_version}")
    tags = version_tags(settings.mlflow, ref)
    assert ref.feature_set == inputs.feature_set == tags["feature_set"]
    assert tags["fitted.days"] == ",".join(day(n).isoformat() for n in range(5, 9))
    assert tags["source.table_path"] == inputs.path(settings)
    metrics = mlflow.get_run(outcome.run_id).data.metrics
    assert 0.0 <= metrics[f"card_precision_at_{K}"] <= 1.0 and metrics["auc_pr"] > 0.5

    decision, gate = promote_job.run(spark, settings, candidate=ref, decided_at=NOW)
    assert decision == "promoted", gate.report()
    assert f"card_precision_at_{K}" in {check.name for check in gate.checks}

    features_version = spark.sql(f"DESCRIBE HISTORY delta.`{inputs.path(settings)}`").agg(F.max("version")).first()[0]
    written = score_job.run(spark, settings, days=[day(12)], model_ref=ref, scored_at=NOW)
    scored = spark.read.format("delta").load(settings.tables.scored_path)
    day_features = spark.read.format("delta").load(inputs.path(settings)).filter(F.col("txn_date") == day(12))
    assert written == {day(12): day_features.count()}
    assert {r[0] for r in scored.select("source_table_version").distinct().collect()} == {features_version}
    assert scored.select("transaction_id").subtract(day_features.select("transaction_id")).count() == 0

    # The skew watch: one online answer echoed with the batch's features, one with a count off by one.
    echo_dir = Path(settings.tables.root).parent / "echo"
    rows = day_features.orderBy("transaction_id").limit(2).collect()
    columns = list(inputs.feature_cols)
    answers = [{"transaction_id": r["transaction_id"], "txn_date": day(12).isoformat(), "feature_set": ref.feature_set,
                "features": {c: float(r[c]) for c in columns}} for r in rows]
    answers[1]["features"]["card_tx_count_1d"] += 1
    (echo_dir / day(12).isoformat()).mkdir(parents=True)
    (echo_dir / day(12).isoformat() / "host-1.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    settings = replace(settings, online=replace(settings.online, echo_dir=str(echo_dir)))
    results = monitor_job.run(spark, settings, days=[day(12)], computed_at=NOW)
    assert results[0].rows == written[day(12)]
    assert results[0].verdict.verdict == "alert"
    assert results[0].verdict.reasons[0].startswith(
        f"online/batch skew: 1 of 2 sampled online answers differ from the batch features (by more than 1e-09): "
        f"transaction {rows[1]['transaction_id']}: card_tx_count_1d")
    performance = spark.read.format("delta").load(settings.tables.path(settings.tables.performance))
    measured = {r["metric"]: r["value"] for r in performance.collect()}
    assert 0.0 <= measured[f"card_precision_at_{K}"] <= 1.0


def test_rows_of_other_feature_definitions_are_refused_and_a_new_set_is_promoted_without_a_comparison(spark, lake):
    settings = lake
    outcome = train_job.run(spark, settings, commit="test")
    ref = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}/{outcome.model_version}")
    assert promote_job.run(spark, settings, candidate=ref, decided_at=NOW)[0] == "promoted"
    # A version that records no feature set is refused on this profile, before anything is scored.
    with pytest.raises(FeatureSetMismatchError, match="records no feature set"):
        score_job.run(spark, settings, days=[day(12)], model_ref=replace(ref, feature_set=None), scored_at=NOW)
    # Same columns, another night: another feature set, which the version was not trained on.
    other = replace(settings, features=replace(SHORT, night_hours=(0, 5)))
    features_job.run(spark, other, days=None, computed_at=NOW)
    with pytest.raises(FeatureSetMismatchError, match=f"trained on feature set {ref.feature_set}"):
        score_job.run(spark, settings, days=[day(12)], model_ref=ref, scored_at=NOW)
    assert not Path(settings.tables.scored_path).exists()  # nothing written
    # The settings name the old definitions; the table holds the new: train refuses too.
    with pytest.raises(FeatureSetMismatchError, match="other definitions"):
        train_job.run(spark, settings, commit="test")
    # A version trained on the new set cannot be compared with the champion on the old one:
    # the absolute checks decide, and the report says why.
    newer = train_job.run(spark, other, commit="test")
    candidate = resolve_model(other.mlflow, f"models:/{other.mlflow.model_name}/{newer.model_version}")
    decision, gate = promote_job.run(spark, other, candidate=candidate, decided_at=NOW)
    assert decision == "promoted", gate.report()
    assert f"champion was trained on feature set {ref.feature_set}" in gate.report()
    assert score_job.run(spark, other, days=[day(12)], model_ref=candidate, scored_at=NOW)[day(12)] == 60
