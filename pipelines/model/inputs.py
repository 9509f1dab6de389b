"""What a model of a profile takes: the table it reads, its feature columns, label and amount.

- ``creditcard``: the ``transactions`` table, ``V1``..``V28`` and ``Amount``, labelled ``Class``.
- ``payments``: the ``features`` table (pipelines/features), the amount and the history
  features ``[features]`` declares, labelled ``label``; its cards are ``card_key``, which Card
  Precision@k ranks, and its rows carry the ``feature_set`` they were computed with: a model
  records the one it was trained on and refuses rows of any other.

Every stage after ``features`` asks :func:`model_inputs` instead of naming columns itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import Settings
from pipelines.core.errors import SchemaError
from pipelines.data import payments
from pipelines.data.schema import EVENT_TS, FEATURE_COLS, LABEL_COL, TRANSACTION_ID, TXN_DATE
from pipelines.features.definitions import feature_columns, feature_set_id

FEATURE_SET = "feature_set"


@dataclass(frozen=True)
class ModelInputs:
    """Where a profile's model reads its rows, and which of their columns it uses."""

    table: str                     # a key of [tables]: "transactions" or "features"
    feature_cols: tuple[str, ...]  # in the order the model takes them
    label_col: str
    amount_col: str
    time_col: str                  # the event time, a timestamp
    card_col: str | None = None    # None: the profile has no card key (no Card Precision@k)
    feature_set: str | None = None  # None: the rows carry no feature set

    def path(self, settings: Settings) -> str:
        """Where the table lives in ``settings`` (``[tables]`` may rename it)."""
        return settings.tables.path(getattr(settings.tables, self.table))


CREDITCARD = ModelInputs("transactions", tuple(FEATURE_COLS), LABEL_COL, "Amount", EVENT_TS)


def model_inputs(settings: Settings) -> ModelInputs:
    """The inputs of ``settings``' profile (its ``[features]`` for payments)."""
    if settings.profile.kind != "payments":
        return dataclasses.replace(CREDITCARD, label_col=settings.train.label_col)
    return ModelInputs(
        table="features",
        feature_cols=(payments.AMOUNT, *feature_columns(settings.features)),
        label_col=payments.LABEL,
        amount_col=payments.AMOUNT,
        time_col=payments.EVENT_TIME,
        card_col=payments.CARD_KEY,
        feature_set=feature_set_id(settings.features, time_zone=settings.profile.time_zone),
    )


def model_rows(rows: DataFrame, inputs: ModelInputs) -> DataFrame:
    """``rows`` with the feature columns as doubles (the amount is an exact decimal in
    ``features``; counts are longs, flags ints), what both engines and the parity check take."""
    types = dict(rows.dtypes)
    cast = {column: F.col(column).cast("double") for column in inputs.feature_cols
            if column in types and types[column] != "double"}
    return rows.withColumns(cast) if cast else rows


def check_feature_set(rows: DataFrame, expected: str | None, *, source: str) -> None:
    """Refuse rows computed with feature definitions other than ``expected`` (the model's).

    :raises FeatureSetMismatchError: a row of another feature set, or none recorded.
    """
    if expected is None:
        return
    if FEATURE_SET not in rows.columns:
        raise FeatureSetMismatchError(f"{source} has no {FEATURE_SET} column; the model was trained on "
                                      f"feature set {expected}")
    found = (rows.filter(~F.col(FEATURE_SET).eqNullSafe(F.lit(expected)))
             .groupBy(FEATURE_SET).agg(F.count(F.lit(1)).alias("rows"), F.min(TXN_DATE).alias("day"),
                                       F.min(TRANSACTION_ID).alias("example"))
             .orderBy("day").collect())
    if found:
        other = "; ".join(f"{row['rows']} row(s) of feature set {row[FEATURE_SET]} from {row['day']} "
                          f"(e.g. transaction {row['example']})" for row in found)
        raise FeatureSetMismatchError(
            f"{source}: the model was trained on feature set {expected}, and these rows were computed "
            f"with other definitions: {other}. Compute the features again (features --all) or train "
            f"a model on the current ones; nothing was written")


class FeatureSetMismatchError(SchemaError):
    """Rows made by feature definitions other than those the model was trained on."""
