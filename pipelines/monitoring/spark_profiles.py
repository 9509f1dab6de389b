"""Profiles computed by Spark: quantile cut points, then every column's histogram in one pass.

The histograms are counted where the rows are: each task bins its Arrow batches with numpy
(:func:`pipelines.monitoring.profile.profile_of`) and returns one small row per column; only
those rows (tasks x columns) reach the driver, which adds them up. Nothing of the day itself
is collected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.monitoring.profile import Profile, cut_points, profile_of

# percentile_approx's accuracy: its relative error is 1 / accuracy of the rows' rank.
QUANTILE_ACCURACY = 10_000

_PARTIAL_SCHEMA = (
    "grp string, column string, counts array<double>, rows long, nulls long, total double, total_sq double, "
    "minimum double, maximum double, out_of_range long"
)
_WHOLE = "all"


def quantile_cuts(rows: DataFrame, columns: Sequence[str], bins: int) -> dict[str, np.ndarray]:
    """Each column's fine-bin cut points: its quantiles at 1/bins, ..., (bins-1)/bins (one pass)."""
    levels = [i / bins for i in range(1, bins)]
    quantiles = rows.agg(*[
        F.percentile_approx(F.col(column).cast("double"), levels, QUANTILE_ACCURACY).alias(column)
        for column in columns
    ]).first()
    return {column: cut_points(quantiles[column] or []) for column in columns}


def profiles(
    rows: DataFrame,
    edges: Mapping[str, np.ndarray],
    *,
    valid_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Profile]:
    """The profile of each column of ``edges`` over its bins, in one pass over ``rows``.

    :param valid_ranges: per column, the baseline's (minimum, maximum); values outside count
        as out of range.
    """
    return profiles_by(rows, edges, valid_ranges=valid_ranges).get(_WHOLE) or _empty(edges)


def profiles_by(
    rows: DataFrame,
    edges: Mapping[str, np.ndarray],
    *,
    by: str | None = None,
    valid_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, dict[str, Profile]]:
    """Each column's profile per value of the column ``by`` (as text), in one pass over ``rows``.

    Without ``by``, one group holds every row (see :func:`profiles`).
    """
    columns = list(edges)
    cuts = {column: np.asarray(edges[column], dtype=float) for column in columns}
    ranges = dict(valid_ranges or {})

    def partial_profiles(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        totals: dict[tuple[str, str], Profile] = {}
        for batch in batches:
            groups = (np.full(batch.num_rows, _WHOLE, dtype=object) if by is None
                      else np.asarray(batch.column(by).to_pylist(), dtype=object).astype(str))
            for group in np.unique(groups):
                mask = groups == group
                for column in columns:
                    values = np.asarray(batch.column(column).to_numpy(zero_copy_only=False), dtype=float)[mask]
                    part = profile_of(values, cuts[column], valid_range=ranges.get(column))
                    key = (str(group), column)
                    totals[key] = totals[key].merged(part) if key in totals else part
        if totals:
            yield pa.RecordBatch.from_pylist([_partial_row(group, column, part)
                                              for (group, column), part in totals.items()])

    selected = rows.select(*[F.col(column).cast("double").alias(column) for column in columns],
                           *([F.col(by).cast("string").alias(by)] if by else []))
    merged: dict[str, dict[str, Profile]] = {}
    for row in selected.mapInArrow(partial_profiles, _PARTIAL_SCHEMA).collect():
        part = Profile(
            edges=cuts[row["column"]], counts=np.asarray(row["counts"], dtype=float), rows=row["rows"],
            nulls=row["nulls"], total=row["total"], total_sq=row["total_sq"], minimum=row["minimum"],
            maximum=row["maximum"], out_of_range=row["out_of_range"],
        )
        group = merged.setdefault(row["grp"], {})
        group[row["column"]] = group[row["column"]].merged(part) if row["column"] in group else part
    return {group: {**_empty(edges), **found} for group, found in merged.items()}


def _empty(edges: Mapping[str, np.ndarray]) -> dict[str, Profile]:
    return {column: profile_of(np.empty(0), np.asarray(cut, dtype=float)) for column, cut in edges.items()}


def _partial_row(group: str, column: str, part: Profile) -> dict:
    return {
        "grp": group, "column": column, "counts": part.counts.tolist(), "rows": part.rows, "nulls": part.nulls,
        "total": part.total, "total_sq": part.total_sq, "minimum": part.minimum, "maximum": part.maximum,
        "out_of_range": part.out_of_range,
    }
