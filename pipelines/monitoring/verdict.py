"""A day's verdict from its drift rows and realized performance: ok, warn or alert, and why.

- **alert**: a column (a feature or the score) has drifted (out of band on ``drift_days`` of
  the last ``window_days`` monitored days), or a realized figure's whole interval is beyond
  the promotion gate's limit;
- **warn**: a column is out of band today only, or a realized figure is beyond its limit while
  its interval still reaches it;
- **ok**: neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.monitoring.drift import MetricRow, out_of_band_columns
from pipelines.monitoring.performance import Figure
from pipelines.monitoring.tables import ALERT, OK, WARN


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reasons: list[str]
    drifted_columns: list[str]
    out_of_band_columns: list[str]


def verdict_of(rows: Sequence[MetricRow], figures: Sequence[Figure], *, drift_days: int, window_days: int,
               confidence: float) -> Verdict:
    """The day's verdict and a reason per drifted or out-of-band column and per figure beyond
    its limit (the alerts' reasons first)."""
    out_of_band = out_of_band_columns(rows)
    drifted = [column for column in out_of_band if any(row.drifted for row in rows if row.column == column)]
    alerts, warnings = [], []
    for column in out_of_band:
        beyond = ", ".join(_metric_text(row) for row in rows if row.column == column and row.out_of_band)
        if column in drifted:
            alerts.append(f"{column} drifted: out of band on at least {drift_days} of the last {window_days} "
                          f"monitored days; today {beyond}")
        else:
            warnings.append(f"{column} out of band today: {beyond}")
    for figure in figures:
        if figure.status in (ALERT, WARN):
            text = _figure_text(figure, confidence)
            (alerts if figure.status == ALERT else warnings).append(text)
    verdict = ALERT if alerts else WARN if warnings else OK
    return Verdict(verdict, alerts + warnings, drifted, out_of_band)


def _metric_text(row: MetricRow) -> str:
    if row.metric == "alert_rate":
        return (f"alert rate {row.value:.4%} against {row.baseline:.4%} in the baseline "
                f"(allowed ±{row.limit:.4%})")
    return f"{row.metric} {row.value:.4g} > {row.limit:.4g}"


def _figure_text(figure: Figure, confidence: float) -> str:
    interval = f"{confidence:.0%} interval {figure.lower:.4g} to {figure.upper:.4g}"
    if figure.limit_low is not None and figure.value is not None and figure.value < figure.limit_low:
        side = f"below the gate's {figure.limit_low:g}"
    else:
        side = f"above the gate's {figure.limit_high:g}"
    certainty = "" if figure.status == ALERT else "; the interval still reaches the limit"
    return f"realized {figure.metric} {figure.value:.4g} ({interval}) {side}{certainty}"
