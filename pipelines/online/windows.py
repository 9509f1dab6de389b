"""A transaction's history windows and features, from sums the store gives: the arithmetic of
:mod:`pipelines.features.history`, so that the service's features equal the batch's bit for bit.

A feature over ``w`` days ending ``d`` days back holds the entity's transactions in
(t - d - w, t - d]. With ``d = 0`` the window ends at the transaction itself: the ones before it
in the order of (event time, transaction id), and itself. Counts, amounts (in integer cents)
and labels are summed as integers; a mean is then ``(cents / count) / 100`` and a share
``frauds / count``, one double division each, as Spark does them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pipelines.core.config import FeatureSettings
from pipelines.features.definitions import NIGHT, WEEKEND, HistoryFeature, flag_columns, history_features

MICROS_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


@dataclass(frozen=True)
class Sums:
    """What a window holds: its transactions, their amounts in cents, their frauds."""

    count: int = 0
    cents: int = 0
    frauds: int = 0

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.count + other.count, self.cents + other.cents, self.frauds + other.frauds)

    def __sub__(self, other: Sums) -> Sums:
        return Sums(self.count - other.count, self.cents - other.cents, self.frauds - other.frauds)


@dataclass(frozen=True)
class Window:
    """The bounds (lo, hi] of one window, in microseconds since the epoch; ``ties_by_id``: the
    window ends at the transaction itself, so of the others at its instant only those of a
    smaller id are in it (and it is, itself)."""

    lo: int
    hi: int
    ties_by_id: bool


def micros(instant: datetime) -> int:
    """An aware datetime as microseconds since the epoch (exact, no float)."""
    return (instant - _EPOCH) // timedelta(microseconds=1)


def day_start_micros(day: date, time_zone: str) -> int:
    """When ``day`` begins in ``time_zone``, as Spark's ``to_utc_timestamp`` places local
    midnight (a midnight the zone skips is moved forward by the gap)."""
    return micros(datetime.combine(day, time(0), tzinfo=ZoneInfo(time_zone)))


def local_day(event_micros: int, time_zone: str) -> date:
    """The calendar day of an instant in ``time_zone``."""
    return (_EPOCH + timedelta(microseconds=event_micros)).astimezone(ZoneInfo(time_zone)).date()


def window_of(feature: HistoryFeature, event_micros: int) -> Window:
    end = event_micros - feature.delay_days * MICROS_PER_DAY
    return Window(end - feature.window_days * MICROS_PER_DAY, end, ties_by_id=feature.delay_days == 0)


@lru_cache(maxsize=16)
def features_of(settings: FeatureSettings, entity: str | None = None) -> tuple[HistoryFeature, ...]:
    """The history features of ``settings`` (of ``entity`` only, when given), made once."""
    return tuple(feature for feature in history_features(settings) if entity in (None, feature.entity))


def entity_windows(settings: FeatureSettings, entity: str, event_micros: int) -> dict[str, Window]:
    """Each of ``entity``'s feature columns and its window for a transaction at ``event_micros``."""
    return {feature.column: window_of(feature, event_micros) for feature in features_of(settings, entity)}


def feature_value(feature: HistoryFeature, sums: Sums) -> float | int:
    """The feature from its window's sums: as :func:`pipelines.features.history._history_column`."""
    if feature.aggregate == "count":
        return sums.count
    if feature.aggregate == "mean_amount":
        return (sums.cents / sums.count) / 100.0 if sums.count > 0 else 0.0
    return sums.frauds / sums.count if sums.count > 0 else 0.0  # fraud_share


def flags(settings: FeatureSettings, event_micros: int, time_zone: str) -> dict[str, int]:
    """``is_weekend`` and ``is_night`` of the wall clock in the profile's zone, as 0 or 1."""
    local = (_EPOCH + timedelta(microseconds=event_micros)).astimezone(ZoneInfo(time_zone))
    values = {WEEKEND: int(local.weekday() >= 5),
              NIGHT: int(settings.night_hours[0] <= local.hour <= settings.night_hours[1])}
    return {name: values[name] for name in flag_columns(settings)}


def longest_reach_days(settings: FeatureSettings, entity: str) -> int:
    """How far back ``entity``'s furthest window reaches, in days (its delay plus its length)."""
    return max((f.delay_days + f.window_days for f in history_features(settings) if f.entity == entity), default=0)


def nearest_delay_days(settings: FeatureSettings, entity: str) -> int:
    return min((f.delay_days for f in history_features(settings) if f.entity == entity), default=0)
