#!/usr/bin/env bash
# The executors' Python environment, packed for spark.archives: a venv with the interpreter of
# .venv and only the dependencies in deploy/standalone/executor-requirements.txt (pinned by
# constraints.txt), packed by venv-pack into <state>/executor-env.tar.gz. Jobs ship it with
#   spark.archives=<state>/executor-env.tar.gz#environment
#   spark.pyspark.python=./environment/bin/python
# It is rebuilt only when the requirements, the constraints, the interpreter, venv-pack or
# this script change (a hash of them is kept beside the archive).
#
#   deploy/standalone/pack-env.sh            # prints the archive's path
#   FRAUD_EXECUTOR_ENV=/path/env.tar.gz deploy/standalone/pack-env.sh   # another place for it
#
# Limitation: a venv's bin/python is a symlink to the interpreter it was made from (venv-pack
# does not pack it), so every worker needs that same Python at the same path; true here (one
# machine); on a real cluster use the same image on every node, or conda-pack / a container.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${FRAUD_CLUSTER_DIR:-$root/.cluster}
python=${FRAUD_PYTHON:-$root/.venv/bin/python}
requirements=$here/executor-requirements.txt
constraints=$root/constraints.txt
archive=${FRAUD_EXECUTOR_ENV:-$state/executor-env.tar.gz}
venv=$archive.build

[ -x "$python" ] || { echo "pack-env.sh: no Python at $python: run 'make setup' first" >&2; exit 2; }
venv_pack=$(dirname "$python")/venv-pack
[ -x "$venv_pack" ] || { echo "pack-env.sh: venv-pack is not in $(dirname "$python"): run 'make setup'" >&2; exit 2; }
mkdir -p "$(dirname "$archive")"
exec 9> "$archive.lock"
flock 9  # one build at a time; a second caller waits and then finds it up to date

# The interpreter the venv is made from: the one .venv itself was made from.
base=$("$python" -c 'import sys; print(sys._base_executable)')
stamp=$( { cat "$requirements" "$constraints" "${BASH_SOURCE[0]}"; "$base" -VV; "$venv_pack" --version; } | sha256sum | cut -c1-16)
if [ -f "$archive" ] && [ "$(cat "$archive.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$archive"
  exit 0
fi

echo "pack-env.sh: building the executors' environment ($("$base" -V)) in $venv" >&2
start=$SECONDS
rm -rf "$venv"
"$base" -m venv --without-pip "$venv"
# pip of .venv installs into the new venv (--python): the packed environment carries no pip.
"$python" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check \
  -c "$constraints" -r "$requirements"
built=$SECONDS
# Without the packages' own test suites (110 MB of 670 unpacked): every executor of every job
# unpacks the archive.
"$venv_pack" --quiet --force --format tar.gz --exclude '*/tests/*' -p "$venv" -o "$archive.partial"
mv -f "$archive.partial" "$archive"
echo "$stamp" > "$archive.stamp"
rm -rf "$venv"  # the archive is what the executors get; its venv is 670 MB
echo "pack-env.sh: installed in $((built - start)) s, packed in $((SECONDS - built)) s:" \
  "$(du -h "$archive" | cut -f1)" >&2
echo "$archive"
