"""History features in Spark: a pure transform from ``transactions`` rows to the same rows with
their features (:func:`with_features`), computed point-in-time.

Every window is a difference of two running totals over the entity's transactions ordered by
time (in microseconds):

- the total up to the window's end, t - delay. With no delay that is the transaction itself and
  the rows before it in the order of (event time, transaction id), a running total over rows;
  Spark's range frames take every row at one instant (its peers), which would let a
  transaction see those after it at the same instant. With a delay, it is every row at or
  before t - delay (all of them before the transaction).
- minus the total up to t - delay - w, every row at or before that instant.

So the window is (t - delay - w, t - delay], as the Handbook's pandas windows are, and two
transactions at one instant are told apart by their ids. Amounts are summed in integer cents
and labels as integers: exact, so any other computation of the same definitions (DuckDB's, the
service's) agrees to the last bit, and a mean is then one division, (cents / count) / 100.

A label in the transaction file is known at the transaction's time; one merged later by
``label`` is known from its ``labelled_at`` (see :func:`with_features`' ``label_changes``). A
transaction of day D counts the labels known when D began.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from pipelines.core.config import FeatureSettings
from pipelines.data.payments import AMOUNT, CARD_KEY, EVENT_TIME, LABEL, TERMINAL_ID
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE
from pipelines.features.definitions import NIGHT, WEEKEND, HistoryFeature, history_features

MICROS_PER_DAY = 86_400_000_000
_MICROS_PER_HOUR = 3_600_000_000
_ENTITY_KEY = {"card": CARD_KEY, "terminal": TERMINAL_ID}
_TS, _ONE, _CENTS, _FRAUD = "_ts", "_one", "_cents", "_fraud"


def _up_to(key: str, micros_back: int) -> WindowSpec:
    """The key's rows at or before t - ``micros_back`` (every row at that instant)."""
    return Window.partitionBy(key).orderBy(_TS).rangeBetween(Window.unboundedPreceding, -micros_back)


def _so_far(key: str) -> WindowSpec:
    """The key's rows up to this one in the order of (time, transaction id): itself included."""
    return (Window.partitionBy(key).orderBy(_TS, TRANSACTION_ID)
            .rowsBetween(Window.unboundedPreceding, Window.currentRow))


def _total_column(value: str, key: str, micros_back: int) -> str:
    return f"_{value}_{key}_{micros_back}"


def _totals(feature: HistoryFeature, value: str) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    """The two running totals of ``value`` whose difference is the feature's window
    (t - delay - w, t - delay]: up to its end, and up to its start."""
    key = _ENTITY_KEY[feature.entity]
    end = feature.delay_days * MICROS_PER_DAY
    start = (feature.delay_days + feature.window_days) * MICROS_PER_DAY
    return (value, key, end), (value, key, start)


def _values(feature: HistoryFeature) -> list[str]:
    """What the feature sums: always the count (of ones), and the amounts or labels it needs."""
    return [_ONE] + {"count": [], "mean_amount": [_CENTS], "fraud_share": [_FRAUD]}[feature.aggregate]


def _running_total(value: str, key: str, micros_back: int) -> Column:
    """The sum of ``value`` over the key's rows up to t - ``micros_back`` (0 when there are
    none); up to and including the row itself, in (time, id) order, when ``micros_back`` is 0."""
    window = _so_far(key) if micros_back == 0 else _up_to(key, micros_back)
    return F.coalesce(F.sum(value).over(window), F.lit(0).cast("long"))


def _in_window(feature: HistoryFeature, value: str) -> Column:
    end, start = _totals(feature, value)
    return F.col(_total_column(*end)) - F.col(_total_column(*start))


def _ratio(numerator: Column, count: Column) -> Column:
    return F.when(count > 0, numerator.cast("double") / count.cast("double")).otherwise(F.lit(0.0))


def _history_column(feature: HistoryFeature, *, corrected: bool) -> Column:
    count = _in_window(feature, _ONE)
    if feature.aggregate == "count":
        return count
    if feature.aggregate == "mean_amount":
        return _ratio(_in_window(feature, _CENTS), count) / F.lit(100.0)
    frauds = _in_window(feature, _FRAUD)  # fraud_share
    if corrected:
        frauds = frauds + F.coalesce(F.col(_correction_column(feature)), F.lit(0).cast("long"))
    return _ratio(frauds, count)


# --- Labels merged later (the `label` job), each known from its labelled_at ------------------

_X_TS, _KNOWN_AT, _DELTA, _DAY_START = "_x_ts", "_known_at", "_delta", "_day_start"


def _correction_column(feature: HistoryFeature) -> str:
    return f"_correction_{feature.column}"


def day_start(txn_date: Column, time_zone: str) -> Column:
    """The instant day ``txn_date`` begins in ``time_zone`` (independent of the session's zone)."""
    local_midnight = F.timestamp_micros(F.unix_date(txn_date).cast("long") * MICROS_PER_DAY)
    return F.to_utc_timestamp(local_midnight, F.lit(time_zone))


def label_changes(rows: DataFrame, label_history: DataFrame) -> DataFrame:
    """Each later label of a transaction of ``rows`` as a change: the transaction's keys and
    time, when the label became known, and how much it moved the transaction's label (from the
    file's, or from the label before it).

    :param label_history: every label ever merged: ``transaction_id``, ``label`` (0/1),
        ``labelled_at``, and ``version`` (the order of merges with one ``labelled_at``).
    """
    order = Window.partitionBy(TRANSACTION_ID).orderBy(F.col("labelled_at"), F.col("version"))
    history = label_history.select(TRANSACTION_ID, F.col("label").cast("long").alias("_new"), "labelled_at", "version")
    return (rows.select(TRANSACTION_ID, CARD_KEY, TERMINAL_ID, F.unix_micros(F.col(EVENT_TIME)).alias(_X_TS),
                        F.coalesce(F.col(LABEL), F.lit(0)).cast("long").alias("_file"))
            .join(history, TRANSACTION_ID)
            .withColumn("_before", F.coalesce(F.lag("_new").over(order), F.col("_file")))
            .select(CARD_KEY, TERMINAL_ID, _X_TS, F.col("labelled_at").alias(_KNOWN_AT),
                    (F.col("_new") - F.col("_before")).alias(_DELTA))
            .filter(F.col(_DELTA) != 0))


def _corrections(rows: DataFrame, changes: DataFrame, features: list[HistoryFeature], time_zone: str) -> DataFrame:
    """Per transaction, for each fraud share, the sum of the label changes in its window that
    were known when its day began: what to add to the labels the file gave. The changes are few
    (chargebacks), so they are broadcast to the transactions of each entity."""
    queries = rows.select(TRANSACTION_ID, CARD_KEY, TERMINAL_ID, F.unix_micros(F.col(EVENT_TIME)).alias(_TS),
                          day_start(F.col(TXN_DATE), time_zone).alias(_DAY_START)).alias("q")
    shares = [feature for feature in features if feature.aggregate == "fraud_share"]
    per_entity = []
    for key in sorted({_ENTITY_KEY[feature.entity] for feature in shares}):
        mine = [feature for feature in shares if _ENTITY_KEY[feature.entity] == key]
        furthest = max(f.delay_days + f.window_days for f in mine) * MICROS_PER_DAY
        nearest = min(f.delay_days for f in mine) * MICROS_PER_DAY
        x_ts, t = F.col(f"c.{_X_TS}"), F.col(f"q.{_TS}")
        joined = queries.join(
            F.broadcast(changes.select(key, _X_TS, _KNOWN_AT, _DELTA)).alias("c"),
            (F.col(f"q.{key}") == F.col(f"c.{key}")) & (x_ts > t - furthest) & (x_ts <= t - nearest)
            & (F.col(f"c.{_KNOWN_AT}") < F.col(f"q.{_DAY_START}")))
        sums = [F.sum(F.when((x_ts > t - (f.delay_days + f.window_days) * MICROS_PER_DAY)
                             & (x_ts <= t - f.delay_days * MICROS_PER_DAY), F.col(f"c.{_DELTA}")))
                .alias(_correction_column(f)) for f in mine]
        per_entity.append(joined.groupBy(F.col(f"q.{TRANSACTION_ID}").alias(TRANSACTION_ID)).agg(*sums))
    result = per_entity[0]
    for more in per_entity[1:]:
        result = result.join(more, TRANSACTION_ID, "full")
    return result


def local_wall_clock_micros(event_time: Column, time_zone: str) -> Column:
    """The wall clock of ``event_time`` in ``time_zone``, as microseconds since 1970-01-01 00:00
    of that clock (independent of the session's zone)."""
    return F.unix_micros(F.from_utc_timestamp(event_time, F.lit(time_zone)))


def _quotient(micros: Column, unit: int) -> Column:
    """``micros`` divided by ``unit``, rounded down, in integer arithmetic (a double's
    division can round a microsecond before midnight up to the next day)."""
    return ((micros - F.pmod(micros, F.lit(unit))) / unit).cast("int")


def with_flags(rows: DataFrame, settings: FeatureSettings, *, time_zone: str) -> DataFrame:
    """``is_weekend`` (Saturday or Sunday) and ``is_night`` (``night_hours``, both ends
    included) of the transaction's wall clock in the profile's zone, as 0 or 1."""
    local = local_wall_clock_micros(F.col(EVENT_TIME), time_zone)
    flags = {}
    if settings.weekend_flag:
        day_number = _quotient(local, MICROS_PER_DAY)
        weekday = F.dayofweek(F.date_from_unix_date(day_number))  # 1 Sunday .. 7 Saturday
        flags[WEEKEND] = weekday.isin(1, 7).cast("int")
    if settings.night_flag:
        hour = _quotient(F.pmod(local, F.lit(MICROS_PER_DAY)), _MICROS_PER_HOUR)
        first, last = settings.night_hours
        flags[NIGHT] = hour.between(first, last).cast("int")
    return rows.withColumns(flags) if flags else rows


def with_features(rows: DataFrame, settings: FeatureSettings, *, time_zone: str,
                  label_history: DataFrame | None = None) -> DataFrame:
    """``rows`` (``transactions``' columns) with every feature of ``settings``.

    A transaction's features depend on the rows of its windows only: give every row the
    furthest window reaches back to (:func:`pipelines.features.days.history_days`), and the
    rows of the days asked for are exact; rows nearer the start of ``rows`` see a truncated
    history and are to be dropped.

    Labels: a transaction's ``label`` column, as the file gave it, counts as known from the
    transaction's own time (a null label counts as not fraud); fraud shares need a delay of at
    least two days, so every label in a window is known before the day begins (even a 25-hour day). A label merged
    later (``label_history``, see :func:`label_changes`) counts from its ``labelled_at``: a
    transaction of day D sees the labels known when D began, in the profile's zone.
    """
    prepared = rows.withColumns({
        _TS: F.unix_micros(F.col(EVENT_TIME)),
        _ONE: F.lit(1).cast("long"),
        _CENTS: (F.col(AMOUNT) * 100).cast("long"),
        _FRAUD: F.coalesce(F.col(LABEL), F.lit(0)).cast("long"),
    })
    features = history_features(settings)
    corrected = label_history is not None and any(f.aggregate == "fraud_share" for f in features)
    corrections = []
    if corrected:
        corrections = [_correction_column(f) for f in features if f.aggregate == "fraud_share"]
        prepared = prepared.join(_corrections(rows, label_changes(rows, label_history), features, time_zone),
                                 TRANSACTION_ID, "left")
    # Each running total once, however many features share it (the count most do).
    totals = {_total_column(*total): _running_total(*total)
              for feature in features for value in _values(feature) for total in _totals(feature, value)}
    with_history = (prepared.withColumns(totals)
                    .withColumns({feature.column: _history_column(feature, corrected=corrected)
                                  for feature in features})
                    .drop(_TS, _ONE, _CENTS, _FRAUD, *totals, *corrections))
    return with_flags(with_history, settings, time_zone=time_zone)

