"""The stages of a fitted fraud pipeline, rebuilt from what Spark saved, scored with numpy.

Each stage reads its fitted values from the stage's own folder of a saved ``PipelineModel``
(``metadata/`` JSON and ``data/`` Parquet, read with pyarrow: no JVM), and applies them to
columns of a batch held as numpy arrays, the way Spark ML computes them:

- ``VectorAssembler``: the input columns side by side, in its order;
- ``StandardScalerModel``: ``(x - mean) * (1 / std)`` (0 where std is 0), each part only if
  ``withMean`` / ``withStd``;
- ``LogisticRegressionModel`` (binary): ``1 - 1 / (1 + exp(m))``, ``m = x . coefficients +
  intercept`` (Spark computes P(0) from the raw vector ``[-m, m]``, then ``P(1) = 1 - P(0)``);
- ``RandomForestClassificationModel``: each tree's leaf gives its class shares
  (``impurityStats / sum``); they are summed over trees and normalised;
- ``GBTClassificationModel`` (logistic loss): ``m = sum(tree prediction * weight)``,
  ``1 - 1 / (1 + exp(2 m))``, in the same order;
- ``SparkXGBClassifierModel``: XGBoost's own booster on float32 features, the margin through
  the logistic function in float32, as ``xgboost.spark`` does;
- ``pipelines.model.stages.MeanProbability``: the mean of its inputs' fraud probabilities.

A classifier's output column holds the probability of class 1 only (Spark's vector is
``[1 - p, p]``). Any other stage, or a setting these formulas do not cover, is
:class:`~pipelines.core.errors.ModelNotPortableError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
import xgboost
from scipy.special import expit

from pipelines.core.errors import ModelNotPortableError
from pipelines.model.portable.trees import TreeArrays, forest_votes, weighted_sum

Columns = dict[str, np.ndarray]
# What a stage saves: a JSON record, named arrays (in arrays.npz) and named files (a booster).
Record = tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]


def read_metadata(stage_dir: Path) -> dict[str, Any]:
    """The JSON line Spark wrote under ``<stage>/metadata``."""
    parts = sorted((stage_dir / "metadata").glob("part-*"))
    if not parts:
        raise ModelNotPortableError(f"{stage_dir} has no metadata/part-* file: not a saved Spark ML stage")
    return json.loads(parts[0].read_text().splitlines()[0])


def _read_rows(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        raise ModelNotPortableError(f"{folder} is missing: the saved stage is incomplete")
    return pq.read_table(folder).to_pylist()


def _params(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The stage's params as Spark resolves them: set values over defaults."""
    return {**metadata.get("defaultParamMap", {}), **metadata.get("paramMap", {})}


def _dense(vector: Mapping[str, Any]) -> np.ndarray:
    """A Spark ML vector as saved in Parquet (type 1 dense, 0 sparse) as a float64 array."""
    values = np.asarray(vector["values"], dtype=np.float64)
    if vector["type"] == 1:
        return values
    dense = np.zeros(vector["size"], dtype=np.float64)
    dense[np.asarray(vector["indices"], dtype=np.int64)] = values
    return dense


class Stage:
    """One fitted stage: reads columns of a batch, writes one."""

    kind: ClassVar[str]
    output_col: str

    def apply(self, columns: Columns) -> None:
        raise NotImplementedError

    def to_record(self, key: str) -> Record:
        """What is saved: a JSON record, named arrays (prefixed ``key``) and named files."""
        raise NotImplementedError

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        raise NotImplementedError


class _Combining(Stage):
    """A stage that reads several columns and writes one (its params ``inputCols``, ``outputCol``)."""

    def __init__(self, input_cols: list[str], output_col: str) -> None:
        self.input_cols, self.output_col = list(input_cols), output_col

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> _Combining:
        params = _params(metadata)
        return cls(params["inputCols"], params["outputCol"])

    def to_record(self, key: str) -> Record:
        return {"input_cols": self.input_cols, "output_col": self.output_col}, {}, {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        return cls(record["input_cols"], record["output_col"])


class Assembler(_Combining):
    kind = "vector_assembler"

    def apply(self, columns: Columns) -> None:
        missing = [col for col in self.input_cols if col not in columns]
        if missing:
            raise KeyError(f"the assembler reads {missing}, which the batch lacks")
        columns[self.output_col] = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in self.input_cols])


class Scaler(Stage):
    kind = "standard_scaler"

    def __init__(self, input_col: str, output_col: str, shift: np.ndarray | None, scale: np.ndarray | None) -> None:
        self.input_col, self.output_col, self.shift, self.scale = input_col, output_col, shift, scale

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> Scaler:
        params = _params(metadata)
        (row,) = _read_rows(stage_dir / "data")
        std, mean = _dense(row["std"]), _dense(row["mean"])
        scale = np.where(std == 0.0, 0.0, 1.0 / np.where(std == 0.0, 1.0, std)) if params["withStd"] else None
        return cls(params["inputCol"], params["outputCol"], mean if params["withMean"] else None, scale)

    def apply(self, columns: Columns) -> None:
        values = columns[self.input_col]
        if self.shift is not None:
            values = values - self.shift
        if self.scale is not None:
            values = values * self.scale
        columns[self.output_col] = values

    def to_record(self, key: str) -> Record:
        arrays = {}
        if self.shift is not None:
            arrays[f"{key}.shift"] = self.shift
        if self.scale is not None:
            arrays[f"{key}.scale"] = self.scale
        record = {"input_col": self.input_col, "output_col": self.output_col,
                  "shift": f"{key}.shift" if self.shift is not None else None,
                  "scale": f"{key}.scale" if self.scale is not None else None}
        return record, arrays, {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        return cls(record["input_col"], record["output_col"],
                   arrays[record["shift"]] if record["shift"] else None,
                   arrays[record["scale"]] if record["scale"] else None)


class Classifier(Stage):
    """A binary classifier: reads a features column, writes P(class 1)."""

    def __init__(self, features_col: str, output_col: str) -> None:
        self.features_col, self.output_col = features_col, output_col

    def apply(self, columns: Columns) -> None:
        columns[self.output_col] = self.fraud_probability(columns[self.features_col])

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _columns(metadata: Mapping[str, Any]) -> tuple[str, str]:
        params = _params(metadata)
        return params["featuresCol"], params["probabilityCol"]


class Logistic(Classifier):
    kind = "logistic_regression"

    def __init__(self, features_col: str, output_col: str, coefficients: np.ndarray, intercept: float) -> None:
        super().__init__(features_col, output_col)
        self.coefficients, self.intercept = coefficients, float(intercept)

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> Logistic:
        (row,) = _read_rows(stage_dir / "data")
        if row["numClasses"] != 2 or row["isMultinomial"]:
            raise ModelNotPortableError(
                f"{metadata['class']} {metadata['uid']} is multinomial ({row['numClasses']} classes): "
                f"only binary logistic regression has a portable form")
        matrix = row["coefficientMatrix"]
        if matrix["type"] != 1 or matrix["numRows"] != 1:
            raise ModelNotPortableError(f"{metadata['uid']}: coefficients are not one dense row")
        intercept = _dense(row["interceptVector"])
        return cls(*cls._columns(metadata), np.asarray(matrix["values"], dtype=np.float64), float(intercept[0]))

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        margin = x @ self.coefficients + self.intercept
        # As Spark's raw2probabilityInPlace on raw = [-m, m]: P(0) first, then P(1) = 1 - P(0).
        with np.errstate(over="ignore"):
            return 1.0 - 1.0 / (1.0 + np.exp(margin))

    def to_record(self, key: str) -> Record:
        record = {"features_col": self.features_col, "output_col": self.output_col,
                  "coefficients": f"{key}.coefficients", "intercept": self.intercept}
        return record, {f"{key}.coefficients": self.coefficients}, {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        return cls(record["features_col"], record["output_col"], arrays[record["coefficients"]], record["intercept"])


def _spark_trees(stage_dir: Path, metadata: Mapping[str, Any], *,
                 leaf_value: str) -> tuple[TreeArrays, np.ndarray, int]:
    """A saved Spark tree ensemble as flat arrays, its tree weights and its number of features.

    :param leaf_value: ``"class_shares"`` (a classification forest: ``value`` is the leaf's
        share of class 1, ``value0`` of class 0) or ``"prediction"`` (boosted regression trees).
    """
    rows = _read_rows(stage_dir / "data")
    weights_rows = sorted(_read_rows(stage_dir / "treesMetadata"), key=lambda row: row["treeID"])
    by_tree: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_tree.setdefault(row["treeID"], []).append(row["nodeData"])
    tree_ids = sorted(by_tree)
    if tree_ids != [row["treeID"] for row in weights_rows]:
        raise ModelNotPortableError(f"{metadata['uid']}: the trees and their weights do not match")
    feature, threshold, left, right, value, value0, roots = [], [], [], [], [], [], []
    offset = 0
    for tree_id in tree_ids:
        nodes = sorted(by_tree[tree_id], key=lambda node: node["id"])
        if [node["id"] for node in nodes] != list(range(len(nodes))):
            raise ModelNotPortableError(f"{metadata['uid']}: tree {tree_id}'s node ids are not 0..n-1")
        roots.append(offset)
        for node in nodes:
            is_leaf = node["leftChild"] < 0
            split = node["split"]
            if not is_leaf and split["numCategories"] != -1:
                raise ModelNotPortableError(
                    f"{metadata['uid']}: tree {tree_id} splits on a categorical feature "
                    f"(feature {split['featureIndex']}); only continuous splits have a portable form")
            feature.append(-1 if is_leaf else split["featureIndex"])
            threshold.append(0.0 if is_leaf else split["leftCategoriesOrThreshold"][0])
            left.append(-1 if is_leaf else offset + node["leftChild"])
            right.append(-1 if is_leaf else offset + node["rightChild"])
            if leaf_value == "class_shares":
                stats = node["impurityStats"]
                if len(stats) != 2:
                    raise ModelNotPortableError(f"{metadata['uid']}: a leaf has {len(stats)} classes, not 2")
                total = stats[0] + stats[1]
                # As Spark: a leaf without weight adds nothing to the votes.
                value0.append(stats[0] / total if total != 0 else 0.0)
                value.append(stats[1] / total if total != 0 else 0.0)
            else:
                value0.append(0.0)
                value.append(node["prediction"])
        offset += len(nodes)
    trees = TreeArrays(
        feature=np.asarray(feature, dtype=np.int32), threshold=np.asarray(threshold, dtype=np.float64),
        left=np.asarray(left, dtype=np.int32), right=np.asarray(right, dtype=np.int32),
        value=np.asarray(value, dtype=np.float64), value0=np.asarray(value0, dtype=np.float64),
        roots=np.asarray(roots, dtype=np.int32),
    )
    n_features = int(metadata["numFeatures"])
    try:
        trees.check(n_features)
    except ValueError as exc:
        raise ModelNotPortableError(f"{metadata['uid']}: {exc}") from exc
    return trees, np.asarray([row["weights"] for row in weights_rows], dtype=np.float64), n_features


class TreeClassifier(Classifier):
    def __init__(self, features_col: str, output_col: str, trees: TreeArrays, weights: np.ndarray, *,
                 n_features: int) -> None:
        super().__init__(features_col, output_col)
        self.trees, self.weights, self.n_features = trees, weights, n_features

    def to_record(self, key: str) -> Record:
        arrays = {f"{key}.{name}": array for name, array in self.trees.arrays().items()}
        arrays[f"{key}.weights"] = self.weights
        record = {"features_col": self.features_col, "output_col": self.output_col, "arrays": key,
                  "n_features": self.n_features}
        return record, arrays, {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        key = record["arrays"]
        trees = TreeArrays.from_arrays({name: arrays[f"{key}.{name}"] for name in
                                        ("feature", "threshold", "left", "right", "value", "value0", "roots")})
        try:
            trees.check(n_features=int(record["n_features"]))
        except ValueError as exc:  # a damaged file must not reach the compiled walk
            raise ModelNotPortableError(f"{cls.kind} stage: {exc}") from exc
        return cls(record["features_col"], record["output_col"], trees, arrays[f"{key}.weights"],
                   n_features=int(record["n_features"]))


class Forest(TreeClassifier):
    kind = "random_forest"

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> Forest:
        trees, weights, n_features = _spark_trees(stage_dir, metadata, leaf_value="class_shares")
        if not (weights == 1.0).all():
            raise ModelNotPortableError(f"{metadata['uid']}: a forest tree has a weight other than 1")
        return cls(*cls._columns(metadata), trees, weights, n_features=n_features)

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        votes0, votes1 = forest_votes(self.trees, x)
        total = votes0 + votes1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total != 0, votes1 / total, 0.0)


class Boosted(TreeClassifier):
    kind = "gbt"

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> Boosted:
        params = _params(metadata)
        if params.get("lossType", "logistic") != "logistic":
            raise ModelNotPortableError(
                f"{metadata['uid']}: GBT loss {params['lossType']!r}; only 'logistic' is portable")
        trees, weights, n_features = _spark_trees(stage_dir, metadata, leaf_value="prediction")
        return cls(*cls._columns(metadata), trees, weights, n_features=n_features)

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        margin = weighted_sum(self.trees, self.weights, x)
        # As Spark: the logistic loss's probability of raw[0] = -m is P(0); P(1) = 1 - P(0).
        with np.errstate(over="ignore"):
            return 1.0 - 1.0 / (1.0 + np.exp(2.0 * margin))


class XGBoost(Classifier):
    kind = "xgboost"

    def __init__(self, features_col: str, output_col: str, booster_json: bytes) -> None:
        super().__init__(features_col, output_col)
        self.booster_json = booster_json
        self.booster = xgboost.Booster()
        self.booster.load_model(bytearray(booster_json))
        # One thread: a request's few rows are quickest on one, and requests run side by side.
        self.booster.set_param({"nthread": 1})
        config = json.loads(self.booster.save_config())
        objective = config["learner"]["objective"]["name"]
        if objective != "binary:logistic":
            raise ModelNotPortableError(f"XGBoost objective {objective!r}: only 'binary:logistic' is portable")
        best = self.booster.attr("best_iteration")
        # As XGBClassifier.predict: up to the best iteration when early stopping kept one.
        self.iteration_range = (0, int(best) + 1) if best is not None else (0, 0)

    @classmethod
    def from_spark(cls, stage_dir: Path, metadata: Mapping[str, Any]) -> XGBoost:
        params = _params(metadata)
        missing = params.get("missing", float("nan"))
        if not (isinstance(missing, float) and np.isnan(missing)) or params.get("iteration_range"):
            raise ModelNotPortableError(
                f"{metadata['uid']}: XGBoost with missing={missing!r} or an iteration_range has no portable form "
                f"(it scores with missing=NaN and the booster's own best iteration)")
        if params.get("features_cols") or params.get("base_margin_col") or params.get("enable_sparse_data_optim"):
            raise ModelNotPortableError(
                f"{metadata['uid']}: XGBoost with features_cols, base_margin_col or sparse data optimisation "
                f"has no portable form")
        parts = sorted((stage_dir / "model").glob("part-*"))
        if not parts:
            raise ModelNotPortableError(f"{stage_dir}/model has no booster")
        # Saved as lines of one JSON text (xgboost.spark's writer); its reader joins them.
        booster_json = "".join(line for part in parts for line in part.read_text().splitlines()).encode()
        return cls(*cls._columns(metadata), booster_json)

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        margin = self.booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float32), predict_type="margin",
                                              iteration_range=self.iteration_range, validate_features=False)
        # float32, as xgboost.spark computes it; Spark then holds it as a double.
        return expit(np.asarray(margin, dtype=np.float32)).astype(np.float64)

    def to_record(self, key: str) -> Record:
        name = f"{key}.booster.json"
        return {"features_col": self.features_col, "output_col": self.output_col, "booster": name}, {}, {
            name: self.booster_json}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    files: Mapping[str, bytes]) -> Stage:
        return cls(record["features_col"], record["output_col"], files[record["booster"]])


class Mean(_Combining):
    kind = "mean_probability"

    def apply(self, columns: Columns) -> None:
        total = 0.0
        for col in self.input_cols:  # Python's sum, in order: as pipelines.model.stages.MeanProbability
            total = total + columns[col]
        columns[self.output_col] = total / len(self.input_cols)


# Spark's class name of each stage that has a portable form.
SPARK_STAGES: dict[str, type[Stage]] = {
    "org.apache.spark.ml.feature.VectorAssembler": Assembler,
    "org.apache.spark.ml.feature.StandardScalerModel": Scaler,
    "org.apache.spark.ml.classification.LogisticRegressionModel": Logistic,
    "org.apache.spark.ml.classification.RandomForestClassificationModel": Forest,
    "org.apache.spark.ml.classification.GBTClassificationModel": Boosted,
    "xgboost.spark.estimator.SparkXGBClassifierModel": XGBoost,
    "pipelines.model.stages.MeanProbability": Mean,
    # The name every ensemble saved before the stage packages carries (pipelines/model/__init__.py).
    "pipelines.model.MeanProbability": Mean,
}
STAGE_KINDS: dict[str, type[Stage]] = {stage.kind: stage for stage in SPARK_STAGES.values()}
