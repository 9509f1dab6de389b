"""./spark-submit.sh itself: the driver's interpreter under a cluster config, and the code
archive shared by jobs that start at the same moment."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines.core.config import PROJECT_ROOT
from tests.test_end_to_end import conf_file, submit

pytestmark = pytest.mark.e2e


def test_the_driver_starts_with_the_projects_python_when_executors_use_a_packed_environment(tmp_path):
    # conf/cluster.toml points spark.pyspark.python at the executors' unpacked archive; in
    # client mode that path does not exist where the driver runs.
    conf = conf_file(tmp_path)
    packed = '"spark.pyspark.python" = "./environment/bin/python"'
    text = conf.read_text().replace("[spark.conf]\n", f"[spark.conf]\n{packed}\n")
    conf.write_text(text)
    result = submit("sql", "SELECT 41 + 1 AS answer", conf=conf)
    assert result.returncode == 0, result.output[-3000:]
    assert "|42    |" in result.output


def code_archives() -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in (PROJECT_ROOT / "build").glob("fraud_scoring-*.zip")}


def test_jobs_started_together_share_one_archive_named_by_its_content(tmp_path):
    conf = conf_file(tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: submit("sql", "SELECT 1 AS one", conf=conf), range(2)))
    assert [result.returncode for result in results] == [0, 0], results[0].output[-2000:]
    before = code_archives()
    assert submit("sql", "SELECT 1 AS one", conf=conf).returncode == 0
    # The archive of this code is reused, never rewritten in place under a running job.
    assert code_archives() == before
    archive = PROJECT_ROOT / "build" / max(before, key=lambda name: (PROJECT_ROOT / "build" / name).stat().st_mtime)
    listed = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(archive)], capture_output=True, text=True,
                            check=True).stdout
    assert "pipelines/data/tables.py" in listed and "jobs/score.py" in listed


def test_an_unknown_job_is_refused_with_the_list_of_jobs():
    result = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "delete_everything"], capture_output=True,
                            text=True, env={"FRAUD_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    jobs = "features generate ingest label monitor promote publish retrain rollback score sql train"
    assert f"unknown job 'delete_everything'; jobs: {jobs}" in result.stderr
    assert not Path(PROJECT_ROOT / "jobs" / "delete_everything.py").exists()


def test_a_misspelt_config_key_stops_a_job_with_exit_2_before_spark_starts(tmp_path):
    conf = conf_file(tmp_path)
    conf.write_text(conf.read_text().replace("holdout_days = 1", "holdout_dayz = 1"))
    result = submit("ingest", "--input", "data/creditcard_sample.csv.gz", conf=conf)
    assert result.returncode == 2, result.output[-2000:]
    assert "[train] holdout_dayz: unknown key" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "lake").exists()
