"""score(): probabilities, the decision at the model's threshold, and lineage on every row."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.model.ref import ModelRef
from pipelines.scoring.batch import score

SCORED_AT = datetime(2026, 11, 25, 2, 30, tzinfo=timezone.utc)


class AmountShareModel(Transformer):
    """A real (if simple) Spark ML transformer: fraud probability = Amount / 100."""

    def _transform(self, dataset: DataFrame) -> DataFrame:
        share = F.col("Amount") / 100
        return dataset.withColumn("probability", array_to_vector(F.array(1 - share, share)))


@pytest.mark.timezone
def test_score_adds_probability_decision_and_lineage(spark):
    source_df = spark.createDataFrame(
        [("a", date(2013, 9, 2), 10.0), ("b", date(2013, 9, 2), 50.0), ("c", date(2013, 9, 2), 90.0)],
        "transaction_id string, txn_date date, Amount double",
    )
    ref = ModelRef(name="fraud_detector", version="3", run_id="run123", threshold=0.5)
    actual_df = score(source_df, AmountShareModel(), model_ref=ref, source_table_version=7, scored_at=SCORED_AT)
    lineage = ("fraud_detector", "3", "run123", "models:/fraud_detector/3", 7, SCORED_AT)
    expected_df = spark.createDataFrame(
        [
            ("a", date(2013, 9, 2), 0.1, False, 0.5, *lineage),
            ("b", date(2013, 9, 2), 0.5, True, 0.5, *lineage),
            ("c", date(2013, 9, 2), 0.9, True, 0.5, *lineage),
        ],
        "transaction_id string, txn_date date, fraud_probability double, is_fraud boolean, threshold double, "
        "model_name string, model_version string, model_run_id string, model_uri string, "
        "source_table_version long, scored_at timestamp",
    )
    assert_approx_df_equality(actual_df, expected_df, 1e-9, ignore_nullable=True)


@pytest.mark.timezone
def test_a_naive_scored_at_is_utc(spark):
    source_df = spark.createDataFrame([("a", date(2013, 9, 2), 10.0)],
                                      "transaction_id string, txn_date date, Amount double")
    ref = ModelRef(name="fraud_detector", version="3", run_id="run123", threshold=0.5)
    actual_df = score(source_df, AmountShareModel(), model_ref=ref, source_table_version=7,
                      scored_at=SCORED_AT.replace(tzinfo=None))
    assert actual_df.select(F.date_format("scored_at", "yyyy-MM-dd HH:mm:ss").alias("at")).first().at == \
        "2026-11-25 02:30:00"
