#!/usr/bin/env bash
# `make serve SERVE_ENV=<env>`: fraud-serve for that environment. For the payments profile with
# no online store configured ($FRAUD_ONLINE_URL unset), a local one first (deploy/standalone/
# redis.sh): started, filled by `publish` for the day after the last ingested one, and stopped
# when the service stops.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
env=${1:-local}
cd "$root"
if [ -z "${FRAUD_ONLINE_URL:-}" ] && .venv/bin/python -c "
import sys
from pipelines.core.config import load_serving_settings
sys.exit(0 if load_serving_settings(sys.argv[1]).profile.kind == 'payments' else 1)" "$env"; then
  "$here/redis.sh" start
  trap '"$here/redis.sh" stop' EXIT
  eval "$("$here/redis.sh" env)"
  ./spark-submit.sh publish --env "$env" --after-last-day
fi
.venv/bin/fraud-serve --env "$env" --create-token-if-missing
