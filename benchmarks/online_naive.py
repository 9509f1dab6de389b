"""The online store with a naive layout, for benchmarks/online_load.py's comparison only.

Each card's history and each terminal's instants as plain lists, every window computed by
reading the whole list into the service (LRANGE 0 -1) and filtering it there; the append is a
separate RPUSH. Same features as the chosen layout (the benchmark checks it on a day), without
its retries, conflicts or atomic step: what one writes first, before measuring.

    .venv/bin/python benchmarks/online_naive.py <env> <port>   # fraud-serve on the naive layout
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipelines.core.config import load_serving_settings  # noqa: E402
from pipelines.features.definitions import history_features  # noqa: E402
from pipelines.online.lookup import Lookup, OnlineFeatures, RawTransaction, StoreRefusal  # noqa: E402
from pipelines.online.store import SEP, day_key_name  # noqa: E402
from pipelines.online.windows import Sums, entity_windows, feature_value, flags, local_day  # noqa: E402
from pipelines.serving import app as service  # noqa: E402
from pipelines.serving.cli import server_config  # noqa: E402


def naive_card_key(prefix: str, card_key: str) -> str:
    return f"{prefix}:nc:{{{card_key}}}"


def naive_terminal_key(prefix: str, terminal_id: str, day: str) -> str:
    return f"{prefix}:nt:{{{terminal_id}}}:{day}"


class NaiveOnlineFeatures(OnlineFeatures):
    async def lookup(self, tx: RawTransaction) -> Lookup:
        day = local_day(tx.event_micros, self.time_zone)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(day_key_name(self.prefix, day.isoformat()), "generation")
            pipe.lrange(naive_terminal_key(self.prefix, tx.terminal_id, day.isoformat()), 0, -1)
            pipe.lrange(naive_card_key(self.prefix, tx.card_key), 0, -1)
            generation, terminal, card = await pipe.execute()
        if generation is None:
            raise StoreRefusal(503, "online_state_missing", f"no published state for {day}")
        sums: dict[str, Sums] = {}
        for column, window in entity_windows(self.settings, "terminal", tx.event_micros).items():
            total = Sums()
            for entry in terminal:
                at, count, cents, frauds = (int(v) for v in entry.split(SEP))
                if window.lo < at <= window.hi:
                    total += Sums(count, cents, frauds)
            sums[column] = total
        for column, window in entity_windows(self.settings, "card", tx.event_micros).items():
            total = Sums(1, tx.cents, 0) if window.ties_by_id else Sums()
            for entry in card:
                at, transaction_id, cents, fraud = entry.split(SEP)[:4]
                at = int(at)
                if transaction_id == tx.transaction_id:
                    continue
                if window.lo < at < window.hi or (at == window.hi and (not window.ties_by_id
                                                                       or transaction_id < tx.transaction_id)):
                    total += Sums(1, int(cents), int(fraud))
            sums[column] = total
        await self.client.rpush(naive_card_key(self.prefix, tx.card_key),
                                SEP.join((str(tx.event_micros), tx.transaction_id, str(tx.cents), "0", tx.terminal_id)))
        features = {f.column: feature_value(f, sums[f.column]) for f in history_features(self.settings)}
        features.update(flags(self.settings, tx.event_micros, self.time_zone))
        return Lookup(features, day, pending_member="")

    async def record_answer(self, tx, pending_member, answer) -> None:
        return None


def main() -> int:
    env, port = sys.argv[1], int(sys.argv[2])
    settings = load_serving_settings(env)
    payments = service.payments_from(settings)
    naive = NaiveOnlineFeatures(payments.online.address, settings.online, settings.features,
                                time_zone=settings.profile.time_zone)
    payments = service.Payments(naive, payments.secret, payments.time_zone, payments.feature_set, None,
                                payments.columns)
    app = service.create_app(settings, os.environ["FRAUD_SERVE_TOKEN"], payments=payments)
    uvicorn.Server(server_config(app, "127.0.0.1", port, keep_alive_seconds=75)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
