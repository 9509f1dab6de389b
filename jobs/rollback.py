"""rollback: point the champion back at the version it pointed at before, in one step.

    ./spark-submit.sh rollback --reason "version 7 alerts on every refund"

The version before is read from the ``promotions`` table (the decision that made the current
champion). The rollback is recorded there as a row too, so a second rollback undoes the first.
Exit 2 when there is no champion or no earlier one recorded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.core.cli import job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.tables import append_rows, is_delta_table
from pipelines.lifecycle.promotion import FORCED, PROMOTED, PROMOTIONS_SCHEMA, ROLLED_BACK, decision_row
from pipelines.model.registry import alias_holder, configure_mlflow, point_alias, reaching_mlflow


def previous_champion(spark: SparkSession, promotions_path: str, current: str) -> str | None:
    """The champion before the latest change that made ``current`` the champion."""
    if not is_delta_table(spark, promotions_path):
        return None
    latest = (
        spark.read.format("delta").load(promotions_path)
        .filter(F.col("decision").isin(PROMOTED, FORCED, ROLLED_BACK) & (F.col("champion_after") == current)
                & F.col("champion_before").isNotNull())
        .orderBy(F.col("decided_at").desc())
        .select("champion_before").first()
    )
    return latest["champion_before"] if latest else None


def run(spark: SparkSession, settings: Settings, *, reason: str, decided_at: datetime) -> tuple[str, str]:
    """Move the champion back; return (from version, to version)."""
    mlflow_settings = settings.mlflow
    champion = alias_holder(mlflow_settings, mlflow_settings.champion_alias)
    if champion is None:
        raise InvalidArgumentError(f"{mlflow_settings.model_name} has no champion: nothing to roll back")
    previous = previous_champion(spark, settings.tables.promotions_path, champion.version)
    if previous is None:
        raise InvalidArgumentError(
            f"no champion before version {champion.version} is recorded in {settings.tables.promotions_path}: "
            f"nothing to roll back to (promote --version N --force --reason ... names one explicitly)")
    point_alias(mlflow_settings, mlflow_settings.champion_alias, previous)
    row = decision_row(decided_at=decided_at, action="rollback", decision=ROLLED_BACK,
                       model_name=mlflow_settings.model_name, candidate_version=previous,
                       champion_before=champion.version, champion_after=previous, result=None, reason=reason)
    append_rows(spark.createDataFrame([row], PROMOTIONS_SCHEMA), settings.tables.promotions_path)
    log.info("rollback: champion %s -> %s", champion.version, previous)
    return champion.version, previous


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--reason", default="", help="why; recorded with the rollback")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        spark = get_spark(settings.spark)
        before, after = run(spark, settings, reason=args.reason.strip(), decided_at=utc_now())
        publish(spark, settings)
    print(f"rollback: the champion of {settings.mlflow.model_name} is version {after} again (was {before})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
