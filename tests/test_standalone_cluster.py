"""The jobs on real servers (conf/standalone.toml), as `make cluster-demo` runs them, smaller.

deploy/standalone/cluster.sh starts PostgreSQL, the Hive metastore's settings, a Spark
standalone master with two workers and the history server, and an MLflow server with basic
authentication, on ports of their own (a developer's `make cluster-up` may be running). The
jobs reach them only through the config and the environment `cluster.sh env` prints. One
fault: a worker killed with SIGKILL while `score` writes; the job must then finish or fail
cleanly, the day whole or unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipelines.core.config import PROJECT_ROOT

pytestmark = [
    pytest.mark.e2e, pytest.mark.cluster,
    # postgres.sh installs PostgreSQL from Debian's packages as root (CI); others install it first.
    pytest.mark.skipif(os.geteuid() != 0 and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                       reason="PostgreSQL's server is not installed (Debian's package postgresql)"),
]

STANDALONE = PROJECT_ROOT / "deploy" / "standalone"
PORTS = {"FRAUD_PG_PORT": "55442", "FRAUD_MLFLOW_PORT": "5511", "FRAUD_SPARK_MASTER_PORT": "7087",
         "FRAUD_SPARK_MASTER_UI_PORT": "8090", "FRAUD_SPARK_HISTORY_PORT": "18090"}
HISTORY = f"http://127.0.0.1:{PORTS['FRAUD_SPARK_HISTORY_PORT']}"
# The worker UIs are the master's port + 1 and + 2: how an executor's log links name its worker.
WORKERS = ("127.0.0.1:8091", "127.0.0.1:8092")
# Each job's driver UI (REST API: which executor runs a task right now).
DRIVER_UI = "http://127.0.0.1:4097"
# The demo's recipe is minutes of fitting; this one, seconds: the cluster is under test here,
# not the search (one candidate, one validation fold: each fit is a series of small Spark jobs,
# which on this cluster cost seconds each in scheduling alone).
RECIPE = """extends = "standalone"

[train]
validation_folds = 1

[train.candidates.logistic_regression]
regParam = [0.01]

[train.ensemble]
members = []

[spark.conf]
"spark.ui.port" = "4097"
"""


def _exported(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words and words[0] == "export":
            values.update(word.split("=", 1) for word in words[1:])
    return values


@pytest.fixture(scope="module")
def cluster():
    """The running cluster's environment for the jobs; stopped and removed after the tests."""
    # A folder PostgreSQL's own user can reach when the tests run as root (pytest's are private).
    state = Path(tempfile.mkdtemp(prefix="fraud-cluster-test-"))
    state.chmod(0o711)
    # The executors' packed Python is the project's own (.cluster/), shared with make
    # cluster-demo: pack-env.sh rebuilds it only when it is out of date.
    packed = PROJECT_ROOT / ".cluster" / "executor-env.tar.gz"
    env = {**os.environ, **PORTS, "FRAUD_CLUSTER_DIR": str(state), "FRAUD_EXECUTOR_ENV": str(packed),
           "FRAUD_PYTHON": sys.executable}
    log = state / "up.log"
    try:
        with log.open("w") as output:
            up = subprocess.run([str(STANDALONE / "cluster.sh"), "up"], env=env, stdout=output,
                                stderr=subprocess.STDOUT, timeout=1200)
        assert up.returncode == 0, log.read_text()[-4000:]
        exported = subprocess.run([str(STANDALONE / "cluster.sh"), "env"], env=env, capture_output=True,
                                  text=True, check=True).stdout
        env.update(_exported(exported))
        conf = state / "test.toml"
        conf.write_text(RECIPE)
        yield {"env": env, "state": state, "conf": conf, "since": time.time()}
    finally:
        subprocess.run([str(STANDALONE / "cluster.sh"), "down"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(state, ignore_errors=True)


def submit(cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), *args, "--env", str(cluster["conf"])],
                          env=cluster["env"], capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def history(path: str):
    return _get_json(f"{HISTORY}/api/v1/{path}")


def apps_named(name: str, since: float, timeout: float = 60) -> list[dict]:
    """The applications called ``name`` started after ``since`` (epoch seconds), oldest first,
    once they are all complete (the history server looks for new event logs every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        apps = [app for app in history("applications") if app["name"] == name
                and app["attempts"][-1]["startTimeEpoch"] >= since * 1000]
        if (apps and all(app["attempts"][-1]["completed"] for app in apps)) or time.monotonic() > deadline:
            assert apps, f"the history server has no application {name!r}"
            return sorted(apps, key=lambda app: app["attempts"][-1]["startTimeEpoch"])
        time.sleep(1)


def worker_of(executor: dict) -> str:
    return re.match(r"https?://([^/]+)/", next(iter(executor["executorLogs"].values()))).group(1)


def tasks_per_worker(app_id: str) -> dict[str, int]:
    tasks = dict.fromkeys(WORKERS, 0)
    for executor in history(f"applications/{app_id}/allexecutors"):
        if executor["id"] != "driver":
            tasks[worker_of(executor)] = tasks.get(worker_of(executor), 0) + executor["completedTasks"]
    return tasks


def delta_rows(path: Path, day: str | None = None) -> int:
    table = DeltaTable(str(path)).to_pyarrow_table()
    if day is None:
        return table.num_rows
    return sum(1 for value in table.column("txn_date").to_pylist() if str(value) == day)


def test_ingest_train_promote_score_on_the_cluster_with_the_tracking_server(cluster):
    outputs = [ok(submit(cluster, "ingest", "--input", "data/creditcard_sample.csv.gz"))]
    outputs.append(ok(submit(cluster, "train")))
    assert "registered" in outputs[-1].lower()
    outputs.append(ok(submit(cluster, "promote")))
    outputs.append(ok(submit(cluster, "score", "--date", "2013-09-01")))
    # The driver's JVM is not offered the class-data archive its class path does not match.
    assert not [output for output in outputs if "[warning][cds" in output]
    lake = cluster["state"] / "lake"
    assert delta_rows(lake / "scored_transactions", "2013-09-01") == delta_rows(lake / "transactions", "2013-09-01")

    # MLflow: the registry and the artifacts are the server's (proxied to its own store), and
    # the server refuses a request without the jobs' credentials.
    url = cluster["env"]["MLFLOW_TRACKING_URI"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    stored = list((cluster["state"] / "mlflow" / "artifacts").rglob("MLmodel"))
    assert stored, "no model was stored through the server's artifact proxy"


def test_executors_on_both_workers_ran_the_tasks_with_the_shipped_code_and_environment(cluster):
    for job in ("ingest", "train", "score"):
        app = apps_named(f"fraud-scoring {job}", cluster["since"])[-1]
        tasks = tasks_per_worker(app["id"])
        assert all(count > 0 for count in tasks.values()), f"{job}: tasks per worker {tasks}"
    environment = history(f"applications/{app['id']}/environment")
    spark = dict(environment["sparkProperties"])
    assert spark["spark.pyspark.python"] == "./environment/bin/python"
    assert spark["spark.archives"].endswith("executor-env.tar.gz#environment")
    assert re.search(r"build/fraud_scoring-[0-9a-f]{16}\.zip", spark["spark.submit.pyFiles"])
    assert spark["spark.master"] == f"spark://127.0.0.1:{PORTS['FRAUD_SPARK_MASTER_PORT']}"


def running_task_worker(timeout: float = 120) -> str | None:
    """The worker whose executor is running a task of the job, seen in the driver's REST API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for app in _get_json(f"{DRIVER_UI}/api/v1/applications"):
                for executor in _get_json(f"{DRIVER_UI}/api/v1/applications/{app['id']}/executors"):
                    if executor["id"] != "driver" and executor["activeTasks"] > 0:
                        return worker_of(executor)
        except OSError:
            pass  # the driver's UI is not up yet, or already gone
        time.sleep(0.1)
    return None


def test_a_worker_killed_while_score_writes_leaves_the_day_whole_or_unchanged(cluster):
    lake = cluster["state"] / "lake"
    scored = lake / "scored_transactions"
    version_before = DeltaTable(str(scored)).version()
    expected = delta_rows(lake / "transactions", "2013-09-02")
    command = ["timeout", "600", str(PROJECT_ROOT / "spark-submit.sh"), "score", "--date", "2013-09-02",
               "--env", str(cluster["conf"])]
    started = time.time()
    job = subprocess.Popen(command, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    writing = threading.Event()

    def read() -> None:
        for line in job.stdout:
            output.append(line)
            if "score: scoring and writing" in line:
                writing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Once the write has started, the worker of an executor that is running one of its tasks is
    # killed with SIGKILL (its executors with it), as a host that disappears.
    killed = running_task_worker() if writing.wait(timeout=400) else None
    if killed:
        number = WORKERS.index(killed) + 1
        subprocess.run([str(STANDALONE / "spark.sh"), "kill-worker", str(number)], env=cluster["env"], check=True,
                       capture_output=True)
    job.wait(timeout=620)
    reader.join(timeout=10)
    text = "".join(output)
    assert killed, f"no task of the write was seen running:\n{text[-3000:]}"
    if job.returncode == 0:
        assert delta_rows(scored, "2013-09-02") == expected, text[-3000:]
    else:
        # Failed cleanly: a named error, nothing of the day committed.
        assert "Traceback" not in text, text[-3000:]
        assert DeltaTable(str(scored)).version() == version_before
        assert delta_rows(scored, "2013-09-02") == 0
    # The worker comes back (the cluster script restarts what is down) and a rerun of the
    # night's job scores the day whole, once.
    ok(subprocess.run([str(STANDALONE / "spark.sh"), "start"], env=cluster["env"], capture_output=True, text=True,
                      timeout=300))
    ok(submit(cluster, "score", "--date", "2013-09-02"))
    assert delta_rows(scored, "2013-09-02") == expected
    # The history agrees: the first of the two runs lost its executor on the killed worker.
    killed_run = apps_named("fraud-scoring score", started)[0]
    executors = [e for e in history(f"applications/{killed_run['id']}/allexecutors") if e["id"] != "driver"]
    assert any(worker_of(e) == killed and not e["isActive"] for e in executors), executors


def test_analysts_find_the_tables_by_name_in_the_metastore_and_read_them_without_spark(cluster):
    # The jobs that wrote the tables registered them, in PostgreSQL (the metastore outlives every
    # session): before any query asks for them.
    password = os.environ.get("FRAUD_PG_PASSWORD") or (cluster["state"] / "secrets" / "pg-password").read_text()
    listed = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", PORTS["FRAUD_PG_PORT"], "-U", "fraud", "-d", "metastore", "-At", "-c",
         'SELECT d."NAME" || \'.\' || t."TBL_NAME" FROM "TBLS" t JOIN "DBS" d USING ("DB_ID") ORDER BY 1'],
        env={**cluster["env"], "PGPASSWORD": password}, capture_output=True, text=True, check=True).stdout.split()
    assert {"fraud.transactions", "fraud.scored_transactions", "fraud.promotions"} <= set(listed)
    # An analyst's query by name, no path.
    output = ok(submit(cluster, "sql", "SELECT count(*) AS scored FROM fraud.scored_transactions"))
    expected = delta_rows(cluster["state"] / "lake" / "scored_transactions")
    assert re.search(rf"\|\s*{expected}\s*\|", output), output[-2000:]
    # delta-rs and DuckDB, no JVM: the same committed rows.
    duck = subprocess.run([sys.executable, "queries/without_spark.py", "--env", str(cluster["conf"]),
                           "SELECT count(*) AS scored FROM scored_transactions"], cwd=PROJECT_ROOT,
                          env=cluster["env"], capture_output=True, text=True, timeout=120)
    assert duck.returncode == 0, duck.stderr
    assert re.search(rf"│\s*{expected}\s*│", duck.stdout), duck.stdout
