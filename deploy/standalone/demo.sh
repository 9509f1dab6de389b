#!/usr/bin/env bash
# make cluster-demo: make demo's jobs on real servers (conf/standalone.toml), then the same
# table through the catalog and without Spark, and which worker ran which tasks.
#
# Starts the local cluster (deploy/standalone/cluster.sh up), runs ingest -> train -> promote
# -> score -> monitor -> sql against it, and stops everything it started on the way out, also
# when a step fails (the exit status is then that step's), or on Ctrl-C. The cluster's data
# (tables, MLflow store, metastore) stays in .cluster/ for a next run; the servers do not
# (servers already running from `make cluster-up` are used, and stopped too).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
python=${FRAUD_PYTHON:-$root/.venv/bin/python}
sample=data/creditcard_sample.csv.gz
start_date=2013-09-01
end_date=2013-09-02

started=$(date +%s)
# On the way out, whatever happened: stop the servers (a second Ctrl-C does not interrupt that).
# cluster.sh down returns once every process they started is gone and their ports are free; if
# it could not make sure of that, a run that had succeeded exits 1 (a next run would fail).
cleanup() {
  local status=$?
  trap '' INT TERM
  echo "== stopping the cluster" >&2
  if ! "$here/cluster.sh" down > "${FRAUD_CLUSTER_DIR:-$root/.cluster}/logs/down.log" 2>&1; then
    cat "${FRAUD_CLUSTER_DIR:-$root/.cluster}/logs/down.log" >&2
    echo "demo.sh: cluster.sh down failed: something it started may still run" >&2
    [ "$status" != 0 ] || exit 1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { echo; echo "== $* ($(($(date +%s) - started)) s)"; }

step "starting the cluster: PostgreSQL, metastore, Spark master + 2 workers + history, MLflow server"
"$here/cluster.sh" up
exports=$("$here/cluster.sh" env)
eval "$exports"
jobs_since=$(date +%s)

job() { step "./spark-submit.sh $* --env standalone"; ./spark-submit.sh "$@" --env standalone; }
job ingest --input "$sample"
job train
job promote
job score --start-date "$start_date" --end-date "$end_date"
job monitor --start-date "$start_date" --end-date "$end_date" || { status=$?; [ $status -eq 6 ] || exit $status; }  # 6: an alert, shown
job sql --file queries/daily_summary.sql
job sql --file queries/monitoring.sql

step "an analyst's spark-sql: the table by its name in the metastore, no path"
submit_args=$("$python" -m pipelines.core.session --env standalone --job spark-sql)
mapfile -t spark_args <<< "$submit_args"
spark_home=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
SPARK_HOME=$spark_home "$spark_home/bin/spark-sql" "${spark_args[@]}" \
  --jars "$(ls "$root"/.jars/*.jar | paste -sd, -)" \
  -e "SELECT txn_date, model_version, count(*) AS scored, sum(CAST(is_fraud AS INT)) AS flagged
      FROM fraud.scored_transactions GROUP BY txn_date, model_version ORDER BY txn_date" \
  2> "$FRAUD_CLUSTER_DIR/logs/spark-sql.log" \
  || { tail -n 20 "$FRAUD_CLUSTER_DIR/logs/spark-sql.log" >&2; exit 1; }

step "the same tables without Spark: delta-rs reads them, DuckDB runs queries/daily_summary.sql"
"$python" queries/without_spark.py --env standalone --file queries/daily_summary.sql

step "tasks per worker (Spark history server, http://127.0.0.1:${FRAUD_SPARK_HISTORY_PORT:-18080})"
"$python" "$here/tasks_per_worker.py" --since "$jobs_since" --wait-for 8 \
  --history "http://127.0.0.1:${FRAUD_SPARK_HISTORY_PORT:-18080}"

step "done in $(($(date +%s) - started)) s; stopping the cluster"
