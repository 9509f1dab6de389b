"""Scoring: a fitted PipelineModel and a day of transactions in, scored rows with lineage out.

Writing is a separate step (:func:`pipelines.tables.replace_day`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.ml import Transformer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.clock import as_utc
from pipelines.model import fraud_probability
from pipelines.schema import SCORED_COLS, TXN_DATE


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version scores, and the decision threshold that travels with it."""

    name: str
    version: str
    run_id: str
    threshold: float
    # How many real normal transactions one normal training row stood for (1: none dropped).
    normal_weight: float = 1.0

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def score(
    transactions: DataFrame,
    model: Transformer,
    *,
    model_ref: ModelRef,
    source_table_version: int,
    scored_at: datetime,
) -> DataFrame:
    """Add the fraud probability, the decision and the lineage of each row; nothing else.

    :param transactions: rows of the ``transactions`` table (any number of days).
    :param model: the fitted pipeline of ``model_ref``.
    :param source_table_version: the Delta version of ``transactions`` the rows were read at.
    :param scored_at: when this scoring ran; the same for every row of one run (naive = UTC).

    Example::

        scored = score(day_df, model, model_ref=ModelRef("fraud_detector", "3", run_id, 0.42),
                       source_table_version=7, scored_at=datetime.now(timezone.utc))
    """
    probability = fraud_probability()
    return (
        model.transform(transactions)
        .select("transaction_id", TXN_DATE, probability)
        .withColumn("is_fraud", F.col("fraud_probability") >= F.lit(model_ref.threshold))
        .withColumn("threshold", F.lit(model_ref.threshold).cast("double"))
        .withColumn("model_name", F.lit(model_ref.name))
        .withColumn("model_version", F.lit(model_ref.version))
        .withColumn("model_run_id", F.lit(model_ref.run_id))
        .withColumn("model_uri", F.lit(model_ref.uri))
        .withColumn("source_table_version", F.lit(source_table_version).cast("long"))
        .withColumn("scored_at", F.lit(as_utc(scored_at)).cast("timestamp"))
        .select(*SCORED_COLS)
    )
