"""Benchmark: raw payments through fraud-serve and the online store, beside two comparisons.

    .venv/bin/python benchmarks/online_load.py [--env payments] [--day 2018-09-30] [--quick]

Needs `make demo-payments` first (the payments lake, its landing files, the champion). On a Redis
of its own (a free loopback port, a password, no persistence), for one scored day D:

1. `publish --date D`: wall time, keys, memory in the store (the nightly cost at this scale);
2. parity and the closed loop: every transaction of D (from its landing file, card numbers and
   all) sent one at a time in time order; each answer against the batch's `features` and
   `scored_transactions` rows (1e-9; decisions equal); p50/p99; memory per answered entry;
3. the same day through the naive layout (benchmarks/online_naive.py: every window read as a
   full list into the service), from the same published state: its parity and closed loop;
4. open loops at rising rates (new transaction ids, D's cards, terminals and times, so each is a
   full lookup and append) through the store, through the naive layout, and with the features
   given in the request (the same service, no store: the store's cost);
5. the store with AOF and `appendfsync always` (what deploy/standalone/redis.sh runs): the
   closed loop again, its cost against no persistence.

Client, service and store share this machine's cores: the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.online_naive import naive_card_key, naive_terminal_key  # noqa: E402
from benchmarks.serve_load import Http, call, ms, open_loop, start  # noqa: E402
from pipelines.core.config import load_settings  # noqa: E402
from pipelines.data.generator import synthetic_file_name  # noqa: E402
from pipelines.features.definitions import feature_columns  # noqa: E402
from pipelines.online.store import SEP  # noqa: E402
from tests.online_store import LocalRedis  # noqa: E402

TOLERANCE = 1e-9
RATES = [100, 200, 500]


def delta_rows(path: str, day: date, columns: list[str]) -> dict[str, dict]:
    from deltalake import DeltaTable
    frame = DeltaTable(path).to_pandas(columns=["transaction_id", "txn_date", *columns])
    frame = frame[frame["txn_date"] == day]
    return {row["transaction_id"]: row for row in frame.to_dict("records")}


def raw_payments(landing: Path, day: date, first: date) -> list[dict]:
    path = landing / synthetic_file_name((day - first).days + 1)
    with path.open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: (r["TX_DATETIME"], r["TRANSACTION_ID"]))
    return [{"transaction_id": r["TRANSACTION_ID"], "event_time": r["TX_DATETIME"], "card": r["CUSTOMER_ID"],
             "terminal_id": r["TERMINAL_ID"], "amount": float(r["TX_AMOUNT"])} for r in rows]


async def closed(http: Http, token: str, bodies: list[bytes]) -> tuple[list[float], list[dict]]:
    latencies, answers = [], []
    for body in bodies:
        began = time.perf_counter()
        outcome, answer = await call(http, http.post("/v1/score", body, token), 10)
        latencies.append(time.perf_counter() - began)
        answers.append(json.loads(answer) if outcome == "ok" else {"error": outcome})
    return latencies, answers


def parity(answers: list[dict], features: dict, scored: dict, columns: list[str]) -> tuple[int, int]:
    """(answers compared, answers that differ from the batch in any feature, probability or decision)."""
    differing = 0
    for answer in answers:
        if "error" in answer:
            differing += 1
            continue
        batch, (p, flagged) = features[answer["transaction_id"]], scored[answer["transaction_id"]]
        off = any(abs(answer["features"][c] - float(batch[c])) > TOLERANCE for c in ["amount", *columns])
        differing += off or abs(answer["fraud_probability"] - p) > TOLERANCE or answer["is_fraud"] != flagged
    return len(answers), differing


def naive_copy(client, prefix: str) -> int:
    """The published state (not the day's answered entries) as the naive layout's lists."""
    keys = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=f"{prefix}:c:*", count=1000):
        card = key.split("{", 1)[1].rsplit("}", 1)[0]
        entries = [(m, s) for m, s in client.zrange(key, 0, -1, withscores=True) if m.endswith(SEP)]
        if entries:
            pipe.rpush(naive_card_key(prefix, card), *(f"{int(s)}{SEP}{m}" for m, s in entries))
            keys += 1
    for key in client.scan_iter(match=f"{prefix}:t:*", count=1000):
        terminal, day = key.split("{", 1)[1].split("}:", 1)
        previous, instants = (0, 0, 0), []
        for member in client.zrange(key, 0, -1):
            at, *totals = (int(v) for v in member.split(SEP))
            instants.append(SEP.join(str(v) for v in (at, *(t - p for t, p in zip(totals, previous, strict=True)))))
            previous = tuple(totals)
        if instants:
            pipe.rpush(naive_terminal_key(prefix, terminal, day), *instants)
            keys += 1
    pipe.execute()
    return keys


def fresh(payments: list[dict], tag: str, n: int) -> list[bytes]:
    """``n`` new transactions: the day's cards, terminals, amounts and times under new ids."""
    return [json.dumps({**payments[i % len(payments)], "transaction_id": f"{tag}-{i}"}).encode() for i in range(n)]


def ladder(http: Http, token: str, bodies: list[bytes], rates: list[int], seconds: float) -> list[dict]:
    results = []
    for rate in rates:
        http = Http(http.port)  # connections of this event loop only
        requests = [http.post("/v1/score", body, token) for body in bodies[: int(rate * seconds)]]
        answers = asyncio.run(open_loop(http, requests, rate, seconds))
        ok = [a.latency for a in answers if a.outcome == "ok"]
        results.append({"rate": rate, "sent": len(answers), "errors": len(answers) - len(ok), "p50": ms(ok, 50),
                        "p99": ms(ok, 99), "lag99": ms([a.lag for a in answers], 99)})
        print(f"    {rate:>4}/s: {results[-1]}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="payments")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2018, 9, 30))
    parser.add_argument("--quick", action="store_true", help="3 s per rate, 1,000 transactions for AOF")
    args = parser.parse_args()
    settings = load_settings(args.env)
    seconds = 3.0 if args.quick else 10.0
    columns = feature_columns(settings.features)
    prefix = settings.online.key_prefix
    token = secrets.token_urlsafe(32)
    landing = Path(settings.tables.root) / "landing"
    payments = raw_payments(landing, args.day, date(2018, 4, 1))
    features = delta_rows(settings.tables.path(settings.tables.features), args.day, ["amount", *columns])
    scored_rows = delta_rows(settings.tables.scored_path, args.day, ["fraud_probability", "is_fraud"])
    scored = {k: (v["fraud_probability"], v["is_fraud"]) for k, v in scored_rows.items()}
    print(f"day {args.day}: {len(payments):,} transactions; load average {os.getloadavg()[0]:.2f}", flush=True)
    report: dict = {"day": args.day.isoformat(), "transactions": len(payments)}
    with tempfile.TemporaryDirectory(prefix="online-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        store = LocalRedis(folder / "redis", maxmemory="4gb").start()
        stack.callback(store.stop)
        client = store.client()
        env = {"FRAUD_ONLINE_URL": store.url, "FRAUD_ONLINE_PASSWORD_FILE": str(store.password_file),
               "FRAUD_SERVE_TOKEN": token}
        began = time.perf_counter()
        subprocess.run([str(PROJECT / "spark-submit.sh"), "publish", "--env", args.env, "--date", args.day.isoformat()],
                       env={**os.environ, **env}, check=True, capture_output=True)
        memory = client.info("memory")["used_memory"]
        report["publish"] = {"seconds": round(time.perf_counter() - began, 1), "keys": client.dbsize(),
                             "used_memory_bytes": memory}
        print(f"publish: {report['publish']}", flush=True)

        port, _ = start(stack, [str(Path(sys.executable).with_name("fraud-serve")), "--env", args.env, "--port"], env,
                        folder / "serve.log", "/readyz", lambda body: b"true" in body, 120)
        http = Http(port)
        bodies = [json.dumps(p).encode() for p in payments]
        latencies, answers = asyncio.run(closed(http, token, bodies))
        compared, differing = parity(answers, features, scored, columns)
        answered_bytes = (client.info("memory")["used_memory"] - memory) / len(payments)
        report["store"] = {"compared": compared, "differing": differing, "p50_ms": ms(latencies, 50),
                           "p99_ms": ms(latencies, 99), "bytes_per_answered_entry": round(answered_bytes)}
        print(f"store, closed loop + parity: {report['store']}", flush=True)

        client.delete(*client.keys(f"{prefix}:nc:*") or ["-"])
        naive_keys = naive_copy(client, prefix)
        naive_port, _ = start(stack, [sys.executable, str(PROJECT / "benchmarks" / "online_naive.py"), args.env], env,
                              folder / "naive.log", "/readyz", lambda body: b"true" in body, 120)
        naive = Http(naive_port)
        latencies, answers = asyncio.run(closed(Http(naive_port), token, bodies))
        compared, differing = parity(answers, features, scored, columns)
        report["naive"] = {"keys": naive_keys, "compared": compared, "differing": differing,
                           "p50_ms": ms(latencies, 50), "p99_ms": ms(latencies, 99)}
        print(f"naive layout, closed loop + parity: {report['naive']}", flush=True)

        with_features = [json.dumps({"transaction_id": k, **{c: float(v[c]) for c in ["amount", *columns]}}).encode()
                         for k, v in features.items()]
        most = int(max(RATES) * seconds)
        report["open_loop"] = {}
        for name, target, bodies_for in (("store", http, fresh(payments, "s", most)),
                                         ("naive", naive, fresh(payments, "n", most)),
                                         ("features in request", http, (with_features * (most // len(with_features)
                                                                                          + 1))[:most])):
            print(f"  open loop, {name}:", flush=True)
            report["open_loop"][name] = ladder(target, token, bodies_for, RATES, seconds)

        n = 1000 if args.quick else 3000
        plain, _ = asyncio.run(closed(Http(port), token, fresh(payments, "p", n)))
        client.config_set("appendonly", "yes")
        client.config_set("appendfsync", "always")
        time.sleep(2)  # the AOF rewrite that turning it on starts
        always, _ = asyncio.run(closed(Http(port), token, fresh(payments, "a", n)))
        report["aof_always"] = {"transactions": n, "p50_ms_without": ms(plain, 50), "p50_ms_with": ms(always, 50),
                                "p99_ms_without": ms(plain, 99), "p99_ms_with": ms(always, 99),
                                "ratio_p50": round(float(np.percentile(always, 50) / np.percentile(plain, 50)), 2)}
        print(f"AOF appendfsync always: {report['aof_always']}", flush=True)
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1))
    return 0 if report["store"]["differing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
