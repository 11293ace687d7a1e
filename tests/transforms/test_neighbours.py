"""Exact nearest neighbours: both searches against scikit-learn's, and the cost model's choice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from sklearn.neighbors import NearestNeighbors

from transforms.augment import neighbours as nb


def sklearn_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    return NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x).kneighbors(x, return_distance=False)[:, 1:]


def datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    heavy = rng.standard_t(2, size=(3000, 6))
    heavy[rng.integers(0, 3000, 30), rng.integers(0, 6, 30)] *= 1e4  # extreme outliers
    low_rank = rng.standard_normal((3000, 2)) @ rng.standard_normal((2, 9))
    return {
        "gaussian_12": rng.standard_normal((2500, 12)),
        "low_rank": low_rank + 1e-3 * rng.standard_normal((3000, 9)),
        "heavy_tails": heavy,
        "one_feature": rng.standard_normal((500, 1)),
        "tiny": rng.standard_normal((3, 4)),
    }


@pytest.mark.parametrize("search", ["tree", "brute"])
@pytest.mark.parametrize("name", list(datasets()))
def test_both_searches_find_scikit_learns_neighbours(monkeypatch, name: str, search: str) -> None:
    """Expect: whichever search runs, the neighbours are scikit-learn's exact ones, nearest first
    (continuous data: no ties)."""
    x = datasets()[name]
    monkeypatch.setattr(nb, "_TREE_MAX_COST", np.inf if search == "tree" else -1.0)
    k = min(5, len(x) - 1)
    got = nb.nearest_neighbours(x, k)
    np.testing.assert_array_equal(got, sklearn_neighbours(x, k))
    assert got.dtype == np.intp


@pytest.mark.parametrize("k", [1, 5, 60])
def test_brute_force_bounds_each_row_from_a_sample_and_stays_exact(k: int) -> None:
    """Expect: on 9000 rows (a row's bound comes from a sample of 2048 of its values) of integer features (many
    tied distances), the brute force's neighbours are at scikit-learn's distances, nearest first; on continuous
    data they are scikit-learn's indices."""
    rng = np.random.default_rng(4)
    ties = rng.integers(0, 6, size=(9000, 3)).astype(float)
    got = nb.brute_force(ties, k)
    expected = sklearn_neighbours(ties, k)
    distance = np.sqrt(((ties[:, None, :] - ties[got]) ** 2).sum(axis=2))
    np.testing.assert_array_equal(distance, np.sqrt(((ties[:, None, :] - ties[expected]) ** 2).sum(axis=2)))
    assert (np.diff(distance, axis=1) >= 0).all()
    continuous = rng.standard_normal((9000, 7))
    np.testing.assert_array_equal(nb.brute_force(continuous, k), sklearn_neighbours(continuous, k))


def test_duplicate_rows_have_distance_zero_neighbours(monkeypatch) -> None:
    """Expect: with every row present twice, each row's nearest neighbour is a copy of it (itself or its twin)."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((200, 3))
    x = np.vstack([base, base])
    for cost in (np.inf, -1.0):
        monkeypatch.setattr(nb, "_TREE_MAX_COST", cost)
        first = nb.nearest_neighbours(x, 3)[:, 0]
        np.testing.assert_array_equal(x[first], x)


def test_cost_model_picks_the_tree_on_few_effective_dimensions_and_brute_force_on_many() -> None:
    """Expect: low-rank data cost the tree a small share of brute force; 16 independent Gaussian features
    cost it more than brute force (at 20k rows: 0.17 s against 1.36 s, and 7.7 s against 1.0 s)."""
    rng = np.random.default_rng(0)
    low = rng.standard_normal((20_000, 3)) @ rng.standard_normal((3, 10)) + 0.01 * rng.standard_normal((20_000, 10))
    wide = rng.standard_normal((20_000, 16))
    assert nb.tree_cost(low, cKDTree(low), 5) < 0.1
    assert nb.tree_cost(wide, cKDTree(wide), 5) > 2 * nb._TREE_MAX_COST


def test_cost_model_is_deterministic() -> None:
    """Expect: the same data give the same estimate, so the library, the CLI and a flow run the same search."""
    x = np.random.default_rng(2).standard_normal((3000, 10))
    assert nb.tree_cost(x, cKDTree(x), 5) == nb.tree_cost(x.copy(), cKDTree(x.copy()), 5)


def test_smote_gives_the_search_polars_threads_from_outside_the_batch_function(monkeypatch) -> None:
    """Expect: the tree search inside SMOTE's batch function gets the caller's thread count; asked there,
    Polars answers 1 and the search ran single-threaded (0.5-0.6 s became 1.2-1.4 s on 20k rows)."""
    import polars as pl

    from transforms import SMOTE
    from transforms.augment import smote as smote_module

    seen = []

    def spy(x, k, *, workers=None):
        seen.append((workers, pl.thread_pool_size()))
        return nb.nearest_neighbours(x, k, workers=workers)

    monkeypatch.setattr(smote_module, "nearest_neighbours", spy)
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "y": [1] * 30 + [0] * 270})
    SMOTE(target="y", columns=["a", "b"], seed=1).fit_transform(df)
    assert [w for w, _ in seen] == [pl.thread_pool_size()]
