"""Airflow DAG: every night, ingest the day's transactions file and score that day.

Copy into the Airflow dags folder on a worker that has this project checked out (or use the
container image with a KubernetesPodOperator). ``{{ ds }}`` is the day the run covers, so a
re-run or a backfill of one day scores exactly that day again: scoring replaces the day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

PROJECT = "/opt/fraud-scoring"
ENV = "cluster"

with DAG(
    dag_id="fraud_scoring_nightly",
    schedule="15 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["fraud", "spark"],
) as dag:
    ingest = BashOperator(
        task_id="ingest",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh ingest --env {ENV} "
        "--input s3a://landing/transactions/{{ ds }}.csv.gz",
    )
    score = BashOperator(
        task_id="score",
        bash_command=f"cd {PROJECT} && ./spark-submit.sh score --env {ENV} --date {{{{ ds }}}}",
    )
    ingest >> score
