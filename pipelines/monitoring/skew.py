"""The skew watch: the features the service answered with (the echo sample,
:mod:`pipelines.online.echo`) against the batch ``features`` rows of the same transactions.

The production form of the parity test: the two computations must agree to 1e-9 on every
feature. A sampled transaction whose features differ, or that the batch does not have, is an
alert of the day's verdict, naming the feature, both values and the transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.data.schema import TRANSACTION_ID
from pipelines.monitoring.tables import ALERT
from pipelines.monitoring.verdict import Verdict

TOLERANCE = 1e-9
# Differences spelt out in the verdict's reason, at most.
_SHOWN = 3


@dataclass(frozen=True)
class Skew:
    compared: int
    differing: int
    missing: int
    examples: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        if not self.differing and not self.missing:
            return None
        parts = []
        if self.differing:
            parts.append(f"{self.differing} of {self.compared} sampled online answers differ from the batch features "
                         f"(by more than {TOLERANCE:g}): {'; '.join(self.examples)}")
        if self.missing:
            parts.append(f"{self.missing} sampled online answers have no batch features row")
        return "online/batch skew: " + ", ".join(parts)


def read_echo(folder: str, day: date, feature_set: str) -> list[dict]:
    """Every echoed answer of ``day`` made with ``feature_set``, the first per transaction."""
    seen: dict[str, dict] = {}
    for path in sorted(Path(folder, day.isoformat()).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                answer = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if answer.get("feature_set") == feature_set:
                seen.setdefault(answer["transaction_id"], answer)
    return list(seen.values())


def day_skew(spark: SparkSession, echoed: list[dict], features_day: DataFrame, columns: list[str]) -> Skew:
    """Compare each echoed answer's features with its row of ``features_day`` (the day's
    ``features`` rows, ``columns`` the model's inputs)."""
    if not echoed:
        return Skew(0, 0, 0)
    schema = ", ".join([f"{TRANSACTION_ID} string", *(f"`o_{c}` double" for c in columns)])
    online = spark.createDataFrame(
        [(a[TRANSACTION_ID], *(None if a["features"].get(c) is None else float(a["features"][c]) for c in columns))
         for a in echoed], schema)
    batch = features_day.select(TRANSACTION_ID, *(F.col(c).cast("double").alias(f"b_{c}") for c in columns))
    joined = online.join(batch, TRANSACTION_ID, "left")
    missing = F.col(f"b_{columns[0]}").isNull()
    off = [F.when(F.abs(F.col(f"o_{c}") - F.col(f"b_{c}")) > TOLERANCE, F.lit(c))
           .when(F.col(f"o_{c}").isNull(), F.lit(c)) for c in columns]
    checked = joined.withColumn("_off", F.array_compact(F.array(*off))).withColumn("_missing", missing)
    counts = checked.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("_missing").cast("int")).alias("missing"),
                         F.sum(((F.size("_off") > 0) & ~F.col("_missing")).cast("int")).alias("differing")).first()
    examples = []
    for row in (checked.filter((F.size("_off") > 0) & ~F.col("_missing")).orderBy(TRANSACTION_ID)
                .limit(_SHOWN).collect()):
        name = row["_off"][0]
        examples.append(f"transaction {row[TRANSACTION_ID]}: {name} online {row[f'o_{name}']!r}, "
                        f"batch {row[f'b_{name}']!r}")
    return Skew(counts["n"], counts["differing"] or 0, counts["missing"] or 0, examples)


def with_skew(verdict: Verdict, skew: Skew) -> Verdict:
    """``verdict`` with the skew's alert, if any."""
    if skew.reason is None:
        return verdict
    return replace(verdict, verdict=ALERT, reasons=[skew.reason, *verdict.reasons])
