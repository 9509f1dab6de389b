"""Score-time input checks: rows the model cannot take stop scoring before anything is written."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from delta.tables import DeltaTable
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import ingest, score
from pipelines.core.errors import ModelInputError, SchemaError
from pipelines.data.schema import FEATURE_COLS
from pipelines.model.ref import ModelRef
from pipelines.scoring.checks import check_model_input
from tests.test_end_to_end import INGESTED_AT, sample_lines, write_csv

DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)
FEATURES = ["V1", "Amount"]
SCHEMA = "transaction_id string, txn_date date, V1 double, Amount double"
SCORED_AT = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def frame(spark, rows, schema=SCHEMA) -> DataFrame:
    return spark.createDataFrame(rows, schema)


def test_rows_the_model_can_take_pass(spark):
    source_df = frame(spark, [("a", DAY1, -1.5, 0.0), ("b", DAY1, 1e300, 12.5)])
    assert check_model_input(source_df, source="test", feature_cols=FEATURES) == {DAY1: 2}


@pytest.mark.parametrize(
    ("bad_value", "kind"),
    [(None, "null"), (float("nan"), "NaN"), (float("inf"), "infinite"), (float("-inf"), "infinite")],
)
def test_a_null_nan_or_infinite_value_is_refused_naming_column_rows_and_a_transaction(spark, bad_value, kind):
    source_df = frame(spark, [("a", DAY1, 0.1, 1.0), ("c", DAY2, 0.2, bad_value), ("b", DAY1, 0.3, bad_value),
                              ("d", DAY2, 0.4, 4.0)])
    with pytest.raises(ModelInputError) as refused:
        check_model_input(source_df, source="lake/transactions version 3, 2013-09-01", feature_cols=FEATURES)
    message = str(refused.value)
    assert message.startswith("lake/transactions version 3, 2013-09-01: values the model cannot take")
    # Two bad rows; the example is the smallest transaction id among them.
    assert f"Amount: 2 row(s) (2 {kind}), e.g. transaction_id 'b' on 2013-09-01 ({kind})" in message
    assert "V1" not in message.split("take")[1]
    assert message.endswith("nothing was written")


def test_every_bad_column_is_named_with_its_kinds(spark):
    source_df = frame(spark, [("a", DAY1, None, float("nan")), ("b", DAY1, float("nan"), float("inf")),
                              ("c", DAY1, 1.0, 2.0)])
    with pytest.raises(ModelInputError) as refused:
        check_model_input(source_df, source="test", feature_cols=FEATURES)
    assert "V1: 2 row(s) (1 null, 1 NaN), e.g. transaction_id 'a' on 2013-09-01 (null)" in str(refused.value)
    assert "Amount: 2 row(s) (1 NaN, 1 infinite), e.g. transaction_id 'a' on 2013-09-01 (NaN)" in str(refused.value)


def test_a_missing_feature_column_is_refused_listing_what_is_there(spark):
    source_df = frame(spark, [("a", DAY1, 1.0)], "transaction_id string, txn_date date, V1 double")
    with pytest.raises(ModelInputError, match=r"test: missing feature column\(s\) \['Amount'\] that the model reads; "
                                              r"the rows have \['transaction_id', 'txn_date', 'V1'\]"):
        check_model_input(source_df, source="test", feature_cols=FEATURES)


def test_a_feature_column_of_strings_is_refused_even_when_its_values_look_like_numbers(spark):
    source_df = frame(spark, [("a", DAY1, 1.0, "12.5")], "transaction_id string, txn_date date, V1 double, "
                                                          "Amount string")
    with pytest.raises(ModelInputError, match=r"feature column\(s\) Amount \(string\) are not numbers"):
        check_model_input(source_df, source="test", feature_cols=FEATURES)


def test_integer_and_decimal_features_are_numbers_and_only_their_nulls_are_bad(spark):
    schema = "transaction_id string, txn_date date, V1 int, Amount decimal(10,2)"
    check_model_input(frame(spark, [("a", DAY1, 3, Decimal("1.50"))], schema), source="test", feature_cols=FEATURES)
    with pytest.raises(ModelInputError, match=r"V1: 1 row\(s\) \(1 null\)"):
        check_model_input(frame(spark, [("a", DAY1, None, Decimal("1.50"))], schema), source="test",
                          feature_cols=FEATURES)


def test_the_check_reads_each_row_once(spark):
    reads = spark.sparkContext.accumulator(0)

    def counted(value: float) -> float:
        reads.add(1)
        return value

    source_df = frame(spark, [(str(i), DAY1, float(i), float(i)) for i in range(50)]).withColumn(
        "V1", F.udf(counted, "double")("V1"))
    check_model_input(source_df, source="test", feature_cols=FEATURES)
    assert reads.value == 50  # one aggregation: every row read once, not once per column or per check


class MustNotRun(Transformer):
    """Fails the test if scoring ever reaches the model."""

    def _transform(self, dataset: DataFrame) -> DataFrame:
        raise AssertionError("the model was called on rows that should have been refused")


class AmountModel(Transformer):
    def _transform(self, dataset: DataFrame) -> DataFrame:
        share = F.least(F.abs(F.col("Amount")) / 1000, F.lit(1.0))
        return dataset.withColumn("probability", array_to_vector(F.array(1 - share, share)))


def test_score_run_refuses_a_bad_row_another_writer_put_in_transactions_and_writes_nothing(spark, settings, tmp_path):
    header, rows = sample_lines(3)
    ingest.run(spark, settings, input_path=write_csv(tmp_path / "three.csv", header, rows), ingested_at=INGESTED_AT)
    transactions_path, scored_path = settings.tables.transactions_path, settings.tables.scored_path
    model_ref = ModelRef(name="fraud_detector", version="1", run_id="run", threshold=0.5, normal_weight=2.0)
    score.run(spark, settings, days=[DAY1], model=AmountModel(), model_ref=model_ref, scored_at=SCORED_AT)
    version_before = DeltaTable.forPath(spark, scored_path).history(1).first()["version"]
    rows_before = spark.read.format("delta").load(scored_path).collect()
    # Another writer appends a copy of a row with V7 missing, straight into the Delta table.
    good = spark.read.format("delta").load(transactions_path).filter(F.col("txn_date") == DAY1).limit(1)
    good.withColumn("transaction_id", F.lit("written-by-someone-else")).withColumn("V7", F.lit(None).cast("double")) \
        .write.format("delta").mode("append").save(transactions_path)

    with pytest.raises(SchemaError, match=r"V7: 1 row\(s\) \(1 null\), e.g. transaction_id 'written-by-someone-else' "
                                          r"on 2013-09-01 \(null\)"):
        score.run(spark, settings, days=[DAY1], model=MustNotRun(), model_ref=model_ref, scored_at=SCORED_AT)
    assert DeltaTable.forPath(spark, scored_path).history(1).first()["version"] == version_before
    assert sorted(spark.read.format("delta").load(scored_path).collect()) == sorted(rows_before)
    assert FEATURE_COLS[-1] == "Amount"  # the default columns checked are the model's features
