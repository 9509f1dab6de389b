"""Card Precision@k against figures worked out by hand, and against a brute-force count on
random data. No Spark: these run in `make test-quick`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines.model.card_precision import (
    CardPrecisionInputError,
    NaNScoreError,
    NoTransactionsError,
    TopKError,
    card_precision_at_k,
)

COLUMNS = ["day", "card_key", "fraud_probability", "label"]


def rows(*transactions: tuple) -> pd.DataFrame:
    return pd.DataFrame(list(transactions), columns=COLUMNS)


def figures(result) -> list[tuple]:
    return [(day.day, day.cards_ranked, day.fraud_cards, day.frauds_in_top_k, day.card_precision)
            for day in result.days]


# Four days, k = 2. Worked out by hand (card: score, label; "found" = fraud in a day's top 2):
#   day 1: A .9 F, B .8, C .3 F        -> alerts A, B: 1 fraud, 0.5.  found {A}
#   day 2: A .95 F, B .9, D .8, C .1 F -> A left out; alerts B, D: 0.  (C is a fraud outside the top 2: not found)
#   day 3: A .99 F, C .9 F, E .5, B .2 F -> A left out; alerts C, E: 0.5. found {A, C}
#   day 4: C .9 F, B .3               -> C left out; alert B alone: 0 (B, a false alarm on day 1, is never left out)
PERIOD = rows(
    (1, "A", 0.9, 1), (1, "B", 0.8, 0), (1, "C", 0.3, 1),
    (2, "A", 0.95, 1), (2, "B", 0.9, 0), (2, "D", 0.8, 0), (2, "C", 0.1, 1),
    (3, "A", 0.99, 1), (3, "C", 0.9, 1), (3, "E", 0.5, 0), (3, "B", 0.2, 1),
    (4, "C", 0.9, 1), (4, "B", 0.3, 0),
)
PERIOD_FIGURES = [(1, 3, 2, 1, 0.5), (2, 3, 1, 0, 0.0), (3, 3, 2, 1, 0.5), (4, 1, 0, 0, 0.0)]


def test_a_card_is_ranked_by_its_highest_score_and_is_compromised_by_any_fraud():
    # A's fraud has the day's lowest score, but A's genuine 0.9 ranks the card first, and the
    # card is compromised. By transactions the top two (0.9 and 0.8) would hold no fraud.
    source_df = rows((1, "A", 0.2, 1), (1, "A", 0.9, 0), (1, "B", 0.8, 0), (1, "C", 0.7, 1), (1, "D", 0.1, 1))

    assert figures(card_precision_at_k(source_df, k=2)) == [(1, 4, 3, 1, 0.5)]
    assert figures(card_precision_at_k(source_df, k=3)) == [(1, 4, 3, 2, 2 / 3)]


def test_equal_scores_are_ranked_by_card_key_ascending():
    # k = 2: X first, then three cards at 0.5: the lowest key, "b", takes the second place.
    source_df = rows((1, "x", 0.9, 0), (1, "c", 0.5, 1), (1, "d", 0.5, 1), (1, "b", 0.5, 0))
    assert figures(card_precision_at_k(source_df, k=2)) == [(1, 4, 2, 0, 0.0)]

    # The same with "b" the fraud: it is the one alerted.
    swapped = rows((1, "x", 0.9, 0), (1, "c", 0.5, 0), (1, "d", 0.5, 0), (1, "b", 0.5, 1))
    assert figures(card_precision_at_k(swapped, k=2)) == [(1, 4, 1, 1, 0.5)]


def test_numeric_card_keys_tie_in_numeric_order():
    # 9 < 10 as numbers (as text "10" would come first).
    source_df = rows((1, 10, 0.5, 0), (1, 9, 0.5, 1))
    assert card_precision_at_k(source_df, k=1).days[0].frauds_in_top_k == 1


def test_cards_found_on_a_day_are_left_out_of_the_later_days():
    result = card_precision_at_k(PERIOD, k=2)

    assert figures(result) == PERIOD_FIGURES
    assert result.k == 2
    assert result.mean == pytest.approx(0.25)


def test_cards_known_compromised_before_the_period_are_left_out_of_every_day():
    # B left out everywhere:
    #   day 1: A .9 F, C .3 F -> both alerted: 1.0, found {A, C}
    #   day 2: D .8 alone (A found, B known) -> 0
    #   day 3: E .5 alone -> 0;  day 4: no card left -> 0
    result = card_precision_at_k(PERIOD, k=2, known_compromised={"B"})

    assert figures(result) == [(1, 2, 2, 2, 1.0), (2, 1, 0, 0, 0.0), (3, 1, 0, 0, 0.0), (4, 0, 0, 0, 0.0)]
    assert result.mean == pytest.approx(0.25)


def test_cards_known_from_a_day_on_are_left_out_from_that_day_not_before():
    # C becomes known at the start of day 3: ranked on days 1 and 2 as before, then
    #   day 3: A found, C known: E .5, B .2 F -> 0.5, found {A, B}
    #   day 4: C known, B found -> no card left, 0
    result = card_precision_at_k(PERIOD, k=2, compromised_by_day={3: {"C"}})

    assert figures(result) == [*PERIOD_FIGURES[:2], (3, 2, 1, 1, 0.5), (4, 0, 0, 0, 0.0)]


def test_cards_known_from_a_day_without_transactions_count_from_there():
    # Day 0 has no rows: known from before day 1 is the same as known before the period.
    assert (card_precision_at_k(PERIOD, k=2, compromised_by_day={0: {"B"}})
            == card_precision_at_k(PERIOD, k=2, known_compromised={"B"}))
    # Known from day 10 on: after the period, nothing changes.
    assert figures(card_precision_at_k(PERIOD, k=2, compromised_by_day={10: {"A", "B", "C"}})) == PERIOD_FIGURES


def test_a_day_with_fewer_cards_than_k_is_still_divided_by_k():
    # Default k = 100; three cards, two compromised, both alerted: 2 / 100, not 2 / 3 or 1.
    source_df = rows((1, "A", 0.9, 1), (1, "B", 0.2, 1), (1, "C", 0.1, 0), (1, "C", 0.4, 0))
    result = card_precision_at_k(source_df)

    assert result.k == 100
    assert figures(result) == [(1, 3, 2, 2, 0.02)]


def test_the_mean_weighs_every_day_the_same():
    # Day 1: one card, a fraud (1/2); day 2: ten genuine cards (0).
    source_df = rows((1, "A", 0.5, 1), *[(2, f"n{i}", 0.5, 0) for i in range(10)])
    assert card_precision_at_k(source_df, k=2).mean == pytest.approx(0.25)


def test_the_result_does_not_depend_on_the_order_of_the_rows():
    expected = card_precision_at_k(PERIOD, k=2)
    for seed in range(5):
        shuffled = PERIOD.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        assert card_precision_at_k(shuffled, k=2) == expected


def test_rows_already_reduced_to_one_per_day_and_card_give_the_same_result():
    # What a Spark caller may send: groupBy(day, card).agg(max(score), max(label)).
    reduced_df = PERIOD.groupby(["day", "card_key"], as_index=False).max()
    transactions = pd.concat([PERIOD, PERIOD.assign(fraud_probability=0.0, label=0)])
    assert card_precision_at_k(transactions, k=2) == card_precision_at_k(reduced_df, k=2)


def test_other_column_names_and_dates_as_days():
    source_df = PERIOD.rename(columns={"day": "TX_TIME_DAYS", "card_key": "CUSTOMER_ID",
                                       "fraud_probability": "predictions", "label": "TX_FRAUD"})
    result = card_precision_at_k(source_df, k=2, day_col="TX_TIME_DAYS", card_col="CUSTOMER_ID",
                                 score_col="predictions", label_col="TX_FRAUD")
    assert figures(result) == PERIOD_FIGURES

    dated = PERIOD.assign(day=PERIOD["day"].map(lambda day: f"2026-12-0{day}"))
    assert [day.card_precision for day in card_precision_at_k(dated, k=2).days] == [0.5, 0.0, 0.5, 0.0]


def test_to_frame_lists_the_days_in_order():
    expected_df = pd.DataFrame(PERIOD_FIGURES, columns=["day", "cards_ranked", "fraud_cards", "frauds_in_top_k",
                                                        "card_precision"])
    actual_df = card_precision_at_k(PERIOD.iloc[::-1], k=2).to_frame()
    pd.testing.assert_frame_equal(actual_df, expected_df)


# --- refused input ---------------------------------------------------------------------------------
def test_no_rows_is_refused_with_a_value_error():
    with pytest.raises(NoTransactionsError, match="no transactions") as refused:
        card_precision_at_k(PERIOD.iloc[0:0])
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "100"])
def test_k_below_one_or_not_whole_is_refused(k):
    with pytest.raises(TopKError, match="k must be a whole number of cards of at least 1") as refused:
        card_precision_at_k(PERIOD, k=k)
    assert isinstance(refused.value, ValueError)


def test_a_nan_score_is_refused_with_its_own_error():
    source_df = PERIOD.assign(fraud_probability=[np.nan, *PERIOD["fraud_probability"][1:-1], None])
    with pytest.raises(NaNScoreError, match=r"2 score\(s\) in 'fraud_probability' are NaN or missing") as refused:
        card_precision_at_k(source_df, k=2)
    assert isinstance(refused.value, ValueError)


def test_a_missing_column_is_named_with_those_present():
    expected = r"missing column\(s\) \['label'\]; the input has \['day', 'card_key', 'fraud_probability'\]"
    with pytest.raises(CardPrecisionInputError, match=expected):
        card_precision_at_k(PERIOD.drop(columns=["label"]))


@pytest.mark.parametrize("column, value, message", [
    ("label", 2, r"labels \('label'\) must be 0 or 1; 1 row\(s\) hold something else, e.g. 2"),
    ("card_key", None, r"1 row\(s\) have no card \('card_key'\)"),
    ("fraud_probability", "high", r"scores \('fraud_probability'\) must be numbers"),
])
def test_a_value_without_meaning_is_refused(column, value, message):
    source_df = PERIOD.astype({column: object})
    source_df.loc[0, column] = value
    with pytest.raises(CardPrecisionInputError, match=message):
        card_precision_at_k(source_df, k=2)


def test_a_single_card_key_where_a_collection_is_expected_is_refused():
    # set("AB") would leave out cards "A" and "B".
    with pytest.raises(TypeError, match="known_compromised must be a collection of card keys"):
        card_precision_at_k(PERIOD, k=2, known_compromised="AB")
    with pytest.raises(TypeError, match=r"compromised_by_day\[3\] must be a collection of card keys"):
        card_precision_at_k(PERIOD, k=2, compromised_by_day={3: "C"})


# --- against a brute-force count ----------------------------------------------------------------------
def brute_force(transactions: list[tuple], k: int, known: set, by_day: dict) -> list[tuple]:
    """The definition counted out directly: a card is alerted when fewer than k cards beat it
    (a higher score, or the same score and a lower key). No sorting, no pandas."""
    found: set = set()
    out = []
    for day in sorted({row[0] for row in transactions}):
        left_out = found | known
        for known_day, cards in by_day.items():
            if known_day <= day:
                left_out |= cards
        cards: dict = {}
        for row_day, card, score, label in transactions:
            if row_day == day and card not in left_out:
                best_score, any_fraud = cards.get(card, (-np.inf, 0))
                cards[card] = (max(best_score, score), max(any_fraud, label))

        def beats(other, card, cards=cards):
            return cards[other][0] > cards[card][0] or (cards[other][0] == cards[card][0] and other < card)

        alerted = [card for card in cards if sum(beats(other, card) for other in cards) < k]
        frauds = [card for card in alerted if cards[card][1] == 1]
        out.append((day, len(cards), sum(label for _, label in cards.values()), len(frauds), len(frauds) / k))
        found |= set(frauds)
    return out


def test_the_same_figures_as_a_brute_force_count_on_random_data():
    rng = np.random.default_rng(20261207)
    for _ in range(30):
        n_rows, n_cards, n_days = int(rng.integers(1, 250)), int(rng.integers(1, 40)), int(rng.integers(1, 7))
        days = rng.integers(0, n_days, n_rows)
        cards = rng.integers(0, n_cards, n_rows)
        # One decimal: many equal scores, so the ranking of ties is exercised.
        scores = np.round(rng.random(n_rows), 1)
        labels = (rng.random(n_rows) < 0.3).astype(int)
        k = int(rng.integers(1, 12))
        known = set(rng.choice(n_cards, size=int(rng.integers(0, 4))).tolist())
        by_day = {int(day): set(rng.choice(n_cards, size=2).tolist()) for day in rng.integers(-1, n_days + 1, 2)}
        transactions = list(zip(days.tolist(), cards.tolist(), scores.tolist(), labels.tolist(), strict=True))

        result = card_precision_at_k(pd.DataFrame(transactions, columns=COLUMNS), k=k,
                                     known_compromised=known, compromised_by_day=by_day)

        expected = brute_force(transactions, k, known, by_day)
        assert figures(result) == expected
        assert result.mean == pytest.approx(np.mean([day[-1] for day in expected]))


def test_the_module_does_not_import_pyspark():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['pyspark'] = None\n"
                           "import pipelines.model.card_precision"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
