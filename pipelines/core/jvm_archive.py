"""The driver JVM's class-data archive: Spark's and Delta's classes mapped from one file.

    python -m pipelines.core.jvm_archive_build   # `make setup` runs it; builds the archive once (about a minute)

A job's driver JVM loads some 15,000 classes from 250 jars, most of them in its first query;
on two cores that is about 3 s of a 20 s nightly ``score``. The JDK can write the classes a
run loaded, parsed and verified, to an archive when it exits (AppCDS, ``-XX:ArchiveClassesAtExit``)
and map that archive at the next start (``-XX:SharedArchiveFile``).
:mod:`pipelines.core.jvm_archive_build` writes it once, from a JVM that runs
``jobs/_class_archive.py`` (what the jobs do, on a few rows), and :func:`archive_option` adds it
to the driver's options (:mod:`pipelines.core.session`).

An archive is valid only for the JVM that wrote it and the class path it was written with
(pyspark's jars, in the order the launcher lists them): a different one makes the JVM print a
warning and start without it. So its name carries a digest of both (:func:`archive_path`),
and a job uses it only when the archive for its JVM and jars exists: after a JDK or pyspark
upgrade, jobs run without one, as before, until ``make setup`` writes the new one. Deleting
the folder turns it off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from pipelines.core.config import PROJECT_ROOT

ARCHIVE_DIR = PROJECT_ROOT / ".jars" / "class-archive"
WORKLOAD = PROJECT_ROOT / "jobs" / "_class_archive.py"


def _java_home() -> Path | None:
    """The JDK that ``spark-submit`` starts: ``$JAVA_HOME``, else the ``java`` on the PATH."""
    if os.environ.get("JAVA_HOME"):
        java = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
    else:
        found = shutil.which("java")
        if found is None:
            return None
        java = Path(found)
    try:
        return java.resolve(strict=True).parents[1]
    except (OSError, IndexError):
        return None


def _spark_home() -> Path:
    import pyspark

    return Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)


def archive_path(jar_files: Sequence[str] = ()) -> Path | None:
    """Where the archive for this JVM and these jars is, or would be (None: no JVM found).

    The digest covers the JDK (its path and its module image), Spark's jar folder (path,
    listing and change time: a reinstall changes it), the conf folder on the class path and
    ``jar_files`` (what ``--jars`` adds).
    """
    java_home = _java_home()
    if java_home is None:
        return None
    spark_jars = _spark_home() / "jars"
    parts = [str(java_home), str(spark_jars), os.environ.get("SPARK_CONF_DIR", ""), *sorted(jar_files)]
    try:
        modules = (java_home / "lib" / "modules").stat()
        listing = spark_jars.stat()
        parts += [f"{modules.st_size}:{modules.st_mtime_ns}", f"{listing.st_mtime_ns}",
                  *sorted(os.listdir(spark_jars))]
    except OSError:
        return None
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"driver-{digest}.jsa"


def archive_option(jar_files: Sequence[str]) -> str | None:
    """``-XX:SharedArchiveFile=...`` when the archive for this JVM and ``jar_files`` exists."""
    path = archive_path(jar_files)
    if path is None or not path.is_file():
        return None
    return f"-XX:SharedArchiveFile={path}"
