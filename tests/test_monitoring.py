"""Monitoring end to end on generated days: a model fitted on three undrifted days, then V14
shifted from day 4 and the fraud rate raised from day 6; every day scored and monitored.

Everything here is synthetic (jobs/generate.py), never the real sample.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from delta.tables import DeltaTable
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

import jobs.generate as generate
import jobs.ingest as ingest
import jobs.monitor as monitor
import jobs.promote as promote
import jobs.score as score
import jobs.train as train
from pipelines.core.cli import run_main
from pipelines.core.errors import ModelNotFoundError, NoDataError
from pipelines.data.schema import FEATURE_COLS, TRANSACTION_ID, TXN_DATE
from pipelines.model.registry import configure_mlflow, resolve_model
from pipelines.monitoring.labels import merge_labels
from pipelines.monitoring.monitor import stale_days
from pipelines.monitoring.tables import ALERT_EXIT_CODE
from tests.conftest import quick_settings_in
from tests.test_end_to_end import conf_file

FIRST = date(2013, 9, 1)
DAYS = [FIRST + timedelta(days=n) for n in range(8)]
TRAINING_DAYS = 3
V14_DRIFT_DAY = FIRST + timedelta(days=3)  # day 4
FRAUD_RATE_DAY = FIRST + timedelta(days=5)  # day 6
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=timezone.utc)


def joined(files: list[Path], path: Path) -> str:
    """The CSV files as one, with the first one's header."""
    lines = files[0].read_text().splitlines()
    for file in files[1:]:
        lines += file.read_text().splitlines()[1:]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitoring")
    settings = quick_settings_in(folder)
    # Generated at a fraud rate of 2%, every row real: no down-sampling to undo.
    settings = replace(settings, train=replace(settings.train, normal_weight=1.0),
                       promote=replace(settings.promote, alerts_per_100k=(10.0, 10_000.0)))
    arguments = generate.build_parser().parse_args([
        "--days", str(len(DAYS)), "--rows-per-day", "2000", "--fraud-rate", "0.02", "--seed", "11",
        "--drift", "V14:+1.5@day=4", "--drift", "fraud_rate:0.06@day=6", "--output", str(folder / "days")])
    files = generate.run(spark, settings, generate.request_from_args(arguments, settings))
    # One ingest per period, of the days' files joined (an ingest each is the same rows, slower).
    ingest.run(spark, settings, input_path=joined(files[:TRAINING_DAYS], folder / "training.csv"), ingested_at=NOW)
    configure_mlflow(settings.mlflow)
    train.run(spark, settings, commit="test")
    challenger = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}@challenger")
    decision, _ = promote.run(spark, settings, candidate=challenger, decided_at=NOW)
    assert decision == "promoted"
    ingest.run(spark, settings, input_path=joined(files[TRAINING_DAYS:], folder / "later.csv"), ingested_at=NOW)
    champion = resolve_model(settings.mlflow)
    score.run(spark, settings, days=DAYS, model_ref=champion, scored_at=NOW)
    results = monitor.run(spark, settings, days=DAYS, computed_at=NOW)
    return SimpleNamespace(settings=settings, folder=folder, results={r.day: r for r in results}, champion=champion)


def table(spark, settings, name):
    return spark.read.format("delta").load(settings.tables.path(name))


def out_of_band(spark, settings, kind="input") -> dict[date, set[str]]:
    rows = (table(spark, settings, settings.tables.drift)
            .filter((F.col("kind") == kind) & F.col("out_of_band")).select(TXN_DATE, "column").collect())
    found: dict[date, set[str]] = {day: set() for day in DAYS}
    for row in rows:
        found[row[TXN_DATE]].add(row["column"])
    return found


def test_undrifted_days_are_ok_and_v14_is_flagged_from_its_day_and_drifted_from_the_next(spark, monitored):
    verdicts = {day: result.verdict.verdict for day, result in monitored.results.items()}
    before = [day for day in DAYS if day < V14_DRIFT_DAY]
    assert all(verdicts[day] == "ok" for day in before), verdicts
    flagged = out_of_band(spark, monitored.settings)
    # No feature fires on the undrifted days; only V14 until the fraud rate moves.
    assert all(not flagged[day] for day in before), flagged
    for day in DAYS:
        if V14_DRIFT_DAY <= day < FRAUD_RATE_DAY:
            assert flagged[day] == {"V14"}, (day, flagged[day])
        if day >= V14_DRIFT_DAY:
            assert "V14" in flagged[day]
    # One day out of band is a warning; the second of the last three is an alert.
    assert verdicts[V14_DRIFT_DAY] == "warn"
    assert all(verdicts[day] == "alert" for day in DAYS if day > V14_DRIFT_DAY)
    drifted = {row[TXN_DATE] for row in table(spark, monitored.settings, monitored.settings.tables.drift)
               .filter((F.col("column") == "V14") & F.col("drifted")).select(TXN_DATE).distinct().collect()}
    assert drifted == {day for day in DAYS if day > V14_DRIFT_DAY}
    assert any("V14 drifted" in reason for reason in monitored.results[DAYS[-1]].verdict.reasons)


def test_the_alert_rate_fires_when_the_fraud_rate_moves_and_not_before(spark, monitored):
    rows = (table(spark, monitored.settings, monitored.settings.tables.drift)
            .filter(F.col("metric") == "alert_rate").collect())
    assert len(rows) == len(DAYS)
    fired = {row[TXN_DATE] for row in rows if row["out_of_band"]}
    assert fired == {day for day in DAYS if day >= FRAUD_RATE_DAY}
    expected = {row[TXN_DATE]: row for row in table(spark, monitored.settings, monitored.settings.tables.drift)
                .filter(F.col("metric") == "expected_frauds").collect()}
    assert all(expected[day]["value"] > 0 for day in DAYS)


def test_realized_performance_has_an_interval_around_each_figure(spark, monitored):
    rows = table(spark, monitored.settings, monitored.settings.tables.performance).collect()
    metrics = {row["metric"] for row in rows}
    assert metrics == {"auc_pr", "recall", "precision", "alerts_per_100k", "fraud_amount_caught_share"}
    assert {row[TXN_DATE] for row in rows} == set(DAYS)
    for row in rows:
        assert row["lower"] <= row["value"] <= row["upper"], row
        assert row["labelled_rows"] == 2000
    auc = [row for row in rows if row["metric"] == "auc_pr"]
    assert all(row["limit_low"] == monitored.settings.promote.min_auc_pr for row in auc)


def test_each_day_has_a_baseline_a_verdict_and_a_report_logged_to_mlflow(spark, monitored):
    settings = monitored.settings
    baseline = table(spark, settings, settings.tables.baselines).collect()
    assert {row["column"] for row in baseline} == {*FEATURE_COLS, "fraud_probability"}
    assert {row["fitted_days"] for row in baseline} == {",".join(d.isoformat() for d in DAYS[:TRAINING_DAYS])}
    verdicts = table(spark, settings, settings.tables.verdicts).collect()
    assert sorted(row[TXN_DATE] for row in verdicts) == DAYS
    report = monitored.results[DAYS[-1]].report
    assert report.endswith(f"{DAYS[-1].isoformat()}.html")
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    logged = {item.path for item in client.list_artifacts(monitored.champion.run_id, f"monitoring/{DAYS[-1]}")}
    assert f"monitoring/{DAYS[-1]}/{DAYS[-1]}.html" in logged


def test_a_rerun_of_a_day_leaves_one_row_per_metric_and_the_same_verdict(spark, monitored):
    settings, day = monitored.settings, DAYS[4]
    again = monitor.run(spark, settings, days=[day], computed_at=NOW + timedelta(hours=1))
    assert again[0].verdict == monitored.results[day].verdict
    assert not again[0].performance_recomputed  # same labels: the figures stand
    drift = table(spark, settings, settings.tables.drift)
    assert drift.groupBy(TXN_DATE, "column", "metric").count().filter("count > 1").count() == 0
    assert drift.filter(F.col(TXN_DATE) == day).count() == (len(FEATURE_COLS) + 1) * 7 + 2
    for name in (settings.tables.performance, settings.tables.verdicts):
        keys = [TXN_DATE, "metric"] if name == settings.tables.performance else [TXN_DATE]
        assert table(spark, settings, name).groupBy(*keys).count().filter("count > 1").count() == 0


def test_a_label_change_recomputes_that_days_performance_and_catch_up_finds_only_it(spark, monitored):
    settings, day = monitored.settings, DAYS[1]
    performance = settings.tables.performance
    rows_of_day = table(spark, settings, performance).filter(F.col(TXN_DATE) == day)
    before = {row["metric"]: row for row in rows_of_day.collect()}
    assert stale_days(spark, settings) == {}
    # Chargebacks: ten normal transactions of day 2 turn out to be fraud.
    scored = spark.read.format("delta").load(settings.tables.scored_path)
    late = (scored.filter((F.col(TXN_DATE) == day) & ~F.col("is_fraud")).select(TRANSACTION_ID)
            .orderBy(TRANSACTION_ID).limit(10).withColumn("Class", F.lit(1)))
    merge_labels(spark, late, settings.tables.path(settings.tables.labels), labelled_at=NOW, source_file="late.csv")
    assert stale_days(spark, settings) == {day: "its labels changed since its performance was measured"}
    later = NOW + timedelta(days=30)
    [result] = monitor.catch_up(spark, settings, named_days=(), computed_at=later)
    assert result.day == day and result.performance_recomputed
    after = {row["metric"]: row for row in table(spark, settings, performance).filter(F.col(TXN_DATE) == day).collect()}
    assert after["recall"]["value"] < before["recall"]["value"]
    assert after["recall"]["computed_at"] > before["recall"]["computed_at"]
    assert after["recall"]["labels_fingerprint"] != before["recall"]["labels_fingerprint"]
    # Other days' figures were not touched.
    other = table(spark, settings, performance).filter(F.col(TXN_DATE) == DAYS[2]).select("computed_at").distinct()
    assert [row[0] for row in other.collect()] == [before["recall"]["computed_at"]]
    assert stale_days(spark, settings) == {}


def versions(spark, settings) -> dict[str, int]:
    return {name: DeltaTable.forPath(spark, settings.tables.path(name)).history(1).first()["version"]
            for name in (settings.tables.drift, settings.tables.performance, settings.tables.verdicts)}


def test_a_day_not_scored_is_refused_with_nothing_written(spark, monitored):
    settings = monitored.settings
    before = versions(spark, settings)
    with pytest.raises(NoDataError, match=r"2013-09-30 not scored .*run score for it first; nothing was written"):
        monitor.run(spark, settings, days=[DAYS[0], date(2013, 9, 30)], computed_at=NOW)
    assert versions(spark, settings) == before


def test_a_version_without_a_baseline_that_cannot_be_built_is_refused_with_nothing_written(spark, monitored):
    settings = monitored.settings
    path = settings.tables.path(settings.tables.baselines)
    kept = spark.read.format("delta").load(path).collect()
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri, registry_uri=settings.mlflow.registry_uri)
    name, version = monitored.champion.name, monitored.champion.version
    tag = client.get_model_version(name, version).tags["source.table_version"]
    spark.sql(f"DELETE FROM delta.`{path}`")
    client.delete_model_version_tag(name, version, "source.table_version")
    before = versions(spark, settings)
    try:
        refused = rf"models:/{name}/{version} has no baseline and none can be built"
        with pytest.raises(ModelNotFoundError, match=refused):
            monitor.run(spark, settings, days=[DAYS[0]], computed_at=NOW)
        assert versions(spark, settings) == before
        assert spark.read.format("delta").load(path).count() == 0
    finally:
        client.set_model_version_tag(name, version, "source.table_version", tag)
        spark.createDataFrame(kept, spark.read.format("delta").load(path).schema).write.format("delta").mode(
            "append").save(path)


def test_the_job_exits_6_on_an_alert_day_0_on_an_ok_one_and_2_on_a_bad_date(spark, monitored, capsys):
    conf = conf_file(monitored.folder)
    assert run_main(monitor.main, ["--env", str(conf), "--date", DAYS[0].isoformat()]) == 0
    assert run_main(monitor.main, ["--env", str(conf), "--date", DAYS[-1].isoformat()]) == ALERT_EXIT_CODE
    assert "alert" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        run_main(monitor.main, ["--env", str(conf), "--date", "2013-02-30"])
    assert exited.value.code == 2
