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

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.errors import ConfigError
from pipelines.tables import is_delta_table


def existing_tables(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """The project's tables that exist, by name, with their locations."""
    return {name: path for name, path in settings.tables.locations().items() if is_delta_table(spark, path)}


def publish(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every existing table in the configured database; return their qualified names.

    Without a ``[catalog]`` this does nothing (and returns no names). Already registered tables
    are left as they are.

    :raises ConfigError: a name in the database points at another location than this
        environment's table: two environments share one database.
    """
    if settings.catalog is None:
        return []
    database = settings.catalog.database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quoted(database)}")
    published = []
    for name, path in existing_tables(spark, settings).items():
        qualified = f"{_quoted(database)}.{_quoted(name)}"
        if spark.catalog.tableExists(qualified):
            registered = spark.sql(f"DESCRIBE DETAIL {qualified}").first()["location"]
            if _plain_path(registered) != _plain_path(path):
                raise ConfigError(
                    f"the catalog's table {database}.{name} is the Delta table at {registered}, but this "
                    f"environment's {name} is at {path}: give each environment its own [catalog] database")
        else:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING DELTA LOCATION {_literal(path)}")
        published.append(f"{database}.{name}")
    return published


def _quoted(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _plain_path(location: str) -> str:
    """``file:/a/b/`` and ``/a/b`` name the same folder; other schemes are kept as they are."""
    if location.startswith("file:"):
        location = "/" + location[len("file:"):].lstrip("/")
    return location.rstrip("/")
