#!/usr/bin/env bash
# The local Spark standalone cluster of `make cluster-demo`: one master, two workers and the
# history server, each its own detached JVM from the Spark that pyspark ships, all on 127.0.0.1.
#
#   deploy/standalone/spark.sh start          # idempotent; waits for 2 ALIVE workers + history
#   deploy/standalone/spark.sh stop           # idempotent; leaves no process behind
#   deploy/standalone/spark.sh status         # exit 3 when any of them is not running
#   deploy/standalone/spark.sh kill-worker N  # kill -9 worker N and its executors (a lost host)
#   deploy/standalone/spark.sh stop-worker N  # stop worker N cleanly (`start` brings it back)
#
# State (pid files, logs, work dirs, the jobs' event logs) is under ${FRAUD_CLUSTER_DIR:-.cluster}/spark.
# Jobs write their event logs to  <state>/spark/events  (spark.eventLog.dir), which the history
# server reads. Settings: FRAUD_SPARK_MASTER_PORT (7077), FRAUD_SPARK_MASTER_UI_PORT (8080),
# FRAUD_SPARK_WORKER_CORES (1), FRAUD_SPARK_WORKER_MEMORY (3g), FRAUD_SPARK_HISTORY_PORT (18080),
# FRAUD_SPARK_START_TIMEOUT (90 s).
set -euo pipefail
# shellcheck source=deploy/standalone/stop.sh
. "$(dirname "${BASH_SOURCE[0]}")/stop.sh"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=$(mkdir -p "${FRAUD_CLUSTER_DIR:-$root/.cluster}" && cd "${FRAUD_CLUSTER_DIR:-$root/.cluster}" && pwd)/spark
python=${FRAUD_PYTHON:-$root/.venv/bin/python}
host=127.0.0.1
master_port=${FRAUD_SPARK_MASTER_PORT:-7077}
master_ui=${FRAUD_SPARK_MASTER_UI_PORT:-8080}
history_port=${FRAUD_SPARK_HISTORY_PORT:-18080}
worker_cores=${FRAUD_SPARK_WORKER_CORES:-1}
worker_memory=${FRAUD_SPARK_WORKER_MEMORY:-3g}
timeout=${FRAUD_SPARK_START_TIMEOUT:-90}
workers=(1 2)
master_url=spark://$host:$master_port

die() { echo "spark.sh: $*" >&2; exit 1; }
class_of() { case $1 in
  master) echo org.apache.spark.deploy.master.Master ;;
  worker-*) echo org.apache.spark.deploy.worker.Worker ;;
  history) echo org.apache.spark.deploy.history.HistoryServer ;;
esac; }

# The pid of a daemon if it is running (the pid file's process still runs its class), else nothing.
pid_of() {
  local pid
  pid=$(cat "$state/run/$1.pid" 2>/dev/null) || return 0
  if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q "$(class_of "$1")"; then echo "$pid"; fi
}

spark_home() {
  [ -x "$python" ] || die "no Python environment at $python: run 'make setup' first"
  "$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

# Daemon settings. spark.port.maxRetries=0: a port in use is an error, not the next port up
# (a master on 7078 would leave the workers and jobs talking to whatever holds 7077).
write_conf() {
  mkdir -p "$state"/{run,logs,events,work,local}
  cat > "$state/daemons.conf" <<EOF
spark.port.maxRetries              0
spark.master.rest.enabled          false
spark.history.fs.logDirectory      file://$state/events
spark.history.ui.port              $history_port
spark.history.fs.update.interval   2s
spark.history.fs.cleaner.enabled   true
spark.history.fs.cleaner.maxAge    7d
# Finished applications' work dirs (each executor's holds the unpacked Python environment,
# 600 MB): checked every 30 s, removed once nothing in them changed for 2 minutes.
spark.worker.cleanup.enabled       true
spark.worker.cleanup.interval      30
spark.worker.cleanup.appDataTtl    120
EOF
}

# Start one daemon in a session of its own (setsid), so a Ctrl-C in the caller's terminal
# does not reach it and its executors (same process group) can be killed with it.
launch() {
  local name=$1; shift
  [ -n "$(pid_of "$name")" ] && return 0
  echo "starting $name"
  rm -f "$state/run/$name.pid"
  # SPARK_LOCAL_IP: every socket of the daemon, its web UI and the executors a worker starts
  # (they inherit its environment) binds to loopback only. One process from here on (exec
  # down to java), its output in the log, not ours: a caller reading our output through a
  # pipe or $(...) is not kept waiting by the daemons.
  # Nothing of the caller's session reaches the daemons, their executors and Python workers:
  # no PYTHONPATH into a checkout (the code must come from the --py-files zip), no credentials.
  (cd "$state" && exec env -u PYTHONPATH -u MLFLOW_TRACKING_USERNAME -u MLFLOW_TRACKING_PASSWORD \
    -u MLFLOW_TRACKING_TOKEN -u FRAUD_PG_PASSWORD -u FRAUD_MLFLOW_PASSWORD -u FRAUD_MLFLOW_ADMIN_PASSWORD \
    SPARK_LOCAL_IP=$host SPARK_LOCAL_HOSTNAME=$host SPARK_HOME=$SPARK_HOME \
    setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$state/run/$name.pid" \
    "$SPARK_HOME/bin/spark-class" "$(class_of "$name")" "$@" --properties-file "$state/daemons.conf") \
    > "$state/logs/$name.log" 2>&1 < /dev/null &
  local i
  for i in $(seq 50); do [ -s "$state/run/$name.pid" ] && return 0; sleep 0.1; done
  die "$name did not start"
}

# A worker's scratch (shuffle files, fetched files), its executors' Java temp folder (where
# each keeps its copy of the environment's archive) and their work dirs are its own, and
# emptied when it starts: no executor of it is alive then, and one killed with its worker
# leaves its files behind. The executors inherit the worker's environment, JAVA_TOOL_OPTIONS too.
launch_worker() {
  local n=$1
  [ -n "$(pid_of "worker-$n")" ] && return 0
  rm -rf "$state/local/worker-$n" "$state/tmp/worker-$n" "$state/work/worker-$n"
  mkdir -p "$state/work/worker-$n" "$state/local/worker-$n" "$state/tmp/worker-$n"
  SPARK_LOCAL_DIRS=$state/local/worker-$n JAVA_TOOL_OPTIONS="-Djava.io.tmpdir=$state/tmp/worker-$n" \
    launch "worker-$n" "$master_url" --host "$host" --cores "$worker_cores" --memory "$worker_memory" \
    --webui-port $((master_ui + n)) --work-dir "$state/work/worker-$n"
}

alive_workers() {
  curl -fsS --max-time 2 "http://$host:$master_ui/json/" 2>/dev/null \
    | "$python" -c 'import json, sys; print(sum(w["state"] == "ALIVE" for w in json.load(sys.stdin)["workers"]))' \
    2>/dev/null || echo 0
}

start() {
  SPARK_HOME=$(spark_home)
  write_conf
  launch master --host "$host" --port "$master_port" --webui-port "$master_ui"
  for n in "${workers[@]}"; do launch_worker "$n"; done
  launch history
  local deadline=$((SECONDS + timeout)) up
  while :; do
    up=$(alive_workers)
    if [ "$up" -ge ${#workers[@]} ] && curl -fsS --max-time 2 -o /dev/null "http://$host:$history_port/api/v1/applications"; then
      echo "spark: $master_url (UI http://$host:$master_ui), $up workers ALIVE, history http://$host:$history_port"
      return 0
    fi
    for name in master "${workers[@]/#/worker-}" history; do
      [ -n "$(pid_of "$name")" ] || fail "$name exited" "$name"
    done
    [ $SECONDS -lt $deadline ] || fail "not ready after ${timeout}s ($up of ${#workers[@]} workers ALIVE)" master
    sleep 1
  done
}

fail() {
  echo "spark.sh: $1; the end of $state/logs/$2.log (stack frames left out):" >&2
  grep -v $'^\tat \|^\t\.\.\. ' "$state/logs/$2.log" | tail -n 15 >&2 || true
  echo "spark.sh: what did start is still running: '$0 stop' stops it" >&2
  exit 1
}

# The daemon's port that a start needs free (the workers' own RPC ports are random).
port_of() { case $1 in
  master) echo "$master_port $master_ui" ;;
  worker-*) echo $((master_ui + ${1#worker-})) ;;
  history) echo "$history_port" ;;
esac; }

# SIGTERM to the daemon's session (it, its executors, their Python daemons and workers, which
# pyspark moves to process groups of their own), SIGKILL after 20 s; returns once all of them
# are gone and its ports are free. A daemon that died and left executors behind: those are
# stopped too.
stop_one() {
  local name=$1 signal=${2:-TERM} sid port rc=0
  sid=$(session_of "$state/run/$name.pid" "$(class_of "$name")")
  if [ -n "$sid" ] && [ -n "$(session_pids "$sid")" ]; then
    echo "stopping $name (session $sid, SIG$signal)"
    stop_session "$sid" 20 "$signal" || rc=1
    for port in $(port_of "$name"); do wait_port_free "$host" "$port" || rc=1; done
  fi
  rm -f "$state/run/$name.pid"
  return $rc
}

stop() {
  local name rc=0
  for name in history "${workers[@]/#/worker-}" master; do stop_one "$name" || rc=1; done
  return $rc
}

status() {
  local name pid rc=0
  for name in master "${workers[@]/#/worker-}" history; do
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=3; fi
  done
  echo "master $master_url: $(alive_workers) workers ALIVE"
  return $rc
}

worker_arg() {
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le ${#workers[@]} ] \
    || die "which worker? 1..${#workers[@]}"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill-worker) worker_arg "${2:-}"; stop_one "worker-$2" KILL ;;
  stop-worker) worker_arg "${2:-}"; stop_one "worker-$2" ;;
  *) die "usage: $0 start|stop|status|kill-worker N|stop-worker N" ;;
esac
