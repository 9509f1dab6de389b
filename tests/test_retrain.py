"""What an alert starts: the cool-down (pure), retrain refusing a day that did not alert, a trigger
skipped in a cool-down, failures recorded then raised, one real retraining (train, then the gate)
on the real sample, and deploy/nightly.sh's chain with a stand-in spark-submit.sh.

The jobs run in this process (``run_main(retrain.main, ...)``) on the suite's session, with the
settings of a temporary folder; one quick model is trained and promoted once for the module
(version 1, the champion), and the verdicts each test starts from are written inline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from jobs import ingest, promote, retrain, train
from pipelines.core.cli import run_main
from pipelines.core.clock import NOW_VARIABLE
from pipelines.core.config import PROJECT_ROOT
from pipelines.core.errors import ServiceUnavailableError
from pipelines.data.tables import append_rows
from pipelines.lifecycle.promotion import PROMOTED
from pipelines.model.registry import configure_mlflow, resolve_model
from pipelines.monitoring.retrain import (
    FAILED,
    RETRAINED,
    RETRAINS_SCHEMA,
    SKIPPED_COOL_DOWN,
    AlertVerdict,
    CoolDown,
    PastTrigger,
    TriggerRecord,
    cool_down_until,
    read_triggers,
)
from pipelines.monitoring.tables import ALERT, ALERT_EXIT_CODE, OK, VERDICT_SCHEMA, WARN
from tests.conftest import FIXED_NOW, SAMPLE_CSV, quick_settings_in
from tests.test_end_to_end import INGESTED_AT

UTC = timezone.utc
NOW = FIXED_NOW  # what the jobs read as now (tests/conftest.py)
DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)


def retrained(finished_at: datetime, **fields) -> PastTrigger:
    return PastTrigger(finished_at=finished_at, action=RETRAINED, **fields)


# --- The cool-down, pure -------------------------------------------------------------------------


def test_without_an_earlier_retraining_there_is_no_cool_down():
    assert cool_down_until([], cool_down_days=7, now=NOW) is None


def test_a_retraining_holds_others_off_for_the_cool_down_from_when_it_finished():
    earlier = retrained(NOW - timedelta(days=2), alert_txn_date=DAY2, trained_version="3", promote_decision=PROMOTED)
    assert cool_down_until([earlier], cool_down_days=7, now=NOW) == CoolDown(
        until=NOW + timedelta(days=5), since=earlier)


def test_the_cool_down_ends_at_its_instant_exactly():
    earlier = retrained(NOW - timedelta(days=7))
    assert cool_down_until([earlier], cool_down_days=7, now=NOW - timedelta(microseconds=1)) is not None
    assert cool_down_until([earlier], cool_down_days=7, now=NOW) is None


def test_the_newest_retraining_counts_whatever_the_order_of_the_rows():
    old, new = retrained(NOW - timedelta(days=20)), retrained(NOW - timedelta(days=1))
    assert cool_down_until([new, old], cool_down_days=7, now=NOW).since == new
    assert cool_down_until([old, new], cool_down_days=7, now=NOW).since == new


def test_failed_and_skipped_triggers_hold_nothing_off():
    # A failure decided nothing: the next alert (or a retry) starts another. A skip never
    # extends the cool-down that caused it.
    recent = [PastTrigger(NOW - timedelta(hours=1), FAILED, trained_version="4"),
              PastTrigger(NOW - timedelta(hours=2), SKIPPED_COOL_DOWN)]
    assert cool_down_until(recent, cool_down_days=7, now=NOW) is None
    # ... and do not hide the retraining before them either.
    earlier = retrained(NOW - timedelta(days=3))
    assert cool_down_until([*recent, earlier], cool_down_days=7, now=NOW).since == earlier


def test_a_cool_down_of_zero_days_never_holds_anything_off():
    assert cool_down_until([retrained(NOW - timedelta(seconds=1))], cool_down_days=0, now=NOW) is None


@pytest.mark.timezone
def test_naive_instants_are_utc_and_other_zones_are_compared_as_instants():
    in_new_york = timezone(timedelta(hours=-5))
    earlier = retrained(datetime(2026, 11, 24, 22, 0, tzinfo=in_new_york))  # 2026-11-25 03:00 UTC
    assert cool_down_until([earlier], cool_down_days=1, now=datetime(2026, 11, 26, 2, 59)).until == datetime(
        2026, 11, 26, 3, 0, tzinfo=UTC)
    assert cool_down_until([earlier], cool_down_days=1, now=datetime(2026, 11, 26, 3, 0)) is None


@pytest.mark.parametrize("days", [-1.0, float("nan"), float("inf")])
def test_a_cool_down_that_is_not_a_finite_number_of_days_is_refused(days):
    with pytest.raises(ValueError, match="cool_down_days must be a finite number of days"):
        cool_down_until([], cool_down_days=days, now=NOW)


def test_the_cool_down_says_why_in_one_line():
    earlier = retrained(NOW - timedelta(days=2), alert_txn_date=DAY2, trained_version="3", promote_decision="refused")
    assert cool_down_until([earlier], cool_down_days=7, now=NOW).describe() == (
        "in cool-down until 2026-11-30T03:00:00+00:00: retrained for the alert of 2013-09-02, "
        "finished 2026-11-23T03:00:00+00:00 (version 3 refused)")


def test_a_record_with_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="action must be one of"):
        TriggerRecord(triggered_at=NOW, alert=AlertVerdict(DAY2, "fraud_detector", "1"), action="retrain",
                      champion_before="1", finished_at=NOW, champion_after="1")


# --- The job on real tables ----------------------------------------------------------------------


@pytest.mark.timezone
def test_a_trigger_read_back_from_its_table_finished_at_the_same_instant(spark, settings):
    finished_at = datetime(2026, 11, 25, 4, 30, 15, 250, tzinfo=UTC)
    record = TriggerRecord(triggered_at=finished_at - timedelta(hours=2),
                           alert=AlertVerdict(DAY2, "fraud_detector", "1"), action=RETRAINED,
                           champion_before="1", champion_after="2", finished_at=finished_at,
                           trained_version="2", promote_decision=PROMOTED, promote_exit_code=0)
    path = settings.tables.path(settings.tables.retrains)
    append_rows(spark.createDataFrame([record.as_row()], RETRAINS_SCHEMA), path)
    assert read_triggers(spark, path, model_name="fraud_detector") == [PastTrigger(
        finished_at=finished_at, action=RETRAINED, alert_txn_date=DAY2, trained_version="2", promote_decision=PROMOTED)]
    assert read_triggers(spark, path, model_name="another_model") == []
    assert read_triggers(spark, settings.tables.path("no_such_table"), model_name="fraud_detector") == []



@pytest.fixture(scope="module")
def registry(spark, tmp_path_factory):
    """The sample ingested, one quick model trained and promoted: version 1 is the champion."""
    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    folder = tmp_path_factory.mktemp("retrain")
    settings = quick_settings_in(folder)
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="retrain-test")
    candidate = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}/{outcome.model_version}")
    decision, _ = promote.run(spark, settings, candidate=candidate, decided_at=INGESTED_AT)
    assert decision == PROMOTED
    yield SimpleNamespace(settings=settings, champion=outcome.model_version)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry_uri)


@pytest.fixture
def settings_here(registry, tmp_path):
    """The module's registry, with monitoring tables of this test's own (no transactions)."""
    return replace(registry.settings, tables=replace(registry.settings.tables, root=str(tmp_path / "lake")))


def write_verdicts(spark, settings, rows) -> None:
    """rows: (day, version, verdict, reasons, computed_at)."""
    full = [(day, settings.mlflow.model_name, version, verdict, list(reasons), [], [], 2643, 2643,
             NOW - timedelta(hours=1), "", computed_at) for day, version, verdict, reasons, computed_at in rows]
    append_rows(spark.createDataFrame(full, VERDICT_SCHEMA), settings.tables.path(settings.tables.verdicts))


def run_retrain(monkeypatch, spark, settings, *argv: str) -> int:
    monkeypatch.setattr(retrain, "load_settings", lambda env: settings)
    monkeypatch.setattr(retrain, "get_spark", lambda spark_settings: spark)
    return run_main(retrain.main, list(argv))


def triggers(spark, settings) -> list:
    """The rows of retrain_triggers, oldest first, instants as UTC ISO text."""
    path = settings.tables.path(settings.tables.retrains)
    iso = "yyyy-MM-dd'T'HH:mm:ss"
    return (spark.read.format("delta").load(path)
            .withColumns({name: F.date_format(name, iso) for name in ("triggered_at", "finished_at",
                                                                      "cool_down_until")})
            .orderBy("triggered_at", "finished_at").collect())


def retrains_table(settings) -> Path:
    return Path(settings.tables.path(settings.tables.retrains))


def champion_now(settings) -> str:
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    return str(client.get_registered_model(settings.mlflow.model_name).aliases["champion"])


@pytest.mark.parametrize(
    ("verdicts", "argv", "message"),
    [
        # the day did not alert: the verdict found is named, with its reasons
        ([(DAY2, "1", WARN, ["V14: psi 0.12 out of band"], NOW)], ["--date", "2013-09-02"],
         re.escape("the verdict of 2013-09-02 (version 1) is 'warn', not 'alert' (V14: psi 0.12 out of band)")),
        # an older alert of the day was superseded by a newer verdict of the same day
        ([(DAY2, "1", ALERT, ["recall below 0.7"], NOW - timedelta(days=1)), (DAY2, "2", OK, [], NOW)],
         ["--date", "2013-09-02"], re.escape("the verdict of 2013-09-02 (version 2) is 'ok', not 'alert'")),
        ([(DAY1, "1", OK, [], NOW)], ["--date", "2013-09-02"], "no verdict for 2013-09-02 of fraud_detector"),
        ([(DAY1, "1", WARN, [], NOW), (DAY2, "1", OK, [], NOW)], [],
         "no day's verdict is 'alert' in .* \\(the newest, 2013-09-02, is 'ok'\\): nothing to retrain"),
        ([], [], "no verdicts at .*monitor_verdicts: run `monitor` first"),
    ],
)
def test_retrain_refuses_a_day_whose_verdict_is_not_alert_with_exit_2_recording_nothing(
    spark, settings, monkeypatch, capsys, verdicts, argv, message
):
    # The verdict is read before anything else: no registered model is needed to refuse.
    if verdicts:
        write_verdicts(spark, settings, verdicts)
    assert run_retrain(monkeypatch, spark, settings, *argv) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: ") and re.search(message, error), error
    assert not retrains_table(settings).exists()


def test_an_alert_in_cool_down_is_recorded_as_skipped_with_until_when_and_exits_0(
    spark, settings_here, registry, monkeypatch
):
    write_verdicts(spark, settings_here, [(DAY1, "1", ALERT, ["recall below 0.7"], NOW),
                                          (DAY2, "1", OK, [], NOW)])
    earlier = TriggerRecord(
        triggered_at=NOW - timedelta(days=2, hours=2), alert=AlertVerdict(DAY1, "fraud_detector", "1", ("x",)),
        action=RETRAINED, champion_before="1", champion_after="1", finished_at=NOW - timedelta(days=2),
        trained_version="1", promote_decision=PROMOTED, promote_exit_code=0)
    append_rows(spark.createDataFrame([earlier.as_row()], RETRAINS_SCHEMA), str(retrains_table(settings_here)))

    def no_training(*args, **kwargs):
        raise AssertionError("trained in a cool-down")

    monkeypatch.setattr(retrain.train, "run", no_training)
    # No --date: the newest day whose verdict is alert (day 1; day 2 is ok).
    assert run_retrain(monkeypatch, spark, settings_here) == 0
    skipped = triggers(spark, settings_here)[-1]
    until = (earlier.finished_at + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
    assert (skipped.action, skipped.alert_txn_date, skipped.alert_model_version, skipped.alert_reasons) == (
        SKIPPED_COOL_DOWN, DAY1, "1", ["recall below 0.7"])
    champion = champion_now(settings_here)
    assert (skipped.champion_before, skipped.champion_after, skipped.trained_version, skipped.promote_decision,
            skipped.promote_exit_code) == (champion, champion, None, None, None)
    assert skipped.cool_down_until == until
    assert skipped.detail.startswith(f"in cool-down until {until}+00:00: retrained for the alert of 2013-09-01")


def test_a_failure_in_train_is_recorded_then_raised_and_starts_no_cool_down(
    spark, settings_here, registry, monkeypatch, capsys
):
    write_verdicts(spark, settings_here, [(DAY2, "1", ALERT, ["auc_pr below 0.8"], NOW)])

    def unreachable(*args, **kwargs):
        raise ServiceUnavailableError("cannot reach the MLflow tracking server at http://mlflow:5000")

    monkeypatch.setattr(retrain.train, "run", unreachable)
    assert run_retrain(monkeypatch, spark, settings_here, "--date", "2013-09-02") == 3
    assert "error: cannot reach the MLflow tracking server" in capsys.readouterr().err
    # A second alert tries again: the failure held nothing off.
    assert run_retrain(monkeypatch, spark, settings_here, "--date", "2013-09-02") == 3
    rows = triggers(spark, settings_here)
    champion = champion_now(settings_here)
    assert [(row.action, row.champion_before, row.champion_after, row.trained_version, row.promote_decision,
             row.promote_exit_code) for row in rows] == [(FAILED, champion, champion, None, None, None)] * 2
    assert rows[0].detail == ("train failed: ServiceUnavailableError: cannot reach the MLflow tracking server "
                              "at http://mlflow:5000")


def test_a_failure_in_promote_is_recorded_with_the_version_trained_and_its_exit_code(
    spark, settings_here, registry, monkeypatch
):
    write_verdicts(spark, settings_here, [(DAY2, "1", ALERT, ["auc_pr below 0.8"], NOW)])
    monkeypatch.setattr(retrain.train, "run",
                        lambda spark, settings, commit: SimpleNamespace(model_version=registry.champion))

    def broken(*args, **kwargs):
        raise RuntimeError("the promotions table is corrupt")

    monkeypatch.setattr(retrain.promote, "run", broken)
    with pytest.raises(RuntimeError, match="corrupt"):  # not a named error: its stack trace, exit 1
        run_retrain(monkeypatch, spark, settings_here)
    [row] = triggers(spark, settings_here)
    assert (row.action, row.trained_version, row.promote_decision, row.promote_exit_code, row.champion_after) == (
        FAILED, registry.champion, None, 1, None)
    assert row.detail == "promote failed: RuntimeError: the promotions table is corrupt"


@pytest.mark.e2e
def test_an_alert_retrains_and_promotes_through_the_gate_then_the_next_alert_is_held_off(
    spark, registry, monkeypatch
):
    settings = registry.settings
    write_verdicts(spark, settings, [(DAY2, registry.champion, ALERT, ["recall below 0.7 (0.41 to 0.55)"], NOW)])
    assert run_retrain(monkeypatch, spark, settings, "--date", "2013-09-02") == 0
    [row] = triggers(spark, settings)
    assert (row.action, row.alert_txn_date, row.alert_model_version, row.alert_reasons) == (
        RETRAINED, DAY2, registry.champion, ["recall below 0.7 (0.41 to 0.55)"])
    new_version = row.trained_version
    assert new_version not in (None, registry.champion)
    assert (row.champion_before, row.trained_version, row.promote_decision, row.promote_exit_code,
            row.champion_after) == (registry.champion, new_version, PROMOTED, 0, new_version)
    assert row.cool_down_until is None and row.detail == f"version {new_version} promoted by the gate"
    assert NOW.strftime("%Y-%m-%dT%H:%M:%S") <= row.triggered_at <= row.finished_at
    # The registry and the promotions table agree: the gate decided, and the champion moved.
    assert champion_now(settings) == new_version
    gate = (spark.read.format("delta").load(settings.tables.promotions_path)
            .filter(F.col("candidate_version") == new_version).collect())
    assert [(decision.decision, decision.gate_passed, decision.champion_before) for decision in gate] == [
        (PROMOTED, True, registry.champion)]

    # The next alert (no --date: the newest, day 2 again), an hour later, is held off for the cool-down.
    monkeypatch.setenv(NOW_VARIABLE, (NOW + timedelta(hours=1)).isoformat())
    assert run_retrain(monkeypatch, spark, settings) == 0
    first, second = read_triggers(spark, str(retrains_table(settings)), model_name="fraud_detector")
    assert second.action == SKIPPED_COOL_DOWN and first.action == RETRAINED
    skipped = triggers(spark, settings)[-1]
    expected_until = first.finished_at + timedelta(days=settings.monitor.retrain_cool_down_days)
    assert skipped.cool_down_until == expected_until.strftime("%Y-%m-%dT%H:%M:%S")
    assert (skipped.champion_before, skipped.champion_after) == (new_version, new_version)


# --- deploy/nightly.sh with a stand-in spark-submit.sh ------------------------------------------


@pytest.fixture
def nightly(tmp_path):
    """A copy of deploy/nightly.sh beside a spark-submit.sh that records its arguments and exits
    with the code written in codes/<job> (0 if none)."""
    project = tmp_path / "project"
    (project / "deploy").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "deploy" / "nightly.sh", project / "deploy" / "nightly.sh")
    stub = project / "spark-submit.sh"
    stub.write_text('#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/calls"\n'
                    'code="$(dirname "$0")/codes/$1"\necho "$1 ran"\n'
                    '[ "$(cat "$code" 2>/dev/null)" = hang ] && exec sleep 600\n'
                    '[ -f "$code" ] && exit "$(cat "$code")"\nexit 0\n')
    stub.chmod(0o755)
    (project / "codes").mkdir()

    def run(**codes: int | str) -> SimpleNamespace:
        for old in [project / "calls", *(project / "codes").iterdir()]:
            old.unlink(missing_ok=True)
        for job, code in codes.items():
            (project / "codes" / job).write_text(str(code))
        env = {"PATH": os.environ["PATH"], NOW_VARIABLE: NOW.isoformat(), "FRAUD_LOG_DIR": str(tmp_path / "logs"),
               "FRAUD_LANDING": "landing", "FRAUD_STEP_TIMEOUT": "3s"}
        done = subprocess.run(["bash", str(project / "deploy" / "nightly.sh"), "test"], capture_output=True,
                              text=True, env=env, timeout=30)
        calls = (project / "calls").read_text().splitlines() if (project / "calls").exists() else []
        return SimpleNamespace(code=done.returncode, out=done.stdout + done.stderr, calls=calls,
                               jobs=[call.split()[0] for call in calls], logs=tmp_path / "logs")

    return run


def test_a_job_that_hangs_is_stopped_at_its_time_limit_and_ends_the_night(nightly):
    hung = nightly(score="hang")
    assert hung.code == 124 and hung.jobs == ["ingest", "score"]
    assert "score stopped: still running after 3s" in hung.out
    assert subprocess.run(["pgrep", "-f", "exec sleep 600|^sleep 600$"], capture_output=True).returncode == 1


def test_nightly_retrains_only_after_an_alert(nightly):
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    ok = nightly()
    assert ok.code == 0 and ok.jobs == ["ingest", "score", "monitor"]
    assert ok.calls == [f"ingest --input landing/{yesterday}.csv.gz --env test", "score --catch-up --env test",
                        "monitor --catch-up --env test"]
    assert "no day's verdict is alert: done" in ok.out
    assert (ok.logs / "monitor.log").read_text() == "monitor ran\n"


def test_nightly_runs_retrain_on_monitors_alert_code_and_a_gate_refusal_is_not_a_failure(nightly):
    alert = nightly(monitor=ALERT_EXIT_CODE)
    assert alert.code == 0 and alert.jobs == ["ingest", "score", "monitor", "retrain"]
    assert alert.calls[-1] == "retrain --env test"
    refused = nightly(monitor=ALERT_EXIT_CODE, retrain=4)
    assert refused.code == 0 and "the gate refused the new version" in refused.out


@pytest.mark.parametrize(("codes", "ran", "exit_code"), [
    ({"ingest": 2}, ["ingest"], 2),
    ({"score": 3}, ["ingest", "score"], 3),
    ({"monitor": 1}, ["ingest", "score", "monitor"], 1),
    ({"monitor": ALERT_EXIT_CODE, "retrain": 5}, ["ingest", "score", "monitor", "retrain"], 5),
])
def test_nightly_stops_at_the_first_failure_and_exits_with_its_code(nightly, codes, ran, exit_code):
    result = nightly(**codes)
    assert (result.code, result.jobs) == (exit_code, ran)
    assert f"{ran[-1]} ended: exit {exit_code}" in result.out
