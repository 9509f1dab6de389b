"""The time split and the search on the real sample (no Delta, no MLflow): order, checks, repeatability."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
from pyspark.sql import functions as F

from pipelines.errors import NoDataError
from pipelines.tables import read_csv_as_strings
from pipelines.training import search_candidate, split_by_time, spread_for_fitting, with_class_weight
from pipelines.transactions import prepare_transactions
from tests.conftest import SAMPLE_CSV


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
