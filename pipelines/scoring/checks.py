"""Score-time checks: are the rows about to be scored ones the model can take?

``ingest`` refuses empty, NaN and infinite values, but ``transactions`` can hold rows that
other writers put there, and a model fed a null or NaN either fails half-way through a write
or quietly returns a score for nothing. So the rows are checked against the model's input
before anything is written: every feature column present, of a numeric type, and without a
null, NaN or infinite value. One pass over the rows, nothing collected but a count per Arrow
batch (numpy tests each batch whole); only when that finds a bad row does a second pass name
it (column, kinds, counts and an example row), so a good night pays for the quick test alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, NumericType

from pipelines.core.errors import ModelInputError
from pipelines.data.schema import FEATURE_COLS, TRANSACTION_ID, TXN_DATE

NULL, NAN, INFINITE = "null", "NaN", "infinite"


@dataclass(frozen=True)
class BadColumn:
    """A feature column with values the model cannot take: how many of each kind, and one row."""

    column: str
    counts: dict[str, int]
    example_id: str | None
    example_day: object
    example_kind: str

    def describe(self) -> str:
        total = sum(self.counts.values())
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.counts.items() if count)
        return (f"{self.column}: {total} row(s) ({kinds}), e.g. transaction_id {self.example_id!r} "
                f"on {self.example_day} ({self.example_kind})")


def _bad_kind(column: str, floating: bool) -> Column:
    """The kind of bad value ``column`` holds on a row (null when the value is fine)."""
    value = F.col(column)
    kind = F.when(value.isNull(), F.lit(NULL))
    if floating:  # only floating-point columns can hold NaN or an infinity
        kind = kind.when(F.isnan(value), F.lit(NAN)).when(F.abs(value) == F.lit(float("inf")), F.lit(INFINITE))
    return kind


def check_model_columns(rows: DataFrame, *, source: str, feature_cols: Sequence[str] = FEATURE_COLS) -> None:
    """Raise :class:`ModelInputError` if a feature column is missing or not a number: from the
    schema alone, no Spark job."""
    types = {field.name: field.dataType for field in rows.schema.fields}
    missing = [column for column in feature_cols if column not in types]
    if missing:
        raise ModelInputError(
            f"{source}: missing feature column(s) {missing} that the model reads; the rows have "
            f"{list(types)}; nothing was written"
        )
    not_numbers = [f"{column} ({types[column].simpleString()})" for column in feature_cols
                   if not isinstance(types[column], NumericType)]
    if not_numbers:
        raise ModelInputError(
            f"{source}: feature column(s) {', '.join(not_numbers)} are not numbers; the model reads "
            f"numbers; nothing was written"
        )


def screen_rows(rows: DataFrame, feature_cols: Sequence[str] = FEATURE_COLS) -> dict[date, tuple[int, int]]:
    """{day: (rows, rows with a null, NaN or infinite feature)} of every day ``rows`` hold.

    One pass: each task tests its Arrow batches whole with numpy and returns a count per day.
    """
    width = len(feature_cols)

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        totals: dict[int, list[int]] = {}
        for batch in batches:
            if not batch.num_rows:
                continue
            values = np.column_stack([batch.column(i + 1).to_numpy(zero_copy_only=False) for i in range(width)])
            bad = (~np.isfinite(values.reshape(-1, width))).any(axis=1)
            days = batch.column(0).cast(pa.int32()).to_numpy(zero_copy_only=False)  # days since 1970-01-01
            for day in np.unique(days):
                on_day = days == day
                total = totals.setdefault(int(day), [0, 0])
                total[0] += int(on_day.sum())
                total[1] += int(bad[on_day].sum())
        yield pa.RecordBatch.from_arrays(
            [pa.array(list(totals), type=pa.int32()).cast(pa.date32()),
             pa.array([t[0] for t in totals.values()], type=pa.int64()),
             pa.array([t[1] for t in totals.values()], type=pa.int64())], names=["day", "rows", "bad"])

    doubles = [F.col(column).cast("double").alias(f"f{i}") for i, column in enumerate(feature_cols)]
    columns = rows.select(F.col(TXN_DATE), *doubles)
    found: dict[date, tuple[int, int]] = {}
    for row in columns.mapInArrow(count, "day date, rows long, bad long").collect():
        before = found.get(row["day"], (0, 0))
        found[row["day"]] = (before[0] + row["rows"], before[1] + row["bad"])
    return found


def check_model_input(rows: DataFrame, *, source: str, feature_cols: Sequence[str] = FEATURE_COLS
                      ) -> dict[date, int]:
    """Raise :class:`ModelInputError` unless every row can be scored; otherwise return the rows
    of each day there is (the same pass: a day that is not there has no key).

    A missing feature column, or one whose type is not a number (a string, a boolean), is
    refused from the schema alone. Otherwise :func:`screen_rows` counts the bad rows; if
    there are any, one aggregation counts, per column, the null, NaN and infinite values and
    picks the smallest ``transaction_id`` among the bad rows; the error names each bad column,
    how many rows, and that transaction.

    :param rows: the rows about to be scored (``transaction_id``, ``txn_date`` and the features).
    :param source: what the rows are, for the message (table, version, days).

    Example::

        check_model_input(day_rows, source="lake/transactions version 7, 2013-09-01")
    """
    check_model_columns(rows, source=source, feature_cols=feature_cols)
    screened = screen_rows(rows, feature_cols)
    if not any(bad for _, bad in screened.values()):
        return {day: count for day, (count, _) in screened.items()}
    types = {field.name: field.dataType for field in rows.schema.fields}
    kinds = {column: _bad_kind(column, isinstance(types[column], DoubleType | FloatType)) for column in feature_cols}
    aggregates = []
    for index, kind in enumerate(kinds.values()):
        aggregates += [F.count_if(kind == F.lit(name)).alias(f"c{index}_{name}") for name in (NULL, NAN, INFINITE)]
        # Structs compare field by field: the bad row with the smallest transaction id.
        aggregates.append(F.min(F.when(kind.isNotNull(), F.struct(
            F.col(TRANSACTION_ID).alias("id"), F.col(TXN_DATE).alias("day"), kind.alias("kind")
        ))).alias(f"c{index}_example"))
    found = rows.agg(*aggregates).first()
    bad = []
    for index, column in enumerate(kinds):
        counts = {name: found[f"c{index}_{name}"] for name in (NULL, NAN, INFINITE)}
        if any(counts.values()):
            example = found[f"c{index}_example"]
            bad.append(BadColumn(column, counts, example["id"], example["day"], example["kind"]))
    if bad:
        raise ModelInputError(
            f"{source}: values the model cannot take (null, NaN or infinite): "
            f"{'; '.join(column.describe() for column in bad)}; nothing was written"
        )
