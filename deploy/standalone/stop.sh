# shellcheck shell=bash
# Stopping a server of the local cluster and waiting until it is really gone (sourced, not run),
# for spark.sh, mlflow.sh and postgres.sh. Each server runs in a session of its own (setsid;
# pg_ctl does it for PostgreSQL), whose id is the pid its pid file holds. Its process group is
# not enough: pyspark's worker daemon moves itself to a group of its own (os.setpgid), in the
# same session. A stop returns only once no process of the session is left, so that a start
# right after finds the ports free.
#
#   stop_session SID [GRACE]    # SIGTERM, up to GRACE s (20), SIGKILL, up to 10 s more
#   wait_port_free HOST PORT    # up to 10 s until nothing listens there
#
# Settings: FRAUD_STOP_KILL_WAIT (10 s: how long SIGKILLed processes may take to be gone),
# FRAUD_STOP_PORT_WAIT (10 s).

# The processes of session SID that still run (a zombie has exited: it holds no port, no file).
session_pids() {
  local stat fields state session
  for stat in /proc/[0-9]*/stat; do
    # After the command name's closing parenthesis: state, ppid, pgrp, session, ... (read, not
    # cat: no process started per process listed, at every poll)
    read -r fields 2> /dev/null < "$stat" || continue
    fields=${fields##*) }
    read -r state _ _ session _ <<< "$fields"
    if [ "$session" = "$1" ] && [ "$state" != Z ] && [ "$state" != X ]; then
      stat=${stat#/proc/}
      echo "${stat%/stat}"
    fi
  done
}

# wait_session_gone SID SECONDS: polls every 0.1 s; fails when some process of it is still there.
wait_session_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -z "$(session_pids "$1")" ] && return 0
    sleep 0.1
  done
  [ -z "$(session_pids "$1")" ]
}

# stop_session SID [GRACE] [SIGNAL]: SIGNAL (TERM) to every process of session SID, then SIGKILL
# to what is left after GRACE seconds (20), then wait for it to be gone. Returns once the
# session is empty (0), or fails naming what is left after the SIGKILL's bound too.
stop_session() {
  local sid=$1 grace=${2:-20} signal=${3:-TERM} pids
  pids=$(session_pids "$sid")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086 # one pid a word
  kill "-$signal" $pids 2> /dev/null || true
  wait_session_gone "$sid" "$grace" && return 0
  pids=$(session_pids "$sid")
  echo "$(basename "$0"): SIGKILL to what is left of session $sid after ${grace}s: ${pids//$'\n'/ }" >&2
  # shellcheck disable=SC2086
  kill -KILL $pids 2> /dev/null || true
  wait_session_gone "$sid" "${FRAUD_STOP_KILL_WAIT:-10}" && return 0
  echo "$(basename "$0"): still running after SIGKILL: $(session_pids "$sid" | tr '\n' ' ')" >&2
  return 1
}

# session_of PIDFILE PATTERN: the session to stop for a pid file: its pid when that process runs
# PATTERN (its command line), or when no process has that pid any more (processes it left may
# still run: the kernel keeps the number while a session uses it). Nothing when the pid is now
# another program's, or there is no pid file.
session_of() {
  local pid
  pid=$(cat "$1" 2> /dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if [ ! -e "/proc/$pid" ] || tr '\0' ' ' 2> /dev/null < "/proc/$pid/cmdline" | grep -q -- "$2"; then
    echo "$pid"
  fi
}

# wait_port_free HOST PORT: until nothing accepts connections on HOST:PORT (up to
# FRAUD_STOP_PORT_WAIT s, 10); fails saying who may hold it.
wait_port_free() {
  local i
  for ((i = 0; i < ${FRAUD_STOP_PORT_WAIT:-10} * 10; i++)); do
    (exec 3<> "/dev/tcp/$1/$2") 2> /dev/null || return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $1:$2 is still in use (by another process?)" >&2
  return 1
}
