"""Reference: scikit-learn and plain XGBoost on the real sample's day 1 -> day 2 split.

    .venv/bin/python benchmarks/sklearn_reference.py [--seeds 10]

The reference figures the model-selection targets name, measured over several seeds instead
of one: a random forest's held-out AUC-PR moves with its seed alone, and the held-out day has
only 211 frauds. Prints each reference model's AUC-PR (scikit-learn's
``average_precision_score``) over the seeds and, for seed 0, the bootstrap 95% interval
computed as ``train`` computes it. No Spark.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import average_precision_score
from xgboost import XGBClassifier

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipelines.data.schema import FEATURE_COLS, LABEL_COL  # noqa: E402
from pipelines.model.evaluation import SCORE_DECIMALS, ScoreCurve, average_precision_interval  # noqa: E402

SAMPLE = PROJECT / "data" / "creditcard_sample.csv.gz"
DAY = 86_400


REFERENCE_MODELS = {
    "sklearn RandomForest 200 trees": lambda seed: RandomForestClassifier(200, random_state=seed, n_jobs=-1),
    "sklearn RandomForest 500 trees": lambda seed: RandomForestClassifier(500, random_state=seed, n_jobs=-1),
    "XGBoost 300 trees, depth 4": lambda seed: XGBClassifier(n_estimators=300, max_depth=4, random_state=seed),
}


def seed_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--seeds must be a whole number of at least 1, got {text!r}")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_count, default=10)
    args = parser.parse_args()
    sample = pd.read_csv(SAMPLE)
    day1, day2 = sample[sample["Time"] < DAY], sample[sample["Time"] >= DAY]
    print(f"fit on day 1: {len(day1):,} rows ({int(day1[LABEL_COL].sum())} frauds); "
          f"measured on day 2: {len(day2):,} rows ({int(day2[LABEL_COL].sum())} frauds)")
    for name, make in REFERENCE_MODELS.items():
        started = time.perf_counter()
        figures = []
        for seed in range(args.seeds):
            model = make(seed).fit(day1[FEATURE_COLS], day1[LABEL_COL])
            scores = model.predict_proba(day2[FEATURE_COLS])[:, 1]
            figures.append(average_precision_score(day2[LABEL_COL], scores))
            if seed == 0:
                labels = day2[LABEL_COL].to_numpy()
                curve = ScoreCurve.from_counts(np.round(scores, SCORE_DECIMALS), labels, 1 - labels)
                low, high = average_precision_interval(curve)
        print(f"{name:32s} AUC-PR mean {statistics.mean(figures):.4f}  min {min(figures):.4f}  "
              f"max {max(figures):.4f}  over {args.seeds} seed(s)  (seed 0: 95% interval {low:.3f}-{high:.3f})  "
              f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
