"""The nightly state for one day, from the Delta tables into the online store (Spark).

For serving day D (``publish --date D``), read at one Delta version of ``transactions``:

- **cards**: every transaction since D-1 began minus the card's longest reach (the day before D
  is served too, for late transactions), as members of the card's history, merged by
  transaction id (:data:`~pipelines.online.store.CARD_MERGE`): what the service appended during
  the day stays, its answers too; then what fell out of the reach is trimmed;
- **terminals**: each terminal's transactions in (D's start - its longest reach, D's end - its
  nearest delay], per instant with the running totals, labels as known when D began (a label
  merged later counts from its ``labelled_at``: :func:`pipelines.features.history.label_changes`).
  One new key per terminal and day, built aside and renamed over it (atomic);
- last, the day's marker: its generation and the Delta versions read. The service refuses a day
  without one, so a publish that stops halfway is never served; running it again is safe.

Written from the executors, a partition at a time, in pipelined round trips.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window as SparkWindow

from pipelines.core.clock import as_utc
from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError, NoDataError, ServiceUnavailableError
from pipelines.data.payments import AMOUNT, CARD_KEY, EVENT_TIME, LABEL, TERMINAL_ID
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE
from pipelines.data.tables import current_version, is_delta_table, read_version
from pipelines.features.days import read_label_history
from pipelines.features.definitions import feature_set_id
from pipelines.online.lookup import CARD_TTL_MARGIN_DAYS, check_servable
from pipelines.online.store import (
    CARD_MERGE,
    SEP,
    StoreAddress,
    card_key_name,
    day_key_name,
    store_address,
    terminal_key_name,
)
from pipelines.online.windows import MICROS_PER_DAY, day_start_micros, longest_reach_days, nearest_delay_days

log = logging.getLogger(__name__)

# A terminal's key of one day lives this long: the day, and the day after for late transactions.
TERMINAL_TTL_DAYS = 3
# Cards (or terminals) per pipelined round trip.
BATCH = 200
# Members per ZADD while a terminal's key of the day is built.
CHUNK = 1000

_TS, _CENTS, _FRAUD, _MEMBER = "_ts", "_cents", "_fraud", "_member"


@dataclass(frozen=True)
class PublishRun:
    day: date
    generation: str
    transactions_version: int
    labels_version: int | None
    card_entries: int
    cards: int
    cards_added: int
    cards_changed: int
    terminal_instants: int
    terminals: int
    seconds: float


def labels_known_at(rows: DataFrame, label_history: DataFrame | None, cutoff_micros: int) -> DataFrame:
    """``rows`` with ``_fraud``: each transaction's label as known at ``cutoff_micros``: the last
    one merged before it (by ``labelled_at``, then merge), else the file's; null is not fraud.
    The batch adds up the changes known before the day began
    (:func:`pipelines.features.history.label_changes`): the same label."""
    rows = rows.withColumn(_FRAUD, F.coalesce(F.col(LABEL), F.lit(0)).cast("long"))
    if label_history is None:
        return rows
    history = label_history.filter(F.unix_micros(F.col("labelled_at")) < F.lit(cutoff_micros))
    order = SparkWindow.partitionBy(TRANSACTION_ID).orderBy(F.col("labelled_at").desc(), F.col("version").desc())
    latest = (history.withColumn("_n", F.row_number().over(order)).filter(F.col("_n") == 1)
              .select(TRANSACTION_ID, F.col("label").cast("long").alias("_known")))
    return (rows.join(latest, TRANSACTION_ID, "left")
            .withColumn(_FRAUD, F.coalesce(F.col("_known"), F.col(_FRAUD))).drop("_known"))


def card_entries(transactions: DataFrame, *, trim_micros: int, first_day: date, last_day: date) -> DataFrame:
    """Each card's history members: (card_key, event µs, member) for the transactions after
    ``trim_micros`` of the days ``first_day``..``last_day``, ``_fraud`` their labels as known."""
    member = F.concat_ws(SEP, F.col(TRANSACTION_ID), F.col(_CENTS).cast("string"), F.col(_FRAUD).cast("string"),
                         F.col(TERMINAL_ID), F.lit(""))
    return (transactions
            .filter(F.col(TXN_DATE).between(F.lit(first_day), F.lit(last_day)))
            .withColumn(_TS, F.unix_micros(F.col(EVENT_TIME)))
            .filter(F.col(_TS) > F.lit(trim_micros))
            .withColumn(_CENTS, (F.col(AMOUNT) * 100).cast("long"))
            .select(CARD_KEY, _TS, member.alias(_MEMBER)))


def terminal_totals(rows: DataFrame) -> DataFrame:
    """Per terminal, per instant, the running totals up to it: (terminal_id, [(µs, member)])."""
    per_instant = rows.groupBy(TERMINAL_ID, _TS).agg(F.count(F.lit(1)).alias("n"), F.sum(_CENTS).alias("c"),
                                                     F.sum(_FRAUD).alias("f"))
    running = SparkWindow.partitionBy(TERMINAL_ID).orderBy(_TS).rowsBetween(SparkWindow.unboundedPreceding, 0)
    member = F.concat_ws(SEP, F.col(_TS).cast("string"), F.sum("n").over(running).cast("string"),
                         F.sum("c").over(running).cast("string"), F.sum("f").over(running).cast("string"))
    return (per_instant.withColumn(_MEMBER, member)
            .groupBy(TERMINAL_ID).agg(F.collect_list(F.struct(_TS, _MEMBER)).alias("entries")))


def _client(address: StoreAddress, timeout_ms: int):
    import redis
    return redis.Redis.from_url(address.url, password=address.password, socket_timeout=max(timeout_ms, 10_000) / 1000,
                                socket_connect_timeout=max(timeout_ms, 10_000) / 1000, decode_responses=True)


def _write_cards(address: StoreAddress, timeout_ms: int, prefix: str, trim: int, ttl_ms: int):
    def write(rows: Iterator[Any]) -> Iterator[tuple[int, int, int, int]]:
        client = _client(address, timeout_ms)
        merge = client.register_script(CARD_MERGE)
        cards = entries = added = changed = 0
        pipe = client.pipeline(transaction=False)
        pending = 0
        for row in rows:
            args: list[Any] = [trim, ttl_ms]
            for entry in row["entries"]:
                args += [entry[_TS], entry[_MEMBER]]
            merge(keys=[card_key_name(prefix, row[CARD_KEY])], args=args, client=pipe)
            cards, entries, pending = cards + 1, entries + len(row["entries"]), pending + 1
            if pending >= BATCH:
                for a, c in pipe.execute():
                    added, changed = added + a, changed + c
                pending = 0
        if pending:
            for a, c in pipe.execute():
                added, changed = added + a, changed + c
        client.close()
        yield cards, entries, added, changed
    return write


def _write_terminals(address: StoreAddress, timeout_ms: int, prefix: str, day: str, ttl_ms: int):
    """Each terminal's key of ``day`` built aside (a temporary key with the same hash tag), in
    chunks, then renamed over the key: atomic, and no long step blocks the store's requests."""
    def write(rows: Iterator[Any]) -> Iterator[tuple[int, int]]:
        client = _client(address, timeout_ms)
        terminals = instants = pending = 0
        pipe = client.pipeline(transaction=False)
        for row in rows:
            key = terminal_key_name(prefix, row[TERMINAL_ID], day)
            building = f"{key}:building"
            entries = row["entries"]
            pipe.delete(building)
            for start in range(0, len(entries), CHUNK):
                pipe.zadd(building, {entry[_MEMBER]: entry[_TS] for entry in entries[start:start + CHUNK]})
            pipe.pexpire(building, ttl_ms)
            pipe.rename(building, key)
            terminals, instants, pending = terminals + 1, instants + len(entries), pending + 1
            if pending >= BATCH:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()
        client.close()
        yield terminals, instants
    return write


def _written(writes, address: StoreAddress) -> list[Any]:
    """Run the executors' writes; a store that fails them (gone, full) stops the job by name."""
    try:
        return writes.collect()
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if "redis.exceptions." in line]
        cause = lines[-1].strip() if lines else f"{type(exc).__name__}"
        raise ServiceUnavailableError(f"publish: writing to the online store at {address.shown()} failed ({cause}); "
                                      f"no day marker was written, so the day is not served: run it again once "
                                      f"the store is back (each key is left whole, old or new)") from None


def publish_day(spark: SparkSession, settings: Settings, day: date, *, published_at: datetime) -> PublishRun:
    """Publish the state the service needs to serve ``day``'s transactions (see the module).

    :raises ConfigError: not the payments profile, no store configured, or definitions the
        store cannot serve. :raises NoDataError: no ``transactions`` table, or nothing in the
        history the day needs. :raises ServiceUnavailableError: the store does not answer.
    """
    if settings.profile.kind != "payments":
        raise ConfigError(f"publish: the online store serves the payments profile; {settings.env} is "
                          f"[profile] kind = {settings.profile.kind!r}")
    check_servable(settings.features)
    address = store_address(settings.online)
    if address is None:
        raise ConfigError("publish: no online store is configured: set $FRAUD_ONLINE_URL or [online] url")
    started = time.perf_counter()
    online, zone, prefix = settings.online, settings.profile.time_zone, settings.online.key_prefix
    try:
        with _client(address, online.timeout_ms) as probe:
            probe.ping()
    except Exception as exc:
        raise ServiceUnavailableError(f"publish: the online store at {address.shown()} does not answer: "
                                      f"{type(exc).__name__}: {exc}") from None
    source = settings.tables.transactions_path
    transactions_version = current_version(spark, source)
    transactions = read_version(spark, source, transactions_version)
    labels_path = settings.tables.path(settings.tables.labels)
    labels_version = current_version(spark, labels_path) if is_delta_table(spark, labels_path) else None
    label_history = read_label_history(spark, labels_path)

    start = day_start_micros(day, zone)
    end = day_start_micros(day + timedelta(days=1), zone)
    card_reach = longest_reach_days(settings.features, "card")
    terminal_reach = longest_reach_days(settings.features, "terminal")
    # Cards: D-1 is served too (late transactions), so its windows' reach is kept.
    trim = day_start_micros(day - timedelta(days=1), zone) - card_reach * MICROS_PER_DAY
    card_first, card_last = day - timedelta(days=card_reach + 3), day - timedelta(days=1)
    cards = (labels_known_at(transactions.filter(F.col(TXN_DATE).between(F.lit(card_first), F.lit(card_last))),
                             label_history, start)
             .transform(lambda rows: card_entries(rows, trim_micros=trim, first_day=card_first, last_day=card_last))
             .groupBy(CARD_KEY).agg(F.collect_list(F.struct(_TS, _MEMBER)).alias("entries")))
    card_ttl = (card_reach + CARD_TTL_MARGIN_DAYS) * 86_400_000
    card_counts = _written(cards.rdd.mapPartitions(_write_cards(address, online.timeout_ms, prefix, trim, card_ttl)),
                           address)
    n_cards, n_entries, added, changed = (sum(part[i] for part in card_counts) for i in range(4))

    n_terminals = n_instants = 0
    if terminal_reach:
        low = start - terminal_reach * MICROS_PER_DAY
        high = end - nearest_delay_days(settings.features, "terminal") * MICROS_PER_DAY
        first = day - timedelta(days=terminal_reach + 2)
        rows = (transactions.filter(F.col(TXN_DATE).between(F.lit(first), F.lit(day)))
                .withColumn(_TS, F.unix_micros(F.col(EVENT_TIME)))
                .filter((F.col(_TS) > F.lit(low)) & (F.col(_TS) <= F.lit(high)))
                .withColumn(_CENTS, (F.col(AMOUNT) * 100).cast("long")))
        totals = terminal_totals(labels_known_at(rows, label_history, start))
        terminal_counts = _written(totals.rdd.mapPartitions(
            _write_terminals(address, online.timeout_ms, prefix, day.isoformat(), TERMINAL_TTL_DAYS * 86_400_000)),
            address)
        n_terminals, n_instants = (sum(part[i] for part in terminal_counts) for i in range(2))
    if n_entries == 0 and n_instants == 0:
        raise NoDataError(f"publish: {source} holds no transactions in the history {day} needs "
                          f"({card_first}..{card_last}): ingest them first")

    generation = uuid.uuid4().hex
    marker = {
        "generation": generation, "day": day.isoformat(), "published_at": as_utc(published_at).isoformat(),
        "feature_set": feature_set_id(settings.features, time_zone=zone),
        "transactions_path": source, "transactions_version": transactions_version,
        "labels_version": "" if labels_version is None else labels_version,
        "cards": n_cards, "card_entries": n_entries, "terminals": n_terminals, "terminal_instants": n_instants,
    }
    try:
        client = _client(address, online.timeout_ms)
        pipe = client.pipeline(transaction=False)
        pipe.delete(day_key_name(prefix, day.isoformat()))
        pipe.hset(day_key_name(prefix, day.isoformat()), mapping=marker)
        pipe.pexpire(day_key_name(prefix, day.isoformat()), TERMINAL_TTL_DAYS * 86_400_000)
        for back in range(2, 2 + TERMINAL_TTL_DAYS + 7):  # days no longer served exactly (card history trimmed)
            pipe.delete(day_key_name(prefix, (day - timedelta(days=back)).isoformat()))
        pipe.execute()
        client.close()
    except Exception as exc:
        raise ServiceUnavailableError(f"publish: writing {day}'s marker to the online store at {address.shown()} "
                                      f"failed ({type(exc).__name__}: {exc}): the day is not served; run it "
                                      f"again") from None
    run = PublishRun(day, generation, transactions_version, labels_version, n_entries, n_cards, added, changed,
                     n_instants, n_terminals, time.perf_counter() - started)
    log.info("publish: %s for %s from %s version %d (labels version %s): %d card entries in %d cards (%d added, "
             "%d changed), %d terminal instants in %d terminals; %.1f s", address.shown(), day, source,
             transactions_version, labels_version, n_entries, n_cards, added, changed, n_instants, n_terminals,
             run.seconds)
    return run
