"""A payments transaction as the platform sends it (raw: no features), checked and parsed.

    {"transaction_id": "81234", "event_time": "2018-09-24 10:11:12", "card": "4970...",
     "terminal_id": "3061", "amount": 57.23}

- ``event_time``: ISO 8601; without an offset it is a wall-clock time in ``[profile]
  time_zone`` (as the files are read), with one (``Z``, ``+02:00``) it is that instant;
- ``card``: the card number, pseudonymised here with the profile's keyed hash (as ``ingest``
  does) and never kept; or ``card_key``, already pseudonymised (64 hex digits);
- ``amount``: at least 0, at most two decimal places;
- ``feature_set`` (optional): refused with 409 unless the model's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from pipelines.online.lookup import RawTransaction
from pipelines.online.store import check_text_key
from pipelines.online.windows import micros

RAW_FIELDS = ("transaction_id", "event_time", "card", "card_key", "terminal_id", "amount", "feature_set")
_CARD_KEY = re.compile(r"^[0-9a-f]{64}$")
_DATE_AND_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# The store sums cents in doubles, exact below 2^53: amounts up to 10^13 cents keep a window of
# hundreds of transactions exact.
_MAX_CENTS = 10**13
_MAX_TEXT = 200


def is_raw(row: Any) -> bool:
    """Whether a transaction object is a raw payment (it has ``event_time``)."""
    return isinstance(row, dict) and "event_time" in row


def card_key_of(card: str, secret: bytes) -> str:
    """The card's key: HMAC-SHA256 (hex) of the card, spaces around it trimmed, as ingest's."""
    return hmac.new(secret, card.strip(" ").encode("utf-8"), hashlib.sha256).hexdigest()


def check_feature_set_field(row: dict[str, Any], where: list[Any], feature_set: str | None,
                            problems: list[dict[str, Any]], other_sets: list[dict[str, Any]], problem) -> None:
    """A transaction's optional ``feature_set``: not text is a problem (422); another set than
    the model's goes to ``other_sets`` (409)."""
    if "feature_set" not in row:
        return
    given = row["feature_set"]
    if type(given) is not str:
        problems.append(problem([*where, "feature_set"], "must be a string", "string_type"))
    elif given != feature_set:
        other_sets.append(problem([*where, "feature_set"], f"computed with feature set {given}; the model "
                                  f"was trained on {feature_set or 'no feature set'}", "feature_set"))


def _text(row: dict[str, Any], name: str, where: list[Any], problems: list[dict[str, Any]], problem) -> str | None:
    value = row.get(name)
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value.strip(" "):
        problems.append(problem([*where, name], "must be a non-empty string", "string_type"))
        return None
    value = value.strip(" ")  # as ingest's trim: spaces only
    why = check_text_key(value, name)
    if why or len(value) > _MAX_TEXT:
        problems.append(problem([*where, name], why or f"must be at most {_MAX_TEXT} characters", "string_type"))
        return None
    return value


def parse_raw(rows: list[Any], single: bool, *, secret: bytes | None, time_zone: str, problem,
              feature_set: str | None) -> tuple[list[RawTransaction], list[dict[str, Any]], list[dict[str, Any]]]:
    """(transactions, problems (422), other feature sets (409)) of raw payment objects."""
    zone = ZoneInfo(time_zone)
    parsed: list[RawTransaction] = []
    problems: list[dict[str, Any]] = []
    other_sets: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        where = [] if single else [index]
        if not isinstance(row, dict):
            problems.append(problem(where, "a transaction is an object", "type_error"))
            continue
        for name in sorted(set(row) - set(RAW_FIELDS)):
            problems.append(problem([*where, name], f"unknown field; a payment has {list(RAW_FIELDS)}",
                                    "extra_forbidden"))
        for name in ("transaction_id", "event_time", "terminal_id", "amount"):
            if name not in row:
                problems.append(problem([*where, name], "field required", "missing"))
        transaction_id = _text(row, "transaction_id", where, problems, problem) if "transaction_id" in row else None
        terminal_id = _text(row, "terminal_id", where, problems, problem) if "terminal_id" in row else None
        event_micros = None
        text = row.get("event_time")
        if type(text) is not str or not _DATE_AND_TIME.match(text.strip(" ")):
            problems.append(problem([*where, "event_time"], "must be a date and a time in ISO 8601 "
                                                            "(2018-09-24 10:11:12)", "datetime_parsing"))
        else:
            try:
                instant = datetime.fromisoformat(text.strip(" "))
                if instant.tzinfo is not None:
                    # As the files are read: by the wall clock in the profile's zone, where an
                    # hour shown twice is its first occurrence (Java's rule, fold 0 here).
                    instant = instant.astimezone(zone).replace(tzinfo=None)
                event_micros = micros(instant.replace(tzinfo=zone, fold=0))
            except (ValueError, OverflowError):
                problems.append(problem([*where, "event_time"], f"is not an ISO 8601 time: {text[:40]!r}",
                                        "datetime_parsing"))
        card_key = None
        if ("card" in row) == ("card_key" in row):
            problems.append(problem(where, "give the card number as `card`, or its key as `card_key`, not both",
                                    "missing"))
        elif "card" in row:
            card = _text(row, "card", where, problems, problem)  # a card number has no tab or brace
            if card is not None:
                if secret is None:
                    problems.append(problem([*where, "card"], "this service has no card key secret: send "
                                                              "`card_key`", "value_error"))
                else:
                    card_key = card_key_of(card, secret)
        else:
            key = row.get("card_key")
            if type(key) is not str or not _CARD_KEY.fullmatch(key):
                problems.append(problem([*where, "card_key"], "must be 64 lowercase hex digits", "string_type"))
            else:
                card_key = key
        cents = None
        amount = row.get("amount")
        if "amount" in row:
            if type(amount) not in (int, float):
                problems.append(problem([*where, "amount"], "must be a number", "float_type"))
            else:
                try:
                    exact = Decimal(repr(amount)) if type(amount) is float else Decimal(amount)
                    scaled = exact * 100
                    if not exact.is_finite() or exact < 0 or scaled != scaled.to_integral_value() \
                            or scaled >= _MAX_CENTS:
                        raise InvalidOperation
                    cents = int(scaled)
                except InvalidOperation:
                    problems.append(problem([*where, "amount"], f"must be a finite number, not negative, with at "
                                                                f"most 2 decimal places, got {amount!r}",
                                            "finite_number"))
        check_feature_set_field(row, where, feature_set, problems, other_sets, problem)
        if None not in (transaction_id, terminal_id, event_micros, card_key, cents):
            parsed.append(RawTransaction(transaction_id, event_micros, card_key, terminal_id, cents))
    return parsed, problems, other_sets
