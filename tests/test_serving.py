"""fraud-serve as the payment platform and an operator meet it: a real uvicorn process on a
loopback port, a real registry (SQLite) with versions trained here on the real sample, real
HTTP. Authentication, validation, metrics, the same probability as the nightly Delta table,
a swap under load with no failed request, a version that fails to load, and the analysts'
page in headless Chromium.

Versions: 1 is a small tree model (a forest, XGBoost or their ensemble), 2 a logistic
regression; 3 is registered without a portable form, as a tool other than train would
register it; 4 is version 2's model with a threshold tag edited after registration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.spark
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from jobs import ingest, score, train
from pipelines.core.config import EnsembleSettings
from pipelines.data.schema import FEATURE_COLS
from pipelines.model.portable.model import PortableModel
from pipelines.model.registry import configure_mlflow, load_model, resolve_model
from tests.conftest import SAMPLE_CSV, quick_settings_in
from tests.test_end_to_end import INGESTED_AT

pytestmark = pytest.mark.e2e

TOKEN = "test-token-" + "x" * 32
SCORED_AT = INGESTED_AT.replace(hour=2)
START_SECONDS = 90
SWAP_SECONDS = 60
FRAUD_SERVE = str(Path(sys.executable).with_name("fraud-serve"))
CHROMIUM = shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_conf(folder: Path, store: str, *, token_file: Path | None = None, poll_seconds: float = 0.5,
               max_batch: int = 100) -> Path:
    path = folder / "serve.toml"
    token_line = f'token_file = "{token_file}"\n' if token_file else ""
    path.write_text(
        f'[mlflow]\ntracking_uri = "{store}"\nexperiment = "fraud_detection"\nmodel_name = "fraud_detector"\n'
        f'[serve]\nhost = "127.0.0.1"\nport = 8000\nmax_batch = {max_batch}\npoll_seconds = {poll_seconds}\n'
        f'max_body_bytes = 200000\n{token_line}')
    return path


def start_service(conf: Path, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "FRAUD_SERVE_TOKEN": TOKEN, **(env or {})}
    return subprocess.Popen([FRAUD_SERVE, "--env", str(conf), "--port", str(port)], env=environment,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=conf.parent)


def serving_version(url: str) -> str | None:
    answer = requests.get(f"{url}/v1/model", headers=auth(), timeout=2)
    return answer.json()["model_version"] if answer.status_code == 200 else None


def wait_ready(url: str, *, version: str, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200 and serving_version(url) == version:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not serving version {version} within {seconds} s")


@pytest.fixture(scope="module")
def service(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving")
    settings = quick_settings_in(folder)
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    # Version 1 has trees (a forest, XGBoost or their mean, whichever validates best), version 2
    # is a logistic regression.
    trees = {"random_forest": {"numTrees": [20], "maxDepth": [5]}, "xgboost": {"n_estimators": [20], "max_depth": [3]}}
    train.run(spark, replace(settings, train=replace(settings.train, candidates=trees,
                                                     ensemble=EnsembleSettings(members=tuple(trees)))), commit="test")
    train.run(spark, settings, commit="test")
    client = MlflowClient()
    # Version 3: the same pipeline registered with the spark flavor only (no portable/).
    with mlflow.start_run():
        info = mlflow.spark.log_model(load_model(resolve_model(settings.mlflow, "models:/fraud_detector/1")),
                                      artifact_path="spark_only", pip_requirements=["pyspark"])
    broken = mlflow.register_model(info.model_uri, "fraud_detector", tags={"decision_threshold": "0.5"})
    assert str(broken.version) == "3"
    second = client.get_model_version("fraud_detector", "2")
    edited = mlflow.register_model(second.source, "fraud_detector", tags={**second.tags, "decision_threshold": "0.3"})
    assert str(edited.version) == "4"
    client.set_registered_model_alias("fraud_detector", "champion", "1")
    # The nightly batch's scores of version 1, to compare with the service's.
    v1 = resolve_model(settings.mlflow, "models:/fraud_detector/1")
    score.run(spark, settings, days=[INGESTED_AT.date().replace(year=2013, month=9, day=1)], model_ref=v1,
              scored_at=SCORED_AT)
    portables = {}
    for version in ("1", "2"):
        local = mlflow.artifacts.download_artifacts(f"models:/fraud_detector/{version}")
        portables[version] = PortableModel.load(Path(local) / "portable")
    port = free_port()
    log = folder / "serve.log"
    process = start_service(serve_conf(folder, settings.mlflow.tracking_uri), port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, version="1")
        yield SimpleNamespace(url=url, settings=settings, client=client, portables=portables, log=log,
                              process=process, folder=folder)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def example(service, index: int = 0) -> dict[str, float]:
    features = service.portables["1"].parity.features[index]
    return dict(zip(FEATURE_COLS, features.tolist(), strict=True))


def expected(service, version: str, transaction: dict[str, float]) -> float:
    features = np.asarray([[transaction[c] for c in FEATURE_COLS]])
    portable = service.portables[version]
    return float(portable.decision.apply(portable.sample_probability(features))[0][0])


# --- authentication ---------------------------------------------------------------------------
def test_health_needs_no_token(service):
    assert requests.get(f"{service.url}/healthz").json() == {"status": "alive"}
    assert requests.get(f"{service.url}/readyz").json() == {"ready": True}


@pytest.mark.parametrize("headers", [
    {}, auth("wrong-token-" + "y" * 30), auth(TOKEN[:-1]), auth(TOKEN + "z"), {"Authorization": TOKEN},
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
], ids=["none", "wrong", "prefix", "longer", "no-scheme", "basic", "empty"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/metrics"), ("GET", "/v1/model"), ("POST", "/v1/score")])
def test_every_other_endpoint_refuses_a_missing_or_wrong_token_alike(service, headers, method, path):
    answer = requests.request(method, f"{service.url}{path}", headers=headers, json=example(service))
    assert answer.status_code == 401
    assert answer.json() == {"detail": "missing or invalid bearer token"}
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in answer.text


# --- scoring --------------------------------------------------------------------------------
def test_one_transaction_gets_its_probability_decision_and_version(service):
    transaction = example(service)
    answer = requests.post(f"{service.url}/v1/score", headers=auth(), json={**transaction, "Time": 12.0,
                                                                             "transaction_id": "t-1"})
    assert answer.status_code == 200
    result = answer.json()
    assert set(result) == {"transaction_id", "fraud_probability", "is_fraud", "threshold", "model_name",
                           "model_version", "model_run_id"}
    assert (result["transaction_id"], result["model_name"], result["model_version"]) == ("t-1", "fraud_detector", "1")
    assert result["model_run_id"] == service.client.get_model_version("fraud_detector", "1").run_id
    assert abs(result["fraud_probability"] - expected(service, "1", transaction)) <= 1e-12
    assert result["is_fraud"] == (result["fraud_probability"] >= result["threshold"])


def test_a_batch_is_answered_in_order(service):
    batch = [example(service, i) for i in range(20)]
    answer = requests.post(f"{service.url}/v1/score", headers=auth(), json=batch)
    assert answer.status_code == 200
    results = answer.json()
    assert [r["fraud_probability"] for r in results] == pytest.approx(
        [expected(service, "1", t) for t in batch], abs=1e-12)


def bad(service, body: str) -> requests.Response:
    return requests.post(f"{service.url}/v1/score", headers={**auth(), "Content-Type": "application/json"},
                         data=body)


@pytest.mark.parametrize(("change", "loc", "message"), [
    (lambda t: t.pop("V3"), ["body", "V3"], "field required"),
    (lambda t: t.update(merchant="x"), ["body", "merchant"], "unknown field"),
    (lambda t: t.update(V4="1.5"), ["body", "V4"], "must be a number"),
    (lambda t: t.update(V5=True), ["body", "V5"], "must be a number"),
    (lambda t: t.update(V6=None), ["body", "V6"], "must be a number"),
    (lambda t: t.update(Amount=1e39), ["body", "Amount"], "finite number"),
    (lambda t: t.update(transaction_id=[1]), ["body", "transaction_id"], "string or an integer"),
], ids=["missing", "unknown", "string", "boolean", "null", "too-large", "bad-id"])
def test_a_bad_transaction_is_422_naming_the_field(service, change, loc, message):
    transaction = example(service)
    change(transaction)
    answer = bad(service, json.dumps(transaction))
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == loc and message in problem["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400])
def test_nan_and_infinities_are_422_naming_the_field(service, literal):
    body = json.dumps(example(service)).replace(f'"V7": {example(service)["V7"]!r}', f'"V7": {literal}')
    assert literal in body
    answer = bad(service, body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "V7"]


def test_batch_problems_name_the_transaction_and_an_oversized_batch_is_refused(service):
    batch = [example(service, i) for i in range(3)]
    batch[2]["V1"] = "oops"
    answer = bad(service, json.dumps(batch))
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", 2, "V1"]
    too_many = bad(service, json.dumps([example(service)] * 101))
    assert too_many.status_code == 422 and "at most 100 transactions, got 101" in too_many.json()["detail"][0]["msg"]
    for body in ("[]", "not json", "[1, 2]", '"text"'):
        assert bad(service, body).status_code == 422, body
    huge = bad(service, "[" + ",".join([json.dumps(example(service))] * 400) + "]")
    assert huge.status_code == 413
    # Nothing of it crashed the worker.
    assert requests.post(f"{service.url}/v1/score", headers=auth(), json=example(service)).status_code == 200


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe not utf-8", b"", b"[null]",
    json.dumps({"\ud800": 1}).encode(), json.dumps({"V1": 10 ** 400}).encode(),
    json.dumps([{f"extra{i}": i for i in range(2000)}] * 3).encode(),
], ids=["deep", "not-utf8", "empty", "null-row", "surrogate-key", "huge-int", "many-keys"])
def test_a_hostile_body_is_a_422_and_the_worker_goes_on(service, body):
    answer = bad(service, body)
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["detail"][0]["loc"][0] == "body"
    assert requests.post(f"{service.url}/v1/score", headers=auth(), json=example(service)).status_code == 200


def test_the_model_endpoint_describes_the_version_serving(service):
    described = requests.get(f"{service.url}/v1/model", headers=auth()).json()
    assert (described["model_version"], described["feature_cols"]) == ("1", FEATURE_COLS)
    assert described["threshold"] == service.portables["1"].decision.real_threshold
    assert set(described["example"]) == set(FEATURE_COLS)
    # Made up (each feature's median), not a training row.
    real_rows = service.portables["1"].parity.features[:1000].tolist()
    assert [described["example"][c] for c in FEATURE_COLS] not in real_rows


# --- online equals batch ------------------------------------------------------------------------
def test_online_scores_equal_the_nightly_delta_table(spark, service):
    """The same transactions through the HTTP API and through score's Delta table: the same
    probability to 1e-9 and the same decision, from the same version."""
    tables = service.settings.tables
    scored = spark.read.format("delta").load(tables.scored_path)
    rows = (spark.read.format("delta").load(tables.transactions_path)
            .join(scored, "transaction_id").orderBy("transaction_id").limit(90).toPandas())
    # The frauds too: the rows the decision is about.
    frauds = (spark.read.format("delta").load(tables.transactions_path).where("Class = 1")
              .join(scored, "transaction_id").limit(40).toPandas())
    for frame in (rows, frauds):
        batch = [{**{c: float(row[c]) for c in FEATURE_COLS}, "transaction_id": row["transaction_id"]}
                 for _, row in frame.iterrows()]
        # 90 rows are parsed and scored on a worker thread, 40 on the event loop (app.INLINE_BYTES).
        online = requests.post(f"{service.url}/v1/score", headers=auth(), json=batch).json()
        for result, (_, row) in zip(online, frame.iterrows(), strict=True):
            assert result["transaction_id"] == row["transaction_id"]
            assert abs(result["fraud_probability"] - row["fraud_probability"]) <= 1e-9
            assert result["is_fraud"] == row["is_fraud"]
            assert result["threshold"] == row["threshold"]
            assert (result["model_version"], result["model_run_id"]) == (row["model_version"], row["model_run_id"])
    assert frauds["is_fraud"].any()


# --- metrics --------------------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_errors_version_and_scores(service):
    before = requests.get(f"{service.url}/metrics", headers=auth()).text
    requests.post(f"{service.url}/v1/score", headers=auth(), json=[example(service, i) for i in range(5)])
    bad(service, "{}")
    requests.get(f"{service.url}/v1/model")
    after = requests.get(f"{service.url}/metrics", headers=auth())
    assert after.headers["Content-Type"].startswith("text/plain")
    text = after.text
    assert metric(text, "fraud_serve_requests_total", path="/v1/score", status="200") >= \
        metric(before, "fraud_serve_requests_total", path="/v1/score", status="200") + 1
    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("fraud_serve_errors_total", kind="invalid") == 1
    assert grew("fraud_serve_errors_total", kind="unauthorized") == 1
    assert grew("fraud_serve_request_seconds_count", path="/v1/score") == 2
    assert grew("fraud_serve_transactions_scored_total", model_version="1") == 5
    assert grew("fraud_serve_fraud_probability_count") == 5
    assert metric(text, "fraud_serve_model_info", model_version="1") == 1


def test_a_keep_alive_connection_idle_for_longer_than_uvicorns_default_is_still_open(service):
    """uvicorn closes idle connections after 5 s by default: a load balancer reusing one then
    gets an empty answer. [serve] keep_alive_seconds (75 s) keeps them."""
    session = requests.Session()
    assert session.post(f"{service.url}/v1/score", headers=auth(), json=example(service)).status_code == 200
    time.sleep(6)
    def answer(raw: socket.socket) -> bytes:
        """One whole response (headers and body may come in separate packets); b"" if closed."""
        received = b""
        while b'"alive"}' not in received:
            chunk = raw.recv(1024)
            if not chunk:
                break
            received += chunk
        return received

    with socket.create_connection(("127.0.0.1", int(service.url.rsplit(":", 1)[1])), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in answer(raw)
        time.sleep(6)
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in answer(raw)


# --- the analysts' page, in a real browser -------------------------------------------------------
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_an_analyst_scores_an_edited_transaction_on_the_page(service, tmp_path):
    from playwright.sync_api import sync_playwright

    transaction = example(service, 3)
    transaction["Amount"] = 1234.5
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(f"{service.url}/")
            page.fill("#token", "not-the-token-at-all")
            page.click("#connect")
            page.wait_for_selector("#error:has-text('401')")
            page.fill("#token", TOKEN)
            page.click("#connect")
            page.wait_for_selector("#model:has-text('version 1')")
            assert page.input_value("input[name=V1]") != ""
            page.fill("#paste", json.dumps(transaction))
            page.click("#fill")
            page.fill("input[name=Amount]", "1234.5")
            page.click("#score")
            page.wait_for_selector("#raw-probability")
            shown = float(page.text_content("#raw-probability"))
            assert abs(shown - expected(service, "1", transaction)) <= 1e-12
            assert "fraud" in page.text_content("#result").lower()
            page.screenshot(path=str(os.environ.get("SERVE_PAGE_SCREENSHOT", tmp_path / "page.png")))
            page.fill("input[name=V2]", "abc")
            page.click("#score")
            page.wait_for_selector("#error:has-text('V2: must be a number')")
        finally:
            browser.close()


# --- model updates (these move the alias: keep them last) -----------------------------------------
def test_a_promotion_is_swapped_in_under_load_without_a_failed_request(service):
    transactions = [example(service, i) for i in range(8)]
    want = {v: [expected(service, v, t) for t in transactions] for v in ("1", "2")}
    answers: list[list[tuple[int, str | None, bool]]] = [[], []]
    stop = threading.Event()

    def hammer(slot: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            t = i % len(transactions)
            try:
                answer = session.post(f"{service.url}/v1/score", headers=auth(), json=transactions[t], timeout=10)
            except requests.RequestException:
                answers[slot].append((0, None, False))
                continue
            body = answer.json() if answer.status_code == 200 else {}
            version = body.get("model_version")
            right = version in want and abs(body["fraud_probability"] - want[version][t]) <= 1e-12
            answers[slot].append((answer.status_code, version, right))
            i += 1

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    service.client.set_registered_model_alias("fraud_detector", "champion", "2")
    try:
        wait_ready(service.url, version="2", seconds=SWAP_SECONDS)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    for slot_answers in answers:
        assert slot_answers and all(status == 200 for status, _, _ in slot_answers)
        # Each answer is version 1's or version 2's own probability, never a mix.
        assert all(right for _, _, right in slot_answers)
        versions = [version for _, version, _ in slot_answers]
        switch = versions.index("2")
        assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    text = requests.get(f"{service.url}/metrics", headers=auth()).text
    assert metric(text, "fraud_serve_model_info", model_version="2") == 1
    assert metric(text, "fraud_serve_model_info", model_version="1") == 0
    assert metric(text, "fraud_serve_model_swaps_total") == 2


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(service):
    service.client.set_registered_model_alias("fraud_detector", "champion", "3")
    deadline = time.monotonic() + SWAP_SECONDS
    while time.monotonic() < deadline:
        text = requests.get(f"{service.url}/metrics", headers=auth()).text
        if metric(text, "fraud_serve_model_load_failures_total", model_version="3") >= 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the failure of version 3 never showed in /metrics")
    answer = requests.post(f"{service.url}/v1/score", headers=auth(), json=example(service))
    assert answer.status_code == 200 and answer.json()["model_version"] == "2"
    assert requests.get(f"{service.url}/readyz").json() == {"ready": True}
    assert "version 3 failed to load, version 2 goes on serving" in service.log.read_text()
    assert "has no portable/ artifact" in service.log.read_text()
    # A threshold tag that differs from the portable form's: the batch would decide otherwise.
    service.client.set_registered_model_alias("fraud_detector", "champion", "4")
    deadline = time.monotonic() + SWAP_SECONDS
    while "version 4 failed to load" not in service.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "tags say threshold 0.3" in service.log.read_text()
    assert serving_version(service.url) == "2"
    # A rollback to version 1 is picked up like a promotion.
    service.client.set_registered_model_alias("fraud_detector", "champion", "1")
    wait_ready(service.url, version="1", seconds=SWAP_SECONDS)


def test_the_registered_model_loads_through_pyfunc_without_spark_or_java(service, tmp_path):
    """``mlflow.pyfunc.load_model("models:/fraud_detector@champion")`` in a process where
    pyspark cannot be imported and no Java is on PATH."""
    script = tmp_path / "load.py"
    script.write_text(
        "import sys\n"
        "sys.modules['pyspark'] = None  # any import of pyspark fails\n"
        "import json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({service.settings.mlflow.tracking_uri!r})\n"
        "model = mlflow.pyfunc.load_model('models:/fraud_detector@champion')\n"
        f"rows = pd.DataFrame([{json.dumps(example(service))}])\n"
        "print(json.dumps(model.predict(rows).to_dict(orient='records')))\n")
    environment = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON")}
    environment["PATH"] = str(tmp_path)  # nothing to run on it: no java
    done = subprocess.run([sys.executable, str(script)], env=environment, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (predicted,) = json.loads(done.stdout.strip().splitlines()[-1])
    champion = str(service.client.get_model_version_by_alias("fraud_detector", "champion").version)
    assert abs(predicted["fraud_probability"] - expected(service, champion, example(service))) <= 1e-12
