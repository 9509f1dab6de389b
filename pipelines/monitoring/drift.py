"""A day against its version's baseline: every column's drift metrics, their bands and limits,
and which columns stay out of band for k of the last n days.

Per feature: PSI, Jensen-Shannon distance, KS, Wasserstein / std (each with a band measured at
the day's row count, :mod:`pipelines.monitoring.profile`), the null and out-of-range shares, and
the mean (reported, never an alarm). Per score (``fraud_probability``): the same, plus the
alert rate against the baseline's and the expected frauds (the sum of probabilities).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import MonitorSettings
from pipelines.monitoring.baseline import ALERT_COLUMN, Baseline
from pipelines.monitoring.profile import (
    BandSettings,
    Profile,
    distribution_bands,
    distribution_metrics,
    out_of_range_rate,
    share_band,
)
from pipelines.monitoring.spark_profiles import profiles
from pipelines.monitoring.tables import SCORE_COLUMN

DISTRIBUTION_METRICS = ("psi", "js_distance", "wasserstein_std", "ks")


@dataclass(frozen=True)
class DayProfiles:
    features: dict[str, Profile]
    score: Profile
    alerts: Profile  # is_fraud as 0/1: its mean is the alert rate

    @property
    def rows(self) -> int:
        return self.score.rows


@dataclass(frozen=True)
class MetricRow:
    """One metric of one column on one day (a row of ``monitor_drift`` without its keys)."""

    column: str
    kind: str  # "input" or "score"
    metric: str
    value: float
    baseline: float | None = None
    band: float | None = None
    limit: float | None = None
    out_of_band: bool = False
    drifted: bool = False


def day_profiles(transactions_day: DataFrame, scored_day: DataFrame, baseline: Baseline) -> DayProfiles:
    """The day's profiles over the baseline's bins: one pass over its transactions (features),
    one over its scores."""
    features = profiles(
        transactions_day.select(*(F.col(column).cast("double").alias(column) for column in baseline.features)),
        {column: profile.edges for column, profile in baseline.features.items()},
        valid_ranges={column: (profile.minimum, profile.maximum) for column, profile in baseline.features.items()},
    )
    scores = profiles(
        scored_day.select(SCORE_COLUMN, F.col(ALERT_COLUMN).cast("double").alias(ALERT_COLUMN)),
        {SCORE_COLUMN: baseline.score.edges, ALERT_COLUMN: np.array([0.5])},
        valid_ranges={SCORE_COLUMN: (baseline.score.minimum, baseline.score.maximum)},
    )
    return DayProfiles(features=features, score=scores[SCORE_COLUMN], alerts=scores[ALERT_COLUMN])


def column_metrics(
    column: str, kind: str, reference: Profile, day: Profile, groups: np.ndarray, settings: MonitorSettings,
    spread: Mapping[str, float] | None = None,
) -> list[MetricRow]:
    """One column's metrics, bands and limits: the distributions, the null and out-of-range
    shares (bands from binomial draws at the day's size), and the mean (no limit).

    :param spread: per metric, how far the fitted days stray from each other: a band is never
        narrower than the training data's own day-to-day variation.
    """
    spread = spread or {}
    bands = BandSettings(settings.band_samples, settings.band_quantile, settings.seed)
    minimum = settings.min_effect
    rows = []
    values = distribution_metrics(reference, day.counts, groups)
    limits = distribution_bands(reference, groups, day.values, bands)
    for metric in DISTRIBUTION_METRICS:
        value, band = float(values[metric][0]), max(limits[metric], spread.get(metric, 0.0))
        limit = max(band, minimum[metric])
        rows.append(MetricRow(column, kind, metric, value, None, band, limit, value > limit))
    null_band = share_band(reference.null_share, reference.rows, day.rows, bands)
    null_limit = reference.null_share + max(null_band, minimum["null_share"])
    rows.append(MetricRow(column, kind, "null_share", day.null_share, reference.null_share, null_band,
                          null_limit, day.null_share > null_limit))
    # The baseline holds no value outside its own range, but a new sample from the same
    # distribution does, at 2 / (n + 1) per value: the band is drawn at that rate.
    range_band = share_band(out_of_range_rate(reference.values), 10**12, day.values, bands)
    range_limit = max(range_band, minimum["out_of_range_share"])
    rows.append(MetricRow(column, kind, "out_of_range_share", day.out_of_range_share, 0.0, range_band,
                          range_limit, day.out_of_range_share > range_limit))
    rows.append(MetricRow(column, kind, "mean", day.mean, reference.mean))
    return rows


def score_metrics(baseline: Baseline, day: DayProfiles, settings: MonitorSettings) -> list[MetricRow]:
    """The score's distribution metrics, its alert rate against the baseline's, expected frauds."""
    spread = baseline.day_spread.get(SCORE_COLUMN, {})
    rows = column_metrics(SCORE_COLUMN, "score", baseline.score, day.score, baseline.groups[SCORE_COLUMN], settings,
                          spread)
    bands = BandSettings(settings.band_samples, settings.band_quantile, settings.seed)
    rate, reference = day.alerts.mean if day.alerts.values else 0.0, baseline.alert_rate
    band = max(share_band(reference, baseline.rows, day.rows, bands), spread.get("alert_rate", 0.0))
    limit = max(band, settings.min_effect["alert_rate_change"] * reference)
    rows.append(MetricRow(SCORE_COLUMN, "score", "alert_rate", rate, reference, band, limit,
                          abs(rate - reference) > limit))
    rows.append(MetricRow(SCORE_COLUMN, "score", "expected_frauds", day.score.total,
                          baseline.score.mean * day.score.values))
    return rows


def drift_metrics(baseline: Baseline, day: DayProfiles, settings: MonitorSettings) -> list[MetricRow]:
    """Every feature's and the score's metrics for one day (``drifted`` not yet set)."""
    rows = []
    for column in baseline.features:
        rows += column_metrics(column, "input", baseline.features[column], day.features[column],
                               baseline.groups[column], settings, baseline.day_spread.get(column))
    return rows + score_metrics(baseline, day, settings)


def out_of_band_columns(rows: Iterable[MetricRow]) -> list[str]:
    """The columns with at least one metric beyond its limit, in their order."""
    seen: dict[str, None] = {}
    for row in rows:
        if row.out_of_band:
            seen.setdefault(row.column)
    return list(seen)


def mark_drifted(
    rows: list[MetricRow], history: Mapping[date, set[str]], *, drift_days: int, window_days: int
) -> list[MetricRow]:
    """Set ``drifted`` on the rows of each column out of band on at least ``drift_days`` of the
    last ``window_days`` monitored days: today (``rows``) and the most recent earlier days of
    ``history`` (day -> the columns out of band that day)."""
    earlier = [history[day] for day in sorted(history)[-(window_days - 1):]] if window_days > 1 else []
    today = set(out_of_band_columns(rows))
    drifted = {column for column in today
               if 1 + sum(column in columns for columns in earlier) >= drift_days}
    return [replace(row, drifted=row.column in drifted) for row in rows]
