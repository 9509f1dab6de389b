"""Config files, environment references, and the argument checks made before Spark starts."""

from __future__ import annotations

import argparse
from datetime import date

import pytest

from jobs.score import days_to_score
from pipelines.cli import calendar_date
from pipelines.config import CONF_DIR, load_settings
from pipelines.errors import ConfigError, InvalidArgumentError
from pipelines.session import spark_conf


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
    settings = load_settings("cluster")
    assert settings.spark.master == "yarn"
    assert settings.tables.scored_path == "s3a://risk-lake/fraud/scored_transactions"
    assert settings.mlflow.tracking_uri == "https://mlflow.internal"


def test_an_unset_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    with pytest.raises(ConfigError, match="SPARK_MASTER is not set"):
        load_settings("cluster")


def test_an_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"known environments: \['cluster', 'local'\]"):
        load_settings("staging")


def test_a_misspelt_ensemble_key_is_refused_not_ignored(tmp_path):
    text = (CONF_DIR / "local.toml").read_text()
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text(text.replace("\nmembers = [", "\nmember = ["))
    with pytest.raises(ConfigError, match=r"\[train.ensemble\] must be a table holding only members"):
        load_settings(str(misspelt))


def test_a_config_without_candidates_is_refused(tmp_path):
    text = (CONF_DIR / "local.toml").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.split("[train.candidates")[0])
    with pytest.raises(ConfigError, match="lacks the required key 'candidates'"):
        load_settings(str(broken))


def test_delta_settings_are_always_there_and_jvm_options_are_appended():
    conf = spark_conf(load_settings("local").spark)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "-Duser.timezone=UTC" in conf["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in conf["spark.driver.extraJavaOptions"]


@pytest.mark.parametrize("text", ["2013-02-30", "yesterday", "2013-09-01' OR '1'='1", "2013-9-1", ""])
def test_calendar_date_refuses_anything_but_a_real_date(text):
    with pytest.raises(argparse.ArgumentTypeError):
        calendar_date(text)


def test_calendar_date_takes_a_real_date():
    assert calendar_date("2012-02-29") == date(2012, 2, 29)


def score_args(date=None, start_date=None, end_date=None):
    return argparse.Namespace(date=date, start_date=start_date, end_date=end_date)


def test_days_to_score_defaults_to_yesterday():
    assert days_to_score(score_args(), date(2013, 9, 3)) == [date(2013, 9, 2)]


def test_days_to_score_expands_a_range():
    days = days_to_score(score_args(start_date=date(2013, 8, 31), end_date=date(2013, 9, 2)), date.today())
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
        days_to_score(args, date.today())
