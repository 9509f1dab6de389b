"""Writes the driver JVM's class-data archive that :mod:`pipelines.core.jvm_archive` finds.

    python -m pipelines.core.jvm_archive_build   # `make setup` runs it (about a minute)

Apart from the lookup because it starts a job through the session's settings
(:mod:`pipelines.core.session`), which itself asks the lookup for the archive.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipelines.core.config import PROJECT_ROOT, load_settings
from pipelines.core.jvm_archive import WORKLOAD, archive_path
from pipelines.core.session import delta_jars, spark_conf, submit_args


def build(*, force: bool = False) -> Path | None:
    """Write the archive for this JVM and the Delta jars, unless it exists; return its path.

    The workload runs under ``spark-submit`` as a job does, with ``-XX:ArchiveClassesAtExit``;
    the JVM writes the archive as it exits, into a temporary file renamed when complete.
    """
    jars = delta_jars()
    if not jars:
        raise SystemExit("jvm_archive: the Delta jars are not in .jars: run 'make setup' first")
    target = archive_path(jars)
    if target is None:
        raise SystemExit("jvm_archive: no java found (JAVA_HOME or the PATH)")
    if target.is_file() and not force:
        print(f"jvm_archive: {target.name} is there already")
        return target
    settings = load_settings("local").spark
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place: a job starting meanwhile maps either
    # no archive or a whole one, never a file still being written.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with tempfile.TemporaryDirectory(prefix="class-archive-") as folder:
        java_options = spark_conf(settings, class_archive=False)["spark.driver.extraJavaOptions"]
        writing = f"spark.driver.extraJavaOptions={java_options} -XX:ArchiveClassesAtExit={partial}"
        args = [writing if arg.startswith("spark.driver.extraJavaOptions=") else arg
                for arg in submit_args(settings, "class-archive", class_archive=False)]
        command = [
            str(Path(sys.executable).parent / "spark-submit"), *args,
            "--conf", f"spark.pyspark.driver.python={sys.executable}",
            "--jars", ",".join(jars), str(WORKLOAD), "--folder", folder,
        ]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYSPARK_PYTHON": sys.executable}
        try:
            run = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
            if run.returncode != 0 or not partial.is_file():
                sys.stderr.write(run.stdout[-3000:] + run.stderr[-3000:])
                raise SystemExit(f"jvm_archive: the workload exited {run.returncode}; no archive written "
                                 "(jobs run without one)")
            for old in target.parent.glob("driver-*.jsa"):
                if old != target:
                    old.unlink()  # the archive of a JVM or jars no longer installed
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    print(f"jvm_archive: wrote {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="write it again even if it exists")
    args = parser.parse_args(argv)
    build(force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
