"""The monitoring arithmetic without Spark: profiles, drift metrics, bands, k-of-n days,
realized figures and verdicts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from scipy import stats

from pipelines.core.config import MonitorSettings, PromoteSettings
from pipelines.model.evaluation import ScoreCurve, average_precision, confusion_at
from pipelines.monitoring.baseline import day_spread
from pipelines.monitoring.drift import MetricRow, column_metrics, mark_drifted
from pipelines.monitoring.performance import Cells, Figure, realized_performance
from pipelines.monitoring.profile import (
    BandSettings,
    coarse_groups,
    cut_points,
    distribution_bands,
    distribution_metrics,
    profile_of,
    psi,
)
from pipelines.monitoring.verdict import verdict_of

RNG = np.random.default_rng(3)
BASE_VALUES = RNG.normal(size=20_000)
EDGES = cut_points(np.quantile(BASE_VALUES, np.arange(1, 100) / 100))
BASE = profile_of(BASE_VALUES, EDGES)
GROUPS = coarse_groups(BASE.counts, 10)
BANDS = BandSettings(samples=1000, quantile=0.99, seed=1)


def day(values) -> np.ndarray:
    return profile_of(np.asarray(values, dtype=float), EDGES, valid_range=(BASE.minimum, BASE.maximum)).counts


def test_a_day_identical_to_the_baseline_measures_zero_drift():
    metrics = distribution_metrics(BASE, BASE.counts, GROUPS)
    assert all(float(values[0]) == pytest.approx(0.0, abs=1e-12) for values in metrics.values())


def test_psi_over_two_bins_is_the_textbook_sum():
    groups = np.array([0, 1])
    value = psi(np.array([50.0, 50.0]), np.array([80.0, 20.0]), groups)[0]
    assert value == pytest.approx((0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5))


def test_ks_and_wasserstein_from_the_bins_match_the_exact_statistics_of_a_shifted_sample():
    shifted = RNG.normal(0.5, 1.0, size=20_000)
    metrics = distribution_metrics(BASE, day(shifted), GROUPS)
    assert metrics["ks"][0] == pytest.approx(stats.ks_2samp(BASE_VALUES, shifted).statistic, abs=0.02)
    exact = stats.wasserstein_distance(BASE_VALUES, shifted) / BASE_VALUES.std(ddof=1)
    # The bins cover the 1st to 99th percentiles: the tails beyond count as out of range instead.
    assert metrics["wasserstein_std"][0] == pytest.approx(exact, rel=0.1)


def test_coarse_bins_hold_about_equal_baseline_mass_even_for_a_column_with_many_equal_values():
    assert np.bincount(GROUPS, weights=BASE.counts) / BASE.counts.sum() == pytest.approx(np.full(10, 0.1), abs=0.011)
    amounts = np.concatenate([np.zeros(3000), RNG.exponential(50, size=7000)])
    edges = cut_points(np.quantile(amounts, np.arange(1, 100) / 100))
    profile = profile_of(amounts, edges)
    assert profile.counts[0] == 0 and profile.counts[1] == 3000  # every 0 in one bin: [0, next cut)
    groups = coarse_groups(profile.counts, 10)
    # The zeros' bin is a coarse bin of its own; the groups are consecutive and in order.
    assert groups[1] not in (groups[0], groups[2])
    assert len(set(groups)) == groups.max() + 1 and np.all(np.diff(groups) >= 0)


def test_partial_profiles_merge_into_the_profile_of_the_whole():
    values = np.concatenate([RNG.normal(size=500), [np.nan, np.nan]])
    whole = profile_of(values, EDGES, valid_range=(-1.0, 1.0))
    merged = profile_of(values[:200], EDGES, valid_range=(-1.0, 1.0)).merged(
        profile_of(values[200:], EDGES, valid_range=(-1.0, 1.0)))
    assert merged.counts.tolist() == whole.counts.tolist()
    assert (merged.rows, merged.nulls, merged.out_of_range) == (502, 2, whole.out_of_range)
    assert merged.mean == pytest.approx(whole.mean) and merged.std == pytest.approx(whole.std)
    assert merged.null_share == pytest.approx(2 / 502)


@pytest.mark.parametrize("rows", [300, 3_000, 100_000])
def test_bands_hold_undrifted_days_at_any_size_where_a_fixed_rule_does_not(rows):
    bands = distribution_bands(BASE, GROUPS, rows, BANDS)
    undrifted = [distribution_metrics(BASE, day(RNG.normal(size=rows)), GROUPS) for _ in range(100)]
    fired = sum(any(m[name][0] > bands[name] for name in bands) for m in undrifted)
    assert fired <= 8  # 4 metrics at their 99th percentile: about 3 days in 100 (measured)


def test_fixed_rules_fire_on_small_undrifted_days_and_on_negligible_shifts_where_bands_and_effects_do_not():
    settings = MonitorSettings()
    # PSI > 0.1, the rule of thumb, on undrifted days of 60 rows: sampling noise alone.
    small = [distribution_metrics(BASE, day(RNG.normal(size=60)), GROUPS)["psi"][0] for _ in range(100)]
    assert sum(value > 0.1 for value in small) > 20
    assert sum(value > distribution_bands(BASE, GROUPS, 60, BANDS)["psi"] for value in small) <= 5
    # KS p < 0.05 on a day of a million rows shifted by 0.01 std, a change nobody would act on.
    shifted = RNG.normal(0.01, 1.0, size=1_000_000)
    assert stats.ks_1samp(shifted, stats.norm.cdf).pvalue < 0.05
    today = profile_of(shifted, EDGES, valid_range=(BASE.minimum, BASE.maximum))
    rows = column_metrics("V1", "input", BASE, today, GROUPS, settings)
    assert not any(row.out_of_band for row in rows)


def test_bands_narrow_as_days_grow_and_a_small_real_shift_is_caught_on_a_large_day():
    small, large = (distribution_bands(BASE, GROUPS, rows, BANDS) for rows in (500, 200_000))
    assert all(large[name] < small[name] for name in small)
    shifted = distribution_metrics(BASE, day(RNG.normal(0.1, 1.0, size=200_000)), GROUPS)
    assert shifted["ks"][0] > large["ks"] and shifted["ks"][0] < small["ks"]


def test_a_column_beyond_its_range_or_with_nulls_is_out_of_band_through_its_shares():
    settings = MonitorSettings()
    values = np.concatenate([RNG.normal(size=4000), np.full(100, 50.0), np.full(100, np.nan)])
    today = profile_of(values, EDGES, valid_range=(BASE.minimum, BASE.maximum))
    rows = {row.metric: row for row in column_metrics("V1", "input", BASE, today, GROUPS, settings)}
    # (the normal draws themselves land beyond the baseline's range at about 2 / 20,001 each)
    assert rows["out_of_range_share"].out_of_band
    assert rows["out_of_range_share"].value == pytest.approx(100 / 4100, abs=0.002)
    assert rows["null_share"].out_of_band and rows["null_share"].value == pytest.approx(100 / 4200)
    assert rows["mean"].limit is None and not rows["mean"].out_of_band
    # A minimum effect is never undercut, however many rows.
    assert all(rows[name].limit >= settings.min_effect[name] for name in ("psi", "js_distance", "ks"))


def row(column: str, out: bool) -> MetricRow:
    return MetricRow(column, "input", "psi", 1.0 if out else 0.0, None, 0.1, 0.1, out)


def test_a_column_is_drifted_only_when_out_of_band_on_k_of_the_last_n_monitored_days():
    today = [row("V1", True), row("V2", True), row("V3", False)]
    first = date(2026, 1, 1)
    history = {first: {"V2"}, first + timedelta(days=1): set(), first + timedelta(days=5): {"V1"}}
    marked = {r.column: r.drifted for r in mark_drifted(today, history, drift_days=2, window_days=3)}
    # Window: today and the two latest earlier monitored days (days 2 and 6): V1 twice, V2 once.
    assert marked == {"V1": True, "V2": False, "V3": False}
    assert all(r.drifted == r.out_of_band for r in mark_drifted(today, {}, drift_days=1, window_days=1))


def cells() -> Cells:
    # Scores with labels and decisions at threshold 0.5; frauds carry amounts.
    scores = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.1, 0.05])
    labels = np.array([1, 0, 1, 1, 0, 0, 0], dtype=float)
    counts = np.array([30, 5, 10, 10, 40, 400, 2000], dtype=float)
    amounts = np.array([3000.0, 0, 50.0, 950.0, 0, 0, 0])
    return Cells(scores=scores, decisions=(scores >= 0.5).astype(float), labels=labels, counts=counts, amounts=amounts)


def test_realized_figures_match_the_evaluation_of_the_same_rows_and_carry_intervals():
    c = cells()
    figures = {f.metric: f for f in realized_performance(
        c, normal_weight=1.0, monitor=MonitorSettings(bootstrap_samples=300), limits=PromoteSettings())}
    curve = ScoreCurve.from_counts(c.scores, c.counts * c.labels, c.counts * (1 - c.labels))
    confusion = confusion_at(curve, 0.5)
    assert figures["auc_pr"].value == pytest.approx(average_precision(curve))
    assert figures["recall"].value == pytest.approx(confusion.recall) == pytest.approx(40 / 50)
    assert figures["precision"].value == pytest.approx(confusion.precision)
    assert figures["alerts_per_100k"].value == pytest.approx(100_000 * 45 / c.counts.sum())
    assert figures["fraud_amount_caught_share"].value == pytest.approx(3050 / 4000)
    for figure in figures.values():
        assert figure.lower <= figure.value <= figure.upper
    weighted = {f.metric: f for f in realized_performance(
        c, normal_weight=10.0, monitor=MonitorSettings(bootstrap_samples=300), limits=PromoteSettings())}
    assert weighted["precision"].value == pytest.approx(40 / (40 + 50))


def test_a_figure_is_an_alert_when_its_whole_interval_misses_the_limit_and_a_warning_when_only_its_value_does():
    c = cells()
    strict = PromoteSettings(min_auc_pr=0.995, min_recall=0.83, alerts_per_100k=(0.0, 1e9))
    figures = {f.metric: f for f in realized_performance(
        c, normal_weight=1.0, monitor=MonitorSettings(bootstrap_samples=300), limits=strict)}
    assert figures["auc_pr"].status == "alert"
    assert figures["recall"].status == "warn"  # 0.80 < 0.83, but the interval reaches it
    assert figures["precision"].status == "ok" and figures["precision"].limit_low is None


def test_the_verdict_says_alert_for_a_drifted_column_warn_for_one_day_out_of_band_and_gives_reasons():
    drifted = MetricRow("V14", "input", "ks", 0.4, None, 0.05, 0.1, True, True)
    once = MetricRow("V2", "input", "psi", 0.3, None, 0.05, 0.1, True, False)
    calm = MetricRow("V3", "input", "psi", 0.01, None, 0.05, 0.1, False, False)
    verdict = verdict_of([drifted, once, calm], [], drift_days=2, window_days=3, confidence=0.95)
    assert verdict.verdict == "alert" and verdict.drifted_columns == ["V14"]
    assert verdict.out_of_band_columns == ["V14", "V2"]
    assert verdict.reasons[0].startswith("V14 drifted") and verdict.reasons[1].startswith("V2 out of band today")
    assert verdict_of([once, calm], [], drift_days=2, window_days=3, confidence=0.95).verdict == "warn"
    low = Figure("auc_pr", 0.5, 0.4, 0.6, 0.8, None, "alert")
    only = verdict_of([calm], [low], drift_days=2, window_days=3, confidence=0.95)
    assert only.verdict == "alert"
    assert "realized auc_pr 0.5 (95% interval 0.4 to 0.6) below the gate's 0.8" in only.reasons[0]
    assert verdict_of([calm], [], drift_days=2, window_days=3, confidence=0.95).verdict == "ok"


def test_a_band_is_never_narrower_than_how_far_the_fitted_days_stray_from_each_other():
    # Two fitted days that differ as the real sample's two days do (its V1: KS 0.39 between them).
    first, second = RNG.normal(0.0, 1.0, size=3000), RNG.normal(0.6, 1.0, size=3000)
    edges = cut_points(np.quantile(np.concatenate([first, second]), np.arange(1, 100) / 100))
    days = [{"V1": profile_of(first, edges)}, {"V1": profile_of(second, edges)}]
    pooled = {"V1": days[0]["V1"].merged(days[1]["V1"])}
    groups = {"V1": coarse_groups(pooled["V1"].counts, 10)}
    spread = day_spread(pooled, days, groups)["V1"]
    assert spread["ks"] == pytest.approx(stats.ks_2samp(first, second).statistic, abs=0.03)
    settings = MonitorSettings()
    like_a_fitted_day = profile_of(RNG.normal(0.6, 1.0, size=3000), edges, valid_range=(-9.0, 9.0))
    plain = column_metrics("V1", "input", pooled["V1"], like_a_fitted_day, groups["V1"], settings)
    widened = column_metrics("V1", "input", pooled["V1"], like_a_fitted_day, groups["V1"], settings, spread)
    assert any(row.out_of_band for row in plain)  # sampling noise alone calls it drift
    assert not any(row.out_of_band for row in widened)
    far = profile_of(RNG.normal(2.0, 1.0, size=3000), edges, valid_range=(-9.0, 9.0))
    assert any(row.out_of_band for row in column_metrics("V1", "input", pooled["V1"], far, groups["V1"], settings,
                                                          spread))
    assert day_spread(pooled, days[:1], groups) == {}
