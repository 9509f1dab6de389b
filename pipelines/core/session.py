"""The one place where a SparkSession is configured, for jobs and tests alike.

``spark-submit.sh`` asks this module for its arguments (``python -m pipelines.core.session --env
local``), so a job started through ``spark-submit`` and a session built in a test get the same
Delta and Spark settings.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pipelines.core.cli import run_main
from pipelines.core.config import PROJECT_ROOT, SparkSettings, load_settings
from pipelines.core.errors import ConfigError, ServiceUnavailableError
from pipelines.core.jvm_archive import archive_option

# Delta Lake's SQL extension and catalog; the jars themselves come from `.jars/` (make setup).
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
LOG4J_CONF = PROJECT_ROOT / "conf" / "log4j2.properties"
# Event times and partition dates are UTC whatever the machine's zone is.
BASE_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # The 35-column tables would otherwise warn on every plan that their string form was cut.
    "spark.sql.debug.maxToStringFields": "100",
    "spark.driver.extraJavaOptions": f"-Duser.timezone=UTC -Dlog4j2.configurationFile={LOG4J_CONF.as_uri()}",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}
JARS_DIR = PROJECT_ROOT / ".jars"


# Settings where a config file's value is added to the base one instead of replacing it.
_APPENDED = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def spark_conf(settings: SparkSettings, *, class_archive: bool = True) -> dict[str, str]:
    """Every Spark setting of an environment: the base, Delta's, then the config file's own.

    JVM options from the config file are appended to the base ones (UTC, logging). A driver
    that runs on this machine (not in cluster deploy mode) maps the class-data archive of
    ``make setup`` when there is one for this JVM and these jars (pipelines/core/jvm_archive.py),
    and when its class path is the one the archive was written with: entries put before
    Spark's jars (``spark.driver.extraClassPath``, e.g. conf/standalone.toml's metastore
    driver) make the JVM refuse the archive with a warning at every start.
    """
    conf = {**BASE_CONF, **DELTA_CONF}
    for key, value in settings.conf.items():
        conf[key] = f"{conf[key]} {value}" if key in _APPENDED and key in conf else value
    option = archive_option(delta_jars()) if class_archive else None
    if (option and conf.get("spark.submit.deployMode", "client") == "client"
            and not conf.get("spark.driver.extraClassPath")):
        conf["spark.driver.extraJavaOptions"] += f" {option}"
    return conf


def delta_jars(jars_dir: Path = JARS_DIR) -> list[str]:
    """The Delta Lake jars fetched by ``make setup``; empty when they have not been fetched."""
    return sorted(str(path) for path in jars_dir.glob("*.jar"))


def check_before_start(settings: SparkSettings, conf: Mapping[str, str]) -> None:
    """What a session of these settings needs from this machine, checked before its JVM starts.

    Spark itself would find out later and worse: a missing ``spark.archives`` file or event-log
    folder as a Java stack trace, a class path entry not at all (without the folder that holds
    ``hive-site.xml``, a Derby metastore is made in the working folder, silently), a standalone
    master that does not answer only after a minute of retries.

    :raises ConfigError: a local file or folder the settings name does not exist (exit 2).
    :raises ServiceUnavailableError: no ``spark://`` master answers on its port (exit 3).
    """
    named = {"spark.archives": [entry.split("#", 1)[0] for entry in conf.get("spark.archives", "").split(",")]}
    # In cluster deploy mode the driver's class path and event log are on a node, not here.
    if conf.get("spark.submit.deployMode", "client") == "client":
        named["spark.driver.extraClassPath"] = conf.get("spark.driver.extraClassPath", "").split(os.pathsep)
        if conf.get("spark.eventLog.enabled", "false").lower() == "true":
            named["spark.eventLog.dir"] = [conf.get("spark.eventLog.dir", "")]
    missing = [f"[spark.conf] {key!r} names {path}, which does not exist"
               for key, entries in named.items() for path in map(_local_path, entries)
               if path is not None and not path.exists()]
    if missing:
        raise ConfigError("; ".join(missing) + " (for conf/standalone.toml: is the local cluster up? "
                                               "deploy/standalone/cluster.sh up)")
    if settings.master.startswith("spark://"):
        _check_masters_answer(settings.master)


def _local_path(entry: str) -> Path | None:
    """The local file an entry names (a plain path or ``file:``), or None (a glob, another scheme)."""
    entry = entry.strip()
    if not entry or "*" in entry:
        return None
    if entry.startswith("file:"):
        entry = entry.removeprefix("file:").removeprefix("//")
    elif "://" in entry:
        return None
    return Path(entry)


def _check_masters_answer(master: str, timeout: float = 5.0) -> None:
    """At least one of a ``spark://host:port[,host:port]`` master list accepts a connection."""
    reasons = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            reasons.append(f"{address}: {getattr(exc, 'strerror', None) or exc}")
    raise ServiceUnavailableError(f"cannot reach the Spark master at {master} ({'; '.join(reasons)}): "
                                  f"is the cluster up?")


def get_spark(settings: SparkSettings, *, jars: Sequence[str] | None = None) -> SparkSession:
    """Return the active session, or build one from ``settings``.

    Under ``spark-submit`` the master, jars and settings were already given on the command
    line and the builder only attaches to that session.

    :param jars: jar files to put on the class path; defaults to the fetched Delta jars.
    """
    builder = SparkSession.builder.master(settings.master)
    # Under spark-submit the application already has its name, the job's ("fraud-scoring
    # score", as the cluster's pages list it); the builder's would replace it.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.appName(settings.app_name)
    # Outside spark-submit, Python workers would start the first `python3` on the PATH, which
    # may lack this environment's packages (pandas for xgboost and pandas UDFs). PySpark reads
    # only the environment variable for that.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = spark_conf(settings)
    check_before_start(settings, conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    jar_files = delta_jars() if jars is None else list(jars)
    if jar_files:
        builder = builder.config("spark.jars", ",".join(jar_files))
    try:
        spark = builder.getOrCreate()
    except Py4JJavaError as exc:
        # The session could not start: the cluster gave up on us (a master that accepts the
        # connection but does not register the application), or a setting the JVM refused.
        reason = exc.java_exception.toString().splitlines()[0]
        raise ServiceUnavailableError(
            f"Spark did not start (master {settings.master}): {reason}; Spark's log above says why "
            f"(e.g. 'All masters are unresponsive')") from exc
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextmanager
def starting_spark(settings: SparkSettings) -> Iterator[Future[SparkSession]]:
    """:func:`get_spark` in a background thread, for a job to do its own work meanwhile.

    The session's start is mostly the JVM's work (py4j calls wait with Python's lock released),
    so importing MLflow and asking it for the model while Spark starts saves most of the
    shorter of the two (about 2 s of a nightly ``score``). ``.result()`` is the session, or
    raises what starting it raised; leaving the block waits for the start to end either way.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="spark-start") as pool:
        yield pool.submit(get_spark, settings)


def submit_args(settings: SparkSettings, job: str | None = None, *, class_archive: bool = True) -> list[str]:
    """``spark-submit`` options for an environment: master, name and every ``--conf``.

    :param job: named in the application's name (``fraud-scoring score``), as the cluster's
        and the history server's pages list it; its ``[spark.jobs.<job>]`` settings apply.
    """
    name = f"{settings.app_name} {job}" if job else settings.app_name
    args = ["--master", settings.master, "--name", name]
    for key, value in spark_conf(settings.for_job(job), class_archive=class_archive).items():
        args += ["--conf", f"{key}={value}"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print spark-submit options, one per line.")
    parser.add_argument("--env", default="local")
    parser.add_argument("--job", help="the job the application runs, for its name")
    args = parser.parse_args(argv)
    settings = load_settings(args.env).spark
    check_before_start(settings, spark_conf(settings.for_job(args.job)))
    print("\n".join(submit_args(settings, args.job)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
