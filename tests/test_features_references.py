"""The two references of benchmarks/payments_features.py (DuckDB's window SQL and the Handbook's
pandas method) on a hand-made case whose features are worked out below: they must be right
before the benchmark holds the Spark job to them. No JVM.

The case: two transactions of one card at the same instant, whose ids compare as strings
("10" < "9") the other way from numbers; a card's row exactly 1 day before another (outside
(t - 1d, t]); terminal rows exactly at t - 7d (inside (t - 8d, t - 7d]), 1 s after it (outside)
and exactly at t - 8d (outside the 1-day window, inside the 7-day one); night and weekend edges.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "payments_features.py"
_spec = importlib.util.spec_from_file_location("payments_features_benchmark", BENCHMARK)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)

ROWS = [  # id, time, card, terminal, amount, fraud
    ("9", "2018-04-01 10:00:00", "1", "100", "10.00", 0),   # Sunday
    ("10", "2018-04-01 10:00:00", "1", "100", "20.00", 1),  # same instant, before "9" as a string
    ("11", "2018-04-02 10:00:00", "1", "200", "30.01", 0),  # exactly 1 day after both
    ("12", "2018-04-08 10:00:00", "2", "100", "5.00", 0),   # terminal 100: both exactly at t - 7d
    ("13", "2018-04-08 09:59:59", "2", "100", "7.00", 0),   # t - 7d is 1 s before them
    ("14", "2018-04-09 10:00:00", "3", "100", "1.00", 0),   # both exactly at t - 8d
    ("15", "2018-04-07 06:59:59", "3", "300", "3.33", 1),   # Saturday, last second of the night
    ("16", "2018-04-09 07:00:00", "3", "300", "0.10", 0),   # Monday, first second of the day
]

EXPECTED = {  # transaction id -> the features worked out by hand (all others checked by agreement)
    "10": {"card_tx_count_1d": 1, "card_mean_amount_1d": 20.0, "is_weekend": 1, "is_night": 0},
    "9": {"card_tx_count_1d": 2, "card_mean_amount_1d": 15.0, "card_tx_count_30d": 2},
    "11": {"card_tx_count_1d": 1, "card_mean_amount_1d": 30.01, "card_tx_count_7d": 3,
           "card_mean_amount_7d": (1000 + 2000 + 3001) / 3 / 100, "terminal_tx_count_30d": 0,
           "is_weekend": 0},
    "12": {"terminal_tx_count_1d": 2, "terminal_fraud_share_1d": 0.5, "terminal_tx_count_7d": 2,
           "card_tx_count_1d": 2, "card_mean_amount_1d": 6.0},  # "13" is 1 s earlier on the same card
    "13": {"terminal_tx_count_1d": 0, "terminal_fraud_share_1d": 0.0, "terminal_tx_count_30d": 0,
           "card_tx_count_1d": 1},
    "14": {"terminal_tx_count_1d": 0, "terminal_fraud_share_1d": 0.0, "terminal_tx_count_7d": 2,
           "terminal_fraud_share_7d": 0.5, "terminal_tx_count_30d": 2, "card_tx_count_1d": 2,
           "card_mean_amount_1d": 0.55, "card_tx_count_7d": 3},
    "15": {"is_weekend": 1, "is_night": 1, "card_tx_count_1d": 1, "card_mean_amount_1d": 3.33},
    "16": {"is_weekend": 0, "is_night": 0, "card_tx_count_1d": 1, "card_tx_count_7d": 2},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("payments")
    header = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
    first, second = folder / "synthetic-day-001.csv", folder / "synthetic-day-002.csv"
    first.write_text(header + "".join(",".join(map(str, row)) + "\n" for row in ROWS[:4]))
    second.write_text(header + "".join(",".join(map(str, row)) + "\n" for row in ROWS[4:]))
    return [first, second]


@pytest.fixture(scope="module")
def duck(files):
    return bench.duckdb_features(files)


@pytest.fixture(scope="module")
def handbook(files):
    return bench.pandas_features(files)


@pytest.mark.parametrize("name", ["duck", "handbook"])
def test_each_reference_gives_the_worked_out_features(name, request):
    frame = request.getfixturevalue(name)
    assert sorted(frame.index) == sorted(row[0] for row in ROWS)
    assert list(frame.columns) == bench.FEATURES
    for transaction, features in EXPECTED.items():
        for feature, value in features.items():
            got = frame.loc[transaction, feature]
            assert math.isclose(got, value, rel_tol=1e-12, abs_tol=0.0), (name, transaction, feature, got, value)


def test_duckdb_means_are_the_exact_cents_formula(duck):
    """(double(sum of cents) / count) / 100.0, to the last bit."""
    assert duck.loc["11", "card_mean_amount_7d"] == (6001.0 / 3) / 100.0
    assert duck.loc["14", "card_mean_amount_1d"] == (110.0 / 2) / 100.0


def test_the_references_agree_on_every_row(duck, handbook):
    problems, differences = bench.compare(duck, handbook, left_name="DuckDB", right_name="pandas")
    assert problems == []
    for difference in differences:
        if difference.feature in bench.EXACT_FEATURES or difference.feature.startswith("terminal_fraud_share"):
            assert difference.rows_apart == 0, difference.shown()
        else:  # pandas' rolling sum is a float sum: the last bits may differ
            assert difference.largest <= 1e-9, difference.shown()


def test_compare_reports_a_difference_with_its_transaction(duck):
    changed = duck.copy()
    changed.loc["9", "card_tx_count_1d"] = 1
    _, differences = bench.compare(changed, duck, left_name="a", right_name="b")
    apart = {d.feature: d for d in differences if d.rows_apart}
    assert list(apart) == ["card_tx_count_1d"]
    assert apart["card_tx_count_1d"].example.startswith("9:")
