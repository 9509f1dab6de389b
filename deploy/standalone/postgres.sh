#!/usr/bin/env bash
# The PostgreSQL of the local cluster (`make cluster-demo`): a private database cluster created
# once with initdb under the state folder and run with pg_ctl, listening on 127.0.0.1 only, with
# its unix socket in the state folder. It holds the role `fraud` (password auth, scram-sha-256)
# and its databases mlflow, mlflow_auth (MLflow's tracking and basic-auth stores) and metastore.
#
#   deploy/standalone/postgres.sh start    # idempotent; installs Debian's postgresql if missing
#   deploy/standalone/postgres.sh stop     # idempotent (pg_ctl stop -m fast)
#   deploy/standalone/postgres.sh status   # exit 0 when running, 3 when not
#
# Settings: FRAUD_CLUSTER_DIR (<repo>/.cluster), FRAUD_PG_PORT (55432), FRAUD_PG_PASSWORD (else
# generated once into <state>/secrets/pg-password), FRAUD_PG_BIN (newest /usr/lib/postgresql/*/bin).
# PostgreSQL refuses to run as root: as root, the server and its tools run as the `postgres` user.
set -euo pipefail
# shellcheck source=deploy/standalone/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=deploy/standalone/stop.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop.sh"

user=fraud
databases=(mlflow mlflow_auth metastore)

# Where the cluster lives: pg_dir holds data/ (the cluster) and the unix socket.
locate() {
  pg_dir=$state/postgres log=$state/logs/postgres.log
  if [ "$(id -u)" = 0 ] && id postgres > /dev/null 2>&1 && ! runuser -u postgres -- test -x "$state"; then
    # The postgres user cannot reach the state folder (a parent folder is private): keep the
    # cluster and its log where it can, one per state folder.
    pg_dir=/var/lib/postgresql/fraud-cluster-$(printf '%s' "$state" | cksum | cut -d' ' -f1)
    log=$pg_dir/postgres.log
  fi
  data=$pg_dir/data
}
locate

# Run a command as the server's owner: `postgres` when we are root, else ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd "$pg_dir" && runuser -u postgres -- "$@"); else "$@"; fi
}

newest_bin() { ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1 || true; }
pg_bin=${FRAUD_PG_BIN:-$(newest_bin)}

# The server binaries, installed from Debian's packages when missing.
install_pg() {
  [ -x "$pg_bin/initdb" ] && return 0
  [ "$(id -u)" = 0 ] || die "no PostgreSQL server binaries: install Debian's package 'postgresql'"
  echo "installing PostgreSQL from Debian's packages (log: $state/logs/apt-postgresql.log)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } \
    > "$state/logs/apt-postgresql.log" 2>&1 \
    || { tail -n 20 "$state/logs/apt-postgresql.log" >&2; die "apt-get install postgresql failed"; }
  pg_bin=$(newest_bin)
  [ -x "$pg_bin/initdb" ] || die "installed postgresql but found no initdb under /usr/lib/postgresql"
}

running() { [ -x "$pg_bin/pg_ctl" ] && [ -f "$data/PG_VERSION" ] && as_pg "$pg_bin/pg_ctl" status -D "$data" > /dev/null 2>&1; }

fail() {
  echo "postgres.sh: $1; the end of $log:" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
}

start() {
  install_pg
  locate # again: installing created the postgres user
  [ "$pg_dir" = "$state/postgres" ] \
    || echo "postgres.sh: the postgres user cannot reach $state: the cluster and its log are in $pg_dir"
  mkdir -p "$pg_dir"
  touch "$log"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pg_dir" "$log"; fi
  chmod 700 "$pg_dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "creating the PostgreSQL cluster in $data"
    as_pg "$pg_bin/initdb" -D "$data" -E UTF8 --locale=C --auth-local=peer \
      --auth-host=scram-sha-256 > "$state/logs/initdb.log" 2>&1 \
      || { tail -n 20 "$state/logs/initdb.log" >&2; die "initdb failed (log: $state/logs/initdb.log)"; }
  fi
  if running; then
    echo "postgres: already running"
  else
    as_pg "$pg_bin/pg_ctl" start -D "$data" -l "$log" -w -t 60 -o "-c listen_addresses=$host \
      -c port=$pg_port -c unix_socket_directories='$pg_dir'" > /dev/null \
      || fail "pg_ctl start failed"
  fi
  local i
  for i in $(seq 30); do
    "$pg_bin/pg_isready" -q -h "$host" -p "$pg_port" && break
    [ "$i" -lt 30 ] || fail "no answer on $host:$pg_port after 30 s"
    sleep 1
  done
  ensure_databases || fail "creating the role $user or its databases failed"
  echo "postgres: running on $host:$pg_port (data $data), role $user, databases ${databases[*]}"
}

# The role (its password set from the secret at every start) and its databases, idempotently.
# The SQL goes through stdin so the password never shows in a process list.
ensure_databases() {
  local password names
  password=$(secret pg-password "${FRAUD_PG_PASSWORD:-}")
  names=$(printf "'%s'," "${databases[@]}")
  as_pg "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -d postgres <<SQL
SELECT 'CREATE ROLE $user' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user')\gexec
ALTER ROLE $user WITH LOGIN PASSWORD '${password//\'/\'\'}';
SELECT format('CREATE DATABASE %I OWNER $user', d) FROM unnest(ARRAY[${names%,}]) AS d
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)\gexec
SQL
}

# pg_ctl -w returns once the postmaster removed its pid file, which it does before it exits:
# the postmaster's session (pg_ctl starts it with setsid; it and its backends) is then waited
# for too, and the port. A pg_ctl stop that fails or times out: SIGKILL to what is left.
stop() {
  local sid rc=0
  if running; then
    sid=$(head -n 1 "$data/postmaster.pid")
    as_pg "$pg_bin/pg_ctl" stop -D "$data" -m fast -w -t 60 > /dev/null \
      || { echo "postgres.sh: pg_ctl stop failed; killing what is left" >&2; rc=1; }
    [[ $sid =~ ^[0-9]+$ ]] && { stop_session "$sid" 0 KILL || rc=1; }
    wait_port_free "$host" "$pg_port" || rc=1
    [ $rc = 0 ] || fail "postgres did not stop cleanly"
    echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
}

status() {
  if running; then
    echo "postgres: running (pid $(head -n 1 "$data/postmaster.pid")) on $host:$pg_port, data $data"
  else
    echo "postgres: stopped"
    return 3
  fi
}

case ${1:-} in
  start | stop | status) "$1" ;;
  *) die "usage: $0 start|stop|status" ;;
esac
