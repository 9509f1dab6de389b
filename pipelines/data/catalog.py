"""The project's Delta tables by name: temporary views, or a metastore that outlives the session.

Every table lives at a path (``[tables] root``). With a ``[catalog]`` section in the config,
the writing jobs also register each table that exists in that database of the session's
metastore (Spark's Hive metastore on PostgreSQL in ``conf/standalone.toml``), so that
``spark-sql``, a notebook or a BI tool on Spark's Thrift server can query
``fraud.scored_transactions`` without knowing where it is. Registration only records the
location: the data stays in the Delta table, and Delta's log says what is in it.

Example::

    publish(spark, settings)   # after a write; returns the names now in the catalog
"""

from __future__ import annotations

import posixpath

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError, ServiceUnavailableError
from pipelines.data.tables import is_delta_table


def existing_tables(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """The project's tables that exist, by name, with their locations."""
    return {name: path for name, path in settings.tables.locations().items() if is_delta_table(spark, path)}


def publish(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every existing table in the configured database; return their qualified names.

    Without a ``[catalog]`` this does nothing (and returns no names). Already registered tables
    are left as they are.

    :raises ConfigError: a name in the database points at another location than this
        environment's table: two environments share one database.
    :raises ServiceUnavailableError: the metastore did not answer (exit 3); what the job wrote
        is committed all the same.
    """
    if settings.catalog is None:
        return []
    database = settings.catalog.database
    try:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quoted(database)}")
        published = []
        for name, path in existing_tables(spark, settings).items():
            _register(spark, database, name, path)
            published.append(f"{database}.{name}")
        return published
    except (Py4JError, PySparkException) as exc:
        # The job's own writes are committed by now: only the names are missing, and the next
        # job that writes (or `sql`) registers them.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailableError(
            f"the tables are written, but registering them in the metastore's database {database} failed "
            f"(is its database server up?): {first_line}") from exc


def _register(spark: SparkSession, database: str, name: str, path: str) -> None:
    qualified = f"{_quoted(database)}.{_quoted(name)}"
    if not spark.catalog.tableExists(qualified):
        # IF NOT EXISTS: a job registering the same table at the same moment is no error.
        spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING DELTA LOCATION {_literal(path)}")
    registered = spark.sql(f"DESCRIBE DETAIL {qualified}").first()["location"]
    if _plain_path(registered) != _plain_path(path):
        raise ConfigError(
            f"the catalog's table {database}.{name} is the Delta table at {registered}, but this "
            f"environment's {name} is at {path}: give each environment its own [catalog] database")


def _quoted(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _plain_path(location: str) -> str:
    """``file:/a//b/`` and ``/a/b`` name the same folder; other schemes are kept as they are."""
    if location.startswith("file:"):
        location = "/" + location[len("file:"):].lstrip("/")
    return posixpath.normpath(location) if location.startswith("/") else location.rstrip("/")
