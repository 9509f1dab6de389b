"""fraud-serve's HTTP layer, quick and without Spark or Java: uvicorn on a loopback port,
serving a logistic model written here in numpy. A JSON object naming a field twice, over real HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import uvicorn

from pipelines.config import load_serving_settings
from pipelines.portable.decision import Decision
from pipelines.portable.model import PortableModel
from pipelines.portable.stages import Assembler, Logistic
from pipelines.schema import FEATURE_COLS
from pipelines.serving.app import create_app
from pipelines.serving.models import LoadedModel, ModelHolder
from tests.test_serving import TOKEN, auth, free_port, serve_conf


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
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
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
