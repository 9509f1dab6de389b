"""Stale scored days: rows that reached ``transactions`` after their day was scored.

Every scored day records ``source_table_version``, the version of ``transactions`` it read.
A day is *stale* when a later version changed its rows (a late file, a file spanning two
days), or when rows of a day that was never scored arrived. ``score --catch-up`` rescores
those days; ``score --list-stale`` prints them. Both find them from Delta's versions, without
reading either table whole:

* **Which days changed, and at which version**: ``transactions`` keeps Delta's change data
  feed (``delta.enableChangeDataFeed``, set by ``ingest`` when it creates the table, and once
  by ``score --catch-up`` on an older table). The feed of versions A..B is read from the log of
  those commits and the files they added; only the day and the version are kept, so no data
  column is read.
* **From which version**: every ``score`` commit records in its ``userMetadata`` the version of
  ``transactions`` it read, and a catch-up commit also vouches that every change up to that
  version is scored (it rescored every day the feed showed as changed). The feed is read from
  just after the newest catch-up commit's version, or from earlier if a ``score`` committed
  since read an older version (a slow run that finished after it). Without a catch-up commit,
  or when a commit the job did not make followed it, from just after the oldest version any
  scored day read. A day never scored whose rows all predate that version is not looked for:
  score it with ``--date``.
* **When the feed cannot tell**: Delta records changes only from the commit that turned the
  feed on, and refuses to read it over an earlier version (``DELTA_MISSING_CHANGE_DATA``); old
  log or data files may also be cleaned up. The versions it cannot cover are then treated as
  having changed every day: each day of ``transactions`` that was never scored, or was scored
  before the last uncovered version, is stale. That may rescore more than needed (once: the
  catch-up commit then vouches for the current version), never less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import (
    DATA_NEUTRAL_OPERATIONS,
    CommitInfo,
    change_feed_turned_on,
    changes_per_day,
    commit_history,
    is_delta_table,
    is_unreadable_feed,
    read_version,
)

# Keys of a score commit's userMetadata.
SOURCE_VERSION_KEY = "source_table_version"
CATCH_UP_KEY = "catch_up"


def score_commit_metadata(*, source_table_version: int, catch_up: bool) -> dict[str, object]:
    """What a ``score`` commit records beside its job and write id (see the module docstring)."""
    return {SOURCE_VERSION_KEY: source_table_version, CATCH_UP_KEY: catch_up}


@dataclass(frozen=True)
class StaleDay:
    """A day whose scored rows are older than its transactions, and why that is known."""

    day: date
    # The version of transactions the day was scored from (None: never scored).
    scored_version: int | None
    # Changes read from the feed after that version: how many change rows, and the versions.
    changed_rows: int = 0
    changed_versions: tuple[int, ...] = ()
    # Versions whose changes the feed could not show, when that is why the day is stale.
    uncovered: tuple[int, int] | None = None

    @property
    def reason(self) -> str:
        scored = "never scored" if self.scored_version is None else f"scored from version {self.scored_version}"
        if self.changed_versions:
            versions = ", ".join(str(version) for version in self.changed_versions)
            return f"{scored}; {self.changed_rows} row(s) added or changed since, at version(s) {versions}"
        first, last = self.uncovered or (None, None)
        return (f"{scored}; the change data feed does not cover versions {first}..{last}, so whether "
                f"its rows changed since cannot be told: counted stale")


@dataclass(frozen=True)
class StaleDays:
    """What one look for stale days found, against one version of ``transactions``."""

    version: int
    # The first version whose changes were looked at (version + 1: nothing new to look at).
    first_version: int
    days: list[StaleDay]
    # Versions the change data feed could not cover (their changes were assumed, see above).
    uncovered: tuple[int, int] | None = None


def first_unchecked_version(history: Sequence[CommitInfo], oldest_scored_version: Callable[[], int | None]) -> int:
    """The first version of ``transactions`` whose changes may not be scored yet.

    :param history: the scored table's commits, newest first.
    :param oldest_scored_version: the oldest version any scored day read (None: none scored);
        called only when the history does not answer.
    """
    read_since: list[int] = []
    for commit in history:
        version = commit.metadata.get(SOURCE_VERSION_KEY)
        if commit.metadata.get(CATCH_UP_KEY) and isinstance(version, int):
            return min([version, *read_since]) + 1
        if isinstance(version, int):
            read_since.append(version)
        elif commit.operation not in DATA_NEUTRAL_OPERATIONS:
            break  # a write this job did not make: what it wrote is unknown
    oldest = oldest_scored_version()
    return 0 if oldest is None else oldest + 1


def scored_versions(scored: DataFrame | None, days: Iterable[date] | None = None) -> dict[date, int]:
    """The version of ``transactions`` each scored day was scored from (of ``days``, or all)."""
    if scored is None:
        return {}
    if days is not None:
        days = sorted(days)
        if not days:
            return {}
        scored = scored.filter(F.col(TXN_DATE).isin(*days))
    rows = scored.groupBy(TXN_DATE).agg(F.min("source_table_version").alias("version")).collect()
    return {row[TXN_DATE]: int(row["version"]) for row in rows}


def days_with_rows(transactions: DataFrame, days: Iterable[date] | None = None) -> set[date]:
    """The days (of ``days``, or all) on which ``transactions`` holds at least one row."""
    if days is not None:
        days = sorted(days)
        if not days:
            return set()
        transactions = transactions.filter(F.col(TXN_DATE).isin(*days))
    return {row[TXN_DATE] for row in transactions.select(TXN_DATE).distinct().collect()}


def _changes(spark: SparkSession, path: str, first: int, last: int) -> dict[date, list[tuple[int, int]]] | None:
    """Per day, (version, changed rows) of the commits ``first``..``last``; None if the feed cannot tell."""
    if first > last:
        return {}
    try:
        rows = changes_per_day(spark, path, first_version=first, last_version=last).collect()
    except Exception as exc:
        if not is_unreadable_feed(exc):
            raise
        return None
    changes: dict[date, list[tuple[int, int]]] = {}
    for row in rows:
        changes.setdefault(row[TXN_DATE], []).append((int(row["version"]), int(row["changed_rows"])))
    return changes


def find_stale_days(spark: SparkSession, *, transactions_path: str, scored_path: str, version: int) -> StaleDays:
    """The days whose scored rows do not reflect ``transactions`` at ``version`` (see the
    module docstring for how they are found, and what is assumed where the feed cannot tell).

    Reads: the scored table's history, the change data feed of ``transactions`` since the
    first unchecked version, and the scored days' versions for the days it shows. Only when
    the feed cannot cover a version: every day of both tables (one column each).
    """
    scored = spark.read.format("delta").load(scored_path) if is_delta_table(spark, scored_path) else None

    def oldest_scored_version() -> int | None:
        return None if scored is None else scored.agg(F.min("source_table_version")).first()[0]

    history = commit_history(spark, scored_path) if scored is not None else []
    first = first_unchecked_version(history, oldest_scored_version)
    changes = _changes(spark, transactions_path, first, version)
    uncovered = None
    if changes is None:
        turned_on = change_feed_turned_on(commit_history(spark, transactions_path))
        covered_from = turned_on if turned_on is not None and first < turned_on <= version else version + 1
        changes = _changes(spark, transactions_path, covered_from, version)
        if changes is None:
            covered_from, changes = version + 1, {}
        uncovered = (first, covered_from - 1)
    if uncovered is None:
        days_scored = scored_versions(scored, changes)
        candidates = set(changes)
    else:
        days_scored = scored_versions(scored)
        candidates = set(changes) | days_with_rows(read_version(spark, transactions_path, version))
    stale = []
    for day in sorted(candidates):
        scored_version = days_scored.get(day)
        later = [(at, rows) for at, rows in changes.get(day, []) if scored_version is None or at > scored_version]
        if later:
            stale.append(StaleDay(day, scored_version, changed_rows=sum(rows for _, rows in later),
                                  changed_versions=tuple(sorted(at for at, _ in later))))
        elif uncovered and (scored_version is None or scored_version < uncovered[1]):
            stale.append(StaleDay(day, scored_version, uncovered=uncovered))
    return StaleDays(version=version, first_version=first, days=stale, uncovered=uncovered)
