"""Config files, environment references, and the argument checks made before Spark starts."""

from __future__ import annotations

import argparse
from datetime import date
from typing import get_args

import pytest

from jobs.score import days_to_score
from pipelines.core.cli import calendar_date
from pipelines.core.config import CONF_DIR, JobName, load_settings
from pipelines.core.errors import ConfigError, InvalidArgumentError
from pipelines.core.session import spark_conf, submit_args
from tests.conftest import FIXED_NOW


def test_local_config_points_into_the_project():
    settings = load_settings("local")
    assert settings.spark.master == "local[*]"
    assert settings.tables.transactions_path.endswith("/lake/transactions")
    assert settings.mlflow.tracking_uri.startswith("sqlite:////")
    assert settings.train.ensemble_members == ("logistic_regression", "random_forest", "xgboost")
    assert settings.train.fit_partitions == 2


def test_cluster_config_takes_its_locations_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "yarn")
    monkeypatch.setenv("FRAUD_LAKE_BUCKET", "risk-lake")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.internal")
    monkeypatch.setenv("FRAUD_ENV_ARCHIVE", "hdfs:///envs/fraud.tar.gz")
    monkeypatch.setenv("FRAUD_IMAGE", "registry/fraud:1")
    monkeypatch.setenv("FRAUD_DELTA_LOG_TABLE", "fraud_delta_log")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = load_settings("cluster")
    assert settings.spark.master == "yarn"
    assert settings.tables.scored_path == "s3a://risk-lake/fraud/scored_transactions"
    assert settings.mlflow.tracking_uri == "https://mlflow.internal"
    assert settings.mlflow.request_timeout_seconds == 10.0
    assert settings.spark.conf["spark.ui.showConsoleProgress"] == "false"
    # Concurrent jobs writing one table on S3 commit through DynamoDB (see cluster.toml).
    assert settings.spark.conf["spark.delta.logStore.s3a.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    assert settings.spark.conf["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"] == "fraud_delta_log"
    # The executors' interpreter only: spark-submit.sh gives the driver its own.
    assert settings.spark.conf["spark.pyspark.python"] == "./environment/bin/python"
    assert "spark.pyspark.driver.python" not in settings.spark.conf


STANDALONE_ENV = {"FRAUD_SPARK_MASTER": "spark://127.0.0.1:7077", "FRAUD_CLUSTER_DIR": "/srv/cluster",
                  "FRAUD_EXECUTOR_ENV": "/srv/cluster/env.tar.gz", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5500"}


def test_the_standalone_config_is_local_with_servers_and_a_catalog(monkeypatch):
    for name, value in STANDALONE_ENV.items():
        monkeypatch.setenv(name, value)
    local, standalone = load_settings("local"), load_settings("standalone")
    assert standalone.spark.master == "spark://127.0.0.1:7077"
    assert standalone.tables.scored_path == "/srv/cluster/lake/scored_transactions"
    assert standalone.mlflow.tracking_uri == "http://127.0.0.1:5500"
    # Artifacts go where the server keeps them, through the server: not local.toml's folder.
    assert standalone.mlflow.artifact_location is None
    assert standalone.catalog.database == "fraud" and local.catalog is None
    assert standalone.spark.conf["spark.archives"] == "/srv/cluster/env.tar.gz#environment"
    # Everything it does not set is local.toml's: the recipe, the gate, monitoring, [spark.conf].
    assert standalone.train == local.train and standalone.promote == local.promote
    assert standalone.monitor == local.monitor
    assert standalone.spark.conf["spark.driver.extraJavaOptions"] == local.spark.conf["spark.driver.extraJavaOptions"]


def test_an_extending_file_is_laid_over_its_base_table_by_table(tmp_path):
    conf = tmp_path / "small.toml"
    conf.write_text('extends = "local"\n[train]\nseed = 7\n[train.candidates.logistic_regression]\n'
                    'regParam = [0.5]\n[train.ensemble]\nmembers = []\n[tables]\nroot = "/data/lake"\n')
    settings, local = load_settings(str(conf)), load_settings("local")
    assert settings.train.seed == 7 and settings.train.holdout_days == local.train.holdout_days
    # The candidates are the search: given, they replace the base's, not add to them.
    assert settings.train.candidates == {"logistic_regression": {"regParam": [0.5]}}
    assert settings.tables.root == "/data/lake" and settings.tables.scored == local.tables.scored


def test_extends_that_loops_or_names_no_file_is_refused(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(f'extends = "{second}"\n')
    second.write_text(f'extends = "{first}"\n')
    with pytest.raises(ConfigError, match="which extends it again"):
        load_settings(str(first))
    first.write_text('extends = "staging"\n')
    with pytest.raises(ConfigError, match=r"no config file .*staging\.toml"):
        load_settings(str(first))


@pytest.mark.parametrize("database", ["fraud-tables", "1fraud", "fraud.x", ""])
def test_a_catalog_database_must_be_a_plain_identifier(tmp_path, database):
    conf = tmp_path / "c.toml"
    conf.write_text(f'extends = "local"\n[catalog]\ndatabase = "{database}"\n')
    with pytest.raises(ConfigError, match=r"\[catalog\] database"):
        load_settings(str(conf))


def test_an_unset_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    with pytest.raises(ConfigError, match="SPARK_MASTER is not set"):
        load_settings("cluster")


def test_an_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"known environments: \['cluster', 'local', 'payments', 'standalone'\]"):
        load_settings("staging")


def local_config_with(tmp_path, *changes: tuple[str, str]) -> str:
    """conf/local.toml with each ``(old, new)`` text replaced, written to ``tmp_path``."""
    text = (CONF_DIR / "local.toml").read_text()
    for old, new in changes:
        assert text.count(old) == 1, f"conf/local.toml no longer holds {old!r} once"
        text = text.replace(old, new)
    path = tmp_path / "changed.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('app_name = "fraud-scoring"', 'app_nme = "fraud-scoring"',
         r"\[spark\] app_nme: unknown key \(known: master, app_name"),
        ('scored = "scored_transactions"', 'scord = "scored_transactions"', r"\[tables\] scord: unknown key"),
        ('champion_alias = "champion"', 'champion_alais = "champion"', r"\[mlflow\] champion_alais: unknown key"),
        ('start = "2013', 'begin = "2013', r"\[ingest\] begin: unknown key \(known: start\)"),
        ("\nholdout_days = 1", "\nholdout_dayz = 1", r"\[train\] holdout_dayz: unknown key \(known: .*holdout_days"),
        ("target_precision = 0.9", "target_precison = 0.9", r"\[train.threshold\] target_precison: unknown key"),
        ("\nmembers = [", "\nmember = [", r"\[train.ensemble\] member: unknown key \(known: members\)"),
        ("\nks = 0.1", "\nkolmogorov = 0.1", r"\[monitor.min_effect\] kolmogorov: unknown key \(known: psi"),
        ("band_quantile = 0.99", "band_quantil = 0.99", r"\[monitor\] band_quantil: unknown key"),
    ],
)
def test_a_misspelt_key_is_refused_with_its_section(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(local_config_with(tmp_path, (old, new)))


def test_an_unknown_section_is_refused(tmp_path):
    path = local_config_with(tmp_path, ("[ingest]", "[ingestion]"))
    known = (r"\(known: spark, tables, mlflow, ingest, train, promote, serve, monitor, score, catalog, profile, "
             r"features, online\)")
    with pytest.raises(ConfigError, match=rf"\[ingestion\]: unknown section {known}"):
        load_settings(path)


def test_the_score_engine_is_portable_by_default_and_an_unknown_one_is_refused(tmp_path):
    assert load_settings("local").score.engine == "portable"
    spark_engine = local_config_with(tmp_path, ('engine = "portable"', 'engine = "spark"'))
    assert load_settings(spark_engine).score.engine == "spark"
    path = local_config_with(tmp_path, ('engine = "portable"', 'engine = "onnx"'))
    with pytest.raises(ConfigError, match=r"\[score\] engine: .*'portable'.*'spark'"):
        load_settings(path)


def test_every_problem_is_named_each_on_its_own_line(tmp_path):
    path = local_config_with(tmp_path, ("\nseed = 42", "\nseed = -1"), ('model_name = "fraud_detector"\n', ""))
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    assert str(refused.value).splitlines() == [
        f"{path}: [mlflow] model_name: required key missing",
        f"{path}: [train] seed: must be at least 0, got -1",
    ]


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("band_quantile = 0.99", "band_quantile = 1.5", r"\[monitor\] band_quantile: must be less than 1, got 1.5"),
        ("band_samples = 1000", "band_samples = 10", r"\[monitor\] band_samples: must be at least 50, got 10"),
        ("\npsi = 0.1", "\npsi = -0.1", r"\[monitor.min_effect\] psi: must be at least 0, got -0.1"),
        ("drift_days = 2", "drift_days = 4", r"\[monitor\] drift_days \(4\) cannot exceed window_days \(3\)"),
        ("retrain_cool_down_days = 7", 'retrain_cool_down_days = "a week"',
         r"\[monitor\] retrain_cool_down_days: expected a number"),
    ],
)
def test_monitoring_settings_out_of_range_are_refused_naming_the_key(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(local_config_with(tmp_path, (old, new)))


def test_a_config_without_candidates_is_refused(tmp_path):
    text = (CONF_DIR / "local.toml").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.split("[train.candidates")[0])
    with pytest.raises(ConfigError, match=r"\[train\] candidates: required key missing"):
        load_settings(str(broken))


@pytest.mark.parametrize(
    "flag, expected", [("false", False), ("true", True), ("FALSE", False), ("0", False), ("1", True)]
)
def test_a_boolean_from_the_environment_is_read_as_written(tmp_path, monkeypatch, flag, expected):
    monkeypatch.setenv("FLAG", flag)
    path = local_config_with(tmp_path, ("refit_on_all_days = true", 'refit_on_all_days = "${FLAG}"'))
    assert load_settings(path).train.refit_on_all_days is expected


def test_a_boolean_that_is_neither_true_nor_false_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    path = local_config_with(tmp_path, ("refit_on_all_days = true", 'refit_on_all_days = "${FLAG}"'))
    with pytest.raises(ConfigError, match=r"\[train\] refit_on_all_days: expected a boolean, got 'maybe'"):
        load_settings(path)


def test_an_integer_from_the_environment_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTS", "8")
    path = local_config_with(tmp_path, ("fit_partitions = 2", 'fit_partitions = "${PARTS}"'))
    assert load_settings(path).train.fit_partitions == 8


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("holdout_days = 1", "holdout_days = 2.5", r"\[train\] holdout_days: expected an integer, got 2.5"),
        ("holdout_days = 1", 'holdout_days = "abc"', r"\[train\] holdout_days: expected an integer, got 'abc'"),
        ("validation_folds = 2", "validation_folds = true", r"\[train\] validation_folds: expected a number, got true"),
        ("holdout_days = 1", "holdout_days = 0", r"\[train\] holdout_days: must be at least 1, got 0"),
        ("validation_fraction = 0.4", "validation_fraction = 1", r"\[train\] validation_fraction: must be less than 1"),
        ("normal_weight = 57.79", "normal_weight = 0", r"\[train\] normal_weight: must be greater than 0"),
        ('class_weighting = "none"', 'class_weighting = "balance"',
         r"\[train\] class_weighting: expected 'none' or 'balanced', got 'balance'"),
        ('policy = "max_f1"', 'policy = "max_recall"',
         r"\[train.threshold\] policy: expected 'max_f1', 'target_precision' or 'min_cost', got 'max_recall'"),
        ("target_precision = 0.9", "target_precision = 1.5",
         r"\[train.threshold\] target_precision: must be at most 1"),
        ("cost_false_alarm = 1.0", "cost_false_alarm = 0.0",
         r"\[train.threshold\] cost_false_alarm: must be greater than 0"),
        ("regParam = [0.01, 0.1]", "regParam = []",
         r"\[train.candidates.logistic_regression\] regParam: expected at least one"),
        ('start = "2013-09-01T00:00:00"', 'start = "yesterday"', r"\[ingest\] start: expected an ISO date-time"),
        ('"spark.driver.memory" = "4g"', '"spark.driver.memory" = { size = "4g" }',
         r"\[spark.conf\] spark.driver.memory: expected a string, number or boolean"),
        ("alerts_per_100k = [50, 1500]", "alerts_per_100k = [50]",
         r"\[promote\] alerts_per_100k: expected two numbers, \[lowest, highest\], got \[50\]"),
        ('members = ["logistic_regression", "random_forest", "xgboost"]', 'members = "xgboost"',
         r"\[train.ensemble\] members: expected a list, got 'xgboost'"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_naming_its_key(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(local_config_with(tmp_path, (old, new)))


def test_class_weighting_defaults_to_none_as_documented(tmp_path):
    path = local_config_with(tmp_path, ('\nclass_weighting = "none"', ""))
    assert load_settings(path).train.class_weighting == "none"


def test_spark_conf_values_are_written_as_spark_spells_them(tmp_path):
    path = local_config_with(
        tmp_path,
        ('"spark.ui.showConsoleProgress" = "false"', '"spark.ui.showConsoleProgress" = false'),
        ('"spark.sql.shuffle.partitions" = "4"',
         '"spark.sql.shuffle.partitions" = 4\n"spark.sql.adaptive.enabled" = true'),
    )
    conf = load_settings(path).spark.conf
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.sql.shuffle.partitions"] == "4"


def test_mlflow_request_limits_have_defaults(tmp_path):
    path = local_config_with(
        tmp_path, ("request_timeout_seconds = 10.0\n", ""), ("request_max_retries = 2\n", ""),
        ("request_backoff_factor = 1\n", ""),
    )
    mlflow = load_settings(path).mlflow
    assert (mlflow.request_timeout_seconds, mlflow.request_max_retries, mlflow.request_backoff_factor) == (10.0, 2, 1.0)


def test_mlflow_request_limits_can_be_set(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIES", "0")
    path = local_config_with(
        tmp_path, ("request_timeout_seconds = 10.0", "request_timeout_seconds = 3"),
        ("request_max_retries = 2", 'request_max_retries = "${RETRIES}"'),
        ("request_backoff_factor = 1", "request_backoff_factor = 0"),
    )
    mlflow = load_settings(path).mlflow
    assert (mlflow.request_timeout_seconds, mlflow.request_max_retries, mlflow.request_backoff_factor) == (3.0, 0, 0)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("request_timeout_seconds = 10.0", "request_timeout_seconds = 0",
         "request_timeout_seconds: must be greater than 0"),
        ("request_max_retries = 2", "request_max_retries = -1", "request_max_retries: must be at least 0"),
        # MLflow reads the timeout and the factor with int(): a fraction would fail its first request.
        ("request_timeout_seconds = 10.0", "request_timeout_seconds = 2.5",
         "request_timeout_seconds: expected an integer, got 2.5"),
        ("request_backoff_factor = 1", 'request_backoff_factor = "soon"',
         "request_backoff_factor: expected an integer, got 'soon'"),
    ],
)
def test_mlflow_request_limits_out_of_range_are_refused(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=rf"\[mlflow\] {message}"):
        load_settings(local_config_with(tmp_path, (old, new)))


def test_delta_settings_are_always_there_and_jvm_options_are_appended():
    conf = spark_conf(load_settings("local").spark)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "-Duser.timezone=UTC" in conf["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in conf["spark.driver.extraJavaOptions"]


def test_a_jobs_own_spark_settings_apply_to_its_application_only():
    # The search runs with the JVM's full compiler, the short jobs with its quick one.
    settings = load_settings("local").spark
    options = {job: dict(arg.split("=", 1) for arg in submit_args(settings, job)[5::2])["spark.driver.extraJavaOptions"]
               for job in ("train", "retrain", "score", "ingest")}
    assert "TieredStopAtLevel" not in options["train"] and "TieredStopAtLevel" not in options["retrain"]
    assert "-XX:TieredStopAtLevel=1" in options["score"] and "-XX:TieredStopAtLevel=1" in options["ingest"]
    assert all("-Duser.timezone=UTC" in value for value in options.values())
    assert settings.for_job(None) == settings and settings.for_job("monitor").conf == settings.conf


def test_spark_settings_for_a_job_that_does_not_exist_are_refused(tmp_path):
    path = local_config_with(tmp_path, ("[spark.jobs.train]", "[spark.jobs.trian]"))
    with pytest.raises(ConfigError, match=r"trian"):
        load_settings(path)


def test_the_jobs_settings_can_be_given_for_are_the_jobs_there_are():
    jobs = sorted(path.stem for path in (CONF_DIR.parent / "jobs").glob("*.py") if not path.stem.startswith("_"))
    assert jobs == sorted(get_args(JobName))


@pytest.mark.timezone
@pytest.mark.parametrize("text", ["2013-02-30", "yesterday", "2013-09-01' OR '1'='1", "2013-9-1", ""])
def test_calendar_date_refuses_anything_but_a_real_date(text):
    with pytest.raises(argparse.ArgumentTypeError):
        calendar_date(text)


@pytest.mark.timezone
def test_calendar_date_takes_a_real_date():
    assert calendar_date("2012-02-29") == date(2012, 2, 29)


def score_args(date=None, start_date=None, end_date=None):
    return argparse.Namespace(date=date, start_date=start_date, end_date=end_date)


@pytest.mark.timezone
def test_days_to_score_defaults_to_yesterday():
    assert days_to_score(score_args(), date(2013, 9, 3)) == [date(2013, 9, 2)]


@pytest.mark.timezone
def test_days_to_score_expands_a_range():
    days = days_to_score(score_args(start_date=date(2013, 8, 31), end_date=date(2013, 9, 2)), FIXED_NOW.date())
    assert days == [date(2013, 8, 31), date(2013, 9, 1), date(2013, 9, 2)]


@pytest.mark.parametrize(
    "args, message",
    [
        (score_args(date=date(2013, 9, 1), start_date=date(2013, 9, 1), end_date=date(2013, 9, 2)), "not both"),
        (score_args(start_date=date(2013, 9, 1)), "go together"),
        (score_args(start_date=date(2013, 9, 2), end_date=date(2013, 9, 1)), "before --start-date"),
    ],
)
def test_days_to_score_refuses_inconsistent_options(args, message):
    with pytest.raises(InvalidArgumentError, match=message):
        days_to_score(args, FIXED_NOW.date())


def test_the_promotion_gate_limits_are_checked(tmp_path):
    settings = load_settings("local")
    assert settings.promote.alerts_per_100k == (50.0, 1500.0)
    assert settings.promote.without_unseen_rows == "absolute_only"
    path = local_config_with(tmp_path, ('without_unseen_rows = "absolute_only"', 'without_unseen_rows = "maybe"'),
                             ("min_auc_pr = 0.80", "min_auc_pr = 1.5"))
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert "[promote] without_unseen_rows" in str(error.value) and "[promote] min_auc_pr" in str(error.value)
