"""Request time: a raw transaction's features from the store and the transaction itself, with
the card's read and append as one atomic step (:data:`~pipelines.online.store.CARD_STEP`).

Per transaction, one round trip (a pipeline): the day's marker, the terminal's running totals at
the window bounds (read only: terminal keys are written by the nightly publish alone), the
card's step, and the day's marker again. Without the marker on both sides (a store restarted
empty, a day not published), or with another feature set's, the append is undone and the
request refused.

Then, once scored, the answer is written into the card's entry, so a retry of the same id is
answered the same (:meth:`OnlineFeatures.record_answer`).

Rules the history follows (docs/online-features.md):

- a transaction's card windows hold the card's entries before it in (event time, id) order,
  whenever they arrived: a late transaction gets the features the batch gives it;
- a transaction already in the card's history (a retry, or one the batch published) is not
  counted again; with another time, amount or terminal it is refused (409);
- the store must hold the day's published state (its marker): else 503, never a score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipelines.core.config import FeatureSettings, OnlineSettings
from pipelines.core.errors import ConfigError
from pipelines.features.definitions import feature_set_id, history_features
from pipelines.online.store import (
    CARD_ANSWER,
    CARD_STEP,
    SEP,
    TERMINAL_TOTALS,
    StoreAddress,
    card_key_name,
    card_member,
    day_key_name,
    terminal_key_name,
)
from pipelines.online.windows import (
    MICROS_PER_DAY,
    Sums,
    Window,
    entity_windows,
    feature_value,
    features_of,
    flags,
    local_day,
    longest_reach_days,
    nearest_delay_days,
)

# A card key lives this long after its last write: its longest window, the day served before
# (late transactions), and a day of margin.
CARD_TTL_MARGIN_DAYS = 2


class StoreRefusal(Exception):
    """The store cannot give a transaction's history: 503 (or 409 for a conflicting retry),
    with ``kind`` for ``/metrics``."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


@dataclass(frozen=True)
class RawTransaction:
    """A payment as the platform sends it, parsed: the card already pseudonymised."""

    transaction_id: str
    event_micros: int
    card_key: str
    terminal_id: str
    cents: int

    @property
    def amount(self) -> float:
        return self.cents / 100


@dataclass
class Lookup:
    """A transaction's features (by column), or the first answer when it is a retry."""

    features: dict[str, float | int]
    day: date
    replay: Any = None  # what the service stored with the first answer
    pending_member: str | None = None


def check_servable(settings: FeatureSettings) -> None:
    """Refuse definitions the store cannot serve exactly.

    - A terminal window must end at least two days back: terminal keys are published nightly,
      and on a 25-hour day one day back is still inside the day.
    - A card's fraud share: its labels would be those known when the day served began, for the
      day before's late transactions too, and the day's own appends carry none.

    :raises ConfigError: naming the setting.
    """
    features = history_features(settings)
    if any(f.entity == "terminal" for f in features) and nearest_delay_days(settings, "terminal") < 2:
        raise ConfigError("[features.terminal] delay_days must be at least 2 for online features: a terminal's "
                          "windows are published nightly and never written during the day")
    if any(f.entity == "card" and f.aggregate == "fraud_share" for f in features):
        raise ConfigError("[features.card] aggregates: fraud_share is not served online (a card's labels change "
                          "during the day its history is written); use it for the terminal only")


class OnlineFeatures:
    """The service's side of the store, for one feature set."""

    def __init__(self, address: StoreAddress, online: OnlineSettings, features: FeatureSettings, *,
                 time_zone: str) -> None:
        check_servable(features)
        timeout = online.timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            address.url, password=address.password, socket_timeout=timeout, socket_connect_timeout=timeout,
            decode_responses=True, health_check_interval=0, retry_on_timeout=False)
        self.address, self.prefix, self.settings, self.time_zone = address, online.key_prefix, features, time_zone
        self.feature_set = feature_set_id(features, time_zone=time_zone)
        self.card_reach_days = longest_reach_days(features, "card")
        self.card_ttl_ms = (self.card_reach_days + CARD_TTL_MARGIN_DAYS) * 86_400_000
        # By SHA1 (EVALSHA), loaded once: redis-py's Script objects in a pipeline ask the store
        # whether they exist before every pipeline, a round trip each.
        self._scripts = {name: (hashlib.sha1(source.encode()).hexdigest(), source) for name, source in
                         (("card_step", CARD_STEP), ("card_answer", CARD_ANSWER), ("terminal", TERMINAL_TOTALS))}

    async def _load_scripts(self) -> None:
        for sha, source in self._scripts.values():
            if await self.client.script_load(source) != sha:
                raise StoreRefusal(503, "store_error", "the online store hashed a script differently")

    async def _run(self, fill) -> list[Any]:
        """``fill(pipe)`` queued and sent as one round trip; once more after loading the scripts
        when the store does not know them (a restart, or a first use)."""
        for attempt in (1, 2):
            async with self.client.pipeline(transaction=False) as pipe:
                fill(pipe)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                await self._load_scripts()
                continue
            return _results(results)
        raise AssertionError("unreachable")

    def _evalsha(self, pipe, name: str, key: str, args: list[Any]) -> None:
        pipe.evalsha(self._scripts[name][0], 1, key, *args)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def lookup(self, tx: RawTransaction) -> Lookup:
        """The transaction's history features (and its flags), appending it to its card.

        :raises StoreRefusal: the store is unreachable, too slow or full; the day is not
            published; the id was seen with other contents.
        """
        day = local_day(tx.event_micros, self.time_zone)
        marker = day_key_name(self.prefix, day.isoformat())
        terminal_windows = entity_windows(self.settings, "terminal", tx.event_micros)
        bounds = sorted({b for w in terminal_windows.values() for b in (w.lo, w.hi)})
        terminal_key = terminal_key_name(self.prefix, tx.terminal_id, day.isoformat())
        card_key = card_key_name(self.prefix, tx.card_key)
        card_windows = entity_windows(self.settings, "card", tx.event_micros)
        pending = card_member(tx.transaction_id, tx.cents, 0, tx.terminal_id)
        args: list[Any] = [tx.event_micros, tx.transaction_id, pending, self.card_ttl_ms,
                           tx.event_micros - self.card_reach_days * MICROS_PER_DAY, len(card_windows)]
        for window in card_windows.values():
            args += [window.lo, window.hi, 0 if window.ties_by_id else 1]

        def one_trip(pipe) -> None:
            # The marker before and after: the card's step is kept only if the day's state was
            # there, the same, on both sides of it.
            pipe.hmget(marker, "generation", "feature_set")
            if bounds:
                self._evalsha(pipe, "terminal", terminal_key, bounds)
            self._evalsha(pipe, "card_step", card_key, args)
            pipe.hget(marker, "generation")

        try:
            replies = await self._run(one_trip)
            (generation, published_set), reply, generation_after = replies[0], replies[-2], replies[-1]
            refusal = None
            if generation is None or generation_after != generation:
                refusal = StoreRefusal(503, "online_state_missing",
                                       f"the online store holds no published state for {day}: run `publish` for "
                                       f"that day (after a restart the store is empty until it is published again)")
            elif published_set != self.feature_set:
                refusal = StoreRefusal(503, "feature_set_mismatch",
                                       f"the online store's state for {day} was published for feature set "
                                       f"{published_set}; this service computes {self.feature_set}: publish again "
                                       f"with its [features]")
            if refusal is not None:
                if int(reply[0]) == 0:  # appended to a store without the day's state: undone
                    await self.client.zrem(card_key, pending)
                raise refusal
            totals = _totals(bounds, replies[1]) if bounds else {}
        except StoreRefusal:
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreRefusal(503, "store_unavailable", f"the online store did not answer in time: "
                                                         f"{type(exc).__name__}") from None
        except ResponseError as exc:
            if isinstance(exc, OutOfMemoryError) or "maxmemory" in str(exc):
                raise StoreRefusal(503, "store_full", "the online store is full (maxmemory reached; nothing is "
                                                      "evicted): this transaction's history cannot be kept") from None
            raise StoreRefusal(503, "store_error", f"the online store refused the step: {exc}") from None
        except RedisError as exc:
            raise StoreRefusal(503, "store_error", f"the online store failed: {type(exc).__name__}") from None
        return self._features(tx, day, reply, card_windows, terminal_windows, totals, pending)

    def _features(self, tx: RawTransaction, day: date, reply: list[Any], card_windows: dict[str, Window],
                  terminal_windows: dict[str, Window], totals: dict[int, Sums], pending: str) -> Lookup:
        found, found_member, found_score, tie_count = int(reply[0]), reply[1], reply[2], int(reply[3])
        ties = reply[4:4 + tie_count]
        raw_sums = [int(value) for value in reply[4 + tie_count:]]
        own = Sums(1, tx.cents, 0)
        before_at_instant = Sums()
        for member in ties:
            tie_id, cents, fraud = member.split(SEP)[:3]
            if tie_id < tx.transaction_id:  # Spark's string order: by code point
                before_at_instant += Sums(1, int(cents), int(fraud))
        sums: dict[str, Sums] = {}
        for index, (column, window) in enumerate(card_windows.items()):
            counted = Sums(*raw_sums[3 * index:3 * index + 3])
            sums[column] = counted + before_at_instant + own if window.ties_by_id else counted
        for column, window in terminal_windows.items():
            sums[column] = totals[window.hi] - totals[window.lo]
        features: dict[str, float | int] = {}
        for feature in features_of(self.settings):
            features[feature.column] = feature_value(feature, sums[feature.column])
        features.update(flags(self.settings, tx.event_micros, self.time_zone))
        if not found:
            return Lookup(features, day, pending_member=pending)
        _, cents, _, terminal_id, answer = found_member.split(SEP, 4)
        if int(float(found_score)) != tx.event_micros or int(cents) != tx.cents or terminal_id != tx.terminal_id:
            raise StoreRefusal(409, "transaction_conflict",
                               f"transaction {tx.transaction_id} was already received with another time, amount or "
                               f"terminal; a transaction id names one transaction")
        if answer:
            return Lookup(features, day, replay=json.loads(answer))
        return Lookup(features, day, pending_member=found_member)  # published by the batch, or not yet answered

    async def record_answer(self, tx: RawTransaction, pending_member: str, answer: Any) -> None:
        """Keep ``answer`` in the transaction's card entry, for a retry. Best effort: a store
        that fails here has the transaction counted already; a retry is then scored again."""
        answered = pending_member + json.dumps(answer, separators=(",", ":"))
        try:
            await self._run(lambda pipe: self._evalsha(pipe, "card_answer", card_key_name(self.prefix, tx.card_key),
                                                       [tx.event_micros, pending_member, answered]))
        except (RedisError, StoreRefusal):
            pass


def _results(results: list[Any]) -> list[Any]:
    """A pipeline's replies, the first error raised as the store gave it (redis-py's own
    raising rewrites its message)."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _totals(bounds: list[int], reply: list[Any]) -> dict[int, Sums]:
    return {bound: Sums(int(reply[3 * i]), int(reply[3 * i + 1]), int(reply[3 * i + 2]))
            for i, bound in enumerate(bounds)}

