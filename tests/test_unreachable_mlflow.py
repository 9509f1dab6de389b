"""A tracking server that is down or does not answer: the jobs fail within seconds, with one
clear line naming it and their own exit code (3), and write nothing.

Real servers on loopback: a port nobody listens on (connection refused) and a socket that
accepts connections but never answers (the case that used to hang for minutes).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.core.config import load_settings
from pipelines.core.errors import ModelNotFoundError, ServiceUnavailableError
from pipelines.model.registry import configure_mlflow, reaching_mlflow, resolve_model
from tests.test_end_to_end import conf_file, submit

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def silent_server() -> Iterator[str]:
    """An HTTP address that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture(scope="module")
def refused_address() -> str:
    """An HTTP address on loopback where nothing listens."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def conf_with_tracking_server(folder: Path, uri: str) -> Path:
    path = conf_file(folder)
    text = path.read_text()
    text = text.replace(f'"sqlite:///{folder / "mlflow.db"}"', f'"{uri}"')
    text = text.replace("request_timeout_seconds = 10.0", "request_timeout_seconds = 2.0")
    text = text.replace("request_max_retries = 2", "request_max_retries = 1")
    assert uri in text and "request_timeout_seconds = 2.0" in text
    path.write_text(text)
    return path


@pytest.mark.parametrize("job", [["score", "--date", "2013-09-02"], ["train"]])
def test_a_silent_tracking_server_fails_the_job_in_seconds_with_exit_3(tmp_path, silent_server, job):
    started = time.monotonic()
    result = submit(*job, conf=conf_with_tracking_server(tmp_path, silent_server))
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.output[-3000:]
    assert f"error: cannot reach the MLflow tracking server at {silent_server} (" in result.output
    assert "Traceback" not in result.output
    # One request of 2 s, one retry of 2 s and a back-off, plus Python's start: not minutes.
    assert elapsed < 60, elapsed
    assert not (tmp_path / "lake").exists()


def test_a_refused_connection_is_named_and_not_taken_for_a_missing_model(refused_address, tmp_path):
    settings = load_settings(str(conf_with_tracking_server(tmp_path, refused_address)))
    with pytest.raises(ServiceUnavailableError, match=rf"cannot reach the MLflow tracking server at {refused_address}"):
        with reaching_mlflow(settings.mlflow):
            configure_mlflow(settings.mlflow)
    with pytest.raises(ServiceUnavailableError, match="ConnectionError"):
        with reaching_mlflow(settings.mlflow):
            resolve_model(settings.mlflow)


def test_a_missing_model_on_a_reachable_store_is_still_model_not_found(settings):
    configure_mlflow(settings.mlflow)
    with pytest.raises(ModelNotFoundError):
        with reaching_mlflow(settings.mlflow):
            resolve_model(settings.mlflow)
