"""Benchmark: fraud-serve under open-loop load, in batches and through a version swap, beside `mlflow models serve`.

    .venv/bin/python benchmarks/serve_load.py [--tracking-uri sqlite:////path/to/mlflow.db] [--quick]

The registry (default: the project's mlruns/mlflow.db, which `make demo` fills) is copied to a
temporary folder first, and only the copy is changed (a version registered, the alias moved, a
model logged). fraud-serve runs on a free loopback port with a random token, polling the alias
every 0.5 s. Each request is one real transaction of data/creditcard_sample.csv.gz (cycled).

1. Single transactions at fixed arrival rates (50 ... 1600/s, 10 s each, 3 s with --quick;
   stopped by a failed request, or by two rates in a row with p99 over 50 ms): an open loop
   over up to 64 keep-alive connections, each latency counted from the time the request was
   *scheduled*, so a stall counts (no coordinated omission); "lag" is how late the client
   itself sent. Before it, one client sending one transaction at a time.
2. Batches of 1,000 transactions: one client sending them back to back, then two.
3. A swap under load: the champion's model (and tags) registered again as a new version, the
   alias moved to it mid-run: failed requests (the target is 0), time to the first answer from
   the new version, p99 before, during and after.
4. The baseline a user would otherwise pick: the same Spark pipeline logged with the spark flavor
   only and served by `mlflow models serve --env-manager local` (a local[1] Spark in its worker;
   it answers Spark's 0/1 `prediction` only). Same figures, its ladder starting lower.

Client and server share this machine's 2 cores: the figures are a floor for a server with cores
of its own. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipelines.data.schema import FEATURE_COLS  # noqa: E402

try:  # uvicorn[standard] brings uvloop: a cheaper client, and timers that wake on time
    from uvloop import run
except ImportError:
    from asyncio import run

SAMPLE = PROJECT / "data" / "creditcard_sample.csv.gz"
BIN = Path(sys.executable).parent
NAME, ALIAS = "fraud_detector", "champion"
LADDER = [50, 100, 200, 400, 800, 1200, 1600]
BASELINE_LADDER = [1, 2, 5, 10, 20, *LADDER]
CONNECTIONS, TIMEOUT_S, BATCH_ROWS = 64, 10.0, 1000
HELD_P99_MS, STOP_P99_MS = 10.0, 50.0
KEEP_ALIVE_S = 4.0  # uvicorn closes a connection idle for 5 s: one idle this long is not reused
FAILURES = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            KeyError)


class Http:
    """Keep-alive HTTP/1.1 connections to one loopback port, at most CONNECTIONS open; raw bytes."""

    def __init__(self, port: int) -> None:
        self.port, self.idle, self.slots = port, [], asyncio.Semaphore(CONNECTIONS)

    def post(self, path: str, body: bytes, token: str | None = None) -> bytes:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            while self.idle:
                reader, writer, since = self.idle.pop()
                if time.monotonic() - since < KEEP_ALIVE_S and not reader.at_eof():
                    break
                writer.close()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(raw)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower().split("\r\n")
                fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
                body = await reader.readexactly(int(fields["content-length"]))
            except BaseException:  # a timeout (cancellation) too: the connection's state is unknown
                writer.close()
                raise
            if fields.get("connection", "").strip() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer, time.monotonic()))
            return int(head[0].split()[1]), body


async def call(http: Http, raw: bytes, timeout: float) -> tuple[str, bytes]:
    """("ok", body), or what went wrong instead ("HTTP 503", "TimeoutError", ...)."""
    try:
        status, body = await asyncio.wait_for(http.send(raw), timeout)
    except FAILURES as exc:
        return type(exc).__name__, b""
    return ("ok" if status == 200 else f"HTTP {status}"), body


@dataclass
class Answer:
    scheduled: float  # s from the run's start
    latency: float  # s from scheduled to the answer's last byte (or the failure)
    lag: float  # s from scheduled to the client starting to send
    outcome: str
    body: bytes


def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.1f}" if len(values) else "-"


def failures(outcomes: list[str]) -> str:
    return ", ".join(f"{kind} x{n}" for kind, n in Counter(o for o in outcomes if o != "ok").most_common()) or "none"


async def open_loop(http: Http, requests: list[bytes], rate: float, seconds: float,
                    start: float | None = None) -> list[Answer]:
    """Send ``rate * seconds`` requests, the i-th at start + i/rate, whatever came back before."""
    answers: list[Answer] = []
    start = start or time.perf_counter() + 0.05

    async def one(i: int, scheduled: float) -> None:
        lag = time.perf_counter() - scheduled
        outcome, body = await call(http, requests[i % len(requests)], TIMEOUT_S - lag)
        answers.append(Answer(scheduled - start, time.perf_counter() - scheduled, lag, outcome, body))

    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return answers


async def ladder(http: Http, requests: list[bytes], rates: list[int], seconds: float) -> list[dict]:
    columns = ("p50", "p95", "p99", "max", "lag99")
    print(f"{'rate/s':>7} {'sent':>6} {'ok':>6} {'errors':>6} {'achieved/s':>10} "
          + " ".join(f"{c + ' ms':>8}" for c in columns))
    results = []
    for rate in rates:
        answers = await open_loop(http, requests, rate, seconds)
        ok = [a.latency for a in answers if a.outcome == "ok"]
        span = max((a.scheduled + a.latency for a in answers if a.outcome == "ok"), default=1.0)
        r = {"rate": rate, "sent": len(answers), "ok": len(ok), "errors": len(answers) - len(ok),
             "achieved": len(ok) / span, "p50": ms(ok, 50), "p95": ms(ok, 95), "p99": ms(ok, 99), "max": ms(ok, 100),
             "lag99": ms([a.lag for a in answers], 99), "p99_ms": np.percentile(ok, 99) * 1000 if ok else np.inf}
        results.append(r)
        print(f"{rate:>7} {r['sent']:>6} {r['ok']:>6} {r['errors']:>6} {r['achieved']:>10.1f} "
              + " ".join(f"{r[c]:>8}" for c in columns)
              + (f"   failed: {failures([a.outcome for a in answers])}" if r["errors"] else ""), flush=True)
        # A failure ends it; on a shared machine one slow rate may be a neighbour's doing: two in a row end it.
        if r["errors"] or (r["p99_ms"] > STOP_P99_MS and len(results) > 1 and results[-2]["p99_ms"] > STOP_P99_MS):
            break
    return results


async def closed_loop(http: Http, bodies: list[bytes], clients: int, seconds: float, rows: int) -> dict:
    """``clients`` each sending the next request as soon as its last one is answered, for ``seconds``."""
    latencies, outcomes, end = [], [], time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            outcomes.append((await call(http, bodies[len(outcomes) % len(bodies)], 120))[0])
            if outcomes[-1] == "ok":
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    r = {"req_s": len(latencies) / elapsed, "rows_s": len(latencies) * rows / elapsed, "p50": ms(latencies, 50),
         "p99": ms(latencies, 99)}
    print(f"  {clients} client(s): {len(latencies)} answered in {elapsed:.1f} s, {r['req_s']:.1f} req/s, "
          f"{r['rows_s']:,.0f} rows/s, p50 {r['p50']} ms, p99 {r['p99']} ms; failed: {failures(outcomes)}", flush=True)
    return r


async def swap_under_load(http: Http, requests: list[bytes], rate: float, seconds: float,
                          move: Callable[[], str]) -> dict:
    """The open loop at ``rate``; a third of the way in, ``move()`` the alias (on a thread)."""
    start = time.perf_counter() + 0.05
    load = asyncio.create_task(open_loop(http, requests, rate, seconds, start))
    await asyncio.sleep(seconds / 3)
    calling = time.perf_counter()
    new = await asyncio.to_thread(move)
    moved = time.perf_counter() - start  # committed by now; times here are from the run's start
    answers = await load
    versions = sorted((a.scheduled + a.latency, json.loads(a.body)["model_version"])
                      for a in answers if a.outcome == "ok")
    first = next((done for done, version in versions if version == new), None)
    window_end = (first or seconds) + 0.5

    def figures(low: float, high: float) -> str:
        ok = [a.latency for a in answers if a.outcome == "ok" and low <= a.scheduled < high]
        return f"{ms(ok, 50)} / {ms(ok, 99)} / {ms(ok, 100)} ms ({len(ok)} answers)"

    return {"rate": rate, "sent": len(answers), "failed": sum(a.outcome != "ok" for a in answers),
            "failures": failures([a.outcome for a in answers]), "new": new, "move_call_s": start + moved - calling,
            "to_first_s": None if first is None else first - moved,
            "old_after_new": sum(first is not None and done > first and v != new for done, v in versions),
            "before": figures(1.0, moved), "during": figures(moved, window_end), "after": figures(window_end, 1e9)}


async def exercise(label: str, http: Http, singles: list[bytes], bodies: list[bytes], rates: list[int],
                   step: float, phase: float) -> dict:
    """What both services go through: one at a time, the open-loop ladder, then batches."""
    print(f"\n[{label}] one transaction at a time, one client, {phase:g} s")
    result = {"sequential": await closed_loop(http, singles, 1, phase, 1)}
    print(f"\n[{label}] single transactions, open loop, {step:g} s per rate")
    result["ladder"] = await ladder(http, singles, rates, step)
    result["held"] = max((r["rate"] for r in result["ladder"] if not r["errors"] and r["p99_ms"] < HELD_P99_MS),
                         default=None)
    print(f"highest rate held with p99 < {HELD_P99_MS:g} ms and no error: {result['held'] or 'none'} req/s")
    print(f"\n[{label}] batches of {BATCH_ROWS:,} transactions, {phase:g} s each")
    result["batches"] = [await closed_loop(http, bodies, n, phase, BATCH_ROWS) for n in (1, 2)]
    return result


def start(stack: ExitStack, command: list[str], env: dict[str, str], log: Path, ready_path: str,
          ready: Callable[[bytes], bool], seconds: float) -> tuple[int, float]:
    """Start ``command`` + its port on a free one, in its own process group (stopped when ``stack``
    closes); (the port, seconds until ``ready_path`` answered 200 and ``ready``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    began = time.perf_counter()
    process = subprocess.Popen([*command, str(port)], env={**os.environ, **env}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)

    def stop() -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=wait)
                return
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue

    stack.callback(stop)
    while time.perf_counter() - began < seconds:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as answer:
                if ready(answer.read()):
                    return port, time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{command[0]} not ready within {seconds} s:\n{log.read_text()[-3000:]}")


def copy_store(uri: str, folder: Path) -> str:
    source = Path(uri.removeprefix("sqlite:///"))
    if not uri.startswith("sqlite:///") or not source.is_file():
        raise SystemExit(f"--tracking-uri must be an existing sqlite:/// store (`make demo` fills the default), "
                         f"got {uri}")
    with sqlite3.connect(source) as src, sqlite3.connect(folder / "mlflow.db") as dst:
        src.backup(dst)
    return f"sqlite:///{folder / 'mlflow.db'}"


def log_spark_only(version: str, folder: Path) -> str:
    """The version's Spark PipelineModel logged again with the spark flavor only; its model URI."""
    import mlflow.spark

    from pipelines.core.config import load_settings
    from pipelines.core.session import get_spark

    spark = get_spark(replace(load_settings("local").spark, master="local[2]"))
    try:
        # Copied out first: loaded in place, MLflow writes registered_model_meta into the store's artifacts.
        local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}", dst_path=str(folder / "champion"))
        model = mlflow.spark.load_model(local, dfs_tmpdir=str(folder / "dfs"))
        experiment = mlflow.create_experiment("serve-load-baseline", (folder / "baseline").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            return mlflow.spark.log_model(model, "spark_only", pip_requirements=["pyspark"],
                                          dfs_tmpdir=str(folder / "dfs")).model_uri
    finally:
        spark.stop()


def measure(args: argparse.Namespace, folder: Path, step: float, phase: float) -> tuple[dict, dict]:
    store = copy_store(args.tracking_uri, folder)
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = store
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store, store)
    if args.champion:
        client.set_registered_model_alias(NAME, ALIAS, args.champion)
    champion = client.get_model_version_by_alias(NAME, ALIAS)
    rows = pd.read_csv(SAMPLE)[FEATURE_COLS].astype(float).to_dict(orient="records")
    print(f"store {args.tracking_uri}, copied to {folder}; {NAME}@{ALIAS} = version {champion.version} (run "
          f"{champion.run_id}); {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}", flush=True)
    token = secrets.token_urlsafe(32)
    conf = folder / "serve.toml"
    conf.write_text(f'[mlflow]\ntracking_uri = "{store}"\nexperiment = "fraud_detection"\nmodel_name = "{NAME}"\n'
                    f'[serve]\nmax_batch = {BATCH_ROWS}\npoll_seconds = 0.5\n')
    with ExitStack() as stack:
        port, ready_s = start(stack, [str(BIN / "fraud-serve"), "--env", str(conf), "--port"],
                              {"FRAUD_SERVE_TOKEN": token}, folder / "fraud-serve.log", "/readyz",
                              lambda body: json.loads(body)["ready"], 180)
        print(f"fraud-serve ready in {ready_s:.1f} s", flush=True)
        http = Http(port)
        singles = [http.post("/v1/score", json.dumps(row).encode(), token) for row in rows]
        bodies = [http.post("/v1/score", json.dumps(rows[i:i + BATCH_ROWS]).encode(), token)
                  for i in range(0, len(rows) - BATCH_ROWS + 1, BATCH_ROWS)]

        def move(new: str) -> str:
            client.set_registered_model_alias(NAME, ALIAS, new)
            return new

        async def measure_ours() -> dict:
            await open_loop(http, singles, 50, 1.0)  # warm-up, not reported
            ours = {"ready_s": ready_s, **await exercise("fraud-serve", http, singles, bodies, LADDER, step, phase)}
            # With its tags: the service refuses a version whose decision_threshold tag is not its own.
            new = str(mlflow.register_model(champion.source, NAME, tags=champion.tags).version)
            rate, seconds = max(25, (ours["held"] or 50) // 2), 4 * phase
            print(f"\n[fraud-serve] swap under load: version {new} registered from version {champion.version}'s "
                  f"source; {seconds:g} s at {rate} req/s, the alias moved to it a third of the way in", flush=True)
            s = ours["swap"] = await swap_under_load(http, singles, rate, seconds, lambda: move(new))
            print(f"  sent {s['sent']}, failed {s['failed']} ({s['failures']}); setting the alias took "
                  f"{s['move_call_s']:.2f} s; from then to the first answer naming version {new}: "
                  + ("none within the run" if s["to_first_s"] is None else f"{s['to_first_s']:.2f} s")
                  + f"; answers naming the old version after it: {s['old_after_new']}")
            print("  p50 / p99 / max by scheduled time; the swap window: alias set -> first new answer + 0.5 s")
            for label in ("before", "during", "after"):
                print(f"    {label:>6} the swap window: {s[label]}")
            return ours

        # A full collection over MLflow's and pandas' objects takes ~0.1 s: frozen, they never stall the client.
        gc.freeze()
        ours = run(measure_ours())
    # fraud-serve has stopped: the baseline does not share the cores with it.
    print(f"\n[mlflow models serve] logging version {champion.version}'s Spark pipeline again, spark flavor only",
          flush=True)
    uri = log_spark_only(str(champion.version), folder)
    with ExitStack() as stack:
        port, ready_s = start(stack, [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
                                      "--host", "127.0.0.1", "-p"],
                              {"PYSPARK_PYTHON": sys.executable, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                               "TMPDIR": str(folder)},  # where it copies the model (and leaves it when stopped)
                              folder / "mlflow-serve.log", "/ping", lambda body: True, 300)
        http = Http(port)

        def split(chunk: list[dict]) -> bytes:
            data = [[row[c] for c in FEATURE_COLS] for row in chunk]
            return http.post("/invocations", json.dumps({"dataframe_split": {"columns": FEATURE_COLS,
                                                                             "data": data}}).encode())

        singles = [split([row]) for row in rows[:500]]
        bodies = [split(rows[i:i + BATCH_ROWS]) for i in range(0, 3 * BATCH_ROWS, BATCH_ROWS)]

        async def measure_theirs() -> dict:
            began = time.perf_counter()
            outcome, body = await call(http, singles[0], 300)
            first_s = time.perf_counter() - began
            print(f"mlflow models serve ({uri}) ready in {ready_s:.1f} s; its first request took {first_s:.1f} s "
                  f"and answered {outcome}: {body.decode()[:60]}", flush=True)
            for raw in singles[1:3]:  # warm-up, not reported
                await call(http, raw, 300)
            return {"ready_s": ready_s, "first_s": first_s,
                    **await exercise("mlflow models serve", http, singles, bodies, BASELINE_LADDER, step, phase)}

        gc.freeze()
        theirs = run(measure_theirs())
    return ours, theirs


def summary(ours: dict, theirs: dict) -> None:
    def at(side: dict, rate: int) -> str:
        r = next((r for r in side["ladder"] if r["rate"] == rate), None)
        if r is None:
            return "not run" if rate < side["ladder"][0]["rate"] else f"- (stopped at {side['ladder'][-1]['rate']}/s)"
        return f"{r['p50']} / {r['p99']} ms" + (f", {r['errors']} failed" if r["errors"] else "")

    def top(side: dict) -> str:
        best = max([r["achieved"] for r in side["ladder"] if not r["errors"]], default=0)
        return f"{best:,.0f} req/s" if best >= 10 else f"{best:.1f} req/s"

    def batch(r: dict) -> str:
        return f"{r['rows_s']:,.0f} rows/s, p50 {r['p50']} / p99 {r['p99']} ms"

    s, seq = ours["swap"], (ours["sequential"], theirs["sequential"])
    rows = [("start to ready", f"{ours['ready_s']:.1f} s", f"{theirs['ready_s']:.1f} s, then {theirs['first_s']:.1f} s "
             "for the first request"),
            ("one at a time: p50 / p99", *(f"{r['p50']} / {r['p99']} ms, {r['req_s']:.1f} req/s" for r in seq)),
            (f"rate held, p99 < {HELD_P99_MS:g} ms", *(f"{side['held'] or 'none'} req/s" for side in (ours, theirs))),
            ("most achieved, no errors", top(ours), top(theirs)),
            *[(f"p50 / p99 at {rate} req/s", at(ours, rate), at(theirs, rate)) for rate in (1, 50, 400)],
            *[(f"{BATCH_ROWS:,}-row batches, {n} client(s)", batch(ours["batches"][n - 1]),
               batch(theirs["batches"][n - 1])) for n in (1, 2)],
            ("swap under load", f"{s['failed']} failed; new version answering "
             + ("never" if s["to_first_s"] is None else f"{s['to_first_s']:.2f} s after the alias move"), "a restart"),
            ("an answer", "probability, decision, threshold, version", "prediction 0/1 (Spark's, at p >= 0.5)")]
    width = max(len(r[1]) for r in rows)
    print(f"\n{'':<31} {'fraud-serve':<{width}}  mlflow models serve (spark flavor)")
    for name, a, b in rows:
        print(f"{name:<31} {a:<{width}}  {b}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT / 'mlruns' / 'mlflow.db'}")
    parser.add_argument("--quick", action="store_true", help="3 s per rate and shorter phases (under ~3 min)")
    parser.add_argument("--champion", help="first point the alias at this version (in the copy)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (store copy, server logs)")
    args = parser.parse_args()
    step, phase = (3.0, 3.0) if args.quick else (10.0, 10.0)
    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    try:
        ours, theirs = measure(args, folder, step, phase)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    summary(ours, theirs)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
