# shellcheck shell=bash disable=SC2034
# Shared by deploy/standalone/postgres.sh and mlflow.sh (sourced, not run): where the local
# cluster keeps its state, the ports, and the secrets generated once into <state>/secrets.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=$(mkdir -p "${FRAUD_CLUSTER_DIR:-$root/.cluster}" && cd "${FRAUD_CLUSTER_DIR:-$root/.cluster}" && pwd)
python=${FRAUD_PYTHON:-$root/.venv/bin/python}
host=127.0.0.1
pg_port=${FRAUD_PG_PORT:-55432}
mlflow_port=${FRAUD_MLFLOW_PORT:-5500}
mkdir -p "$state/logs" "$state/run"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# secret NAME [VALUE]: VALUE when non-empty, else <state>/secrets/NAME, created (mode 600) on
# first use with 32 random alphanumerics.
secret() {
  if [ -n "${2:-}" ]; then printf '%s' "$2"; return; fi
  local file=$state/secrets/$1
  if [ ! -s "$file" ]; then
    (umask 077 && mkdir -p "$state/secrets" && set +o pipefail \
      && tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32 > "$file")
  fi
  cat "$file"
}
