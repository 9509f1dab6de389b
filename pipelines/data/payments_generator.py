"""Synthetic payment transactions: the Fraud Detection Handbook's chapter 3 simulator, on Spark.

**Everything this module produces is synthetic.** It follows the design published in the Fraud
Detection Handbook (Le Borgne, Siblini, Lebichot, Bontempi, 2022, chapter 3, "Simulated
dataset"); no row is a real payment, no id is a real card or terminal. The files are named
``synthetic-day-NNN.csv`` and the folder's ``_synthetic-manifest.json`` says so. This is our
own implementation of the published design, not the Handbook's code.

The design, with every number an option of :class:`PaymentsParams`:

- **Customers and terminals** sit uniformly on a 100 x 100 grid. A customer's mean amount is
  U(5, 100), its standard deviation half of that, its mean number of transactions a day U(0, 4).
- **Pairing**: a customer uses every terminal at Euclidean distance < ``radius``. Terminals are
  bucketed into square cells of side ``radius``; a customer looks only at its own cell and the
  eight around it, which hold every terminal closer than ``radius``. No cross join: the work
  grows with customers x terminals per neighbourhood, not customers x terminals.
- **Transactions**, per customer and day: a Poisson(mean) count; per transaction the second of
  the day ``int(N(43200, 20000))``, and **a draw outside (0, 86400) is dropped, not redrawn**, as
  the published simulator does (this is what makes its 1,754,155 rows: about 3.1% of the draws
  are dropped); the amount N(mean, sd), a negative draw replaced by U(0, 2 x mean), rounded to
  cents; a terminal drawn uniformly from the customer's list. A customer with no terminal in
  range makes no transactions.
- **Fraud**, three scenarios applied in order, a later one overwriting the scenario label:

  1. an amount over ``amount_threshold`` (220) is fraud;
  2. each day ``compromised_terminals_per_day`` (2) terminals are drawn: every transaction at
     them in [day, day + ``terminal_compromise_days`` (28)) is fraud;
  3. each day ``compromised_customers_per_day`` (3) customers are drawn: of their transactions
     in [day, day + ``customer_compromise_days`` (14)), pooled, ``floor(n x share)`` (share 1/3,
     the published ``int(n/3)``) are drawn, their amount multiplied by ``amount_multiplier``
     (5) and marked fraud. A transaction drawn by two overlapping draws is multiplied twice,
     as in the published design.

  Draws happen on every day of the period (the published code skips the last day; the
  difference is a handful of frauds in the last day).

**Determinism.** Every random number comes from a numpy generator seeded by the run's seed, a
stream tag and an entity or day: customer and terminal profiles by blocks of
:data:`PROFILE_BLOCK` ids, a customer's transactions by its id, each scenario draw by its day.
The same seed gives the same rows on any cluster, with any partitioning; a customer's profile
does not depend on how many customers the run has.

Amounts are kept in integer cents inside the library, so the multiplication by 5 and the
output's two decimals are exact.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.core.errors import InvalidArgumentError
from pipelines.data.generator import SYNTHETIC_FILE_PREFIX, synthetic_file_name

GRID_SIZE = 100.0
SECONDS_PER_DAY = 86_400
TIME_OF_DAY_MEAN = 43_200.0
TIME_OF_DAY_SD = 20_000.0
MEAN_AMOUNT_RANGE = (5.0, 100.0)
MEAN_TX_PER_DAY_RANGE = (0.0, 4.0)
# Ids drawn together from one generator: part of a seed's meaning (changing it changes the
# profiles of a seed), never of a run's size.
PROFILE_BLOCK = 1024

# Stream tags: the first words of every seed sequence after the run's seed.
CUSTOMER_STREAM = 1
TERMINAL_STREAM = 2
TRANSACTION_STREAM = 3
TERMINAL_DRAW_STREAM = 4
CUSTOMER_DRAW_STREAM = 5
PICK_STREAM = 6

OUTPUT_COLS = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]
SCENARIOS = (1, 2, 3)

# The published data set (Handbook chapter 3, default parameters): the totals it reports.
PUBLISHED_TRANSACTIONS = 1_754_155
PUBLISHED_FRAUDS = 14_681
PUBLISHED_SCENARIO_FRAUDS = {1: 973, 2: 9_077, 3: 4_631}

PROFILE_SCHEMA = "id long, x double, y double, mean_amount double, mean_tx_per_day double"
POSITION_SCHEMA = "id long, x double, y double"
RAW_SCHEMA = "customer_id long, day int, seq int, seconds int, terminal_id long, drawn_cents long"
PICK_SCHEMA = "customer_id long, day int, seq int"
# The key of a transaction before it has an id: its customer, its day and its place in the day.
KEY = ["customer_id", "day", "seq"]


@dataclass(frozen=True)
class PaymentsParams:
    """Every parameter of one payments run; the defaults are the Handbook's published ones."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    start_date: date = date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 20180401
    amount_threshold: float = 220.0
    compromised_terminals_per_day: int = 2
    terminal_compromise_days: int = 28
    compromised_customers_per_day: int = 3
    customer_compromise_days: int = 14
    compromised_share: Fraction = field(default=Fraction(1, 3))
    amount_multiplier: float = 5.0

    def as_manifest(self) -> dict[str, Any]:
        """The parameters as JSON-ready values."""
        values = asdict(self)
        values["start_date"] = self.start_date.isoformat()
        values["compromised_share"] = str(self.compromised_share)
        values["grid_size"] = GRID_SIZE
        return values


# The command-line option behind each parameter, for messages that name what to fix.
OPTION_OF = {
    "customers": "--customers", "terminals": "--terminals", "days": "--days", "radius": "--radius",
    "seed": "--seed", "amount_threshold": "--fraud-amount-threshold",
    "compromised_terminals_per_day": "--compromised-terminals-per-day",
    "terminal_compromise_days": "--terminal-compromise-days",
    "compromised_customers_per_day": "--compromised-customers-per-day",
    "customer_compromise_days": "--customer-compromise-days",
    "compromised_share": "--compromised-share", "amount_multiplier": "--fraud-amount-multiplier",
}


def check_payments_params(params: PaymentsParams) -> None:
    """Refuse parameters that cannot give a sensible run, before any work starts.

    :raises InvalidArgumentError: naming the option and the value.
    """
    def refuse(name: str, expected: str) -> None:
        raise InvalidArgumentError(f"{OPTION_OF[name]} must be {expected}, got {getattr(params, name)}")

    for name in ("customers", "terminals", "days", "terminal_compromise_days", "customer_compromise_days"):
        if getattr(params, name) < 1:
            refuse(name, "at least 1")
    if params.seed < 0:
        refuse("seed", "0 or more")
    if not (math.isfinite(params.radius) and 0 < params.radius <= GRID_SIZE):
        refuse("radius", f"in (0, {GRID_SIZE:g}]")
    if not (math.isfinite(params.amount_threshold) and params.amount_threshold >= 0):
        refuse("amount_threshold", "a finite number, 0 or more")
    if not 0 <= params.compromised_terminals_per_day <= params.terminals:
        refuse("compromised_terminals_per_day", f"between 0 and --terminals ({params.terminals})")
    if not 0 <= params.compromised_customers_per_day <= params.customers:
        refuse("compromised_customers_per_day", f"between 0 and --customers ({params.customers})")
    if not 0 <= params.compromised_share <= 1:
        refuse("compromised_share", "in [0, 1]")
    if not (math.isfinite(params.amount_multiplier) and params.amount_multiplier > 0):
        refuse("amount_multiplier", "a finite number above 0")
    try:
        params.start_date + timedelta(days=params.days)
    except OverflowError:
        raise InvalidArgumentError(
            f"--start-date {params.start_date} plus --days {params.days} runs past the year 9999"
        ) from None


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(words)))


# --- Profiles and pairing: pure numpy / pandas, the same functions the Spark tasks run.


def customer_profile_block(seed: int, block: int) -> pd.DataFrame:
    """The :data:`PROFILE_BLOCK` customers with ids ``block * PROFILE_BLOCK`` on: position,
    mean amount and mean transactions a day. A customer's profile depends on the seed and its
    id only."""
    rng = _rng(seed, CUSTOMER_STREAM, block)
    return pd.DataFrame({
        "id": np.arange(block * PROFILE_BLOCK, (block + 1) * PROFILE_BLOCK, dtype=np.int64),
        "x": rng.uniform(0, GRID_SIZE, PROFILE_BLOCK),
        "y": rng.uniform(0, GRID_SIZE, PROFILE_BLOCK),
        "mean_amount": rng.uniform(*MEAN_AMOUNT_RANGE, PROFILE_BLOCK),
        "mean_tx_per_day": rng.uniform(*MEAN_TX_PER_DAY_RANGE, PROFILE_BLOCK),
    })


def terminal_position_block(seed: int, block: int) -> pd.DataFrame:
    """The positions of the :data:`PROFILE_BLOCK` terminals with ids ``block * PROFILE_BLOCK`` on."""
    rng = _rng(seed, TERMINAL_STREAM, block)
    return pd.DataFrame({
        "id": np.arange(block * PROFILE_BLOCK, (block + 1) * PROFILE_BLOCK, dtype=np.int64),
        "x": rng.uniform(0, GRID_SIZE, PROFILE_BLOCK),
        "y": rng.uniform(0, GRID_SIZE, PROFILE_BLOCK),
    })


def _all_blocks(make_block: Callable[[int, int], pd.DataFrame], seed: int, count: int) -> pd.DataFrame:
    blocks = [make_block(seed, block) for block in range(math.ceil(count / PROFILE_BLOCK))]
    return pd.concat(blocks, ignore_index=True).iloc[:count].reset_index(drop=True)


def customer_profiles(seed: int, customers: int) -> pd.DataFrame:
    """All customers' profiles on the driver (for tests and checks; the job builds them on Spark)."""
    return _all_blocks(customer_profile_block, seed, customers)


def terminal_positions(seed: int, terminals: int) -> pd.DataFrame:
    """All terminals' positions on the driver (for tests and checks; the job builds them on Spark)."""
    return _all_blocks(terminal_position_block, seed, terminals)


def grid_cell(coordinate: np.ndarray | pd.Series | Column, radius: float) -> np.ndarray | Column:
    """The cell index of a coordinate on a grid of cells of side ``radius`` (numpy or Column)."""
    if isinstance(coordinate, Column):
        return F.floor(coordinate / F.lit(radius)).cast("int")
    return np.floor(np.asarray(coordinate) / radius).astype(np.int64)


def pair_by_grid_cells(customers: pd.DataFrame, terminals: pd.DataFrame, radius: float) -> pd.DataFrame:
    """(customer_id, terminal_id) of every terminal at distance < ``radius`` from a customer.

    Both frames hold ``id, x, y``. Each customer is joined only with the terminals of its own
    cell and the eight around it; the distance test is ``dx*dx + dy*dy < radius*radius``,
    written as in :func:`pair_customers_with_terminals` so both give the same pairs bit for bit.
    """
    buckets = terminals.assign(cell_x=grid_cell(terminals["x"], radius), cell_y=grid_cell(terminals["y"], radius))
    offsets = pd.DataFrame([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)], columns=["dx", "dy"])
    around = customers.merge(offsets, how="cross")  # 9 rows a customer, not a customer x terminal product
    around["cell_x"] = grid_cell(around["x"], radius) + around["dx"]
    around["cell_y"] = grid_cell(around["y"], radius) + around["dy"]
    pairs = around.merge(buckets, on=["cell_x", "cell_y"], suffixes=("_c", "_t"))
    dx, dy = pairs["x_c"] - pairs["x_t"], pairs["y_c"] - pairs["y_t"]
    pairs = pairs[dx * dx + dy * dy < radius * radius]
    return (pairs.rename(columns={"id_c": "customer_id", "id_t": "terminal_id"})[["customer_id", "terminal_id"]]
            .sort_values(["customer_id", "terminal_id"]).reset_index(drop=True))


def draw_customer_transactions(
    customer_id: int, mean_amount: float, mean_tx_per_day: float, terminals: np.ndarray, *, days: int, seed: int
) -> pd.DataFrame:
    """One customer's transactions over ``days`` days, before fraud (columns of :data:`RAW_SCHEMA`).

    ``terminals`` is the customer's list of terminal ids, ascending. A time of day outside
    (0, 86400) is dropped, as in the published simulator; an empty list gives no rows.
    """
    rng = _rng(seed, TRANSACTION_STREAM, int(customer_id))
    counts = rng.poisson(mean_tx_per_day, days)
    total = int(counts.sum())
    day = np.repeat(np.arange(days, dtype=np.int32), counts)
    seconds = np.trunc(rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_SD, total))
    amount = rng.normal(mean_amount, mean_amount / 2, total)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean_amount, int(negative.sum()))
    pick = rng.integers(0, max(len(terminals), 1), total)
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY)
    if len(terminals) == 0:
        keep[:] = False
    day = day[keep]
    # The place of each kept transaction within its customer's day: part of the row's key.
    starts = np.searchsorted(day, day, side="left")
    return pd.DataFrame({
        "customer_id": np.full(len(day), customer_id, dtype=np.int64),
        "day": day,
        "seq": (np.arange(len(day)) - starts).astype(np.int32),
        "seconds": seconds[keep].astype(np.int32),
        "terminal_id": np.asarray(terminals, dtype=np.int64)[pick[keep]] if len(terminals) else np.empty(0, np.int64),
        "drawn_cents": np.rint(amount[keep] * 100).astype(np.int64),
    })


def compromised_terminal_draws(params: PaymentsParams) -> pd.DataFrame:
    """Scenario 2's draws: (draw_day, terminal_id), distinct terminals within a day."""
    return _daily_draws(params.seed, TERMINAL_DRAW_STREAM, params.days, params.terminals,
                        params.compromised_terminals_per_day, "terminal_id")


def compromised_customer_draws(params: PaymentsParams) -> pd.DataFrame:
    """Scenario 3's draws: (draw_day, customer_id), distinct customers within a day."""
    return _daily_draws(params.seed, CUSTOMER_DRAW_STREAM, params.days, params.customers,
                        params.compromised_customers_per_day, "customer_id")


def _daily_draws(seed: int, stream: int, days: int, population: int, per_day: int, column: str) -> pd.DataFrame:
    rows = [(day, int(entity)) for day in range(days)
            for entity in _rng(seed, stream, day).choice(population, per_day, replace=False)]
    return pd.DataFrame(rows, columns=["draw_day", column]).astype({"draw_day": np.int32, column: np.int64})


def pick_compromised(pool: pd.DataFrame, *, seed: int, share: Fraction) -> pd.DataFrame:
    """Scenario 3 for one draw day: ``floor(n x share)`` of its ``n`` pooled transactions
    (columns ``draw_day`` and :data:`KEY`), drawn without replacement; returns their keys."""
    if pool.empty:
        return pool[KEY]
    pool = pool.sort_values(KEY).reset_index(drop=True)
    picks = len(pool) * share.numerator // share.denominator
    chosen = _rng(seed, PICK_STREAM, int(pool["draw_day"].iloc[0])).choice(len(pool), picks, replace=False)
    return pool.iloc[np.sort(chosen)][KEY]


# --- On Spark.


def _blocks_frame(
    spark: SparkSession, make_block: Callable[[int, int], pd.DataFrame], schema: str, *, seed: int, count: int
) -> DataFrame:
    blocks = math.ceil(count / PROFILE_BLOCK)

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for block in batch["id"].tolist():
                frame = make_block(seed, block)
                yield frame[frame["id"] < count]

    return spark.range(0, blocks, 1, numPartitions=max(1, min(blocks, spark.sparkContext.defaultParallelism))) \
        .mapInPandas(generate, schema)


def customer_profiles_frame(spark: SparkSession, params: PaymentsParams) -> DataFrame:
    """The customers' profiles on Spark (``id, x, y, mean_amount, mean_tx_per_day``)."""
    return _blocks_frame(spark, customer_profile_block, PROFILE_SCHEMA, seed=params.seed, count=params.customers)


def terminal_positions_frame(spark: SparkSession, params: PaymentsParams) -> DataFrame:
    """The terminals' positions on Spark (``id, x, y``)."""
    return _blocks_frame(spark, terminal_position_block, POSITION_SCHEMA, seed=params.seed, count=params.terminals)


def pair_customers_with_terminals(customers: DataFrame, terminals: DataFrame, radius: float) -> DataFrame:
    """(customer_id, terminal_id) of every terminal at distance < ``radius``, by grid cells.

    The Spark twin of :func:`pair_by_grid_cells`: an equi-join on the cell, never a cross join.
    """
    buckets = terminals.select(
        F.col("id").alias("terminal_id"), F.col("x").alias("terminal_x"), F.col("y").alias("terminal_y"),
        grid_cell(F.col("x"), radius).alias("cell_x"), grid_cell(F.col("y"), radius).alias("cell_y"),
    )
    offsets = F.array(*(F.lit(offset) for offset in (-1, 0, 1)))
    around = (customers
              .select(F.col("id").alias("customer_id"), F.col("x").alias("customer_x"), F.col("y").alias("customer_y"))
              .withColumn("dx", F.explode(offsets)).withColumn("dy", F.explode(offsets))
              .withColumn("cell_x", grid_cell(F.col("customer_x"), radius) + F.col("dx"))
              .withColumn("cell_y", grid_cell(F.col("customer_y"), radius) + F.col("dy")))
    dx = F.col("customer_x") - F.col("terminal_x")
    dy = F.col("customer_y") - F.col("terminal_y")
    return (around.join(buckets, ["cell_x", "cell_y"])
            .where(dx * dx + dy * dy < F.lit(radius * radius))
            .select("customer_id", "terminal_id"))


def raw_transactions(spark: SparkSession, params: PaymentsParams) -> DataFrame:
    """Every customer's transactions before fraud (:data:`RAW_SCHEMA`), generated on Spark."""
    customers = customer_profiles_frame(spark, params)
    pairs = pair_customers_with_terminals(customers, terminal_positions_frame(spark, params), params.radius)
    lists = pairs.groupBy("customer_id").agg(F.array_sort(F.collect_list("terminal_id")).alias("terminals"))
    # A customer with no terminal in range has no list and makes no transactions: inner join.
    profiles = customers.join(lists, customers["id"] == lists["customer_id"]).select(
        "customer_id", "mean_amount", "mean_tx_per_day", "terminals")
    days, seed = params.days, params.seed

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            frames = [
                draw_customer_transactions(row.customer_id, row.mean_amount, row.mean_tx_per_day,
                                           np.asarray(row.terminals, dtype=np.int64), days=days, seed=seed)
                for row in batch.itertuples(index=False)
            ]
            if frames:
                yield pd.concat(frames, ignore_index=True)

    return profiles.mapInPandas(generate, RAW_SCHEMA)


def _draw_days_by(spark: SparkSession, draws: pd.DataFrame, column: str) -> DataFrame:
    """One row per drawn entity with the days it was drawn on: joins without duplicating rows."""
    schema = f"draw_day int, {column} long"
    frame = spark.createDataFrame(draws, schema) if len(draws) else spark.createDataFrame([], schema)
    return frame.groupBy(column).agg(F.collect_list("draw_day").alias("draw_days"))


def within_window(draw_days: str, duration: int) -> Column:
    """True where ``day`` lies in [d, d + duration) for some d in the array column ``draw_days``."""
    return F.coalesce(F.exists(F.col(draw_days), lambda d: (F.col("day") >= d) & (F.col("day") < d + duration)),
                      F.lit(False))


def add_frauds(spark: SparkSession, raw: DataFrame, params: PaymentsParams) -> DataFrame:
    """The three fraud scenarios on ``raw`` transactions: adds ``times_picked`` (by scenario 3's
    draws), ``amount_cents`` (after its multiplication), ``scenario`` (0 for none, else the
    last one that applied) and ``fraud``.

    ``raw`` is read twice (the scenario 3 pool, then every row): cache it when it is expensive.
    """
    terminal_days = _draw_days_by(spark, compromised_terminal_draws(params), "terminal_id")
    customer_days = _draw_days_by(spark, compromised_customer_draws(params), "customer_id")
    seed, share = params.seed, params.compromised_share

    def pick(pool: pd.DataFrame) -> pd.DataFrame:
        return pick_compromised(pool, seed=seed, share=share)

    pool = (raw.join(F.broadcast(customer_days), "customer_id")
            .select(*KEY, F.explode("draw_days").alias("draw_day"))
            .where((F.col("day") >= F.col("draw_day"))
                   & (F.col("day") < F.col("draw_day") + params.customer_compromise_days)))
    picked = (pool.groupBy("draw_day").applyInPandas(pick, PICK_SCHEMA)
              .groupBy(*KEY).agg(F.count(F.lit(1)).alias("times_picked")))
    labelled = (raw.join(F.broadcast(terminal_days), "terminal_id", "left")
                .join(F.broadcast(picked), KEY, "left")
                .withColumn("times_picked", F.coalesce("times_picked", F.lit(0))))
    multiplied = F.round(F.col("drawn_cents") * F.pow(F.lit(params.amount_multiplier), F.col("times_picked")))
    scenario = (F.when(F.col("times_picked") > 0, 3)
                .when(within_window("draw_days", params.terminal_compromise_days), 2)
                .when(F.col("drawn_cents") > F.lit(params.amount_threshold * 100), 1)
                .otherwise(0))
    return labelled.select(
        *KEY, "seconds", "terminal_id", "drawn_cents", "times_picked",
        multiplied.cast("long").alias("amount_cents"),
        scenario.alias("scenario"),
        (scenario > 0).cast("int").alias("fraud"),
    )


@dataclass(frozen=True)
class GeneratedPayments:
    """Labelled synthetic payments, and the raw rows held in the cache while they are used."""

    labelled: DataFrame
    cached_raw: DataFrame

    def release(self) -> None:
        """Drop the cached raw rows; call once the labelled rows are written."""
        self.cached_raw.unpersist()


def generate_payments(spark: SparkSession, params: PaymentsParams) -> GeneratedPayments:
    """Synthetic payment transactions with their fraud labels, before ids (nothing computed yet).

    ``labelled`` has the columns :data:`KEY`, ``seconds``, ``terminal_id``, ``drawn_cents``,
    ``times_picked`` (by scenario 3), ``amount_cents``, ``scenario``, ``fraud``. The raw rows
    are cached, since both the scenario 3 pool and the labelling read them;
    :meth:`GeneratedPayments.release` drops them.

    Example::

        payments = generate_payments(spark, PaymentsParams(customers=500, days=30, seed=7))
        try:
            written = write_payments_csv(payments.labelled, "/tmp/payments", start_date=date(2018, 4, 1))
        finally:
            payments.release()

    :raises InvalidArgumentError: see :func:`check_payments_params`.
    """
    check_payments_params(params)
    raw = raw_transactions(spark, params).persist(StorageLevel.MEMORY_AND_DISK)
    return GeneratedPayments(labelled=add_frauds(spark, raw, params), cached_raw=raw)


def with_transaction_ids(labelled: DataFrame, rows_per_day: dict[int, int]) -> DataFrame:
    """Adds ``transaction_id``: unique over the run, in the order (day, second, customer, seq).

    ``rows_per_day`` (a small aggregate) gives each day's first id, so only a window within a
    day is needed, never one over the whole run.
    """
    first_ids, running = {}, 0
    for day in sorted(rows_per_day):
        first_ids[day] = running
        running += rows_per_day[day]
    offset = F.create_map(*(F.lit(value) for pair in first_ids.items() for value in pair)) if first_ids else None
    order = Window.partitionBy("day").orderBy("seconds", "customer_id", "seq")
    within_day = F.row_number().over(order) - 1
    return labelled.withColumn("transaction_id", (offset[F.col("day")] + within_day).cast("long"))


def handbook_columns(frame: DataFrame, start_date: date) -> DataFrame:
    """The Handbook's raw schema (:data:`OUTPUT_COLS`), plus ``day`` for the writer.

    ``TX_DATETIME`` is ``YYYY-MM-DD HH:MM:SS`` (a wall-clock time with no zone, as published);
    ``TX_AMOUNT`` is written with exactly two decimals from the integer cents.
    """
    when = F.date_format(F.date_add(F.lit(start_date), F.col("day")), "yyyy-MM-dd")
    clock = F.format_string("%02d:%02d:%02d", F.floor(F.col("seconds") / 3600).cast("int"),
                            F.floor((F.col("seconds") % 3600) / 60).cast("int"), (F.col("seconds") % 60).cast("int"))
    amount = F.format_string("%d.%02d", F.floor(F.col("amount_cents") / 100),
                             (F.col("amount_cents") % 100).cast("int"))
    return frame.select(
        "day",
        F.col("transaction_id").alias("TRANSACTION_ID"),
        F.concat_ws(" ", when, clock).alias("TX_DATETIME"),
        F.col("customer_id").alias("CUSTOMER_ID"),
        F.col("terminal_id").alias("TERMINAL_ID"),
        amount.alias("TX_AMOUNT"),
        F.col("fraud").alias("TX_FRAUD"),
    )


@dataclass(frozen=True)
class PaymentsOutput:
    """What a run wrote: the files (day order), rows a day, and frauds per final scenario."""

    files: list[Path]
    dates: list[date]
    rows_per_day: dict[int, int]
    scenario_frauds: dict[int, int]

    @property
    def rows(self) -> int:
        return sum(self.rows_per_day.values())

    @property
    def frauds(self) -> int:
        return sum(self.scenario_frauds.values())


def write_payments_csv(labelled: DataFrame, output_dir: str | Path, *, start_date: date) -> PaymentsOutput:
    """Write one CSV a day into ``output_dir``, named :func:`synthetic_file_name` (day 1 is
    ``start_date``; a day without transactions has no file), and count rows and frauds.

    Spark writes into a hidden staging folder; earlier ``synthetic-day-*.csv`` files are
    replaced only once all the new ones are written. Local paths only.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f"_spark-{uuid.uuid4().hex}"
    labelled = labelled.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = labelled.groupBy("day", "scenario").count().collect()
        rows_per_day: dict[int, int] = {}
        scenario_frauds = {scenario: 0 for scenario in SCENARIOS}
        for row in counts:
            rows_per_day[row["day"]] = rows_per_day.get(row["day"], 0) + row["count"]
            if row["scenario"]:
                scenario_frauds[row["scenario"]] += row["count"]
        rows = handbook_columns(with_transaction_ids(labelled, rows_per_day), start_date)
        (rows.repartition("day").sortWithinPartitions("day", "TRANSACTION_ID")
         .write.partitionBy("day").option("header", True).csv(str(staging)))
        day_parts = {}
        for folder in staging.glob("day=*"):
            parts = sorted(folder.glob("part-*.csv"))
            if len(parts) != 1:
                raise RuntimeError(f"{folder} holds {len(parts)} files: one a day expected")
            day_parts[int(folder.name.split("=", 1)[1])] = parts[0]
        for old in output.glob(f"{SYNTHETIC_FILE_PREFIX}*.csv"):
            old.unlink()
        files = []
        for day in sorted(day_parts):
            target = output / synthetic_file_name(day + 1)
            day_parts[day].replace(target)
            files.append(target)
        return PaymentsOutput(
            files=files, dates=[start_date + timedelta(days=day) for day in sorted(day_parts)],
            rows_per_day=dict(sorted(rows_per_day.items())), scenario_frauds=scenario_frauds,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        labelled.unpersist()


def payments_manifest(params: PaymentsParams, written: PaymentsOutput) -> dict[str, Any]:
    """The manifest of a payments run: says it is synthetic, and every figure of the run."""
    return {
        "synthetic": True,
        "profile": "payments",
        "note": ("Synthetic payment transactions, generated by jobs/generate.py --profile payments to the "
                 "design published in the Fraud Detection Handbook, chapter 3 (Le Borgne et al., 2022). "
                 "Not real transactions, customers or terminals."),
        "parameters": params.as_manifest(),
        "seed": params.seed,
        "rows": written.rows,
        "frauds": written.frauds,
        "fraud_rate": written.frauds / written.rows if written.rows else 0.0,
        "scenario_frauds": {str(scenario): count for scenario, count in written.scenario_frauds.items()},
        "files": [
            {"file": path.name, "date": day.isoformat(), "rows": written.rows_per_day[(day - params.start_date).days]}
            for path, day in zip(written.files, written.dates, strict=True)
        ],
    }
