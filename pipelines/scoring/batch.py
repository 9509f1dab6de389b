"""Scoring: a fitted PipelineModel and a day of transactions in, scored rows with lineage out.

Writing is a separate step (:func:`pipelines.data.tables.replace_days`).

The model is fitted on a sample that keeps every fraud but only one normal transaction in
``normal_weight`` (~9% frauds against 0.17% in reality), so its score ``p`` is a probability
at the sample's balance. ``fraud_probability`` is that score moved to the real balance by the
prior correction ``p' = p / (p + (1 - p) * w)``: the odds ``p / (1 - p)`` divided by ``w``,
since each normal row stood for ``w`` real ones. The same ``w`` weighs normal rows in the
training run's ``precision_real_balance`` and ``alerts_per_100k`` (pipelines/model/evaluation.py),
so ``fraud_probability`` and those metrics describe the same population.

The score ``p`` comes from one of two engines (``[score] engine``): the version's portable form
(:class:`pipelines.model.portable.model.PortableModel`, numpy and compiled tree loops over Arrow batches in
the executors' Python, see :func:`portable_probabilities`) or Spark ML's own ``transform`` of
the ``PipelineModel``, the reference. Everything after ``p`` (the correction, the decision, the
lineage) is the same Spark expression for both.

The decision is the one the version was validated with, ``p >= threshold`` on the uncorrected
score, computed before any correction: the rows flagged are exactly those flagged without it.
The correction is increasing, so it is the same decision as ``p' >= threshold'`` with the
threshold corrected alike, and that corrected threshold is what the ``threshold`` column holds:
the column then compares with ``fraud_probability`` row by row (``is_fraud`` is
``fraud_probability >= threshold``). The version's own threshold stays in its registry tag.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa
from pyspark.ml import Transformer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.core.clock import as_utc
from pipelines.data.schema import SCORED_COLS, TRANSACTION_ID, TXN_DATE
from pipelines.model.portable.decision import check_normal_weight, real_balance_threshold
from pipelines.model.portable.model import PortableModel
from pipelines.model.ref import ModelRef
from pipelines.model.stages import fraud_probability

SAMPLE_PROBABILITY = "sample_probability"


def real_balance_probability(sample_probability: Column, normal_weight: float) -> Column:
    """``p / (p + (1 - p) * w)``: a probability at the sample's class balance, at the real one.

    :param normal_weight: ``w``, how many real normal transactions one normal training row
        stood for; 1 returns the column unchanged.
    """
    check_normal_weight(normal_weight)
    if normal_weight == 1.0:
        return sample_probability
    weight = F.lit(float(normal_weight))
    return sample_probability / (sample_probability + (F.lit(1.0) - sample_probability) * weight)


def portable_probabilities(transactions: DataFrame, model: PortableModel) -> DataFrame:
    """``transaction_id``, ``txn_date`` and ``sample_probability`` (the model's P(fraud) at the
    training sample's balance) of every row, scored by the portable form.

    Each task scores its rows one Arrow batch at a time: the feature columns become one numpy
    array and go through the stages whole, with no Python per row and no vector column. The
    model travels to the executors inside the function (Spark broadcasts it when it is large).
    The rows are checked first (:func:`pipelines.scoring.checks.check_model_input`); a null, NaN
    or infinite feature that got here anyway fails the task, so it is never given a score.
    """
    feature_cols = list(model.feature_cols)
    out_schema = f"{TRANSACTION_ID} string, {TXN_DATE} date, {SAMPLE_PROBABILITY} double"

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            features = np.column_stack(
                [batch.column(col).to_numpy(zero_copy_only=False) for col in feature_cols]
            ) if batch.num_rows else np.empty((0, len(feature_cols)))
            if not np.isfinite(features).all():
                # Checked before scoring (pipelines/scoring/checks.py); never score one regardless:
                # a null (NaN here), NaN or infinity would still walk the trees to a score.
                raise ValueError("a feature value is null, NaN or infinite: refusing to score it")
            probability = model.sample_probability(features)
            yield pa.RecordBatch.from_arrays(
                [batch.column(TRANSACTION_ID), batch.column(TXN_DATE), pa.array(probability, type=pa.float64())],
                names=[TRANSACTION_ID, TXN_DATE, SAMPLE_PROBABILITY],
            )

    return transactions.select(TRANSACTION_ID, TXN_DATE, *feature_cols).mapInArrow(score_batches, out_schema)


def sample_probabilities(transactions: DataFrame, model: Transformer | PortableModel) -> DataFrame:
    """``transaction_id``, ``txn_date`` and ``sample_probability`` of every row, by either engine:
    a :class:`PortableModel` (portable) or a fitted ``PipelineModel`` (Spark ML's ``transform``)."""
    if isinstance(model, PortableModel):
        return portable_probabilities(transactions, model)
    return model.transform(transactions).select(
        TRANSACTION_ID, TXN_DATE, fraud_probability().alias(SAMPLE_PROBABILITY))


def score(
    transactions: DataFrame,
    model: Transformer | PortableModel,
    *,
    model_ref: ModelRef,
    source_table_version: int,
    scored_at: datetime,
) -> DataFrame:
    """Add the fraud probability (at the real class balance), the decision and the lineage of
    each row; nothing else.

    ``is_fraud`` is the model's score against ``model_ref.threshold``, uncorrected, so it flags
    the same rows whatever ``model_ref.normal_weight`` is; ``fraud_probability`` and
    ``threshold`` are both moved to the real balance (see the module's docstring).

    :param transactions: rows of the ``transactions`` table (any number of days).
    :param model: ``model_ref``'s fitted pipeline, or its portable form (see :func:`sample_probabilities`).
    :param source_table_version: the Delta version of ``transactions`` the rows were read at.
    :param scored_at: when this scoring ran; the same for every row of one run (naive = UTC).

    Example::

        scored = score(day_df, model, model_ref=ModelRef("fraud_detector", "3", run_id, 0.42, 57.79),
                       source_table_version=7, scored_at=utc_now())
    """
    weight = model_ref.normal_weight
    threshold = real_balance_threshold(model_ref.threshold, weight)
    decided = F.col(SAMPLE_PROBABILITY) >= F.lit(model_ref.threshold)
    corrected = real_balance_probability(F.col(SAMPLE_PROBABILITY), weight)
    if weight != 1.0:
        # The correction is increasing, but rounded: for a score within a few units in the last
        # place of the threshold, the corrected score can land on the other side of the corrected
        # threshold. Such a probability is moved (by ~1e-18) to the side its decision is on,
        # so that is_fraud == (fraud_probability >= threshold) holds on every row.
        below_threshold = max(0.0, math.nextafter(threshold, -math.inf))
        corrected = (F.when(decided, F.greatest(corrected, F.lit(threshold)))
                     .otherwise(F.least(corrected, F.lit(below_threshold))))
    return (
        sample_probabilities(transactions, model)
        .withColumn("is_fraud", decided)
        .withColumn("fraud_probability", corrected)
        .withColumn("threshold", F.lit(threshold).cast("double"))
        .withColumn("model_name", F.lit(model_ref.name))
        .withColumn("model_version", F.lit(model_ref.version))
        .withColumn("model_run_id", F.lit(model_ref.run_id))
        .withColumn("model_uri", F.lit(model_ref.uri))
        .withColumn("source_table_version", F.lit(source_table_version).cast("long"))
        .withColumn("scored_at", F.lit(as_utc(scored_at)).cast("timestamp"))
        .select(*SCORED_COLS)
    )
