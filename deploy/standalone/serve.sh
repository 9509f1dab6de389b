#!/usr/bin/env bash
# `make serve SERVE_ENV=<env>`: fraud-serve for that environment. For the payments profile with
# no online store configured ($FRAUD_ONLINE_URL, [online] url, a Cloud Foundry binding), a local
# one first (deploy/standalone/redis.sh), filled by `publish` for the day after the last ingested
# one; stopped when the service stops, unless it was already running (`make cluster-up`'s).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
env=${1:-local}
cd "$root"
if .venv/bin/python -c "
import sys
from pipelines.core.config import load_serving_settings
from pipelines.online.store import store_address
settings = load_serving_settings(sys.argv[1])
sys.exit(0 if settings.profile.kind == 'payments' and store_address(settings.online) is None else 1)" "$env"; then
  if ! "$here/redis.sh" status > /dev/null; then
    "$here/redis.sh" start
    trap '"$here/redis.sh" stop' EXIT
  fi
  eval "$("$here/redis.sh" env)"
  ./spark-submit.sh publish --env "$env" --after-last-day
fi
.venv/bin/fraud-serve --env "$env" --create-token-if-missing
