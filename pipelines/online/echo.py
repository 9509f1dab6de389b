"""The skew watch's sample: features the service answered with, by transaction id, one JSON
line each, in ``<echo_dir>/<day>/<host>-<pid>.jsonl`` (one file per process: replicas never
interleave). Which ids are logged depends on the id alone (a hash under ``echo_sample``), so
every replica picks the same ones. The nightly ``monitor`` compares them with the batch's
``features`` rows of the same transactions (:mod:`pipelines.monitoring.skew`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from datetime import date
from pathlib import Path
from typing import Any


def sampled(transaction_id: str, share: float) -> bool:
    if share >= 1.0:
        return True
    digest = hashlib.sha256(transaction_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


class EchoLog:
    def __init__(self, folder: str, share: float) -> None:
        self.folder, self.share = Path(folder), share
        self.name = f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def write(self, day: date, transaction_id: str, answer: dict[str, Any]) -> None:
        if not sampled(transaction_id, self.share):
            return
        line = json.dumps({"transaction_id": transaction_id, "txn_date": day.isoformat(), **answer},
                          separators=(",", ":")) + "\n"
        path = self.folder / day.isoformat() / self.name
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line)
