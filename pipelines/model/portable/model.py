"""A fitted fraud pipeline without Spark: built from a saved ``PipelineModel``, saved as files,
scored on numpy arrays, and checked against the scores Spark gave when it was built.

The saved form is a folder:

- ``portable.json``: the format version, the stages in order (each a record of its kind),
  the feature columns, the output column, and the decision (threshold, normal weight);
- ``arrays.npz``: every numeric array (coefficients, scaler values, tree nodes), float64;
- ``<stage>.booster.json``: an XGBoost stage's booster, as XGBoost saves it;
- ``parity.npz``: the rows the release rule scored with Spark and their probabilities, so a
  process that loads the folder can check it reproduces them (:meth:`PortableModel.check`).

Example::

    model = PortableModel.from_spark_pipeline("/tmp/model/sparkml", decision=Decision(0.45, 57.79))
    model.sample_probability(features)   # P(fraud) per row, at the training sample's balance
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.errors import ModelNotPortableError
from pipelines.model.portable.decision import Decision
from pipelines.model.portable.stages import (
    SPARK_STAGES,
    STAGE_KINDS,
    Assembler,
    Classifier,
    Stage,
    TreeClassifier,
    XGBoost,
    read_metadata,
)

FORMAT_VERSION = 1
MANIFEST = "portable.json"
ARRAYS = "arrays.npz"
PARITY = "parity.npz"
# The release rule: a portable probability may differ from Spark's by at most this much.
PARITY_TOLERANCE = 1e-9
# A pipeline of JVM stages is saved by Scala, one with a Python stage (xgboost, ours) by pyspark.
PIPELINE_CLASSES = ("org.apache.spark.ml.PipelineModel", "pyspark.ml.pipeline.PipelineModel")


@dataclass(frozen=True)
class ParityRows:
    """Feature rows (columns in the model's feature order) and the probabilities Spark gave them."""

    features: np.ndarray
    expected: np.ndarray


def compare(expected: np.ndarray, actual: np.ndarray, *, tolerance: float = PARITY_TOLERANCE) -> tuple[int, float, int]:
    """(rows apart by more than ``tolerance``, the largest difference, the worst row's index).

    Two NaNs agree; a NaN against a number does not.
    """
    both_nan = np.isnan(expected) & np.isnan(actual)
    difference = np.where(both_nan, 0.0, np.abs(expected - actual))
    difference = np.where(np.isnan(difference), np.inf, difference)
    worst = int(np.argmax(difference)) if difference.size else -1
    return int((difference > tolerance).sum()), float(difference.max(initial=0.0)), worst


class PortableModel:
    """The stages of a fitted pipeline, the column of its fraud probability, and its decision."""

    def __init__(self, stages: Sequence[Stage], *, output_col: str, decision: Decision,
                 parity: ParityRows | None = None, source: Mapping[str, Any] | None = None) -> None:
        if not stages or not isinstance(stages[0], Assembler):
            raise ModelNotPortableError("a portable pipeline starts with its VectorAssembler")
        self.stages = list(stages)
        self.output_col = output_col
        self.decision = decision
        self.parity = parity
        self.source = dict(source or {})
        self.feature_cols: list[str] = stages[0].input_cols
        produced = {stage.output_col for stage in self.stages}
        if output_col not in produced:
            raise ModelNotPortableError(f"no stage writes the output column {output_col!r}")

    # --- built from Spark's saved pipeline -------------------------------------------------
    @classmethod
    def from_spark_pipeline(cls, path: str | Path, *, decision: Decision, output_col: str = "probability",
                            source: Mapping[str, Any] | None = None) -> PortableModel:
        """Read a saved ``PipelineModel`` folder (its ``metadata/`` and ``stages/``); no JVM.

        :raises ModelNotPortableError: a stage has no portable form, naming it and the ones that do.
        """
        root = Path(path)
        metadata = read_metadata(root)
        if metadata.get("class") not in PIPELINE_CLASSES:
            raise ModelNotPortableError(f"{root} holds a {metadata.get('class')}, not a saved PipelineModel")
        uids = metadata["paramMap"]["stageUids"]
        stages: list[Stage] = []
        for index, uid in enumerate(uids):
            stage_dir = root / "stages" / f"{index}_{uid}"
            stage_metadata = read_metadata(stage_dir)
            spark_class = stage_metadata["class"]
            stage_type = SPARK_STAGES.get(spark_class)
            if stage_type is None:
                raise ModelNotPortableError(
                    f"stage {index} ({spark_class}, {uid}) has no portable form, so this model cannot be "
                    f"scored without Spark; stages with one: {sorted(SPARK_STAGES)}")
            stages.append(stage_type.from_spark(stage_dir, stage_metadata))
        return cls(stages, output_col=output_col, decision=decision, source=source)

    # --- scoring ---------------------------------------------------------------------------
    def sample_probability(self, features: np.ndarray) -> np.ndarray:
        """P(fraud) per row (``features``: rows x :attr:`feature_cols`, float64), at the
        training sample's balance: the pipeline's ``probability[1]``."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_cols):
            raise ValueError(f"expected rows of {len(self.feature_cols)} features, got shape {features.shape}")
        columns: dict[str, np.ndarray] = {col: features[:, i] for i, col in enumerate(self.feature_cols)}
        for stage in self.stages:
            stage.apply(columns)
        return columns[self.output_col]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``fraud_probability`` (at the real balance), ``is_fraud`` and ``threshold`` per row."""
        missing = [col for col in self.feature_cols if col not in frame.columns]
        if missing:
            raise KeyError(f"the model reads columns {missing}, which the input lacks")
        features = frame[self.feature_cols].to_numpy(dtype=np.float64)
        probability, is_fraud = self.decision.apply(self.sample_probability(features))
        return pd.DataFrame({
            "fraud_probability": probability,
            "is_fraud": is_fraud,
            "threshold": np.full(len(frame), self.decision.real_threshold),
        }, index=frame.index)

    def check(self) -> tuple[int, float]:
        """Score the saved parity rows again; (rows off by more than the tolerance, largest difference).

        :raises ModelNotPortableError: the folder has no parity rows.
        """
        if self.parity is None:
            raise ModelNotPortableError("this portable model has no parity rows to check against")
        failures, largest, _ = compare(self.parity.expected, self.sample_probability(self.parity.features))
        return failures, largest

    # --- what the parity rows are made of --------------------------------------------------
    def split_points(self) -> list[tuple[int, float, str]]:
        """Every split of every tree stage on the raw features: (feature index, threshold, rule).

        ``rule`` is ``"<="`` for Spark's trees (``x <= t`` goes left) and ``"<"`` for XGBoost
        (``float32(x) < t`` goes left). Stages on scaled features have no such points.
        """
        raw = self.stages[0].output_col
        points: list[tuple[int, float, str]] = []
        for stage in self.stages:
            if not isinstance(stage, Classifier) or stage.features_col != raw:
                continue
            if isinstance(stage, TreeClassifier):
                features, thresholds = stage.trees.splits()
                points += [(int(f), float(t), "<=") for f, t in zip(features, thresholds, strict=True)]
            elif isinstance(stage, XGBoost):
                for tree in json.loads(stage.booster_json)["learner"]["gradient_booster"]["model"]["trees"]:
                    for left, f, t in zip(tree["left_children"], tree["split_indices"], tree["split_conditions"],
                                          strict=True):
                        if left != -1:
                            points.append((int(f), float(t), "<"))
        return points

    # --- files -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=False)
        records, arrays = [], {}
        for index, stage in enumerate(self.stages):
            record, stage_arrays, files = stage.to_record(f"stage{index}")
            records.append({"kind": stage.kind, **record})
            arrays.update(stage_arrays)
            for name, content in files.items():
                (folder / name).write_bytes(content)
        np.savez(folder / ARRAYS, **arrays)
        if self.parity is not None:
            np.savez(folder / PARITY, features=self.parity.features, expected=self.parity.expected)
        manifest = {
            "format_version": FORMAT_VERSION,
            "feature_cols": self.feature_cols,
            "output_col": self.output_col,
            "decision": self.decision.to_record(),
            "stages": records,
            "source": self.source,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> PortableModel:
        """Load a saved folder.

        :raises ModelNotPortableError: the folder is not one, or of a format this code does not read.
        """
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise ModelNotPortableError(f"{folder} has no {MANIFEST}: not a portable model")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ModelNotPortableError(
                f"{folder} is portable format {manifest.get('format_version')}; this code reads {FORMAT_VERSION}")
        with np.load(folder / ARRAYS) as stored:
            arrays = {name: stored[name] for name in stored.files}
        stages = []
        for record in manifest["stages"]:
            stage_type = STAGE_KINDS.get(record["kind"])
            if stage_type is None:
                raise ModelNotPortableError(f"{folder}: unknown stage kind {record['kind']!r}")
            # Tree stages saved before they recorded their width read the assembler's.
            record = {"n_features": len(manifest["feature_cols"]), **record}
            files = {name: (folder / name).read_bytes() for name in _file_names(record)}
            try:
                stages.append(stage_type.from_record(record, arrays, files))
            except (KeyError, OSError) as exc:
                raise ModelNotPortableError(f"{folder}: its {record['kind']} stage lacks {exc}: damaged") from exc
        parity = None
        if (folder / PARITY).is_file():
            with np.load(folder / PARITY) as stored:
                parity = ParityRows(features=stored["features"], expected=stored["expected"])
        return cls(stages, output_col=manifest["output_col"], decision=Decision.from_record(manifest["decision"]),
                   parity=parity, source=manifest.get("source"))


def _file_names(record: Mapping[str, Any]) -> list[str]:
    return [record["booster"]] if "booster" in record else []
