#!/usr/bin/env bash
# The nightly chain for cron (deploy/crontab), the same steps as deploy/airflow_dag.py:
#
#   ingest yesterday's file (UTC) -> score --catch-up -> monitor --catch-up -> retrain, if an alert
#
#   deploy/nightly.sh [ENV]        # ENV: a config in conf/ or a .toml path (default: cluster)
#
# Each job's output is appended to $FRAUD_LOG_DIR/<job>.log (default /var/log/fraud-scoring);
# this script writes one line when a step starts and one with its exit code. A step's failure
# stops the chain and the script exits with that code (the first failure's). Two codes are not
# failures: monitor's 6 (a day's verdict is alert) is what starts retrain, and retrain's 4 (the
# gate refused the new version; the champion is unchanged, the decision recorded in
# retrain_triggers and promotions) ends the night like a success. The landing folder can be moved
# with $FRAUD_LANDING (default s3a://landing/transactions).
#
# A job that hangs (a cluster with no worker left: Spark's scheduler waits for one forever) is
# stopped after $FRAUD_STEP_TIMEOUT (default 3h; retrain $FRAUD_RETRAIN_TIMEOUT, 8h; timeout(1)'s
# units), SIGTERM to the job's whole process group, SIGKILL a minute later; the step's code is
# then 124 and the chain stops. A killed job leaves each table as it was (one Delta commit).
set -u

project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env=${1:-cluster}
logs=${FRAUD_LOG_DIR:-/var/log/fraud-scoring}
landing=${FRAUD_LANDING:-s3a://landing/transactions}
# The night's instant: FRAUD_SCORING_NOW (what the jobs read too, pipelines/core/clock.py) or the clock.
if [ -n "${FRAUD_SCORING_NOW:-}" ]; then
  now_epoch=$(date -u -d "$FRAUD_SCORING_NOW" +%s) || { echo "nightly: FRAUD_SCORING_NOW=$FRAUD_SCORING_NOW is no instant" >&2; exit 2; }
  if [ -n "${FRAUD_SCORING_NOW_SET_AT:-}" ]; then  # the clock runs on from then, as the jobs' does
    now_epoch=$((now_epoch + $(date -u +%s) - ${FRAUD_SCORING_NOW_SET_AT%.*}))
  fi
else
  now_epoch=$(date -u +%s)
fi
yesterday=$(date -u -d "@$((now_epoch - 86400))" +%F)
# Exit codes of the jobs that mean a decision, not a failure (docs/jobs.md).
monitor_alert=6
gate_refused=4
step_timeout=${FRAUD_STEP_TIMEOUT:-3h}
timed_out=124

say() { echo "$(date -u +%FT%TZ) nightly: $*"; }

# step JOB ARGS...: run one job through spark-submit.sh, within its time limit; its status is
# the job's exit code (124: stopped at the limit).
step() {
  local job=$1 limit=$step_timeout
  shift
  [ "$job" = retrain ] && limit=${FRAUD_RETRAIN_TIMEOUT:-8h}
  say "$job started: $job $* --env $env"
  timeout --kill-after=60 "$limit" "$project/spark-submit.sh" "$job" "$@" --env "$env" >> "$logs/$job.log" 2>&1
  local status=$?
  if [ "$status" -eq "$timed_out" ]; then
    say "$job stopped: still running after $limit (FRAUD_STEP_TIMEOUT / FRAUD_RETRAIN_TIMEOUT)"
  fi
  say "$job ended: exit $status"
  return "$status"
}

mkdir -p "$logs" || exit
step ingest --input "$landing/$yesterday.csv.gz" || exit
step score --catch-up || exit

step monitor --catch-up
status=$?
if [ "$status" -eq 0 ]; then
  say "no day's verdict is alert: done"
  exit 0
elif [ "$status" -ne "$monitor_alert" ]; then
  exit "$status"
fi
say "a day's verdict is alert: retrain (skipped if an earlier retraining is in its cool-down)"

step retrain
status=$?
if [ "$status" -eq "$gate_refused" ]; then
  say "the gate refused the new version; the champion is unchanged (recorded): done"
  exit 0
fi
[ "$status" -eq 0 ] && say "done"
exit "$status"
