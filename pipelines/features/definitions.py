"""What ``[features]`` declares, as the ``features`` table's columns, without Spark.

Each history feature is ``<entity>_<aggregate>_<w>d``: ``card_tx_count_7d``,
``card_mean_amount_30d``, ``terminal_fraud_share_1d``. The flags are ``is_weekend`` and
``is_night``. The model's inputs are the amount and these, in :func:`feature_columns`' order.

:func:`feature_set_id` names one set of definitions (with the profile's time zone, which the
flags and day boundaries use): every row of ``features`` records the id it was computed with,
and a row made by other definitions is never mixed with the current ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from pipelines.core.config import FeatureSettings, HistoryFeatures

ENTITIES = ("card", "terminal")
# The aggregate's name in a column: "count" reads as the number of transactions.
_COLUMN_WORD = {"count": "tx_count", "mean_amount": "mean_amount", "fraud_share": "fraud_share"}
WEEKEND, NIGHT = "is_weekend", "is_night"
# Bumped when the computation of an existing definition changes, so older rows read as stale.
COMPUTATION_VERSION = 1
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class HistoryFeature:
    """One history column: ``aggregate`` over ``entity``'s transactions in (t - delay - window, t - delay]."""

    entity: str
    aggregate: str
    window_days: int
    delay_days: int

    @property
    def column(self) -> str:
        return f"{self.entity}_{_COLUMN_WORD[self.aggregate]}_{self.window_days}d"


def entity_settings(settings: FeatureSettings) -> dict[str, HistoryFeatures]:
    return {"card": settings.card, "terminal": settings.terminal}


def history_features(settings: FeatureSettings) -> list[HistoryFeature]:
    """Every history column, entity by entity, window by window, aggregate by aggregate."""
    return [HistoryFeature(entity, aggregate, window, spec.delay_days)
            for entity, spec in entity_settings(settings).items()
            for window in spec.windows_days
            for aggregate in spec.aggregates]


def flag_columns(settings: FeatureSettings) -> list[str]:
    return [*([WEEKEND] if settings.weekend_flag else []), *([NIGHT] if settings.night_flag else [])]


def feature_columns(settings: FeatureSettings) -> list[str]:
    """The feature columns of the ``features`` table, in the order a model takes them."""
    return [feature.column for feature in history_features(settings)] + flag_columns(settings)


def history_span_days(settings: FeatureSettings) -> int:
    """How many days back the furthest window reaches: its delay plus its length."""
    return max(spec.delay_days + max(spec.windows_days) for spec in entity_settings(settings).values())


def definitions(settings: FeatureSettings, *, time_zone: str) -> dict[str, object]:
    """The definitions as plain data: what a feature set id is computed from, and what the
    ``features`` table's commits record."""
    return {"computation": COMPUTATION_VERSION, "time_zone": time_zone, **asdict(settings)}


def feature_set_id(settings: FeatureSettings, *, time_zone: str) -> str:
    """A short, stable name for one set of definitions: ``fs-`` and 12 hex digits of their hash."""
    text = json.dumps(definitions(settings, time_zone=time_zone), sort_keys=True, separators=(",", ":"))
    return "fs-" + hashlib.sha256(text.encode()).hexdigest()[:12]
