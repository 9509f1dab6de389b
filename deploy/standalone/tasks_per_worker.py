"""Which worker ran each job's tasks, from the Spark history server's REST API.

    .venv/bin/python deploy/standalone/tasks_per_worker.py [--history URL] [--since EPOCH_SECONDS]

The history server reads every job's event log (spark.eventLog.dir). For each application it
lists the executors, dead ones included, with the tasks each ran; an executor's log links
point at the worker that launched it (its web UI, http://127.0.0.1:8081/...), which is how a
task is traced to a worker. On a cluster the driver runs no task, so every task counted here
ran on a worker.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

# A worker's web UI address in an executor's log links: http://127.0.0.1:8081/logPage/?...
_WORKER_UI = re.compile(r"^https?://([^/]+)/")


@dataclass
class AppTasks:
    app_id: str
    name: str
    started_ms: int
    completed: bool
    # Finished tasks by worker (its web UI host:port), and the failed ones.
    tasks: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def applications(history: str, since_ms: int = 0) -> list[AppTasks]:
    """Every application the history server knows that started at or after ``since_ms``."""
    apps = []
    for app in _get(f"{history}/api/v1/applications"):
        attempt = app["attempts"][-1]
        if attempt["startTimeEpoch"] < since_ms:
            continue
        found = AppTasks(app["id"], app["name"], attempt["startTimeEpoch"], attempt["completed"])
        for executor in _get(f"{history}/api/v1/applications/{app['id']}/allexecutors"):
            if executor["id"] == "driver":
                continue
            ui = _WORKER_UI.match(next(iter(executor.get("executorLogs", {}).values()), ""))
            worker = ui.group(1) if ui else executor["hostPort"]
            found.tasks[worker] += executor["completedTasks"]
            found.failed[worker] += executor["failedTasks"]
        apps.append(found)
    return sorted(apps, key=lambda app: app.started_ms)


def wait_for(history: str, count: int, since_ms: int, timeout: float = 60) -> list[AppTasks]:
    """The applications since ``since_ms`` once ``count`` of them are complete (bounded wait:
    the history server looks for new event logs every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        apps = applications(history, since_ms)
        if sum(app.completed for app in apps) >= count or time.monotonic() > deadline:
            return apps
        time.sleep(1)


def report(apps: list[AppTasks]) -> str:
    workers = sorted({worker for app in apps for worker in (*app.tasks, *app.failed)})
    lines = [f"{'application':<26}" + "".join(f"{'tasks on ' + w:>26}" for w in workers) + "  failed"]
    for app in apps:
        counts = "".join(f"{app.tasks[worker]:>26}" for worker in workers)
        state = "" if app.completed else "  (not finished)"
        lines.append(f"{app.name:<26}{counts}{sum(app.failed.values()):>8}{state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default="http://127.0.0.1:18080", help="the history server")
    parser.add_argument("--since", type=float, default=0, help="only applications started after (epoch seconds)")
    parser.add_argument("--wait-for", type=int, default=0, help="wait until this many are complete (up to 60 s)")
    args = parser.parse_args(argv)
    try:
        apps = wait_for(args.history, args.wait_for, int(args.since * 1000))
    except OSError as exc:
        print(f"tasks_per_worker: the history server at {args.history} did not answer: {exc}", file=sys.stderr)
        return 2
    print(report(apps))
    finished = sum(app.completed for app in apps)
    if finished < args.wait_for:
        print(f"tasks_per_worker: only {finished} of the {args.wait_for} applications waited for are complete "
              f"in the history server", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
