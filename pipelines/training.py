"""Training: split by time, search the candidates, evaluate on held-out days, log and register.

The split is by time because the data holds near-duplicate frauds: a random split would let
them leak from training into evaluation. Every choice (candidate, parameters, threshold) is
made on a validation slice at the end of the training window; the held-out days are only
measured.

    all days:  [ ---------- training window ---------- | held-out days ]
    window:    [ ------- fit ------- | -- validation -- ]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import TrainSettings
from pipelines.errors import ConfigError, NoDataError
from pipelines.evaluation import ScoreCurve, binary_metrics, max_f1_threshold, score_counts
from pipelines.model import build_pipeline, check_candidate, fraud_probability
from pipelines.schema import EVENT_TS, FEATURE_COLS, TXN_DATE

log = logging.getLogger(__name__)

THRESHOLD_POLICIES = ("max_f1",)


@dataclass(frozen=True)
class TimeSplit:
    """The rows of each part of a time split, and the days each covers."""

    fit: DataFrame
    validation: DataFrame
    training_window: DataFrame
    holdout: DataFrame
    training_days: list[date]
    holdout_days: list[date]


@dataclass(frozen=True)
class SearchPoint:
    """One candidate with one set of parameters, and how it did on validation."""

    candidate: str
    params: dict[str, Any]
    validation_curve: ScoreCurve

    @property
    def validation_auc_pr(self) -> float:
        return binary_metrics(self.validation_curve, 0.5)["auc_pr"]


@dataclass
class CandidateResult:
    """The best search point of one candidate, refit on the training window and measured."""

    best: SearchPoint
    points: list[SearchPoint]
    threshold: float
    validation_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    holdout_curve: ScoreCurve
    model: PipelineModel
    extra: dict[str, Any] = field(default_factory=dict)


def check_train_settings(settings: TrainSettings) -> None:
    """Refuse an unknown candidate, parameter or policy before any data is read."""
    if settings.threshold_policy not in THRESHOLD_POLICIES:
        raise ConfigError(
            f"unknown threshold_policy {settings.threshold_policy!r}; known: {list(THRESHOLD_POLICIES)}"
        )
    if not 0 < settings.validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in (0, 1), got {settings.validation_fraction}")
    if settings.holdout_days < 1:
        raise ConfigError(f"holdout_days must be at least 1, got {settings.holdout_days}")
    for candidate, grid in settings.candidates.items():
        check_candidate(candidate, grid)


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    names = sorted(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def split_by_time(
    transactions: DataFrame, *, holdout_days: int, validation_fraction: float, label_col: str
) -> TimeSplit:
    """Hold out the last ``holdout_days`` days; validate on the last part of the rest.

    The validation slice is the last ``validation_fraction`` of the training window's rows by
    event time. Each part must hold both frauds and normal rows.

    :raises NoDataError: too few days, or a part with no fraud or no normal row.
    """
    days = sorted(row[TXN_DATE] for row in transactions.select(TXN_DATE).distinct().collect())
    if len(days) <= holdout_days:
        raise NoDataError(
            f"training needs more than {holdout_days} day(s) of transactions to hold "
            f"{holdout_days} out; the table has {len(days)}: {[d.isoformat() for d in days]}"
        )
    first_holdout_day = days[-holdout_days]
    training_window = transactions.filter(F.col(TXN_DATE) < F.lit(first_holdout_day))
    holdout = transactions.filter(F.col(TXN_DATE) >= F.lit(first_holdout_day))
    event_seconds = F.col(EVENT_TS).cast("double")
    cut = training_window.select(
        F.percentile_approx(event_seconds, 1 - validation_fraction, 100_000)
    ).first()[0]
    split = TimeSplit(
        fit=training_window.filter(event_seconds < cut),
        validation=training_window.filter(event_seconds >= cut),
        training_window=training_window,
        holdout=holdout,
        training_days=days[:-holdout_days],
        holdout_days=days[-holdout_days:],
    )
    _require_both_classes(
        {"fit": split.fit, "validation": split.validation, "held-out": split.holdout}, label_col
    )
    return split


def _require_both_classes(parts: Mapping[str, DataFrame], label_col: str) -> None:
    counts = {}
    for name, part in parts.items():
        row = part.agg(F.sum(F.col(label_col)).alias("frauds"), F.count(F.lit(1)).alias("rows")).first()
        counts[name] = (int(row["frauds"] or 0), int(row["rows"]))
    lacking = [
        f"{name} part ({frauds} frauds in {rows} rows)"
        for name, (frauds, rows) in counts.items()
        if frauds == 0 or frauds == rows
    ]
    if lacking:
        raise NoDataError(
            "training needs frauds and normal transactions in every part of the time split; "
            "not so in the " + ", ".join(lacking)
        )


def curve_of(model: PipelineModel, rows: DataFrame, *, label_col: str) -> ScoreCurve:
    """The score curve of ``model`` on ``rows``."""
    scored = model.transform(rows).select(fraud_probability(), F.col(label_col))
    return ScoreCurve.from_frame(score_counts(scored, score_col="fraud_probability", label_col=label_col))


def choose_threshold(curve: ScoreCurve, policy: str) -> float:
    """The decision threshold the policy picks on a validation curve."""
    if policy == "max_f1":
        return max_f1_threshold(curve)
    raise ConfigError(f"unknown threshold_policy {policy!r}; known: {list(THRESHOLD_POLICIES)}")


def fit(
    rows: DataFrame, *, candidate: str, params: Mapping[str, Any], settings: TrainSettings
) -> PipelineModel:
    pipeline = build_pipeline(
        candidate=candidate, params=params, feature_cols=FEATURE_COLS,
        label_col=settings.label_col, seed=settings.seed,
    )
    return pipeline.fit(rows)


def search_candidate(
    split: TimeSplit, *, candidate: str, grid: Mapping[str, list[Any]], settings: TrainSettings
) -> CandidateResult:
    """Fit every grid point on the fit part, keep the best by validation AUC-PR, then measure it.

    The threshold is chosen on the best point's validation scores; the best point is refit on
    the whole training window and measured on the held-out days at that threshold.
    """
    points = []
    for params in grid_points(grid):
        model = fit(split.fit, candidate=candidate, params=params, settings=settings)
        point = SearchPoint(candidate, params, curve_of(model, split.validation, label_col=settings.label_col))
        log.info("search: %s %s: validation AUC-PR %.4f", candidate, params, point.validation_auc_pr)
        points.append(point)
    best = max(points, key=lambda point: point.validation_auc_pr)
    threshold = choose_threshold(best.validation_curve, settings.threshold_policy)
    model = fit(split.training_window, candidate=candidate, params=best.params, settings=settings)
    holdout_curve = curve_of(model, split.holdout, label_col=settings.label_col)
    return CandidateResult(
        best=best,
        points=points,
        threshold=threshold,
        validation_metrics=binary_metrics(best.validation_curve, threshold, prefix="val_"),
        holdout_metrics=binary_metrics(holdout_curve, threshold),
        holdout_curve=holdout_curve,
        model=model,
    )


def best_candidate(results: Mapping[str, CandidateResult]) -> str:
    """The candidate whose best point has the highest validation AUC-PR (held-out days unused)."""
    return max(results, key=lambda name: results[name].best.validation_auc_pr)
