"""Metrics checked against values worked out by hand on small examples."""

from __future__ import annotations

import random

import pytest
from chispa import assert_df_equality
from pydantic import ValidationError

from pipelines.model.evaluation import (
    ScoreCurve,
    ThresholdPolicy,
    average_precision,
    average_precision_interval,
    binary_metrics,
    choose_threshold,
    confusion_at,
    recall_at_precision,
    roc_auc,
    score_counts,
)

# Six scored rows, best score first: labels 1, 0, 1, 1, 0, 0.
#   threshold 0.9: TP 1 FP 0 -> P 1,   R 1/3
#   threshold 0.8: TP 1 FP 1 -> P 1/2, R 1/3
#   threshold 0.7: TP 2 FP 1 -> P 2/3, R 2/3
#   threshold 0.6: TP 3 FP 1 -> P 3/4, R 1
SCORES = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]
LABELS = [1, 0, 1, 1, 0, 0]


def curve_of_rows(scores, labels) -> ScoreCurve:
    return ScoreCurve.from_counts(scores, labels, [1 - label for label in labels])


def test_average_precision_by_hand():
    expected = (1 / 3) * 1 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 4)
    assert average_precision(curve_of_rows(SCORES, LABELS)) == pytest.approx(expected)


def test_roc_auc_by_hand():
    # Pairs (fraud, normal) ranked right: fraud 0.9 beats 3 normals, 0.7 and 0.6 beat 2 each: 7 of 9.
    assert roc_auc(curve_of_rows(SCORES, LABELS)) == pytest.approx(7 / 9)


def test_tied_scores_count_half_in_roc_auc():
    assert roc_auc(curve_of_rows([0.5, 0.5], [1, 0])) == pytest.approx(0.5)


def test_confusion_at_a_threshold_between_scores():
    at = confusion_at(curve_of_rows(SCORES, LABELS), 0.65)
    assert (at.true_positives, at.false_positives, at.false_negatives, at.true_negatives) == (2, 1, 1, 2)
    assert at.precision == pytest.approx(2 / 3)
    assert at.recall == pytest.approx(2 / 3)
    assert at.f1 == pytest.approx(2 / 3)


def test_confusion_above_every_score_flags_nothing():
    at = confusion_at(curve_of_rows(SCORES, LABELS), 0.95)
    assert (at.true_positives, at.false_positives, at.precision, at.recall) == (0, 0, 0.0, 0.0)


def test_max_f1_threshold_is_the_best_cut():
    # F1 at 0.9: 0.5; at 0.8: 0.4; at 0.7: 2/3; at 0.6: 6/7 (best); lower cuts add only normals.
    assert choose_threshold(ThresholdPolicy(name="max_f1"), curve_of_rows(SCORES, LABELS)) == 0.6


def test_normal_weight_scales_the_normal_counts():
    weighted = ScoreCurve.from_counts([0.9, 0.1], [1, 0], [1, 5]).with_normal_weight(10)
    at = confusion_at(weighted, 0.5)
    assert (at.true_positives, at.false_positives, at.true_negatives) == (1, 10, 50)


def test_metrics_have_the_same_names_with_a_prefix():
    metrics = binary_metrics(curve_of_rows(SCORES, LABELS), 0.6, prefix="val_")
    assert {"val_auc_pr", "val_auc_roc", "val_precision", "val_recall", "val_f1"} <= set(metrics)
    assert metrics["val_recall"] == 1.0


def test_score_counts_groups_rows_by_score(spark):
    source_df = spark.createDataFrame(
        [(0.9, 1, 250.0), (0.9, 0, 3.0), (0.1, 0, 1.0), (0.1, 1, 5.0)],
        "fraud_probability double, Class int, Amount double",
    )
    actual_df = score_counts(source_df, score_col="fraud_probability", label_col="Class", amount_col="Amount")
    expected_df = spark.createDataFrame(
        [(0.9, 1.0, 1.0, 250.0), (0.1, 1.0, 1.0, 5.0)],
        "score double, positives double, negatives double, fraud_amount double",
    )
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_money_caught_counts_the_flagged_frauds_amounts():
    # Frauds of 100 (score 0.9), 10 (0.7) and 1 (0.6): a cut at 0.65 catches 110 of 111.
    curve = ScoreCurve.from_counts(SCORES, LABELS, [1 - label for label in LABELS], [100, 0, 10, 1, 0, 0])
    metrics = binary_metrics(curve, 0.65)
    assert metrics["fraud_amount_caught_share"] == pytest.approx(110 / 111)


def test_recall_at_precision_is_the_most_recall_that_keeps_the_precision():
    curve = curve_of_rows(SCORES, LABELS)
    assert recall_at_precision(curve, 0.9) == pytest.approx(1 / 3)
    assert recall_at_precision(curve, 0.7) == pytest.approx(1.0)  # 3/4 precision at recall 1


def test_alerts_per_100k_restore_the_real_class_balance():
    # At 0.65: 2 true and 1 false alert among 3 frauds and 3 normal rows. With each normal row
    # standing for 10 real ones: (2 + 10) alerts in 3 + 30 transactions.
    metrics = binary_metrics(curve_of_rows(SCORES, LABELS), 0.65, normal_weight=10)
    assert metrics["alerts_per_100k"] == pytest.approx(100_000 * 12 / 33)
    assert metrics["precision_real_balance"] == pytest.approx(2 / 12)
    assert metrics["precision"] == pytest.approx(2 / 3)


def test_combined_curves_equal_the_curve_of_all_rows():
    combined = ScoreCurve.combine([curve_of_rows(SCORES[:3], LABELS[:3]), curve_of_rows(SCORES[3:], LABELS[3:])])
    whole = curve_of_rows(SCORES, LABELS)
    assert average_precision(combined) == pytest.approx(average_precision(whole))
    assert list(combined.true_positives) == list(whole.true_positives)


@pytest.mark.parametrize(
    "policy, expected",
    [
        (ThresholdPolicy(name="max_f1"), 0.6),
        (ThresholdPolicy(name="target_precision", target_precision=0.7), 0.6),
        (ThresholdPolicy(name="target_precision", target_precision=0.9), 0.9),
        # Missing a fraud costs 1, a false alarm 5: flag only the top score (cost 2; lower cuts 5 or more).
        (ThresholdPolicy(name="min_cost", cost_missed_fraud=1, cost_false_alarm=5), 0.9),
        # Missing a fraud costs 10: flag down to 0.6 (cost 5, one false alarm).
        (ThresholdPolicy(name="min_cost", cost_missed_fraud=10, cost_false_alarm=5), 0.6),
    ],
)
def test_threshold_policies_pick_the_cut_worked_out_by_hand(policy, expected):
    assert choose_threshold(policy, curve_of_rows(SCORES, LABELS)) == expected


def test_an_unknown_policy_cannot_be_made():
    with pytest.raises(ValidationError, match="max_recall"):
        ThresholdPolicy(name="max_recall")


def precision_at_each_fraud(fraud_scores, normal_scores) -> float:
    """Average precision, independently: the mean over frauds of the precision at its score."""
    scores = [*fraud_scores, *normal_scores]
    total = 0.0
    for score in fraud_scores:
        flagged = sum(1 for other in scores if other >= score)
        total += sum(1 for other in fraud_scores if other >= score) / flagged
    return total / len(fraud_scores)


def test_average_precision_interval_matches_a_row_by_row_bootstrap():
    draw = random.Random(7)
    frauds = [round(draw.gauss(1.0, 1.0), 1) for _ in range(40)]
    normals = [round(draw.gauss(0.0, 1.0), 1) for _ in range(200)]
    curve = ScoreCurve.from_counts([*frauds, *normals], [1] * 40 + [0] * 200, [0] * 40 + [1] * 200)
    # Resample the rows themselves (frauds and normals apart) and recompute AP from scratch.
    resampled = sorted(
        precision_at_each_fraud(draw.choices(frauds, k=40), draw.choices(normals, k=200)) for _ in range(1000)
    )
    expected = (resampled[24], resampled[974])

    low, high = average_precision_interval(curve, samples=1000, seed=3)

    assert low < average_precision(curve) < high
    assert low == pytest.approx(expected[0], abs=0.02)
    assert high == pytest.approx(expected[1], abs=0.02)
    assert average_precision_interval(curve, samples=1000, seed=3) == (low, high)


def test_average_precision_interval_of_a_perfect_score_is_a_point():
    curve = curve_of_rows([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])
    assert average_precision_interval(curve, samples=200) == (1.0, 1.0)


@pytest.mark.parametrize("labels, interval", [([0, 0, 0], (0.0, 0.0)), ([1, 1, 1], (1.0, 1.0))])
def test_average_precision_interval_without_frauds_or_without_normals(labels, interval):
    assert average_precision_interval(curve_of_rows([0.9, 0.5, 0.1], labels), samples=50) == interval
