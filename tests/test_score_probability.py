"""fraud_probability at the real class balance: the prior correction, and a decision that does not move."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.model.ref import ModelRef
from pipelines.scoring.batch import real_balance_threshold, score

SCORED_AT = datetime(2026, 11, 25, 2, 30, tzinfo=timezone.utc)
DAY = date(2013, 9, 2)
SCORED_SCHEMA = (
    "transaction_id string, txn_date date, fraud_probability double, is_fraud boolean, threshold double, "
    "model_name string, model_version string, model_run_id string, model_uri string, "
    "source_table_version long, scored_at timestamp"
)
LINEAGE = ("fraud_detector", "3", "run123", "models:/fraud_detector/3", 7, SCORED_AT)


class ScoreColumnModel(Transformer):
    """A Spark ML transformer whose fraud probability is the column ``score``, bit for bit."""

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return dataset.withColumn("probability", array_to_vector(F.array(1 - F.col("score"), F.col("score"))))


def ref(threshold: float, normal_weight: float) -> ModelRef:
    return ModelRef(name="fraud_detector", version="3", run_id="run123", threshold=threshold,
                    normal_weight=normal_weight)


def scored(source_df: DataFrame, model_ref: ModelRef) -> DataFrame:
    return score(source_df, ScoreColumnModel(), model_ref=model_ref, source_table_version=7, scored_at=SCORED_AT)


def test_the_probability_is_moved_to_the_real_balance_and_the_threshold_with_it(spark):
    source_df = spark.createDataFrame([("a", DAY, 0.1), ("b", DAY, 0.5), ("c", DAY, 0.9)],
                                      "transaction_id string, txn_date date, score double")
    actual_df = scored(source_df, ref(threshold=0.5, normal_weight=4.0))
    # By hand, p' = p / (p + (1 - p) * 4): 0.1 / 3.7, 0.5 / 2.5, 0.9 / 1.3; the threshold 0.5 alike.
    expected_df = spark.createDataFrame(
        [
            ("a", DAY, 0.1 / 3.7, False, 0.2, *LINEAGE),
            ("b", DAY, 0.2, True, 0.2, *LINEAGE),
            ("c", DAY, 0.9 / 1.3, True, 0.2, *LINEAGE),
        ],
        SCORED_SCHEMA,
    )
    assert_approx_df_equality(actual_df, expected_df, 1e-12, ignore_nullable=True)


def test_a_normal_weight_of_one_changes_nothing(spark):
    source_df = spark.createDataFrame([("a", DAY, 0.1), ("b", DAY, 0.5), ("c", DAY, 0.9)],
                                      "transaction_id string, txn_date date, score double")
    actual_df = scored(source_df, ref(threshold=0.5, normal_weight=1.0))
    expected_df = spark.createDataFrame(
        [("a", DAY, 0.1, False, 0.5, *LINEAGE), ("b", DAY, 0.5, True, 0.5, *LINEAGE),
         ("c", DAY, 0.9, True, 0.5, *LINEAGE)],
        SCORED_SCHEMA,
    )
    assert_df_equality(actual_df, expected_df, ignore_nullable=True)  # exact, not approximate
    assert real_balance_threshold(0.5, 1.0) == 0.5


def test_decisions_are_the_same_rows_with_and_without_the_correction_ties_and_rounding_included(spark):
    threshold, weight = 0.5, 57.79
    corrected = lambda p: p / (p + (1.0 - p) * weight)  # noqa: E731 - the formula, as Python computes it
    just_below = math.nextafter(threshold, 0.0)
    # The case the guard is for: a score one unit in the last place below the threshold whose
    # corrected value rounds up to the corrected threshold. Without it, is_fraud would be
    # False on a row whose fraud_probability >= threshold.
    assert corrected(just_below) >= corrected(threshold)
    edges = [threshold, just_below, math.nextafter(threshold, 1.0), 0.0, 1.0]
    scores = edges + [n / 10_000 for n in range(10_001)]  # a grid of scores, 0.5 on it
    source_df = spark.createDataFrame([(str(i), DAY, s) for i, s in enumerate(scores)],
                                      "transaction_id string, txn_date date, score double")
    plain = scored(source_df, ref(threshold, 1.0)).select("transaction_id", F.col("is_fraud").alias("plain"))
    real = scored(source_df, ref(threshold, weight))
    both = plain.join(real, "transaction_id")
    assert both.count() == len(scores)
    assert both.filter(F.col("plain") != F.col("is_fraud")).count() == 0
    # The stored columns agree with the decision on every row, the rounding case included.
    assert real.filter(F.col("is_fraud") != (F.col("fraud_probability") >= F.col("threshold"))).count() == 0
    flags = {row.transaction_id: row.is_fraud for row in real.filter(F.col("transaction_id").isin("0", "1", "2"))
             .select("transaction_id", "is_fraud").collect()}
    assert flags == {"0": True, "1": False, "2": True}  # the tie is fraud, as p >= threshold says
    assert real.filter(F.col("transaction_id") == "1").first().fraud_probability < real_balance_threshold(
        threshold, weight)


def test_the_corrected_probability_keeps_the_order_of_the_scores(spark):
    source_df = spark.createDataFrame([(str(i), DAY, i / 100) for i in range(101)],
                                      "transaction_id string, txn_date date, score double")
    rows = scored(source_df, ref(0.5, 57.79)).select("transaction_id", "fraud_probability").collect()
    by_score = [row.fraud_probability for row in sorted(rows, key=lambda row: int(row.transaction_id))]
    assert by_score == sorted(by_score)
    assert by_score[0] == 0.0 and by_score[-1] == 1.0
    assert by_score[50] == pytest.approx(0.5 / (0.5 + 0.5 * 57.79))


@pytest.mark.parametrize("weight", [0.0, -1.0, math.inf, math.nan])
def test_a_normal_weight_that_is_not_a_positive_number_is_refused(spark, weight):
    source_df = spark.createDataFrame([("a", DAY, 0.1)], "transaction_id string, txn_date date, score double")
    with pytest.raises(ValueError, match="normal_weight must be a positive finite number"):
        scored(source_df, replace(ref(0.5, 1.0), normal_weight=weight))
