"""fraud-serve's HTTP layer, quick and without Spark or Java: uvicorn with fraud-serve's own
settings (pipelines.serving.cli.server_config) on a loopback port, serving a logistic model
written here in numpy. A JSON object naming a field twice, a request head of hundreds of
kilobytes, and the errors of routing (unknown path, wrong method), each over real HTTP.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import uvicorn

from pipelines.core.config import load_serving_settings
from pipelines.data.schema import FEATURE_COLS
from pipelines.model.portable.decision import Decision
from pipelines.model.portable.model import PortableModel
from pipelines.model.portable.stages import Assembler, Logistic
from pipelines.serving.app import MAX_HEAD_BYTES, create_app
from pipelines.serving.cli import server_config
from pipelines.serving.models import LoadedModel, ModelHolder
from tests.test_serving import TOKEN, auth, free_port, serve_conf, start_service


class NoWatcher:
    """The model is set here once; no registry is read."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def logistic_model() -> PortableModel:
    coefficients = np.linspace(-0.5, 0.5, len(FEATURE_COLS))
    stages = [Assembler(FEATURE_COLS, "raw_features"), Logistic("raw_features", "probability", coefficients, -3.0)]
    return PortableModel(stages, output_col="probability", decision=Decision(0.5))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving-http")
    settings = load_serving_settings(str(serve_conf(folder, f"sqlite:///{folder / 'unused.db'}", max_batch=10)))
    holder = ModelHolder()
    model = logistic_model()
    holder.current = LoadedModel(name="fraud_detector", version="7", run_id="r", portable=model,
                                 loaded_at=time.time())
    app = create_app(settings, TOKEN, holder=holder, watcher=NoWatcher())
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, keep_alive_seconds=75))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, model=model)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def transaction(value: float = 0.1) -> dict[str, float]:
    return {name: value for name in FEATURE_COLS}


def post(live, body: str) -> requests.Response:
    return requests.post(f"{live.url}/v1/score", data=body.encode(),
                         headers={**auth(), "Content-Type": "application/json"}, timeout=10)


def fields(values: dict[str, float], *, twice: str, first: float) -> str:
    """A transaction's JSON with the field ``twice`` written once more, first, as ``first``."""
    return "{" + f'"{twice}": {first}, ' + json.dumps(values)[1:]


def test_the_model_scores_a_plain_transaction(live):
    answer = post(live, json.dumps(transaction()))
    assert answer.status_code == 200, answer.text
    expected = live.model.decision.apply(live.model.sample_probability(np.full((1, len(FEATURE_COLS)), 0.1)))[0]
    assert answer.json()["fraud_probability"] == pytest.approx(float(expected[0]), abs=1e-12)


# --- a field named twice ----------------------------------------------------------------------
@pytest.mark.parametrize(("body", "locs"), [
    (fields(transaction(), twice="V1", first=9e9), [["body", "V1"]]),
    (fields(transaction(), twice="Amount", first=0.1), [["body", "Amount"]]),  # even with the same value
    (fields({**transaction(), "transaction_id": "t-1"}, twice="transaction_id", first=1), [["body", "transaction_id"]]),
    (fields(transaction(), twice="merchant", first=1).replace('"merchant": 1, ', '"merchant": 1, "merchant": 2, '),
     [["body", "merchant"]]),
    ("[" + json.dumps(transaction()) + ", " + fields(transaction(), twice="V2", first=5) + "]", [["body", 1, "V2"]]),
    ("[" + fields(transaction(), twice="V3", first=5) + ", " + fields(transaction(), twice="V4", first=5) + "]",
     [["body", 0, "V3"], ["body", 1, "V4"]]),
    (json.dumps({**transaction(), "V5": "X"}).replace('"X"', '{"a": 1, "b": [{"c": 1, "c": 2}], "a": 3}'),
     [["body", "V5", "a"], ["body", "V5", "b", 0, "c"]]),
], ids=["one-value-first", "same-value", "id", "unknown-field", "batch", "batch-two", "nested"])
def test_an_object_naming_a_field_twice_is_422_naming_it(live, body, locs):
    answer = post(live, body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/json"
    problems = answer.json()["detail"]
    assert [problem["loc"] for problem in problems] == locs
    assert all(problem["type"] == "duplicate_field" and f'"{loc[-1]}" appears more than once' in problem["msg"]
               for problem, loc in zip(problems, locs, strict=True))
    # The worker goes on; the same transaction written once is scored.
    assert post(live, json.dumps(transaction())).status_code == 200


# --- the request head -------------------------------------------------------------------------
def raw_request(port: int, head: bytes, timeout: float = 10) -> bytes:
    """Send ``head`` on a new connection; everything answered until the server closes or
    goes quiet (b"" when it closed without answering)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        try:
            raw.sendall(head)
        except (BrokenPipeError, ConnectionResetError):  # closed while we were still sending
            pass
        try:
            while chunk := raw.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and b"connection: close" not in received.lower():
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def head(extra: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


@pytest.mark.parametrize("extra", [
    b"X-Big: " + b"a" * 300_000 + b"\r\n",  # one huge header
    b"".join(b"X-Many-%d: " % i + b"b" * 1000 + b"\r\n" for i in range(300)),  # many, 300 KB in all
    b"X-Over: " + b"c" * MAX_HEAD_BYTES + b"\r\n",  # just over, small enough to arrive whole
], ids=["one-300KB", "many-300KB", "just-over"])
def test_a_request_head_over_the_limit_is_refused_and_the_next_request_is_served(live, extra):
    answer = raw_request(live.port, head(extra))
    status = status_of(answer)
    # 431 from the app (the head arrived whole) or 400 from h11 (it stopped reading it).
    assert status in (400, 431), answer[:300]
    if status == 431:
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
            "detail": f"the request line and headers exceed {MAX_HEAD_BYTES} bytes"}
    normal = raw_request(live.port, head(b"X-Ok: 1\r\n"))
    assert status_of(normal) == 200 and normal.endswith(b'{"status":"alive"}')


def test_a_head_just_under_the_limit_is_served(live):
    request = head(b"X-Fill: ")
    fill = MAX_HEAD_BYTES - len(request) - len(b"\r\n") - 64
    answer = raw_request(live.port, head(b"X-Fill: " + b"d" * fill + b"\r\n"))
    assert status_of(answer) == 200, answer[:300]


def test_fraud_serve_itself_refuses_a_300_kb_header(tmp_path):
    """The command, not only its config: whichever HTTP implementation is installed, the head
    is bounded (the service answers /healthz without a model)."""
    port = free_port()
    process = start_service(serve_conf(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}"), port, tmp_path / "log")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "log").read_text()[-2000:]
            assert time.monotonic() < deadline, "fraud-serve did not answer within 90 s"
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        for extra in (b"X-Big: " + b"a" * 300_000 + b"\r\n", b"X-Over: " + b"c" * MAX_HEAD_BYTES + b"\r\n"):
            assert status_of(raw_request(port, head(extra))) in (400, 431)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "alive"}
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- routing errors are JSON too --------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "status", "allow"), [
    ("GET", "/nope", 404, None), ("POST", "/v1/scores", 404, None), ("GET", "/v1/models", 404, None),
    ("GET", "/v1/score", 405, "POST"), ("DELETE", "/v1/score", 405, "POST"), ("PUT", "/healthz", 405, "GET, HEAD"),
    ("POST", "/", 405, "GET, HEAD"), ("OPTIONS", "/v1/model", 405, "GET, HEAD"),
], ids=["unknown", "near-miss", "plural", "get-score", "delete", "put", "post-page", "options"])
def test_a_routing_error_is_json_in_the_api_format(live, method, path, status, allow):
    answer = requests.request(method, f"{live.url}{path}", headers=auth(), timeout=10, allow_redirects=False)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"detail"} and isinstance(answer.json()["detail"], str)
    allowed = answer.headers.get("allow")
    assert (allowed and set(allowed.split(", "))) == (allow and set(allow.split(", ")))


def test_only_the_page_is_html(live):
    requests.get(f"{live.url}/nope", timeout=10)
    page = requests.get(f"{live.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert requests.get(f"{live.url}/metrics", timeout=10).headers["content-type"] == "application/json"  # 401
    text = requests.get(f"{live.url}/metrics", headers=auth(), timeout=10).text
    assert 'fraud_serve_errors_total{kind="not_found"}' in text


def test_fraud_serve_exits_3_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_service(serve_conf(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}"), port, tmp_path / "log")
        assert process.wait(timeout=90) == 3, (tmp_path / "log").read_text()[-2000:]
