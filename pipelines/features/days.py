"""Which days ``features`` computes, from which history, and which computed days are stale.

A day's features depend on the transactions of the days its windows reach back to
(:func:`history_days`): ``history_span_days`` (the longest delay plus window, 37 by default)
and one day more, since a window is measured in hours and a day in the profile's zone may be
23 or 25 of them. So a new day is computed from those days alone, never from the whole table,
and it comes out exactly as a pass over the whole history would give it.

Each computed row records what its day was computed from: the feature set (the definitions)
and a fingerprint of its history days (each day's rows and last ingest). A day is stale when
either has changed since: a late file for an earlier day, or new definitions. ``features
--catch-up`` computes the stale and the missing days again.

A day inside a day's history with no transactions at all is a gap: its features would be
computed over missing history, silently wrong, so it is refused unless asked for
(``--allow-gaps``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.errors import NoDataError
from pipelines.data.payments import INGESTED_AT
from pipelines.data.schema import LABEL_COL, TRANSACTION_ID, TXN_DATE
from pipelines.data.tables import is_delta_table, is_unreadable_feed

FEATURE_SET, INPUTS_FINGERPRINT = "feature_set", "inputs_fingerprint"
# Days named in one message at most.
_SHOWN = 10


@dataclass(frozen=True)
class DayInputs:
    """What ``transactions`` holds for one day: its rows, and when the last of them was
    ingested (microseconds since the epoch: an instant, whatever the driver's zone)."""

    rows: int
    last_ingested_micros: int


@dataclass(frozen=True)
class ComputedDay:
    """What a day's rows in ``features`` were computed from."""

    feature_set: str
    inputs_fingerprint: str


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def history_days(day: date, span_days: int) -> tuple[date, date]:
    """The first and last day of ``transactions`` that ``day``'s features are computed from."""
    return day - timedelta(days=span_days + 1), day


def first_day(transactions: DataFrame) -> date | None:
    """The first day ``transactions`` holds (from the Delta log's partition values, no scan)."""
    return transactions.agg(F.min(TXN_DATE)).first()[0]


def transactions_per_day(transactions: DataFrame) -> dict[date, DayInputs]:
    """One pass over two columns of ``transactions``: each day's rows and last ingest."""
    rows = transactions.groupBy(TXN_DATE).agg(F.count(F.lit(1)).alias("rows"),
                                              F.unix_micros(F.max(INGESTED_AT)).alias("last")).collect()
    return {row[TXN_DATE]: DayInputs(row["rows"], row["last"]) for row in rows}


def inputs_fingerprint(day: date, per_day: Mapping[date, DayInputs], span_days: int) -> str:
    """A hash of what ``day``'s history holds: each of its days' rows and last ingest."""
    first, last = history_days(day, span_days)
    parts = [f"{d}:{per_day[d].rows}:{per_day[d].last_ingested_micros}"
             for d in days_between(first, last) if d in per_day]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def missing_history(days: Iterable[date], per_day: Mapping[date, DayInputs], span_days: int, *,
                    first_ingested: date | None = None) -> list[date]:
    """The days without transactions inside the history of ``days`` (from the first ingested
    day on, ``min(per_day)`` unless given: before it there is no history to miss), and those of
    ``days`` themselves."""
    if not per_day:
        return sorted(set(days))
    first_ingested = first_ingested or min(per_day)
    missing: set[date] = set()
    for day in days:
        first, last = history_days(day, span_days)
        # The day before the span is read only in case of a 25-hour day; it is not required.
        first = max(first + timedelta(days=1), first_ingested)
        missing.update(d for d in days_between(min(first, last), last) if d not in per_day)
    return sorted(missing)


def shown_days(days: Sequence[date]) -> str:
    shown = ", ".join(str(day) for day in days[:_SHOWN])
    return shown + (f" and {len(days) - _SHOWN} more" if len(days) > _SHOWN else "")


def check_no_gaps(days: Sequence[date], per_day: Mapping[date, DayInputs], span_days: int, *,
                  transactions: str, first_ingested: date | None = None) -> None:
    """Refuse to compute ``days`` when one of them, or a day their windows reach, has no transactions.

    :raises NoDataError: naming the missing days.
    """
    asked = set(days)
    missing = missing_history(days, per_day, span_days, first_ingested=first_ingested)
    empty_asked = [day for day in missing if day in asked]
    if empty_asked:
        raise NoDataError(f"features: {transactions} has no transactions on {shown_days(empty_asked)}: "
                          f"nothing to compute features for")
    if missing:
        raise NoDataError(
            f"features: {transactions} has no transactions on {shown_days(missing)}, inside the history "
            f"({span_days} days) of the days asked for: their features would be computed over missing "
            f"history. Ingest those days, or pass --allow-gaps if they really had no transactions")


def computed_days(features: DataFrame) -> dict[date, set[ComputedDay]]:
    """What each day of the ``features`` table was computed from (one entry, unless a write was
    interrupted by hand)."""
    found: dict[date, set[ComputedDay]] = {}
    for row in features.select(TXN_DATE, FEATURE_SET, INPUTS_FINGERPRINT).distinct().collect():
        found.setdefault(row[TXN_DATE], set()).add(ComputedDay(row[FEATURE_SET], row[INPUTS_FINGERPRINT]))
    return found


@dataclass(frozen=True)
class StaleDay:
    day: date
    reason: str


def stale_days(per_day: Mapping[date, DayInputs], computed: Mapping[date, set[ComputedDay]], *,
               feature_set: str, span_days: int) -> list[StaleDay]:
    """Every day with transactions whose features are missing, or were computed from other
    definitions or another history than the tables hold now."""
    stale = []
    for day in sorted(per_day):
        now = ComputedDay(feature_set, inputs_fingerprint(day, per_day, span_days))
        before = computed.get(day)
        if not before:
            stale.append(StaleDay(day, "not computed"))
        elif {entry.feature_set for entry in before} != {feature_set}:
            stale.append(StaleDay(day, "computed with other definitions"))
        elif before != {now}:
            stale.append(StaleDay(day, "its history changed since (a late or re-sent file)"))
    return stale


def read_label_history(spark: SparkSession, path: str) -> DataFrame | None:
    """Every label the ``label`` job ever merged into the ``labels`` table at ``path``, with when
    it became known: its change data feed from the first version (inserts, and the new side of
    updates). None when there is no such table: the labels in the files are all there is.

    Columns: ``transaction_id``, ``label``, ``labelled_at``, ``version`` (the merge's commit).
    """
    if not is_delta_table(spark, path):
        return None
    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path)
               .filter(F.col("_change_type").isin("insert", "update_postimage"))
               .select(TRANSACTION_ID, F.col(LABEL_COL).alias("label"), "labelled_at",
                       F.col("_commit_version").alias("version")))
    try:
        # Small (chargebacks): read once, so that a feed no longer readable stops the job here.
        return spark.createDataFrame(changes.collect(), changes.schema)
    except Exception as exc:
        if not is_unreadable_feed(exc):
            raise
        raise NoDataError(
            f"features: the change data feed of {path} can no longer be read from its first version "
            f"(log files cleaned up, or data files vacuumed): the history of labels, which the fraud "
            f"shares need to count each label from when it was known, is lost. Keep the labels table's "
            f"history (delta.logRetentionDuration, no VACUUM of it) until this is fixed") from None
