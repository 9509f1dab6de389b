"""The one place a job reads the clock: pipelines.core.clock.utc_now, and the instant that fixes it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.core.clock import NOW_SET_AT_VARIABLE, NOW_VARIABLE, utc_now
from pipelines.core.errors import ConfigError
from tests.conftest import FIXED_NOW


def test_the_suite_runs_on_a_clock_started_at_its_fixed_instant():
    first, second = utc_now(), utc_now()
    assert FIXED_NOW <= first <= second < FIXED_NOW + timedelta(hours=6)


def test_a_clock_set_at_an_instant_runs_on_from_it(monkeypatch):
    monkeypatch.setenv(NOW_VARIABLE, "2026-11-25T03:00:00+00:00")
    monkeypatch.setenv(NOW_SET_AT_VARIABLE, repr(time.time() - 90))
    assert timedelta(seconds=90) <= utc_now() - FIXED_NOW < timedelta(seconds=150)


def test_a_fixed_instant_in_another_zone_is_the_same_instant_in_utc(monkeypatch):
    monkeypatch.delenv(NOW_SET_AT_VARIABLE)
    monkeypatch.setenv(NOW_VARIABLE, "2026-11-24T22:00:00-05:00")
    assert utc_now() == datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
    assert utc_now().tzinfo == timezone.utc


def test_without_a_fixed_instant_it_is_the_clock_in_utc(monkeypatch):
    monkeypatch.delenv(NOW_VARIABLE)
    monkeypatch.setenv(NOW_SET_AT_VARIABLE, "not used without an instant")
    before = datetime.now(timezone.utc)
    now = utc_now()
    assert now.tzinfo == timezone.utc and before <= now <= before + timedelta(minutes=1)


@pytest.mark.parametrize("text", ["2026-11-25T03:00:00", "tomorrow", "2026-13-01T00:00:00+00:00"])
def test_a_fixed_instant_without_an_offset_or_unparseable_is_a_config_error(monkeypatch, text):
    monkeypatch.setenv(NOW_VARIABLE, text)
    with pytest.raises(ConfigError, match=NOW_VARIABLE) as raised:
        utc_now()
    assert repr(text) in str(raised.value)


def test_a_set_at_that_is_no_number_is_a_config_error(monkeypatch):
    monkeypatch.setenv(NOW_SET_AT_VARIABLE, "yesterday")
    with pytest.raises(ConfigError, match=f"{NOW_SET_AT_VARIABLE} must be the POSIX seconds"):
        utc_now()
