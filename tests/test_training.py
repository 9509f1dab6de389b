"""The time split and the search on the real sample (no Delta, no MLflow): order, checks, repeatability."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
from pyspark.sql import functions as F

from pipelines.core.config import EnsembleSettings
from pipelines.core.errors import NoDataError
from pipelines.data.tables import read_csv_as_strings
from pipelines.data.transactions import prepare_transactions
from pipelines.model.stages import ENSEMBLE
from pipelines.training.search import (
    FitRunner,
    search_all,
    search_candidate,
    split_by_time,
    spread_for_fitting,
    with_class_weight,
)
from tests.conftest import SAMPLE_CSV, settings_in


@pytest.fixture(scope="module")
def transactions(spark):
    raw = read_csv_as_strings(spark, str(SAMPLE_CSV))
    prepared = prepare_transactions(raw, start=datetime(2013, 9, 1), source_file="sample",
                                    ingested_at=datetime(2026, 11, 25, tzinfo=timezone.utc))
    rows = prepared.cache()
    yield rows
    rows.unpersist()


def span(rows):
    row = rows.agg(F.min("event_ts").alias("first"), F.max("event_ts").alias("last"), F.count("*").alias("n")).first()
    return row["first"], row["last"], row["n"]


def test_folds_validate_on_later_rows_than_they_fit(transactions):
    split = split_by_time(transactions, holdout_days=1, validation_fraction=0.4, validation_folds=2, label_col="Class")
    assert (split.training_days, split.holdout_days) == ([date(2013, 9, 1)], [date(2013, 9, 2)])
    _, fit1_last, _ = span(split.folds[0].fit)
    val1_first, val1_last, val1_rows = span(split.folds[0].validation)
    _, fit2_last, fit2_rows = span(split.folds[1].fit)
    val2_first, _, val2_rows = span(split.folds[1].validation)
    assert fit1_last < val1_first <= val1_last < val2_first
    assert fit2_last < val2_first
    assert fit2_rows + val2_rows == 2769  # the whole training window
    assert val1_rows == pytest.approx(0.2 * 2769, rel=0.02)
    assert span(split.holdout)[2] == 2643


def test_a_fold_without_fraud_is_refused(transactions):
    normal_rows = transactions.filter((F.col("Class") == 0) | (F.col("txn_date") == F.lit(date(2013, 9, 2))))
    with pytest.raises(NoDataError, match=r"fold 1 fit part \(0 frauds in"):
        split_by_time(normal_rows, holdout_days=1, validation_fraction=0.4, validation_folds=2, label_col="Class")


def test_class_weights_mark_frauds_only(spark):
    source_df = spark.createDataFrame([(1,), (0,)], "Class int")
    weights = [row.class_weight for row in with_class_weight(source_df, label_col="Class", fraud_weight=9.0).collect()]
    assert weights == [9.0, 1.0]


def test_the_same_seed_and_data_give_the_same_metrics(transactions, settings):
    train = replace(settings.train, class_weighting="balanced")
    split = split_by_time(transactions, holdout_days=1, validation_fraction=0.4, validation_folds=2, label_col="Class")
    grid = {"numTrees": [10], "maxDepth": [4]}
    first = search_candidate(split, candidate="random_forest", grid=grid, settings=train)
    second = search_candidate(split, candidate="random_forest", grid=grid, settings=train)
    assert first.validation_metrics == second.validation_metrics
    assert first.holdout_metrics == second.holdout_metrics
    assert first.threshold == second.threshold
    assert first.holdout_metrics["auc_pr"] > 0.8


def test_spread_rows_land_in_the_same_parts_in_the_same_order_however_they_came(spark):
    rows = spark.createDataFrame([(f"t{number:02d}", number) for number in range(30)], "transaction_id string, n int")

    def layout(source_df):
        spread = spread_for_fitting(source_df, 3)
        return spread.select(F.spark_partition_id().alias("part"), "transaction_id").collect()

    as_given = layout(rows)
    assert layout(rows.orderBy(F.desc("n")).repartition(5)) == as_given
    parts = {}
    for row in as_given:
        parts.setdefault(row.part, []).append(row.transaction_id)
    assert len(parts) == 3
    assert all(ids == sorted(ids) for ids in parts.values())


SEARCHED = {"logistic_regression": {"regParam": [0.01, 0.1]}, "random_forest": {"numTrees": [10], "maxDepth": [3, 5]}}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _search(transactions, settings, *, parallel_fits: int, reuse_member_fits: bool):
    train = replace(settings.train, candidates=SEARCHED, ensemble=EnsembleSettings(members=tuple(SEARCHED)),
                    parallel_fits=parallel_fits, reuse_member_fits=reuse_member_fits)
    split = split_by_time(spread_for_fitting(transactions, 2), holdout_days=1, validation_fraction=0.4,
                          validation_folds=2, label_col="Class")
    handler = _Lines()
    logger = logging.getLogger("pipelines.training.search")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with FitRunner(parallel=parallel_fits, clock=time.monotonic) as runner:
            return search_all(split, settings=train, runner=runner), handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def searched(transactions, tmp_path_factory):
    settings = settings_in(tmp_path_factory.mktemp("search"))
    sequential = _search(transactions, settings, parallel_fits=1, reuse_member_fits=False)
    parallel = _search(transactions, settings, parallel_fits=2, reuse_member_fits=True)
    return {"sequential": sequential, "parallel": parallel}


def test_a_parallel_search_reusing_member_fits_chooses_and_measures_as_the_sequential_one(searched):
    expected, _ = searched["sequential"]
    actual, _ = searched["parallel"]
    assert list(actual) == list(expected) == ["logistic_regression", "random_forest", ENSEMBLE]
    for candidate, expected_result in expected.items():
        result = actual[candidate]
        assert [point.params for point in result.points] == [point.params for point in expected_result.points]
        # To the last bits only: logistic regression's fits add the partitions' gradients in the
        # order their tasks finish, so two fits of the same data may differ there.
        assert ([point.validation_auc_pr for point in result.points]
                == pytest.approx([point.validation_auc_pr for point in expected_result.points], rel=1e-9))
        assert result.best.params == expected_result.best.params
        assert result.threshold == pytest.approx(expected_result.threshold, rel=1e-9)
        assert result.validation_metrics == pytest.approx(expected_result.validation_metrics, rel=1e-9)
        assert result.holdout_metrics == pytest.approx(expected_result.holdout_metrics, rel=1e-9)


def test_the_search_logs_each_fit_done_with_the_fits_left_and_an_estimate(searched):
    results, lines = searched["parallel"]
    progress = [line for line in lines if line.startswith("search: fit ")]
    # 2 points x 2 folds + the training window, for each candidate; the ensemble reuses them.
    assert len(progress) == 10
    pattern = re.compile(r"search: fit (\d+)/10 done \((\S+) (.*), (\d+) s\), (~\d+ (s|min) left|all done)")
    matches = [pattern.fullmatch(line) for line in progress]
    assert all(matches), progress
    assert sorted(int(match[1]) for match in matches) == list(range(1, 11))
    assert progress[-1].endswith("all done")
    labels = {f"{match[2]} {match[3]}" for match in matches}
    chosen_depth = results["random_forest"].best.params["maxDepth"]
    assert {"random_forest maxDepth=5 fold 2", "logistic_regression regParam=0.1 fold 1",
            f"random_forest maxDepth={chosen_depth} training window"} <= labels
