"""Training: split by time, search the candidates, evaluate on held-out days.

The split is by time because the data holds near-duplicate frauds: a random split would let
them leak from training into evaluation. Every choice (candidate, parameters, threshold) is
made on validation folds inside the training window, each validated by a fit on the rows
before it; the held-out days are only measured.

    all days:        [ ----------- training window ----------- | held-out days ]
    window, fold 1:  [ -------- fit -------- | val 1 |
    window, fold 2:  [ ------------ fit ------------ | val 2 ]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import TrainSettings
from pipelines.errors import ConfigError, NoDataError
from pipelines.evaluation import (
    ScoreCurve,
    average_precision,
    average_precision_interval,
    binary_metrics,
    score_counts,
)
from pipelines.model import ENSEMBLE, build_pipeline, check_candidate, check_ensemble_members, fraud_probability
from pipelines.schema import EVENT_TS, FEATURE_COLS, TRANSACTION_ID, TXN_DATE

log = logging.getLogger(__name__)

CLASS_WEIGHTINGS = ("balanced", "none")
WEIGHT_COL = "class_weight"


@dataclass(frozen=True)
class Fold:
    """Rows to fit on, and the later rows that validate that fit."""

    fit: DataFrame
    validation: DataFrame


@dataclass(frozen=True)
class TimeSplit:
    folds: list[Fold]
    training_window: DataFrame
    holdout: DataFrame
    training_days: list[date]
    holdout_days: list[date]


@dataclass(frozen=True)
class SearchPoint:
    """One candidate with one set of parameters, and its scores on each validation fold."""

    candidate: str
    params: dict[str, Any]
    fold_curves: list[ScoreCurve]

    @property
    def validation_auc_pr(self) -> float:
        """Mean AUC-PR over the folds: the number the search ranks by."""
        return sum(average_precision(curve) for curve in self.fold_curves) / len(self.fold_curves)

    @property
    def validation_curve(self) -> ScoreCurve:
        """All folds' validation scores as one curve (what the threshold is chosen on)."""
        return ScoreCurve.combine(self.fold_curves)


@dataclass(frozen=True)
class CandidateResult:
    """The best search point of one candidate, refit on the training window and measured."""

    best: SearchPoint
    points: list[SearchPoint]
    threshold: float
    validation_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    holdout_curve: ScoreCurve
    model: PipelineModel


def check_train_settings(settings: TrainSettings) -> None:
    """Refuse an unknown candidate, parameter, policy or split setting before data is read."""
    settings.threshold.check()
    if not 0 < settings.validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in (0, 1), got {settings.validation_fraction}")
    if settings.validation_folds < 1:
        raise ConfigError(f"validation_folds must be at least 1, got {settings.validation_folds}")
    if settings.holdout_days < 1:
        raise ConfigError(f"holdout_days must be at least 1, got {settings.holdout_days}")
    if settings.class_weighting not in CLASS_WEIGHTINGS:
        raise ConfigError(f"unknown class_weighting {settings.class_weighting!r}; known: {list(CLASS_WEIGHTINGS)}")
    if settings.fit_partitions < 1:
        raise ConfigError(f"fit_partitions must be at least 1, got {settings.fit_partitions}")
    if settings.normal_weight <= 0:
        raise ConfigError(f"normal_weight must be positive, got {settings.normal_weight}")
    for candidate, grid in settings.candidates.items():
        check_candidate(candidate, grid)
    if settings.ensemble_members:
        check_ensemble_members(settings.ensemble_members)
        unsearched = [member for member in settings.ensemble_members if member not in settings.candidates]
        if unsearched:
            raise ConfigError(f"ensemble member(s) {unsearched} have no [train.candidates] table to search")


def spread_for_fitting(rows: DataFrame, partitions: int) -> DataFrame:
    """``rows`` in ``partitions`` parts by transaction id, each sorted by it.

    A Delta table holds a day in one file, so as read a day is one partition and the fits
    (random forest, GBT, logistic regression) run on one core. Spread out, more cores work;
    sorted, the parts hold the same rows in the same order every run, so seeded models are
    the same too (a forest's bootstrap draws depend on each row's part and place in it):
    ``partitions`` must therefore be fixed (``fit_partitions`` in conf), not the cluster's size.
    """
    return rows.repartition(partitions, TRANSACTION_ID).sortWithinPartitions(TRANSACTION_ID)


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    names = sorted(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def split_by_time(
    transactions: DataFrame, *, holdout_days: int, validation_fraction: float, validation_folds: int,
    label_col: str,
) -> TimeSplit:
    """Hold out the last ``holdout_days`` days; cut validation folds from the end of the rest.

    The last ``validation_fraction`` of the training window's rows by event time is cut into
    ``validation_folds`` consecutive slices; fold k fits on every row before slice k. Each
    part must hold both frauds and normal rows.

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
    seconds = F.col(EVENT_TS).cast("double")
    starts = [1 - validation_fraction + k * validation_fraction / validation_folds for k in range(validation_folds)]
    cuts = training_window.select(F.percentile_approx(seconds, starts, 100_000)).first()[0]
    ends = [*cuts[1:], None]
    folds = [
        Fold(
            fit=training_window.filter(seconds < start),
            validation=training_window.filter((seconds >= start) & (seconds < end if end is not None else F.lit(True))),
        )
        for start, end in zip(cuts, ends, strict=True)
    ]
    parts = {"held-out": holdout}
    for number, fold in enumerate(folds, start=1):
        parts[f"fold {number} fit"] = fold.fit
        parts[f"fold {number} validation"] = fold.validation
    _require_both_classes(parts, label_col)
    return TimeSplit(folds, training_window, holdout, days[:-holdout_days], days[-holdout_days:])


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


def with_class_weight(rows: DataFrame, *, label_col: str, fraud_weight: float) -> DataFrame:
    """Add ``class_weight``: ``fraud_weight`` on frauds, 1 on normal rows."""
    return rows.withColumn(
        WEIGHT_COL, F.when(F.col(label_col) == 1, F.lit(float(fraud_weight))).otherwise(F.lit(1.0))
    )


def balanced_fraud_weight(rows: DataFrame, *, label_col: str) -> float:
    """The weight that gives frauds and normal rows the same total: normal rows / frauds."""
    counts = rows.agg(F.sum(F.col(label_col)).alias("frauds"), F.count(F.lit(1)).alias("rows")).first()
    frauds = int(counts["frauds"] or 0)
    if frauds == 0:
        raise NoDataError("cannot weight the classes: the rows to fit hold no fraud")
    return (counts["rows"] - frauds) / frauds


def fit(
    rows: DataFrame, *, candidate: str, params: Mapping[str, Any], settings: TrainSettings
) -> PipelineModel:
    """Fit one candidate with one set of parameters, with the configured class weighting."""
    weight_col = None
    if settings.class_weighting == "balanced":
        fraud_weight = balanced_fraud_weight(rows, label_col=settings.label_col)
        rows = with_class_weight(rows, label_col=settings.label_col, fraud_weight=fraud_weight)
        weight_col = WEIGHT_COL
    pipeline = build_pipeline(
        candidate=candidate, params=params, feature_cols=FEATURE_COLS,
        label_col=settings.label_col, weight_col=weight_col, seed=settings.seed,
    )
    return pipeline.fit(rows)


def curve_of(model: PipelineModel, rows: DataFrame, *, label_col: str) -> ScoreCurve:
    """The score curve of ``model`` on ``rows`` (with the frauds' amounts)."""
    scored = model.transform(rows).select(fraud_probability(), F.col(label_col), F.col("Amount"))
    return ScoreCurve.from_frame(
        score_counts(scored, score_col="fraud_probability", label_col=label_col, amount_col="Amount")
    )


def metrics_of(curve: ScoreCurve, threshold: float, settings: TrainSettings, prefix: str = "") -> dict[str, float]:
    return binary_metrics(
        curve, threshold, normal_weight=settings.normal_weight,
        min_precision=settings.threshold.target_precision, prefix=prefix,
    )


def search_candidate(
    split: TimeSplit, *, candidate: str, grid: Mapping[str, list[Any]], settings: TrainSettings
) -> CandidateResult:
    """Fit every grid point on every fold, keep the best by mean validation AUC-PR, measure it.

    The threshold is chosen by the policy on the best point's validation scores (all folds,
    real class balance); the best point is refit on the whole training window and measured
    on the held-out days at that threshold, with a bootstrap 95% interval of its AUC-PR.
    """
    points = []
    for params in grid_points(grid):
        curves = [
            curve_of(fit(fold.fit, candidate=candidate, params=params, settings=settings), fold.validation,
                     label_col=settings.label_col)
            for fold in split.folds
        ]
        point = SearchPoint(candidate, params, curves)
        log.info("search: %s %s: validation AUC-PR %.4f", candidate, params, point.validation_auc_pr)
        points.append(point)
    best = max(points, key=lambda point: point.validation_auc_pr)
    validation_curve = best.validation_curve
    threshold = settings.threshold.choose(validation_curve.with_normal_weight(settings.normal_weight))
    model = fit(split.training_window, candidate=candidate, params=best.params, settings=settings)
    holdout_curve = curve_of(model, split.holdout, label_col=settings.label_col)
    validation_metrics = metrics_of(validation_curve, threshold, settings, prefix="val_")
    validation_metrics["val_auc_pr"] = best.validation_auc_pr  # the mean over folds, as ranked
    holdout_metrics = metrics_of(holdout_curve, threshold, settings)
    low, high = average_precision_interval(holdout_curve, seed=settings.seed)
    holdout_metrics.update(auc_pr_ci95_low=low, auc_pr_ci95_high=high)
    return CandidateResult(
        best=best,
        points=points,
        threshold=threshold,
        validation_metrics=validation_metrics,
        holdout_metrics=holdout_metrics,
        holdout_curve=holdout_curve,
        model=model,
    )


def search_ensemble(split: TimeSplit, results: Mapping[str, CandidateResult], *, settings: TrainSettings
                    ) -> CandidateResult:
    """The members' fraud probabilities averaged, each member with the parameters its search chose.

    Validated, thresholded and measured exactly like a single candidate, so the search can
    pick it, or not, by the same validation AUC-PR.
    """
    members = {member: results[member].best.params for member in settings.ensemble_members}
    return search_candidate(split, candidate=ENSEMBLE, grid={"members": [members]}, settings=settings)


def best_candidate(results: Mapping[str, CandidateResult]) -> str:
    """The candidate whose best point has the highest validation AUC-PR (held-out days unused)."""
    return max(results, key=lambda name: results[name].best.validation_auc_pr)
