"""Online history features (#24): the nightly state published from Delta into a real Redis, raw
payments sent through real ``fraud-serve`` processes, every answer compared with the batch.

One generated lake (the Handbook's simulator, 45 days of 150 customers and 300 terminals, the
Handbook's 14 features), a few labels merged later by ``label`` (some known before the day
served, some after), a logistic regression registered and champion, the last day scored by
the batch. Then, on that day:

- parity: every transaction sent in time order to one service, then (the store emptied and
  published again) each to one of two services at random: every feature and probability
  equal to the batch's within 1e-9, every decision the same;
- the history's rules: a retry answered the same and counted once, a late transaction given
  the batch's features, an id re-sent with other contents refused;
- faults: the store stopped (503 within a bounded time, counted, /readyz 503 and back), the
  store restarted empty (refused until published again), a request without a token (neither
  the store nor the model reached).
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from jobs import features as features_job
from jobs import ingest as ingest_job
from jobs import label as label_job
from jobs import score as score_job
from jobs import train as train_job
from jobs.generate import PaymentsRequest, run_payments
from pipelines.core.config import EnsembleSettings, load_settings, with_state_in
from pipelines.core.errors import ConfigError
from pipelines.data.payments_generator import PaymentsParams
from pipelines.features.definitions import feature_columns
from pipelines.model.registry import configure_mlflow, resolve_model
from pipelines.monitoring.skew import Skew, day_skew, read_echo
from pipelines.online.publish import publish_day
from tests.online_store import LocalRedis
from tests.test_serving import TOKEN, auth, free_port, start_service

NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)
FIRST = date(2018, 4, 1)
DAYS = 45
SERVED = FIRST + timedelta(days=DAYS - 1)
SECRET = "online-test-card-key-0123456789"
TOLERANCE = 1e-9


def _conf(folder: Path, settings, store: LocalRedis, secret_file: Path) -> Path:
    path = folder / "serve-payments.toml"
    path.write_text(
        f'[mlflow]\ntracking_uri = "{settings.mlflow.tracking_uri}"\nexperiment = "payments"\n'
        f'model_name = "{settings.mlflow.model_name}"\n'
        f'[serve]\nhost = "127.0.0.1"\nport = 8000\nmax_batch = 100\npoll_seconds = 0.5\n'
        f'[profile]\nkind = "payments"\nid_column = "TRANSACTION_ID"\nevent_time_column = "TX_DATETIME"\n'
        f'card_column = "CUSTOMER_ID"\nterminal_column = "TERMINAL_ID"\namount_column = "TX_AMOUNT"\n'
        f'label_column = "TX_FRAUD"\ncard_key_secret_file = "{secret_file}"\n'
        f'[online]\nurl = "{store.url}"\npassword_file = "{store.password_file}"\nkey_prefix = "t"\n'
        f'timeout_ms = 200\necho_sample = 1.0\necho_dir = "{folder / "echo"}"\n')
    return path


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("online")
    store = LocalRedis(folder / "redis").start()
    secret_file = folder / "card-key"
    secret_file.touch(mode=0o600)
    secret_file.write_text(SECRET + "\n")
    base = with_state_in(load_settings("payments"), folder)
    settings = replace(
        base,
        train=replace(base.train, candidates={"logistic_regression": {"regParam": [0.01]}},
                      ensemble=EnsembleSettings(), parallel_fits=1),
        online=replace(base.online, url=store.url, password_file=str(store.password_file), key_prefix="t"),
        profile=replace(base.profile, card_key_secret_file=str(secret_file)))
    landing = folder / "landing"
    files = run_payments(spark, PaymentsRequest(PaymentsParams(customers=150, terminals=300, days=DAYS, seed=7),
                                                landing))
    ingest_job.run_payments(spark, settings, inputs=[str(landing)], secret=SECRET.encode(), ingested_at=NOW)
    # Labels learnt later: chargebacks of the days in the terminals' windows, half known before
    # the day served began, half after it (which the day must not count).
    transactions = spark.read.format("delta").load(settings.tables.transactions_path)
    window_ids = [r[0] for r in transactions.filter(F.col("txn_date").between(SERVED - timedelta(days=20),
                                                                             SERVED - timedelta(days=8)))
                  .filter(F.col("label") == 0).orderBy("transaction_id").limit(60).collect()]
    for n, (ids, known) in enumerate([(window_ids[:30], datetime(2018, 5, 14, 12, tzinfo=timezone.utc)),
                                      (window_ids[30:], datetime(2018, 5, 15, 6, tzinfo=timezone.utc))]):
        path = folder / f"labels-{n}.csv"
        path.write_text("transaction_id,Class\n" + "".join(f"{i},1\n" for i in ids))
        label_job.run(spark, settings, file=str(path), labelled_at=known)
    features_job.run(spark, settings, days=None, computed_at=NOW)
    configure_mlflow(settings.mlflow)
    outcome = train_job.run(spark, settings, commit="test")
    MlflowClient().set_registered_model_alias(settings.mlflow.model_name, settings.mlflow.champion_alias,
                                              outcome.model_version)
    ref = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}/{outcome.model_version}")
    score_job.run(spark, settings, days=[SERVED], model_ref=ref, scored_at=NOW)
    columns = feature_columns(settings.features)
    batch_features = {r["transaction_id"]: r.asDict() for r in spark.read.format("delta")
                      .load(settings.tables.path(settings.tables.features)).filter(F.col("txn_date") == SERVED)
                      .select("transaction_id", "amount", *columns).collect()}
    scored = {r["transaction_id"]: (r["fraud_probability"], r["is_fraud"]) for r in spark.read.format("delta")
              .load(settings.tables.scored_path).filter(F.col("txn_date") == SERVED).collect()}
    with open(files[-1]) as handle:
        raw = sorted(csv.DictReader(handle), key=lambda r: (r["TX_DATETIME"], r["TRANSACTION_ID"]))
    payments = [{"transaction_id": r["TRANSACTION_ID"], "event_time": r["TX_DATETIME"], "card": r["CUSTOMER_ID"],
                 "terminal_id": r["TERMINAL_ID"], "amount": float(r["TX_AMOUNT"])} for r in raw]
    assert len(payments) == len(batch_features) == len(scored) > 100
    conf = _conf(folder, settings, store, secret_file)
    yield {"spark": spark, "settings": settings, "store": store, "conf": conf, "folder": folder,
           "payments": payments, "features": batch_features, "scored": scored, "columns": columns,
           "version": str(outcome.model_version)}
    store.stop()


def _fresh_state(world) -> None:
    world["store"].client().flushdb()
    run = publish_day(world["spark"], world["settings"], SERVED, published_at=NOW)
    assert run.cards > 0 and run.terminals > 0 and run.card_entries > 0


class Services:
    def __init__(self, world, count: int) -> None:
        self.urls, self.processes = [], []
        for n in range(count):
            port = free_port()
            self.processes.append(start_service(world["conf"], port, world["folder"] / f"serve-{n}-{port}.log"))
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        for url in self.urls:
            while True:
                try:
                    if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"{url} not ready"
                time.sleep(0.2)
        self.session = requests.Session()

    def post(self, payment, url: str | None = None, token: str = TOKEN) -> requests.Response:
        return self.session.post(f"{url or self.urls[0]}/v1/score", json=payment, headers=auth(token), timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=30)


def _check_parity(world, answers: dict[str, dict]) -> None:
    differences = []
    for transaction_id, answer in answers.items():
        batch = world["features"][transaction_id]
        for name in ["amount", *world["columns"]]:
            if abs(answer["features"][name] - float(batch[name])) > TOLERANCE:
                differences.append((transaction_id, name, answer["features"][name], batch[name]))
        probability, flagged = world["scored"][transaction_id]
        if abs(answer["fraud_probability"] - probability) > TOLERANCE or answer["is_fraud"] != flagged:
            differences.append((transaction_id, "score", answer["fraud_probability"], probability))
    assert len(answers) == len(world["features"])
    assert differences == [], f"{len(differences)} differences, first: {differences[:5]}"


def test_every_transaction_of_the_day_gets_the_batch_features_and_score_with_one_and_with_two_services(world):
    _fresh_state(world)
    one = Services(world, 1)
    try:
        answers = {}
        for payment in world["payments"]:
            response = one.post(payment)
            assert response.status_code == 200, response.text
            answers[payment["transaction_id"]] = response.json()
        _check_parity(world, answers)
        assert {a["model_version"] for a in answers.values()} == {world["version"]}
        # A retry: the first answer again, counted once (the next transaction's counts agree too).
        first = world["payments"][0]
        time.sleep(0.2)  # the answer is kept right after it is sent
        assert one.post(first).json() == answers[first["transaction_id"]]
        metrics = requests.get(f"{one.urls[0]}/metrics", headers=auth(), timeout=5).text
        assert "fraud_serve_transactions_replayed_total 1.0" in metrics
        # The same id with another amount is another transaction under a used id: refused.
        conflict = one.post({**first, "amount": first["amount"] + 1})
        assert conflict.status_code == 409 and "already received" in conflict.text
        # The sample the nightly skew check reads: every answer here (echo_sample = 1).
        echoed = list((world["folder"] / "echo" / SERVED.isoformat()).glob("*.jsonl"))
        assert sum(len(p.read_text().splitlines()) for p in echoed) == len(answers)
        _check_skew_watch(world, answers)
    finally:
        one.stop()

    _fresh_state(world)
    two = Services(world, 2)
    try:
        chooser = random.Random(5)
        answers = {}
        for payment in world["payments"]:
            response = two.post(payment, url=chooser.choice(two.urls))
            assert response.status_code == 200, response.text
            answers[payment["transaction_id"]] = response.json()
        _check_parity(world, answers)
    finally:
        two.stop()


def _check_skew_watch(world, answers: dict[str, dict]) -> None:
    """The nightly form of parity: no skew on the sample; one answer tampered with, one alert."""
    spark, settings = world["spark"], world["settings"]
    features_day = (spark.read.format("delta").load(settings.tables.path(settings.tables.features))
                    .filter(F.col("txn_date") == SERVED))
    feature_set = next(iter(answers.values()))["feature_set"]
    columns = ["amount", *world["columns"]]
    echoed = read_echo(str(world["folder"] / "echo"), SERVED, feature_set)
    assert day_skew(spark, echoed, features_day, columns) == Skew(len(answers), 0, 0)
    first = echoed[0]
    bent = {**first, "features": {**first["features"], "card_tx_count_7d": first["features"]["card_tx_count_7d"] + 1}}
    skew = day_skew(spark, [bent, *echoed[1:], {**first, "transaction_id": "nowhere"}], features_day, columns)
    assert (skew.compared, skew.differing, skew.missing) == (len(answers) + 1, 1, 1)
    assert f"transaction {first['transaction_id']}: card_tx_count_7d" in skew.reason


def test_a_late_transaction_gets_the_batch_features_and_a_batch_is_taken_in_time_order(world):
    _fresh_state(world)
    service = Services(world, 1)
    try:
        by_card: dict[str, list[dict]] = {}
        for payment in world["payments"]:
            by_card.setdefault(payment["card"], []).append(payment)
        _, busiest = max(by_card.items(), key=lambda item: len(item[1]))
        assert len(busiest) >= 3
        # The card's last transaction first, then the others: each earlier one arrives late,
        # yet gets exactly the batch's features (the ones after it in time do not count).
        last = service.post(busiest[-1]).json()
        late = service.post(list(reversed(busiest[:-1]))).json()  # a batch, sent newest first
        answers = {a["transaction_id"]: a for a in [last, *late]}
        for payment in busiest[:-1]:
            batch = world["features"][payment["transaction_id"]]
            got = answers[payment["transaction_id"]]["features"]
            assert all(abs(got[name] - float(batch[name])) <= TOLERANCE for name in world["columns"]), payment
        # The last one was answered before the others arrived: its card counts lack them.
        assert last["features"]["card_tx_count_1d"] <= world["features"][busiest[-1]["transaction_id"]][
            "card_tx_count_1d"]
    finally:
        service.stop()


def test_a_stopped_store_is_a_bounded_503_and_an_empty_one_is_refused_until_published(world):
    _fresh_state(world)
    store, payments = world["store"], world["payments"]
    service = Services(world, 1)
    try:
        assert service.post(payments[0]).status_code == 200
        # No token: refused before the store or the model (the store sees no command).
        client = store.client()
        before = _store_commands(client)
        assert service.post(payments[1], token="wrong-" + "t" * 30).status_code == 401
        assert _store_commands(client) == before
        store.stop()
        started = time.monotonic()
        response = service.post(payments[1])
        assert response.status_code == 503 and time.monotonic() - started < 3
        assert "did not answer in time" in response.text
        assert requests.get(f"{service.urls[0]}/readyz", timeout=5).status_code == 503
        metrics = requests.get(f"{service.urls[0]}/metrics", headers=auth(), timeout=5).text
        assert 'fraud_serve_errors_total{kind="store_unavailable"}' in metrics
        # Back, but empty (no persistence here): ready again, yet no score without the day's state.
        store.start()
        deadline = time.monotonic() + 10
        while requests.get(f"{service.urls[0]}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        refused = service.post(payments[1])
        assert refused.status_code == 503 and "no published state" in refused.text
        publish_day(world["spark"], world["settings"], SERVED, published_at=NOW)
        assert service.post(payments[1]).status_code == 200
        # Full (noeviction): the step that would append is refused, and so is the score.
        client = store.client()
        client.config_set("maxmemory", "1")
        full = service.post(payments[2])
        assert full.status_code == 503 and "full" in full.text
        client.config_set("maxmemory", "256mb")
        assert service.post(payments[2]).status_code == 200
        metrics = requests.get(f"{service.urls[0]}/metrics", headers=auth(), timeout=5).text
        assert 'fraud_serve_errors_total{kind="store_full"} 1.0' in metrics
    finally:
        service.stop()


def _store_commands(client) -> dict[str, int]:
    """Calls per command the store served, but the INFO that asks."""
    return {name: stats["calls"] for name, stats in client.info("commandstats").items() if name != "cmdstat_info"}


def test_publish_without_a_store_or_for_another_profile_is_refused(world, tmp_path):
    settings = world["settings"]
    with pytest.raises(ConfigError, match="no online store"):
        publish_day(world["spark"], replace(settings, online=replace(settings.online, url=None)), SERVED,
                    published_at=NOW)
    with pytest.raises(ConfigError, match="payments profile"):
        publish_day(world["spark"], load_settings("local"), SERVED, published_at=NOW)
