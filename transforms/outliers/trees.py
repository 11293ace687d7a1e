"""Isolation trees as plain data, scored with vectorized NumPy.

:func:`export_forest` turns a fitted ``sklearn.ensemble.IsolationForest`` into
plain lists (per tree: ``children_left``, ``children_right``, ``feature``,
``threshold``, ``n_node_samples``), so a fitted step is JSON and never a pickle.
:class:`CompiledForest` concatenates the trees into flat arrays and computes
scikit-learn's ``score_samples`` by walking all trees and all rows at once, one
depth level per iteration (never a Python loop over rows). The arithmetic mirrors
scikit-learn's (float32 inputs compared exactly against the float64 thresholds,
the same order of additions), so the scores are bitwise equal.

>>> import numpy as np
>>> from sklearn.ensemble import IsolationForest
>>> X = np.random.default_rng(0).normal(size=(200, 2))
>>> sk = IsolationForest(n_estimators=10, random_state=0).fit(X)
>>> forest = CompiledForest(export_forest(sk), sk.max_samples_)
>>> bool(np.array_equal(forest.score_samples(X), sk.score_samples(X)))
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: (tree, row) pairs walked per chunk: small enough for the temporaries to stay in cache
_CHUNK_CELLS = 1 << 18


def average_path_length(n: np.ndarray) -> np.ndarray:
    """``c(n)``: the average path length of an unsuccessful BST search in ``n`` points.

    Same formula and operation order as ``sklearn.ensemble._iforest._average_path_length``.
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def export_forest(forest: Any) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """The trees of a fitted ``IsolationForest`` as plain tuples.

    Feature indices are mapped through ``estimators_features_`` when the trees
    were grown on a subset of the columns, so every tree indexes the full input.
    """
    n_features = forest.n_features_in_
    trees = []
    for est, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        t = est.tree_
        feature = np.asarray(t.feature, dtype=np.int64)
        if len(features) != n_features:  # scikit-learn indexes X[:, features] only then
            feature = np.where(feature >= 0, np.asarray(features)[np.maximum(feature, 0)], feature)
        trees.append(
            {
                "children_left": tuple(int(v) for v in t.children_left),
                "children_right": tuple(int(v) for v in t.children_right),
                "feature": tuple(int(v) for v in feature),
                "threshold": tuple(float(v) for v in t.threshold),
                "n_node_samples": tuple(int(v) for v in t.n_node_samples),
            }
        )
    return tuple(trees)


class CompiledForest:
    """Exported trees flattened into arrays, ready to score rows.

    Parameters
    ----------
    trees
        Output of :func:`export_forest` (or its JSON round trip).
    max_samples
        The forest's ``max_samples_`` (sub-sample size of each tree).
    """

    def __init__(self, trees: Sequence[Mapping[str, Sequence[Any]]], max_samples: int) -> None:
        self.n_trees = len(trees)
        sizes = [len(t["children_left"]) for t in trees]
        offsets = np.cumsum([0, *sizes])[:-1]
        self.roots = offsets.astype(np.intp)
        child, feature, threshold, contrib = [], [], [], []
        depth_max = 1
        for off, t in zip(offsets, trees, strict=True):
            cl = np.asarray(t["children_left"], dtype=np.intp)
            cr = np.asarray(t["children_right"], dtype=np.intp)
            depth = _node_depths(cl, cr)
            depth_max = max(depth_max, int(depth.max()))
            leaf = cl < 0
            here = np.arange(len(cl))
            # child[2 * node + went_right]; a leaf's children are itself, so walks stop there
            child.append(np.stack([np.where(leaf, here, cl), np.where(leaf, here, cr)], axis=1).ravel() + off)
            feature.append(np.maximum(np.asarray(t["feature"], dtype=np.intp), 0))
            threshold.append(_float32_floor(np.asarray(t["threshold"], dtype=np.float64)))
            # as in scikit-learn: decision path length + c(n_leaf) - 1.0, in this order
            contrib.append(depth + average_path_length(np.asarray(t["n_node_samples"])) - 1.0)
        self.child = np.concatenate(child) if trees else np.zeros(0, dtype=np.intp)
        self.feature = np.concatenate(feature) if trees else np.zeros(0, dtype=np.intp)
        self.threshold = np.concatenate(threshold) if trees else np.zeros(0, dtype=np.float32)
        self.contrib = np.concatenate(contrib) if trees else np.zeros(0)
        self.levels = depth_max - 1
        self.denominator = float((self.n_trees * average_path_length(np.array([max_samples])))[0])

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``IsolationForest.score_samples`` (lower is more abnormal).

        ``X`` must hold no NaN (callers leave rows with missing values out).
        """
        X = np.ascontiguousarray(X, dtype=np.float32)  # scikit-learn grows and walks trees on float32
        out = np.empty(len(X))
        step = max(1, _CHUNK_CELLS // max(self.n_trees, 1))
        for start in range(0, len(X), step):
            out[start : start + step] = self._score_chunk(X[start : start + step])
        return out

    def _score_chunk(self, X: np.ndarray) -> np.ndarray:
        n, d = X.shape
        flat = X.ravel()
        row_start = (np.arange(n) * d)[None, :]
        node = np.repeat(self.roots[:, None], n, axis=1)  # (n_trees, n): current node per tree and row
        for _ in range(self.levels):
            went_right = flat[row_start + self.feature[node]] > self.threshold[node]
            node = self.child[2 * node + went_right]
        depths = np.zeros(n)
        for per_tree in self.contrib[node]:  # sequential sum over trees, as scikit-learn adds them
            depths += per_tree
        ratio = depths / self.denominator if self.denominator != 0 else np.ones(n)
        return -(2 ** (-ratio))


def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each threshold: for float32 ``x``, ``x <= t`` iff ``x <= floor32(t)``."""
    t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of each node, root = 1 (``Tree.compute_node_depths``); children follow parents."""
    depth = np.zeros(len(left), dtype=np.int64)
    if len(left):
        depth[0] = 1
    frontier = np.array([0]) if len(left) else np.zeros(0, dtype=np.int64)
    while frontier.size:
        frontier = frontier[left[frontier] >= 0]
        children = np.concatenate([left[frontier], right[frontier]])
        depth[children] = np.concatenate([depth[frontier], depth[frontier]]) + 1
        frontier = children
    return depth
