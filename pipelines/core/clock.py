"""Instants are UTC everywhere in this project, whatever the machine's time zone; and the one
place a job reads the clock.

Jobs call :func:`utc_now` once and pass the instant down (``scored_at``, ``decided_at``, ...);
library code never reads the clock itself. ``FRAUD_SCORING_NOW`` (an ISO 8601 instant with its
offset) sets that instant: an operator can replay a night as of a given moment. With
``FRAUD_SCORING_NOW_SET_AT`` too (the real clock's POSIX seconds when it was that instant), the
clock runs on from it: the test suite sets both once, so that no outcome depends on the date it
runs on while two jobs run one after the other still get two instants, in their order.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

from pipelines.core.errors import ConfigError

NOW_VARIABLE = "FRAUD_SCORING_NOW"
NOW_SET_AT_VARIABLE = "FRAUD_SCORING_NOW_SET_AT"


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already.

    Spark reads a naive Python datetime in the *process's* local zone, so every instant is
    made aware before it reaches a DataFrame.

    Example::

        as_utc(datetime(2013, 9, 1))   # datetime(2013, 9, 1, tzinfo=timezone.utc)
    """
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The current instant (aware, UTC), or the one ``FRAUD_SCORING_NOW`` sets (run on since
    ``FRAUD_SCORING_NOW_SET_AT``, when that is set too).

    :raises ConfigError: ``FRAUD_SCORING_NOW`` is set but is not an instant with an offset, or
        ``FRAUD_SCORING_NOW_SET_AT`` is not a number of seconds.

    Example::

        FRAUD_SCORING_NOW=2026-11-25T03:00:00+00:00 ./spark-submit.sh score   # scores 2026-11-24
    """
    fixed = os.environ.get(NOW_VARIABLE, "").strip()
    if not fixed:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(fixed)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(f"{NOW_VARIABLE} must be an ISO 8601 instant with its offset, "
                          f"e.g. 2026-11-25T03:00:00+00:00; got {fixed!r}")
    set_at = os.environ.get(NOW_SET_AT_VARIABLE, "").strip()
    if set_at:
        try:
            moment += timedelta(seconds=time.time() - float(set_at))
        except (ValueError, OverflowError):
            raise ConfigError(f"{NOW_SET_AT_VARIABLE} must be the POSIX seconds when it was {NOW_VARIABLE}, "
                              f"e.g. 1795921200.0; got {set_at!r}") from None
    return moment.astimezone(timezone.utc)
