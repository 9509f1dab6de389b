"""Instants are UTC everywhere in this project, whatever the machine's time zone."""

from __future__ import annotations

from datetime import datetime, timezone


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already.

    Spark reads a naive Python datetime in the *process's* local zone, so every instant is
    made aware before it reaches a DataFrame.

    Example::

        as_utc(datetime(2013, 9, 1))   # datetime(2013, 9, 1, tzinfo=timezone.utc)
    """
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
