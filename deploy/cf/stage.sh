#!/usr/bin/env bash
# Assembles the directory `cf push -f deploy/cf/manifest.yml` uploads (its `path`, build/cf-app):
# setup.py, constraints.txt, pipelines/, conf/, and this folder's requirements.txt and runtime.txt
# at its root, where the python buildpack looks for them. Nothing else of the checkout (no .venv,
# jobs, data or tests) is pushed.
#   deploy/cf/stage.sh && cf push -f deploy/cf/manifest.yml
#   deploy/cf/stage.sh OUT_DIR      # elsewhere (the tests); OUT_DIR must not exist yet
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ $# -gt 0 ]]; then
  out="$1"
  if [[ -e "$out" ]]; then
    echo "error: $out exists; give a path that does not" >&2
    exit 2
  fi
else
  out="$root/build/cf-app"
  rm -rf "$out"
fi

mkdir -p "$out"
cp "$root/setup.py" "$root/constraints.txt" "$out/"
cp "$root/deploy/cf/requirements.txt" "$root/deploy/cf/runtime.txt" "$out/"
# The code and the configs, without byte code.
(cd "$root" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - pipelines conf) | tar -xf - -C "$out"
echo "$out"
