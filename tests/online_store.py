"""A real Redis for the tests (Debian's redis-server, installed when missing and run as root, as
CI does): on a free loopback port, with a password from a mode-600 config file, nothing
evicted, and no persistence, so that a restart comes back empty (the fault the service must
refuse to score through)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"],
                       check=False, capture_output=True)
        found = shutil.which("redis-server")
    if not found:
        pytest.fail("no redis-server: install Debian's package redis-server (CI's .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    def __init__(self, folder: Path, *, maxmemory: str = "256mb") -> None:
        self.folder, self.port, self.password = folder, _free_port(), secrets.token_hex(16)
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "redis.conf"
        self.conf.touch(mode=0o600)
        self.conf.write_text(f"bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\ndir {folder}\n"
                             f'save ""\nappendonly no\nmaxmemory {maxmemory}\nmaxmemory-policy noeviction\n'
                             f"zset-max-listpack-entries 512\nzset-max-listpack-value 512\n")
        self.password_file = folder / "password"
        self.password_file.touch(mode=0o600)
        self.password_file.write_text(self.password + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def start(self) -> LocalRedis:
        self.process = subprocess.Popen([redis_server_binary(), str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
