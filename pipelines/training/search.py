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

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from pyspark import inheritable_thread_target
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import TrainSettings
from pipelines.core.errors import ConfigError, NoDataError
from pipelines.data.schema import EVENT_TS, TRANSACTION_ID, TXN_DATE
from pipelines.model.evaluation import (
    ScoreCurve,
    average_precision,
    average_precision_interval,
    binary_metrics,
    card_precision_metric,
    choose_threshold,
    score_counts,
    scored_card_precision,
)
from pipelines.model.inputs import CREDITCARD, ModelInputs
from pipelines.model.stages import (
    ENSEMBLE,
    build_pipeline,
    check_candidate,
    check_ensemble_members,
    compose_ensemble,
    fraud_probability,
    pipeline_members,
)

log = logging.getLogger(__name__)

CLASS_WEIGHTINGS = ("balanced", "none")
WEIGHT_COL = "class_weight"
T = TypeVar("T")


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
    # The best point's model of each validation fold (what an ensemble of it reuses).
    fold_models: list[PipelineModel] = field(default_factory=list)


def check_train_settings(settings: TrainSettings) -> None:
    """Refuse an unknown candidate or parameter, or an ensemble of unsearched members, before data
    is read. (The ranges and names of the other keys are checked where TrainSettings is built.)"""
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
    label_col: str, gap_days: int = 0, window_days: int = 0, time_col: str = EVENT_TS,
) -> TimeSplit:
    """Hold out the last ``holdout_days`` days; cut validation folds from the end of the rest.

    With ``gap_days``, that many days before the held-out ones are left out of both (the time
    a label takes to be known); with ``window_days``, the training window is that many days
    before the gap, not every day there is. Days are days with rows, counted from the last.

    The last ``validation_fraction`` of the training window's rows by event time is cut into
    ``validation_folds`` consecutive slices; fold k fits on every row before slice k. Each
    part must hold both frauds and normal rows.

    :raises NoDataError: too few days, or a part with no fraud or no normal row.
    """
    days = sorted(row[TXN_DATE] for row in transactions.select(TXN_DATE).distinct().collect())
    before = holdout_days + gap_days
    if len(days) <= before:
        wanted = f"{holdout_days} held-out day(s)" + (f" after {gap_days} gap day(s)" if gap_days else "")
        raise NoDataError(
            f"training needs more than {before} day(s) of transactions, for {wanted} and a day to train "
            f"on before them; the table has {len(days)}: {[d.isoformat() for d in days]}"
        )
    training_days = days[:-before][-window_days:] if window_days else days[:-before]
    held_out_days = days[-holdout_days:]
    first_holdout_day = held_out_days[0]
    training_window = transactions.filter(F.col(TXN_DATE).between(F.lit(training_days[0]), F.lit(training_days[-1])))
    holdout = transactions.filter(F.col(TXN_DATE) >= F.lit(first_holdout_day))
    seconds = F.col(time_col).cast("double")
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
    return TimeSplit(folds, training_window, holdout, training_days, held_out_days)


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
    rows: DataFrame, *, candidate: str, params: Mapping[str, Any], settings: TrainSettings,
    inputs: ModelInputs = CREDITCARD,
) -> PipelineModel:
    """Fit one candidate with one set of parameters on ``inputs``' feature columns, with the
    configured class weighting (the label is ``settings.label_col``)."""
    weight_col = None
    if settings.class_weighting == "balanced":
        fraud_weight = balanced_fraud_weight(rows, label_col=settings.label_col)
        rows = with_class_weight(rows, label_col=settings.label_col, fraud_weight=fraud_weight)
        weight_col = WEIGHT_COL
    pipeline = build_pipeline(
        candidate=candidate, params=params, feature_cols=list(inputs.feature_cols),
        label_col=settings.label_col, weight_col=weight_col, seed=settings.seed,
    )
    return pipeline.fit(rows)


def curve_of(model: PipelineModel, rows: DataFrame, *, label_col: str, amount_col: str = "Amount") -> ScoreCurve:
    """The score curve of ``model`` on ``rows`` (with the frauds' amounts)."""
    scored = model.transform(rows).select(fraud_probability(), F.col(label_col),
                                          F.col(amount_col).cast("double").alias(amount_col))
    return ScoreCurve.from_frame(
        score_counts(scored, score_col="fraud_probability", label_col=label_col, amount_col=amount_col)
    )


def metrics_of(curve: ScoreCurve, threshold: float, settings: TrainSettings, prefix: str = "") -> dict[str, float]:
    return binary_metrics(
        curve, threshold, normal_weight=settings.normal_weight,
        min_precision=settings.threshold.target_precision, prefix=prefix,
    )


def _varying(grid: Mapping[str, list[Any]], params: Mapping[str, Any]) -> str:
    """The params that tell this grid point from the others (``maxDepth=10``), for progress lines."""
    return " ".join(f"{name}={params[name]}" for name in sorted(grid) if len(grid[name]) > 1)


class FitRunner:
    """Runs fits, ``parallel`` at a time on threads sharing the one SparkContext, and logs progress.

    Spark takes jobs from several threads at once; a fit's result does not depend on what runs
    beside it (its rows come in the same parts in the same order), so the search chooses the
    same as one fit after another. With ``parallel == 1`` each fit runs at once in the calling
    thread, the sequential baseline. Each finished fit logs a line such as
    ``search: fit 7/25 done (random_forest maxDepth=10 fold 2, 41 s), ~3 min left``; the
    estimate is the mean time of the fits done of the same candidate (else of any), times the
    fits left, over ``parallel``.

    ``clock`` gives seconds (``time.monotonic``): it times the fits, it dates nothing.

    Example::

        with FitRunner(parallel=2, clock=time.monotonic) as runner:
            runner.expect(["random_forest"] * 2)
            futures = [runner.submit("random_forest", f"fold {k}", task) for k in (1, 2)]
            models = [future.result() for future in futures]
    """

    def __init__(self, *, parallel: int, clock: Callable[[], float]) -> None:
        if parallel < 1:
            raise ConfigError(f"parallel_fits must be at least 1, got {parallel}")
        self.parallel = parallel
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[str] = []  # the candidate of each fit expected and not yet done
        self._durations: dict[str, list[float]] = {}
        self._done = 0
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="fit") if parallel > 1 else None

    def __enter__(self) -> FitRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def expect(self, candidates: Sequence[str], *, instead_of: str | None = None) -> None:
        """Count fits to come (one candidate name each) in the total and the estimate, in place
        of one announced as ``instead_of`` when it was (a fit whose candidate was not known yet)."""
        with self._lock:
            if instead_of is not None and instead_of in self._pending:
                self._pending.remove(instead_of)
            self._pending.extend(candidates)

    def submit(self, candidate: str, label: str, task: Callable[[], T], *, counted: bool = True) -> Future[T]:
        """Run ``task`` (one fit and what is measured with it) now or on a free thread; one not
        ``counted`` (no fit, e.g. scoring a model made of others) is left out of the progress."""
        timed = self._timed(candidate, label, task) if counted else task
        if self._pool is None:
            future: Future[T] = Future()
            future.set_result(timed())  # an error stops the search here, as it always did
            return future
        # Carries the caller's Spark local properties (job group, scheduler pool) into the thread.
        return self._pool.submit(inheritable_thread_target(timed))

    def _timed(self, candidate: str, label: str, task: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            started = self._clock()
            result = task()
            self._finished(candidate, label, self._clock() - started)
            return result
        return run

    def _finished(self, candidate: str, label: str, seconds: float) -> None:
        with self._lock:
            if candidate in self._pending:
                self._pending.remove(candidate)
            self._durations.setdefault(candidate, []).append(seconds)
            self._done += 1
            done, total = self._done, self._done + len(self._pending)
            left = self._seconds_left()
        log.info("search: fit %d/%d done (%s %s, %.0f s), %s", done, total, candidate, label, seconds,
                 _time_left(left) if done < total else "all done")

    def _seconds_left(self) -> float:
        every = [seconds for durations in self._durations.values() for seconds in durations]
        overall = sum(every) / len(every)
        estimates = [
            sum(self._durations[candidate]) / len(self._durations[candidate])
            if candidate in self._durations else overall
            for candidate in self._pending
        ]
        return sum(estimates) / self.parallel


def _time_left(seconds: float) -> str:
    if seconds < 60:
        return f"~{max(seconds, 1):.0f} s left"
    return f"~{seconds / 60:.0f} min left"


@dataclass(frozen=True)
class _Fitted:
    """A fit and the score curve it was measured by (validation fold or held-out days), with its
    Card Precision@k on the held-out days where the profile has cards."""

    model: PipelineModel
    curve: ScoreCurve
    card_precision: float | None = None


def _fit_and_measure(rows: DataFrame, measured_on: DataFrame, *, candidate: str, params: Mapping[str, Any],
                     settings: TrainSettings, inputs: ModelInputs, held_out: bool = False) -> _Fitted:
    model = fit(rows, candidate=candidate, params=params, settings=settings, inputs=inputs)
    return _measure_only(model, measured_on, settings=settings, inputs=inputs, held_out=held_out)


def _measure_only(model: PipelineModel, measured_on: DataFrame, *, settings: TrainSettings,
                  inputs: ModelInputs, held_out: bool = False) -> _Fitted:
    curve = curve_of(model, measured_on, label_col=settings.label_col, amount_col=inputs.amount_col)
    if not held_out or inputs.card_col is None:
        return _Fitted(model, curve)
    return _Fitted(model, curve, card_precision_of(
        model, measured_on, card_col=inputs.card_col, label_col=settings.label_col, k=settings.card_precision_k))


def card_precision_of(model: PipelineModel, rows: DataFrame, *, card_col: str, label_col: str, k: int) -> float:
    """Card Precision@k of ``model`` on ``rows``, the mean over their days."""
    scored = model.transform(rows).select(TXN_DATE, card_col, fraud_probability().alias("score"), label_col)
    return scored_card_precision(scored, day_col=TXN_DATE, card_col=card_col, score_col="score",
                                 label_col=label_col, k=k)


@dataclass(frozen=True)
class _Search:
    """One candidate's search under way: per grid point, per fold, the fit to come."""

    candidate: str
    grid: Mapping[str, list[Any]]
    points: list[dict[str, Any]]
    folds: list[list[Future[_Fitted]]]


def _fits_of(split: TimeSplit, candidate: str, grid: Mapping[str, list[Any]]) -> list[str]:
    """The fits a candidate's search makes (its name once each): every point on every fold, then
    the best one on the training window."""
    return [candidate] * (len(grid_points(grid)) * len(split.folds) + 1)


def _start_search(split: TimeSplit, *, candidate: str, grid: Mapping[str, list[Any]], settings: TrainSettings,
                  runner: FitRunner, inputs: ModelInputs) -> _Search:
    """Submit every grid point's fit on every fold; the results come as the runner gets to them.
    The fits must have been announced to ``runner`` (:meth:`FitRunner.expect`)."""
    points = grid_points(grid)
    folds = [
        [
            runner.submit(candidate, f"{_varying(grid, params)} fold {number}".strip(), functools.partial(
                _fit_and_measure, fold.fit, fold.validation, candidate=candidate, params=params, settings=settings,
                inputs=inputs))
            for number, fold in enumerate(split.folds, start=1)
        ]
        for params in points
    ]
    return _Search(candidate, grid, points, folds)


def _finish_search(split: TimeSplit, search: _Search, *, settings: TrainSettings,
                   runner: FitRunner, inputs: ModelInputs) -> Callable[[], CandidateResult]:
    """Rank the grid points once their folds are fitted, submit the best one's fit on the training
    window; the returned function waits for that fit and measures it."""
    points = []
    fold_models: list[list[PipelineModel]] = []
    for params, futures in zip(search.points, search.folds, strict=True):
        fitted = [future.result() for future in futures]
        point = SearchPoint(search.candidate, params, [one.curve for one in fitted])
        log.info("search: %s %s: validation AUC-PR %.4f", search.candidate, params, point.validation_auc_pr)
        points.append(point)
        fold_models.append([one.model for one in fitted])
    best_index = max(range(len(points)), key=lambda index: points[index].validation_auc_pr)
    best = points[best_index]
    window = runner.submit(
        search.candidate, f"{_varying(search.grid, best.params)} training window".strip(), functools.partial(
            _fit_and_measure, split.training_window, split.holdout, candidate=search.candidate, params=best.params,
            settings=settings, inputs=inputs, held_out=True))
    return functools.partial(_measured, best, points, fold_models[best_index], window, settings=settings)


def _measured(best: SearchPoint, points: list[SearchPoint], fold_models: list[PipelineModel],
              window: Future[_Fitted], *, settings: TrainSettings) -> CandidateResult:
    validation_curve = best.validation_curve
    threshold = choose_threshold(settings.threshold, validation_curve.with_normal_weight(settings.normal_weight))
    fitted = window.result()
    validation_metrics = metrics_of(validation_curve, threshold, settings, prefix="val_")
    validation_metrics["val_auc_pr"] = best.validation_auc_pr  # the mean over folds, as ranked
    holdout_metrics = metrics_of(fitted.curve, threshold, settings)
    low, high = average_precision_interval(fitted.curve, seed=settings.seed)
    holdout_metrics.update(auc_pr_ci95_low=low, auc_pr_ci95_high=high)
    if fitted.card_precision is not None:
        holdout_metrics[card_precision_metric(settings.card_precision_k)] = fitted.card_precision
    return CandidateResult(
        best=best,
        points=points,
        threshold=threshold,
        validation_metrics=validation_metrics,
        holdout_metrics=holdout_metrics,
        holdout_curve=fitted.curve,
        model=fitted.model,
        fold_models=fold_models,
    )


def search_candidate(
    split: TimeSplit, *, candidate: str, grid: Mapping[str, list[Any]], settings: TrainSettings,
    runner: FitRunner | None = None, inputs: ModelInputs = CREDITCARD,
) -> CandidateResult:
    """Fit every grid point on every fold, keep the best by mean validation AUC-PR, measure it.

    The threshold is chosen by the policy on the best point's validation scores (all folds,
    real class balance); the best point is refit on the whole training window and measured
    on the held-out days at that threshold, with a bootstrap 95% interval of its AUC-PR.
    Without a ``runner``, the fits run one after another.
    """
    if runner is None:
        with FitRunner(parallel=1, clock=time.monotonic) as sequential:
            return search_candidate(split, candidate=candidate, grid=grid, settings=settings, runner=sequential,
                                    inputs=inputs)
    runner.expect(_fits_of(split, candidate, grid))
    search = _start_search(split, candidate=candidate, grid=grid, settings=settings, runner=runner, inputs=inputs)
    return _finish_search(split, search, settings=settings, runner=runner, inputs=inputs)()


def search_all(split: TimeSplit, *, settings: TrainSettings, runner: FitRunner,
               inputs: ModelInputs = CREDITCARD) -> dict[str, CandidateResult]:
    """Search every candidate of ``settings``, then the ensemble of ``ensemble_members`` if any.

    Every fold fit of every candidate is submitted first, so that ``runner`` keeps its threads
    busy across candidates; each candidate is then ranked and refit on the training window.
    The results are those of searching the candidates one after another, in the config's order.
    """
    for candidate, grid in settings.candidates.items():
        runner.expect(_fits_of(split, candidate, grid))
    searches = [
        _start_search(split, candidate=candidate, grid=grid, settings=settings, runner=runner, inputs=inputs)
        for candidate, grid in settings.candidates.items()
    ]
    finishing = [_finish_search(split, search, settings=settings, runner=runner, inputs=inputs)
                 for search in searches]
    results = {search.candidate: result() for search, result in zip(searches, finishing, strict=True)}
    if settings.ensemble_members and not settings.reuse_member_fits:
        runner.expect(_fits_of(split, ENSEMBLE, {"members": [settings.ensemble_members]}))
    if settings.ensemble_members:
        results[ENSEMBLE] = _search_ensemble(split, results, settings=settings, runner=runner, inputs=inputs)
    return results


def _search_ensemble(split: TimeSplit, results: Mapping[str, CandidateResult], *, settings: TrainSettings,
                     runner: FitRunner, inputs: ModelInputs) -> CandidateResult:
    """The members' fraud probabilities averaged, each member with the parameters its search chose.

    Validated, thresholded and measured exactly like a single candidate, so the search can
    pick it, or not, by the same validation AUC-PR. With ``reuse_member_fits`` its fold and
    window models are made of the members' own (:func:`compose_ensemble`), which are what
    fitting the ensemble's pipeline on the same rows would fit again; otherwise it is fitted.
    """
    members = {member: results[member].best.params for member in settings.ensemble_members}
    grid = {"members": [members]}
    if not settings.reuse_member_fits:
        # Its fits were announced to the runner with the others' (search_all).
        search = _start_search(split, candidate=ENSEMBLE, grid=grid, settings=settings, runner=runner, inputs=inputs)
        return _finish_search(split, search, settings=settings, runner=runner, inputs=inputs)()
    fold_models = [
        compose_ensemble({member: results[member].fold_models[index] for member in members})
        for index in range(len(split.folds))
    ]
    window_model = compose_ensemble({member: results[member].model for member in members})
    folds = [
        runner.submit(ENSEMBLE, f"fold {number} (members reused)", functools.partial(
            _measure_only, model, fold.validation, settings=settings, inputs=inputs), counted=False)
        for number, (model, fold) in enumerate(zip(fold_models, split.folds, strict=True), start=1)
    ]
    window = runner.submit(ENSEMBLE, "training window (members reused)", functools.partial(
        _measure_only, window_model, split.holdout, settings=settings, inputs=inputs, held_out=True), counted=False)
    best = SearchPoint(ENSEMBLE, {"members": members}, [future.result().curve for future in folds])
    log.info("search: %s %s: validation AUC-PR %.4f", ENSEMBLE, best.params, best.validation_auc_pr)
    return _measured(best, [best], fold_models, window, settings=settings)


# How the refit on every day is announced to a FitRunner before its candidate is known.
FINAL_FIT = "final refit"


def start_final_fit(rows: DataFrame, *, candidate: str, params: Mapping[str, Any], settings: TrainSettings,
                    runner: FitRunner, inputs: ModelInputs = CREDITCARD) -> Callable[[], PipelineModel]:
    """Submit the fit of ``candidate`` with ``params`` on ``rows``; the returned function waits for
    the model. With ``reuse_member_fits`` an ensemble's members are fitted side by side and
    composed (:func:`compose_ensemble`: the same model as fitting its pipeline). The fits take
    the place of one announced as :data:`FINAL_FIT`, if it was."""
    if candidate != ENSEMBLE or not settings.reuse_member_fits:
        runner.expect([candidate], instead_of=FINAL_FIT)
        future = runner.submit(candidate, "all days", functools.partial(
            fit, rows, candidate=candidate, params=params, settings=settings, inputs=inputs))
        return future.result
    members = pipeline_members(candidate, params)
    runner.expect(list(members), instead_of=FINAL_FIT)
    futures = {
        member: runner.submit(member, "all days (ensemble member)", functools.partial(
            fit, rows, candidate=member, params=member_params, settings=settings, inputs=inputs))
        for member, member_params in members.items()
    }
    return lambda: compose_ensemble({member: future.result() for member, future in futures.items()})


def best_candidate(results: Mapping[str, CandidateResult]) -> str:
    """The candidate whose best point has the highest validation AUC-PR (held-out days unused)."""
    return max(results, key=lambda name: results[name].best.validation_auc_pr)
