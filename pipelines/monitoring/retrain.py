"""What an alert starts: a retraining (train, then promote through its gate), at most one per cool-down.

The ``retrain`` job reads one day's verdict from ``monitor_verdicts``, asks :func:`cool_down_until`
whether an earlier retraining still holds new ones off, and records every trigger, whatever
came of it, as one row of ``retrain_triggers`` (:data:`RETRAINS_SCHEMA`).

**Which triggers start a cool-down.** Only a trigger that ended in a decision: ``retrained``,
whether the gate then promoted the new version or refused it (a refusal is a verdict on the
data as it is; training again tomorrow on one more day would most likely be refused again). A
``failed`` trigger decided nothing, so it holds nothing off: a retry, or the next alert, starts
another, and a failure that keeps coming back shows as a failing job every time rather than
being silenced for ``retrain_cool_down_days``. ``skipped_cool_down`` rows never extend a
cool-down. The cool-down runs from when the retraining *finished* (when a new champion, if any,
took over) for ``[monitor] retrain_cool_down_days``; 0 turns it off.

Example::

    previous = [PastTrigger(finished_at=datetime(2026, 11, 20, 4, tzinfo=timezone.utc), action=RETRAINED)]
    cool_down_until(previous, cool_down_days=7, now=datetime(2026, 11, 25, tzinfo=timezone.utc)).until
    # datetime(2026, 11, 27, 4, 0, tzinfo=timezone.utc): skip, and record why
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from pipelines.core.clock import as_utc
from pipelines.core.errors import NotAnAlertError
from pipelines.data.tables import is_delta_table
from pipelines.monitoring.tables import ALERT

# What a trigger did: trained and put the new version through the gate; did nothing because an
# earlier retraining is still in its cool-down; or raised in train or promote (then re-raised).
RETRAINED, SKIPPED_COOL_DOWN, FAILED = "retrained", "skipped_cool_down", "failed"

# One row per trigger. ``alert_*``: the verdict that triggered it (its day, the version that
# scored the day, the verdict's reasons). ``champion_before``/``champion_after``: the champion
# when the trigger started and when it finished (after a failure in promote: null, not known).
# ``trained_version``: what train registered (null: skipped, or train failed). ``promote_decision``:
# 'promoted' or 'refused' (null: promote did not decide), with ``promote_exit_code`` the code
# promote alone would have exited with (0, 4; a failure's own code when promote raised).
# ``cool_down_until``: for a skipped trigger, when the cool-down that held it off ends.
# ``detail``: one line for a person (why skipped, what failed and how).
RETRAINS_SCHEMA = (
    "triggered_at timestamp, model_name string, alert_txn_date date, alert_model_version string, "
    "alert_reasons array<string>, action string, champion_before string, trained_version string, "
    "promote_decision string, promote_exit_code int, champion_after string, finished_at timestamp, "
    "cool_down_until timestamp, detail string"
)


@dataclass(frozen=True)
class AlertVerdict:
    """The verdict a retraining starts from: one day, the version that scored it, and why it alerted."""

    txn_date: date
    model_name: str
    model_version: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PastTrigger:
    """What the cool-down needs to know of an earlier row of ``retrain_triggers``."""

    finished_at: datetime
    action: str
    alert_txn_date: date | None = None
    trained_version: str | None = None
    promote_decision: str | None = None


@dataclass(frozen=True)
class CoolDown:
    """Retraining is held off until ``until`` because of the retraining ``since``."""

    until: datetime
    since: PastTrigger

    def describe(self) -> str:
        """One line for the log and the skipped row's ``detail``."""
        since = self.since
        alert = f" for the alert of {since.alert_txn_date}" if since.alert_txn_date else ""
        outcome = f" (version {since.trained_version} {since.promote_decision})" if since.trained_version else ""
        return (f"in cool-down until {self.until.isoformat()}: retrained{alert}, finished "
                f"{as_utc(since.finished_at).isoformat()}{outcome}")


def cool_down_until(
    previous_triggers: Iterable[PastTrigger], *, cool_down_days: float, now: datetime
) -> CoolDown | None:
    """The cool-down that holds a new retraining off at ``now``, or None when one may start.

    Only ``retrained`` triggers count (see the module's docstring): the newest of them by
    ``finished_at`` holds new ones off for ``cool_down_days`` from then; at exactly that
    instant one may start again.

    :param cool_down_days: ``[monitor] retrain_cool_down_days``; 0 never holds anything off.
    :param now: when the new trigger started; naive datetimes are taken to be UTC.
    :raises ValueError: ``cool_down_days`` is negative or not a finite number.

    Example::

        cool_down_until([], cool_down_days=7, now=now)   # None: never retrained, go ahead
    """
    if not math.isfinite(cool_down_days) or cool_down_days < 0:
        raise ValueError(f"cool_down_days must be a finite number of days, 0 or more; got {cool_down_days!r}")
    decided = [trigger for trigger in previous_triggers if trigger.action == RETRAINED]
    if not decided:
        return None
    newest = max(decided, key=lambda trigger: as_utc(trigger.finished_at))
    until = as_utc(newest.finished_at) + timedelta(days=cool_down_days)
    return CoolDown(until=until, since=newest) if as_utc(now) < until else None


@dataclass(frozen=True)
class TriggerRecord:
    """One row of ``retrain_triggers`` (:data:`RETRAINS_SCHEMA`), written once, after the work."""

    triggered_at: datetime
    alert: AlertVerdict
    action: str
    champion_before: str | None
    finished_at: datetime
    champion_after: str | None
    trained_version: str | None = None
    promote_decision: str | None = None
    promote_exit_code: int | None = None
    cool_down_until: datetime | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.action not in (RETRAINED, SKIPPED_COOL_DOWN, FAILED):
            raise ValueError(f"action must be one of {RETRAINED!r}, {SKIPPED_COOL_DOWN!r}, {FAILED!r}; "
                             f"got {self.action!r}")

    def as_row(self) -> tuple:
        """The record in :data:`RETRAINS_SCHEMA`'s order, its instants in UTC."""
        return (
            as_utc(self.triggered_at), self.alert.model_name, self.alert.txn_date, self.alert.model_version,
            list(self.alert.reasons), self.action, self.champion_before, self.trained_version,
            self.promote_decision, self.promote_exit_code, self.champion_after, as_utc(self.finished_at),
            as_utc(self.cool_down_until) if self.cool_down_until else None, self.detail,
        )


# --- Reading the two tables ---------------------------------------------------------------------


def find_alert(spark: SparkSession, verdicts_path: str, *, model_name: str, day: date | None) -> AlertVerdict:
    """The alert verdict of ``day`` (None: of the newest day whose verdict is alert).

    A day's verdict is its newest row (by ``computed_at``) for ``model_name``, whichever version
    it is about: a day rescored by another version and monitored again has the new verdict.

    :raises NotAnAlertError: no verdicts at all, none for ``day``, ``day``'s is not 'alert', or
        (without ``day``) no day's verdict is 'alert'. The message names what was found.
    """
    if not is_delta_table(spark, verdicts_path):
        raise NotAnAlertError(f"no verdicts at {verdicts_path}: run `monitor` first; "
                              f"retrain starts only from a day whose verdict is alert")
    newest_first = Window.partitionBy("txn_date").orderBy(F.col("computed_at").desc())
    per_day = (
        spark.read.format("delta").load(verdicts_path)
        .filter(F.col("model_name") == model_name)
        .withColumn("newest", F.row_number().over(newest_first))
        .filter(F.col("newest") == 1)
        .select("txn_date", "model_name", "model_version", "verdict", "reasons")
    )
    if day is not None:
        found = per_day.filter(F.col("txn_date") == F.lit(day)).first()
        if found is None:
            raise NotAnAlertError(f"no verdict for {day} of {model_name} in {verdicts_path} "
                                  f"(`monitor --date {day}` first): retrain starts only from an alert")
        if found["verdict"] != ALERT:
            reasons = "; ".join(found["reasons"] or []) or "no reasons given"
            raise NotAnAlertError(f"the verdict of {day} (version {found['model_version']}) is "
                                  f"{found['verdict']!r}, not 'alert' ({reasons}): nothing to retrain")
    else:
        found = per_day.filter(F.col("verdict") == ALERT).orderBy(F.col("txn_date").desc()).first()
        if found is None:
            newest = per_day.orderBy(F.col("txn_date").desc()).first()
            seen = (f"the newest, {newest['txn_date']}, is {newest['verdict']!r}" if newest
                    else f"there are none for {model_name}")
            raise NotAnAlertError(f"no day's verdict is 'alert' in {verdicts_path} ({seen}): nothing to retrain")
    return AlertVerdict(txn_date=found["txn_date"], model_name=found["model_name"],
                        model_version=found["model_version"], reasons=tuple(found["reasons"] or ()))


def read_triggers(spark: SparkSession, retrains_path: str, *, model_name: str) -> list[PastTrigger]:
    """The earlier triggers of ``model_name``, oldest first (none when the table does not exist yet).

    The table holds one row per alert that reached ``retrain``: small enough to read whole.
    """
    if not is_delta_table(spark, retrains_path):
        return []
    rows = (
        spark.read.format("delta").load(retrains_path)
        .filter(F.col("model_name") == model_name)
        # As microseconds since the epoch: a collected timestamp is a naive datetime in the
        # Python process's own zone, which need not be UTC.
        .select(F.unix_micros("finished_at").alias("finished_micros"), "action", "alert_txn_date",
                "trained_version", "promote_decision")
        .orderBy("finished_micros")
        .collect()
    )
    return [
        PastTrigger(finished_at=datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=row[0]),
                    action=row["action"], alert_txn_date=row["alert_txn_date"],
                    trained_version=row["trained_version"], promote_decision=row["promote_decision"])
        for row in rows
    ]
