#!/usr/bin/env bash
# The whole local cluster of conf/standalone.toml, on 127.0.0.1 only:
#
#   deploy/standalone/cluster.sh up       # PostgreSQL, the online store (Redis), the metastore's
#                                         # settings, the executors'
#                                         # packed Python, Spark (master, 2 workers, history
#                                         # server), the MLflow server; each waits until ready
#   eval "$(deploy/standalone/cluster.sh env)"   # what the jobs need (no secret is printed
#                                                # anywhere but into that eval)
#   ./spark-submit.sh score --env standalone --date 2013-09-02
#   deploy/standalone/cluster.sh down     # stops everything it started (data stays in .cluster/)
#   deploy/standalone/cluster.sh status
#
# State, logs and generated secrets live in $FRAUD_CLUSTER_DIR (default .cluster/, git-ignored).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/standalone/common.sh
. "$here/common.sh"

# PostgreSQL's JDBC driver for the Hive metastore client in the driver (Maven Central).
PG_JDBC=org.postgresql:postgresql:42.7.14

# The metastore's connection, password included, in a file only this user reads; the driver
# finds it on its class path (spark.driver.extraClassPath in conf/standalone.toml).
metastore_conf() {
  mkdir -p "$state/conf" "$state/jars" "$state/warehouse"
  if [ ! -s "$state/jars/postgresql.jar" ]; then
    mvn --batch-mode --quiet dependency:copy -Dartifact="$PG_JDBC" -DoutputDirectory="$state/jars" \
      || die "could not fetch $PG_JDBC from Maven Central"
    mv -f "$state/jars/postgresql-${PG_JDBC##*:}.jar" "$state/jars/postgresql.jar"
  fi
  local password
  password=$(secret pg-password "${FRAUD_PG_PASSWORD:-}")
  password=${password//&/&amp;}; password=${password//</&lt;}; password=${password//>/&gt;}
  # Hive creates its schema on first use. Its foreign keys are left out: DataNucleus adds them
  # lazily, and on PostgreSQL that ALTER TABLE waits for the very transaction that needs the
  # table, forever (seen here). Hive's schematool and scripts are not in pyspark's jars.
  (umask 077 && cat > "$state/conf/hive-site.xml" <<EOF
<?xml version="1.0"?>
<configuration>
  <property><name>javax.jdo.option.ConnectionURL</name><value>jdbc:postgresql://$host:$pg_port/metastore</value></property>
  <property><name>javax.jdo.option.ConnectionDriverName</name><value>org.postgresql.Driver</value></property>
  <property><name>javax.jdo.option.ConnectionUserName</name><value>fraud</value></property>
  <property><name>javax.jdo.option.ConnectionPassword</name><value>$password</value></property>
  <property><name>datanucleus.schema.autoCreateTables</name><value>true</value></property>
  <property><name>datanucleus.schema.autoCreateColumns</name><value>true</value></property>
  <property><name>datanucleus.schema.autoCreateConstraints</name><value>false</value></property>
  <property><name>hive.metastore.schema.verification</name><value>false</value></property>
</configuration>
EOF
  )
}

up() {
  # The executors' packed Python is needed only once a job starts: when it is out of date (a
  # new checkout), its build (minutes: pip, then gzip) runs while the servers start, not
  # before them. Should a server fail to start, the build is waited for, not left running.
  "$here/pack-env.sh" &
  packing=$!
  trap 'wait "$packing" || true' EXIT
  "$here/postgres.sh" start
  "$here/redis.sh" start
  metastore_conf
  "$here/spark.sh" start
  "$here/mlflow.sh" start
  trap - EXIT
  wait "$packing" || die "the executors' environment was not built (deploy/standalone/pack-env.sh)"
}

down() {
  local failed=0
  "$here/mlflow.sh" stop || failed=1
  "$here/spark.sh" stop || failed=1
  "$here/redis.sh" stop || failed=1
  "$here/postgres.sh" stop || failed=1
  return $failed
}

env_lines() {
  printf 'export FRAUD_CLUSTER_DIR=%q\n' "$state"
  printf 'export FRAUD_SPARK_MASTER=%q\n' "spark://$host:${FRAUD_SPARK_MASTER_PORT:-7077}"
  printf 'export FRAUD_EXECUTOR_ENV=%q\n' "${FRAUD_EXECUTOR_ENV:-$state/executor-env.tar.gz}"
  # The driver's web UI binds to this address (spark.driver.bindAddress does not cover it).
  printf 'export SPARK_LOCAL_IP=%q\n' "$host"
  "$here/mlflow.sh" env
  "$here/redis.sh" env
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) env_lines ;;
  status) "$here/postgres.sh" status || true; "$here/redis.sh" status || true; "$here/spark.sh" status || true; "$here/mlflow.sh" status || true ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
