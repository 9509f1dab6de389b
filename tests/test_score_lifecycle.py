"""score in the model lifecycle, on the real sample with a real registry and real Delta tables:
bad rows from other writers, late rows and --catch-up, --shadow, a champion changed between two
scores, and the probability at the real class balance on a real model.

One quick model is trained once for the module (version 1) and registered a second time with
another threshold (version 2); every test gets tables of its own in a fresh folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.spark
import pytest
from delta.tables import DeltaTable
from mlflow.tracking import MlflowClient
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from jobs import ingest, score, sql, train
from pipelines.core.config import PROJECT_ROOT
from pipelines.data.tables import CHANGE_FEED_PROPERTY, change_feed_enabled
from pipelines.model.portable.model import PortableModel
from pipelines.model.registry import (
    NORMAL_WEIGHT_TAG,
    THRESHOLD_TAG,
    configure_mlflow,
    load_model,
    load_scorer,
    resolve_model,
)
from pipelines.scoring.batch import real_balance_threshold
from pipelines.scoring.batch import score as score_rows
from tests.conftest import SAMPLE_CSV, quick_settings_in
from tests.test_end_to_end import INGESTED_AT, conf_file, sample_lines, submit, write_csv

DAY1, DAY2 = date(2013, 9, 1), date(2013, 9, 2)
ROWS = {DAY1: 2769, DAY2: 2643}
SCORED_AT = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
# Far from the sample's days: a nightly run whose yesterday has no transactions.
EMPTY_YESTERDAY = date(2026, 11, 24)
STALE_DAYS_SQL = (PROJECT_ROOT / "queries" / "stale_days.sql").read_text()

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def registry(spark, tmp_path_factory):
    """A registry holding version 1 (trained, quick) and version 2 (the same model, another threshold)."""
    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    folder = tmp_path_factory.mktemp("score_registry")
    settings = quick_settings_in(folder)
    ingest.run(spark, settings, input_path=str(SAMPLE_CSV), ingested_at=INGESTED_AT)
    configure_mlflow(settings.mlflow)
    outcome = train.run(spark, settings, commit="score-lifecycle")
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    first = client.get_model_version(settings.mlflow.model_name, outcome.model_version)
    second = client.create_model_version(
        settings.mlflow.model_name, source=first.source, run_id=first.run_id,
        tags={**first.tags, THRESHOLD_TAG: "0.3"}, model_id=first.model_id,
    )
    refs = {str(version): resolve_model(settings.mlflow, f"models:/fraud_detector/{version}")
            for version in (first.version, second.version)}
    yield SimpleNamespace(
        folder=folder, settings=settings, client=client, v1=str(first.version), v2=str(second.version), refs=refs,
        models={version: load_model(ref) for version, ref in refs.items()},
    )
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry_uri)


def point(registry, **aliases: str) -> None:
    """Point aliases (champion=..., challenger=...) at versions, as promote would."""
    for alias, version in aliases.items():
        registry.client.set_registered_model_alias("fraud_detector", alias, version)


@pytest.fixture
def lake(spark, registry, tmp_path):
    """The sample ingested into tables of this test's own, and a config file for ./spark-submit.sh.

    The registry's own ``transactions`` (the sample, ingested once for the module) is copied:
    a Delta table is its folder, so the copy has the same rows, versions and change feed as a
    fresh ingest, in a fraction of the time."""
    settings = replace(registry.settings, tables=replace(registry.settings.tables, root=str(tmp_path / "lake")))
    shutil.copytree(registry.settings.tables.transactions_path, settings.tables.transactions_path)
    conf = conf_file(tmp_path, tracking_uri=registry.settings.mlflow.tracking_uri,
                     artifacts=registry.folder / "artifacts")
    return SimpleNamespace(settings=settings, conf=conf)


def score_days(spark, lake, registry, version: str, days, scored_at=SCORED_AT, **options):
    return score.run(spark, lake.settings, days=days, model_ref=registry.refs[version],
                     model=registry.models[version], scored_at=scored_at, **options)


def read(spark, path: str):
    return spark.read.format("delta").load(path)


def version_of(spark, path: str) -> int:
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def same_rows(left, right) -> bool:
    return left.count() == right.count() and left.exceptAll(right).count() == 0 and right.exceptAll(left).count() == 0


def per_day(rows, *columns: str) -> dict:
    """{(txn_date, *columns): rows} of a scored table."""
    return {tuple(row)[:-1]: row["count"] for row in rows.groupBy("txn_date", *columns).count().collect()}


def late_row_file(folder: Path) -> str:
    """One new transaction whose Time falls on day 1: a row that arrives after day 1 was scored."""
    header, rows = sample_lines(1)
    fields = rows[0].split(",")
    fields[0], fields[-2] = "43200.5", "123.45"  # noon on day 1, an amount of its own
    return write_csv(folder / "late.csv", header, [",".join(fields)])


# ---- 1. score-time input checks, as a user runs the job ------------------------------------


def test_a_bad_row_another_writer_put_in_transactions_stops_spark_submit_score_with_exit_2(spark, lake, registry):
    point(registry, champion=registry.v1)
    score_days(spark, lake, registry, registry.v1, [DAY1, DAY2])
    scored_path, transactions_path = lake.settings.tables.scored_path, lake.settings.tables.transactions_path
    version_before, rows_before = version_of(spark, scored_path), read(spark, scored_path).cache()
    rows_before.count()
    transactions = read(spark, transactions_path)
    bad_day1 = (transactions.filter(F.col("txn_date") == DAY1).limit(1)
                .withColumn("transaction_id", F.lit("bad-nan")).withColumn("V5", F.lit(float("nan"))))
    bad_day2 = (transactions.filter(F.col("txn_date") == DAY2).limit(1)
                .withColumn("transaction_id", F.lit("bad-inf")).withColumn("Amount", F.lit(float("inf"))))
    bad_day1.unionByName(bad_day2).write.format("delta").mode("append").save(transactions_path)

    result = submit("score", "--start-date", DAY1.isoformat(), "--end-date", DAY2.isoformat(), conf=lake.conf)
    assert result.returncode == 2, result.output[-3000:]
    assert "error: " in result.output and "values the model cannot take" in result.output
    assert "V5: 1 row(s) (1 NaN), e.g. transaction_id 'bad-nan' on 2013-09-01 (NaN)" in result.output
    assert "Amount: 1 row(s) (1 infinite), e.g. transaction_id 'bad-inf' on 2013-09-02 (infinite)" in result.output
    assert "nothing was written" in result.output and "Traceback" not in result.output
    assert version_of(spark, scored_path) == version_before
    assert same_rows(read(spark, scored_path), rows_before)


# ---- 2. late rows: --list-stale and --catch-up ---------------------------------------------


def test_a_late_row_is_listed_then_caught_up_in_one_commit_and_a_second_catch_up_finds_nothing(
    spark, lake, registry, tmp_path
):
    point(registry, champion=registry.v1)
    scored_path, transactions_path = lake.settings.tables.scored_path, lake.settings.tables.transactions_path
    score_days(spark, lake, registry, registry.v1, [DAY1, DAY2])
    assert ingest.run(spark, lake.settings, input_path=late_row_file(tmp_path), ingested_at=LATER) == 1
    late_id = read(spark, transactions_path).filter(F.col("Amount") == 123.45).first()["transaction_id"]
    assert version_of(spark, transactions_path) == 1
    scored_version = version_of(spark, scored_path)
    day2_before = read(spark, scored_path).filter("txn_date = '2013-09-02'").cache()
    day2_before.count()

    listed = submit("score", "--list-stale", conf=lake.conf)
    assert listed.returncode == 0, listed.output[-3000:]
    assert "at version 1 (changes of versions 1..1): 1 stale day(s)" in listed.output
    assert "2013-09-01  scored from version 0; 1 row(s) added or changed since, at version(s) 1" in listed.output
    assert "2013-09-02  " not in listed.output
    assert version_of(spark, scored_path) == scored_version  # listing writes nothing
    # The analysts' query, which compares the tables row by row, agrees.
    stale = sql.run(spark, lake.settings, query=STALE_DAYS_SQL).collect()
    assert [(row.txn_date, row.unscored_rows, row.scored_without_transaction) for row in stale] == [(DAY1, 1, 0)]

    # Yesterday (UTC, today) has no transactions: the run is not failed for it, and scores day 1.
    caught_up = submit("score", "--catch-up", conf=lake.conf)
    assert caught_up.returncode == 0, caught_up.output[-3000:]
    assert "(yesterday, UTC)" in caught_up.output and "not scored" in caught_up.output
    assert version_of(spark, scored_path) == scored_version + 1  # one commit
    assert version_of(spark, transactions_path) == 1  # the feed was on from ingest: nothing to turn on
    after = read(spark, scored_path)
    assert per_day(after, "source_table_version") == {(DAY1, 1): ROWS[DAY1] + 1, (DAY2, 0): ROWS[DAY2]}
    assert after.filter(F.col("transaction_id") == late_id).count() == 1
    assert same_rows(after.filter("txn_date = '2013-09-02'"), day2_before)
    commit = json.loads(DeltaTable.forPath(spark, scored_path).history(1).first()["userMetadata"])
    assert (commit["job"], commit["catch_up"], commit["source_table_version"]) == ("score", True, 1)
    assert sql.run(spark, lake.settings, query=STALE_DAYS_SQL).count() == 0

    # Nothing new: nothing stale; without transactions yesterday the run writes nothing at all ...
    assert score.list_stale(spark, lake.settings).days == []
    nothing = score.catch_up(spark, lake.settings, model_ref=registry.refs[registry.v1],
                             model=registry.models[registry.v1], scored_at=LATER, yesterday=EMPTY_YESTERDAY)
    assert nothing == {} and version_of(spark, scored_path) == scored_version + 1
    # ... and with them, it scores yesterday alone.
    only_yesterday = score.catch_up(spark, lake.settings, model_ref=registry.refs[registry.v1],
                                    model=registry.models[registry.v1], scored_at=LATER, yesterday=DAY2)
    assert only_yesterday == {DAY2: ROWS[DAY2]}
    assert read(spark, scored_path).filter("txn_date = '2013-09-01'").select("scored_at").distinct().count() == 1
    assert read(spark, scored_path).filter(F.col("scored_at") == F.lit(LATER)).count() == ROWS[DAY2]


def test_without_a_change_feed_every_day_that_cannot_be_told_is_stale_once_then_the_feed_decides(
    spark, lake, registry, tmp_path
):
    transactions_path, scored_path = lake.settings.tables.transactions_path, lake.settings.tables.scored_path
    # A table from before ingest turned the feed on (version 1).
    spark.sql(f"ALTER TABLE delta.`{transactions_path}` SET TBLPROPERTIES ({CHANGE_FEED_PROPERTY} = false)")
    score_days(spark, lake, registry, registry.v1, [DAY1, DAY2])  # from version 1
    ingest.run(spark, lake.settings, input_path=late_row_file(tmp_path), ingested_at=LATER)  # version 2

    listed = score.list_stale(spark, lake.settings)
    assert listed.uncovered == (2, 2)
    assert [(day.day, day.scored_version) for day in listed.days] == [(DAY1, 1), (DAY2, 1)]
    assert "the change data feed does not cover versions 2..2" in listed.days[1].reason
    assert not change_feed_enabled(spark, transactions_path)  # listing changes nothing

    written = score.catch_up(spark, lake.settings, model_ref=registry.refs[registry.v1],
                             model=registry.models[registry.v1], scored_at=LATER, yesterday=EMPTY_YESTERDAY)
    assert written == {DAY1: ROWS[DAY1] + 1, DAY2: ROWS[DAY2]}
    assert change_feed_enabled(spark, transactions_path) and version_of(spark, transactions_path) == 3
    assert per_day(read(spark, scored_path), "source_table_version") == {(DAY1, 3): ROWS[DAY1] + 1,
                                                                         (DAY2, 3): ROWS[DAY2]}
    assert score.list_stale(spark, lake.settings).days == []

    # From now on the feed tells: a late row on day 2 makes day 2 stale, and day 2 alone.
    header, rows = sample_lines(3)
    day2_line = next(line for line in rows if float(line.split(",")[0]) >= 86400)
    fields = day2_line.split(",")
    fields[-2] = "77.77"
    ingest.run(spark, lake.settings, input_path=write_csv(tmp_path / "late2.csv", header, [",".join(fields)]),
               ingested_at=LATER)
    listed = score.list_stale(spark, lake.settings)
    assert listed.uncovered is None and listed.first_version == 4
    assert [(day.day, day.scored_version, day.changed_versions, day.changed_rows) for day in listed.days] == [
        (DAY2, 3, (4,), 1)]


# ---- 3. shadow scoring -----------------------------------------------------------------------


def test_shadow_scores_sit_beside_each_other_and_never_touch_scored_transactions(spark, lake, registry):
    point(registry, champion=registry.v1, challenger=registry.v2)
    scored_path, shadow_path = lake.settings.tables.scored_path, lake.settings.tables.shadow_path
    score_days(spark, lake, registry, registry.v1, [DAY1])
    scored_version, scored_before = version_of(spark, scored_path), read(spark, scored_path).cache()
    scored_before.count()

    result = submit("score", "--shadow", "--date", DAY1.isoformat(), conf=lake.conf)  # the challenger by default
    assert result.returncode == 0, result.output[-3000:]
    assert version_of(spark, scored_path) == scored_version
    assert same_rows(read(spark, scored_path), scored_before)
    shadow = read(spark, shadow_path)
    assert shadow.schema == read(spark, scored_path).schema  # the same columns and lineage
    assert per_day(shadow, "model_version") == {(DAY1, registry.v2): ROWS[DAY1]}
    assert DeltaTable.forPath(spark, shadow_path).detail().first()["partitionColumns"] == [
        "txn_date", "model_name", "model_version"]

    # Another version's scores of the same day go beside them; a rerun replaces only its own.
    score_days(spark, lake, registry, registry.v1, [DAY1, DAY2], shadow=True)
    v1_rows = read(spark, shadow_path).filter(F.col("model_version") == registry.v1).cache()
    v1_rows.count()
    score_days(spark, lake, registry, registry.v2, [DAY1], scored_at=LATER, shadow=True)
    shadow = read(spark, shadow_path)
    assert per_day(shadow, "model_version") == {
        (DAY1, registry.v2): ROWS[DAY1], (DAY1, registry.v1): ROWS[DAY1], (DAY2, registry.v1): ROWS[DAY2]}
    assert same_rows(shadow.filter(F.col("model_version") == registry.v1), v1_rows)
    assert shadow.filter(F.col("model_version") == registry.v2).select("scored_at").distinct().collect()[0][0] \
        .astimezone(timezone.utc) == LATER
    assert version_of(spark, scored_path) == scored_version

    # The sql job addresses it by name.
    counts = sql.run(spark, lake.settings, query="SELECT model_version, count(*) AS n FROM "
                                                 "shadow_scored_transactions GROUP BY 1 ORDER BY 1").collect()
    assert {(row.model_version, row.n) for row in counts} == {(registry.v1, ROWS[DAY1] + ROWS[DAY2]),
                                                              (registry.v2, ROWS[DAY1])}


# ---- 4. the probability at the real class balance, on a real model -------------------------


def test_the_correction_moves_the_real_models_probabilities_and_none_of_its_decisions(spark, lake, registry):
    ref = registry.refs[registry.v1]
    assert ref.normal_weight == float(registry.settings.train.normal_weight) == 57.79
    transactions = read(spark, lake.settings.tables.transactions_path)
    kwargs = {"source_table_version": 0, "scored_at": SCORED_AT}
    corrected = score_rows(transactions, registry.models[registry.v1], model_ref=ref, **kwargs)
    plain = score_rows(transactions, registry.models[registry.v1], model_ref=replace(ref, normal_weight=1.0),
                        **kwargs).select("transaction_id", F.col("is_fraud").alias("plain_is_fraud"),
                                         F.col("fraud_probability").alias("p"))
    both = corrected.join(plain, "transaction_id").cache()
    assert both.count() == ROWS[DAY1] + ROWS[DAY2]
    assert both.filter(F.col("is_fraud") != F.col("plain_is_fraud")).count() == 0
    assert both.filter("is_fraud").count() > 100
    assert both.filter(F.col("is_fraud") != (F.col("fraud_probability") >= F.col("threshold"))).count() == 0
    expected = F.col("p") / (F.col("p") + (1 - F.col("p")) * 57.79)
    assert both.filter(F.abs(F.col("fraud_probability") - expected) > 1e-15).count() == 0
    assert both.select("threshold").distinct().collect()[0][0] == real_balance_threshold(ref.threshold, 57.79)
    # Each normal row stood for 57.79: every probability is lower at the real balance, none above 1.
    assert both.filter((F.col("fraud_probability") > F.col("p")) | (F.col("fraud_probability") > 1)).count() == 0


# ---- 5. a champion changed between two scores of a day ---------------------------------------


def test_a_champion_change_between_two_scores_of_a_day_leaves_one_consistent_day(spark, lake, registry):
    scored_path = lake.settings.tables.scored_path
    lineage = ["model_version", "model_run_id", "threshold", "source_table_version", "scored_at"]

    def day1():
        rows = read(spark, scored_path).filter(F.col("txn_date") == DAY1)
        return rows.count(), rows.select(*lineage).distinct().collect()

    point(registry, champion=registry.v1)
    champion = resolve_model(lake.settings.mlflow)
    score.run(spark, lake.settings, days=[DAY1], model_ref=champion, scored_at=SCORED_AT)
    count, versions = day1()
    assert count == ROWS[DAY1] and [row.model_version for row in versions] == [registry.v1]

    point(registry, champion=registry.v2)  # promoted between the two scores
    champion = resolve_model(lake.settings.mlflow)
    score.run(spark, lake.settings, days=[DAY1], model_ref=champion, scored_at=LATER)
    count, versions = day1()
    assert count == ROWS[DAY1]
    assert len(versions) == 1  # every row of the day names one version, one threshold, one run
    assert versions[0].model_version == registry.v2
    assert versions[0].threshold == real_balance_threshold(0.3, champion.normal_weight)
    assert versions[0].scored_at.astimezone(timezone.utc) == LATER
    point(registry, champion=registry.v1)
    assert NORMAL_WEIGHT_TAG in registry.client.get_model_version("fraud_detector", registry.v2).tags


# ---- 6. the two scoring engines: the portable form against Spark ML's own transform ----------


def test_both_engines_write_the_same_scores_to_1e_9_on_every_row_of_the_real_sample(spark, lake, registry):
    """The nightly default (the portable form over Arrow batches) against the reference (the
    PipelineModel's transform), through score.run into two tables: every row, both days."""
    days = [DAY1, DAY2]
    portable_settings = replace(lake.settings, score=replace(lake.settings.score, engine="portable"))
    written = score.run(spark, portable_settings, days=days, model_ref=registry.refs[registry.v1], scored_at=SCORED_AT)
    portable_rows = read(spark, lake.settings.tables.scored_path)
    reference_settings = replace(lake.settings, tables=replace(lake.settings.tables, scored="reference_scores"))
    score.run(spark, reference_settings, days=days, model_ref=registry.refs[registry.v1],
              model=registry.models[registry.v1], scored_at=SCORED_AT)
    reference_rows = read(spark, reference_settings.tables.scored_path)

    assert written == ROWS
    joined = portable_rows.alias("p").join(reference_rows.alias("r"), "transaction_id", "full_outer")
    worst = joined.agg(
        F.count(F.lit(1)).alias("rows"),
        F.max(F.abs(F.col("p.fraud_probability") - F.col("r.fraud_probability"))).alias("largest"),
        F.count_if(F.col("p.fraud_probability").isNull() | F.col("r.fraud_probability").isNull()).alias("unmatched"),
        F.count_if(F.col("p.is_fraud") != F.col("r.is_fraud")).alias("decisions_apart"),
        F.count_if(F.col("p.is_fraud") != (F.col("p.fraud_probability") >= F.col("p.threshold"))).alias("inconsistent"),
        F.count_if(F.col("p.txn_date") != F.col("r.txn_date")).alias("days_apart"),
        F.sum(F.col("p.is_fraud").cast("int")).alias("flagged"),
    ).first()
    assert worst["rows"] == sum(ROWS.values()) and worst["unmatched"] == 0
    assert worst["largest"] <= 1e-9
    assert worst["decisions_apart"] == 0 and worst["inconsistent"] == 0 and worst["days_apart"] == 0
    assert worst["flagged"] > 0  # the sample's frauds are there to flag
    lineage = ["threshold", "model_name", "model_version", "model_run_id", "model_uri", "source_table_version",
               "scored_at"]
    assert portable_rows.select(*lineage).distinct().collect() == reference_rows.select(*lineage).distinct().collect()


def test_a_version_without_a_portable_form_is_scored_by_spark_with_a_warning(registry, tmp_path, caplog):
    """A version registered before the portable form existed (only the Spark flavor in its
    folder) still scores every night, through Spark ML."""
    folder = tmp_path / "spark-only"
    mlflow.spark.save_model(registry.models[registry.v1], str(folder))
    assert not (folder / "portable").exists()
    first = registry.client.get_model_version("fraud_detector", registry.v1)
    old = registry.client.create_model_version("fraud_detector", source=str(folder), run_id=first.run_id,
                                               tags=first.tags)
    ref = resolve_model(registry.settings.mlflow, f"models:/fraud_detector/{old.version}")
    with caplog.at_level("WARNING", logger="pipelines.model.registry"):
        model = load_scorer(ref, "portable")
    assert isinstance(model, PipelineModel)
    assert "cannot be scored by its portable form" in caplog.text and "Spark ML instead" in caplog.text
    assert isinstance(load_scorer(registry.refs[registry.v1], "portable"), PortableModel)
    assert isinstance(load_scorer(registry.refs[registry.v1], "spark"), PipelineModel)
