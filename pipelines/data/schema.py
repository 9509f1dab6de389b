"""Column names shared by every stage, and the check that a frame has them."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.core.errors import SchemaError

PCA_COLS = [f"V{i}" for i in range(1, 29)]
# What the model sees: the anonymised components and the amount. `Time` is an offset from an
# unpublished start, so the model is not given it.
FEATURE_COLS = [*PCA_COLS, "Amount"]
LABEL_COL = "Class"
# The dataset's own CSV format, in its order.
RAW_COLS = ["Time", *FEATURE_COLS, LABEL_COL]

TRANSACTION_ID = "transaction_id"
EVENT_TS = "event_ts"
TXN_DATE = "txn_date"

SCORED_COLS = [
    TRANSACTION_ID,
    TXN_DATE,
    "fraud_probability",
    "is_fraud",
    "threshold",
    "model_name",
    "model_version",
    "model_run_id",
    "model_uri",
    "source_table_version",
    "scored_at",
]


def require_columns(present: Iterable[str], required: Iterable[str], *, source: str) -> None:
    """Raise :class:`SchemaError` naming every missing column and the ones that are there.

    Example::

        require_columns(df.columns, RAW_COLS, source="day1.csv")
    """
    present = list(present)
    missing = [column for column in required if column not in present]
    if missing:
        raise SchemaError(
            f"{source} is missing column(s) {missing}; it has {present}"
        )
