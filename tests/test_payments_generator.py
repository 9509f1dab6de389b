"""Synthetic payments (the Fraud Detection Handbook's chapter 3 design): the pairing by grid
cells, the raw schema and its format, reproducibility, every fraud scenario's rule on the
written files, and bad arguments refused before Spark starts.

Small runs (250 customers, 400 terminals, 30 days): behaviour, not the published totals, which
``benchmarks/payments_generator.py`` checks at full scale. No test reads today's date.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, timedelta
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import jobs.generate as generate_job
from pipelines.core.cli import run_main
from pipelines.core.errors import InvalidArgumentError
from pipelines.data.generator import MANIFEST_FILE
from pipelines.data.payments_generator import (
    KEY,
    OUTPUT_COLS,
    PaymentsParams,
    check_payments_params,
    compromised_customer_draws,
    compromised_terminal_draws,
    customer_profiles,
    customer_profiles_frame,
    draw_customer_transactions,
    generate_payments,
    pair_by_grid_cells,
    pair_customers_with_terminals,
    terminal_positions,
    terminal_positions_frame,
    write_payments_csv,
)

SMALL = PaymentsParams(customers=250, terminals=400, days=30, start_date=date(2018, 4, 1), seed=11)
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
AMOUNT = re.compile(r"\d+\.\d{2}")


def brute_force_pairs(customers: pd.DataFrame, terminals: pd.DataFrame, radius: float) -> pd.DataFrame:
    """Every customer against every terminal: the reference the grid-cell pairing must equal."""
    dx = customers["x"].to_numpy()[:, None] - terminals["x"].to_numpy()[None, :]
    dy = customers["y"].to_numpy()[:, None] - terminals["y"].to_numpy()[None, :]
    rows, cols = np.nonzero(dx * dx + dy * dy < radius * radius)
    return pd.DataFrame({"customer_id": customers["id"].to_numpy()[rows],
                         "terminal_id": terminals["id"].to_numpy()[cols]}).sort_values(
        ["customer_id", "terminal_id"]).reset_index(drop=True)


@pytest.mark.parametrize("radius", [0.7, 5.0, 13.0, 100.0])
def test_grid_cell_pairing_equals_brute_force(radius):
    customers, terminals = customer_profiles(3, 300), terminal_positions(3, 700)
    expected_df = brute_force_pairs(customers, terminals, radius)
    actual_df = pair_by_grid_cells(customers[["id", "x", "y"]], terminals, radius)
    assert len(expected_df) > 0
    pd.testing.assert_frame_equal(actual_df, expected_df, check_dtype=False)


def test_spark_pairing_equals_brute_force(spark):
    params = replace(SMALL, customers=120, terminals=300, radius=9.0)
    actual_df = (pair_customers_with_terminals(customer_profiles_frame(spark, params),
                                               terminal_positions_frame(spark, params), params.radius)
                 .toPandas().sort_values(["customer_id", "terminal_id"]).reset_index(drop=True))
    expected_df = brute_force_pairs(customer_profiles(params.seed, 120), terminal_positions(params.seed, 300), 9.0)
    pd.testing.assert_frame_equal(actual_df, expected_df, check_dtype=False)


def test_profiles_do_not_depend_on_how_many_entities_the_run_has():
    few, many = customer_profiles(5, 10), customer_profiles(5, 3000)
    pd.testing.assert_frame_equal(few, many.iloc[:10])
    assert few["mean_amount"].between(5, 100).all() and few["mean_tx_per_day"].between(0, 4).all()


def test_one_customer_draws_times_inside_the_day_non_negative_cents_and_its_own_terminals():
    terminals = np.array([4, 9, 17], dtype=np.int64)
    actual_df = draw_customer_transactions(7, 40.0, 3.5, terminals, days=200, seed=1)
    assert len(actual_df) > 500
    assert actual_df["seconds"].between(1, 86_399).all()
    assert (actual_df["drawn_cents"] >= 0).all()
    assert set(actual_df["terminal_id"]) == set(terminals.tolist())
    assert not actual_df.duplicated(KEY).any()
    # About 3.1% of N(43200, 20000) falls outside the day and is dropped, not redrawn.
    expected_rows = 3.5 * 200 * 0.969
    assert abs(len(actual_df) - expected_rows) < 4 * np.sqrt(expected_rows)
    pd.testing.assert_frame_equal(actual_df, draw_customer_transactions(7, 40.0, 3.5, terminals, days=200, seed=1))
    assert draw_customer_transactions(7, 40.0, 3.5, terminals[:0], days=200, seed=1).empty


@pytest.fixture(scope="module")
def small_run(spark, tmp_path_factory):
    """The small run written as files, with the library's labelled rows beside them."""
    folder = tmp_path_factory.mktemp("payments")
    payments = generate_payments(spark, SMALL)
    try:
        written = write_payments_csv(payments.labelled, folder, start_date=SMALL.start_date)
        labelled = payments.labelled.toPandas()
    finally:
        payments.release()
    text = pd.concat([pd.read_csv(path, dtype=str) for path in written.files], ignore_index=True)
    return written, labelled, text


def test_files_have_the_handbook_schema_one_per_day(small_run):
    written, _, text = small_run
    assert [path.name for path in written.files] == [f"synthetic-day-{n:03d}.csv" for n in range(1, 31)]
    for path, day in zip(written.files, written.dates, strict=True):
        assert path.read_text().splitlines()[0] == ",".join(OUTPUT_COLS)
        first = pd.read_csv(path, dtype=str)
        assert first["TX_DATETIME"].str.startswith(day.isoformat()).all()
    assert list(text.columns) == OUTPUT_COLS
    assert text["TX_DATETIME"].map(DATETIME.fullmatch).notna().all()
    assert text["TX_AMOUNT"].map(AMOUNT.fullmatch).notna().all()
    assert set(text["TX_FRAUD"]) == {"0", "1"}
    assert text["TRANSACTION_ID"].str.fullmatch(r"\d+").all()


def test_transaction_ids_are_unique_and_follow_time(small_run):
    _, _, text = small_run
    ids = text["TRANSACTION_ID"].astype(np.int64)
    assert sorted(ids) == list(range(len(text)))
    by_id = text.assign(id=ids).sort_values("id")
    assert by_id["TX_DATETIME"].is_monotonic_increasing


def test_every_transaction_uses_a_terminal_within_the_radius(small_run):
    _, _, text = small_run
    customers = customer_profiles(SMALL.seed, SMALL.customers).rename(columns={"id": "CUSTOMER_ID"})
    terminals = terminal_positions(SMALL.seed, SMALL.terminals).rename(columns={"id": "TERMINAL_ID"})
    rows = (text.astype({"CUSTOMER_ID": np.int64, "TERMINAL_ID": np.int64})
            .merge(customers, on="CUSTOMER_ID").merge(terminals, on="TERMINAL_ID", suffixes=("_c", "_t")))
    assert len(rows) == len(text)
    distance = np.hypot(rows["x_c"] - rows["x_t"], rows["y_c"] - rows["y_t"])
    assert (distance < SMALL.radius).all()


def _days(text: pd.DataFrame) -> pd.Series:
    return (pd.to_datetime(text["TX_DATETIME"]).dt.normalize() - pd.Timestamp(SMALL.start_date)).dt.days


def test_every_amount_above_the_threshold_is_fraud(small_run):
    _, labelled, text = small_run
    assert (labelled["drawn_cents"] > 22_000).any()
    over = text["TX_AMOUNT"].astype(float) > SMALL.amount_threshold
    assert over.sum() > 0 and (text.loc[over, "TX_FRAUD"] == "1").all()


def test_compromised_terminals_are_all_fraud_for_their_window(small_run):
    _, _, text = small_run
    days = _days(text)
    terminal = text["TERMINAL_ID"].astype(np.int64)
    hits = 0
    for draw in compromised_terminal_draws(SMALL).itertuples():
        window = (terminal == draw.terminal_id) & (days >= draw.draw_day) & (days < draw.draw_day + 28)
        hits += int(window.sum())
        assert (text.loc[window, "TX_FRAUD"] == "1").all(), f"terminal {draw.terminal_id} from day {draw.draw_day}"
    assert hits > 100


def test_compromised_customers_lose_a_third_of_their_window_multiplied_by_five(small_run):
    _, labelled, text = small_run
    expected_picks = 0
    for draw_day, draws in compromised_customer_draws(SMALL).groupby("draw_day"):
        pool = labelled["customer_id"].isin(draws["customer_id"]) & labelled["day"].between(draw_day, draw_day + 13)
        expected_picks += int(pool.sum()) // 3
    picked = labelled[labelled["times_picked"] > 0]
    assert labelled["times_picked"].sum() == expected_picks > 50
    assert (picked["amount_cents"] == picked["drawn_cents"] * 5 ** picked["times_picked"]).all()
    assert (picked["scenario"] == 3).all() and (picked["fraud"] == 1).all()
    untouched = labelled[labelled["times_picked"] == 0]
    assert (untouched["amount_cents"] == untouched["drawn_cents"]).all()
    # The files carry the multiplied amounts and the labels of the library's rows.
    keyed = text.assign(day=_days(text), customer_id=text["CUSTOMER_ID"].astype(np.int64),
                        seconds=pd.to_datetime(text["TX_DATETIME"]).dt.hour * 3600
                        + pd.to_datetime(text["TX_DATETIME"]).dt.minute * 60
                        + pd.to_datetime(text["TX_DATETIME"]).dt.second)
    both = keyed.merge(picked, on=["customer_id", "day", "seconds"])
    assert len(both) >= len(picked)
    matched = both[both["TX_AMOUNT"].map(lambda s: int(s.replace(".", ""))) == both["amount_cents"]]
    assert set(map(tuple, matched[KEY].to_numpy())) == set(map(tuple, picked[KEY].to_numpy()))
    assert (matched["TX_FRAUD"] == "1").all()


def test_fraud_rate_is_in_line_with_the_design(small_run):
    """Terminal traffic is about even, so scenario 2 hits about (terminals compromised that day)
    / terminals of a day's rows, scenario 3 about a third of (customers compromised) /
    customers; scenario 1 is rare. The observed rate is within 30% of that."""
    written, labelled, _ = small_run
    active_terminals = np.mean([min(day + 1, 28) * 2 for day in range(SMALL.days)])
    active_customers = np.mean([min(day + 1, 14) * 3 for day in range(SMALL.days)])
    expected = active_terminals / SMALL.terminals + active_customers / SMALL.customers / 3
    observed = written.frauds / written.rows
    assert abs(observed / expected - 1) < 0.3, (observed, expected)
    assert written.rows == len(labelled)
    assert written.scenario_frauds == {s: int((labelled["scenario"] == s).sum()) for s in (1, 2, 3)}


def test_output_reads_back_with_pandas(small_run):
    written, _, _ = small_run
    frame = pd.concat([pd.read_csv(path, parse_dates=["TX_DATETIME"]) for path in written.files], ignore_index=True)
    assert frame["TX_DATETIME"].dtype.kind == "M"
    assert frame["TX_AMOUNT"].dtype == float and frame["TX_FRAUD"].dtype.kind == "i"
    assert frame["TX_DATETIME"].min() >= pd.Timestamp("2018-04-01")
    assert frame["TX_DATETIME"].max() < pd.Timestamp(SMALL.start_date + timedelta(days=SMALL.days))
    assert len(frame) == written.rows


def _labelled_rows(spark, params: PaymentsParams) -> pd.DataFrame:
    payments = generate_payments(spark, params)
    try:
        return payments.labelled.toPandas().sort_values(KEY).reset_index(drop=True)
    finally:
        payments.release()


def test_same_seed_same_rows_whatever_the_partitioning(spark):
    params = replace(SMALL, customers=120, terminals=300, days=12, seed=4)
    first = _labelled_rows(spark, params)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        second = _labelled_rows(spark, params)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    pd.testing.assert_frame_equal(first, second)
    other = _labelled_rows(spark, replace(params, seed=5))
    assert not first[["seconds", "drawn_cents"]].head(50).equals(other[["seconds", "drawn_cents"]].head(50))


def test_job_writes_files_and_a_manifest_that_says_synthetic(spark, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_job, "load_settings", lambda env: settings)
    monkeypatch.setattr(generate_job, "get_spark", lambda *args, **kwargs: spark)
    output = tmp_path / "payments"
    exit_code = run_main(generate_job.main, [
        "--profile", "payments", "--customers", "80", "--terminals", "150", "--days", "5",
        "--start-date", "2020-02-27", "--radius", "8", "--compromised-share", "1/2", "--seed", "3",
        "--output", str(output),
    ])
    assert exit_code == 0
    manifest = json.loads((output / MANIFEST_FILE).read_text())
    assert manifest["synthetic"] is True and "not real" in manifest["note"].lower()
    assert manifest["parameters"]["compromised_share"] == "1/2" and manifest["parameters"]["radius"] == 8.0
    assert manifest["seed"] == 3
    assert [entry["date"] for entry in manifest["files"]] == ["2020-02-27", "2020-02-28", "2020-02-29",
                                                                 "2020-03-01", "2020-03-02"]
    assert sum(entry["rows"] for entry in manifest["files"]) == manifest["rows"]
    assert sum(manifest["scenario_frauds"].values()) == manifest["frauds"]
    # Again over the earlier run's files: only with --overwrite.
    assert run_main(generate_job.main, ["--profile", "payments", "--customers", "80", "--days", "5",
                                        "--output", str(output)]) == 2


def _no_spark(*args, **kwargs):
    raise AssertionError("Spark was started although an argument is bad")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--customers", "0"], "--customers must be at least 1, got 0"),
        (["--terminals", "-3"], "--terminals must be at least 1, got -3"),
        (["--days", "0"], "--days must be at least 1, got 0"),
        (["--radius", "0"], "--radius must be in (0, 100], got 0.0"),
        (["--radius", "nan"], "--radius must be in (0, 100], got nan"),
        (["--seed", "-1"], "--seed must be 0 or more, got -1"),
        (["--fraud-amount-threshold", "-5"], "--fraud-amount-threshold must be a finite number, 0 or more"),
        (["--compromised-terminals-per-day", "11", "--terminals", "10"],
         "--compromised-terminals-per-day must be between 0 and --terminals (10), got 11"),
        (["--compromised-customers-per-day", "-1"], "--compromised-customers-per-day must be between 0"),
        (["--terminal-compromise-days", "0"], "--terminal-compromise-days must be at least 1, got 0"),
        (["--customer-compromise-days", "0"], "--customer-compromise-days must be at least 1, got 0"),
        (["--compromised-share", "4/3"], "--compromised-share must be in [0, 1], got 4/3"),
        (["--fraud-amount-multiplier", "0"], "--fraud-amount-multiplier must be a finite number above 0, got 0.0"),
        (["--start-date", "9999-12-01"], "runs past the year 9999"),
        (["--rows-per-day", "10"], "--rows-per-day: not an option of --profile payments"),
        (["--drift", "V14:+1@day=1"], "--drift: not an option of --profile payments"),
    ],
)
def test_bad_payments_arguments_exit_2_before_spark_starts(monkeypatch, settings, tmp_path, capsys, arguments,
                                                           message):
    monkeypatch.setattr(generate_job, "load_settings", lambda env: settings)
    monkeypatch.setattr(generate_job, "get_spark", _no_spark)
    output = tmp_path / "out"
    exit_code = run_main(generate_job.main, ["--profile", "payments", *arguments, "--output", str(output)])
    assert exit_code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--profile", "payments", "--compromised-share", "a third"], "is not a fraction"),
        (["--profile", "cards", "--days", "1"], "invalid choice"),
    ],
)
def test_malformed_options_are_refused_by_the_parser(capsys, arguments, message):
    with pytest.raises(SystemExit) as refused:
        generate_job.build_parser().parse_args([*arguments, "--output", "x"])
    assert refused.value.code == 2
    assert message in capsys.readouterr().err


def test_payments_options_are_refused_for_creditcard_and_days_stays_required(settings, tmp_path):
    def request(*extra: str):
        args = generate_job.build_parser().parse_args([*extra, "--output", str(tmp_path / "new")])
        return generate_job.request_from_args(args, settings)

    with pytest.raises(InvalidArgumentError, match="--customers: not an option of --profile creditcard"):
        request("--days", "1", "--customers", "10")
    with pytest.raises(InvalidArgumentError, match="--days is required for --profile creditcard"):
        request()
    assert request("--days", "2").rows_per_day == generate_job.REAL_ROWS_PER_DAY


def test_defaults_are_the_published_design():
    params = PaymentsParams()
    check_payments_params(params)
    assert (params.customers, params.terminals, params.days, params.start_date, params.radius) == (
        5_000, 10_000, 183, date(2018, 4, 1), 5.0)
    assert (params.amount_threshold, params.compromised_terminals_per_day, params.terminal_compromise_days,
            params.compromised_customers_per_day, params.customer_compromise_days, params.compromised_share,
            params.amount_multiplier) == (220.0, 2, 28, 3, 14, Fraction(1, 3), 5.0)
