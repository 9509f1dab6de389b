"""Card Precision@k: of the k cards an investigation team can check in a day, how many were
compromised. The one definition that training, the promotion gate, monitoring and the
benchmarks all use.

It follows the Fraud Detection Handbook (Le Borgne et al., chapters 3 and 4, "Card Precision
top-k"): investigators contact cardholders, not transactions, so a day's alerts are cards.

For each day, in ascending order:

1. The day's transactions are grouped by card: a card's score is its highest transaction
   score, its label its highest label (a card with one fraud is a compromised card).
2. Cards are left out when they were **found** on an earlier day of the same period (fraudulent
   and in that day's top k), when they are in ``known_compromised`` (known before the period),
   or when ``compromised_by_day`` names them on this day or an earlier one.
3. The k remaining cards with the highest scores are the day's alerts. Equal scores are ranked
   by card key, ascending, so the result never depends on the rows' order.
4. CP@k of the day = compromised cards among the alerts / k. Always divided by k: a day with
   fewer than k cards (or fewer than k compromised ones) cannot reach 1.

The period's figure is the mean of the daily CP@k over the days that have transactions
(a day whose cards were all left out counts, as 0).

pandas and numpy only: the portable scorer and the service import the model package without
pyspark, and a Spark caller can hand over one row per (day, card) (``groupBy(day, card)`` with
the maximum score and label), which gives the same result as the transactions themselves.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from pipelines.core.errors import InvalidArgumentError, NoDataError, SchemaError

DEFAULT_K = 100


class CardPrecisionInputError(SchemaError, ValueError):
    """The transactions cannot be ranked: a column is missing, or a day, card, score or label
    holds a value the definition has no meaning for."""


class NaNScoreError(CardPrecisionInputError):
    """A score is NaN (or missing): the ranking, hence the day's alerts, would be undefined."""


class NoTransactionsError(NoDataError, ValueError):
    """The input holds no transactions: there is no day to measure."""


class TopKError(InvalidArgumentError, ValueError):
    """k is not a whole number of at least 1."""


@dataclass(frozen=True)
class DayCardPrecision:
    """One day's figures.

    :param cards_ranked: the day's cards that competed for its alerts (after the cards left out).
    :param fraud_cards: how many of those are compromised: at most ``min(fraud_cards, k)`` can
        be found, so ``min(fraud_cards, k) / k`` is the best CP@k the day allows.
    :param frauds_in_top_k: compromised cards among the day's k alerts.
    :param card_precision: ``frauds_in_top_k / k``.
    """

    day: Hashable
    cards_ranked: int
    fraud_cards: int
    frauds_in_top_k: int
    card_precision: float


@dataclass(frozen=True)
class CardPrecision:
    """CP@k over a period: one :class:`DayCardPrecision` per day, in day order, and their mean."""

    k: int
    days: tuple[DayCardPrecision, ...]

    @property
    def mean(self) -> float:
        """The mean of the daily CP@k (each day counts once, whatever its number of cards)."""
        return sum(day.card_precision for day in self.days) / len(self.days)

    def to_frame(self) -> pd.DataFrame:
        """The daily figures as a table: ``day``, ``cards_ranked``, ``fraud_cards``,
        ``frauds_in_top_k``, ``card_precision``."""
        columns = ["day", "cards_ranked", "fraud_cards", "frauds_in_top_k", "card_precision"]
        return pd.DataFrame([[getattr(day, name) for name in columns] for day in self.days], columns=columns)


def card_precision_at_k(
    transactions: pd.DataFrame,
    *,
    k: int = DEFAULT_K,
    day_col: str = "day",
    card_col: str = "card_key",
    score_col: str = "fraud_probability",
    label_col: str = "label",
    known_compromised: Iterable[Hashable] = (),
    compromised_by_day: Mapping[Hashable, Iterable[Hashable]] | None = None,
) -> CardPrecision:
    """Card Precision@k of each day of ``transactions`` and its mean (see the module's docstring).

    :param transactions: one row per transaction (or per day and card, already reduced to the
        maximum score and label), in any order. Days may be anything that sorts (day numbers,
        dates, ISO date strings); card keys likewise, for the ranking of equal scores.
    :param k: how many cards are checked a day (at least 1).
    :param known_compromised: cards known to be compromised before the period: left out of every day.
    :param compromised_by_day: ``{day: set of cards}``, cards that become known to be compromised
        at the start of ``day`` (say, from frauds reported with a delay): left out of that day and
        every later one. Its days are of the same type as the input's; one here need not have
        transactions.
    :raises NoTransactionsError: no rows.
    :raises TopKError: ``k`` below 1 or not a whole number.
    :raises NaNScoreError: a score is NaN or missing (an infinite score ranks first or last).
    :raises CardPrecisionInputError: a missing column, a missing day or card, a score that is
        not a number, a label other than 0 or 1.
    :raises TypeError: a single card key given where a collection of them is expected.

    Example::

        # The Handbook's protocol: frauds of the training days are known before the test
        # period; a fraud on day d becomes known at the start of day d + delay + 1.
        result = card_precision_at_k(
            test_rows, k=100, day_col="TX_TIME_DAYS", card_col="CUSTOMER_ID",
            score_col="predictions", label_col="TX_FRAUD",
            known_compromised=set(train_rows.loc[train_rows.TX_FRAUD == 1, "CUSTOMER_ID"]),
            compromised_by_day={day + delay + 1: set(cards) for day, cards in delay_frauds.items()},
        )
        result.mean, result.to_frame()
    """
    k = _checked_k(k)
    per_card = _cards_per_day(transactions, day_col=day_col, card_col=card_col, score_col=score_col,
                              label_col=label_col)
    left_out = _card_set(known_compromised, "known_compromised")
    newly_known = sorted(((day, _card_set(cards, f"compromised_by_day[{day!r}]"))
                          for day, cards in (compromised_by_day or {}).items()), key=operator.itemgetter(0))
    days: list[DayCardPrecision] = []
    for day, cards in per_card.groupby("day", sort=True):
        while newly_known and newly_known[0][0] <= day:
            left_out.update(newly_known.pop(0)[1])
        ranked = cards[~cards["card"].isin(left_out)]
        # The highest score first; equal scores by card key, so the row order never matters.
        ranked = ranked.sort_values(["score", "card"], ascending=[False, True])
        alerts = ranked.head(k)
        found = alerts.loc[alerts["label"] == 1, "card"]
        days.append(DayCardPrecision(day=day, cards_ranked=len(ranked), fraud_cards=int(ranked["label"].sum()),
                                     frauds_in_top_k=len(found), card_precision=len(found) / k))
        # The investigators have seen these: a card blocked today does not alert tomorrow.
        left_out.update(found)
    return CardPrecision(k=k, days=tuple(days))


def _card_set(cards: Iterable[Hashable], name: str) -> set[Hashable]:
    # A lone key would otherwise be taken apart into its characters, each "a card".
    if isinstance(cards, (str, bytes)):
        raise TypeError(f"{name} must be a collection of card keys, got the single key {cards!r}: "
                        f"wrap it, e.g. {{{cards!r}}}")
    return set(cards)


def _checked_k(k: int) -> int:
    if isinstance(k, bool):
        raise TopKError(f"k must be a whole number of cards of at least 1, got {k!r}")
    try:
        whole = operator.index(k)
    except TypeError:
        raise TopKError(f"k must be a whole number of cards of at least 1, got {k!r}") from None
    if whole < 1:
        raise TopKError(f"k must be a whole number of cards of at least 1, got {whole}")
    return whole


def _cards_per_day(
    transactions: pd.DataFrame, *, day_col: str, card_col: str, score_col: str, label_col: str
) -> pd.DataFrame:
    """Checked input reduced to one row per day and card: ``day``, ``card``, ``score`` (the
    highest) and ``label`` (1 if any transaction is a fraud)."""
    wanted = [day_col, card_col, score_col, label_col]
    missing = [name for name in wanted if name not in transactions.columns]
    if missing:
        raise CardPrecisionInputError(
            f"card precision: missing column(s) {missing}; the input has {list(transactions.columns)}")
    if len(transactions) == 0:
        raise NoTransactionsError(
            f"card precision: no transactions (0 rows in {wanted}): there is no day to measure")
    rows = transactions[wanted]
    for name, what in ((day_col, "day"), (card_col, "card")):
        absent = int(rows[name].isna().sum())
        if absent:
            raise CardPrecisionInputError(f"card precision: {absent} row(s) have no {what} ({name!r})")
    score = rows[score_col]
    if not pd.api.types.is_numeric_dtype(score) or pd.api.types.is_bool_dtype(score):
        raise CardPrecisionInputError(
            f"card precision: scores ({score_col!r}) must be numbers, got dtype {score.dtype}")
    not_a_number = score.isna()
    if not_a_number.any():
        first_day = rows.loc[not_a_number, day_col].iloc[0]
        raise NaNScoreError(f"card precision: {int(not_a_number.sum())} score(s) in {score_col!r} are NaN or "
                            f"missing (the first on day {first_day!r}): the day's ranking would be undefined")
    label = rows[label_col]
    bad_labels = ~label.isin([0, 1])
    if bad_labels.any():
        examples = sorted({repr(value) for value in label[bad_labels]})[:3]
        raise CardPrecisionInputError(
            f"card precision: labels ({label_col!r}) must be 0 or 1; {int(bad_labels.sum())} row(s) "
            f"hold something else, e.g. {', '.join(examples)}")
    return (
        pd.DataFrame({"day": rows[day_col].to_numpy(), "card": rows[card_col].to_numpy(),
                      "score": score.to_numpy(dtype=float), "label": label.to_numpy(dtype=int)})
        .groupby(["day", "card"], sort=False, as_index=False)
        .agg(score=("score", "max"), label=("label", "max"))
    )
