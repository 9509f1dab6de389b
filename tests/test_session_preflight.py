"""Before a job's JVM starts: the local files its Spark settings name exist, and a standalone
master answers. Otherwise one line naming what is wrong (exit 2 for a file, 3 for a master
that does not answer), instead of a Java stack trace, a minute of retries, or a throw-away
metastore in place of a class path entry that is not there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from pipelines.core.config import PROJECT_ROOT, load_settings
from pipelines.core.errors import ConfigError, ServiceUnavailableError
from pipelines.core.session import check_before_start, spark_conf


@pytest.fixture
def cluster_dir(tmp_path):
    """What `deploy/standalone/cluster.sh up` leaves for the driver: the packed environment,
    the metastore's settings and driver, the event-log folder."""
    (tmp_path / "spark" / "events").mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "postgresql.jar").write_bytes(b"")
    (tmp_path / "executor-env.tar.gz").write_bytes(b"")
    return tmp_path


@pytest.fixture
def listening_master():
    """A loopback port that accepts connections (as a master would), as spark://..."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"spark://127.0.0.1:{server.getsockname()[1]}"


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def standalone(monkeypatch, folder, master):
    monkeypatch.setenv("FRAUD_CLUSTER_DIR", str(folder))
    monkeypatch.setenv("FRAUD_EXECUTOR_ENV", str(folder / "executor-env.tar.gz"))
    monkeypatch.setenv("FRAUD_SPARK_MASTER", master)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5500")
    return load_settings("standalone").spark


def test_a_cluster_that_is_up_passes(monkeypatch, cluster_dir, listening_master):
    settings = standalone(monkeypatch, cluster_dir, listening_master)
    check_before_start(settings, spark_conf(settings))


@pytest.mark.parametrize("removed, key", [
    ("executor-env.tar.gz", "spark.archives"),
    ("jars/postgresql.jar", "spark.driver.extraClassPath"),
    ("conf", "spark.driver.extraClassPath"),
    ("spark/events", "spark.eventLog.dir"),
])
def test_a_missing_local_file_is_named_with_its_setting(monkeypatch, cluster_dir, listening_master, removed, key):
    settings = standalone(monkeypatch, cluster_dir, listening_master)
    path = cluster_dir / removed
    path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(ConfigError, match=rf"'{key}' names {path}, which does not exist"):
        check_before_start(settings, spark_conf(settings))


def test_only_local_paths_are_checked(monkeypatch, cluster_dir, listening_master):
    settings = standalone(monkeypatch, cluster_dir, listening_master)
    conf = {**spark_conf(settings), "spark.archives": "hdfs:///apps/env.tar.gz#environment,s3a://b/x.zip",
            "spark.driver.extraClassPath": "/opt/hive/lib/*", "spark.eventLog.enabled": "false",
            "spark.eventLog.dir": "file:/nowhere"}
    check_before_start(settings, conf)
    # In cluster deploy mode the driver's class path and event log are on a cluster node.
    on_a_node = {**spark_conf(settings), "spark.submit.deployMode": "cluster",
                 "spark.driver.extraClassPath": "/opt/node-only/conf", "spark.eventLog.dir": "file:/node-only"}
    check_before_start(settings, on_a_node)
    # The local config names none of these; its master is local[*].
    local = load_settings("local").spark
    check_before_start(local, spark_conf(local))


def test_a_master_that_does_not_answer_is_named(monkeypatch, cluster_dir):
    port = closed_port()
    settings = standalone(monkeypatch, cluster_dir, f"spark://127.0.0.1:{port}")
    with pytest.raises(ServiceUnavailableError, match=rf"cannot reach the Spark master at spark://127.0.0.1:{port} "
                                                      rf"\(127.0.0.1:{port}: Connection refused\)"):
        check_before_start(settings, spark_conf(settings))
    # A list of masters (standalone high availability): one that answers is enough.
    with socket.create_server(("127.0.0.1", 0)) as server:
        both = replace(settings, master=f"spark://127.0.0.1:{port},127.0.0.1:{server.getsockname()[1]}")
        check_before_start(both, spark_conf(both))


def submit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, **env, "FRAUD_PYTHON": sys.executable}, timeout=120)


def test_through_spark_submit_before_any_jvm_starts(cluster_dir):
    env = {"FRAUD_CLUSTER_DIR": str(cluster_dir), "FRAUD_EXECUTOR_ENV": str(cluster_dir / "executor-env.tar.gz"),
           "FRAUD_SPARK_MASTER": f"spark://127.0.0.1:{closed_port()}", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5500"}
    started = time.monotonic()
    refused = submit("ingest", "--input", "data/creditcard_sample.csv.gz", "--env", "standalone", env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "error: cannot reach the Spark master at spark://127.0.0.1:" in refused.stderr
    (cluster_dir / "executor-env.tar.gz").unlink()
    missing = submit("score", "--date", "2013-09-02", "--env", "standalone", env=env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert f"'spark.archives' names {cluster_dir / 'executor-env.tar.gz'}, which does not exist" in missing.stderr
    assert "Traceback" not in refused.stderr + missing.stderr
    # Neither started a JVM (Spark's own start takes seconds), nor wrote anything.
    assert time.monotonic() - started < 20
    assert not (cluster_dir / "lake").exists()
