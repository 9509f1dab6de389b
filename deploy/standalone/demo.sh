#!/usr/bin/env bash
# make cluster-demo: make demo's jobs on real servers (conf/standalone.toml), then the same
# table through the catalog and without Spark, and which worker ran which tasks.
#
# Starts the local cluster (deploy/standalone/cluster.sh up), runs ingest -> train -> promote
# -> score -> monitor -> sql against it, and stops everything it started on the way out, also
# when a step fails (the exit status is then that step's). The cluster's data (tables, MLflow
# store, metastore) stays in .cluster/ for a next run; the servers do not.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
python=${FRAUD_PYTHON:-$root/.venv/bin/python}
sample=data/creditcard_sample.csv.gz
start_date=2013-09-01
end_date=2013-09-02

started=$(date +%s)
trap '"$here/cluster.sh" down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
step() { echo; echo "== $* ($(($(date +%s) - started)) s)"; }

step "starting the cluster: PostgreSQL, metastore, Spark master + 2 workers + history, MLflow server"
"$here/cluster.sh" up
eval "$("$here/cluster.sh" env)"
jobs_since=$(date +%s)

job() { step "./spark-submit.sh $* --env standalone"; ./spark-submit.sh "$@" --env standalone; }
job ingest --input "$sample"
job train
job promote
job score --start-date "$start_date" --end-date "$end_date"
job monitor --start-date "$start_date" --end-date "$end_date" || [ $? -eq 6 ]  # 6: an alert, shown
job sql --file queries/daily_summary.sql
job sql --file queries/monitoring.sql

step "an analyst's spark-sql: the table by its name in the metastore, no path"
mapfile -t spark_args < <("$python" -m pipelines.session --env standalone --job spark-sql)
"$(dirname "$python")/spark-sql" "${spark_args[@]}" --jars "$(ls "$root"/.jars/*.jar | paste -sd, -)" \
  -e "SELECT txn_date, model_version, count(*) AS scored, sum(CAST(is_fraud AS INT)) AS flagged
      FROM fraud.scored_transactions GROUP BY txn_date, model_version ORDER BY txn_date" 2>/dev/null

step "the same tables without Spark: delta-rs reads them, DuckDB runs queries/daily_summary.sql"
"$python" queries/without_spark.py --env standalone --file queries/daily_summary.sql

step "tasks per worker (Spark history server, http://127.0.0.1:${FRAUD_SPARK_HISTORY_PORT:-18080})"
"$python" "$here/tasks_per_worker.py" --since "$jobs_since" --wait-for 8

step "done in $(($(date +%s) - started)) s; stopping the cluster"
