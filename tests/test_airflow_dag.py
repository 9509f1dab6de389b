"""deploy/airflow_dag.py scores the UTC day that ended (a scheduled run also catches up late
rows) and monitors it, as Airflow itself renders its commands; and, as Airflow itself runs it with a
stand-in spark-submit.sh, an alert (monitor's exit 6) branches to retrain, whose exit 4 (the gate
refused) does not fail the run.

Airflow is not in .venv (its pins would move mlflow's); `make test` installs it into .venv-airflow
from deploy/airflow-constraints.txt. These tests run this same file with that venv's Python (the
``_airflow_*`` functions below, which import Airflow) and check what it prints. Each run gets a
throwaway AIRFLOW_HOME with a copy of the DAG, so nothing is written into the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
DAG_FILE = ROOT / "deploy" / "airflow_dag.py"
DAG_ID = "fraud_scoring_nightly"
INGEST = "cd /opt/fraud-scoring && ./spark-submit.sh ingest --env cluster --input s3a://landing/transactions/{}.csv.gz"
SCORE = "cd /opt/fraud-scoring && ./spark-submit.sh score --env cluster --date {}"
# The nightly run scores its day and, in the same commit, every day with rows newer than its scores.
NIGHTLY_SCORE = "cd /opt/fraud-scoring && ./spark-submit.sh score --env cluster --catch-up --date {}"
# monitor's exit 6 (a day's verdict is alert) becomes the XCom "alert", 0 "ok"; anything else fails.
ALERT_TO_XCOM = ("; status=$?; if [ $status -eq 6 ]; then echo alert; elif [ $status -eq 0 ]; then echo ok; "
                 "else exit $status; fi")
MONITOR = "cd /opt/fraud-scoring && ./spark-submit.sh monitor --env cluster --date {}" + ALERT_TO_XCOM
# The nightly run also monitors every day whose verdict is out of date, and retrains for the
# newest alert; a backfill monitors its day and retrains for that day's alert only.
NIGHTLY_MONITOR = MONITOR.replace(" --date", " --catch-up --date")
NIGHTLY_RETRAIN = "cd /opt/fraud-scoring && ./spark-submit.sh retrain --env cluster"
RETRAIN_DAY = NIGHTLY_RETRAIN + " --date {}"


# ---- run by .venv-airflow's Python ----------------------------------------------------------


def _airflow_runs(dag_file: str) -> dict:
    """Parse the DAG as Airflow's DAG processor does, take runs' data intervals from the DAG's own
    timetable as the scheduler and ``airflow backfill create`` do, and render every task in the
    template context a worker builds for it."""
    import copy
    import uuid
    from datetime import datetime, timezone

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.backfill import _get_info_list
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import DagRunInfo, DataInterval

    bag = DagBag(dag_folder=dag_file)
    report = {"import_errors": bag.import_errors, "warnings": bag.captured_warnings, "dags": sorted(bag.dags)}
    if DAG_ID not in bag.dags:
        return report
    dag = bag.dags[DAG_ID]
    # The scheduler's view of the DAG: serialized and loaded back, as the DAG processor stores it.
    scheduler_dag = DagSerialization.from_dict(DagSerialization.to_dict(dag))

    def utc(*day: int) -> datetime:
        return datetime(*day, tzinfo=timezone.utc)

    def render(run_type: str, logical_date, interval: DataInterval | None, run_after) -> dict:
        run = DagRun(
            dag_id=DAG_ID, run_id=f"{run_type}__{run_after.isoformat()}", logical_date=logical_date,
            data_interval_start=interval and interval.start, data_interval_end=interval and interval.end,
            run_after=run_after, start_date=None, end_date=None, run_type=run_type, state="running",
            consumed_asset_events=[], partition_key=None,
        )
        rendered: dict = {
            "logical_date": logical_date and logical_date.isoformat(),
            "data_interval": interval and [interval.start.isoformat(), interval.end.isoformat()],
        }
        for task_id in dag.task_ids:
            task = copy.deepcopy(dag.get_task(task_id))  # rendering writes into the task
            ti = RuntimeTaskInstance.model_construct(
                id=uuid.uuid4(), task_id=task_id, dag_id=DAG_ID, run_id=run.run_id, try_number=1, map_index=-1,
                dag_version_id=uuid.uuid4(), task=task, max_tries=task.retries,
                _ti_context_from_server=TIRunContext(dag_run=run, max_tries=task.retries),
            )
            context = ti.get_template_context()
            try:
                task.render_template_fields(context)
            except Exception as error:
                rendered[task_id] = f"render failed: {type(error).__name__}"
                continue
            if hasattr(task, "bash_command"):
                rendered[task_id] = task.bash_command
            elif hasattr(task, "delta"):  # TimeDeltaSensor: waits for data_interval_end (else run_after) + delta
                base = context.get("data_interval_end") or run_after
                rendered[task_id] = f"holds until {(base + task.delta).isoformat()}"
            else:  # the branch and the end without an alert run no command
                rendered[task_id] = type(task).__name__
        return rendered

    def scheduled_after(start: datetime, end: datetime) -> dict:
        # restricted=False: the timetable alone, without catchup=False's "not before now".
        info = scheduler_dag.next_dagrun_info(
            last_automated_run_info=DagRunInfo.interval(start=start, end=end), restricted=False
        )
        return {"run_after": info.run_after.isoformat(),
                **render("scheduled", info.logical_date, info.data_interval, info.run_after)}

    def backfill(first: datetime, last: datetime) -> list[dict]:
        infos = _get_info_list(from_date=first, to_date=last, reverse=False, dag=scheduler_dag)
        return [render("backfill", info.logical_date, info.data_interval, info.run_after) for info in infos]

    manual_at = utc(2026, 11, 25, 10, 0)
    report["timetable"] = type(scheduler_dag.timetable).__name__
    report["tasks"] = {
        task.task_id: {"downstream": sorted(task.downstream_task_ids), "retries": task.retries,
                       "timeout_s": task.execution_timeout and task.execution_timeout.total_seconds(),
                       "skip_on_exit_code": sorted(getattr(task, "skip_on_exit_code", None) or [])}
        for task in dag.tasks
    }
    report["runs"] = {
        "scheduled after 2026-11-23": scheduled_after(utc(2026, 11, 23), utc(2026, 11, 24)),
        "scheduled after 2026-11-29": scheduled_after(utc(2026, 11, 29), utc(2026, 11, 30)),
        "backfill 2013-09-02": backfill(utc(2013, 9, 2), utc(2013, 9, 2)),
        "backfill 2025-12-31..2026-01-01": backfill(utc(2025, 12, 31), utc(2026, 1, 1)),
        # A manual run given a logical date gets the interval its timetable infers for it.
        "manual at 2026-11-25T10:00": render(
            "manual", manual_at, scheduler_dag.timetable.infer_manual_data_interval(run_after=manual_at), manual_at
        ),
        "manual without logical date": render("manual", None, None, manual_at),
    }
    return report


def _airflow_test_runs(dag_file: str, days: list[str]) -> dict:
    """Run the DAG once per day D with ``dag.test`` (a manual run whose logical date is D+1 00:00
    UTC, hence the data interval D) and return each run's state and its tasks' states.

    Retries are turned off: a failed task would otherwise wait ``retry_delay`` for its retry."""
    from datetime import date, datetime, time, timedelta, timezone

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=dag_file).dags[DAG_ID]
    for task in dag.tasks:
        task.retries = 0
    states = {}
    for day in days:
        logical_date = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(), timezone.utc)
        run = dag.test(logical_date=logical_date)
        states[day] = [str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}]
    return states


# ---- run by the project's pytest ------------------------------------------------------------


def _run_airflow(tmp_path: Path, *args: str, dag_text: str | None = None) -> str:
    """Run .venv-airflow's Python with a throwaway AIRFLOW_HOME whose dags folder holds a copy of
    the DAG (or ``dag_text``); return its standard output."""
    import pytest

    if not AIRFLOW_PYTHON.exists():
        pytest.skip(".venv-airflow is absent: `make test` (or `make .venv-airflow/.installed`) creates it")
    home = tmp_path / "airflow_home"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    if dag_text is not None:
        assert dag_text != DAG_FILE.read_text(), "the DAG's copy was to differ"
        (home / "dags" / DAG_FILE.name).write_text(dag_text)
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # Airflow 3's default, under which a cron string schedule means CronTriggerTimetable and
        # {{ ds }} is the day the run fires. The DAG names its timetable, so this must not matter.
        AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS="False",
        PYTHONDONTWRITEBYTECODE="1",
    )
    done = subprocess.run([str(AIRFLOW_PYTHON), *args], cwd=home, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_airflow_renders_the_day_that_ended(tmp_path: Path) -> None:
    dag_copy = tmp_path / "airflow_home" / "dags" / DAG_FILE.name
    output = _run_airflow(tmp_path, __file__, str(dag_copy))
    report = json.loads(output.strip().splitlines()[-1])
    assert report["import_errors"] == {}
    assert report["warnings"] == {}
    assert report["dags"] == [DAG_ID]
    assert report["timetable"] == "CronDataIntervalTimetable"
    runs = report["runs"]

    def day(date: str, holds_until: str, *, nightly: bool = False) -> dict:
        return {"logical_date": f"{date}T00:00:00+00:00",
                "wait_until_0215_utc": f"holds until {holds_until}T02:15:00+00:00",
                "ingest": INGEST.format(date), "score": (NIGHTLY_SCORE if nightly else SCORE).format(date),
                "monitor": (NIGHTLY_MONITOR if nightly else MONITOR).format(date),
                "alert_or_not": "BranchPythonOperator", "no_alert": "EmptyOperator",
                "retrain": NIGHTLY_RETRAIN if nightly else RETRAIN_DAY.format(date)}

    # The run created when 2026-11-24 ends starts its work at 02:15 on the 25th, scores the 24th
    # and catches up the days before it whose rows changed after they were scored.
    assert runs["scheduled after 2026-11-23"] == {
        **day("2026-11-24", holds_until="2026-11-25", nightly=True),
        "run_after": "2026-11-25T00:00:00+00:00",
        "data_interval": ["2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00"],
    }
    # Across a month end: the run of 2026-12-01 scores November 30.
    assert runs["scheduled after 2026-11-29"] == {
        **day("2026-11-30", holds_until="2026-12-01", nightly=True),
        "run_after": "2026-12-01T00:00:00+00:00",
        "data_interval": ["2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00"],
    }
    # A backfill of one day scores exactly that day, without catching up (its wait is long past,
    # so it passes at once).
    assert runs["backfill 2013-09-02"] == [{
        **day("2013-09-02", holds_until="2013-09-03"),
        "data_interval": ["2013-09-02T00:00:00+00:00", "2013-09-03T00:00:00+00:00"],
    }]
    assert runs["backfill 2025-12-31..2026-01-01"] == [
        {**day("2025-12-31", holds_until="2026-01-01"),
         "data_interval": ["2025-12-31T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]},
        {**day("2026-01-01", holds_until="2026-01-02"),
         "data_interval": ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]},
    ]
    # A manual run scores the last whole UTC day before its logical date, not that date's day.
    manual = runs["manual at 2026-11-25T10:00"]
    assert manual["data_interval"] == ["2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00"]
    assert (manual["ingest"], manual["score"]) == (INGEST.format("2026-11-24"), SCORE.format("2026-11-24"))
    assert (manual["monitor"], manual["retrain"]) == (MONITOR.format("2026-11-24"), RETRAIN_DAY.format("2026-11-24"))
    # A run without a data interval fails to render instead of guessing a day.
    for task_id in ("ingest", "score", "monitor", "retrain"):
        assert runs["manual without logical date"][task_id] == "render failed: UndefinedError"


def test_monitor_branches_to_retrain_whose_gate_refusal_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    from pipelines.core.errors import PromotionRefusedError
    from pipelines.monitoring.tables import ALERT_EXIT_CODE

    dag_copy = tmp_path / "airflow_home" / "dags" / DAG_FILE.name
    report = json.loads(_run_airflow(tmp_path, __file__, str(dag_copy)).strip().splitlines()[-1])
    tasks = report["tasks"]
    assert {task_id: task["downstream"] for task_id, task in tasks.items()} == {
        "wait_until_0215_utc": ["ingest"], "ingest": ["score"], "score": ["monitor"], "monitor": ["alert_or_not"],
        "alert_or_not": ["no_alert", "retrain"], "retrain": [], "no_alert": [],
    }
    # The codes the DAG hard-codes (Airflow's workers need not import the project) are the jobs'.
    assert f"[ $status -eq {ALERT_EXIT_CODE} ]" in report["runs"]["manual at 2026-11-25T10:00"]["monitor"]
    assert tasks["retrain"]["skip_on_exit_code"] == [PromotionRefusedError.exit_code]
    # A retry would train all over again; monitor keeps the DAG's retries.
    assert (tasks["retrain"]["retries"], tasks["monitor"]["retries"]) == (0, 2)
    # A hung job (no worker left) is stopped: every job has a time limit, retrain's the longest.
    assert {task_id: task["timeout_s"] for task_id, task in tasks.items()
            if task_id in ("ingest", "score", "monitor", "retrain")} == {
        "ingest": 3 * 3600, "score": 3 * 3600, "monitor": 3 * 3600, "retrain": 8 * 3600}

    # Airflow runs the DAG (`dag.test`, one manual run per day D, on a throwaway database) with a
    # spark-submit.sh that exits with the code given for its job and day.
    stub = tmp_path / "project"
    stub.mkdir()
    (stub / "spark-submit.sh").write_text(
        '#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/calls"\nfor ((i = 1; i <= $#; i++)); do\n'
        '  [ "${!i}" = --date ] && { next=$((i + 1)); day=${!next}; }\ndone\n'
        'code="$(dirname "$0")/codes/${day:-none}/$1"\n[ -f "$code" ] && exit "$(cat "$code")"\nexit 0\n')
    (stub / "spark-submit.sh").chmod(0o755)
    codes = {  # day: (monitor's exit, retrain's exit)
        "2026-01-01": (0, 0),  # no alert: done
        "2026-01-02": (ALERT_EXIT_CODE, 0),  # alert: retrained (promoted, or skipped in a cool-down)
        "2026-01-03": (ALERT_EXIT_CODE, PromotionRefusedError.exit_code),  # alert: the gate refused
        "2026-01-04": (ALERT_EXIT_CODE, 1),  # alert: retrain failed
        "2026-01-05": (1, 0),  # monitor failed
    }
    for day, (monitor_code, retrain_code) in codes.items():
        (stub / "codes" / day).mkdir(parents=True)
        (stub / "codes" / day / "monitor").write_text(str(monitor_code))
        (stub / "codes" / day / "retrain").write_text(str(retrain_code))
    _run_airflow(tmp_path, "-m", "airflow", "db", "migrate")
    dag_text = DAG_FILE.read_text().replace('PROJECT = "/opt/fraud-scoring"', f'PROJECT = "{stub}"')
    output = _run_airflow(tmp_path, __file__, "--run", str(dag_copy), *codes, dag_text=dag_text)
    runs = json.loads(output.strip().splitlines()[-1])
    before = {"wait_until_0215_utc": "success", "ingest": "success", "score": "success"}
    assert runs == {
        "2026-01-01": ["success", {**before, "monitor": "success", "alert_or_not": "success",
                                   "no_alert": "success", "retrain": "skipped"}],
        "2026-01-02": ["success", {**before, "monitor": "success", "alert_or_not": "success",
                                   "no_alert": "skipped", "retrain": "success"}],
        "2026-01-03": ["success", {**before, "monitor": "success", "alert_or_not": "success",
                                   "no_alert": "skipped", "retrain": "skipped"}],
        "2026-01-04": ["failed", {**before, "monitor": "success", "alert_or_not": "success",
                                  "no_alert": "skipped", "retrain": "failed"}],
        "2026-01-05": ["failed", {**before, "monitor": "failed", "alert_or_not": "upstream_failed",
                                  "no_alert": "upstream_failed", "retrain": "upstream_failed"}],
    }
    retrains = [line for line in (stub / "calls").read_text().splitlines() if line.startswith("retrain")]
    assert retrains == [f"retrain --env cluster --date {day}" for day in ("2026-01-02", "2026-01-03", "2026-01-04")]


def test_airflow_cli_renders_the_day_before_the_run(tmp_path: Path) -> None:
    """The check deploy/README.md gives: `airflow tasks render` on a throwaway SQLite database."""
    _run_airflow(tmp_path, "-m", "airflow", "db", "migrate")
    for task_id, command in (("score", SCORE), ("ingest", INGEST)):
        output = _run_airflow(tmp_path, "-m", "airflow", "tasks", "render", DAG_ID, task_id,
                              "2026-11-25T02:15:00+00:00")
        assert command.format("2026-11-24") in output.splitlines()


if __name__ == "__main__":
    if sys.argv[1] == "--run":  # .venv-airflow/bin/python tests/test_airflow_dag.py --run DAG_FILE DAY...
        print(json.dumps(_airflow_test_runs(sys.argv[2], sys.argv[3:])))
    else:  # .venv-airflow/bin/python tests/test_airflow_dag.py DAG_FILE
        print(json.dumps(_airflow_runs(sys.argv[1])))
