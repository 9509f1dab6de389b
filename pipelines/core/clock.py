"""Instants are UTC everywhere in this project, whatever the machine's time zone; and the one
place a job reads the clock.

Jobs call :func:`utc_now` once and pass the instant down (``scored_at``, ``decided_at``, ...);
library code never reads the clock itself. ``FRAUD_SCORING_NOW`` (an ISO 8601 instant with its
offset) fixes that instant: the test suite sets it so that no test's outcome depends on the
date it runs on, and an operator can replay a night as of a given moment.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from pipelines.core.errors import ConfigError

NOW_VARIABLE = "FRAUD_SCORING_NOW"


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already.

    Spark reads a naive Python datetime in the *process's* local zone, so every instant is
    made aware before it reaches a DataFrame.

    Example::

        as_utc(datetime(2013, 9, 1))   # datetime(2013, 9, 1, tzinfo=timezone.utc)
    """
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The current instant (aware, UTC), or the one ``FRAUD_SCORING_NOW`` fixes.

    :raises ConfigError: ``FRAUD_SCORING_NOW`` is set but is not an instant with an offset.

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
    return moment.astimezone(timezone.utc)
