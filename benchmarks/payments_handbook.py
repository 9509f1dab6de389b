"""Benchmark of issue #23, section 5: the registered payments model beside scikit-learn on the
Fraud Detection Handbook's chapter 3 protocol, and beside the Handbook's published table.

    .venv/bin/python benchmarks/payments_handbook.py              # seed 0, about 8 minutes
    .venv/bin/python benchmarks/payments_handbook.py --seed 1 --keep

All in a temporary folder (removed unless ``--keep``), with the project's own jobs:

1. ``generate --profile payments --days 136`` (2018-04-01 .. 2018-08-14, the generator's
   defaults), ``ingest``, ``features --all``, through ./spark-submit.sh.
2. ``train`` with conf/payments.toml's protocol: its held-out days are the last 7
   (2018-08-08 .. 08-14), after a 7-day gap (08-01 .. 08-07), and its model is fitted on the 7
   days before (2018-07-25 .. 07-31): the Handbook's split. It searches and registers as ever.
3. Without Spark: the ``features`` rows of those 21 days (deltalake), the registered version's
   portable form (the same probabilities as Spark's to 1e-9), and scikit-learn's logistic
   regression, random forest and XGBoost with default settings (and ``random_state=0``),
   fitted on the training week's rows, features standardised on them, as the Handbook does.
4. The test rows lose the cards already known to be compromised: those with a fraud in the
   training week, and, from test day k on, those with a fraud on the k-th day of the gap
   (the labels a 7-day delay has revealed by then). AUC-ROC and average precision are computed
   on what is left; Card Precision@100 with the project's one definition
   (pipelines/model/card_precision.py), given the same known cards.
5. A paired bootstrap over the test days (days drawn with replacement, every model scored on
   the same draw): the 95% interval of (registered - best scikit-learn model) for AP and CP@100.
   The registered model is "not significantly below" when the interval's upper end is >= 0.

The published figures are the Handbook's (chapter 3, "Baseline fraud detection system"), on
its own generated data set; ours are on data from our implementation of its simulator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.payments_features import conf_file, job

TRAIN_START = date(2018, 7, 25)
WEEK = 7
GAP_START = TRAIN_START + timedelta(days=WEEK)
TEST_START = GAP_START + timedelta(days=WEEK)
TEST_DAYS = [TEST_START + timedelta(days=k) for k in range(WEEK)]
LAST_DAY = TEST_DAYS[-1]
FIRST_DAY = date(2018, 4, 1)
K = 100
PUBLISHED = {  # chapter 3, test figures: AUC-ROC, average precision, CP@100
    "logistic regression": (0.871, 0.606, 0.291),
    "random forest": (0.867, 0.658, 0.287),
    "XGBoost": (0.862, 0.639, 0.273),
}
CHAPTER_5_BEST = (0.87, 0.69, 0.30)


def prepare(folder: Path, *, seed: int, env: dict[str, str], reuse: bool) -> Path:
    conf = conf_file(folder)
    days = (LAST_DAY - FIRST_DAY).days + 1
    started = time.perf_counter()
    if not reuse:
        job("generate", "--profile", "payments", "--days", str(days), "--seed", str(seed), "--output",
            str(folder / "csv"), conf=conf, env=env)
        job("ingest", "--input", str(folder / "csv"), conf=conf, env=env)
        job("features", "--all", conf=conf, env=env)
        print(f"generate, ingest and features of {days} days: {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    job("train", conf=conf, env=env)
    print(f"train (search, parity check, registration): {time.perf_counter() - started:.0f} s", flush=True)
    return conf


def read_rows(folder: Path, columns: list[str]) -> pd.DataFrame:
    from deltalake import DeltaTable

    table = DeltaTable(str(folder / "lake" / "features"))
    frame = table.to_pandas(columns=["transaction_id", "txn_date", "card_key", "label", *columns],
                            filters=[("txn_date", ">=", TRAIN_START), ("txn_date", "<=", LAST_DAY)])
    frame["txn_date"] = pd.to_datetime(frame["txn_date"]).dt.date
    for column in columns:
        frame[column] = frame[column].astype(float)
    return frame.sort_values(["txn_date", "transaction_id"]).reset_index(drop=True)


def known_cards(rows: pd.DataFrame) -> tuple[set, dict]:
    """Cards known to be compromised before the test (a fraud in the training week), and per
    test day those revealed by then (a fraud on the matching day of the gap)."""
    train = rows[rows["txn_date"] < GAP_START]
    before = set(train.loc[train["label"] == 1, "card_key"])
    by_day = {}
    for k, day in enumerate(TEST_DAYS):
        gap_day = GAP_START + timedelta(days=k)
        frauds = rows[(rows["txn_date"] == gap_day) & (rows["label"] == 1)]
        by_day[day] = set(frauds["card_key"])
    return before, by_day


def test_rows(rows: pd.DataFrame, before: set, by_day: dict) -> pd.DataFrame:
    test = rows[rows["txn_date"] >= TEST_START]
    keep = np.ones(len(test), dtype=bool)
    known = set(before)
    for day in TEST_DAYS:
        known |= by_day[day]
        on_day = (test["txn_date"] == day).to_numpy()
        keep &= ~(on_day & test["card_key"].isin(known).to_numpy())
    return test[keep].reset_index(drop=True)


def sklearn_scores(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    scaler = StandardScaler().fit(train[columns])
    x_train, x_test, y = scaler.transform(train[columns]), scaler.transform(test[columns]), train["label"]
    models = {
        "logistic regression": LogisticRegression(random_state=0),
        "random forest": RandomForestClassifier(random_state=0, n_jobs=2),
        "XGBoost": XGBClassifier(random_state=0, n_jobs=2),
    }
    scores = {}
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(x_train, y)
        scores[name] = model.predict_proba(x_test)[:, 1]
        print(f"scikit-learn {name}: fitted in {time.perf_counter() - started:.1f} s", flush=True)
    return scores


def registered_scores(conf: Path, test: pd.DataFrame) -> tuple[str, np.ndarray]:
    from pipelines.core.config import load_settings
    from pipelines.model.portable.pyfunc import load_registered
    from pipelines.model.registry import configure_mlflow, resolve_model

    settings = load_settings(str(conf))
    configure_mlflow(settings.mlflow)
    ref = resolve_model(settings.mlflow, f"models:/{settings.mlflow.model_name}@{settings.mlflow.challenger_alias}")
    portable = load_registered(ref.name, ref.version)
    probability = portable.sample_probability(test[list(portable.feature_cols)].to_numpy(dtype=np.float64))
    return f"registered ({ref.name} v{ref.version})", probability


def daily_card_precision(test: pd.DataFrame, score: np.ndarray) -> np.ndarray:
    """CP@100 of each test day, in order: the project's definition, cards found earlier left out
    (known compromised cards are out of ``test`` already)."""
    from pipelines.model.card_precision import card_precision_at_k

    frame = pd.DataFrame({"day": test["txn_date"], "card": test["card_key"], "score": score, "label": test["label"]})
    result = card_precision_at_k(frame, k=K, day_col="day", card_col="card", score_col="score", label_col="label")
    by_day = {day.day: day.card_precision for day in result.days}
    return np.array([by_day.get(day, 0.0) for day in TEST_DAYS])


def bootstrap(test: pd.DataFrame, scores: dict[str, np.ndarray], daily_cp: dict[str, np.ndarray], *,
              samples: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per model, AP and CP@100 on each resample of the test days (the same draws for all)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    day_index = np.array([TEST_DAYS.index(day) for day in test["txn_date"]])
    labels = test["label"].to_numpy()
    drawn = {name: {"ap": np.empty(samples), "cp": np.empty(samples)} for name in scores}
    for sample in range(samples):
        days = rng.integers(len(TEST_DAYS), size=len(TEST_DAYS))
        weights = np.bincount(days, minlength=len(TEST_DAYS))[day_index]
        for name, score in scores.items():
            drawn[name]["ap"][sample] = average_precision_score(labels, score, sample_weight=weights)
            drawn[name]["cp"][sample] = daily_cp[name][days].mean()
    return drawn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples of the test days")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--folder", type=Path, help="a folder kept by an earlier run: its features are used "
                                                    "again (the seed it was made with), train runs again")
    args = parser.parse_args()
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipelines.core.config import load_settings
    from pipelines.features.definitions import feature_columns

    folder = args.folder.resolve() if args.folder else Path(tempfile.mkdtemp(prefix="payments-handbook-"))
    keep = args.keep or args.folder is not None
    met = False
    env = {**os.environ}
    env.setdefault("FRAUD_CARD_KEY_SECRET", "benchmark-only-secret-not-for-real-cards")
    try:
        conf = prepare(folder, seed=args.seed, env=env, reuse=args.folder is not None)
        columns = ["amount", *feature_columns(load_settings("payments").features)]
        rows = read_rows(folder, columns)
        before, by_day = known_cards(rows)
        train = rows[rows["txn_date"] < GAP_START]
        test = test_rows(rows, before, by_day)
        print(f"training week {TRAIN_START}..{GAP_START - timedelta(days=1)}: {len(train):,} rows, "
              f"{int(train['label'].sum())} frauds; test {TEST_DAYS[0]}..{TEST_DAYS[-1]} without the "
              f"{len(before)} + {sum(map(len, by_day.values()))} known compromised cards: {len(test):,} rows, "
              f"{int(test['label'].sum())} frauds", flush=True)
        registered, probability = registered_scores(conf, test)
        scores = {registered: probability, **sklearn_scores(train, test, columns)}
        daily_cp = {name: daily_card_precision(test, score) for name, score in scores.items()}
        labels = test["label"].to_numpy()
        print(f"\nseed {args.seed}, generated data (not the Handbook's):")
        print(f"| model | AUC-ROC | AP | CP@{K} | published AUC-ROC / AP / CP@{K} |")
        print("|---|---|---|---|---|")
        for name, score in scores.items():
            published = PUBLISHED.get(name)
            shown = " / ".join(f"{v:.3f}" for v in published) if published else "-"
            print(f"| {name} | {roc_auc_score(labels, score):.3f} | {average_precision_score(labels, score):.3f} | "
                  f"{daily_cp[name].mean():.3f} | {shown} |")
        print(f"| (chapter 5's best after model selection) | | | | {' / '.join(map(str, CHAPTER_5_BEST))} |")
        drawn = bootstrap(test, scores, daily_cp, samples=args.samples, seed=args.seed)
        references = [name for name in scores if name != registered]
        print(f"\npaired bootstrap over the {len(TEST_DAYS)} test days ({args.samples} draws), 95% intervals:")
        verdicts = []
        for metric, label in (("ap", "AP"), ("cp", f"CP@{K}")):
            best = max(references, key=lambda name: drawn[name][metric].mean())
            difference = drawn[registered][metric] - drawn[best][metric]
            low, high = np.quantile(difference, [0.025, 0.975])
            ok = high >= 0
            verdicts.append(ok)
            print(f"  {label}: registered - {best} = {difference.mean():+.3f} [{low:+.3f}, {high:+.3f}]: "
                  f"{'not significantly below' if ok else 'SIGNIFICANTLY BELOW'}")
        print("target (registered not significantly below the best reference on AP and CP@100): "
              + ("met" if all(verdicts) else "NOT met"))
        met = all(verdicts)
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
