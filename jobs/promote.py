"""promote: put the challenger (or a version) through the gate and, if it passes, make it the champion.

    ./spark-submit.sh promote                      # the challenger
    ./spark-submit.sh promote --version 3 --dry-run
    ./spark-submit.sh promote --version 3 --force --reason "incident 4711: champion misfires"

Prints every check of the gate with its value, its limit and pass/fail, and records the
decision (promoted, refused, dry run, forced) as one row of the ``promotions`` table. Exit 0
when promoted (or a dry run), 4 when the gate refused (the champion is unchanged), 2 on bad
arguments, 3 when MLflow cannot be reached.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import SparkSession

from pipelines.core.cli import job_parser, log, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import InvalidArgumentError, PromotionRefusedError
from pipelines.core.session import get_spark
from pipelines.data.catalog import publish
from pipelines.data.tables import append_rows
from pipelines.lifecycle.promotion import (
    DRY_RUN,
    FORCED,
    PROMOTED,
    PROMOTIONS_SCHEMA,
    REFUSED,
    GateResult,
    decision_row,
    run_gate,
)
from pipelines.model.inputs import model_inputs
from pipelines.model.ref import ModelRef
from pipelines.model.registry import (
    alias_holder,
    configure_mlflow,
    load_model,
    point_alias,
    reaching_mlflow,
    resolve_model,
    run_metrics,
    version_tags,
)


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    candidate: ModelRef,
    dry_run: bool = False,
    force_reason: str | None = None,
    decided_at: datetime,
) -> tuple[str, GateResult]:
    """Gate ``candidate``, move the champion if it passed (or is forced), record the decision.

    :returns: the decision (``promoted``, ``refused``, ``dry_run`` or ``forced``) and the gate's result.
    """
    mlflow_settings = settings.mlflow
    inputs = model_inputs(settings)
    champion = alias_holder(mlflow_settings, mlflow_settings.champion_alias)
    if champion is not None and champion.version == candidate.version:
        raise InvalidArgumentError(f"version {candidate.version} of {candidate.name} is the champion already")
    result = run_gate(
        spark,
        transactions_path=inputs.path(settings),
        candidate=candidate,
        candidate_tags=version_tags(mlflow_settings, candidate),
        champion=champion,
        champion_tags=version_tags(mlflow_settings, champion) if champion else None,
        load_model=load_model,
        held_out_metrics=run_metrics(mlflow_settings, candidate.run_id),
        normal_weight=settings.train.normal_weight,
        settings=settings.promote,
        inputs=inputs,
        card_precision_k=settings.train.card_precision_k,
    )
    print(result.report())
    if dry_run:
        decision = DRY_RUN
    elif force_reason:
        decision = FORCED
    else:
        decision = PROMOTED if result.passed else REFUSED
    champion_before = champion.version if champion else None
    moves = decision in (PROMOTED, FORCED)
    if moves:
        # One registry call: a score that starts now reads the old version or the new one, and
        # a score already running keeps the version it resolved at its start.
        point_alias(mlflow_settings, mlflow_settings.champion_alias, candidate.version)
    row = decision_row(
        decided_at=decided_at, action="promote", decision=decision, model_name=candidate.name,
        candidate_version=candidate.version, champion_before=champion_before,
        champion_after=candidate.version if moves else champion_before, result=result, reason=force_reason or "",
    )
    append_rows(spark.createDataFrame([row], PROMOTIONS_SCHEMA), settings.tables.promotions_path)
    log.info("promote: version %s: %s (champion %s -> %s)", candidate.version, decision, champion_before,
             candidate.version if moves else champion_before)
    return decision, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, help="the registered version to promote (default: the challenger)")
    parser.add_argument("--dry-run", action="store_true", help="run the gate and record it; move nothing")
    parser.add_argument("--force", action="store_true", help="promote even if the gate fails (needs --reason)")
    parser.add_argument("--reason", help="why a promotion is forced; recorded with the decision")
    args = parser.parse_args(argv)
    if args.force and not (args.reason or "").strip():
        parser.error("--force needs --reason TEXT: a forced promotion is recorded with why")
    if args.reason and not args.force:
        parser.error("--reason goes with --force")
    if args.force and args.dry_run:
        parser.error("--force and --dry-run exclude each other")
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be a registered version number (1 or more), got {args.version}")
    settings = load_settings(args.env)
    with reaching_mlflow(settings.mlflow):
        configure_mlflow(settings.mlflow)
        name = settings.mlflow.model_name
        uri = f"models:/{name}/{args.version}" if args.version else f"models:/{name}@{settings.mlflow.challenger_alias}"
        candidate = resolve_model(settings.mlflow, uri)
        spark = get_spark(settings.spark)
        decision, _ = run(spark, settings, candidate=candidate, dry_run=args.dry_run,
                          force_reason=args.reason.strip() if args.force else None,
                          decided_at=utc_now())
        publish(spark, settings)
    if decision == REFUSED:
        raise PromotionRefusedError(
            f"the gate refused version {candidate.version}; the champion is unchanged (decision recorded in "
            f"{settings.tables.promotions_path})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
