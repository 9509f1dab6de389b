#!/usr/bin/env bash
# The online feature store on this machine (pipelines/online): Debian's redis-server, installed
# when missing, on 127.0.0.1 only, with a password generated once into <state>/secrets/redis-password
# (mode 600, never on a command line: the server reads it from its config file), nothing evicted
# (maxmemory-policy noeviction: a full store refuses writes, and the service answers 503), and
# every write on disk before it is acknowledged (appendonly, appendfsync always), and a card's
# history kept compact (a listpack up to 512 entries of up to 512 bytes, not a skiplist).
#
#   deploy/standalone/redis.sh start    # idempotent
#   deploy/standalone/redis.sh stop     # idempotent
#   deploy/standalone/redis.sh status   # exit 0 when running, 3 when not
#   deploy/standalone/redis.sh env      # the FRAUD_ONLINE_URL / FRAUD_ONLINE_PASSWORD_FILE lines to eval
#
# Settings: FRAUD_CLUSTER_DIR (<repo>/.cluster), FRAUD_REDIS_PORT (56379), FRAUD_REDIS_MAXMEMORY (1gb).
set -euo pipefail
# shellcheck source=deploy/standalone/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

redis_port=${FRAUD_REDIS_PORT:-56379}
redis_dir=$state/redis
conf=$redis_dir/redis.conf
pidfile=$state/run/redis.pid
log=$state/logs/redis.log
password_file=$state/secrets/redis-password

install_redis() {
  command -v redis-server > /dev/null && return 0
  [ "$(id -u)" = 0 ] || die "no redis-server: install Debian's package 'redis-server'"
  echo "installing redis-server from Debian's packages (log: $state/logs/apt-redis.log)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server; } \
    > "$state/logs/apt-redis.log" 2>&1 \
    || { tail -n 20 "$state/logs/apt-redis.log" >&2; die "apt-get install redis-server failed"; }
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2> /dev/null; }

start() {
  install_redis
  mkdir -p "$redis_dir" "$state/secrets"
  chmod 700 "$redis_dir" "$state/secrets"
  local password
  password=$(secret redis-password "${FRAUD_REDIS_PASSWORD:-}")
  if running; then
    echo "redis: already running on $host:$redis_port"
    return 0
  fi
  umask 077
  cat > "$conf" <<CONF
bind $host
port $redis_port
protected-mode yes
requirepass $password
dir $redis_dir
pidfile $pidfile
logfile $log
daemonize yes
appendonly yes
appendfsync always
save ""
maxmemory ${FRAUD_REDIS_MAXMEMORY:-1gb}
maxmemory-policy noeviction
zset-max-listpack-entries 512
zset-max-listpack-value 512
CONF
  redis-server "$conf" || die "redis-server failed to start (log: $log)"
  local i
  for i in $(seq 50); do
    REDISCLI_AUTH=$password redis-cli -h "$host" -p "$redis_port" ping 2> /dev/null | grep -q PONG && break
    [ "$i" -lt 50 ] || { tail -n 20 "$log" >&2; die "redis: no answer on $host:$redis_port after 10 s"; }
    sleep 0.2
  done
  echo "redis: running on $host:$redis_port (data $redis_dir)"
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    REDISCLI_AUTH=$(cat "$password_file") redis-cli -h "$host" -p "$redis_port" shutdown > /dev/null 2>&1 \
      || kill "$pid" 2> /dev/null || true
    local i
    for i in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
    echo "redis: stopped"
  else
    echo "redis: not running"
  fi
}

status() {
  if running; then echo "redis: running (pid $(cat "$pidfile")) on $host:$redis_port"; else echo "redis: stopped"; return 3; fi
}

env_lines() {
  echo "export FRAUD_ONLINE_URL=redis://$host:$redis_port/0"
  echo "export FRAUD_ONLINE_PASSWORD_FILE=$password_file"
}

case ${1:-} in
  start | stop | status) "$1" ;;
  env) env_lines ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
