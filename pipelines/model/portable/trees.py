"""Decision-tree ensembles as flat node arrays, walked by one compiled loop.

Every tree of an ensemble is laid out in the same five arrays (node ``i`` of tree ``t`` sits
at ``roots[t] + i``): the feature a node splits on (-1 at a leaf), its threshold, its
children, and the leaf's value(s). A row goes left when ``x <= threshold``, as in Spark ML, so
NaN goes right. Everything is float64, as in Spark: no threshold or leaf value is rounded.

The loop is compiled by numba (``nogil``: requests on several threads score at once). It was
chosen by measurement (``benchmarks/tree_kernels.py``, docs/online-scoring.md): on a forest
of 500 trees it is the fastest of a level-by-level numpy walk, treelite's GTIL and Spark ML
itself, and it sums the trees in Spark's order, so probabilities match Spark's to the last
bit or two. Rows are taken in blocks and trees one by one within a block, so a tree's nodes
stay in cache while a block of rows passes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# Rows per block: a block's accumulators and one tree's nodes fit in the CPU's caches.
_BLOCK_ROWS = 512


@dataclass(frozen=True)
class TreeArrays:
    """The nodes of several trees, flat. ``value`` is a leaf's output (0 at inner nodes);
    forests of a classifier also have ``value0``, the leaf's share of class 0."""

    feature: np.ndarray  # int32, -1 at a leaf
    threshold: np.ndarray  # float64
    left: np.ndarray  # int32, absolute index
    right: np.ndarray  # int32, absolute index
    value: np.ndarray  # float64
    value0: np.ndarray  # float64 (zeros where unused)
    roots: np.ndarray  # int32, the first node of each tree

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ("feature", "threshold", "left", "right", "value",
                                                        "value0", "roots")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreeArrays:
        return cls(
            feature=np.ascontiguousarray(arrays["feature"], dtype=np.int32),
            threshold=np.ascontiguousarray(arrays["threshold"], dtype=np.float64),
            left=np.ascontiguousarray(arrays["left"], dtype=np.int32),
            right=np.ascontiguousarray(arrays["right"], dtype=np.int32),
            value=np.ascontiguousarray(arrays["value"], dtype=np.float64),
            value0=np.ascontiguousarray(arrays["value0"], dtype=np.float64),
            roots=np.ascontiguousarray(arrays["roots"], dtype=np.int32),
        )

    def splits(self) -> tuple[np.ndarray, np.ndarray]:
        """Every inner node's (feature, threshold): where rows on a boundary are worth testing."""
        inner = self.feature >= 0
        return self.feature[inner], self.threshold[inner]

    def check(self, n_features: int) -> None:
        """Raise ValueError unless the arrays are one well-formed forest over ``n_features``."""
        n = self.feature.shape[0]
        if not all(getattr(self, name).shape == (n,) for name in ("threshold", "left", "right", "value", "value0")):
            raise ValueError("node arrays differ in length")
        inner = self.feature >= 0
        if (self.feature >= n_features).any():
            raise ValueError(f"a split names a feature beyond the {n_features} there are")
        children = np.concatenate([self.left[inner], self.right[inner]])
        if children.size and (children.min() < 0 or children.max() >= n):
            raise ValueError("a child index is outside the node arrays")
        # Nodes are in pre-order: a child comes after its parent, so every walk ends at a leaf.
        index = np.flatnonzero(inner)
        if ((self.left[inner] <= index) | (self.right[inner] <= index)).any():
            raise ValueError("a child comes before its parent: the nodes are not in pre-order")
        if self.roots.size and (self.roots.min() < 0 or self.roots.max() >= n):
            raise ValueError("a root index is outside the node arrays")
        if not np.isfinite(self.threshold[inner]).all():
            raise ValueError("a split threshold is not finite")


@njit(nogil=True, cache=True)
def _leaf(x_row, feature, threshold, left, right, node):  # pragma: no cover - compiled
    while feature[node] >= 0:
        if x_row[feature[node]] <= threshold[node]:
            node = left[node]
        else:
            node = right[node]
    return node


@njit(nogil=True, cache=True)
def _forest_votes(x, feature, threshold, left, right, value0, value1, roots, votes0, votes1):  # pragma: no cover
    n_rows = x.shape[0]
    for start in range(0, n_rows, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n_rows)
        for t in range(roots.shape[0]):
            root = roots[t]
            for i in range(start, stop):
                leaf = _leaf(x[i], feature, threshold, left, right, root)
                votes0[i] += value0[leaf]
                votes1[i] += value1[leaf]


@njit(nogil=True, cache=True)
def _weighted_sum(x, feature, threshold, left, right, value, roots, weights, out):  # pragma: no cover
    n_rows = x.shape[0]
    for start in range(0, n_rows, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n_rows)
        for t in range(roots.shape[0]):
            root = roots[t]
            weight = weights[t]
            for i in range(start, stop):
                leaf = _leaf(x[i], feature, threshold, left, right, root)
                out[i] += value[leaf] * weight


def forest_votes(trees: TreeArrays, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the sum over trees (in order) of each leaf's class-0 and class-1 shares."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    votes0 = np.zeros(x.shape[0])
    votes1 = np.zeros(x.shape[0])
    _forest_votes(x, trees.feature, trees.threshold, trees.left, trees.right, trees.value0, trees.value,
                  trees.roots, votes0, votes1)
    return votes0, votes1


def weighted_sum(trees: TreeArrays, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row, the sum over trees (in order) of leaf value times the tree's weight."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(x.shape[0])
    _weighted_sum(x, trees.feature, trees.threshold, trees.left, trees.right, trees.value, trees.roots,
                  np.ascontiguousarray(weights, dtype=np.float64), out)
    return out
