"""The online features' pieces that need neither Spark nor Redis: where the store's address and
password come from, which definitions can be served, a raw payment's checks, the window
arithmetic, and the stored answer."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from pipelines.core.config import FeatureSettings, HistoryFeatures, OnlineSettings
from pipelines.core.errors import ConfigError
from pipelines.features.definitions import history_features
from pipelines.online.lookup import RawTransaction, check_servable
from pipelines.online.store import store_address
from pipelines.online.windows import MICROS_PER_DAY, Sums, day_start_micros, feature_value, micros, window_of
from pipelines.serving.app import _problem, answer_from, stored_answer
from pipelines.serving.raw import card_key_of, parse_raw

SECRET = b"unit-test-card-key-secret"


def raw(**fields):
    payment = {"transaction_id": "t1", "event_time": "2018-09-24 10:11:12", "card": "4000123412341234",
               "terminal_id": "17", "amount": 57.23, **fields}
    return {k: v for k, v in payment.items() if v is not None}


def parsed(payment, zone="UTC"):
    return parse_raw([payment], True, secret=SECRET, time_zone=zone, problem=_problem, feature_set="fs-x")


def test_a_raw_payment_is_parsed_with_its_card_pseudonymised_as_ingest_does():
    [tx], problems, _ = parsed(raw(card=" 4000123412341234 "))
    assert problems == []
    assert tx.card_key == hmac.new(SECRET, b"4000123412341234", hashlib.sha256).hexdigest() == card_key_of(
        "4000123412341234", SECRET)
    assert (tx.cents, tx.amount, tx.terminal_id) == (5723, 57.23, "17")
    assert tx.event_micros == micros(datetime(2018, 9, 24, 10, 11, 12, tzinfo=ZoneInfo("UTC")))


@pytest.mark.parametrize(("fields", "field"), [
    ({"event_time": "2018-09-24"}, "event_time"), ({"event_time": "yesterday"}, "event_time"),
    ({"amount": 1.234}, "amount"), ({"amount": -1}, "amount"), ({"amount": True}, "amount"),
    ({"amount": float("nan")}, "amount"), ({"terminal_id": "a\tb"}, "terminal_id"),
    ({"transaction_id": ""}, "transaction_id"), ({"card_key": "ab"}, None), ({"other": 1}, "other"),
    ({"terminal_id": None}, "terminal_id"),
])
def test_a_bad_raw_payment_is_refused_naming_the_field(fields, field):
    _, problems, _ = parsed(raw(**fields))
    assert problems
    if field:
        assert any(p["loc"][-1] == field for p in problems), problems


def test_a_time_with_an_offset_is_read_as_ingest_reads_the_wall_clock():
    paris = "Europe/Paris"
    # 02:30 is shown twice on 2018-10-28: the files' wall clock means its first occurrence (+02:00).
    [first], _, _ = parsed(raw(event_time="2018-10-28 02:30:00"), paris)
    [second], _, _ = parsed(raw(event_time="2018-10-28T02:30:00+01:00"), paris)
    [utc], _, _ = parsed(raw(event_time="2018-10-28T00:30:00Z"), paris)
    assert first.event_micros == second.event_micros == utc.event_micros


def test_definitions_the_store_cannot_serve_exactly_are_refused():
    check_servable(FeatureSettings())
    with pytest.raises(ConfigError, match="at least 2"):
        check_servable(replace(FeatureSettings(), terminal=HistoryFeatures(windows_days=(1,), aggregates=("count",),
                                                                            delay_days=1)))
    with pytest.raises(ConfigError, match="fraud_share"):
        check_servable(replace(FeatureSettings(), card=HistoryFeatures(windows_days=(7,),
                                                                        aggregates=("fraud_share",), delay_days=7)))


def test_the_store_address_and_password_come_from_the_environment_a_file_or_a_binding(tmp_path):
    online = OnlineSettings()
    assert store_address(online, {}) is None
    address = store_address(online, {"FRAUD_ONLINE_URL": "redis://db:6379/0", "FRAUD_ONLINE_PASSWORD": "s3cret-pass"})
    assert (address.password, address.shown()) == ("s3cret-pass", "redis://db:6379/0 ($FRAUD_ONLINE_URL)")
    assert "s3cret" not in repr(address)
    with pytest.raises(ConfigError, match="no password"):
        store_address(online, {"FRAUD_ONLINE_URL": "redis://db:6379/0"})
    with pytest.raises(ConfigError, match="redis:// or rediss://"):
        store_address(online, {"FRAUD_ONLINE_URL": "http://db", "FRAUD_ONLINE_PASSWORD": "x"})
    exposed = tmp_path / "password"
    exposed.write_text("from-a-file\n")
    exposed.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644"):
        store_address(replace(online, url="redis://db/0", password_file=str(exposed)), {})
    exposed.chmod(0o600)
    assert store_address(replace(online, url="redis://db/0", password_file=str(exposed)), {}).password == "from-a-file"
    binding = {"p-redis": [{"name": "fraud-online-store", "credentials": {"host": "r.example", "port": 6380,
                                                                          "password": "p@ss/word"}}]}
    bound = store_address(online, {"VCAP_SERVICES": json.dumps(binding)})
    assert bound.password == "p@ss/word" and bound.shown().startswith("redis://r.example:6380/0")


def test_windows_and_features_are_the_batch_arithmetic():
    [card_1d] = [f for f in history_features(FeatureSettings()) if f.column == "card_tx_count_1d"]
    [terminal_7d] = [f for f in history_features(FeatureSettings()) if f.column == "terminal_fraud_share_7d"]
    t = micros(datetime(2018, 9, 24, 10, tzinfo=ZoneInfo("UTC")))
    assert window_of(card_1d, t) == (t - MICROS_PER_DAY, t, True) or window_of(card_1d, t).ties_by_id
    assert window_of(terminal_7d, t).hi == t - 7 * MICROS_PER_DAY
    [mean_7d] = [f for f in history_features(FeatureSettings()) if f.column == "card_mean_amount_7d"]
    assert feature_value(mean_7d, Sums(3, 10_001, 0)) == (10_001 / 3) / 100.0
    assert feature_value(mean_7d, Sums()) == 0.0 and feature_value(terminal_7d, Sums(4, 0, 1)) == 0.25
    # A day that begins at 00:00 local (summer time in Paris: 22:00 UTC the day before).
    assert day_start_micros(date(2018, 9, 24), "Europe/Paris") == micros(
        datetime(2018, 9, 23, 22, tzinfo=ZoneInfo("UTC")))


def test_a_stored_answer_is_the_first_answer_again():
    tx = RawTransaction("t1", 0, "k" * 64, "17", 5723)
    answer = {"transaction_id": "t1", "fraud_probability": 0.125, "is_fraud": False, "threshold": 0.3,
              "model_name": "m", "model_version": "2", "model_run_id": "r", "feature_set": "fs-a",
              "features": {"amount": 57.23, "card_tx_count_1d": 2}}
    stored = json.loads(json.dumps(stored_answer(answer)))
    assert answer_from(stored, tx, "m", ("amount", "card_tx_count_1d")) == answer
    assert answer_from(stored, tx, "m", ("amount",))["feature_values"] == [57.23, 2]


def test_a_raw_payment_of_another_feature_set_is_a_conflict_not_a_problem():
    transactions, problems, other_sets = parsed(raw(feature_set="fs-other"))
    assert problems == [] and len(transactions) == 1
    assert other_sets[0]["loc"][-1] == "feature_set" and "fs-other" in other_sets[0]["msg"]
    assert parsed(raw(feature_set=3))[1][0]["type"] == "string_type"
