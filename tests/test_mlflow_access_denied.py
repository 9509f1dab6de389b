"""A tracking server that refuses the job's credentials (401) or its user's permission (403):
one clear line naming the server, the user and what to change, exit 2, no stack trace, and
not taken for a missing model.

A real `mlflow server --app-name basic-auth` on loopback, its stores in SQLite files (the local
cluster's server is the same with PostgreSQL: tests/test_standalone_cluster.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pipelines.core.config import load_settings
from pipelines.core.errors import AccessDeniedError
from pipelines.model.registry import configure_mlflow, reaching_mlflow, resolve_model
from tests.test_end_to_end import conf_file, submit

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-tests"
USER, PASSWORD = "analyst", "analyst-password-for-tests"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[str]:
    """The server's URI; its default permission is none, the experiment is the admin's."""
    folder = tmp_path_factory.mktemp("mlflow-auth")
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    ini = folder / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                   f"database_uri = sqlite:///{folder / 'auth.db'}\nadmin_username = {ADMIN}\n"
                   f"authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        env.pop(name, None)
    uri = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--app-name", "basic-auth", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (folder / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        admin = requests.Session()
        admin.auth = (ADMIN, ADMIN_PASSWORD)
        admin.post(f"{uri}/api/2.0/mlflow/users/create", json={"username": USER, "password": PASSWORD},
                   timeout=30).raise_for_status()
        admin.post(f"{uri}/api/2.0/mlflow/experiments/create", json={"name": "fraud_detection"},
                   timeout=30).raise_for_status()
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def conf_with_server(folder: Path, uri: str) -> Path:
    return conf_file(folder, tracking_uri=uri)


def test_wrong_credentials_fail_a_job_with_exit_2_naming_the_server_and_the_user(tmp_path, auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    result = submit("score", "--date", "2013-09-02", conf=conf_with_server(tmp_path, auth_server))
    assert result.returncode == 2, result.output[-3000:]
    assert (f"error: the MLflow tracking server at {auth_server} refused the credentials of user "
            f"'{USER}' (HTTP 401)") in result.output
    assert "Traceback" not in result.output and "not-the-password" not in result.output
    assert not (tmp_path / "lake").exists()


def test_no_credentials_at_all_are_named_as_such(tmp_path, auth_server, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    settings = load_settings(str(conf_with_server(tmp_path, auth_server)))
    with pytest.raises(AccessDeniedError, match=r"no user \(MLFLOW_TRACKING_USERNAME is not set\) \(HTTP 401\)"):
        with reaching_mlflow(settings.mlflow):
            configure_mlflow(settings.mlflow)


def test_a_refusal_is_not_taken_for_a_missing_model(tmp_path, auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    settings = load_settings(str(conf_with_server(tmp_path, auth_server)))
    with pytest.raises(AccessDeniedError, match="HTTP 401"):
        with reaching_mlflow(settings.mlflow):
            resolve_model(settings.mlflow)


def test_a_user_without_permission_on_the_experiment_gets_a_403_named(tmp_path, auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    settings = load_settings(str(conf_with_server(tmp_path, auth_server)))
    with pytest.raises(AccessDeniedError, match=rf"denied user '{USER}' a request \(HTTP 403, permission denied\)"):
        with reaching_mlflow(settings.mlflow):
            configure_mlflow(settings.mlflow)
