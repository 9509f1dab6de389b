"""History features (pipelines/features, jobs/features.py): the Handbook's definitions, point-in-time.

Small inline tables for the rules (ties at one instant, window edges, flags in the profile's
zone), a brute-force computation in Python for the whole definition on random rows, and the
job on Delta tables: a day computed alone equals it computed with every other day; later rows
never change earlier features; gaps, stale days and other definitions are refused or caught up.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs import features as features_job
from pipelines.core.cli import run_main
from pipelines.core.config import FeatureSettings, HistoryFeatures, load_settings, with_state_in
from pipelines.core.errors import NoDataError, SchemaError
from pipelines.features.definitions import feature_columns
from pipelines.features.history import with_features

SCHEMA = ("transaction_id string, event_time timestamp, txn_date date, card_key string, terminal_id string, "
          "amount decimal(18,2), label int")
TABLE_SCHEMA = SCHEMA + ", source_file string, ingested_at timestamp"
HANDBOOK = FeatureSettings()
DAY = timedelta(days=1)
INGESTED = datetime(2026, 11, 1, tzinfo=timezone.utc)


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """An instant on day ``day`` of April 2018 (UTC, naive as Spark's session takes it)."""
    return datetime(2018, 4, 1, hour, minute, second) + (day - 1) * DAY


def row(tid: str, when: datetime, card: str = "c1", terminal: str = "t1", amount: str = "10.00", label: int = 0):
    return (tid, when, when.date(), card, terminal, Decimal(amount), label)


def features_of(spark, rows, settings: FeatureSettings = HANDBOOK, zone: str = "UTC") -> dict[str, dict]:
    frame = spark.createDataFrame(rows, SCHEMA)
    return {r["transaction_id"]: r.asDict() for r in with_features(frame, settings, time_zone=zone).collect()}


def test_of_two_transactions_at_one_instant_the_first_by_id_does_not_see_the_second(spark):
    got = features_of(spark, [row("b", at(1), amount="30.00"), row("a", at(1), amount="10.00"),
                              row("c", at(1, 12, 0, 1), amount="20.01")])
    assert [got[t]["card_tx_count_1d"] for t in "abc"] == [1, 2, 3]
    assert got["a"]["card_mean_amount_1d"] == 10.0
    assert got["b"]["card_mean_amount_1d"] == 20.0
    assert got["c"]["card_mean_amount_1d"] == (6001 / 3) / 100


def test_a_card_window_holds_t_minus_w_exclusive_to_t_inclusive(spark):
    got = features_of(spark, [row("1", at(1)), row("2", at(2)), row("3", at(2, 12, 0, 1)), row("4", at(8, 12))])
    assert got["2"]["card_tx_count_1d"] == 1  # the row exactly a day earlier is out of (t - 1d, t]
    assert got["3"]["card_tx_count_1d"] == 2
    assert got["4"]["card_tx_count_7d"] == 3  # 1 is exactly 7 days earlier: out
    assert got["4"]["card_tx_count_30d"] == 4


def test_a_terminal_window_ends_seven_days_back_inclusive_and_counts_known_fraud(spark):
    rows = [row("1", at(1), card="x", label=1), row("2", at(1, 13), card="y"), row("3", at(3), card="z", label=1),
            row("q", at(8), card="w"),            # 1 is exactly 7 days back: in; 2 is an hour later: out
            row("r", at(9, 12, 30), card="w")]    # (t-8d, t-7d] holds 2 only; (t-14d, t-7d] holds 1 and 2
    got = features_of(spark, rows)
    assert (got["q"]["terminal_tx_count_1d"], got["q"]["terminal_fraud_share_1d"]) == (1, 1.0)
    assert (got["r"]["terminal_tx_count_1d"], got["r"]["terminal_fraud_share_1d"]) == (1, 0.0)
    assert (got["r"]["terminal_tx_count_7d"], got["r"]["terminal_fraud_share_7d"]) == (2, 0.5)
    assert (got["1"]["terminal_tx_count_30d"], got["1"]["terminal_fraud_share_30d"]) == (0, 0.0)


def test_weekend_and_night_are_read_on_the_profiles_clock_not_the_sessions(spark):
    # 2018-04-01 was a Sunday. 22:30 UTC is Monday 00:30 in Brussels (UTC+2 in summer).
    late_sunday = datetime(2018, 4, 1, 22, 30)
    utc = features_of(spark, [row("1", late_sunday)])["1"]
    brussels = features_of(spark, [row("1", late_sunday)], zone="Europe/Brussels")["1"]
    assert (utc["is_weekend"], utc["is_night"]) == (1, 0)
    assert (brussels["is_weekend"], brussels["is_night"]) == (0, 1)
    edges = features_of(spark, [row("a", datetime(2018, 4, 2, 6, 59, 59)), row("b", datetime(2018, 4, 2, 7))])
    assert (edges["a"]["is_night"], edges["b"]["is_night"]) == (1, 0)


def brute_force(rows, settings: FeatureSettings) -> dict[str, dict]:
    """The definitions, computed the slow and obvious way."""
    micros = {r[0]: int((r[1] - datetime(1970, 1, 1)).total_seconds() * 1_000_000) for r in rows}
    day = 86_400_000_000
    out = {}
    for tid, when, _, card, terminal, _amount, _label in rows:
        t, got = micros[tid], {}
        for entity, spec, key_at in (("card", settings.card, 3), ("terminal", settings.terminal, 4)):
            key = card if entity == "card" else terminal
            for w in spec.windows_days:
                end, start = t - spec.delay_days * day, t - (spec.delay_days + w) * day
                if spec.delay_days == 0:
                    inside = [r for r in rows if r[key_at] == key and start < micros[r[0]] <= end
                              and (micros[r[0]], r[0]) <= (t, tid)]
                else:
                    inside = [r for r in rows if r[key_at] == key and start < micros[r[0]] <= end]
                n = len(inside)
                for aggregate in spec.aggregates:
                    name = {"count": "tx_count"}.get(aggregate, aggregate)
                    if aggregate == "count":
                        value = n
                    elif aggregate == "mean_amount":
                        value = (float(sum(int(r[5] * 100) for r in inside)) / n) / 100 if n else 0.0
                    else:
                        value = float(sum(r[6] for r in inside)) / n if n else 0.0
                    got[f"{entity}_{name}_{w}d"] = value
        got["is_weekend"] = int(when.weekday() >= 5)
        got["is_night"] = int(when.hour <= 6)
        out[tid] = got
    return out


def random_rows(seed: int, n: int = 240):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        # Whole hours over 40 days: many transactions share an instant, and windows end on rows.
        when = datetime(2018, 4, 1) + timedelta(hours=rng.randrange(40 * 24))
        rows.append(row(f"id{rng.randrange(10**6):06d}-{i}", when, card=f"c{rng.randrange(6)}",
                        terminal=f"t{rng.randrange(4)}", amount=f"{rng.randrange(1, 50000) / 100:.2f}",
                        label=int(rng.random() < 0.2)))
    return rows


@pytest.mark.parametrize("settings", [
    HANDBOOK,
    FeatureSettings(card=HistoryFeatures(windows_days=(2, 5), aggregates=("mean_amount", "count", "fraud_share"),
                                         delay_days=2),
                    terminal=HistoryFeatures(windows_days=(3,), aggregates=("count", "mean_amount"))),
], ids=["handbook", "other-windows"])
def test_every_feature_equals_a_brute_force_computation_exactly(spark, settings):
    rows = random_rows(7)
    got = features_of(spark, rows, settings)
    expected = brute_force(rows, settings)
    columns = feature_columns(settings)
    mismatches = [(tid, column, got[tid][column], expected[tid][column])
                  for tid in expected for column in columns if got[tid][column] != expected[tid][column]]
    assert not mismatches, mismatches[:5]


def test_later_transactions_and_labels_never_change_an_earlier_transactions_features(spark):
    rows = random_rows(11)
    cutoff = datetime(2018, 4, 25)
    earlier = [r for r in rows if r[1] < cutoff]
    later = [r for r in rows if r[1] >= cutoff]
    flipped = [(*r[:6], 1 - r[6]) for r in later]  # and later labels, whatever they say
    alone = features_of(spark, earlier)
    for more in (later, flipped):
        with_later = features_of(spark, earlier + more)
        assert {tid: with_later[tid] for tid in alone} == alone


# --- The job, on Delta tables ---------------------------------------------------------------

# The job's tests use short windows (history of 4 days), so that a few days of rows exercise it.
SHORT = FeatureSettings(card=HistoryFeatures(windows_days=(1, 2), aggregates=("count", "mean_amount")),
                        terminal=HistoryFeatures(windows_days=(1, 2), aggregates=("count", "fraud_share"),
                                                 delay_days=2))


@pytest.fixture
def settings(tmp_path):
    return replace(with_state_in(load_settings("payments"), tmp_path), features=SHORT)


def write_transactions(spark, settings, rows, *, ingested_at: datetime = INGESTED, mode: str = "append"):
    frame = spark.createDataFrame([(*r, "day.csv", ingested_at) for r in rows], TABLE_SCHEMA)
    frame.write.format("delta").mode(mode).partitionBy("txn_date").save(settings.tables.transactions_path)


def features_table(spark, settings):
    return spark.read.format("delta").load(settings.tables.path("features"))


def days_of_rows(first: int, last: int, per_day: int = 6, seed: int = 3):
    rng = random.Random(seed)
    return [row(f"d{d:02d}-{i}", at(d, rng.randrange(24), rng.randrange(60)), card=f"c{rng.randrange(4)}",
                terminal=f"t{rng.randrange(3)}", amount=f"{rng.randrange(100, 9000) / 100:.2f}",
                label=int(rng.random() < 0.25))
            for d in range(first, last + 1) for i in range(per_day)]


FEATURE_AND_KEY = ["transaction_id", "txn_date", *feature_columns(SHORT)]


def test_a_day_computed_alone_equals_it_computed_with_the_whole_history(spark, settings):
    write_transactions(spark, settings, days_of_rows(1, 10, per_day=12))
    whole = features_job.run(spark, settings, days=None, computed_at=INGESTED)
    assert whole.rows == 10 * 12 and len(whole.days) == 10
    day = date(2018, 4, 9)
    from_whole = features_table(spark, settings).filter(F.col("txn_date") == day).select(FEATURE_AND_KEY)
    from_whole = spark.createDataFrame(from_whole.collect(), from_whole.schema)  # before the table changes
    alone = features_job.run(spark, settings, days=[day], computed_at=INGESTED)
    assert alone.days == (day,) and alone.rows == 12
    table = features_table(spark, settings)
    assert table.count() == 10 * 12
    assert_df_equality(table.filter(F.col("txn_date") == day).select(FEATURE_AND_KEY), from_whole,
                       ignore_row_order=True)
    assert {r[0] for r in table.select("feature_set").distinct().collect()} == {whole.feature_set}


def test_a_gap_in_the_history_is_refused_naming_the_days_unless_allowed(spark, settings):
    write_transactions(spark, settings, [r for r in days_of_rows(1, 8) if r[2] not in (date(2018, 4, 5),
                                                                                         date(2018, 4, 6))])
    with pytest.raises(NoDataError, match=r"2018-04-05, 2018-04-06, inside.*--allow-gaps"):
        features_job.run(spark, settings, days=[date(2018, 4, 8)], computed_at=INGESTED)
    features_job.run(spark, settings, days=[date(2018, 4, 4)], computed_at=INGESTED)  # before the gap: fine
    with pytest.raises(NoDataError, match="no transactions on 2018-04-05"):
        features_job.run(spark, settings, days=[date(2018, 4, 5)], computed_at=INGESTED, allow_gaps=True)
    assert features_table(spark, settings).count() == 6  # the refusals wrote nothing
    done = features_job.run(spark, settings, days=[date(2018, 4, 8)], computed_at=INGESTED, allow_gaps=True)
    assert done.rows == 6


@contextmanager
def driver_time_zone(zone: str):
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_late_file_makes_the_following_days_stale_and_catch_up_recomputes_them(spark, settings):
    write_transactions(spark, settings, days_of_rows(1, 12))
    features_job.run(spark, settings, days=None, computed_at=INGESTED)
    assert features_job.list_stale(spark, settings) == []
    with driver_time_zone("Europe/Brussels"):  # what the history held is an instant, not a wall clock
        assert features_job.list_stale(spark, settings) == []
    before = {r["transaction_id"]: r["card_tx_count_2d"] for r in features_table(spark, settings).collect()}
    late = [row("late-1", at(5, 1), card="c1", terminal="t1")]
    write_transactions(spark, settings, late, ingested_at=INGESTED + DAY)
    stale = features_job.list_stale(spark, settings)
    # Day 5 itself and every day whose history reaches it (4 days, and a margin of one).
    assert [s.day for s in stale] == [date(2018, 4, 5) + n * DAY for n in range(0, 6)]
    assert stale[0].reason.startswith("its history changed")
    caught = features_job.run(spark, settings, days=None, catch_up=True, computed_at=INGESTED + DAY)
    assert caught.days == tuple(s.day for s in stale)
    assert features_job.list_stale(spark, settings) == []
    after = {r["transaction_id"]: r["card_tx_count_2d"] for r in features_table(spark, settings).collect()}
    assert after["late-1"] >= 1
    changed = {tid for tid in before if before[tid] != after[tid]}
    assert changed and all("d05" <= tid[:3] <= "d06" for tid in changed)


def test_other_definitions_are_refused_for_some_days_and_all_recomputes_every_day(spark, settings):
    write_transactions(spark, settings, days_of_rows(1, 6))
    features_job.run(spark, settings, days=None, computed_at=INGESTED)
    # A commit that writes no rows (a table property) is not taken for other definitions.
    spark.sql(f"ALTER TABLE delta.`{settings.tables.path('features')}` SET TBLPROPERTIES ('note' = 'x')")
    features_job.run(spark, settings, days=[date(2018, 4, 6)], computed_at=INGESTED)
    other = replace(settings, features=replace(settings.features, night_hours=(0, 5)))
    with pytest.raises(SchemaError, match=r"other definitions.*features --all"):
        features_job.run(spark, other, days=[date(2018, 4, 6)], computed_at=INGESTED)
    assert [s.reason for s in features_job.list_stale(spark, other)][:1] == ["computed with other definitions"]
    fewer = replace(settings, features=replace(settings.features, weekend_flag=False))
    redone = features_job.run(spark, fewer, days=None, computed_at=INGESTED)
    table = features_table(spark, settings)
    assert "is_weekend" not in table.columns and table.count() == 36
    assert {r[0] for r in table.select("feature_set").distinct().collect()} == {redone.feature_set}


def test_the_creditcard_profile_is_refused_with_exit_2_before_spark_starts(capsys):
    assert run_main(features_job.main, ["--env", "local", "--date", "2013-09-01"]) == 2
    assert "[profile] kind is 'creditcard'" in capsys.readouterr().err


def test_options_that_do_not_go_together_exit_2(capsys):
    assert run_main(features_job.main, ["--env", "payments", "--all", "--date", "2018-04-01"]) == 2
    assert "--all computes every day" in capsys.readouterr().err
    assert run_main(features_job.main, ["--env", "payments", "--list-stale", "--catch-up"]) == 2


def label_history(spark, rows):
    return spark.createDataFrame(rows, "transaction_id string, label int, labelled_at timestamp, version long")


def test_a_label_merged_later_counts_from_the_day_after_it_became_known(spark):
    # x (day 1) is fraud only by a chargeback labelled on day 9 at 10:00, and back to 0 on day 10.
    rows = [row("x", at(1), card="a"), row("y", at(1, 13), card="b", label=1),
            row("q8", at(8, 13), card="w"), row("q9", at(9, 23), card="w"), row("q10", at(10, 11), card="w"),
            row("q11", at(11, 11), card="w")]
    history = label_history(spark, [("x", 1, at(9, 10), 1), ("x", 0, at(10, 9), 2), ("y", 1, at(2), 3)])
    frame = spark.createDataFrame(rows, SCHEMA)
    got = {r["transaction_id"]: r.asDict()
           for r in with_features(frame, HANDBOOK, time_zone="UTC", label_history=history).collect()}
    without = features_of(spark, rows)
    # Day 8 and day 9 began before the chargeback: x counts as the file says (0); y is fraud.
    assert got["q8"]["terminal_fraud_share_7d"] == without["q8"]["terminal_fraud_share_7d"] == 0.5
    assert got["q9"]["terminal_fraud_share_7d"] == 0.5
    # Day 10 began after it: x is fraud. Day 11 began after its reversal: x is not.
    assert (got["q10"]["terminal_tx_count_7d"], got["q10"]["terminal_fraud_share_7d"]) == (2, 1.0)
    assert got["q11"]["terminal_fraud_share_7d"] == 0.5
    assert got["q10"]["terminal_fraud_share_30d"] == 1.0 and got["q10"]["terminal_tx_count_1d"] == 0
    # A chargeback only moves fraud shares, and a label the file already had changes nothing.
    unmoved = {k: v for k, v in got["q10"].items() if "fraud_share" not in k}
    assert unmoved == {k: v for k, v in without["q10"].items() if "fraud_share" not in k}


def test_a_day_begins_in_the_profiles_zone_for_labels(spark):
    # Brussels is UTC+2 in April: day 10 begins there at 22:00 UTC on day 9.
    rows = [row("x", at(1), card="a"), row("q", datetime(2018, 4, 9, 23, 0), card="w")]
    frame = spark.createDataFrame(rows, SCHEMA).withColumn("txn_date", F.lit(date(2018, 4, 10)))
    before = label_history(spark, [("x", 1, datetime(2018, 4, 9, 21, 59), 1)])
    after = label_history(spark, [("x", 1, datetime(2018, 4, 9, 22, 1), 1)])
    share = {name: with_features(frame, HANDBOOK, time_zone="Europe/Brussels", label_history=history)
             .filter("transaction_id = 'q'").first()["terminal_fraud_share_7d"]
             for name, history in (("before", before), ("after", after))}
    assert share == {"before": 1.0, "after": 0.0}


def test_the_job_counts_a_chargeback_from_the_label_job_for_the_days_after_it(spark, settings, tmp_path):
    from jobs import label as label_job

    write_transactions(spark, settings, days_of_rows(1, 6, per_day=4))
    first = features_job.run(spark, settings, days=None, computed_at=INGESTED)
    legit = next(r for r in days_of_rows(1, 6, per_day=4) if r[0].startswith("d04") and r[6] == 0)
    chargebacks = tmp_path / "chargebacks.csv"
    chargebacks.write_text(f"transaction_id,Class\n{legit[0]},1\n")
    # Labelled during day 6 (UTC): day 6's features keep the old label, a day 7 would see it.
    label_job.run(spark, settings, file=str(chargebacks), labelled_at=datetime(2018, 4, 6, 9, tzinfo=timezone.utc))
    before = sorted(features_table(spark, settings).drop("computed_at").collect())
    again = features_job.run(spark, settings, days=None, computed_at=INGESTED)
    assert again.rows == first.rows
    assert sorted(features_table(spark, settings).drop("computed_at").collect()) == before
    write_transactions(spark, settings, [row("d07-q", at(7, 12), card="c0", terminal=legit[4])])
    features_job.run(spark, settings, days=[date(2018, 4, 7)], computed_at=INGESTED)
    table = {r["transaction_id"]: r for r in features_table(spark, settings).collect()}
    # SHORT's terminal windows end two days back: day 7 12:00's 2-day window is (day 3 12:00, day 5 12:00].
    got = table["d07-q"]
    inside = at(7, 12) - 4 * DAY < legit[1] <= at(7, 12) - 2 * DAY
    assert inside
    frauds = [r for r in days_of_rows(1, 6, per_day=4)
              if r[4] == legit[4] and at(7, 12) - 4 * DAY < r[1] <= at(7, 12) - 2 * DAY]
    expected = (sum(r[6] for r in frauds) + 1) / len(frauds)
    assert got["terminal_fraud_share_2d"] == expected
    assert got["terminal_tx_count_2d"] == len(frauds)
