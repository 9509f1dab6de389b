"""Stopping the local cluster's servers (deploy/standalone/stop.sh, which spark.sh, mlflow.sh and
postgres.sh use): a stop returns only when every process it started is gone and its ports are
free, within a bounded time, so a second `make cluster-demo` right after finds its ports free.

Quick, no servers and no JVM: a session of processes that ignore SIGTERM, one of them in a
process group of its own (as pyspark's worker daemon) and one listening on a port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.core.config import PROJECT_ROOT

STANDALONE = PROJECT_ROOT / "deploy" / "standalone"
STUBBORN = """
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1] == "own-group":
    os.setpgid(0, 0)
elif sys.argv[1] == "listen":
    server = socket.socket()
    server.bind(("127.0.0.1", int(sys.argv[2])))
    server.listen()
time.sleep(600)
"""


def session_members(sid: int) -> list[int]:
    """The processes of session ``sid`` that have not exited (zombies left out)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] not in "ZX":
            members.append(int(stat.parent.name))
    return members


def stop_sh(command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'. "{STANDALONE}/stop.sh"; {command}'], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stubborn_session(tmp_path):
    """A session (setsid) whose processes all ignore SIGTERM: (its id, the port one listens on)."""
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    leader = subprocess.Popen(
        ["bash", "-c", f'trap "" TERM; for role in own-group listen plain; do "{sys.executable}" "{script}" '
                       f'$role {port} & done; wait'], start_new_session=True)
    deadline = time.monotonic() + 30
    while len(session_members(leader.pid)) < 4 or not listening(port):
        assert time.monotonic() < deadline, "the stubborn session did not start"
        time.sleep(0.1)
    try:
        yield leader.pid, port
    finally:
        for pid in session_members(leader.pid):
            os.kill(pid, 9)
        leader.wait(timeout=30)


def test_a_stop_waits_for_every_process_of_the_session_then_kills_within_its_bound(stubborn_session):
    sid, port = stubborn_session
    started = time.monotonic()
    stopped = stop_sh(f"stop_session {sid} 2 && wait_port_free 127.0.0.1 {port}")
    took = time.monotonic() - started
    assert stopped.returncode == 0, stopped.stderr
    # The grace period was waited for (they ignore SIGTERM), then SIGKILL, and no longer.
    assert 2 <= took < 2 + 10 + 5, took
    assert "SIGKILL to what is left" in stopped.stderr
    # Returned only once all four were gone: the one in a group of its own too; the port is free.
    assert session_members(sid) == []
    assert not listening(port)


def test_a_stop_of_processes_that_obey_sigterm_returns_as_soon_as_they_are_gone(tmp_path):
    leader = subprocess.Popen(["bash", "-c", "sleep 600 & sleep 600 & wait"], start_new_session=True)
    while len(session_members(leader.pid)) < 3:
        time.sleep(0.05)
    started = time.monotonic()
    stopped = stop_sh(f"stop_session {leader.pid} 20")
    assert stopped.returncode == 0 and time.monotonic() - started < 5, stopped.stderr
    assert session_members(leader.pid) == [] and "SIGKILL" not in stopped.stderr
    leader.wait(timeout=10)
    # Nothing left: a second stop is a no-op.
    assert stop_sh(f"stop_session {leader.pid}").returncode == 0


def test_the_session_of_a_pid_file(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    with subprocess.Popen(["sleep", "600"]) as other:
        pidfile.write_text(f"{other.pid}\n")
        # The pid now runs another program: not ours, nothing to stop.
        assert stop_sh(f'session_of "{pidfile}" org.apache.spark.deploy.master.Master').stdout == ""
        assert stop_sh(f'session_of "{pidfile}" "sleep 600"').stdout.strip() == str(other.pid)
        other.kill()
    # Gone: whatever is left of its session is ours to stop.
    assert stop_sh(f'session_of "{pidfile}" anything').stdout.strip() == str(other.pid)
    assert stop_sh(f'session_of "{tmp_path / "none.pid"}" anything').stdout == ""


def test_a_port_still_held_by_another_process_is_reported(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        waited = stop_sh(f"wait_port_free 127.0.0.1 {held.getsockname()[1]}", FRAUD_STOP_PORT_WAIT="1")
    assert waited.returncode == 1 and "is still in use" in waited.stderr


def test_the_stop_scripts_parse_and_use_the_shared_stop():
    for name in ("stop.sh", "spark.sh", "mlflow.sh", "postgres.sh", "cluster.sh", "demo.sh"):
        assert subprocess.run(["bash", "-n", str(STANDALONE / name)]).returncode == 0, name
    for name in ("spark.sh", "mlflow.sh", "postgres.sh"):
        assert "stop.sh" in (STANDALONE / name).read_text() and "stop_session" in (STANDALONE / name).read_text()
