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
two days; see pipelines/catch_up.py). A backfill or a manual run scores its day alone.

The run for D is created at D+1 00:00 UTC, when its interval ends; the first task waits until
02:15 UTC so that the day's file has landed (see ``FILE_LANDS_AFTER``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

try:  # Airflow 3: the operators live in the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator
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

with DAG(
    dag_id="fraud_scoring_nightly",
    # One run per UTC calendar day: data interval [D 00:00, D+1 00:00), logical date D 00:00.
    schedule=CronDataIntervalTimetable("0 0 * * *", "UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
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
    wait_until_0215 >> ingest >> score
