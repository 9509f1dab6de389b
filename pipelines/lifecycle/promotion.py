"""The promotion gate: may a registered version replace the champion?

The gate measures the candidate (and the champion, when there is one) on labelled rows of
``transactions`` that the version(s) were *not fitted on*: the rows of the current table
minus, for each version, the rows of the days it was fitted on at the table version it read
(its ``fitted.days`` and ``source.table_version`` tags). With a champion, both are scored on the
*same* rows and compared paired: a bootstrap of the difference in AUC-PR, frauds and normal
rows resampled apart, the same resample for both models.

Every check is returned as data (value, limit, passed) and recorded in the ``promotions``
table by the job, whatever the decision.

What the gate can and cannot know: it measures the very artifacts that would score, but only
on rows they never saw. A version refitted on every labelled day has no such rows until later
days are ingested (or shadow-scored and labelled); then the absolute checks fall back to the
training run's held-out day (the same recipe fitted without that day, not the refitted
artifact), and a comparison with the champion is impossible: ``[promote] without_unseen_rows``
says whether the gate then refuses or lets the absolute checks decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np
from pyspark.ml import Transformer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.clock import as_utc
from pipelines.core.config import PromoteSettings
from pipelines.data.schema import TRANSACTION_ID, TXN_DATE
from pipelines.data.tables import current_version, read_version
from pipelines.model.evaluation import (
    SCORE_DECIMALS,
    ScoreCurve,
    binary_metrics,
    card_precision_metric,
    scored_card_precision,
)
from pipelines.model.inputs import CREDITCARD, ModelInputs, check_feature_set, model_rows
from pipelines.model.ref import ModelRef
from pipelines.model.stages import fraud_probability

# What a promotion run decided; one row of the promotions table each.
PROMOTED, REFUSED, DRY_RUN, FORCED, ROLLED_BACK = "promoted", "refused", "dry_run", "forced", "rolled_back"


@dataclass(frozen=True)
class FittedRows:
    """Which rows a version was fitted on: ``days`` of the table at ``table_version`` (all days if None)."""

    table_path: str
    table_version: int
    days: tuple[date, ...] | None


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: its measured value, its limit in words, and whether it passed."""

    name: str
    value: float | None
    limit: str
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    """The rows the gate measured on, as a person should read them."""

    source: str  # "unseen rows" or "held-out day of the training run"
    rows: int = 0
    frauds: int = 0
    days: tuple[date, ...] = ()


@dataclass(frozen=True)
class GateResult:
    candidate: ModelRef
    champion: ModelRef | None
    evidence: Evidence
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def report(self) -> str:
        """The checks as a table for the terminal."""
        champion = f"champion version {self.champion.version}" if self.champion else "no champion yet"
        days = ", ".join(day.isoformat() for day in self.evidence.days)
        lines = [
            f"gate: version {self.candidate.version} against {champion}",
            f"evidence: {self.evidence.source}: {self.evidence.rows} rows, {self.evidence.frauds} frauds"
            + (f" ({days})" if days else ""),
            f"{'check':<28} {'value':>10}  {'limit':<34} result",
        ]
        for check in self.checks:
            value = "-" if check.value is None else f"{check.value:.4f}"
            lines.append(f"{check.name:<28} {value:>10}  {check.limit:<34} {'pass' if check.passed else 'FAIL'}"
                         + (f"  ({check.note})" if check.note else ""))
        lines.append(f"gate: {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)


# --- Rows that the versions were not fitted on ----------------------------------------------------


def fitted_rows(transactions_at_version: DataFrame, fitted: FittedRows) -> DataFrame:
    """The ids of the rows a version was fitted on (``transactions_at_version`` read at its version)."""
    rows = transactions_at_version
    if fitted.days is not None:
        rows = rows.filter(F.col(TXN_DATE).isin(*fitted.days))
    return rows.select(TRANSACTION_ID)


def unseen_rows(transactions: DataFrame, seen: list[DataFrame], *, label_col: str = CREDITCARD.label_col
                ) -> DataFrame:
    """The labelled rows of ``transactions`` whose id is in none of ``seen``."""
    rows = transactions.filter(F.col(label_col).isNotNull())
    for ids in seen:
        rows = rows.join(ids, TRANSACTION_ID, "left_anti")
    return rows


def scored_rows(rows: DataFrame, models: dict[str, Transformer], inputs: ModelInputs = CREDITCARD) -> DataFrame:
    """``rows`` scored by each model: ``transaction_id``, ``txn_date``, the card key (if the
    profile has one), ``label`` (int) and one probability column per model, named as in ``models``."""
    keep = [TRANSACTION_ID, TXN_DATE, *([inputs.card_col] if inputs.card_col else [])]
    features = rows.select(*keep, inputs.label_col, *inputs.feature_cols)
    scored = features.select(*keep, F.col(inputs.label_col).cast("int").alias("label"))
    for name, model in models.items():
        scored = scored.join(model.transform(features).select(TRANSACTION_ID, fraud_probability().alias(name)),
                             TRANSACTION_ID)
    return scored


def scored_cells(scored: DataFrame, names: list[str]) -> DataFrame:
    """One row per distinct (label, rounded scores) of :func:`scored_rows` and its count.

    Rounded as everywhere in evaluation (``SCORE_DECIMALS``), so what reaches the driver is
    bounded whatever the number of rows.
    """
    return scored.groupBy("label", *(F.round(name, SCORE_DECIMALS).alias(name) for name in names)).count()


@dataclass(frozen=True)
class Cells:
    """Distinct (label, score per model) combinations of the measured rows and how many rows each."""

    labels: np.ndarray
    scores: dict[str, np.ndarray]
    counts: np.ndarray

    @classmethod
    def from_frame(cls, cells: DataFrame, names: list[str]) -> Cells:
        rows = cells.collect()
        return cls(
            labels=np.array([row["label"] for row in rows], dtype=float),
            scores={name: np.array([row[name] for row in rows], dtype=float) for name in names},
            counts=np.array([row["count"] for row in rows], dtype=float),
        )

    @property
    def frauds(self) -> int:
        return int(self.counts[self.labels == 1].sum())

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def curve(self, name: str) -> ScoreCurve:
        return ScoreCurve.from_counts(self.scores[name], self.counts * self.labels, self.counts * (1 - self.labels))


# --- Paired bootstrap of the difference in AUC-PR -------------------------------------------------


def weighted_average_precision(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of ``scores`` for each row of ``weights`` (rows: resamples; columns: cells).

    Equal scores are one threshold, as in :func:`pipelines.model.evaluation.average_precision`.
    """
    weights = np.atleast_2d(weights)
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    frauds = np.add.reduceat(weights[:, order] * labels[order], starts, axis=1)
    normals = np.add.reduceat(weights[:, order] * (1 - labels[order]), starts, axis=1)
    true_positives = np.cumsum(frauds, axis=1)
    flagged = true_positives + np.cumsum(normals, axis=1)
    precision = np.divide(true_positives, flagged, out=np.ones_like(flagged), where=flagged > 0)
    total = true_positives[:, -1]
    return np.divide((frauds * precision).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)


def paired_difference_interval(
    cells: Cells, new: str, old: str, *, samples: int, seed: int, level: float = 0.95
) -> tuple[float, float, float]:
    """AUC-PR(new) - AUC-PR(old) on the same rows, and its paired bootstrap interval.

    Each resample draws the frauds and the normal rows apart (keeping the class balance) and
    scores *both* models on it, so what the two share (the hard rows, the easy ones) cancels.
    """
    point = float(weighted_average_precision(cells.scores[new], cells.labels, cells.counts)[0]
                  - weighted_average_precision(cells.scores[old], cells.labels, cells.counts)[0])
    rng = np.random.default_rng(seed)
    differences = []
    # In chunks, so the resample matrix stays small whatever the number of distinct cells.
    chunk = max(1, min(samples, 2_000_000 // max(len(cells.counts), 1)))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        weights = np.zeros((size, len(cells.counts)))
        for label in (0.0, 1.0):
            cell = np.flatnonzero(cells.labels == label)
            total = int(cells.counts[cell].sum())
            if total:
                weights[:, cell] = rng.multinomial(total, cells.counts[cell] / total, size=size)
        differences.append(weighted_average_precision(cells.scores[new], cells.labels, weights)
                           - weighted_average_precision(cells.scores[old], cells.labels, weights))
    low, high = np.quantile(np.concatenate(differences), [(1 - level) / 2, 1 - (1 - level) / 2])
    return point, float(low), float(high)


# --- The checks -----------------------------------------------------------------------------------


def absolute_checks(metrics: dict[str, float], settings: PromoteSettings, *, card_precision_k: int | None = None
                    ) -> list[GateCheck]:
    """The checks that need no champion: AUC-PR, recall at the version's threshold, alert volume,
    and Card Precision@k where the profile has cards (``card_precision_k``)."""
    low, high = settings.alerts_per_100k
    card_checks = []
    if card_precision_k is not None:
        name = card_precision_metric(card_precision_k)
        value = metrics.get(name)
        card_checks.append(GateCheck(
            name, value, f">= {settings.min_card_precision:g}",
            value is not None and value >= settings.min_card_precision,
            "" if value is not None else "not measured: the training run logged no Card Precision"))
    return [
        GateCheck("auc_pr", metrics["auc_pr"], f">= {settings.min_auc_pr:g}", metrics["auc_pr"] >= settings.min_auc_pr),
        GateCheck("recall_at_threshold", metrics["recall"], f">= {settings.min_recall:g}",
                  metrics["recall"] >= settings.min_recall),
        GateCheck("alerts_per_100k", metrics["alerts_per_100k"], f"{low:g} to {high:g} (real balance)",
                  low <= metrics["alerts_per_100k"] <= high),
        *card_checks,
    ]


def comparison_check(cells: Cells | None, settings: PromoteSettings) -> GateCheck:
    """The paired comparison with the champion on the shared unseen rows (``new`` vs ``old``)."""
    limit = f"95% low end >= -{settings.max_auc_pr_drop:g}"
    if cells is None or cells.frauds == 0 or cells.frauds == cells.rows:
        allowed = settings.without_unseen_rows == "absolute_only"
        return GateCheck(
            "auc_pr_change_vs_champion", None, limit, allowed,
            "no labelled rows (with frauds and normal rows) that neither version was fitted on: "
            + ("not compared, [promote] without_unseen_rows = absolute_only" if allowed
               else "cannot compare; shadow-score new days and promote once they are labelled, or --force"),
        )
    point, low, high = paired_difference_interval(cells, "new", "old", samples=settings.bootstrap_samples,
                                                  seed=settings.seed)
    return GateCheck("auc_pr_change_vs_champion", point, limit, low >= -settings.max_auc_pr_drop,
                     f"95% interval {low:+.4f} to {high:+.4f}, paired bootstrap of {settings.bootstrap_samples}")


def version_metrics(cells: Cells, name: str, threshold: float, normal_weight: float) -> dict[str, float]:
    """AUC-PR, recall and alerts at the real balance of one model on the measured rows."""
    return binary_metrics(cells.curve(name), threshold, normal_weight=normal_weight)


# --- The promotions table -------------------------------------------------------------------------

PROMOTIONS_SCHEMA = (
    "decided_at timestamp, action string, decision string, model_name string, candidate_version string, "
    "champion_before string, champion_after string, gate_passed boolean, reason string, "
    "evidence string, evidence_rows long, evidence_frauds long, evidence_days string, "
    "checks array<struct<name: string, value: double, limit: string, passed: boolean, note: string>>"
)


def decision_row(
    *, decided_at: datetime, action: str, decision: str, model_name: str, candidate_version: str,
    champion_before: str | None, champion_after: str | None, result: GateResult | None, reason: str = "",
) -> tuple:
    """One row of the promotions table, in :data:`PROMOTIONS_SCHEMA`'s order."""
    evidence = result.evidence if result else Evidence(source="none (rollback)")
    return (
        as_utc(decided_at), action, decision, model_name, candidate_version, champion_before, champion_after,
        result.passed if result else None, reason, evidence.source, evidence.rows, evidence.frauds,
        ",".join(day.isoformat() for day in evidence.days),
        [asdict(check) for check in result.checks] if result else [],
    )


def fitted_rows_of(tags: dict[str, str]) -> FittedRows:
    """A version's fitted rows from its tags (an old version without ``fitted.days``: every day)."""
    days = tags.get("fitted.days")
    return FittedRows(
        table_path=tags["source.table_path"],
        table_version=int(tags["source.table_version"]),
        days=tuple(date.fromisoformat(day) for day in days.split(",")) if days else None,
    )


# --- The gate, end to end ------------------------------------------------------------------------


def run_gate(
    spark: SparkSession,
    *,
    transactions_path: str,
    candidate: ModelRef,
    candidate_tags: dict[str, str],
    champion: ModelRef | None,
    champion_tags: dict[str, str] | None,
    load_model: Callable[[ModelRef], Transformer],
    held_out_metrics: dict[str, float],
    normal_weight: float,
    settings: PromoteSettings,
    inputs: ModelInputs = CREDITCARD,
    card_precision_k: int = 100,
) -> GateResult:
    """Measure ``candidate`` (against ``champion``) on the rows neither was fitted on.

    :param held_out_metrics: the candidate's training run metrics, the fallback evidence when
        there are no unseen labelled rows.
    :param normal_weight: how many real normal transactions one row of ``transactions`` stands for.
    :param inputs: the profile's model inputs: ``transactions_path`` is their table (payments:
        ``features``); where they have a card key, Card Precision@``card_precision_k`` is checked too.
    """
    k = card_precision_k if inputs.card_col else None
    version = current_version(spark, transactions_path)
    current = model_rows(read_version(spark, transactions_path, version), inputs)
    check_feature_set(current, candidate.feature_set, source=f"{transactions_path} version {version}")
    # A champion trained on other feature definitions cannot score the rows of the current ones
    # (score refuses them): there is nothing to compare; the absolute checks decide.
    other_features = champion is not None and champion.feature_set != candidate.feature_set
    compared = None if other_features else champion
    versions = [candidate_tags] + ([champion_tags] if compared and champion_tags is not None else [])
    seen = []
    for tags in versions:
        fitted = fitted_rows_of(tags)
        seen.append(fitted_rows(read_version(spark, fitted.table_path, fitted.table_version), fitted))
    if settings.evidence_days:
        # Only the table's last labelled days: a long history would make the gate score all of it.
        labelled = current.filter(F.col(inputs.label_col).isNotNull())
        last_days = sorted(row[TXN_DATE] for row in labelled.select(TXN_DATE).distinct().collect())
        if last_days:
            current = current.filter(F.col(TXN_DATE) >= F.lit(last_days[-min(settings.evidence_days, len(last_days))]))
    rows = unseen_rows(current, seen, label_col=inputs.label_col).cache()
    try:
        per_label = {row["label"]: row["count"] for row in
                     rows.groupBy(F.col(inputs.label_col).cast("int").alias("label")).count().collect()}
        if per_label.get(1, 0) and per_label.get(0, 0):
            models = {"new": load_model(candidate)} | ({"old": load_model(compared)} if compared else {})
            # Each model scores the rows once; the cells and Card Precision both come from that.
            scored = scored_rows(rows, models, inputs).cache()
            try:
                cells = Cells.from_frame(scored_cells(scored, list(models)), list(models))
                measured = version_metrics(cells, "new", candidate.threshold, normal_weight)
                if k is not None:
                    measured[card_precision_metric(k)] = scored_card_precision(
                        scored, day_col=TXN_DATE, card_col=inputs.card_col, score_col="new", label_col="label", k=k)
            finally:
                scored.unpersist()
            days = tuple(sorted(row[TXN_DATE] for row in rows.select(TXN_DATE).distinct().collect()))
            evidence = Evidence(
                "labelled rows neither version was fitted on" if compared else
                "labelled rows the version was not fitted on", cells.rows, cells.frauds, days)
            checks = absolute_checks(measured, settings, card_precision_k=k)
            if compared:
                checks.append(comparison_check(cells, settings))
        else:
            evidence = Evidence("held-out day of the training run (the same recipe fitted without that day: "
                                "no unseen labelled rows)", int(held_out_metrics.get("rows", 0)),
                                int(held_out_metrics.get("frauds", 0)))
            checks = absolute_checks(held_out_metrics, settings, card_precision_k=k)
            if compared:
                checks.append(comparison_check(None, settings))
        if other_features:
            checks.append(GateCheck(
                "auc_pr_change_vs_champion", None, f"95% low end >= -{settings.max_auc_pr_drop:g}", True,
                f"not compared: the champion was trained on feature set {champion.feature_set or 'none'}, this "
                f"version on {candidate.feature_set or 'none'}; the champion cannot score the current features"))
    finally:
        rows.unpersist()
    return GateResult(candidate=candidate, champion=champion, evidence=evidence, checks=checks)
