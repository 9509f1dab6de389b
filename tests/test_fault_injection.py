"""A job killed with SIGKILL at any moment leaves its Delta table exactly as it was before the
job or exactly as a whole run leaves it, never in between; run again, the job completes.

``ingest`` and ``score`` run through ``./spark-submit.sh`` as a user runs them, each in a
process group of its own, and the whole group (the launcher, the JVM, the Python driver and
its workers) is killed at moments drawn with a fixed seed from the measured times of one
unkilled run of the same job: one before the write (anywhere in the run: the JVM's start, the
reading and checking), one during the write before its commit, one after the commit. These
are the phases that leave different things on disk (nothing new; data files without a commit;
the commit); a second kill in the same phase runs the same code to the same state and costs
a whole job's run, so each series kills each phase of its code once. After each kill the
table is read with delta-rs (the ``deltalake`` package), a reader that shares no code with
Spark or with Delta's JVM library, and compared, version and every row, with the table before
the job and after the unkilled run.

``pytest -s`` prints one line per kill: when it came, the state found, the table's version.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, QueryBuilder

from jobs import ingest, promote, score, train
from pipelines.core.config import PROJECT_ROOT
from pipelines.model.registry import configure_mlflow, resolve_model
from tests.conftest import SAMPLE_CSV, quick_settings_in, settings_in
from tests.test_end_to_end import conf_file

# The seed of every kill point (each series adds its own offset): the same seed draws the same
# fractions of the unkilled run's times again; a failure names the series, the seed and the kill.
SEED = 20261125
DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)
INGESTED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
SCORED_AT = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
JOB_TIMEOUT_SECONDS = 240
# A killed process group must be gone by then, or a survivor could still commit after the check.
GONE_TIMEOUT_SECONDS = 20

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds a process group's members in /proc"),
]


@dataclass(frozen=True)
class TableState:
    """A Delta table at one version, as delta-rs reads it: every row, sorted by transaction id."""

    version: int
    rows: pa.Table


def read_state(path: str, version: int | None = None) -> TableState:
    table = DeltaTable(path, version=version)
    # delta-rs's own query engine. (to_pyarrow_table() reads the same rows, but pyarrow's
    # scanner threads then abort the interpreter at exit now and then, exit code 134.)
    query = QueryBuilder().register("t", table).execute("SELECT * FROM t ORDER BY transaction_id")
    rows = pa.table(query.read_all())
    # Its strings come as string_view, which pyarrow's filters do not take yet.
    plain = pa.schema([field.with_type(pa.string()) if pa.types.is_string_view(field.type) else field
                       for field in rows.schema])
    return TableState(version=table.version(), rows=rows.cast(plain))


def on_days(rows: pa.Table, days: set[date], *, inside: bool = True) -> pa.Table:
    mask = pc.is_in(rows["txn_date"], value_set=pa.array(sorted(days), pa.date32()))
    return rows.filter(mask if inside else pc.invert(mask))


def describe_days(found: TableState, before: TableState, days: set[date], stamp: str) -> str:
    """Per written day: its rows, and how many carry a stamp of the table before (old) or not (new)."""
    old_stamps = pa.array(set(on_days(before.rows, days)[stamp].to_pylist()), before.rows.schema.field(stamp).type)
    parts = []
    for day in sorted(days):
        rows = on_days(found.rows, {day})
        old = pc.sum(pc.is_in(rows[stamp], value_set=old_stamps)).as_py() or 0
        parts.append(f"{day}: {rows.num_rows} rows, {old} old, {rows.num_rows - old} new")
    return "; ".join(parts)


def classify(found: TableState, *, before: TableState, after: TableState, days: set[date], stamp: str) -> str:
    """``before`` or ``after`` when ``found`` is exactly one of those states; otherwise ``between``
    and what is wrong.

    ``after`` is the table as an unkilled run left it. A run writes only ``days``, in one
    commit, and stamps every row it writes with one ``stamp`` value of its own
    (``ingested_at``, ``scored_at``): the only column in which two runs' rows may differ.
    """
    if found.version == before.version and found.rows.equals(before.rows):
        return "before"
    wrong = []
    if found.version != before.version + 1:
        wrong.append(f"version {found.version}, not {before.version} or {before.version + 1}")
    ids = found.rows["transaction_id"]
    if len(pc.unique(ids)) != len(ids):
        wrong.append(f"{len(ids) - len(pc.unique(ids))} duplicate transaction ids")
    if not on_days(found.rows, days, inside=False).equals(on_days(before.rows, days, inside=False)):
        wrong.append("rows of other days changed")
    written = on_days(found.rows, days)
    if not written.drop_columns([stamp]).equals(on_days(after.rows, days).drop_columns([stamp])):
        wrong.append(f"the written days differ from a whole run's ({on_days(after.rows, days).num_rows} rows)")
    stamps = set(written[stamp].to_pylist())
    if len(stamps) != 1 or stamps & set(on_days(before.rows, days)[stamp].to_pylist()):
        wrong.append(f"the written days carry {len(stamps)} {stamp} value(s), not one new one")
    if not wrong:
        return "after"
    return f"between: {'; '.join(wrong)} [{describe_days(found, before, days, stamp)}]"


# What a kill is timed from: the job's start, its first new data file in the table, its first
# new commit.
START, FIRST_FILE, COMMIT = "the start", "the first new data file", "the commit"
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class KillPoint:
    anchor: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.seconds:.2f} s after {self.anchor}"


@dataclass(frozen=True)
class JobRun:
    returncode: int
    seconds: float
    log: Path
    # Seconds from the start to the job's first new data file and to its first new commit, as
    # seen by polling the table; None if not seen (before the kill).
    first_file_at: float | None
    commit_at: float | None
    # Where the job was when it was killed; None if it ended by itself.
    killed_in: str | None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def live_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies, already dead, are left out)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone while we looked
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def where_is(job: str, pgid: int, *, first_file_at: float | None, commit_at: float | None) -> str:
    """Which part of the job is running, from the table and the group's command lines."""
    if commit_at is not None:
        return "after its commit"
    if first_file_at is not None:
        return "writing, before its commit"
    commands = []
    for pid in live_group_members(pgid):
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        except OSError:
            continue
    if any(part.endswith(f"jobs/{job}.py".encode()) for command in commands for part in command[1:2]):
        return "with the Python driver started, nothing written yet"
    if any(command[0].endswith(b"/java") for command in commands):
        return "in the JVM's start"
    return "in the launcher scripts"


def data_files(path: str) -> set[str]:
    return {str(file) for file in Path(path).rglob("*.parquet") if "_delta_log" not in file.parts}


def newest_commit(path: str) -> int:
    return max((int(file.name.split(".")[0]) for file in (Path(path) / "_delta_log").glob("[0-9]*.json")),
               default=-1)


def run_job(job_args: list[str], conf: Path, log: Path, *, table_path: str, kill: KillPoint | None = None) -> JobRun:
    """Run ``./spark-submit.sh`` with ``job_args`` in a new process group, watching the table at
    ``table_path``; SIGKILL the whole group at ``kill``, unless the job has ended by then."""
    command = [str(PROJECT_ROOT / "spark-submit.sh"), *job_args, "--env", str(conf)]
    files_before, version_before = data_files(table_path), newest_commit(table_path)
    first_file_at = commit_at = killed_in = None
    timed_out = False
    started = time.monotonic()
    with log.open("w") as output:
        job = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "FRAUD_PYTHON": sys.executable})
        while (returncode := job.poll()) is None:
            elapsed = time.monotonic() - started
            if first_file_at is None and data_files(table_path) - files_before:
                first_file_at = elapsed
            if commit_at is None and newest_commit(table_path) > version_before:
                commit_at = elapsed
            anchor_at = {START: 0.0, FIRST_FILE: first_file_at, COMMIT: commit_at}[kill.anchor] if kill else None
            timed_out = elapsed > JOB_TIMEOUT_SECONDS
            if timed_out or (anchor_at is not None and elapsed >= anchor_at + kill.seconds):
                killed_in = where_is(job_args[0], job.pid, first_file_at=first_file_at, commit_at=commit_at)
                os.killpg(job.pid, signal.SIGKILL)
                returncode = job.wait(timeout=GONE_TIMEOUT_SECONDS)
                break
            time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + GONE_TIMEOUT_SECONDS
    while live_group_members(job.pid):
        assert time.monotonic() < deadline, f"processes {live_group_members(job.pid)} of {command} outlived SIGKILL"
        time.sleep(0.2)
    if killed_in is None:  # what the job wrote after the last look
        if first_file_at is None and data_files(table_path) - files_before:
            first_file_at = seconds
        if commit_at is None and newest_commit(table_path) > version_before:
            commit_at = seconds
    run = JobRun(returncode=returncode, seconds=seconds, log=log, first_file_at=first_file_at, commit_at=commit_at,
                 killed_in=killed_in)
    assert not timed_out, f"{' '.join(job_args)} took over {JOB_TIMEOUT_SECONDS} s:\n{run.tail()}"
    return run


def restore(clean_copy: Path, path: str) -> None:
    shutil.rmtree(path)
    shutil.copytree(clean_copy, path)


def kill_points(rng: random.Random, unkilled: JobRun, *, timed: int, after_commit: bool = True) -> list[KillPoint]:
    """``timed`` moments spread over the run, one in each equal slice of its time; then one in
    its write (from the first new data file, within as long as
    the unkilled run took to commit) and, with ``after_commit``, one after its commit (within
    as long as the unkilled run took from there to its end). The write is a small part of the
    run, so it gets a kill of its own rather than the chance of a draw."""
    width = unkilled.seconds / max(timed, 1)
    points = [KillPoint(START, width * (slice_ + rng.random())) for slice_ in range(timed)]
    points.append(KillPoint(FIRST_FILE, (unkilled.commit_at - unkilled.first_file_at) * rng.random()))
    if after_commit:
        points.append(KillPoint(COMMIT, (unkilled.seconds - unkilled.commit_at) * rng.random()))
    return points


def kill_series(
    series: str,
    job_args: list[str],
    *,
    conf: Path,
    table_path: str,
    days: dict[date, int],
    stamp: str,
    timed_kills: int,
    kill_after_commit: bool = True,
    seed: int,
    work: Path,
    rerun_of_a_finished_job_adds_nothing: bool,
) -> None:
    """Kill ``job_args`` at moments drawn with ``seed`` and check the table after each kill;
    then run it again, unkilled. ``days`` are the days the job writes, with the rows a whole
    run leaves on each.

    Every kill starts from the state before the job: the clean copy is put back after a kill
    that found the job's result, while a kill that found the table as it was leaves its
    uncommitted files in place, as a real crash would, for the next run to cope with.
    """
    clean_copy = work / f"{series}-clean-copy"
    shutil.copytree(table_path, clean_copy)
    before = read_state(table_path)
    unkilled = run_job(job_args, conf, work / f"{series}-unkilled.log", table_path=table_path)
    assert unkilled.returncode == 0, f"the unkilled {series} exited {unkilled.returncode}:\n{unkilled.tail()}"
    assert unkilled.first_file_at is not None and unkilled.commit_at is not None, "the unkilled run wrote nothing"
    after = read_state(table_path)
    ids = after.rows["transaction_id"]
    assert len(pc.unique(ids)) == len(ids), f"the unkilled {series} left duplicate transaction ids"
    for day, rows in days.items():
        assert on_days(after.rows, {day}).num_rows == rows, f"the unkilled {series} left wrong rows on {day}"
    assert after.rows.num_rows == on_days(before.rows, set(days), inside=False).num_rows + sum(days.values())
    print(f"\n[{series}] unkilled run: first new data file at {unkilled.first_file_at:.2f} s, first commit at "
          f"{unkilled.commit_at:.2f} s, end at {unkilled.seconds:.2f} s")

    def state_of(found: TableState, *, since: TableState = before) -> str:
        return classify(found, before=since, after=after, days=set(days), stamp=stamp)

    findings = []  # (what was checked, the state found, the state expected)
    # A reader between two commits of one run sees every version the run made, not just its last.
    for version in range(before.version + 1, max(after.version, before.version + 1) + 1):
        found = state_of(read_state(table_path, version))
        print(f"[{series}] unkilled run, version {version}: {found}")
        findings.append((f"unkilled run, version {version}", found, "after"))

    restore(clean_copy, table_path)
    current = "before"
    points = kill_points(random.Random(seed), unkilled, timed=timed_kills, after_commit=kill_after_commit)
    for number, point in enumerate(points, 1):
        if current != "before":
            restore(clean_copy, table_path)
        files_before = data_files(table_path)
        run = run_job(job_args, conf, work / f"{series}-kill-{number}.log", table_path=table_path, kill=point)
        found = read_state(table_path)
        current = state_of(found)
        uncommitted = data_files(table_path) - files_before - set(DeltaTable(table_path).file_uris())
        what = f"kill {number}/{len(points)}, {point}"
        how = (f"killed at {run.seconds:.2f} s {run.killed_in}, {len(uncommitted)} uncommitted data file(s) left"
               if run.killed_in else f"ended by itself first, exit {run.returncode}")
        print(f"[{series}] {what}: {current}, version {found.version} ({how})")
        findings.append((what, current, "before or after"))
        if run.killed_in is None and run.returncode != 0:
            findings.append((f"{what}: exit {run.returncode}\n{run.tail()}", "failed", "exit 0"))

    leftover = read_state(table_path)
    rerun = run_job(job_args, conf, work / f"{series}-rerun.log", table_path=table_path)
    final = read_state(table_path)
    if current == "after" and rerun_of_a_finished_job_adds_nothing:
        unchanged = final.version == leftover.version and final.rows.equals(leftover.rows)
        found, expected = ("after, unchanged" if unchanged else state_of(final)), "after, unchanged"
    else:
        found, expected = state_of(final, since=leftover), "after"
    print(f"[{series}] rerun after the last kill: exit {rerun.returncode} in {rerun.seconds:.1f} s: {found}, "
          f"version {final.version}")
    findings.append((f"rerun, exit {rerun.returncode}\n{rerun.tail() if rerun.returncode else ''}",
                     found if rerun.returncode == 0 else "failed", expected))

    wrong = [f"{what}: found {found}, expected {expected}" for what, found, expected in findings
             if found not in expected.split(" or ")]
    assert not wrong, f"{series} (seed {seed}), before = version {before.version}:\n" + "\n".join(wrong)


@pytest.fixture(scope="module")
def day_files(tmp_path_factory) -> SimpleNamespace:
    """The real sample cut into its two days, one CSV each."""
    folder = tmp_path_factory.mktemp("days")
    with gzip.open(SAMPLE_CSV, "rt") as sample:
        header, *lines = sample.read().splitlines()
    first_day = [line for line in lines if float(line.split(",", 1)[0]) < 86400]
    second_day = [line for line in lines if float(line.split(",", 1)[0]) >= 86400]
    (folder / "day1.csv").write_text("\n".join([header, *first_day]) + "\n")
    (folder / "day2.csv").write_text("\n".join([header, *second_day]) + "\n")
    return SimpleNamespace(day1=folder / "day1.csv", day2=folder / "day2.csv")


@pytest.fixture(scope="module")
def mlflow_left_as_found():
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


@pytest.fixture(scope="module")
def lake_with_day1(spark, tmp_path_factory, day_files) -> SimpleNamespace:
    """``transactions`` holding day 1 only, and a config file that points the jobs at it."""
    folder = tmp_path_factory.mktemp("ingest_killed")
    settings = settings_in(folder)
    ingest.run(spark, settings, input_path=str(day_files.day1), ingested_at=INGESTED_AT)
    return SimpleNamespace(conf=conf_file(folder), settings=settings)


@pytest.fixture(scope="module")
def scored_lake(spark, tmp_path_factory, mlflow_left_as_found) -> SimpleNamespace:
    """Both days ingested, a champion registered (one quick candidate), both days scored."""
    folder = tmp_path_factory.mktemp("score_killed")
    settings = quick_settings_in(folder)
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="fault-injection")
    challenger = resolve_model(settings.mlflow, f"models:/fraud_detector/{outcome.model_version}")
    promote.run(spark, settings, candidate=challenger, decided_at=SCORED_AT)
    score.run(spark, settings, days=[DAY1, DAY2], model_ref=resolve_model(settings.mlflow), scored_at=SCORED_AT)
    return SimpleNamespace(conf=conf_file(folder), settings=settings)


def test_ingest_killed_anywhere_leaves_the_table_before_or_after_and_a_rerun_completes(
    lake_with_day1, day_files, tmp_path
):
    kill_series(
        "ingest", ["ingest", "--input", str(day_files.day2)],
        conf=lake_with_day1.conf, table_path=lake_with_day1.settings.tables.transactions_path,
        days={DAY2: 2643}, stamp="ingested_at", timed_kills=1, seed=SEED, work=tmp_path,
        rerun_of_a_finished_job_adds_nothing=True,
    )


def test_score_of_a_day_killed_anywhere_leaves_the_old_day_or_the_new_one_whole(scored_lake, tmp_path):
    kill_series(
        "score-day", ["score", "--date", DAY1.isoformat()],
        conf=scored_lake.conf, table_path=scored_lake.settings.tables.scored_path,
        days={DAY1: 2769}, stamp="scored_at", timed_kills=1, seed=SEED + 1, work=tmp_path,
        rerun_of_a_finished_job_adds_nothing=False,
    )


def test_score_of_a_range_killed_anywhere_replaces_the_whole_range_or_nothing(scored_lake, tmp_path):
    # What a range adds to a day is its write: several days in one commit. Before the write and
    # after the commit it runs score-day's code (same reading, same checks, same end), which the
    # series above kills; here only the write is killed.
    kill_series(
        "score-range", ["score", "--start-date", DAY1.isoformat(), "--end-date", DAY2.isoformat()],
        conf=scored_lake.conf, table_path=scored_lake.settings.tables.scored_path,
        days={DAY1: 2769, DAY2: 2643}, stamp="scored_at", timed_kills=0, kill_after_commit=False,
        seed=SEED + 2, work=tmp_path, rerun_of_a_finished_job_adds_nothing=False,
    )
