"""Synthetic transactions: faithful to the real sample, reproducible, drifting on request,
refused when asked for nonsense, and taken by the real ingest path one day at a time.

Tolerances come from the real sample's own sampling error: a bootstrap of the real rows of a
class gives the standard error (SE) of each of its statistics; the generated rows add their
own, about SE * sqrt(n_real / n_generated). A generated statistic is accepted within
``Z_LIMIT`` combined SEs of the real one. With ~30 means, ~30 stds and 406 correlations per
class, the largest of ~900 |z| of pure noise is about 3.5; ``Z_LIMIT`` leaves room for that and
a little model error, and each test also checks that a naive generator (no class difference, no
correlations, no day/night rhythm) would be far outside it.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

import jobs.generate as generate_job
from jobs import ingest
from pipelines.core.cli import run_main
from pipelines.core.errors import InvalidArgumentError
from pipelines.data.generator import (
    MANIFEST_FILE,
    cross_average_precision,
    fit_model,
    generate_transactions,
    hour_shares,
    parse_drift,
    total_variation,
    write_daily_csv,
)
from pipelines.data.schema import FEATURE_COLS, LABEL_COL, RAW_COLS, TXN_DATE
from tests.conftest import SAMPLE_CSV

SAMPLE_FRAUD_RATE = 492 / 5412
Z_LIMIT = 5.0
BOOTSTRAP_ROUNDS = 200


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_CSV)


@pytest.fixture(scope="module")
def model(real):
    return fit_model(real)


@pytest.fixture(scope="module")
def synthetic(spark, model, tmp_path_factory) -> pd.DataFrame:
    """Two days of 5,000 rows at the sample's fraud share (so both classes have ~900+ rows),
    written as files and read back from them."""
    folder = tmp_path_factory.mktemp("synthetic")
    transactions = generate_transactions(
        spark, model, days=2, rows_per_day=5000, fraud_rate=SAMPLE_FRAUD_RATE, seed=11
    )
    files = write_daily_csv(transactions, folder)
    return pd.concat([pd.read_csv(path) for path in files], ignore_index=True)


def bootstrap_standard_errors(values: np.ndarray, *, rounds: int = BOOTSTRAP_ROUNDS):
    """Standard errors of the means, stds and correlation matrix of ``values`` (rows x columns)."""
    rng = np.random.default_rng(0)
    means, stds, correlations = [], [], []
    for _ in range(rounds):
        resample = values[rng.integers(0, len(values), len(values))]
        means.append(resample.mean(axis=0))
        stds.append(resample.std(axis=0))
        correlations.append(np.corrcoef(resample, rowvar=False))
    return np.std(means, axis=0), np.std(stds, axis=0), np.std(correlations, axis=0)


@pytest.mark.parametrize("label", [0, 1], ids=["normal", "fraud"])
def test_means_stds_and_correlations_per_class_match_the_real_sample(real, synthetic, label):
    real_values = real.loc[real[LABEL_COL] == label, FEATURE_COLS].to_numpy(dtype=float)
    generated = synthetic.loc[synthetic[LABEL_COL] == label, FEATURE_COLS].to_numpy(dtype=float)
    assert len(generated) > 500
    se_mean, se_std, se_corr = bootstrap_standard_errors(real_values)
    # The generated rows' own sampling error, scaled from the real one by the row counts.
    inflation = np.sqrt(1 + len(real_values) / len(generated))
    tol_mean, tol_std = Z_LIMIT * se_mean * inflation, Z_LIMIT * se_std * inflation
    tol_corr = Z_LIMIT * np.maximum(se_corr, 1e-3) * inflation
    np.fill_diagonal(tol_corr, 1.0)

    mean_gap = np.abs(generated.mean(axis=0) - real_values.mean(axis=0))
    std_gap = np.abs(generated.std(axis=0) - real_values.std(axis=0))
    real_corr = np.corrcoef(real_values, rowvar=False)
    corr_gap = np.abs(np.corrcoef(generated, rowvar=False) - real_corr)

    assert (mean_gap <= tol_mean).all(), f"means off by {np.max(mean_gap / tol_mean):.2f} x tolerance"
    assert (std_gap <= tol_std).all(), f"stds off by {np.max(std_gap / tol_std):.2f} x tolerance"
    worst = np.unravel_index(np.argmax(corr_gap / tol_corr), corr_gap.shape)
    assert (corr_gap <= tol_corr).all(), (
        f"correlation of {FEATURE_COLS[worst[0]]}, {FEATURE_COLS[worst[1]]} off by {corr_gap[worst]:.3f} "
        f"(tolerance {tol_corr[worst]:.3f})"
    )
    # The bounds are tight enough to matter: features without correlations, or one
    # distribution for both classes, would break them.
    off_diagonal = ~np.eye(len(FEATURE_COLS), dtype=bool)
    assert (np.abs(real_corr) > tol_corr)[off_diagonal].sum() >= 10
    other_class = real.loc[real[LABEL_COL] != label, FEATURE_COLS].to_numpy(dtype=float)
    assert (np.abs(other_class.mean(axis=0) - real_values.mean(axis=0)) > tol_mean).sum() >= 10


@pytest.mark.parametrize("label", [0, 1], ids=["normal", "fraud"])
def test_share_of_transactions_per_hour_follows_the_real_day(real, synthetic, label):
    real_shares = hour_shares(real.loc[real[LABEL_COL] == label, "Time"])
    generated_times = synthetic.loc[synthetic[LABEL_COL] == label, "Time"]
    n_real, n_generated = int((real[LABEL_COL] == label).sum()), len(generated_times)
    # Bound: what two samples of these sizes drawn from the same hourly shares differ by,
    # 99.9% of the time.
    rng = np.random.default_rng(0)
    noise = [
        total_variation(rng.multinomial(n_real, real_shares) / n_real,
                        rng.multinomial(n_generated, real_shares) / n_generated)
        for _ in range(2000)
    ]
    bound = float(np.quantile(noise, 0.999))
    assert total_variation(real_shares, hour_shares(generated_times)) < bound
    # A generator with no day/night rhythm would be outside it (for frauds, only 492 real rows
    # fix the hourly profile, so the bound is wider: 0.16 against 0.21 for uniform hours).
    assert total_variation(real_shares, np.full(24, 1 / 24)) > bound


def test_a_model_trained_on_one_separates_fraud_in_the_other(real, synthetic):
    chance = float(real[LABEL_COL].mean())  # AUC-PR of a random score
    synthetic_to_real = cross_average_precision(train=synthetic, test=real)
    real_to_synthetic = cross_average_precision(train=real, test=synthetic)
    assert synthetic_to_real > max(0.6, 6 * chance), synthetic_to_real
    assert real_to_synthetic > max(0.6, 6 * chance), real_to_synthetic


def test_same_seed_same_rows_different_seed_different_rows(spark, model):
    def rows(seed: int) -> pd.DataFrame:
        return generate_transactions(spark, model, days=2, rows_per_day=300, seed=seed).toPandas()

    first, again, other = rows(5), rows(5), rows(6)
    assert list(first.columns) == RAW_COLS
    assert len(first) == 600
    pd.testing.assert_frame_equal(first, again)
    assert not np.isclose(first[FEATURE_COLS].to_numpy(), other[FEATURE_COLS].to_numpy()).all(axis=1).any()


def test_each_day_runs_on_in_time_from_the_first_day_index(spark, model):
    generated = generate_transactions(
        spark, model, days=3, rows_per_day=200, first_day_index=2
    ).toPandas()
    day_of_row = (generated["Time"] // 86400).astype(int)
    assert day_of_row.value_counts().sort_index().to_dict() == {2: 200, 3: 200, 4: 200}
    assert (generated["Time"] == generated["Time"].round()).all()


def test_drift_moves_a_feature_and_the_fraud_rate_from_its_day_on(spark, model):
    drifts = [parse_drift("V14:+1.5@day=2"), parse_drift("V4:-2@day=2,class=1"), parse_drift("fraud_rate:0.3@day=3")]

    def days_of(drift_list) -> pd.DataFrame:
        frame = generate_transactions(
            spark, model, days=3, rows_per_day=3000, fraud_rate=0.05, seed=3, drifts=drift_list
        ).toPandas()
        return frame.assign(day=(frame["Time"] // 86400).astype(int) + 1)

    drifted, plain = days_of(drifts), days_of([])
    v14_mean = drifted.groupby("day")["V14"].mean()
    # Independent rows on each day: the jump is 1.5 within the means' sampling error
    # (V14's std ~1.2-1.5 over 3,000 rows: SE ~0.04).
    assert abs((v14_mean[2] - v14_mean[1]) - 1.5) < 0.2
    # Same seed, same rows: before the drift day nothing moved, after it exactly the shift.
    assert np.array_equal(drifted.loc[drifted.day == 1, "V14"], plain.loc[plain.day == 1, "V14"])
    day2_drifted, day2_plain = drifted[drifted.day == 2], plain[plain.day == 2]
    assert np.allclose(day2_drifted["V14"] - day2_plain["V14"], 1.5)
    is_fraud = day2_plain[LABEL_COL].to_numpy() == 1
    v4_change = day2_drifted["V4"].to_numpy() - day2_plain["V4"].to_numpy()
    assert np.allclose(v4_change[is_fraud], -2.0) and np.allclose(v4_change[~is_fraud], 0.0)
    fraud_share = drifted.groupby("day")[LABEL_COL].mean()
    # Binomial SE over 3,000 rows: 0.004 at 5%, 0.008 at 30%.
    assert abs(fraud_share[1] - 0.05) < 0.02 and abs(fraud_share[2] - 0.05) < 0.02
    assert abs(fraud_share[3] - 0.3) < 0.04


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--days", "0"], "--days must be at least 1"),
        (["--days", "-3"], "--days must be at least 1"),
        (["--days", "2", "--rows-per-day", "0"], "--rows-per-day must be at least 1"),
        (["--days", "2", "--fraud-rate", "0"], "--fraud-rate must be in (0, 1)"),
        (["--days", "2", "--fraud-rate", "1.5"], "--fraud-rate must be in (0, 1)"),
        (["--days", "2", "--drift", "V14+1.5@day=1"], "is malformed"),
        (["--days", "2", "--drift", "V29:+1@day=1"], "unknown target"),
        (["--days", "2", "--drift", "V14:1.5@day=1"], "starts with + or -"),
        (["--days", "2", "--drift", "V14:+abc@day=1"], "is not a number"),
        (["--days", "2", "--drift", "fraud_rate:2@day=1"], "must be in (0, 1)"),
        (["--days", "2", "--drift", "V14:+1@day=0"], "numbered from 1"),
        (["--days", "2", "--drift", "V14:+1@day=3"], "after the last generated day"),
        (["--days", "2", "--start-date", "2013-08-31"], "before the ingest start"),
    ],
)
def test_bad_arguments_are_refused_before_spark_starts(
    monkeypatch, settings, tmp_path, capsys, arguments, message
):
    monkeypatch.setattr(generate_job, "load_settings", lambda env: settings)
    monkeypatch.setattr(generate_job, "get_spark", _no_spark)
    output = tmp_path / "out"
    exit_code = run_main(generate_job.main, [*arguments, "--output", str(output)])
    assert exit_code != 0
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_arguments_in_range_are_accepted(settings, tmp_path):
    """The refusals above are about the values: the same options in range pass."""
    args = generate_job.build_parser().parse_args([
        "--days", "2", "--rows-per-day", "10", "--fraud-rate", "0.5", "--drift", "V14:+1@day=2",
        "--drift", "fraud_rate:0.2@day=2", "--start-date", "2013-09-03", "--output", str(tmp_path / "new"),
    ])
    request = generate_job.request_from_args(args, settings)
    assert request.first_day_index == 2
    assert [drift.target for drift in request.drifts] == ["V14", "fraud_rate"]


def test_a_malformed_date_is_refused_by_the_parser(tmp_path):
    with pytest.raises(SystemExit) as refused:
        generate_job.build_parser().parse_args(["--days", "1", "--start-date", "2013-02-30", "--output", "x"])
    assert refused.value.code != 0


def test_an_output_that_holds_files_is_refused_without_overwrite(settings, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "synthetic-day-001.csv").write_text("earlier run\n")

    def request(*extra: str):
        args = generate_job.build_parser().parse_args(["--days", "1", "--output", str(output), *extra])
        return generate_job.request_from_args(args, settings)

    with pytest.raises(InvalidArgumentError, match="exists and is not empty"):
        request()
    assert request("--overwrite").output == output
    (output / "notes.txt").write_text("someone else's\n")
    with pytest.raises(InvalidArgumentError, match="did not write"):
        request("--overwrite")
    with pytest.raises(InvalidArgumentError, match="is not a folder"):
        generate_job.check_output(output / "notes.txt", overwrite=True)


def _no_spark(*args, **kwargs):
    raise AssertionError("Spark was started although an argument is bad")


def _day_files(spark, table_path: str, day: date) -> set[str]:
    snapshot = spark.read.format("delta").load(table_path).where(F.col(TXN_DATE) == F.lit(day))
    return {row[0] for row in snapshot.select(F.input_file_name()).distinct().collect()}


@pytest.mark.e2e
def test_generated_days_are_ingested_one_at_a_time_and_only_once(spark, settings, tmp_path):
    output = tmp_path / "generated"
    args = generate_job.build_parser().parse_args(
        ["--days", "2", "--rows-per-day", "1500", "--fraud-rate", "0.02", "--output", str(output)]
    )
    files = generate_job.run(spark, settings, generate_job.request_from_args(args, settings))

    assert [path.name for path in files] == ["synthetic-day-001.csv", "synthetic-day-002.csv"]
    assert (output / MANIFEST_FILE).is_file()
    for day_index, path in enumerate(files):
        assert path.read_text().splitlines()[0] == ",".join(RAW_COLS)
        times = pd.read_csv(path)["Time"]
        assert times.between(86400 * day_index, 86400 * (day_index + 1) - 1).all()

    table = settings.tables.transactions_path
    ingested_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    day1, day2 = date(2013, 9, 1), date(2013, 9, 2)
    assert ingest.run(spark, settings, input_path=str(files[0]), ingested_at=ingested_at) == 1500
    day1_files = _day_files(spark, table, day1)
    assert ingest.run(spark, settings, input_path=str(files[1]), ingested_at=ingested_at) == 1500
    assert ingest.run(spark, settings, input_path=str(files[1]), ingested_at=ingested_at) == 0

    per_day = {row[TXN_DATE]: row["count"] for row in spark.read.format("delta").load(table)
               .groupBy(TXN_DATE).count().collect()}
    assert per_day == {day1: 1500, day2: 1500}
    assert spark.read.format("delta").load(table).select("transaction_id").distinct().count() == 3000
    # Day 1's files are the ones its own ingest wrote: adding day 2 rewrote nothing there.
    assert _day_files(spark, table, day1) == day1_files
    # The table was created by day 1 and only ever added to: no commit removed a file (the
    # repeated day 2 inserts nothing; Delta may then skip the commit altogether).
    history = DeltaTable.forPath(spark, table).history().orderBy("version").collect()
    assert [entry["operation"] for entry in history][:2] == ["WRITE", "MERGE"]
    assert {entry["operation"] for entry in history[2:]} <= {"MERGE"}
    assert all(int(entry["operationMetrics"].get("numTargetFilesRemoved", 0)) == 0 for entry in history[1:])


def test_generated_files_are_named_synthetic(tmp_path: Path, spark, model):
    files = write_daily_csv(generate_transactions(spark, model, days=2, rows_per_day=50, seed=1), tmp_path)
    assert [path.name for path in files] == ["synthetic-day-001.csv", "synthetic-day-002.csv"]
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["synthetic-day-001.csv", "synthetic-day-002.csv"]
