#!/usr/bin/env bash
# Run one job of this project through the real spark-submit (the one pyspark ships).
#
#   ./spark-submit.sh <job> [--env local|cluster|path.toml] [job options]
#   ./spark-submit.sh score --date 2013-09-02
#
# It takes the master and Spark settings (Delta's included) from conf/<env>.toml, adds the
# Delta Lake jars from .jars/, ships the project's code to the executors, and makes the Python
# workers use the project's interpreter. Jobs: the files in jobs/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "spark-submit.sh: $*" >&2; exit 2; }

jobs=$(cd "$here/jobs" && ls -- *.py | grep -v '^_' | sed 's/\.py$//' | tr '\n' ' ')
[ $# -ge 1 ] || die "usage: ./spark-submit.sh <job> [--env ENV] [options]; jobs: $jobs"
job=$1; shift
job_file="$here/jobs/$job.py"
[ -f "$job_file" ] && [[ $job != _* ]] || die "unknown job '$job'; jobs: $jobs"

# The environment's name is needed here too, to pick the Spark settings; the job reads it again.
env=local
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --env) env=${args[i + 1]:-local} ;;
    --env=*) env=${args[i]#--env=} ;;
  esac
done

python=${FRAUD_PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || die "no Python environment at $python: run 'make setup' first"
spark_submit=$(dirname "$python")/spark-submit
[ -x "$spark_submit" ] || die "pyspark's spark-submit is not at $spark_submit: run 'make setup'"

shopt -s nullglob
jar_files=("$here"/.jars/*.jar)
[ ${#jar_files[@]} -gt 0 ] || die "the Delta Lake jars are not in $here/.jars: run 'make setup'"
jars=$(IFS=,; echo "${jar_files[*]}")

submit_args=$(cd "$here" && "$python" -m pipelines.core.session --env "$env" --job "$job") || exit $?
mapfile -t submit_args <<< "$submit_args"

# The project's code, for executors that do not have it installed (a real cluster). The
# archive is named by a hash of its sources and moved into place whole, so a job started at
# the same moment never reads a half-written archive, and one never changes under a job
# that is running (Python reads a zip on the path lazily, long after the job started).
code_hash=$(cd "$here" && find pipelines jobs -name '*.py' -type f -print0 | LC_ALL=C sort -z \
  | xargs -0 sha256sum | sha256sum | cut -c1-16)
code_zip="$here/build/fraud_scoring-$code_hash.zip"
if [ ! -f "$code_zip" ]; then
  mkdir -p "$here/build"
  partial=$(mktemp "$here/build/.fraud_scoring.XXXXXX")
  (cd "$here" && find pipelines jobs -name '*.py' -type f | LC_ALL=C sort \
    | "$python" -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as archive:
    for name in sys.stdin.read().split():
        archive.write(name)' "$partial") || { rm -f "$partial"; exit 1; }
  mv -f "$partial" "$code_zip"
fi
touch "$code_zip"
# Archives of code no job has used for a week.
find "$here/build" -maxdepth 1 -name 'fraud_scoring-*.zip' -mtime +7 -delete 2>/dev/null || true

export FRAUD_PROJECT_ROOT=$here
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$python}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$python}

# The driver runs here, on this host, with the project's interpreter. spark.pyspark.driver.python
# outranks spark.pyspark.python, which a cluster config sets to the executors' unpacked
# environment (./environment/bin/python): in client mode that path does not exist here.
# (A config for cluster deploy mode, where the driver runs on the cluster, sets its own.)
driver_python=(--conf "spark.pyspark.driver.python=$PYSPARK_DRIVER_PYTHON")
for arg in "${submit_args[@]}"; do
  if [[ $arg == spark.pyspark.driver.python=* ]]; then driver_python=(); fi
done

exec "$spark_submit" "${submit_args[@]}" "${driver_python[@]}" --jars "$jars" --py-files "$code_zip" \
  "$job_file" "$@"
