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

submit_args=$(cd "$here" && "$python" -m pipelines.session --env "$env") || exit $?
mapfile -t submit_args <<< "$submit_args"

# The project's code, for executors that do not have it installed (a real cluster).
mkdir -p "$here/build"
(cd "$here" && "$python" -m zipfile -c build/fraud_scoring.zip pipelines jobs)

export FRAUD_PROJECT_ROOT=$here
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$python}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$python}

exec "$spark_submit" "${submit_args[@]}" --jars "$jars" --py-files "$here/build/fraud_scoring.zip" \
  "$job_file" "$@"
