"""One Spark session for the whole suite, and per-test settings that point every table and the
MLflow store into a temporary folder."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.core.clock import NOW_SET_AT_VARIABLE, NOW_VARIABLE
from pipelines.core.config import PROJECT_ROOT, EnsembleSettings, Settings, load_settings, with_state_in
from pipelines.core.session import get_spark

# Every job reads the clock through pipelines.core.clock.utc_now. The suite sets it here, for
# itself and for every job it starts as a process: FIXED_NOW when the suite started, running on
# from there. No test's outcome depends on the day the suite runs (a seven-day cool-down once ran
# out under a test that used the real clock), and a job run after another still runs later.
FIXED_NOW = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
os.environ[NOW_VARIABLE] = FIXED_NOW.isoformat()
os.environ[NOW_SET_AT_VARIABLE] = repr(time.time())

SAMPLE_CSV = PROJECT_ROOT / "data" / "creditcard_sample.csv.gz"

# Small and quick: tests check behaviour (a real search over two candidates and their ensemble),
# not model quality.
SMALL_CANDIDATES = {
    "logistic_regression": {"regParam": [0.0, 0.1]},
    "random_forest": {"numTrees": [10], "maxDepth": [4]},
}


def settings_in(folder: Path) -> Settings:
    """The local settings, with the Delta tables and the MLflow store under ``folder``."""
    settings = with_state_in(load_settings("local"), folder)
    return replace(settings, train=replace(settings.train, candidates=SMALL_CANDIDATES,
                                           ensemble=EnsembleSettings(members=tuple(SMALL_CANDIDATES))))


def quick_settings_in(folder: Path) -> Settings:
    """:func:`settings_in` with one quick candidate (a logistic regression) and no ensemble:
    for tests that need a registered model, not a search."""
    settings = settings_in(folder)
    quick = {"logistic_regression": {"regParam": [0.1]}}
    return replace(settings, train=replace(settings.train, candidates=quick, ensemble=EnsembleSettings()))


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    settings = load_settings("local").spark
    test_conf = {**settings.conf, "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}
    session = get_spark(replace(settings, master="local[2]", conf=test_conf))
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)


# The longest files first: `make test` runs files in two processes (pytest-xdist, --dist
# loadfile --no-loadscope-reorder), which take files in this order, the first process files 1
# and 3, the second 2 and 4, then whichever file is next when one finishes. Started last, the
# cluster's dozen minutes would run alone at the end. Pairs chosen to even out (measured,
# 2026-12-07: cluster 13 min, fault injection 10, promotion 3, monitoring 5 to 9).
LONGEST_FIRST = ("test_standalone_cluster.py", "test_fault_injection.py", "test_promotion.py", "test_monitoring.py",
                 "test_score_lifecycle.py")


def _longest_first(item: pytest.Item) -> int:
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``jvm`` every test that starts Spark: through the session fixture (directly or by a
    fixture that uses it), or by running whole jobs (``e2e``, ``cluster``). ``make test-quick``
    runs the others: no JVM and no server beyond one on loopback that the test itself starts.
    Then put the longest files first (a stable sort: the order within a file is kept)."""
    items.sort(key=_longest_first)
    for item in items:
        if ("spark" in getattr(item, "fixturenames", ()) or item.get_closest_marker("e2e")
                or item.get_closest_marker("cluster")):
            item.add_marker(pytest.mark.jvm)
