"""What the driver's class-data archive is written from (``python -m pipelines.core.jvm_archive_build``
runs it under spark-submit; not a job of the nightly schedule).

The jobs' own steps on a few hundred rows of the real sample, in a temporary folder: ingest
(CSV, checks, ids, Delta merge), the score job's reads, row screen and one-commit replace, a
fit of two Spark ML models, a SQL aggregate, and the history features' windows over the same
rows made to look like payments (with the Delta log reads the features job makes). The JVM then
holds the classes a job loads.
"""

from __future__ import annotations

import argparse
import gzip
from itertools import islice
from pathlib import Path

from pyspark.sql import functions as F

import jobs.ingest as ingest
from pipelines.core.clock import utc_now
from pipelines.core.config import PROJECT_ROOT, FeatureSettings, load_settings, with_state_in
from pipelines.core.session import get_spark
from pipelines.data.schema import FEATURE_COLS, LABEL_COL, TRANSACTION_ID, TXN_DATE
from pipelines.data.tables import commit_history, current_version, read_version, replace_days, rows_per_day
from pipelines.features.days import first_day, transactions_per_day
from pipelines.features.history import with_features
from pipelines.model.stages import build_pipeline, fraud_probability
from pipelines.scoring.checks import check_model_input

SAMPLE = PROJECT_ROOT / "data" / "creditcard_sample.csv.gz"


def main(folder: Path) -> None:
    settings = with_state_in(load_settings("local"), folder)
    spark = get_spark(settings.spark)
    rows = folder / "rows.csv"
    with gzip.open(SAMPLE, "rt") as sample:  # the header and every 9th row: both days, some frauds
        rows.write_text(next(sample) + "".join(islice(sample, 0, None, 9)))
    ingest.run(spark, settings, input_path=str(rows), ingested_at=utc_now())

    path = settings.tables.transactions_path
    transactions = read_version(spark, path, current_version(spark, path))
    days = sorted(check_model_input(transactions, source=path))
    model = build_pipeline(candidate="ensemble", params={"members": {
        "logistic_regression": {"regParam": 0.1}, "random_forest": {"numTrees": 3, "maxDepth": 3}}},
        feature_cols=FEATURE_COLS, label_col=LABEL_COL).fit(transactions)
    # The model's own probability, so that its transform runs (a constant would be pruned away).
    scored = model.transform(transactions).select(TRANSACTION_ID, TXN_DATE, fraud_probability())
    replace_days(scored, settings.tables.scored_path, days=days)
    rows_per_day(read_version(spark, settings.tables.scored_path, 0), days)
    transactions.createOrReplaceTempView("transactions")
    spark.sql(f"SELECT {TXN_DATE}, COUNT(*), AVG(Amount) FROM transactions GROUP BY {TXN_DATE}").collect()

    payments = transactions.select(
        TRANSACTION_ID, F.col("event_ts").alias("event_time"), TXN_DATE,
        (F.abs(F.hash("V1")) % 50).cast("string").alias("card_key"),
        (F.abs(F.hash("V2")) % 20).cast("string").alias("terminal_id"),
        F.col("Amount").cast("decimal(18,2)").alias("amount"), F.col(LABEL_COL).alias("label"))
    features_path = str(folder / "lake" / "features")
    first_day(payments)
    transactions_per_day(payments.withColumn("ingested_at", F.current_timestamp()))
    replace_days(with_features(payments, FeatureSettings(), time_zone="UTC"), features_path, days=days,
                 metadata={"feature_set": "class-archive"}, job="features")
    commit_history(spark, features_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    main(parser.parse_args().folder)
