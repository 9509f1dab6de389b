"""Pictures of a model's scores, logged to MLflow as PNG artifacts.

Figures are built with matplotlib's object API (no pyplot), so no display or global state is
involved and nothing needs closing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipelines.model.evaluation import ScoreCurve, average_precision, confusion_at, roc_auc


def _figure(width: float, height: float):
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def precision_recall_figure(curve: ScoreCurve, threshold: float, title: str) -> Figure:
    figure, axes = _figure(6, 5)
    axes.step(curve.recall, curve.precision, where="post", label=f"AUC-PR {average_precision(curve):.4f}")
    at = confusion_at(curve, threshold)
    axes.plot([at.recall], [at.precision], "o", color="crimson", label=f"threshold {threshold:.3f}")
    axes.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1.01), ylim=(0, 1.01))
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def roc_figure(curve: ScoreCurve, title: str) -> Figure:
    figure, axes = _figure(6, 5)
    axes.plot(np.concatenate([[0], curve.false_positive_rate]), np.concatenate([[0], curve.recall]),
              label=f"AUC-ROC {roc_auc(curve):.4f}")
    axes.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title=title)
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def confusion_matrix_figure(curve: ScoreCurve, threshold: float, title: str) -> Figure:
    at = confusion_at(curve, threshold)
    cells = np.array([[at.true_negatives, at.false_positives], [at.false_negatives, at.true_positives]])
    figure, axes = _figure(5, 4.5)
    axes.imshow(cells, cmap="Blues")
    for (row, column), value in np.ndenumerate(cells):
        colour = "white" if value > cells.max() / 2 else "black"
        axes.text(column, row, f"{value:,.0f}", ha="center", va="center", color=colour, fontsize=14)
    axes.set_xticks([0, 1], ["normal", "fraud"])
    axes.set_yticks([0, 1], ["normal", "fraud"])
    axes.set(xlabel="predicted", ylabel="actual", title=f"{title}\nthreshold {threshold:.3f}")
    figure.tight_layout()
    return figure


def score_distribution_figure(curve: ScoreCurve, threshold: float, title: str, bins: int = 50) -> Figure:
    """Histogram of scores per class (normal and fraud each scaled to their own total)."""
    positives, negatives = curve.positives_per_score, curve.negatives_per_score
    edges = np.linspace(0, 1, bins + 1)
    figure, axes = _figure(6, 4.5)
    for counts, label, colour in ((negatives, "normal", "steelblue"), (positives, "fraud", "crimson")):
        total = counts.sum() or 1.0
        axes.hist(curve.thresholds, bins=edges, weights=counts / total, alpha=0.6, label=label, color=colour)
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axes.set(xlabel="fraud probability", ylabel="share of the class", title=title, yscale="log")
    axes.legend()
    figure.tight_layout()
    return figure


def feature_importance_figure(names: Sequence[str], importances: Sequence[float], title: str) -> Figure:
    order = np.argsort(importances)
    figure, axes = _figure(6, 7)
    axes.barh(np.asarray(names)[order], np.asarray(importances)[order], color="teal")
    axes.set(xlabel="importance", title=title)
    figure.tight_layout()
    return figure
