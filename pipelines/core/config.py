"""Per-environment settings, read once from ``conf/<env>.toml`` and passed down as values.

A file may start with ``extends = "local"``: it then holds only what differs from that
environment's file, table by table (``[train.candidates]``, when given, replaces the search).
Relative paths in a config file are relative to the project root; URIs (``s3a://…``,
``http://…``) are kept as they are. ``${NAME}`` in a string value is replaced by the
environment variable ``NAME`` so that secrets and per-deployment values never sit in a
committed file.

The file is checked against the ``_…File``/``_…Section`` models below before anything uses it:
an unknown key or section, a missing one, or a value of the wrong type or out of range is a
:class:`ConfigError` naming the file and every bad key (one line each), never a default used
in its place. ``_settings`` then maps the checked file onto the frozen dataclasses the rest of
the code is given.

Example::

    settings = load_settings("local")
    settings.tables.transactions_path   # '/…/fraud-scoring/lake/transactions'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import tomllib
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pipelines.core.errors import ConfigError

# spark-submit.sh names the project root: under spark-submit this module may be imported from
# the code archive shipped to executors (build/fraud_scoring.zip), not from the checkout.
PROJECT_ROOT = Path(os.environ.get("FRAUD_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
CONF_DIR = PROJECT_ROOT / "conf"

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# The jobs under jobs/, each a `./spark-submit.sh <job>`: [spark.jobs.<job>] holds one's own settings.
JobName = Literal["generate", "ingest", "label", "monitor", "promote", "retrain", "rollback", "score", "sql", "train"]


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the decision threshold is chosen on validation scores (at the real class balance).

    - ``max_f1``: the threshold with the highest F1;
    - ``target_precision``: the lowest threshold whose precision reaches ``target_precision``
      (the most recall at that precision), else the one with the highest precision;
    - ``min_cost``: the lowest expected cost ``cost_missed_fraud * FN + cost_false_alarm * FP``.
    """

    name: str = "max_f1"
    target_precision: float = 0.9
    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 1.0

    NAMES = ("max_f1", "target_precision", "min_cost")

    def check(self) -> None:
        if self.name not in self.NAMES:
            raise ConfigError(f"unknown threshold policy {self.name!r}; known: {list(self.NAMES)}")
        if not 0 < self.target_precision <= 1:
            raise ConfigError(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.cost_missed_fraud < 0 or self.cost_false_alarm < 0:
            raise ConfigError("threshold costs must not be negative")


@dataclass(frozen=True)
class SparkSettings:
    master: str
    app_name: str
    conf: dict[str, str] = field(default_factory=dict)
    # Per job, settings that replace [spark.conf]'s for that job's application only.
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)

    def for_job(self, job: str | None) -> SparkSettings:
        """These settings as ``job`` runs with them: its own ``[spark.jobs.<job>]`` over ``conf``."""
        return replace(self, conf={**self.conf, **self.jobs.get(job, {})}) if job else self


@dataclass(frozen=True)
class TableSettings:
    root: str
    transactions: str = "transactions"
    scored: str = "scored_transactions"
    # Scores of models that do not decide (score --shadow): a challenger's, beside the champion's.
    shadow: str = "shadow_scored_transactions"
    # Every promotion decision and rollback, one row each.
    promotions: str = "promotions"
    # Labels that arrive after ingest (chargebacks): the newest label of a transaction wins.
    labels: str = "labels"
    # Monitoring (pipelines/monitoring): each version's baseline profile, and per scored day
    # its drift metrics, realized performance and verdict; every retraining trigger.
    baselines: str = "monitor_baselines"
    drift: str = "monitor_drift"
    performance: str = "monitor_performance"
    verdicts: str = "monitor_verdicts"
    retrains: str = "retrain_triggers"
    # A folder (not a table): the per-day HTML reports and their pictures.
    reports: str = "monitor_reports"

    def path(self, table: str) -> str:
        """Where the table (or folder) named ``table`` lives: ``root/table``."""
        return f"{self.root.rstrip('/')}/{table}"

    def locations(self) -> dict[str, str]:
        """Every Delta table of the project by name, with where it lives (existing or not)."""
        names = [self.transactions, self.scored, self.shadow, self.promotions, self.labels,
                 self.baselines, self.drift, self.performance, self.verdicts, self.retrains]
        return {name: self.path(name) for name in names}

    @property
    def transactions_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.transactions}"

    @property
    def scored_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.scored}"

    @property
    def shadow_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.shadow}"

    @property
    def promotions_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.promotions}"


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    registry_uri: str
    artifact_location: str | None
    experiment: str
    model_name: str
    champion_alias: str = "champion"
    # What train registers a new version as; only promote moves the champion.
    challenger_alias: str = "challenger"
    # How long one HTTP request to the tracking server may take, and how often a failed one is
    # retried (with this backoff factor): small, so that an unreachable server fails a job fast.
    request_timeout_seconds: float = 10.0
    request_max_retries: int = 2
    request_backoff_factor: int = 1  # whole seconds: MLflow reads it as an integer


@dataclass(frozen=True)
class IngestSettings:
    start: datetime


@dataclass(frozen=True)
class TrainSettings:
    label_col: str
    seed: int
    holdout_days: int
    validation_fraction: float
    validation_folds: int
    refit_on_all_days: bool
    class_weighting: str
    normal_weight: float
    threshold: ThresholdPolicy
    candidates: dict[str, dict[str, list[Any]]]
    # Candidates whose best fits are also tried averaged, as the candidate "ensemble".
    ensemble_members: tuple[str, ...] = ()
    # The rows are spread over this many parts for fitting: a fixed number, so that seeded
    # fits give the same models whatever the cluster's size at the time.
    fit_partitions: int = 2
    # How many fits the search runs at once (threads sharing the one SparkContext); 1: one
    # after another. Results do not depend on it: each fit sees the same rows in the same parts.
    parallel_fits: int = 2
    # The ensemble is made of its members' fits from their own searches (fold, window and
    # all-days models) instead of fitting them again; off: refit, as before (the baseline).
    reuse_member_fits: bool = True


@dataclass(frozen=True)
class PromoteSettings:
    """The promotion gate's limits (``[promote]``); see pipelines/lifecycle/promotion.py."""

    min_auc_pr: float = 0.7
    min_recall: float = 0.6
    # Alerts per 100,000 transactions at the real class balance, at the version's threshold.
    alerts_per_100k: tuple[float, float] = (10.0, 2000.0)
    # The largest drop in AUC-PR against the champion tolerated at 95% confidence.
    max_auc_pr_drop: float = 0.02
    # With a champion but no labelled rows that neither version was fitted on: "refuse", or
    # "absolute_only" (the comparison is skipped; the absolute checks decide).
    without_unseen_rows: str = "refuse"
    bootstrap_samples: int = 1000
    seed: int = 7


# The metrics whose alarm band is widened to at least a minimum effect ([monitor.min_effect]).
DRIFT_METRICS = ("psi", "js_distance", "wasserstein_std", "ks", "null_share", "out_of_range_share",
                 "alert_rate_change")
_DEFAULT_MIN_EFFECT = {"psi": 0.1, "js_distance": 0.1, "wasserstein_std": 0.1, "ks": 0.1,
                       "null_share": 0.01, "out_of_range_share": 0.01, "alert_rate_change": 0.25}


@dataclass(frozen=True)
class MonitorSettings:
    """Monitoring (``[monitor]``); see pipelines/monitoring and docs/monitoring.md."""

    # A baseline cuts each column at this many quantiles (fine bins: KS, Wasserstein) and
    # groups them into ``psi_bins`` bins of about equal baseline mass (PSI, Jensen-Shannon).
    bins: int = 100
    psi_bins: int = 10
    # A metric's alarm band at a day's row count: this quantile of the metric between two
    # samples drawn from the baseline itself (one of the baseline's size, one of the day's),
    # over ``band_samples`` draws; never below the metric's minimum effect.
    band_samples: int = 1000
    band_quantile: float = 0.99
    min_effect: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_MIN_EFFECT))
    # A column is drifted when it is out of band on at least ``drift_days`` of the last
    # ``window_days`` monitored days (today included).
    drift_days: int = 2
    window_days: int = 3
    # Realized performance: bootstrap resamples of the day's labelled rows, and the interval.
    bootstrap_samples: int = 500
    confidence: float = 0.95
    seed: int = 11
    # The report shows this many days of history.
    report_days: int = 30
    # After a retraining triggered by an alert, no other is started for this many days.
    retrain_cool_down_days: float = 7.0


@dataclass(frozen=True)
class ServeSettings:
    """The online scoring service (``[serve]``); see pipelines/serving."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Where the bearer token is read from when neither FRAUD_SERVE_TOKEN nor
    # FRAUD_SERVE_TOKEN_FILE is set (absolute); None: only those.
    token_file: str | None = None
    # The most transactions one request may carry, and the largest body accepted.
    max_batch: int = 1000
    max_body_bytes: int = 4_000_000
    # How often the registry alias is read, to pick up a promotion or a rollback.
    poll_seconds: float = 10.0
    # How long an idle keep-alive connection stays open: longer than a load balancer's idle
    # timeout (often 60 s), or the balancer reuses a connection the service has just closed.
    keep_alive_seconds: int = 75


@dataclass(frozen=True)
class ServingSettings:
    """What the service reads of an environment's file: ``[mlflow]`` and ``[serve]`` only."""

    env: str
    mlflow: MlflowSettings
    serve: ServeSettings


# How ``score`` computes probabilities: "portable" scores the version's portable form
# (pipelines/portable) over Arrow batches in the executors' Python; "spark" runs the Spark ML
# PipelineModel's own ``transform``, the reference the portable form is checked against.
SCORE_ENGINES = ("portable", "spark")


@dataclass(frozen=True)
class ScoreSettings:
    engine: str = "portable"


@dataclass(frozen=True)
class CatalogSettings:
    """A metastore that outlives the session (``[catalog]``): tables by name, not by path."""
    # The database (Hive schema) the project's tables are registered in.
    database: str


@dataclass(frozen=True)
class Settings:
    env: str
    spark: SparkSettings
    tables: TableSettings
    mlflow: MlflowSettings
    ingest: IngestSettings
    train: TrainSettings
    promote: PromoteSettings = field(default_factory=PromoteSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    # None: no metastore; the tables are known by their paths only (the local default).
    catalog: CatalogSettings | None = None


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
    raw = _expand_env(raw, path)
    checked = _validated(_ConfigFile, raw, path)
    return _settings(env, checked, project_root)


def load_serving_settings(env: str = "local", *, project_root: Path = PROJECT_ROOT) -> ServingSettings:
    """Read and check what the online scoring service needs: ``[mlflow]`` and ``[serve]``.

    The other sections are the batch jobs' (checked when they load the file): their
    ``${NAME}`` references, such as a Spark master, need not be set where the service runs.

    :raises ConfigError: as :func:`load_settings`, for these two sections.
    """
    path, raw = _read(env)
    sections = {"mlflow": raw.get("mlflow", {}), "serve": raw.get("serve", {})}
    checked = _validated(_ServingFile, _expand_env(sections, path), path)
    full = _settings_of_mlflow(checked.mlflow, project_root)
    return ServingSettings(env=env, mlflow=full, serve=_serve_settings(checked.serve, project_root))


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


def _validated(model: type[BaseModel], raw: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{path}: {_problem(error)}" for error in exc.errors())) from None


def limit_requests(settings: MlflowSettings) -> None:
    """Bound how long MLflow waits for its tracking server, from ``[mlflow]`` in ``conf/``.

    MLflow's own defaults (120 s a request, 7 retries with a doubling back-off) keep a job
    waiting for minutes on a server that is down; MLflow reads these variables at each request.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = f"{settings.request_timeout_seconds:g}"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(settings.request_backoff_factor)


# --- What a file may hold -------------------------------------------------------------------
# Values that came from ${NAME} are strings, so numbers and booleans are also read from text;
# anything else of the wrong type is refused rather than converted.


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
_DEFAULT_THRESHOLD = ThresholdPolicy()


class _Section(BaseModel):
    # A misspelt key must be an error: ignored, the default would be used without a word.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _SparkSection(_Section):
    master: _Text
    app_name: _Text = "fraud-scoring"
    conf: dict[str, _SparkValue] = Field(default_factory=dict)  # any Spark key
    jobs: dict[JobName, dict[str, _SparkValue]] = Field(default_factory=dict)


class _TablesSection(_Section):
    root: _Text
    transactions: _Text = "transactions"
    scored: _Text = "scored_transactions"
    shadow: _Text = "shadow_scored_transactions"
    promotions: _Text = "promotions"
    labels: _Text = "labels"
    baselines: _Text = "monitor_baselines"
    drift: _Text = "monitor_drift"
    performance: _Text = "monitor_performance"
    verdicts: _Text = "monitor_verdicts"
    retrains: _Text = "retrain_triggers"
    reports: _Text = "monitor_reports"


class _MlflowSection(_Section):
    tracking_uri: _Text
    registry_uri: _Text | None = None  # the tracking URI
    artifact_location: str | None = None  # the tracking server's choice
    experiment: _Text
    model_name: _Text
    champion_alias: _Text = "champion"
    challenger_alias: _Text = "challenger"
    # Whole seconds, like the backoff factor: MLflow reads both with int(), and "2.5" in its
    # MLFLOW_HTTP_REQUEST_TIMEOUT would fail the first request instead of timing it.
    request_timeout_seconds: _Integer = Field(10, gt=0)
    request_max_retries: _Integer = Field(2, ge=0)
    request_backoff_factor: _Integer = Field(1, ge=0)


class _IngestSection(_Section):
    start: _IsoDatetime


class _ThresholdSection(_Section):
    policy: Literal[ThresholdPolicy.NAMES] = _DEFAULT_THRESHOLD.name  # Literal[("a", "b")] is Literal["a", "b"]
    target_precision: _Number = Field(_DEFAULT_THRESHOLD.target_precision, gt=0, le=1)
    cost_missed_fraud: _Number = Field(_DEFAULT_THRESHOLD.cost_missed_fraud, gt=0)
    cost_false_alarm: _Number = Field(_DEFAULT_THRESHOLD.cost_false_alarm, gt=0)


class _EnsembleSection(_Section):
    members: list[_Text] = Field(default_factory=list)


class _TrainSection(_Section):
    label_col: _Text = "Class"
    seed: _Integer = Field(42, ge=0)
    holdout_days: _Integer = Field(1, ge=1)
    validation_fraction: _Number = Field(0.4, gt=0, lt=1)
    validation_folds: _Integer = Field(2, ge=1)
    refit_on_all_days: _Boolean = True
    class_weighting: Literal["none", "balanced"] = "none"
    normal_weight: _Number = Field(1.0, gt=0)
    fit_partitions: _Integer = Field(2, ge=1)
    parallel_fits: _Integer = Field(2, ge=1)
    reuse_member_fits: _Boolean = True
    threshold: _ThresholdSection = Field(default_factory=_ThresholdSection)
    # [train.candidates.NAME]: the keys are the estimator's parameters, which
    # pipelines.training.search.check_train_settings checks against the estimator itself.
    candidates: dict[str, dict[str, _ValuesToTry]] = Field(min_length=1)
    ensemble: _EnsembleSection = Field(default_factory=_EnsembleSection)


_DEFAULT_PROMOTE = PromoteSettings()


class _PromoteSection(_Section):
    min_auc_pr: _Number = Field(_DEFAULT_PROMOTE.min_auc_pr, ge=0, le=1)
    min_recall: _Number = Field(_DEFAULT_PROMOTE.min_recall, ge=0, le=1)
    alerts_per_100k: list[_Number] = Field(list(_DEFAULT_PROMOTE.alerts_per_100k), min_length=2, max_length=2)
    max_auc_pr_drop: _Number = Field(_DEFAULT_PROMOTE.max_auc_pr_drop, ge=0, le=1)
    without_unseen_rows: Literal["refuse", "absolute_only"] = "refuse"
    bootstrap_samples: _Integer = Field(_DEFAULT_PROMOTE.bootstrap_samples, ge=100)
    seed: _Integer = Field(_DEFAULT_PROMOTE.seed, ge=0)


_DEFAULT_SERVE = ServeSettings()


class _ServeSection(_Section):
    host: _Text = _DEFAULT_SERVE.host
    port: _Integer = Field(_DEFAULT_SERVE.port, ge=1, le=65535)
    token_file: _Text | None = None
    max_batch: _Integer = Field(_DEFAULT_SERVE.max_batch, ge=1, le=100_000)
    max_body_bytes: _Integer = Field(_DEFAULT_SERVE.max_body_bytes, ge=1024)
    poll_seconds: _Number = Field(_DEFAULT_SERVE.poll_seconds, gt=0)
    keep_alive_seconds: _Integer = Field(_DEFAULT_SERVE.keep_alive_seconds, ge=1)


_DEFAULT_MONITOR = MonitorSettings()


class _MinEffectSection(_Section):
    psi: _Number = Field(_DEFAULT_MIN_EFFECT["psi"], ge=0)
    js_distance: _Number = Field(_DEFAULT_MIN_EFFECT["js_distance"], ge=0, le=1)
    wasserstein_std: _Number = Field(_DEFAULT_MIN_EFFECT["wasserstein_std"], ge=0)
    ks: _Number = Field(_DEFAULT_MIN_EFFECT["ks"], ge=0, le=1)
    null_share: _Number = Field(_DEFAULT_MIN_EFFECT["null_share"], ge=0, le=1)
    out_of_range_share: _Number = Field(_DEFAULT_MIN_EFFECT["out_of_range_share"], ge=0, le=1)
    alert_rate_change: _Number = Field(_DEFAULT_MIN_EFFECT["alert_rate_change"], ge=0)


class _MonitorSection(_Section):
    bins: _Integer = Field(_DEFAULT_MONITOR.bins, ge=4, le=1000)
    psi_bins: _Integer = Field(_DEFAULT_MONITOR.psi_bins, ge=2, le=100)
    band_samples: _Integer = Field(_DEFAULT_MONITOR.band_samples, ge=50)
    band_quantile: _Number = Field(_DEFAULT_MONITOR.band_quantile, gt=0.5, lt=1)
    min_effect: _MinEffectSection = Field(default_factory=_MinEffectSection)
    drift_days: _Integer = Field(_DEFAULT_MONITOR.drift_days, ge=1)
    window_days: _Integer = Field(_DEFAULT_MONITOR.window_days, ge=1)
    bootstrap_samples: _Integer = Field(_DEFAULT_MONITOR.bootstrap_samples, ge=100)
    confidence: _Number = Field(_DEFAULT_MONITOR.confidence, gt=0.5, lt=1)
    seed: _Integer = Field(_DEFAULT_MONITOR.seed, ge=0)
    report_days: _Integer = Field(_DEFAULT_MONITOR.report_days, ge=1)
    retrain_cool_down_days: _Number = Field(_DEFAULT_MONITOR.retrain_cool_down_days, ge=0)


class _ScoreSection(_Section):
    engine: Literal[SCORE_ENGINES] = "portable"


class _CatalogSection(_Section):
    # A plain SQL identifier, so that it never needs quoting in an analyst's query.
    database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _ConfigFile(_Section):
    spark: _SparkSection
    tables: _TablesSection
    mlflow: _MlflowSection
    ingest: _IngestSection
    train: _TrainSection
    promote: _PromoteSection = Field(default_factory=_PromoteSection)
    serve: _ServeSection = Field(default_factory=_ServeSection)
    monitor: _MonitorSection = Field(default_factory=_MonitorSection)
    score: _ScoreSection = Field(default_factory=_ScoreSection)
    catalog: _CatalogSection | None = None


class _ServingFile(_Section):
    mlflow: _MlflowSection
    serve: _ServeSection = Field(default_factory=_ServeSection)


def _settings(env: str, file: _ConfigFile, root: Path) -> Settings:
    """The checked file as the settings passed down, with paths and SQLite URIs made absolute."""
    mlflow, train = file.mlflow, file.train
    return Settings(
        env=env,
        spark=SparkSettings(master=file.spark.master, app_name=file.spark.app_name, conf=dict(file.spark.conf),
                            jobs={job: dict(conf) for job, conf in file.spark.jobs.items()}),
        tables=TableSettings(
            root=_resolve_path(file.tables.root, root),
            transactions=file.tables.transactions,
            scored=file.tables.scored,
            shadow=file.tables.shadow,
            promotions=file.tables.promotions,
            labels=file.tables.labels,
            baselines=file.tables.baselines,
            drift=file.tables.drift,
            performance=file.tables.performance,
            verdicts=file.tables.verdicts,
            retrains=file.tables.retrains,
            reports=file.tables.reports,
        ),
        mlflow=_settings_of_mlflow(mlflow, root),
        ingest=IngestSettings(start=file.ingest.start),
        train=TrainSettings(
            label_col=train.label_col,
            seed=train.seed,
            holdout_days=train.holdout_days,
            validation_fraction=train.validation_fraction,
            validation_folds=train.validation_folds,
            refit_on_all_days=train.refit_on_all_days,
            class_weighting=train.class_weighting,
            normal_weight=train.normal_weight,
            threshold=ThresholdPolicy(
                name=train.threshold.policy,
                target_precision=train.threshold.target_precision,
                cost_missed_fraud=train.threshold.cost_missed_fraud,
                cost_false_alarm=train.threshold.cost_false_alarm,
            ),
            candidates=train.candidates,
            ensemble_members=tuple(train.ensemble.members),
            fit_partitions=train.fit_partitions,
            parallel_fits=train.parallel_fits,
            reuse_member_fits=train.reuse_member_fits,
        ),
        promote=PromoteSettings(
            min_auc_pr=file.promote.min_auc_pr,
            min_recall=file.promote.min_recall,
            alerts_per_100k=(min(file.promote.alerts_per_100k), max(file.promote.alerts_per_100k)),
            max_auc_pr_drop=file.promote.max_auc_pr_drop,
            without_unseen_rows=file.promote.without_unseen_rows,
            bootstrap_samples=file.promote.bootstrap_samples,
            seed=file.promote.seed,
        ),
        serve=_serve_settings(file.serve, root),
        monitor=_monitor_settings(file.monitor, env),
        score=ScoreSettings(engine=file.score.engine),
        catalog=CatalogSettings(database=file.catalog.database) if file.catalog else None,
    )


def _monitor_settings(monitor: _MonitorSection, env: str) -> MonitorSettings:
    if monitor.drift_days > monitor.window_days:
        raise ConfigError(f"{config_path(env)}: [monitor] drift_days ({monitor.drift_days}) cannot exceed window_days "
                          f"({monitor.window_days}): a column could never count as drifted")
    return MonitorSettings(
        bins=monitor.bins,
        psi_bins=min(monitor.psi_bins, monitor.bins),
        band_samples=monitor.band_samples,
        band_quantile=float(monitor.band_quantile),
        min_effect={name: float(getattr(monitor.min_effect, name)) for name in DRIFT_METRICS},
        drift_days=monitor.drift_days,
        window_days=monitor.window_days,
        bootstrap_samples=monitor.bootstrap_samples,
        confidence=float(monitor.confidence),
        seed=monitor.seed,
        report_days=monitor.report_days,
        retrain_cool_down_days=float(monitor.retrain_cool_down_days),
    )


def _settings_of_mlflow(mlflow: _MlflowSection, root: Path) -> MlflowSettings:
    return MlflowSettings(
        tracking_uri=_resolve_uri(mlflow.tracking_uri, root),
        registry_uri=_resolve_uri(mlflow.registry_uri or mlflow.tracking_uri, root),
        artifact_location=_resolve_path(mlflow.artifact_location, root) if mlflow.artifact_location else None,
        experiment=mlflow.experiment,
        model_name=mlflow.model_name,
        champion_alias=mlflow.champion_alias,
        challenger_alias=mlflow.challenger_alias,
        request_timeout_seconds=float(mlflow.request_timeout_seconds),
        request_max_retries=mlflow.request_max_retries,
        request_backoff_factor=mlflow.request_backoff_factor,
    )


def _serve_settings(serve: _ServeSection, root: Path) -> ServeSettings:
    return ServeSettings(
        host=serve.host,
        port=serve.port,
        token_file=_resolve_path(serve.token_file, root) if serve.token_file else None,
        max_batch=serve.max_batch,
        max_body_bytes=serve.max_body_bytes,
        poll_seconds=float(serve.poll_seconds),
        keep_alive_seconds=serve.keep_alive_seconds,
    )


# --- One line per problem -------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "list_type": "a list",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
}
_LIMITS = {
    "greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le"),
}


def _problem(error: Any) -> str:
    """``[section] key: what is wrong`` for one of pydantic's errors (``[section]: …`` for a table)."""
    names = [part for part in error["loc"] if isinstance(part, str)]
    indices = "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))
    *section, key = names
    where = f"[{'.'.join(section)}] {key}{indices}" if section else f"[{key}]"
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        known = ", ".join(_section_model(section).model_fields)
        return f"{where}: unknown {'key' if section else 'section'} (known: {known})"
    if kind == "missing":
        return f"{where}: required {'key' if section else 'section'} missing"
    if kind in _LIMITS:
        words, name = _LIMITS[kind]
        what = f"must be {words} {ctx[name]:g}"
    elif kind in ("too_short", "string_too_short"):
        what = "must not be empty"
    elif kind == "literal_error":
        what = f"expected {ctx['expected']}"
    elif kind == "value_error":
        what = str(ctx["error"])
    else:
        what = f"expected {_EXPECTED[kind]}" if kind in _EXPECTED else error["msg"]
    return f"{where}: {what}, got {_shown(error['input'])}"


def _section_model(section: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = _ConfigFile
    for name in section:
        model = model.model_fields[name].annotation
        # An optional section (``[catalog]``): its model, not ``None``.
        model = next((arg for arg in get_args(model) if arg is not type(None)), model)
    return model


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
