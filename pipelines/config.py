"""Per-environment settings, read once from ``conf/<env>.toml`` and passed down as values.

Relative paths in a config file are relative to the project root; URIs (``s3a://…``,
``http://…``) are kept as they are. ``${NAME}`` in a string value is replaced by the
environment variable ``NAME`` so that secrets and per-deployment values never sit in a
committed file.

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
from typing import Any

import tomllib

from pipelines.errors import ConfigError
from pipelines.evaluation import ThresholdPolicy

# spark-submit.sh names the project root: under spark-submit this module may be imported from
# the code archive shipped to executors (build/fraud_scoring.zip), not from the checkout.
PROJECT_ROOT = Path(os.environ.get("FRAUD_PROJECT_ROOT") or Path(__file__).resolve().parents[1])
CONF_DIR = PROJECT_ROOT / "conf"

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class SparkSettings:
    master: str
    app_name: str
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSettings:
    root: str
    transactions: str = "transactions"
    scored: str = "scored_transactions"

    @property
    def transactions_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.transactions}"

    @property
    def scored_path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.scored}"


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    registry_uri: str
    artifact_location: str | None
    experiment: str
    model_name: str
    champion_alias: str = "champion"


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


@dataclass(frozen=True)
class Settings:
    env: str
    spark: SparkSettings
    tables: TableSettings
    mlflow: MlflowSettings
    ingest: IngestSettings
    train: TrainSettings


def with_state_in(settings: Settings, folder: Path) -> Settings:
    """The same settings with the Delta tables and the MLflow store (SQLite) under ``folder``.

    For tests and benchmarks, which must never touch an environment's real tables.
    """
    store = f"sqlite:///{folder / 'mlflow.db'}"
    return replace(
        settings,
        tables=TableSettings(root=str(folder / "lake"), transactions=settings.tables.transactions,
                             scored=settings.tables.scored),
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
    :raises ConfigError: the file is missing, is not valid TOML, lacks a key, or names an
        environment variable that is not set.
    """
    path = config_path(env)
    if not path.is_file():
        known = sorted(p.stem for p in CONF_DIR.glob("*.toml"))
        raise ConfigError(f"no config file {path} for env {env!r}; known environments: {known}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    raw = _expand_env(raw, path)
    try:
        return _settings_from_dict(env, raw, project_root)
    except KeyError as exc:
        raise ConfigError(f"{path} lacks the required key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _settings_from_dict(env: str, raw: dict[str, Any], root: Path) -> Settings:
    spark, tables, mlflow, ingest, train = (
        raw["spark"], raw["tables"], raw["mlflow"], raw["ingest"], raw["train"]
    )
    tracking_uri = _resolve_uri(mlflow["tracking_uri"], root)
    artifact_location = mlflow.get("artifact_location")
    candidates = train["candidates"]
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError("[train.candidates] must name at least one candidate model")
    return Settings(
        env=env,
        spark=SparkSettings(
            master=spark["master"],
            app_name=spark.get("app_name", "fraud-scoring"),
            conf={key: str(value) for key, value in spark.get("conf", {}).items()},
        ),
        tables=TableSettings(
            root=_resolve_path(tables["root"], root),
            transactions=tables.get("transactions", "transactions"),
            scored=tables.get("scored", "scored_transactions"),
        ),
        mlflow=MlflowSettings(
            tracking_uri=tracking_uri,
            registry_uri=_resolve_uri(mlflow.get("registry_uri", mlflow["tracking_uri"]), root),
            artifact_location=_resolve_path(artifact_location, root) if artifact_location else None,
            experiment=mlflow["experiment"],
            model_name=mlflow["model_name"],
            champion_alias=mlflow.get("champion_alias", "champion"),
        ),
        ingest=IngestSettings(start=datetime.fromisoformat(ingest["start"])),
        train=TrainSettings(
            label_col=train.get("label_col", "Class"),
            seed=int(train.get("seed", 42)),
            holdout_days=int(train.get("holdout_days", 1)),
            validation_fraction=float(train.get("validation_fraction", 0.4)),
            validation_folds=int(train.get("validation_folds", 2)),
            refit_on_all_days=bool(train.get("refit_on_all_days", True)),
            class_weighting=train.get("class_weighting", "balanced"),
            normal_weight=float(train.get("normal_weight", 1.0)),
            threshold=_threshold_policy(train.get("threshold", {})),
            candidates={
                name: {param: _as_list(values) for param, values in grid.items()}
                for name, grid in candidates.items()
            },
            ensemble_members=_ensemble_members(train.get("ensemble", {})),
            fit_partitions=int(train.get("fit_partitions", 2)),
        ),
    )


def _threshold_policy(table: dict[str, Any]) -> ThresholdPolicy:
    known = {"policy", "target_precision", "cost_missed_fraud", "cost_false_alarm"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"[train.threshold] has unknown key(s) {unknown}; known: {sorted(known)}")
    defaults = ThresholdPolicy()
    return ThresholdPolicy(
        name=table.get("policy", defaults.name),
        target_precision=float(table.get("target_precision", defaults.target_precision)),
        cost_missed_fraud=float(table.get("cost_missed_fraud", defaults.cost_missed_fraud)),
        cost_false_alarm=float(table.get("cost_false_alarm", defaults.cost_false_alarm)),
    )


def _ensemble_members(table: Any) -> tuple[str, ...]:
    if not isinstance(table, dict) or set(table) - {"members"}:
        raise ValueError(f"[train.ensemble] must be a table holding only members = [...], got {table!r}")
    members = _as_list(table.get("members", []))
    if not all(isinstance(member, str) for member in members):
        raise ValueError(f"[train.ensemble] members must be candidate names, got {members!r}")
    return tuple(members)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


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
