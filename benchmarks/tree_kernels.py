"""Benchmark: four ways to walk the portable scorer's random forest, timed and checked against Spark.

    .venv/bin/python benchmarks/tree_kernels.py [--trees 500 --depth 12] [--rows 1 1000 100000] [--repeats 3]

Fits the demo's random forest (500 trees, depth 12, "sqrt" features, seed 42) on the real sample
with Spark (local[2], full JIT: conf/local.toml's C1-only JVM option is dropped, it favours short
jobs over throughput), saves it and reads it back as a ``PortableModel``. The sample's rows, tiled
and jittered (seeded; one row in ten with a feature exactly on a split threshold), are scored at
each size by: the project's numba kernel (``Forest.fraud_probability``, and the whole
``PortableModel.sample_probability``); a level-by-level numpy walk of all trees at once;
treelite's GTIL on the same forest built in float64 (1 and 2 threads); and Spark ML's own
transform (pandas -> Spark -> probability collected), the baseline. Each is timed warm, best of
``--repeats`` (a repeat is as many calls as fill 0.2 s); its first call is timed apart. Each is
compared with Spark's probabilities (parity: at most 1e-9). Also times loading each model, and
numba's compile in fresh processes with a cold and a warm on-disk cache. Prints the figures and
the machine's load; no asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="tree-kernels-"))
# Compiled kernels go to a temporary cache, not the project's __pycache__: the first call compiles.
os.environ["NUMBA_CACHE_DIR"] = str(TMP / "numba-cache")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.ml import PipelineModel  # noqa: E402
from treelite import gtil  # noqa: E402
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation  # noqa: E402

from pipelines.core.config import load_settings  # noqa: E402
from pipelines.core.session import get_spark  # noqa: E402
from pipelines.data.schema import FEATURE_COLS, LABEL_COL  # noqa: E402
from pipelines.model.portable.decision import Decision  # noqa: E402
from pipelines.model.portable.model import PARITY_TOLERANCE, PortableModel  # noqa: E402
from pipelines.model.portable.stages import Forest  # noqa: E402
from pipelines.model.portable.trees import TreeArrays  # noqa: E402
from pipelines.model.stages import build_pipeline, fraud_probability  # noqa: E402

SAMPLE = PROJECT / "data" / "creditcard_sample.csv.gz"
# Node indices per numpy step (rows x trees): 2^16 was quickest of 2^14..2^20 on 500 trees.
NUMPY_CHUNK_ELEMENTS = 1 << 16

NUMBA_PROBE = """import sys, time
t = [time.perf_counter()]
import numpy as np
from pipelines.model.portable.model import PortableModel
t.append(time.perf_counter()); model = PortableModel.load(sys.argv[1]); t.append(time.perf_counter())
x = np.load(sys.argv[2]); t.append(time.perf_counter())
for _ in range(2): model.sample_probability(x); t.append(time.perf_counter())
print(t[1] - t[0], t[2] - t[1], t[4] - t[3], t[5] - t[4])
"""


class NumpyForest:
    """All trees at once, one level per step: a rows x trees array of node indices over the flat
    arrays. A leaf is its own child, so rows that reach one early stay there."""

    def __init__(self, trees: TreeArrays, n_features: int) -> None:
        leaf = trees.feature < 0
        own = np.arange(leaf.size, dtype=np.int64)
        self.feature = np.where(leaf, 0, trees.feature).astype(np.int64)
        self.threshold = trees.threshold
        # children[2 i] is node i's left child, children[2 i + 1] its right.
        self.children = np.stack([np.where(leaf, own, trees.left), np.where(leaf, own, trees.right)], 1).ravel()
        self.value, self.value0, self.roots, self.n_features = trees.value, trees.value0, trees.roots, n_features
        self.levels, frontier = 0, trees.roots
        while (inner := frontier[trees.feature[frontier] >= 0]).size:
            self.levels, frontier = self.levels + 1, np.concatenate([trees.left[inner], trees.right[inner]])
        self.chunk = max(1, NUMPY_CHUNK_ELEMENTS // self.roots.size)

    def fraud_probability(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], self.chunk):
            part = np.ascontiguousarray(x[start:start + self.chunk], dtype=np.float64)
            flat, base = part.ravel(), (np.arange(part.shape[0]) * self.n_features)[:, None]
            node = np.broadcast_to(self.roots.astype(np.int64), (part.shape[0], self.roots.size))
            for _ in range(self.levels):  # `x <= threshold` goes left, so NaN goes right, as in Spark
                right = ~(flat[base + self.feature[node]] <= self.threshold[node])
                node = self.children[2 * node + right]
            votes1, total = self.value[node].sum(axis=1), (self.value0[node] + self.value[node]).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:start + part.shape[0]] = np.where(total != 0, votes1 / total, 0.0)
        return out


def treelite_forest(trees: TreeArrays, n_features: int):
    """The forest in treelite, float64 thresholds and leaves; each leaf the vector of its class
    shares, averaged over trees (Spark normalises their sum by its total: the same when shares sum to 1)."""
    n_trees, ends = trees.n_trees, [*trees.roots[1:].tolist(), trees.feature.size]
    builder = ModelBuilder(
        threshold_type="float64", leaf_output_type="float64",
        metadata=Metadata(num_feature=n_features, task_type="kMultiClf", average_tree_output=True, num_target=1,
                          num_class=[2], leaf_vector_shape=(1, 2)),
        tree_annotation=TreeAnnotation(num_tree=n_trees, target_id=[0] * n_trees, class_id=[-1] * n_trees),
        postprocessor=PostProcessorFunc(name="identity_multiclass"), base_scores=[0.0, 0.0])
    for root, end in zip(trees.roots.tolist(), ends, strict=True):
        builder.start_tree()
        for node in range(root, end):
            builder.start_node(node - root)
            if trees.feature[node] < 0:
                builder.leaf([float(trees.value0[node]), float(trees.value[node])])
            else:
                builder.numerical_test(int(trees.feature[node]), float(trees.threshold[node]), default_left=False,
                                       opname="<=", left_child_key=int(trees.left[node]) - root,
                                       right_child_key=int(trees.right[node]) - root)
            builder.end_node()
        builder.end_tree()
    return builder.commit()


def timed(fn, *args, **kwargs):
    """(fn's result, seconds it took)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def measure(fn, x, repeats: int):
    """(output, first call s, best warm s per call): a warm repeat runs as many calls as fill 0.2 s."""
    out, first = timed(fn, x)
    loops = max(1, int(0.2 / max(timed(fn, x)[1], 1e-7)))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            fn(x)
        best = min(best, (time.perf_counter() - started) / loops)
    return out, first, best


def numba_probe(portable_dir: Path, rows: Path, cache: Path) -> list[float]:
    """In a fresh process with numba's cache in ``cache``: import, load, first and second call (s)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", NUMBA_PROBE, str(portable_dir), str(rows)], env=env, cwd=PROJECT,
                          capture_output=True, text=True, check=True)
    return [float(value) for value in done.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 1000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spark-max-rows", type=int, default=100_000, help="Spark's transform up to this size")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    settings = load_settings("local").spark
    conf = {key: value for key, value in settings.conf.items() if key != "spark.driver.extraJavaOptions"}
    conf["spark.sql.execution.arrow.pyspark.enabled"] = "true"
    spark, session_s = timed(get_spark, replace(settings, master="local[2]", conf=conf))

    data = spark.read.csv(str(SAMPLE), header=True)
    data = data.select(*[data[c].cast("double").alias(c) for c in [*FEATURE_COLS, LABEL_COL]]).cache()
    params = {"numTrees": args.trees, "maxDepth": args.depth, "featureSubsetStrategy": "sqrt"}
    pipeline = build_pipeline(candidate="random_forest", params=params, feature_cols=FEATURE_COLS,
                              label_col=LABEL_COL, seed=42)
    fitted, fit_s = timed(pipeline.fit, data)
    spark_dir, portable_dir = TMP / "sparkml", TMP / "portable"
    fitted.write().save(str(spark_dir))
    _, spark_load_s = timed(PipelineModel.load, str(spark_dir))
    model, from_spark_s = timed(PortableModel.from_spark_pipeline, spark_dir, decision=Decision(0.5, 1.0))
    model.save(portable_dir)
    forest = next(stage for stage in model.stages if isinstance(stage, Forest))
    trees, n_features = forest.trees, len(FEATURE_COLS)
    numpy_forest = NumpyForest(trees, n_features)
    treelite_model, treelite_build_s = timed(treelite_forest, trees, n_features)
    _, treelite_load_s = timed(type(treelite_model).deserialize_bytes, treelite_model.serialize_bytes())
    leaves = trees.feature < 0
    share_sums = trees.value0[leaves] + trees.value[leaves]

    # Scoring rows: the sample's, drawn with replacement, jittered by 5% of each column's spread.
    base = data.select(FEATURE_COLS).toPandas().to_numpy(dtype=np.float64)
    rng = np.random.default_rng(42)
    x_all = base[rng.integers(0, base.shape[0], max(args.rows))]
    x_all = x_all + rng.normal(0.0, 0.05, x_all.shape) * base.std(axis=0)
    # One row in ten gets one feature exactly on a split threshold: where `<=` against `<` shows.
    split_features, split_thresholds = trees.splits()
    on_split = rng.choice(x_all.shape[0], x_all.shape[0] // 10, replace=False)
    pick = rng.integers(0, split_features.size, on_split.size)
    x_all[on_split, split_features[pick]] = split_thresholds[pick]
    frame_all = pd.DataFrame(x_all, columns=FEATURE_COLS)

    def spark_probability(x: np.ndarray) -> np.ndarray:
        frame = spark.createDataFrame(frame_all.iloc[:x.shape[0]])
        return fitted.transform(frame).select(fraud_probability()).toPandas()["fraud_probability"].to_numpy()

    implementations = {  # name: (cores, function of the rows)
        "numba kernel (Forest.fraud_probability)": (1, forest.fraud_probability),
        "numba, whole PortableModel": (1, model.sample_probability),
        "numpy level walk": (1, numpy_forest.fraud_probability),
        "treelite GTIL, 1 thread": (1, lambda x: gtil.predict(treelite_model, x, nthread=1)[:, 0, 1]),
        "treelite GTIL, 2 threads": (2, lambda x: gtil.predict(treelite_model, x, nthread=2)[:, 0, 1]),
        "Spark ML transform": (2, spark_probability),
    }
    spark_sizes = [n for n in args.rows if n <= args.spark_max_rows]
    reference = spark_probability(x_all[:max(spark_sizes)]) if spark_sizes else np.empty(0)
    load_before_timing = os.getloadavg()
    results = []  # (rows, name, cores, first s, warm s, max |diff| or None)
    for n in sorted(args.rows):
        x = np.ascontiguousarray(x_all[:n])
        for name, (cores, fn) in implementations.items():
            if name.startswith("Spark") and n not in spark_sizes:
                continue
            out, first, warm = measure(fn, x, args.repeats)
            diff = float(np.abs(out - reference[:n]).max()) if n <= reference.size else None
            results.append((n, name, cores, first, warm, diff))
    load_after_timing = os.getloadavg()

    rows_file = TMP / "one_row.npy"
    np.save(rows_file, x_all[:1])
    cold = numba_probe(portable_dir, rows_file, TMP / "probe-cache")
    warm = numba_probe(portable_dir, rows_file, TMP / "probe-cache")
    spark.stop()

    print(f"\nforest: {trees.n_trees} trees, maxDepth {args.depth} ({params['featureSubsetStrategy']}), "
          f"{trees.feature.size:,} nodes, {int(leaves.sum()):,} leaves, deepest leaf {numpy_forest.levels}; "
          f"fitted in {fit_s:.1f} s on {base.shape[0]:,} rows")
    print(f"leaf class shares sum to 1: max |share0 + share1 - 1| = {np.abs(share_sums - 1).max():.1e}, "
          f"leaves with no weight {int((share_sums == 0).sum())} (so treelite's mean is Spark's normalised sum)")
    print(f"machine: {os.cpu_count()} cores; load average (1, 5, 15 min) at start {load_at_start[0]:.2f} "
          f"{load_at_start[1]:.2f} {load_at_start[2]:.2f}, before timing {load_before_timing[0]:.2f}, "
          f"after {load_after_timing[0]:.2f} {load_after_timing[1]:.2f} {load_after_timing[2]:.2f}")
    print("first call: the first timed call (the numba kernel's first includes compiling; Spark's JVM "
          "had already run the reference transform on the largest size); one row in ten has a feature on a split")
    print(f"\n{'rows':>7} | {'implementation':40} | cores | {'first call':>12} | {'warm/call':>12} | "
          f"{'rows/s':>12} | max |p - Spark|")
    for n, name, cores, first, warm_s, diff in results:
        parity = "not compared" if diff is None else f"{diff:.1e} {'ok' if diff <= PARITY_TOLERANCE else 'FAILS'}"
        print(f"{n:>7,} | {name:40} | {cores:>5} | {first * 1e3:>9.2f} ms | {warm_s * 1e3:>9.3f} ms | "
              f"{n / warm_s:>12,.0f} | {parity}")
    print("\nloading the model (the JVM already running; starting the Spark session took "
          f"{session_s:.1f} s):")
    print(f"  Spark PipelineModel.load {spark_load_s * 1e3:8.1f} ms | PortableModel.from_spark_pipeline "
          f"{from_spark_s * 1e3:8.1f} ms")
    print(f"  treelite built from the arrays {treelite_build_s * 1e3:8.1f} ms | treelite deserialize_bytes "
          f"{treelite_load_s * 1e3:6.1f} ms")
    for label, (imported, loaded, first, second) in (("cold cache", cold), ("warm cache", warm)):
        print(f"  fresh process, numba {label}: import {imported:5.2f} s | PortableModel.load {loaded * 1e3:6.1f} ms"
              f" | first call (1 row) {first:6.3f} s | second call {second * 1e3:6.3f} ms")
    print()
    for n in sorted(args.rows):
        ok = [(warm_s, name) for m, name, _, _, warm_s, diff in results if m == n and diff is not None
              and diff <= PARITY_TOLERANCE]
        print(f"fastest within {PARITY_TOLERANCE:g} of Spark at {n:,} row(s): "
              + (f"{min(ok)[1]} ({min(ok)[0] * 1e3:.3f} ms per call)" if ok else "none compared"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
