"""Airflow DAG: every night, ingest the file of the UTC day that just ended, score that day and
catch up every earlier day whose transactions changed after it was scored.

Copy into the Airflow dags folder on a worker that has this project checked out (or use the
container image with a KubernetesPodOperator).

Which day a run covers is its *data interval*, never ``{{ ds }}``. Since Airflow 3 a plain cron
string in ``schedule`` means ``CronTriggerTimetable`` (``[scheduler] create_cron_data_intervals``
defaults to False): the logical date is the moment the run fires and the data interval is empty,
so ``{{ ds }}`` of the run that fires on 2026-11-25 at 02:15 is 2026-11-25, a day only begun.
This DAG therefore names its timetable: ``CronDataIntervalTimetable("0 0 * * *", "UTC")``
gives each run the interval [D 00:00 UTC, D+1 00:00 UTC), i.e. the calendar day D, whatever that
setting says. The commands are templated from ``data_interval_start``; a scheduled run, a
backfill of D (``airflow backfill create --from-date D --to-date D``) and a cleared run of D all
score D, and scoring replaces the day. A scheduled run also passes ``--catch-up``: the same
commit rescores every day whose rows changed after it was scored (a late file, a file spanning
two days; see pipelines/scoring/catch_up.py). A backfill or a manual run scores its day alone.

The run for D is created at D+1 00:00 UTC, when its interval ends; the first task waits until
02:15 UTC so that the day's file has landed (see ``FILE_LANDS_AFTER``).

After scoring, ``monitor`` checks day D (a scheduled run also every day whose verdict is out of
date: never monitored, rescored or relabelled, ``--catch-up``). Its exit 6 means a
day's verdict is alert: the task itself succeeds, pushes ``alert`` (``ok`` on exit 0) and
``alert_or_not`` branches to ``retrain``, which trains and promotes through the gate unless an
earlier retraining is in its cool-down; without an alert it branches to ``no_alert`` and the
run ends. Any other exit fails the task. ``retrain`` exiting 4 (the gate refused the new
version: a recorded decision, the champion unchanged) leaves it *skipped*, so the run succeeds;
any other non-zero exit fails it, and it is not retried (a retry would train all over again; the
failure is recorded in ``retrain_triggers`` and the next alert starts another).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

try:  # Airflow 3: the operators live in the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator
    from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import BranchPythonOperator
    from airflow.sensors.time_delta import TimeDeltaSensor

try:  # Airflow 3: DAG and timetables from the Task SDK
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2 (and Airflow 3 releases whose SDK lacks the timetables)
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

PROJECT = "/opt/fraud-scoring"
ENV = "cluster"
# How long after midnight UTC the day's file is given to land: 02:15, as the schedule always had.
FILE_LANDS_AFTER = timedelta(hours=2, minutes=15)
# The UTC day the run covers, e.g. 2026-11-24 for the run that starts on 2026-11-25 at 02:15.
DAY = "{{ data_interval_start | ds }}"
# Only the nightly (scheduled) run catches up; an explicit backfill of one day scores that day.
CATCH_UP = "{{ '--catch-up ' if dag_run.run_type == 'scheduled' else '' }}"
# A nightly alert may be about any day monitor caught up, so the nightly retrain starts from the
# newest alert; a backfill or manual run retrains only for its own day's alert.
RETRAIN_DAY = "{{ '' if dag_run.run_type == 'scheduled' else ' --date ' ~ (data_interval_start | ds) }}"
# monitor's exit status when a day's verdict is alert (ALERT_EXIT_CODE, pipelines/monitoring/tables.py).
MONITOR_ALERT = 6
# retrain's exit status when the promotion gate refused the new version (PromotionRefusedError).
GATE_REFUSED = 4


def _after_monitor(ti) -> str:
    """``retrain`` when monitor pushed ``alert``, else ``no_alert``."""
    return "retrain" if ti.xcom_pull(task_ids="monitor") == "alert" else "no_alert"


with DAG(
    dag_id="fraud_scoring_nightly",
    # One run per UTC calendar day: data interval [D 00:00, D+1 00:00), logical date D 00:00.
    schedule=CronDataIntervalTimetable("0 0 * * *", "UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # A job that hangs (a cluster with no worker left: Spark's scheduler waits for one forever)
    # is stopped and retried instead of holding the night (max_active_runs=1) for good.
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=3)},
    tags=["fraud", "spark"],
) as dag:
    # Why a sensor rather than a "15 2 * * *" cron: a cron data interval ends at the cron time,
    # so its interval would run from 02:15 to 02:15 and not be a calendar day; a trigger
    # timetable with a fixed interval would keep a logical date of 02:15 on D+1 and give manual
    # runs a window that is not a day. The interval stays the calendar day and this task holds
    # the run until data_interval_end + 2 h 15 min, i.e. 02:15 UTC on D+1. For a backfill or a
    # cleared run that moment is past, so it succeeds at once. "reschedule" frees the worker
    # slot between pokes and needs no triggerer.
    wait_until_0215 = TimeDeltaSensor(
        task_id="wait_until_0215_utc",
        delta=FILE_LANDS_AFTER,
        mode="reschedule",
        poke_interval=timedelta(minutes=5),
    )
    ingest = BashOperator(
        task_id="ingest",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh ingest --env {ENV} "
        f"--input s3a://landing/transactions/{DAY}.csv.gz",
    )
    score = BashOperator(
        task_id="score",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh score --env {ENV} {CATCH_UP}--date {DAY}",
    )
    # The last line of standard output is the task's XCom: "alert" or "ok". Exit 6 is turned into
    # success here, as BashOperator only knows success, failure and skip_on_exit_code's skip.
    monitor = BashOperator(
        task_id="monitor",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh monitor --env {ENV} {CATCH_UP}--date {DAY}; status=$?; "
        f"if [ $status -eq {MONITOR_ALERT} ]; then echo alert; elif [ $status -eq 0 ]; then echo ok; "
        f"else exit $status; fi",
    )
    alert_or_not = BranchPythonOperator(task_id="alert_or_not", python_callable=_after_monitor)
    retrain = BashOperator(
        task_id="retrain",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh retrain --env {ENV}{RETRAIN_DAY}",
        # The gate refused: recorded in retrain_triggers and promotions, not a failure of the run.
        skip_on_exit_code=GATE_REFUSED,
        # A retry would train from the start again; the failure is recorded and the next alert retries.
        retries=0,
        # The full search on a month of transactions takes hours, not minutes.
        execution_timeout=timedelta(hours=8),
    )
    no_alert = EmptyOperator(task_id="no_alert")
    wait_until_0215 >> ingest >> score >> monitor >> alert_or_not >> [retrain, no_alert]
