"""The MLflow UI on a store that ``train`` wrote, as a data scientist opens it.

``train`` runs in this process into a temporary SQLite store (the sample, one small candidate);
the store is then checked through MLflow's client (the experiment's kind, every run's input
dataset) and through a real ``mlflow server`` on a free loopback port, opened with headless
Chromium (a fresh profile each time, like a first visit). Skipped when ``chromium`` is not on
PATH (Debian: ``apt-get install --no-install-recommends chromium``); the test installs nothing.

To look at the pages too: ``MLFLOW_UI_SCREENSHOTS=/some/folder pytest tests/test_mlflow_ui.py``
saves a PNG of each page opened there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.tracking import MlflowClient

from jobs import ingest, train
from pipelines.core.config import EnsembleSettings
from pipelines.model.registry import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, configure_mlflow
from tests.conftest import SAMPLE_CSV, settings_in

pytestmark = pytest.mark.e2e

INGESTED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
# One quick candidate: what is checked is the UI's view of the runs, not the search.
ONE_CANDIDATE = {"logistic_regression": {"regParam": [0.0]}}
CHROMIUM = shutil.which("chromium")
SERVER_START_SECONDS = 60
BROWSER_SECONDS = 60
# Virtual time: the page's scripts run until the runs table is drawn, then Chromium dumps it.
VIRTUAL_TIME_BUDGET_MS = 10_000


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """The sample ingested and one ``train`` run, in a temporary store: what the UI shows."""
    folder = tmp_path_factory.mktemp("mlflow_ui")
    settings = settings_in(folder)
    settings = replace(settings, train=replace(settings.train, candidates=ONE_CANDIDATE, ensemble=EnsembleSettings(),
                                               refit_on_all_days=False))
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    experiment_id = configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="0123abc")
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    parent = client.get_run(outcome.run_id)
    children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{outcome.run_id}'")
    return SimpleNamespace(
        folder=folder, settings=settings, client=client, experiment_id=experiment_id, parent=parent,
        children=children, table_version=parent.data.tags["source.table_version"],
    )


def test_train_marks_its_experiment_as_model_training(trained):
    experiment = trained.client.get_experiment(trained.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND == "custom_model_development"


def test_an_unmarked_experiment_is_marked_and_a_chosen_kind_is_kept(tmp_path):
    settings = settings_in(tmp_path).mlflow
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment_id = client.create_experiment(settings.experiment)  # as a store from before the mark
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags

    assert configure_mlflow(settings) == experiment_id
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND

    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "genai_development")  # someone's choice
    configure_mlflow(settings)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_every_run_names_the_delta_table_version_it_trained_on(trained):
    expected_name = f"transactions@v{trained.table_version}"
    assert {child.info.run_name for child in trained.children} == set(ONE_CANDIDATE)
    for run in [trained.parent, *trained.children]:
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == expected_name
        assert dataset.source_type == "delta_table"
        assert {tag.key: tag.value for tag in dataset_input.tags} == {"mlflow.data.context": "training"}
        source = mlflow.data.get_source(dataset_input)
        assert isinstance(source, DeltaDatasetSource)
        assert source.path == trained.settings.tables.transactions_path
        assert source.path == run.data.tags["source.table_path"]
        assert str(source.delta_table_version) == trained.table_version
        columns = [column["name"] for column in json.loads(dataset.schema)["mlflow_colspec"]]
        assert {"transaction_id", "txn_date", "Amount", "Class"} <= set(columns)
    # One dataset: the same name and digest in every run.
    assert len({run.inputs.dataset_inputs[0].dataset.digest for run in [trained.parent, *trained.children]}) == 1


@pytest.fixture(scope="module")
def ui(trained):
    """A real MLflow tracking server on the store, on a free loopback port; stopped afterwards."""
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install --no-install-recommends chromium)")
    port = _free_port()
    log_path = trained.folder / "mlflow_server.log"
    # No job runner: the UI's pages need none, and it starts a dozen processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", trained.settings.mlflow.tracking_uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(server, base_url, log_path)
        yield SimpleNamespace(base_url=base_url, folder=trained.folder)
    finally:
        _stop(server)


def test_the_runs_view_names_each_runs_dataset_next_to_it(trained, ui):
    url = f"{ui.base_url}/#/experiments/{trained.experiment_id}?workflowType=machine_learning"
    page = _render(url, ui.folder / "profile-runs", picture="runs_view.png")

    assert page.title.startswith("Runs - "), page.title
    assert "Token Usage" not in page.text
    row = " ".join(page.rows[trained.parent.info.run_id])  # the run's cells, across the pinned columns
    assert trained.parent.info.run_name in row
    digest = trained.parent.inputs.dataset_inputs[0].dataset.digest
    assert f"transactions@v{trained.table_version} ({digest})" in row
    for column in ("Run Name", "Dataset"):
        assert column in page.text


def test_a_plain_link_still_opens_on_the_genai_overview_in_mlflow_3_17(trained, ui):
    """MLflow 3.17's UI opens an experiment by its sidebar switch (GenAI / Model training, in the
    link's ``workflowType`` or the browser's memory, GenAI at first), not by the experiment's
    kind tag: docs/training.md says to open the runs with ``?workflowType=machine_learning``. When
    this fails, MLflow follows the tag: that advice can go."""
    page = _render(f"{ui.base_url}/#/experiments/{trained.experiment_id}", ui.folder / "profile-plain",
                   picture="plain_link.png")
    assert page.title.startswith("Overview - "), page.title
    assert "Token Usage" in page.text


class _Page(HTMLParser):
    """A rendered page: its title, its text, and the text and titles of each runs-table row.

    The runs table (ag-grid) draws a run as several elements with ``row-id`` = the run's id
    (the pinned name column and the scrolling columns); their contents are gathered per run.
    """

    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                       "source", "track", "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.title = ""
        self.rows: dict[str, list[str]] = defaultdict(list)
        self._texts: list[str] = []
        self._open: list[tuple[str, str | None]] = []  # open tags, with the run row each is in
        self.feed(html)
        self.text = " ".join(self._texts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        row = attributes.get("row-id") or (self._open[-1][1] if self._open else None)
        if row and attributes.get("title"):
            self.rows[row].append(attributes["title"])
        if tag not in self._VOID:
            self._open.append((tag, row))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text or not self._open or self._open[-1][0] in ("script", "style"):
            return
        if self._open[-1][0] == "title" and not self.title:  # the document's, not an icon's
            self.title = text
        self._texts.append(text)
        if self._open[-1][1]:
            self.rows[self._open[-1][1]].append(text)


def _render(url: str, profile: Path, *, picture: str) -> _Page:
    """The page's DOM after its scripts ran, in a fresh Chromium profile (and a PNG of it, when
    ``MLFLOW_UI_SCREENSHOTS`` names a folder)."""
    page = _Page(_chromium(profile, "--dump-dom", url))
    if folder := os.environ.get("MLFLOW_UI_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        _chromium(profile.with_name(f"{profile.name}-picture"), f"--screenshot={Path(folder) / picture}", url)
    return page


def _chromium(profile: Path, *arguments: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
               "--window-size=1600,1000", f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", *arguments]
    browser = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = browser.communicate(timeout=BROWSER_SECONDS)
    except subprocess.TimeoutExpired:
        _stop(browser)
        raise AssertionError(f"chromium did not finish within {BROWSER_SECONDS} s: {command}") from None
    assert browser.returncode == 0, f"chromium exited {browser.returncode}: {err[-2000:]}"
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(server: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited {server.returncode}: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer within {SERVER_START_SECONDS} s: "
                         f"{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """End ``process`` and what it started (its own process group): politely, then for good."""
    for sig, seconds in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and _group_alive(process):
            time.sleep(0.2)
        if not _group_alive(process):
            break
    process.wait(timeout=5)


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reaps the leader once it has exited
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True
