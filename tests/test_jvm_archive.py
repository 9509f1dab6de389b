"""The driver's class-data archive (pipelines/core/jvm_archive.py): named after its JVM and jars,
used only when it exists and the driver runs here, and really mapped by a job's JVM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.core import jvm_archive
from pipelines.core.config import load_settings
from pipelines.core.session import delta_jars, spark_conf
from tests.test_end_to_end import conf_file, submit


def fake_install(root: Path, jars: list[str]) -> tuple[Path, Path]:
    """A JDK (bin/java, lib/modules) and a Spark home (jars/) made of empty files."""
    jdk, spark = root / "jdk", root / "spark"
    (jdk / "bin").mkdir(parents=True)
    (jdk / "lib").mkdir()
    (jdk / "bin" / "java").write_text("")
    (jdk / "lib" / "modules").write_text("modules")
    (spark / "jars").mkdir(parents=True)
    for name in jars:
        (spark / "jars" / name).write_text("")
    return jdk, spark


def test_the_archive_is_named_after_its_jvm_and_its_jars(tmp_path, monkeypatch):
    jdk, spark = fake_install(tmp_path / "a", ["spark-core.jar", "scala-library.jar"])
    other_jdk, _ = fake_install(tmp_path / "b", [])
    monkeypatch.setenv("SPARK_HOME", str(spark))
    monkeypatch.setenv("JAVA_HOME", str(jdk))
    first = jvm_archive.archive_path(["delta-spark.jar"])
    assert first is not None and first.parent == jvm_archive.ARCHIVE_DIR
    assert jvm_archive.archive_path(["delta-spark.jar"]) == first
    assert jvm_archive.archive_path(["delta-spark-4.1.jar"]) != first
    monkeypatch.setenv("JAVA_HOME", str(other_jdk))
    assert jvm_archive.archive_path(["delta-spark.jar"]) != first
    monkeypatch.setenv("JAVA_HOME", str(jdk))
    (spark / "jars" / "spark-sql.jar").write_text("")  # pyspark upgraded or reinstalled
    assert jvm_archive.archive_path(["delta-spark.jar"]) != first
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert jvm_archive.archive_path(["delta-spark.jar"]) is None


def test_a_driver_here_maps_the_archive_only_when_there_is_one_for_its_jvm(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    local = load_settings("local").spark
    assert "SharedArchiveFile" not in spark_conf(local)["spark.driver.extraJavaOptions"]

    archive = jvm_archive.archive_path(delta_jars())
    archive.write_bytes(b"")
    options = spark_conf(local)["spark.driver.extraJavaOptions"]
    assert options.endswith(f"-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile={archive}")
    assert "SharedArchiveFile" not in spark_conf(local, class_archive=False)["spark.driver.extraJavaOptions"]
    # A driver started on a cluster's node has neither this path nor this JVM.
    on_a_node = replace(local, conf={**local.conf, "spark.submit.deployMode": "cluster"})
    assert "SharedArchiveFile" not in spark_conf(on_a_node)["spark.driver.extraJavaOptions"]
    assert "SharedArchiveFile" not in spark_conf(local)["spark.executor.extraJavaOptions"]
    # Jars before Spark's on the class path (the standalone config's metastore driver): the
    # JVM would refuse the archive ("shared class paths mismatch") and warn at every start.
    with_class_path = replace(local, conf={**local.conf, "spark.driver.extraClassPath": "/opt/jdbc.jar"})
    assert "SharedArchiveFile" not in spark_conf(with_class_path)["spark.driver.extraJavaOptions"]


@pytest.mark.e2e
def test_a_jobs_jvm_loads_sparks_classes_from_the_archive_make_setup_wrote(tmp_path):
    archive = jvm_archive.archive_path(delta_jars())
    assert archive is not None and archive.is_file(), "make setup writes it: python -m pipelines.core.jvm_archive_build"
    conf = conf_file(tmp_path)
    classes = tmp_path / "classes.log"
    # The JVM's own record of where each class came from.
    conf.write_text(conf.read_text().replace(
        '"-XX:TieredStopAtLevel=1"', f'"-XX:TieredStopAtLevel=1 -Xlog:class+load=info:file={classes}"'))
    result = submit("sql", "SELECT 41 + 1 AS answer", conf=conf)
    assert result.returncode == 0, result.output[-3000:]
    assert "|42    |" in result.output
    assert "Unable to use shared archive" not in result.output
    sources = classes.read_text().splitlines()
    from_archive = [line for line in sources if "source: shared objects file (top)" in line]
    spark_classes = [line for line in from_archive if " org.apache.spark." in line]
    assert len(spark_classes) > 2000, f"{len(spark_classes)} of Spark's classes from {archive.name}"
