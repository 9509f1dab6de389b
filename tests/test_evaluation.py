"""Metrics checked against values worked out by hand on small examples."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from pipelines.evaluation import (
    ScoreCurve,
    average_precision,
    binary_metrics,
    confusion_at,
    max_f1_threshold,
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
    assert max_f1_threshold(curve_of_rows(SCORES, LABELS)) == 0.6


def test_weights_scale_the_counts():
    weighted = ScoreCurve.from_counts([0.9, 0.1], [1, 0], [10, 50])
    at = confusion_at(weighted, 0.5)
    assert (at.true_positives, at.false_positives, at.true_negatives) == (1, 10, 50)


def test_metrics_have_the_same_names_with_a_prefix():
    metrics = binary_metrics(curve_of_rows(SCORES, LABELS), 0.6, prefix="val_")
    assert {"val_auc_pr", "val_auc_roc", "val_precision", "val_recall", "val_f1"} <= set(metrics)
    assert metrics["val_recall"] == 1.0


def test_score_counts_groups_rows_by_score(spark):
    source_df = spark.createDataFrame(
        [(0.9, 1, 1.0), (0.9, 0, 57.8), (0.1, 0, 57.8), (0.1, 0, 57.8)],
        "fraud_probability double, Class int, weight double",
    )
    actual_df = score_counts(source_df, score_col="fraud_probability", label_col="Class", weight_col="weight")
    expected_df = spark.createDataFrame(
        [(0.9, 1.0, 57.8), (0.1, 0.0, 115.6)], "score double, positives double, negatives double"
    )
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)
