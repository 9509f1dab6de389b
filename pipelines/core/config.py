"""Per-environment settings, read once from ``conf/<env>.toml`` and passed down as values.

A file may start with ``extends = "local"``: it then holds only what differs from that
environment's file, table by table (``[train.candidates]``, when given, replaces the search).
Relative paths in a config file are relative to the project root; URIs (``s3a://…``,
``http://…``) are kept as they are. ``${NAME}`` in a string value is replaced by the
environment variable ``NAME`` so that secrets and per-deployment values never sit in a
committed file.

Each section is defined once, below: a frozen dataclass whose fields are the file's keys, with
their types, defaults and ranges, validated by pydantic. The file is checked into them before
anything uses it: an unknown key or section, a missing one, or a value of the wrong type or
out of range is a :class:`ConfigError` naming the file and every bad key (one line each), never
a default used in its place. The same objects are what the code is given; building or
replacing one in code (``dataclasses.replace``) checks the same rules.

Example::

    settings = load_settings("local")
    settings.tables.transactions_path   # '/…/fraud-scoring/lake/transactions'
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomllib
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from pipelines.core.errors import ConfigError

# spark-submit.sh names the project root: under spark-submit this module may be imported from
# the code archive shipped to executors (build/fraud_scoring.zip), not from the checkout.
PROJECT_ROOT = Path(os.environ.get("FRAUD_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
CONF_DIR = PROJECT_ROOT / "conf"

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --- What a file may hold, and what the code is given: one definition per section ----------
# Each section is a frozen dataclass that pydantic validates: loading a file, and building or
# replacing (dataclasses.replace) a section in code, check the same rules. A misspelt key is an
# error, never a default used in its place. Values that came from ${NAME} are strings, so
# numbers and booleans are also read from text; anything else of the wrong type is refused
# rather than converted.

def _boolean(value: Any) -> Any:
    # pydantic alone would also take yes/no/on/off and 1.0; a flag in this project is spelt
    # true/false, or 1/0 as scripts often export it.
    spelling = str(value).strip().lower() if isinstance(value, str | int) else None
    if spelling in ("true", "1"):
        return True
    if spelling in ("false", "0"):
        return False
    raise ValueError("expected a boolean")


def _not_a_boolean(value: Any) -> Any:
    # pydantic would read TOML's true as the number 1.
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return value


def _spark_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # Spark's spelling; str(True) is "True"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("expected a string, number or boolean")


def _values_to_try(value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("expected at least one value to try")
    if not all(isinstance(item, str | int | float) for item in values):
        raise ValueError("expected a value or a list of values (strings, numbers or booleans)")
    return values


def _iso_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):  # written unquoted, TOML's own date-time
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected an ISO date-time such as '2013-09-01T00:00:00'")


_Boolean = Annotated[bool, BeforeValidator(_boolean)]
_Integer = Annotated[int, BeforeValidator(_not_a_boolean)]
_Number = Annotated[float, BeforeValidator(_not_a_boolean)]
_Text = Annotated[str, Field(min_length=1)]
_SparkValue = Annotated[str, BeforeValidator(_spark_value)]
_ValuesToTry = Annotated[list[Any], BeforeValidator(_values_to_try)]
_IsoDatetime = Annotated[datetime, BeforeValidator(_iso_datetime)]

# populate_by_name: a key spelt differently in the file (``policy``) is still set by its field's
# name in code (``ThresholdPolicy(name=...)``), as dataclasses.replace does.
_SECTION = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

# The jobs under jobs/, each a `./spark-submit.sh <job>`: [spark.jobs.<job>] holds one's own settings.
JobName = Literal["features", "generate", "ingest", "label", "monitor", "promote", "publish", "retrain", "rollback",
                  "score", "sql", "train"]


@dataclass(frozen=True, config=_SECTION)
class ThresholdPolicy:
    """How the decision threshold is chosen on validation scores (``[train.threshold]``), at the
    real class balance (:func:`pipelines.model.evaluation.choose_threshold` applies it).

    - ``max_f1``: the threshold with the highest F1;
    - ``target_precision``: the lowest threshold whose precision reaches ``target_precision``
      (the most recall at that precision), else the one with the highest precision;
    - ``min_cost``: the lowest expected cost ``cost_missed_fraud * FN + cost_false_alarm * FP``.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("max_f1", "target_precision", "min_cost")

    name: Literal[NAMES] = Field("max_f1", alias="policy")  # Literal[("a", "b")] is Literal["a", "b"]
    target_precision: _Number = Field(0.9, gt=0, le=1)
    cost_missed_fraud: _Number = Field(100.0, gt=0)
    cost_false_alarm: _Number = Field(1.0, gt=0)


@dataclass(frozen=True, config=_SECTION)
class SparkSettings:
    master: _Text
    app_name: _Text = "fraud-scoring"
    conf: dict[str, _SparkValue] = Field(default_factory=dict)  # any Spark key
    # Per job, settings that replace [spark.conf]'s for that job's application only.
    jobs: dict[JobName, dict[str, _SparkValue]] = Field(default_factory=dict)

    def for_job(self, job: str | None) -> SparkSettings:
        """These settings as ``job`` runs with them: its own ``[spark.jobs.<job>]`` over ``conf``."""
        return replace(self, conf={**self.conf, **self.jobs.get(job, {})}) if job else self


@dataclass(frozen=True, config=_SECTION)
class TableSettings:
    # A folder, relative to the project root in a file; absolute once loaded.
    root: _Text
    transactions: _Text = "transactions"
    scored: _Text = "scored_transactions"
    # Scores of models that do not decide (score --shadow): a challenger's, beside the champion's.
    shadow: _Text = "shadow_scored_transactions"
    # Every promotion decision and rollback, one row each.
    promotions: _Text = "promotions"
    # Labels that arrive after ingest (chargebacks): the newest label of a transaction wins.
    labels: _Text = "labels"
    # Monitoring (pipelines/monitoring): each version's baseline profile, and per scored day
    # its drift metrics, realized performance and verdict; every retraining trigger.
    baselines: _Text = "monitor_baselines"
    drift: _Text = "monitor_drift"
    performance: _Text = "monitor_performance"
    verdicts: _Text = "monitor_verdicts"
    retrains: _Text = "retrain_triggers"
    # A folder (not a table): the per-day HTML reports and their pictures.
    reports: _Text = "monitor_reports"
    # The payments profile's history features, one row per transaction (pipelines/features).
    features: _Text = "features"

    def path(self, table: str) -> str:
        """Where the table (or folder) named ``table`` lives: ``root/table``."""
        return f"{self.root.rstrip('/')}/{table}"

    def locations(self) -> dict[str, str]:
        """Every Delta table of the project by name, with where it lives (existing or not)."""
        names = [self.transactions, self.scored, self.shadow, self.promotions, self.labels,
                 self.baselines, self.drift, self.performance, self.verdicts, self.retrains, self.features]
        return {name: self.path(name) for name in names}

    @property
    def transactions_path(self) -> str:
        return self.path(self.transactions)

    @property
    def scored_path(self) -> str:
        return self.path(self.scored)

    @property
    def shadow_path(self) -> str:
        return self.path(self.shadow)

    @property
    def promotions_path(self) -> str:
        return self.path(self.promotions)


@dataclass(frozen=True, config=_SECTION)
class MlflowSettings:
    tracking_uri: _Text
    experiment: _Text
    model_name: _Text
    # None in a file: the tracking URI (filled in when loaded).
    registry_uri: _Text | None = None
    # None: the tracking server's choice.
    artifact_location: str | None = None
    champion_alias: _Text = "champion"
    # What train registers a new version as; only promote moves the champion.
    challenger_alias: _Text = "challenger"
    # How long one HTTP request to the tracking server may take, and how often a failed one is
    # retried (with this backoff factor): small, so that an unreachable server fails a job fast.
    # Whole seconds, like the backoff factor: MLflow reads both with int(), and "2.5" in its
    # MLFLOW_HTTP_REQUEST_TIMEOUT would fail the first request instead of timing it.
    request_timeout_seconds: _Integer = Field(10, gt=0)
    request_max_retries: _Integer = Field(2, ge=0)
    request_backoff_factor: _Integer = Field(1, ge=0)


@dataclass(frozen=True, config=_SECTION)
class IngestSettings:
    start: _IsoDatetime


@dataclass(frozen=True, config=_SECTION)
class EnsembleSettings:
    # Candidates whose best fits are also tried averaged, as the candidate "ensemble".
    members: tuple[_Text, ...] = ()


@dataclass(frozen=True, config=_SECTION)
class TrainSettings:
    # [train.candidates.NAME]: the keys are the estimator's parameters, which
    # pipelines.training.search.check_train_settings checks against the estimator itself.
    candidates: dict[str, dict[str, _ValuesToTry]] = Field(min_length=1)
    label_col: _Text = "Class"
    seed: _Integer = Field(42, ge=0)
    holdout_days: _Integer = Field(1, ge=1)
    # Days between the training window and the held-out days, in neither: the time it takes to
    # learn a label (the Fraud Detection Handbook's protocol leaves 7).
    gap_days: _Integer = Field(0, ge=0)
    # How many days before the gap the training window holds; 0: every day there is.
    window_days: _Integer = Field(0, ge=0)
    # Card Precision@k is measured with this k where the profile has a card key: the cards
    # analysts can check in a day.
    card_precision_k: _Integer = Field(100, ge=1)
    validation_fraction: _Number = Field(0.4, gt=0, lt=1)
    validation_folds: _Integer = Field(2, ge=1)
    refit_on_all_days: _Boolean = True
    class_weighting: Literal["none", "balanced"] = "none"
    normal_weight: _Number = Field(1.0, gt=0)
    # The rows are spread over this many parts for fitting: a fixed number, so that seeded
    # fits give the same models whatever the cluster's size at the time.
    fit_partitions: _Integer = Field(2, ge=1)
    # How many fits the search runs at once (threads sharing the one SparkContext); 1: one
    # after another. Results do not depend on it: each fit sees the same rows in the same parts.
    parallel_fits: _Integer = Field(2, ge=1)
    # The ensemble is made of its members' fits from their own searches (fold, window and
    # all-days models) instead of fitting them again; off: refit, as before (the baseline).
    reuse_member_fits: _Boolean = True
    threshold: ThresholdPolicy = Field(default_factory=ThresholdPolicy)
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)

    def __post_init__(self) -> None:
        if self.window_days and self.refit_on_all_days:
            raise ValueError("refit_on_all_days = true would fit on every day, not on the window_days "
                             "window: set one of them")

    @property
    def ensemble_members(self) -> tuple[str, ...]:
        return self.ensemble.members


def _two_numbers(value: Any) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("expected two numbers, [lowest, highest]")
    return value


def _lowest_first(bounds: tuple[float, float]) -> tuple[float, float]:
    return (min(bounds), max(bounds))


@dataclass(frozen=True, config=_SECTION)
class PromoteSettings:
    """The promotion gate's limits (``[promote]``); see pipelines/lifecycle/promotion.py."""

    min_auc_pr: _Number = Field(0.7, ge=0, le=1)
    min_recall: _Number = Field(0.6, ge=0, le=1)
    # Alerts per 100,000 transactions at the real class balance, at the version's threshold:
    # the lower and the upper limit, in either order in a file.
    alerts_per_100k: Annotated[tuple[_Number, _Number], BeforeValidator(_two_numbers),
                               AfterValidator(_lowest_first)] = (10.0, 2000.0)
    # The largest drop in AUC-PR against the champion tolerated at 95% confidence.
    max_auc_pr_drop: _Number = Field(0.02, ge=0, le=1)
    # Where the profile has a card key (payments): the lowest Card Precision@k ([train]
    # card_precision_k) on the evidence rows, the mean of their days.
    min_card_precision: _Number = Field(0.0, ge=0, le=1)
    # The gate looks at the table's last ``evidence_days`` days with rows only; 0: every day.
    evidence_days: _Integer = Field(0, ge=0)
    # With a champion but no labelled rows that neither version was fitted on: "refuse", or
    # "absolute_only" (the comparison is skipped; the absolute checks decide).
    without_unseen_rows: Literal["refuse", "absolute_only"] = "refuse"
    bootstrap_samples: _Integer = Field(1000, ge=100)
    seed: _Integer = Field(7, ge=0)


# The metrics whose alarm band is widened to at least a minimum effect ([monitor.min_effect]).
DRIFT_METRICS = ("psi", "js_distance", "wasserstein_std", "ks", "null_share", "out_of_range_share",
                 "alert_rate_change")


@dataclass(frozen=True, config=_SECTION)
class MinEffectSettings:
    """The smallest change of each drift metric that counts (``[monitor.min_effect]``)."""

    psi: _Number = Field(0.1, ge=0)
    js_distance: _Number = Field(0.1, ge=0, le=1)
    wasserstein_std: _Number = Field(0.1, ge=0)
    ks: _Number = Field(0.1, ge=0, le=1)
    null_share: _Number = Field(0.01, ge=0, le=1)
    out_of_range_share: _Number = Field(0.01, ge=0, le=1)
    alert_rate_change: _Number = Field(0.25, ge=0)

    def __getitem__(self, metric: str) -> float:
        if metric not in DRIFT_METRICS:
            raise KeyError(metric)
        return getattr(self, metric)


@dataclass(frozen=True, config=_SECTION)
class MonitorSettings:
    """Monitoring (``[monitor]``); see pipelines/monitoring and docs/monitoring.md."""

    # A baseline cuts each column at this many quantiles (fine bins: KS, Wasserstein) and
    # groups them into ``psi_bins`` bins of about equal baseline mass (PSI, Jensen-Shannon);
    # never more of those than of the fine ones.
    bins: _Integer = Field(100, ge=4, le=1000)
    psi_bins: _Integer = Field(10, ge=2, le=100)
    # A metric's alarm band at a day's row count: this quantile of the metric between two
    # samples drawn from the baseline itself (one of the baseline's size, one of the day's),
    # over ``band_samples`` draws; never below the metric's minimum effect.
    band_samples: _Integer = Field(1000, ge=50)
    band_quantile: _Number = Field(0.99, gt=0.5, lt=1)
    min_effect: MinEffectSettings = Field(default_factory=MinEffectSettings)
    # A column is drifted when it is out of band on at least ``drift_days`` of the last
    # ``window_days`` monitored days (today included).
    drift_days: _Integer = Field(2, ge=1)
    window_days: _Integer = Field(3, ge=1)
    # Realized performance: bootstrap resamples of the day's labelled rows, and the interval.
    bootstrap_samples: _Integer = Field(500, ge=100)
    confidence: _Number = Field(0.95, gt=0.5, lt=1)
    seed: _Integer = Field(11, ge=0)
    # The report shows this many days of history.
    report_days: _Integer = Field(30, ge=1)
    # After a retraining triggered by an alert, no other is started for this many days.
    retrain_cool_down_days: _Number = Field(7.0, ge=0)

    def __post_init__(self) -> None:
        if self.drift_days > self.window_days:
            raise ValueError(f"drift_days ({self.drift_days}) cannot exceed window_days ({self.window_days}): "
                             "a column could never count as drifted")
        if self.psi_bins > self.bins:
            object.__setattr__(self, "psi_bins", self.bins)  # frozen: set once, while being built


@dataclass(frozen=True, config=_SECTION)
class ServeSettings:
    """The online scoring service (``[serve]``); see pipelines/serving."""

    host: _Text = "127.0.0.1"
    port: _Integer = Field(8000, ge=1, le=65535)
    # Where the bearer token is read from when neither FRAUD_SERVE_TOKEN nor
    # FRAUD_SERVE_TOKEN_FILE is set (absolute once loaded); None: only those.
    token_file: _Text | None = None
    # The most transactions one request may carry, and the largest body accepted.
    max_batch: _Integer = Field(1000, ge=1, le=100_000)
    max_body_bytes: _Integer = Field(4_000_000, ge=1024)
    # How often the registry alias is read, to pick up a promotion or a rollback.
    poll_seconds: _Number = Field(10.0, gt=0)
    # How long an idle keep-alive connection stays open: longer than a load balancer's idle
    # timeout (often 60 s), or the balancer reuses a connection the service has just closed.
    keep_alive_seconds: _Integer = Field(75, ge=1)


@dataclass(frozen=True, config=_SECTION)
class OnlineSettings:
    """The online feature store (``[online]``): a Redis that holds each card's recent
    transactions and each terminal's delayed windows, so that the service computes a payments
    model's history features at request time (pipelines/online; docs/online-features.md).

    The URL comes from ``$FRAUD_ONLINE_URL``, else ``url``, else a Cloud Foundry binding named
    ``cf_service``; with none, ``make serve`` starts a local one. The password comes from
    ``$FRAUD_ONLINE_PASSWORD``, else the file ``$FRAUD_ONLINE_PASSWORD_FILE`` or
    ``password_file`` (mode 600), else the URL's own.
    """

    url: _Text | None = None
    password_file: _Text | None = None
    cf_service: _Text = "fraud-online-store"
    # Every key the project writes starts with this (one store can hold several environments).
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "fraud"
    # How long one step may wait for the store (connect and each reply) before the request is
    # answered 503: a payment platform's own deadline is tens of milliseconds.
    timeout_ms: _Integer = Field(200, ge=1, le=60_000)
    # The share of answers whose features are logged for the nightly skew check, and where.
    echo_sample: _Number = Field(0.01, ge=0.0, le=1.0)
    echo_dir: _Text | None = None


# How ``score`` computes probabilities: "portable" scores the version's portable form
# (pipelines/model/portable) over Arrow batches in the executors' Python; "spark" runs the Spark ML
# PipelineModel's own ``transform``, the reference the portable form is checked against.
SCORE_ENGINES = ("portable", "spark")


@dataclass(frozen=True, config=_SECTION)
class ScoreSettings:
    engine: Literal[SCORE_ENGINES] = "portable"


@dataclass(frozen=True, config=_SECTION)
class CatalogSettings:
    """A metastore that outlives the session (``[catalog]``): tables by name, not by path."""

    # The database (Hive schema) the project's tables are registered in: a plain SQL
    # identifier, so that it never needs quoting in an analyst's query.
    database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


# What a column of the input may be called in [profile]: a plain SQL identifier, so that it
# is never quoted in a query and Delta takes it as a column name.
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The payments table's own columns (pipelines/data/payments.py): an extra column must not take one.
PAYMENTS_TABLE_COLUMNS = ("transaction_id", "event_time", "txn_date", "card_key", "terminal_id", "amount",
                          "label", "source_file", "ingested_at")
# Letters of a Spark datetime pattern that name a zone or an offset (the zone is [profile]'s),
# or that Spark no longer parses (week-based year and the like), or that mean something else
# than they seem (D: day of the year, not of the month).
_ZONE_LETTERS, _UNPARSED_LETTERS = set("VzOXxZ"), set("YwWuec")


def _column_name(value: Any) -> Any:
    if isinstance(value, str) and not _COLUMN_NAME.fullmatch(value):
        raise ValueError("expected a column name of letters, digits and _ (not starting with a digit)")
    return value


def _optional_column(value: Any) -> Any:
    # TOML has no null: "" says the file comes without the column (a label-less file).
    return None if value == "" else _column_name(value)


def _time_zone(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("expected an IANA time zone name such as 'UTC' or 'Europe/Brussels'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone name such as 'UTC' or 'Europe/Brussels'") from None
    return value


def _wall_clock_pattern(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    letters = set(re.sub(r"'[^']*'", "", value))  # text in quotes is literal
    if letters & _ZONE_LETTERS:
        raise ValueError("expected a wall-clock pattern without a zone or offset ([profile] time_zone says "
                         "where the clock is)")
    if letters & _UNPARSED_LETTERS or "D" in letters or not {"y", "M", "d"} <= letters:
        raise ValueError("expected a Spark datetime pattern with y, M and d, such as 'yyyy-MM-dd HH:mm:ss' "
                         "(YYYY and DD mean week-based year and day of the year there)")
    return value


_ColumnName = Annotated[str, Field(min_length=1), AfterValidator(_column_name)]


@dataclass(frozen=True, config=_SECTION)
class ProfileSettings:
    """What the input files are (``[profile]``): which kind of data, and for ``payments`` which
    column plays which role. Absent from a file: ``creditcard``, the public data set's format.

    For ``payments`` the defaults are the Fraud Detection Handbook's raw schema
    (``TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD``); a file with other
    names maps them here. The card column is pseudonymised at ingest with a keyed hash whose
    secret is ``$FRAUD_CARD_KEY_SECRET`` or ``card_key_secret_file``
    (:mod:`pipelines.core.secrets`). The column keys are read for ``payments`` only.
    """

    KINDS: ClassVar[tuple[str, ...]] = ("creditcard", "payments")

    kind: Literal[KINDS] = "creditcard"
    id_column: _ColumnName = "TRANSACTION_ID"
    event_time_column: _ColumnName = "TX_DATETIME"
    # The zone the event times' wall clock is in, and their pattern (Spark's datetime letters).
    time_zone: Annotated[str, BeforeValidator(_time_zone)] = "UTC"
    time_format: Annotated[str, Field(min_length=1), AfterValidator(_wall_clock_pattern)] = "yyyy-MM-dd HH:mm:ss"
    card_column: _ColumnName = "CUSTOMER_ID"
    terminal_column: _ColumnName = "TERMINAL_ID"
    amount_column: _ColumnName = "TX_AMOUNT"
    # "" in a file: the files come without labels (they arrive later through `label`).
    label_column: Annotated[str | None, BeforeValidator(_optional_column)] = "TX_FRAUD"
    # Further numeric columns kept as doubles under their own names.
    extra_numeric_columns: tuple[_ColumnName, ...] = ()
    # Where the card key's secret is read from when $FRAUD_CARD_KEY_SECRET is not set (absolute
    # once loaded); it must be readable by its owner only. None: only the variable.
    card_key_secret_file: _Text | None = None

    def __post_init__(self) -> None:
        named = [*self.role_columns().values(), *self.extra_numeric_columns]
        repeated = sorted({name for name in named if named.count(name) > 1})
        if repeated:
            raise ValueError(f"a column can play one role only: {', '.join(repeated)} is named twice")
        taken = sorted(set(self.extra_numeric_columns) & set(PAYMENTS_TABLE_COLUMNS))
        if taken:
            raise ValueError(f"extra_numeric_columns: {', '.join(taken)} is a column of the transactions "
                             f"table itself; rename it in the file")

    def role_columns(self) -> dict[str, str]:
        """The input's column for each role (``label`` only when the files carry one)."""
        roles = {"id": self.id_column, "event_time": self.event_time_column, "card": self.card_column,
                 "terminal": self.terminal_column, "amount": self.amount_column}
        return roles | ({"label": self.label_column} if self.label_column else {})

    def required_columns(self) -> list[str]:
        """Every column an input file must have: the roles', then the extra numeric ones."""
        return [*self.role_columns().values(), *self.extra_numeric_columns]


_Days = Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=1, le=3650)]


@dataclass(frozen=True, config=_SECTION)
class HistoryFeatures:
    """One entity's history features (``[features.card]``, ``[features.terminal]``): for each
    window of ``w`` days, aggregates over the entity's transactions in (t - delay - w, t - delay].

    With no delay the window ends at the transaction itself: it holds the transaction and the
    ones before it in the order of (event time, transaction id), so of two at one instant the
    first counts in the second's window and not the other way round. ``fraud_share`` counts
    labels, which are only known later: it needs a delay of at least two days, so that every
    transaction in its window came before the day began, even a 25-hour day (docs/features.md).
    """

    AGGREGATES: ClassVar[tuple[str, ...]] = ("count", "mean_amount", "fraud_share")

    windows_days: tuple[_Days, ...]
    aggregates: tuple[Literal[AGGREGATES], ...]
    delay_days: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0, le=3650)] = 0

    def __post_init__(self) -> None:
        if not self.windows_days or len(set(self.windows_days)) != len(self.windows_days):
            raise ValueError("windows_days: expected one or more different numbers of days")
        if not self.aggregates or len(set(self.aggregates)) != len(self.aggregates):
            raise ValueError(f"aggregates: expected one or more different names of {', '.join(self.AGGREGATES)}")
        if "fraud_share" in self.aggregates and self.delay_days < 2:
            raise ValueError("fraud_share needs delay_days of at least 2: a transaction of day D counts the "
                             "labels known when D began, and on a 25-hour day (summer time ending) one "
                             "day back is still inside D")


@dataclass(frozen=True, config=_SECTION)
class FeatureSettings:
    """The payments profile's features (``[features]``), computed by ``./spark-submit.sh
    features`` (:mod:`pipelines.features`). The defaults are the Fraud Detection Handbook's 14:
    a card's count and mean amount over 1, 7 and 30 days; a terminal's count and fraud share over
    1, 7 and 30 days ending 7 days back; weekend, and night (local hours 0 to 6, both included).
    """

    card: HistoryFeatures = HistoryFeatures(windows_days=(1, 7, 30), aggregates=("count", "mean_amount"))
    terminal: HistoryFeatures = HistoryFeatures(windows_days=(1, 7, 30), aggregates=("count", "fraud_share"),
                                                delay_days=7)
    weekend_flag: _Boolean = True
    night_flag: _Boolean = True
    # The local hours that are night, first and last included ([0, 6] is 00:00 to 06:59).
    night_hours: tuple[Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0, le=23)],
                       Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0, le=23)]] = (0, 6)

    def __post_init__(self) -> None:
        if self.night_hours[0] > self.night_hours[1]:
            raise ValueError("night_hours: expected [first, last] with first <= last, such as [0, 6]")


@dataclass(frozen=True, config=_SECTION)
class Settings:
    """One environment's file, checked; ``env`` is its name (not a key of the file)."""

    env: str
    spark: SparkSettings
    tables: TableSettings
    mlflow: MlflowSettings
    ingest: IngestSettings
    train: TrainSettings
    promote: PromoteSettings = Field(default_factory=PromoteSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    # None: no metastore; the tables are known by their paths only (the local default).
    catalog: CatalogSettings | None = None
    # What the input files are; creditcard (the public data set) when the file has no [profile].
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    # The payments profile's history features; not read for creditcard.
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    online: OnlineSettings = Field(default_factory=OnlineSettings)


@dataclass(frozen=True, config=_SECTION)
class ServingSettings:
    """What the service reads of an environment's file: ``[mlflow]``, ``[serve]``, and for a
    payments model the profile, its features and the online store."""

    env: str
    mlflow: MlflowSettings
    serve: ServeSettings = Field(default_factory=ServeSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    online: OnlineSettings = Field(default_factory=OnlineSettings)


def with_state_in(settings: Settings, folder: Path) -> Settings:
    """The same settings with the Delta tables and the MLflow store (SQLite) under ``folder``.

    For tests and benchmarks, which must never touch an environment's real tables.
    """
    store = f"sqlite:///{folder / 'mlflow.db'}"
    return replace(
        settings,
        tables=replace(settings.tables, root=str(folder / "lake")),
        mlflow=replace(settings.mlflow, tracking_uri=store, registry_uri=store,
                       artifact_location=str(folder / "artifacts")),
    )


def config_path(env: str) -> Path:
    """The file for ``env``: a name under ``conf/`` (``local``) or a path to a ``.toml`` file."""
    if env.endswith(".toml"):
        return Path(env).resolve()
    return CONF_DIR / f"{env}.toml"


def load_settings(env: str = "local", *, project_root: Path = PROJECT_ROOT) -> Settings:
    """Read and check the settings of one environment.

    :param env: a config name in ``conf/`` (``local``, ``cluster``) or a path to a ``.toml`` file.
    :param project_root: what relative paths in the file are relative to.
    :raises ConfigError: the file is missing or is not valid TOML; it names an environment
        variable that is not set; or it has unknown or missing keys or values of the wrong type
        or out of range (every one named, a line each: ``<file>: [train] seed: must be at
        least 0, got -1``).
    """
    path, raw = _read(env)
    settings = _validated(Settings, env, _expand_env(raw, path), path)
    return replace(settings, tables=replace(settings.tables, root=_resolve_path(settings.tables.root, project_root)),
                   mlflow=_resolved_mlflow(settings.mlflow, project_root),
                   serve=_resolved_serve(settings.serve, project_root),
                   profile=_resolved_profile(settings.profile, project_root),
                   online=_resolved_online(settings.online, project_root))


def load_serving_settings(env: str = "local", *, project_root: Path = PROJECT_ROOT) -> ServingSettings:
    """Read and check what the online scoring service needs: ``[mlflow]`` and ``[serve]``.

    The other sections are the batch jobs' (checked when they load the file): their
    ``${NAME}`` references, such as a Spark master, need not be set where the service runs.

    :raises ConfigError: as :func:`load_settings`, for these two sections.
    """
    path, raw = _read(env)
    sections = {name: raw[name] for name in ("mlflow", "serve", "profile", "features", "online") if name in raw}
    settings = _validated(ServingSettings, env, _expand_env(sections, path), path)
    return replace(settings, mlflow=_resolved_mlflow(settings.mlflow, project_root),
                   serve=_resolved_serve(settings.serve, project_root),
                   profile=_resolved_profile(settings.profile, project_root),
                   online=_resolved_online(settings.online, project_root))


def _read(env: str, *, extended_by: tuple[Path, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """The file's tables; with ``extends = "<env>"`` at its top, laid over that file's."""
    path = config_path(env)
    if not path.is_file():
        known = sorted(p.stem for p in CONF_DIR.glob("*.toml"))
        raise ConfigError(f"no config file {path} for env {env!r}; known environments: {known}")
    if path in extended_by:
        raise ConfigError(f"{extended_by[-1]}: extends {env!r}, which extends it again")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    base = raw.pop("extends", None)
    if base is None:
        return path, raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: extends: expected the name of another environment, got {_shown(base)}")
    return path, _laid_over(_read(base, extended_by=(*extended_by, path))[1], raw)


# Tables an extending file replaces whole: its candidates are the search, not additions to it.
_REPLACED_WHOLE = {("train", "candidates")}


def _laid_over(base: dict[str, Any], own: dict[str, Any], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """``own``'s values over ``base``'s, table by table (a list or a value replaces, whole)."""
    merged = dict(base)
    for key, value in own.items():
        both_tables = isinstance(value, dict) and isinstance(base.get(key), dict)
        if both_tables and (*at, key) not in _REPLACED_WHOLE:
            merged[key] = _laid_over(base[key], value, (*at, key))
        else:
            merged[key] = value
    return merged


def _validated(kind: type[Settings] | type[ServingSettings], env: str, raw: dict[str, Any], path: Path) -> Any:
    """``raw`` (a file's tables) checked into ``kind``, or every problem named, a line each."""
    if "env" in raw:  # a field of ours, not a section of the file
        known = ", ".join(name for name in kind.__pydantic_fields__ if name != "env")
        raise ConfigError(f"{path}: [env]: unknown section (known: {known})")
    try:
        return TypeAdapter(kind).validate_python({"env": env, **raw})
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{path}: {_problem(error, kind)}" for error in exc.errors())) from None


def limit_requests(settings: MlflowSettings) -> None:
    """Bound how long MLflow waits for its tracking server, from ``[mlflow]`` in ``conf/``.

    MLflow's own defaults (120 s a request, 7 retries with a doubling back-off) keep a job
    waiting for minutes on a server that is down; MLflow reads these variables at each request.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = f"{settings.request_timeout_seconds:g}"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(settings.request_backoff_factor)


def _resolved_mlflow(mlflow: MlflowSettings, root: Path) -> MlflowSettings:
    """Relative SQLite URIs and the artifact folder made absolute; the registry is the tracking
    store unless named."""
    return replace(mlflow, tracking_uri=_resolve_uri(mlflow.tracking_uri, root),
                   registry_uri=_resolve_uri(mlflow.registry_uri or mlflow.tracking_uri, root),
                   artifact_location=(_resolve_path(mlflow.artifact_location, root) if mlflow.artifact_location
                                      else None))


def _resolved_profile(profile: ProfileSettings, root: Path) -> ProfileSettings:
    secret_file = profile.card_key_secret_file
    return replace(profile, card_key_secret_file=_resolve_path(secret_file, root) if secret_file else None)


def _resolved_online(online: OnlineSettings, root: Path) -> OnlineSettings:
    return replace(online, password_file=_resolve_path(online.password_file, root) if online.password_file else None,
                   echo_dir=_resolve_path(online.echo_dir, root) if online.echo_dir else None)


def _resolved_serve(serve: ServeSettings, root: Path) -> ServeSettings:
    return replace(serve, token_file=_resolve_path(serve.token_file, root) if serve.token_file else None)


# --- One line per problem -------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
}
_LIMITS = {
    "greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le"),
}


def _problem(error: Any, kind: type) -> str:
    """``[section] key: what is wrong`` for one of pydantic's errors (``[section]: …`` for a table)."""
    names = [part for part in error["loc"] if isinstance(part, str)]
    indices = "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))
    *section, key = names
    where = f"[{'.'.join(section)}] {key}{indices}" if section else f"[{key}]"
    kind_of_file, kind, ctx = kind, error["type"], error.get("ctx", {})
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = ", ".join(_file_keys(_section_of(kind_of_file, section)))
        return f"{where}: unknown {'key' if section else 'section'} (known: {known})"
    if kind in ("missing", "missing_argument"):
        return f"{where}: required {'key' if section else 'section'} missing"
    if kind in _LIMITS:
        words, name = _LIMITS[kind]
        what = f"must be {words} {ctx[name]:g}"
    elif kind in ("too_short", "string_too_short"):
        what = "must not be empty"
    elif kind == "literal_error":
        what = f"expected {ctx['expected']}"
    elif kind == "value_error" and _is_section(kind_of_file, names):  # a rule across a section's keys
        return f"[{'.'.join(names)}] {ctx['error']}"
    elif kind == "value_error":
        what = str(ctx["error"])
    else:
        what = f"expected {_EXPECTED[kind]}" if kind in _EXPECTED else error["msg"]
    return f"{where}: {what}, got {_shown(error['input'])}"


def _section_of(kind: type, section: list[str]) -> type:
    """The dataclass of ``[section]`` (a list of names from the file's top) within ``kind``."""
    for name in section:
        kind = kind.__pydantic_fields__[name].annotation
        # An optional section (``[catalog]``): its dataclass, not ``None``.
        kind = next((arg for arg in get_args(kind) if arg is not type(None)), kind)
    return kind


def _is_section(kind: type, names: list[str]) -> bool:
    try:
        return hasattr(_section_of(kind, names), "__pydantic_fields__")
    except (KeyError, AttributeError):
        return False


def _file_keys(kind: type) -> list[str]:
    """The keys a file may give in a section: each field's name as the file spells it."""
    return [field.alias or name for name, field in kind.__pydantic_fields__.items() if name != "env"]


def _shown(value: Any) -> str:
    """A value as it would be written in TOML (true, not True), shortened."""
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- Paths and the environment --------------------------------------------------------------


def _resolve_path(value: str, root: Path) -> str:
    if "://" in value or os.path.isabs(value):
        return value
    return str((root / value).resolve())


def _resolve_uri(uri: str, root: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute; leave every other URI alone."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((root / uri[len(prefix):]).resolve())
    return uri


def _expand_env(value: Any, path: Path) -> Any:
    if isinstance(value, dict):
        return {key: _expand_env(item, path) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_env(item, path) for item in value]
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda match: _env_value(match.group(1), path), value)
    return value


def _env_value(name: str, path: Path) -> str:
    if name not in os.environ:
        raise ConfigError(f"{path} refers to ${{{name}}}, but the environment variable {name} is not set")
    return os.environ[name]
