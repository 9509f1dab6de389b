#!/usr/bin/env bash
# The MLflow tracking server of the local cluster (`make cluster-demo`): `mlflow server` on
# 127.0.0.1, detached, with its backend store in the PostgreSQL database `mlflow` (start
# deploy/standalone/postgres.sh first), artifacts served through it (--serve-artifacts, stored
# under <state>/mlflow/artifacts), and MLflow's basic auth (--app-name basic-auth) whose users
# live in the database `mlflow_auth`. The jobs log in as the non-admin user `fraud-jobs`.
#
#   deploy/standalone/mlflow.sh start    # idempotent; waits for /health, then creates fraud-jobs
#   deploy/standalone/mlflow.sh stop     # idempotent; kills the server's whole process group
#   deploy/standalone/mlflow.sh status   # exit 0 when running, 3 when not
#   eval "$(deploy/standalone/mlflow.sh env)"   # MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD for jobs
#
# Settings: FRAUD_CLUSTER_DIR, FRAUD_PG_PORT, FRAUD_PG_PASSWORD (see postgres.sh),
# FRAUD_MLFLOW_PORT (5500), FRAUD_MLFLOW_WORKERS (2), FRAUD_MLFLOW_START_TIMEOUT (90 s),
# FRAUD_PYTHON (<repo>/.venv/bin/python), FRAUD_MLFLOW_ADMIN_PASSWORD and FRAUD_MLFLOW_PASSWORD
# (the admin's and fraud-jobs' passwords, at least 12 characters; else generated once into
# <state>/secrets/). MLflow sets the admin password only when it first creates the admin user.
set -euo pipefail
# shellcheck source=deploy/standalone/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=deploy/standalone/stop.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop.sh"

uri=http://$host:$mlflow_port
admin="admin"
jobs_user=fraud-jobs
pidfile=$state/run/mlflow.pid
log=$state/logs/mlflow.log
timeout=${FRAUD_MLFLOW_START_TIMEOUT:-90}
admin_password() { secret mlflow-admin-password "${FRAUD_MLFLOW_ADMIN_PASSWORD:-}"; }
jobs_password() { secret mlflow-jobs-password "${FRAUD_MLFLOW_PASSWORD:-}"; }
launched=

# MLflow refuses passwords shorter than 12 characters: say so before starting anything.
check_passwords() {
  local a p
  a=$(admin_password) p=$(jobs_password)
  [ ${#a} -ge 12 ] || die "the MLflow admin password needs at least 12 characters"
  [ ${#p} -ge 12 ] || die "the MLflow password of $jobs_user needs at least 12 characters"
}

# The server's pid (= its process group) when it runs, else nothing.
pid_of() {
  local pid
  pid=$(cat "$pidfile" 2> /dev/null) || return 0
  if tr '\0' ' ' 2> /dev/null < "/proc/$pid/cmdline" | grep -q 'mlflow server'; then echo "$pid"; fi
}

healthy() { curl -fsS --max-time 2 -o /dev/null "$uri/health" 2> /dev/null; }

fail() {
  echo "mlflow.sh: $1; the end of $log:" >&2
  tail -n 30 "$log" >&2 || true
  if [ -n "$launched" ]; then stop > /dev/null; fi # a server that never came up, started by us
  exit 1
}

start() {
  [ -x "$(dirname "$python")/mlflow" ] || die "no mlflow in $(dirname "$python"): run 'make setup' first"
  (exec 3<> "/dev/tcp/$host/$pg_port") 2> /dev/null \
    || die "PostgreSQL does not answer on $host:$pg_port: run deploy/standalone/postgres.sh start"
  check_passwords
  if [ -z "$(pid_of)" ]; then
    # Another process on the port would answer our health checks in place of our server.
    ! (exec 3<> "/dev/tcp/$host/$mlflow_port") 2> /dev/null \
      || die "$host:$mlflow_port is already in use by another process: stop it or set FRAUD_MLFLOW_PORT"
    launch
  else
    echo "mlflow: already running"
  fi
  local t0=$SECONDS
  while :; do
    [ -n "$(pid_of)" ] || fail "the server exited"
    healthy && break
    [ $((SECONDS - t0)) -lt "$timeout" ] || fail "no answer from $uri/health after ${timeout}s"
    sleep 1
  done
  ensure_jobs_user || fail "could not set up the user $jobs_user"
  echo "mlflow: $uri (pid $(pid_of)), artifacts in $state/mlflow/artifacts, jobs user $jobs_user"
}

launch() {
  local db=postgresql+psycopg2://fraud@$host:$pg_port ini=$state/mlflow/basic_auth.ini
  mkdir -p "$state/mlflow/artifacts"
  # No secret in this file: the admin password and PostgreSQL's come from the environment.
  cat > "$ini" <<EOF
[mlflow]
default_permission = READ
database_uri = $db/mlflow_auth
admin_username = $admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  echo "starting mlflow server on $uri (log: $log)"
  # PGPASSWORD: libpq's password for both databases, kept out of the URIs (and so out of `ps`).
  # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no huey job runner (GenAI jobs; unused here).
  # shellcheck disable=SC2016 # $$ is the inner bash's pid, which the exec makes the server's
  (cd "$state/mlflow" && PGPASSWORD=$(secret pg-password "${FRAUD_PG_PASSWORD:-}") \
    MLFLOW_AUTH_CONFIG_PATH=$ini MLFLOW_AUTH_ADMIN_PASSWORD=$(admin_password) \
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(secret mlflow-flask-secret-key) \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" \
    "$(dirname "$python")/mlflow" server --host "$host" --port "$mlflow_port" \
    --workers "${FRAUD_MLFLOW_WORKERS:-2}" --app-name basic-auth \
    --backend-store-uri "$db/mlflow" --serve-artifacts \
    --artifacts-destination "$state/mlflow/artifacts" &) > "$log" 2>&1 < /dev/null
  # (The redirection is the whole subshell's: no process left behind holds this script's
  # stdout, so `$(mlflow.sh start)` or a pipe into it returns.)
  launched=1
  for _ in $(seq 50); do [ -n "$(pid_of)" ] && return 0; sleep 0.1; done
  fail "mlflow server did not start"
}

# Create fraud-jobs through the auth REST API as the admin, or reset its password to the
# configured one; credentials go through the environment, never the command line.
ensure_jobs_user() {
  MLFLOW_URI=$uri ADMIN=$admin ADMIN_PW=$(admin_password) JOBS=$jobs_user JOBS_PW=$(jobs_password) \
    "$python" - <<'EOF'
import os, sys, requests
uri, jobs, jobs_pw = os.environ["MLFLOW_URI"] + "/api/2.0/mlflow/users", os.environ["JOBS"], os.environ["JOBS_PW"]
if requests.get(f"{uri}/current", auth=(jobs, jobs_pw), timeout=30).ok:
    sys.exit(0)
admin = requests.Session()
admin.auth = (os.environ["ADMIN"], os.environ["ADMIN_PW"])
r = admin.get(f"{uri}/get", params={"username": jobs}, timeout=30)
if r.status_code == 401:
    sys.exit("mlflow.sh: the admin password was refused: MLflow keeps the one it was first started "
             "with (in the mlflow_auth database); restore it or reset that database")
if r.status_code == 404:
    r = admin.post(f"{uri}/create", json={"username": jobs, "password": jobs_pw}, timeout=30)
    print(f"created the MLflow user {jobs}")
else:
    r.raise_for_status()
    r = admin.patch(f"{uri}/update-password", json={"username": jobs, "password": jobs_pw}, timeout=30)
    print(f"reset the password of the MLflow user {jobs}")
if not r.ok:
    sys.exit(f"mlflow.sh: {r.request.method} {r.url}: {r.status_code} {r.text[:300]}")
EOF
}

# SIGTERM to the server's session (mlflow, uvicorn or gunicorn and their workers), SIGKILL
# after 20 s; returns once all of them are gone and the port is free. Workers left by a server
# that died are stopped too.
stop() {
  local sid rc=0
  sid=$(session_of "$pidfile" 'mlflow server')
  if [ -n "$sid" ] && [ -n "$(session_pids "$sid")" ]; then
    stop_session "$sid" 20 || rc=1
    wait_port_free "$host" "$mlflow_port" || rc=1
    echo "mlflow: stopped"
  else
    echo "mlflow: not running"
  fi
  rm -f "$pidfile"
  return $rc
}

status() {
  local pid
  pid=$(pid_of)
  if [ -n "$pid" ] && healthy; then
    echo "mlflow: running (pid $pid) on $uri"
  elif [ -n "$pid" ]; then
    echo "mlflow: starting or not answering (pid $pid) on $uri"
    return 3
  else
    echo "mlflow: stopped"
    return 3
  fi
}

# The jobs' environment, for eval.
env_lines() {
  printf 'export MLFLOW_TRACKING_URI=%q MLFLOW_TRACKING_USERNAME=%q MLFLOW_TRACKING_PASSWORD=%q\n' \
    "$uri" "$jobs_user" "$(jobs_password)"
}

case ${1:-} in
  start | stop | status) "$1" ;;
  env) check_passwords && env_lines ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
