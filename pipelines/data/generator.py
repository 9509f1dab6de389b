"""Synthetic transactions: statistics fitted on the real sample, rows generated on Spark.

**Everything this module produces is synthetic.** It is fitted on the real sample
(``data/creditcard_sample.csv.gz``) but no generated row is a real transaction; the files are
named ``synthetic-day-NNN.csv`` and the folder holds a ``_synthetic-manifest.json`` that says
so. Never present them as the real data set.

What is fitted, separately for normal transactions (``Class`` 0) and frauds (``Class`` 1):

- **The joint distribution of V1..V28 and Amount**: a Gaussian mixture with full covariance
  matrices (12 components for normal rows, 8 for frauds; scikit-learn, k-means start, fixed
  ``random_state``) fitted on the class's 29 columns, each standardised by the class's mean
  and standard deviation. Full covariances keep the correlations, also the ones that only show
  in a cluster or in the tails (frauds differ jointly, not only in means: V16..V18 or V12/V14
  move together with correlations up to 0.97). A Gaussian copula with empirical marginals was
  tried first: it matches rank correlations but loses Pearson correlations that come from the
  tails (fraud V21/V22: real -0.85, copula -0.23); the mixture keeps them.
- **The marginal of each of those 29 columns**: a table of 1,001 empirical quantiles (every
  0.1%) per class. A value drawn from the mixture is taken through the mixture's own marginal
  CDF to a probability, then through this table (linear interpolation) back to the column's
  real distribution (both steps are tabulated once per column at fit time, 8,192 points):
  the heavy tails of the V's and the shape of Amount (many 1.00 and 0.00 frauds, a long tail)
  are the real ones, while the dependence between columns is the mixture's. Generated
  values therefore stay within the class's real minimum and maximum. Amount is rounded to
  cents.
- **The time of day**: the share of the class's transactions in each hour of the day (24
  bins, from ``Time mod 86400``); within its hour a transaction gets a uniformly drawn whole
  second. The real data has a night trough (normal transactions at 01:00-06:00 are ~1% per
  hour against ~6% by day) and frauds peak at other hours than normal traffic. The time of
  day is drawn independently of the features.
- **The fraud rate** is not fitted (the sample keeps every fraud but 1 normal row in 58): it
  defaults to the full data set's 492 / 284,807 = 0.173%, and the default volume to half its
  284,807 rows per day (142,404).

The fit runs with numpy and scikit-learn on the driver (5,412 rows, a few seconds) on each
run; the fitted parameters (about 8 MB of arrays) travel to the executors inside the
generating function. Each generated day is one Spark partition, produced in chunks of
:data:`CHUNK_ROWS` rows; the random numbers of a chunk come from a numpy generator seeded by
``(seed, day number, chunk number)``, so the same seed gives the same rows on any cluster and
with any number of cores, and no day is ever held in the driver's memory.
Days run in parallel (one task each, so that each day is written as one file without a
shuffle); a single day runs on one core.

Drift (``--drift``, :func:`parse_drift`), from a given day on, inclusive::

    V14:+1.5@day=5            add 1.5 to V14 of every row on days 5, 6, ...
    V4:-0.8@day=3,class=1     subtract 0.8 from V4 of frauds only
    Amount:*1.3@day=4         multiply Amount by 1.3 (Amount is kept >= 0 and rounded to cents)
    fraud_rate:0.01@day=7     fraud rate 1% on days 7, 8, ...

Days are numbered from 1, as the files are. Drifts on the same column add up (shifts) or
multiply (scales) in the order given; for the fraud rate the drift with the latest day applies.
Days before every drift's day are generated from the fitted statistics unchanged.
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from scipy.special import ndtr
from sklearn.metrics import average_precision_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from pipelines.core.errors import InvalidArgumentError, NoDataError
from pipelines.data.schema import FEATURE_COLS, LABEL_COL, RAW_COLS, require_columns

# The full public data set: 492 frauds in 284,807 transactions over two days.
REAL_FRAUD_RATE = 492 / 284_807
REAL_ROWS_PER_DAY = 142_404
SECONDS_PER_DAY = 86_400
# Rows drawn at once inside a task: bounds a task's memory (~25 MB of doubles) whatever the
# day's size. Part of the seed's meaning: changing it changes the rows of a seed.
CHUNK_ROWS = 100_000
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)
MIXTURE_COMPONENTS = {0: 12, 1: 8}
# Points of the table from a mixture value to a real value, per column: spacing ~0.005 of the
# standardised scale, far below what the 1,001 quantiles resolve.
MARGINAL_GRID_POINTS = 8192
# The fit is about the real sample, not about one generation run: its own fixed seed, so that
# different --seed values draw different rows from the same fitted model.
FIT_RANDOM_STATE = 0
SYNTHETIC_FILE_PREFIX = "synthetic-day-"
MANIFEST_FILE = "_synthetic-manifest.json"
MODELLED_COLS = FEATURE_COLS  # V1..V28, Amount: drawn jointly
DRIFT_TARGETS = (*FEATURE_COLS, "fraud_rate")
# Classes must each have enough rows for a full covariance per mixture component.
MIN_ROWS_PER_CLASS = 50

OUTPUT_SCHEMA = ", ".join(
    [*(f"`{column}` double" for column in ["Time", *FEATURE_COLS]), f"`{LABEL_COL}` int"]
)


@dataclass(frozen=True)
class ClassModel:
    """The fitted statistics of one class: mixture, marginal quantiles and hour shares.

    The mixture lives in the class's standardised space. ``latent_grid`` and ``value_table``
    map a column's mixture value to its real value: ``value_table = Q(F(latent_grid))``, with F
    the mixture's marginal CDF of the column and Q the real sample's quantile function.
    """

    label: int
    rows: int
    weights: np.ndarray  # (components,)
    means: np.ndarray  # (components, columns)
    cholesky: np.ndarray  # (components, columns, columns): lower factors of the covariances
    latent_grid: np.ndarray  # (columns, MARGINAL_GRID_POINTS), increasing
    value_table: np.ndarray  # (columns, MARGINAL_GRID_POINTS), non-decreasing, real units
    hour_shares: np.ndarray  # (24,)

    def draw_features(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """``rows`` x 29 values of V1..V28, Amount in real units, Amount rounded to cents."""
        counts = rng.multinomial(rows, self.weights)
        latent = np.empty((rows, self.means.shape[1]))
        start = 0
        for component, count in enumerate(counts):
            noise = rng.standard_normal((count, self.means.shape[1]))
            latent[start:start + count] = self.means[component] + noise @ self.cholesky[component].T
            start += count
        # Components were filled in blocks: shuffle so that row order carries no component.
        latent = latent[rng.permutation(rows)]
        values = np.column_stack([
            np.interp(latent[:, column], self.latent_grid[column], self.value_table[column])
            for column in range(latent.shape[1])
        ])
        amount = MODELLED_COLS.index("Amount")
        values[:, amount] = np.round(values[:, amount], 2)
        return values

    def draw_seconds_of_day(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """Whole seconds in [0, 86400), hour by the fitted shares, uniform within the hour."""
        hours = rng.choice(24, size=rows, p=self.hour_shares)
        return hours * 3600 + rng.integers(0, 3600, size=rows)


@dataclass(frozen=True)
class FittedModel:
    """The fitted statistics of both classes."""

    normal: ClassModel
    fraud: ClassModel

    def for_label(self, label: int) -> ClassModel:
        return self.fraud if label == 1 else self.normal


def _fit_class(values: np.ndarray, seconds_of_day: np.ndarray, *, label: int, components: int) -> ClassModel:
    center, spread = values.mean(axis=0), values.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    mixture = GaussianMixture(
        n_components=components, covariance_type="full", reg_covar=1e-4, max_iter=300,
        random_state=FIT_RANDOM_STATE,
    ).fit((values - center) / spread)
    hours = np.bincount((seconds_of_day // 3600).astype(int), minlength=24)[:24]
    return ClassModel(
        label=label,
        rows=len(values),
        weights=mixture.weights_ / mixture.weights_.sum(),
        means=mixture.means_,
        cholesky=np.linalg.cholesky(mixture.covariances_),
        **_marginal_tables(mixture, np.quantile(values, QUANTILE_LEVELS, axis=0)),
        hour_shares=hours / hours.sum(),
    )


def _marginal_tables(mixture: GaussianMixture, quantiles: np.ndarray) -> dict[str, np.ndarray]:
    """Per column, real values Q(F(x)) on a fine grid of mixture values x.

    F (a sum of normal CDFs per component) is what makes drawing slow: tabulated once here,
    drawing a row costs one interpolation per column (measured: 100,000 rows 5 s -> 1 s).
    """
    scales = np.sqrt(np.diagonal(mixture.covariances_, axis1=1, axis2=2))  # (components, columns)
    lowest = (mixture.means_ - 9 * scales).min(axis=0)
    highest = (mixture.means_ + 9 * scales).max(axis=0)
    grid = np.linspace(lowest, highest, MARGINAL_GRID_POINTS, axis=1)  # (columns, points)
    cdf = np.zeros_like(grid)
    for weight, mean, scale in zip(mixture.weights_, mixture.means_, scales, strict=True):
        cdf += weight * ndtr((grid - mean[:, None]) / scale[:, None])
    cdf = np.clip(cdf / mixture.weights_.sum(), 0.0, 1.0)
    table = np.vstack([
        np.interp(cdf[column], QUANTILE_LEVELS, quantiles[:, column]) for column in range(grid.shape[0])
    ])
    return {"latent_grid": grid, "value_table": table}


def fit_model(sample: pd.DataFrame) -> FittedModel:
    """Fit the generator's statistics on real rows in the dataset's format (one row each).

    Deterministic: the same sample gives the same model.

    :param sample: columns ``Time, V1..V28, Amount, Class`` as numbers (e.g. the real sample).
    :raises SchemaError: a column is missing.
    :raises NoDataError: a class has fewer than :data:`MIN_ROWS_PER_CLASS` rows.
    """
    require_columns(sample.columns, RAW_COLS, source="the sample to fit on")
    # One BLAS thread: the same fit on any machine (threaded sums round differently), and on a
    # busy 2-core machine it is 10-30x faster than oversubscribed threads (measured: 30 s -> 2 s).
    with threadpool_limits(limits=1):
        models = {label: _fit_label(sample, label) for label in (0, 1)}
    return FittedModel(normal=models[0], fraud=models[1])


def _fit_label(sample: pd.DataFrame, label: int) -> ClassModel:
    rows = sample[sample[LABEL_COL] == label]
    if len(rows) < MIN_ROWS_PER_CLASS:
        raise NoDataError(
            f"the sample has {len(rows)} rows of Class {label}; fitting needs at least {MIN_ROWS_PER_CLASS}"
        )
    return _fit_class(
        rows[MODELLED_COLS].to_numpy(dtype=float),
        rows["Time"].to_numpy(dtype=float) % SECONDS_PER_DAY,
        label=label,
        components=MIXTURE_COMPONENTS[label],
    )


@dataclass(frozen=True)
class Drift:
    """A change to the generated data from ``from_day`` (1-based, inclusive) on.

    ``operation`` is ``shift`` (add ``amount``), ``scale`` (multiply by ``amount``) or ``rate``
    (the fraud rate becomes ``amount``). ``label`` restricts a feature drift to one class.
    """

    target: str
    operation: str
    amount: float
    from_day: int
    label: int | None = None
    text: str = field(default="", compare=False)


_DRIFT = re.compile(
    r"(?P<target>[A-Za-z_][A-Za-z0-9_]*):(?P<change>[+\-*]?[^@]+)@day=(?P<day>\d+)(?:,class=(?P<label>[01]))?"
)
DRIFT_SYNTAX = "TARGET:CHANGE@day=N[,class=0|1], e.g. V14:+1.5@day=5, Amount:*1.2@day=3, fraud_rate:0.01@day=7"


def parse_drift(text: str) -> Drift:
    """Read one ``--drift`` value (syntax in the module docstring).

    Example::

        parse_drift("V14:+1.5@day=5")   # Drift(target='V14', operation='shift', amount=1.5, from_day=5)

    :raises InvalidArgumentError: the text does not follow the syntax, names an unknown column,
        has a number that is not finite, a fraud rate outside (0, 1) or a day below 1.
    """
    match = _DRIFT.fullmatch(text.strip())
    if not match:
        raise InvalidArgumentError(f"--drift {text!r} is malformed; expected {DRIFT_SYNTAX}")
    target, change, label = match["target"], match["change"].strip(), match["label"]
    if target not in DRIFT_TARGETS:
        raise InvalidArgumentError(
            f"--drift {text!r}: unknown target {target!r}; expected one of V1..V28, Amount, fraud_rate"
        )
    from_day = int(match["day"])
    if from_day < 1:
        raise InvalidArgumentError(f"--drift {text!r}: days are numbered from 1, got day={from_day}")
    if target == "fraud_rate":
        if label is not None or change[0] in "+-*":
            raise InvalidArgumentError(
                f"--drift {text!r}: a fraud_rate drift sets the rate, e.g. fraud_rate:0.01@day=7, "
                "with no sign and no class"
            )
        rate = _finite_number(change, text)
        if not 0 < rate < 1:
            raise InvalidArgumentError(f"--drift {text!r}: a fraud rate must be in (0, 1), got {rate}")
        return Drift(target=target, operation="rate", amount=rate, from_day=from_day, text=text)
    if change[0] not in "+-*":
        raise InvalidArgumentError(
            f"--drift {text!r}: a feature's change starts with + or - (add) or * (multiply), got {change!r}"
        )
    operation = "scale" if change[0] == "*" else "shift"
    amount = _finite_number(change[1:] if operation == "scale" else change, text)
    return Drift(
        target=target, operation=operation, amount=amount, from_day=from_day,
        label=None if label is None else int(label), text=text,
    )


def _finite_number(text: str, drift_text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise InvalidArgumentError(f"--drift {drift_text!r}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidArgumentError(f"--drift {drift_text!r}: {text!r} is not a finite number")
    return number


def check_generation_arguments(
    *, days: int, rows_per_day: int, fraud_rate: float, seed: int, drifts: Sequence[Drift] = ()
) -> None:
    """Refuse arguments that cannot give a sensible run, before any work starts.

    :raises InvalidArgumentError: days or rows not positive, a fraud rate outside (0, 1), a
        negative seed, a drift that starts after the last day, or two fraud-rate drifts on
        one day.
    """
    if days < 1:
        raise InvalidArgumentError(f"--days must be at least 1, got {days}")
    if rows_per_day < 1:
        raise InvalidArgumentError(f"--rows-per-day must be at least 1, got {rows_per_day}")
    if not (math.isfinite(fraud_rate) and 0 < fraud_rate < 1):
        raise InvalidArgumentError(f"--fraud-rate must be in (0, 1), got {fraud_rate}")
    if seed < 0:
        raise InvalidArgumentError(f"--seed must be 0 or more, got {seed}")
    for drift in drifts:
        if drift.from_day > days:
            raise InvalidArgumentError(
                f"--drift {drift.text or drift.target!r} starts on day {drift.from_day}, "
                f"after the last generated day ({days})"
            )
    rate_days = [drift.from_day for drift in drifts if drift.operation == "rate"]
    if len(rate_days) != len(set(rate_days)):
        raise InvalidArgumentError("two fraud_rate drifts start on the same day; give one per day")


@dataclass(frozen=True)
class DayPlan:
    """What one generated day is: its number (from 1), where its Time starts, its fraud rate
    and the feature drifts in force."""

    day_number: int
    time_offset: float
    fraud_rate: float
    feature_drifts: tuple[Drift, ...]


def plan_days(
    *, days: int, fraud_rate: float, first_day_index: int = 0, drifts: Sequence[Drift] = ()
) -> list[DayPlan]:
    """One plan per day; day ``n``'s Time values lie in
    ``[86400 * (first_day_index + n - 1), 86400 * (first_day_index + n))``."""
    plans = []
    for day_number in range(1, days + 1):
        active = [drift for drift in drifts if drift.from_day <= day_number]
        rate_drifts = sorted((d for d in active if d.operation == "rate"), key=lambda d: d.from_day)
        plans.append(DayPlan(
            day_number=day_number,
            time_offset=float(SECONDS_PER_DAY * (first_day_index + day_number - 1)),
            fraud_rate=rate_drifts[-1].amount if rate_drifts else fraud_rate,
            feature_drifts=tuple(d for d in active if d.operation != "rate"),
        ))
    return plans


def chunk_rng(*, seed: int, day_number: int, chunk_number: int) -> np.random.Generator:
    """The random numbers of one chunk: a function of the seed, the day and the chunk only."""
    return np.random.default_rng(np.random.SeedSequence([seed, day_number, chunk_number]))


def generate_chunk(model: FittedModel, plan: DayPlan, *, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` synthetic transactions of one day, columns :data:`RAW_COLS` (pure numpy).

    Each row is a fraud with probability ``plan.fraud_rate``; its features, amount and time of
    day are drawn from that class's fitted statistics, then the day's drifts are applied.
    """
    labels = (rng.random(rows) < plan.fraud_rate).astype(np.int32)
    features = np.empty((rows, len(MODELLED_COLS)))
    seconds = np.empty(rows)
    for label in (0, 1):
        mask = labels == label
        class_model = model.for_label(label)
        features[mask] = class_model.draw_features(rng, int(mask.sum()))
        seconds[mask] = class_model.draw_seconds_of_day(rng, int(mask.sum()))
    for drift in plan.feature_drifts:
        column = MODELLED_COLS.index(drift.target)
        rows_hit = np.ones(rows, dtype=bool) if drift.label is None else labels == drift.label
        if drift.operation == "shift":
            features[rows_hit, column] += drift.amount
        else:
            features[rows_hit, column] *= drift.amount
    amount = MODELLED_COLS.index("Amount")
    # The ingest refuses negative amounts; a drift must not produce them.
    features[:, amount] = np.round(np.clip(features[:, amount], 0.0, None), 2)
    frame = pd.DataFrame(features, columns=MODELLED_COLS)
    frame.insert(0, "Time", plan.time_offset + seconds)
    frame[LABEL_COL] = labels
    return frame


def _day_generator(
    model: FittedModel, plans: list[DayPlan], *, rows_per_day: int, seed: int, chunk_rows: int
):
    """The function mapInPandas runs: for each day index it receives, yield the day's chunks."""

    def generate_days(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for day_index in batch["id"].tolist():
                plan = plans[day_index]
                for chunk_number, first_row in enumerate(range(0, rows_per_day, chunk_rows)):
                    rng = chunk_rng(seed=seed, day_number=plan.day_number, chunk_number=chunk_number)
                    yield generate_chunk(model, plan, rows=min(chunk_rows, rows_per_day - first_row), rng=rng)

    return generate_days


def generate_transactions(
    spark: SparkSession,
    model: FittedModel,
    *,
    days: int,
    rows_per_day: int,
    fraud_rate: float = REAL_FRAUD_RATE,
    seed: int = 0,
    first_day_index: int = 0,
    drifts: Sequence[Drift] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> DataFrame:
    """Synthetic transactions in the dataset's columns (:data:`RAW_COLS`), generated on Spark.

    Partition ``n - 1`` holds day ``n``, all of it and nothing else, so writing the frame
    gives one file per day. Nothing is computed until the frame is used; the same arguments
    give the same rows.

    Example::

        model = fit_model(real_sample_pdf)
        transactions = generate_transactions(spark, model, days=10, rows_per_day=1_000_000, seed=7)

    :raises InvalidArgumentError: see :func:`check_generation_arguments`.
    """
    check_generation_arguments(days=days, rows_per_day=rows_per_day, fraud_rate=fraud_rate, seed=seed, drifts=drifts)
    plans = plan_days(days=days, fraud_rate=fraud_rate, first_day_index=first_day_index, drifts=drifts)
    generate_days = _day_generator(model, plans, rows_per_day=rows_per_day, seed=seed, chunk_rows=chunk_rows)
    return spark.range(0, days, 1, numPartitions=days).mapInPandas(generate_days, OUTPUT_SCHEMA)


def synthetic_file_name(day_number: int) -> str:
    """``synthetic-day-001.csv`` for day 1: the name says the data is generated."""
    return f"{SYNTHETIC_FILE_PREFIX}{day_number:03d}.csv"


def is_generator_output(name: str) -> bool:
    """True for the entries a generation run leaves (or leaves behind when it fails)."""
    return (
        (name.startswith(SYNTHETIC_FILE_PREFIX) and name.endswith(".csv"))
        or name == MANIFEST_FILE
        or name.startswith("_spark-")
    )


def write_daily_csv(transactions: DataFrame, output_dir: str | Path, *, first_day_index: int = 0) -> list[Path]:
    """Write one CSV file per day into ``output_dir``, named :func:`synthetic_file_name`.

    ``transactions`` must hold one day per partition (as :func:`generate_transactions` gives).
    Spark writes the files in parallel into a hidden folder; each is then renamed after the
    day its first row's ``Time`` falls in. Earlier ``synthetic-day-*.csv`` files in
    ``output_dir`` are replaced only once the new ones are all written. Local paths only.

    :returns: the files written, in day order.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f"_spark-{uuid.uuid4().hex}"
    try:
        transactions.write.option("header", True).csv(str(staging))
        day_files = {}
        for part in sorted(staging.glob("part-*.csv")):
            day_index = _first_row_day(part)
            if day_index in day_files:
                raise RuntimeError(f"two Spark partitions hold day index {day_index}: one day per partition expected")
            day_files[day_index] = part
        for old in output.glob(f"{SYNTHETIC_FILE_PREFIX}*.csv"):
            old.unlink()
        written = []
        for day_index in sorted(day_files):
            target = output / synthetic_file_name(day_index - first_day_index + 1)
            day_files[day_index].replace(target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _first_row_day(part: Path) -> int:
    with part.open() as lines:
        lines.readline()  # header
        first = lines.readline()
    if not first.strip():
        raise RuntimeError(f"{part} holds no rows: every generated day has at least one")
    return int(float(first.split(",", 1)[0]) // SECONDS_PER_DAY)


# --- Fidelity: how close generated rows are to real ones (used by the benchmark and the tests).


def hour_shares(time_seconds: np.ndarray) -> np.ndarray:
    """The share of rows in each hour of the day (24 values summing to 1)."""
    hours = ((np.asarray(time_seconds, dtype=float) % SECONDS_PER_DAY) // 3600).astype(int)
    counts = np.bincount(hours, minlength=24)[:24]
    return counts / counts.sum()


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    """Total variation distance of two discrete distributions on the same bins."""
    return float(0.5 * np.abs(np.asarray(first) - np.asarray(second)).sum())


def _features(frame: pd.DataFrame) -> np.ndarray:
    values = frame[FEATURE_COLS].to_numpy(dtype=float).copy()
    values[:, -1] = np.log1p(values[:, -1])
    return values


def cross_average_precision(*, train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> float:
    """AUC-PR (average precision) on ``test`` of a model fitted on ``train`` only.

    A gradient-boosted tree model on V1..V28 and log(1 + Amount). Train on synthetic and test
    on real (or the reverse) to see whether what tells fraud apart survived the generation.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    classifier = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    classifier.fit(_features(train), train[LABEL_COL].to_numpy())
    scores = classifier.predict_proba(_features(test))[:, 1]
    return float(average_precision_score(test[LABEL_COL].to_numpy(), scores))


def fidelity_report(*, real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    """Figures comparing synthetic rows with real ones, per class and overall.

    Per class: the largest absolute difference of a feature's mean and of its standard
    deviation, in units of the real standard deviation; the largest absolute difference of a
    Pearson correlation between two features; the total variation distance of the hour-of-day
    shares. Overall: cross AUC-PR both ways, and the real class balance as chance level.
    """
    report: dict[str, Any] = {}
    for label, name in ((0, "normal"), (1, "fraud")):
        real_rows = real[real[LABEL_COL] == label]
        synthetic_rows = synthetic[synthetic[LABEL_COL] == label]
        real_values = real_rows[FEATURE_COLS].to_numpy(dtype=float)
        synthetic_values = synthetic_rows[FEATURE_COLS].to_numpy(dtype=float)
        real_std = real_values.std(axis=0)
        report[name] = {
            "real_rows": len(real_rows),
            "synthetic_rows": len(synthetic_rows),
            "max_mean_diff_in_std": float(np.max(np.abs(synthetic_values.mean(0) - real_values.mean(0)) / real_std)),
            "max_std_diff_in_std": float(np.max(np.abs(synthetic_values.std(0) - real_std) / real_std)),
            "max_corr_diff": float(np.max(np.abs(
                np.corrcoef(synthetic_values, rowvar=False) - np.corrcoef(real_values, rowvar=False)
            ))),
            "hour_tvd": total_variation(hour_shares(real_rows["Time"]), hour_shares(synthetic_rows["Time"])),
        }
    report["auc_pr_synthetic_to_real"] = cross_average_precision(train=synthetic, test=real)
    report["auc_pr_real_to_synthetic"] = cross_average_precision(train=real, test=synthetic)
    report["real_fraud_share"] = float(real[LABEL_COL].mean())
    report["synthetic_fraud_share"] = float(synthetic[LABEL_COL].mean())
    return report
