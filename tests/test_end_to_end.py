"""The whole path on the shipped real sample: ingest, train to MLflow, score both days, and
check the rows that come out; then every bad input of the jobs.

The jobs' ``run`` functions are called in this process (one Spark session); the command-line
behaviour (argument checks, exit codes) is checked through ``./spark-submit.sh`` itself.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from delta.tables import DeltaTable
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from jobs import ingest, promote, score, train
from pipelines.core.config import PROJECT_ROOT, TableSettings
from pipelines.core.errors import ModelNotFoundError, NoDataError, SchemaError
from pipelines.model.registry import NORMAL_WEIGHT_TAG, THRESHOLD_TAG, configure_mlflow, load_model, resolve_model
from pipelines.scoring.batch import real_balance_threshold
from tests.conftest import SAMPLE_CSV, settings_in

DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)
INGESTED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
SCORED_AT = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    """Ingest the sample, train, score both days: what `make demo` does, in a temporary folder."""
    settings = settings_in(tmp_path_factory.mktemp("e2e"))
    inserted = ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="0123abc")
    # train registers a challenger; promote moves the champion (no champion yet: the gate's
    # absolute checks, on the training run's held-out day, since the model saw every day).
    challenger = resolve_model(settings.mlflow, "models:/fraud_detector@challenger")
    decision, gate = promote.run(spark, settings, candidate=challenger, decided_at=SCORED_AT)
    model_ref = resolve_model(settings.mlflow)
    written = score.run(spark, settings, days=[DAY1, DAY2], model_ref=model_ref, scored_at=SCORED_AT)
    model = load_model(model_ref)  # for the tests that score again
    return SimpleNamespace(settings=settings, inserted=inserted, outcome=outcome, model_ref=model_ref,
                           model=model, written=written, decision=decision, gate=gate)


def read(spark, path):
    return spark.read.format("delta").load(path)


def version_of(spark, path) -> int:
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def test_the_first_version_is_promoted_on_the_held_out_day_of_its_training_run(demo):
    # Refitted on both days, it has no unseen labelled rows: the gate says what it used instead.
    assert demo.decision == "promoted" and demo.model_ref.version == demo.outcome.model_version
    assert demo.gate.evidence.source.startswith("held-out day of the training run")
    assert demo.gate.evidence.frauds == 211
    assert {check.name: check.passed for check in demo.gate.checks} == {
        "auc_pr": True, "recall_at_threshold": True, "alerts_per_100k": True}


def test_ingest_keeps_every_real_row_once_including_exact_duplicates(spark, demo):
    transactions = read(spark, demo.settings.tables.transactions_path)
    per_day = {row.txn_date: row["count"] for row in transactions.groupBy("txn_date").count().collect()}
    assert demo.inserted == 5412
    assert per_day == {DAY1: 2769, DAY2: 2643}
    assert transactions.select("transaction_id").distinct().count() == 5412
    assert transactions.agg(F.sum("Class")).first()[0] == 492


def test_ingesting_the_same_file_again_adds_nothing(spark, demo):
    path = demo.settings.tables.transactions_path
    version_before = version_of(spark, path)
    again = ingest.run(spark, demo.settings, input_path=str(SAMPLE_CSV), ingested_at=SCORED_AT)
    assert again == 0
    assert version_of(spark, path) == version_before
    assert read(spark, path).count() == 5412
    assert read(spark, path).filter(F.col("ingested_at") != F.lit(INGESTED_AT)).count() == 0


def test_every_transaction_is_scored_once_on_its_day(spark, demo):
    transactions = read(spark, demo.settings.tables.transactions_path)
    scored = read(spark, demo.settings.tables.scored_path)
    assert demo.written == {DAY1: 2769, DAY2: 2643}
    assert scored.count() == 5412
    unmatched = transactions.join(scored, ["transaction_id", "txn_date"], "full_outer").filter(
        F.col("fraud_probability").isNull() | F.col("Class").isNull()
    )
    assert unmatched.count() == 0


def test_probabilities_and_decisions_are_consistent(spark, demo):
    scored = read(spark, demo.settings.tables.scored_path)
    stats = scored.agg(F.min("fraud_probability"), F.max("fraud_probability")).first()
    assert 0.0 <= stats[0] and stats[1] <= 1.0
    wrong = scored.filter(F.col("is_fraud") != (F.col("fraud_probability") >= F.col("threshold")))
    assert wrong.count() == 0
    assert dict((f.name, f.dataType.simpleString()) for f in scored.schema)["fraud_probability"] == "double"


def test_the_model_separates_fraud_on_the_held_out_day(demo):
    # Small test settings (10 trees of depth 4); `make demo` reports the real figure.
    assert demo.outcome.holdout_days == [DAY2]
    assert demo.outcome.holdout_metrics["auc_pr"] > 0.8
    assert demo.outcome.holdout_metrics["frauds"] == 211
    metrics = demo.outcome.holdout_metrics
    assert metrics["auc_pr_ci95_low"] < metrics["auc_pr"] < metrics["auc_pr_ci95_high"]


def test_lineage_columns_match_the_registry_and_the_source_table(spark, demo):
    settings = demo.settings
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    champion = client.get_model_version_by_alias(settings.mlflow.model_name, "champion")
    lineage = read(spark, settings.tables.scored_path).select(
        "model_name", "model_version", "model_run_id", "model_uri", "threshold", "source_table_version", "scored_at"
    ).distinct().collect()
    assert len(lineage) == 1
    row = lineage[0]
    assert (row.model_name, row.model_version, row.model_run_id) == ("fraud_detector", str(champion.version),
                                                                     champion.run_id)
    assert row.model_uri == f"models:/fraud_detector/{champion.version}"
    # The version's threshold, moved to the real class balance like the probabilities.
    assert row.threshold == pytest.approx(real_balance_threshold(float(champion.tags[THRESHOLD_TAG]),
                                                                 float(champion.tags[NORMAL_WEIGHT_TAG])))
    assert row.source_table_version == int(champion.tags["source.table_version"]) == 0
    # Spark hands back naive datetimes in this process's zone: compare instants.
    assert row.scored_at.astimezone(timezone.utc) == SCORED_AT


def test_the_training_run_logs_lineage_metrics_plots_and_the_model(demo):
    settings = demo.settings
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    run = client.get_run(demo.outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["source.table_version"] == "0"
    assert run.data.tags["source.row_count"] == "5412"
    assert run.data.tags["git.commit"] == "0123abc"
    assert run.data.tags["versions.delta"] == "4.0.1"
    assert run.data.params["holdout_days"] == "2013-09-02"
    for metric in ("auc_pr", "auc_roc", "precision", "recall", "f1", "val_auc_pr", "threshold"):
        assert metric in run.data.metrics
    assert run.data.metrics["threshold"] == pytest.approx(demo.model_ref.threshold)
    plots = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/precision_recall.png", "plots/roc.png", "plots/confusion_matrix.png",
            "plots/score_distribution.png", "plots/feature_importance.png"} <= plots
    model_info = mlflow.models.get_model_info(demo.model_ref.uri)
    assert [spec.name for spec in model_info.signature.inputs][-1] == "Amount"


def test_the_search_logs_a_child_run_per_candidate_and_registers_the_best_by_validation(demo):
    settings = demo.settings
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    parent = client.get_run(demo.outcome.run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {child.data.tags["mlflow.runName"]: child for child in children}
    assert set(by_name) == {"logistic_regression", "random_forest", "ensemble"}
    # Same metric names everywhere, so the compare view lines them up.
    assert set(by_name["logistic_regression"].data.metrics) == set(by_name["random_forest"].data.metrics)
    assert set(by_name["ensemble"].data.metrics) == set(by_name["random_forest"].data.metrics)
    assert by_name["ensemble"].data.params["model.members"] == json.dumps({
        "logistic_regression": {"regParam": float(by_name["logistic_regression"].data.params["model.regParam"])},
        "random_forest": {"maxDepth": 4, "numTrees": 10},
    }, sort_keys=True)
    assert {"auc_pr", "val_auc_pr", "recall_at_precision_0.9", "fraud_amount_caught_share",
            "alerts_per_100k"} <= set(parent.data.metrics)
    best = max(by_name, key=lambda name: by_name[name].data.metrics["val_auc_pr"])
    assert parent.data.tags["chosen_candidate"] == best == demo.outcome.candidate
    assert client.get_model_version("fraud_detector", demo.model_ref.version).tags["candidate"] == best
    history = client.get_metric_history(by_name["logistic_regression"].info.run_id, "search_val_auc_pr")
    assert len(history) == 2  # one per grid point


def test_scoring_a_day_again_replaces_it_and_leaves_the_other_day(spark, demo):
    path = demo.settings.tables.scored_path
    before = read(spark, path).drop("scored_at")
    version_before = version_of(spark, path)
    later = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
    score.run(spark, demo.settings, days=[DAY2], model=demo.model, model_ref=demo.model_ref, scored_at=later)
    after = read(spark, path)
    assert version_of(spark, path) == version_before + 1
    assert after.count() == 5412
    assert after.drop("scored_at").exceptAll(before).count() == 0
    scored_at = {row.txn_date: row.scored_at.astimezone(timezone.utc)
                 for row in after.select("txn_date", "scored_at").distinct().collect()}
    assert scored_at == {DAY1: SCORED_AT, DAY2: later}


def test_a_day_without_transactions_stops_scoring_and_writes_nothing(spark, demo):
    path = demo.settings.tables.scored_path
    version_before = version_of(spark, path)
    with pytest.raises(NoDataError, match="no transactions on 2013-09-03"):
        score.run(spark, demo.settings, days=[DAY2, date(2013, 9, 3)], model=demo.model,
                  model_ref=demo.model_ref, scored_at=SCORED_AT)
    assert version_of(spark, path) == version_before


def test_a_missing_alias_or_an_empty_registry_is_a_clear_error(demo, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no models:/fraud_detector@staging"):
        resolve_model(demo.settings.mlflow, "models:/fraud_detector@staging")
    empty = settings_in(tmp_path)
    configure_mlflow(empty.mlflow)
    with pytest.raises(ModelNotFoundError, match="train and register a model first"):
        resolve_model(empty.mlflow)
    configure_mlflow(demo.settings.mlflow)


def write_csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def sample_lines(count: int) -> tuple[str, list[str]]:
    with gzip.open(SAMPLE_CSV, "rt") as sample:
        header = sample.readline().strip()
        return header, [sample.readline().strip() for _ in range(count)]


def test_ingest_refuses_a_file_missing_a_column_and_creates_nothing(spark, settings, tmp_path):
    header, rows = sample_lines(3)
    drop = header.split(",").index("V13")
    cut = [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in [header, *rows]]
    bad = write_csv(tmp_path / "no_v13.csv", cut[0], cut[1:])
    with pytest.raises(SchemaError, match=r"no_v13\.csv is missing column\(s\) \['V13'\]"):
        ingest.run(spark, settings, input_path=bad, ingested_at=INGESTED_AT)
    assert not DeltaTable.isDeltaTable(spark, settings.tables.transactions_path)


def test_ingest_refuses_a_non_numeric_value_and_leaves_the_table_as_it_was(spark, demo, tmp_path):
    header, rows = sample_lines(3)
    fields = rows[1].split(",")
    fields[header.split(",").index("V5")] = "n/a"
    bad = write_csv(tmp_path / "bad_v5.csv", header, [rows[0], ",".join(fields), rows[2]])
    path = demo.settings.tables.transactions_path
    version_before = version_of(spark, path)
    with pytest.raises(SchemaError, match=r"bad_v5\.csv .*V5: 1 bad value\(s\), e.g. 'n/a'"):
        ingest.run(spark, demo.settings, input_path=bad, ingested_at=INGESTED_AT)
    assert version_of(spark, path) == version_before


def test_train_refuses_a_held_out_day_without_fraud_before_logging_a_run(spark, settings, tmp_path):
    header, _ = sample_lines(0)
    with gzip.open(SAMPLE_CSV, "rt") as sample:
        lines = sample.read().splitlines()[1:]
    time_at, class_at = 0, len(header.split(",")) - 1
    no_fraud_day2 = [line for line in lines
                     if float(line.split(",")[time_at]) < 86400 or line.split(",")[class_at] == "0"]
    csv = write_csv(tmp_path / "no_fraud_day2.csv", header, no_fraud_day2)
    ingest.run(spark, settings, input_path=csv, ingested_at=INGESTED_AT)
    experiment_id = configure_mlflow(settings.mlflow)
    with pytest.raises(NoDataError, match=r"held-out part \(0 frauds in 2432 rows\)"):
        train.run(spark, settings, commit="x")
    assert MlflowClient(settings.mlflow.tracking_uri).search_runs([experiment_id]) == []


def test_train_refuses_an_empty_table_location(spark, settings, tmp_path):
    empty = replace(settings, tables=TableSettings(root=str(tmp_path / "nothing")))
    with pytest.raises(NoDataError, match=r"no Delta table .*run ingest first"):
        train.run(spark, empty, commit="x")


def submit(*args: str, conf: Path) -> SimpleNamespace:
    """Run ./spark-submit.sh as a user would, with this interpreter.

    spark-submit passes the Python driver's stderr through its own stdout, so a job's messages
    are looked for in both (``output``).
    """
    env = {**os.environ, "FRAUD_PYTHON": sys.executable}
    result = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), *args, "--env", str(conf)],
                            capture_output=True, text=True, env=env, timeout=300)
    return SimpleNamespace(returncode=result.returncode, output=result.stdout + result.stderr)


def conf_file(folder: Path, *, tracking_uri: str | None = None, artifacts: Path | None = None) -> Path:
    """conf/local.toml with the tables and the MLflow store moved into ``folder`` (or the store
    at ``tracking_uri``, its artifacts in ``artifacts``, to share a registry between tests)."""
    text = (PROJECT_ROOT / "conf" / "local.toml").read_text()
    text = text.replace('root = "lake"', f'root = "{folder / "lake"}"')
    store = tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    text = text.replace('"sqlite:///mlruns/mlflow.db"', f'"{store}"')
    text = text.replace('"mlruns/artifacts"', f'"{artifacts or folder / "artifacts"}"')
    path = folder / "test.toml"
    path.write_text(text)
    return path


def test_score_refuses_a_bad_date_with_exit_2_before_spark_starts(tmp_path):
    # The other bad dates are refused by the same parser: see test_config_and_arguments.py.
    result = submit("score", "--date", "2013-09-01' OR '1'='1", conf=conf_file(tmp_path))
    assert result.returncode == 2
    assert "argument --date: \"2013-09-01' OR '1'='1\" is not a date written YYYY-MM-DD" in result.output
    assert not (tmp_path / "lake").exists() and not (tmp_path / "mlflow.db").exists()


def test_score_without_a_registered_model_exits_2_with_a_clear_message(tmp_path):
    result = submit("score", "--date", "2013-09-02", conf=conf_file(tmp_path))
    assert result.returncode == 2
    assert "error: the registry at sqlite:///" in result.output
    assert "has no models:/fraud_detector@champion" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "lake").exists()


def test_ingest_of_a_bad_file_exits_2_naming_the_column_and_the_file(tmp_path):
    header, rows = sample_lines(2)
    bad = write_csv(tmp_path / "amounts.csv", header, [rows[0], rows[1].rsplit(",", 2)[0] + ",12.5 EUR,0"])
    result = submit("ingest", "--input", bad, conf=conf_file(tmp_path))
    assert result.returncode == 2, result.output[-2000:]
    assert f"error: {bad} has values that are not finite numbers" in result.output
    assert "Amount: 1 bad value(s), e.g. '12.5 EUR'" in result.output
    assert not (tmp_path / "lake" / "transactions").exists()
