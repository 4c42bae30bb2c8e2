"""Exact kNN against scikit-learn's brute-force NearestNeighbors, on digits pixels and a hard case."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from engine.data import load_dataset
from engine.neighbours import NeighbourIndex, knn, nearest


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Digits pixels through a random linear map to 32 dims: real structure, no exact distance ties.

    Raw pixels are small integers, so many distances tie exactly and tied neighbours come out in an
    order neither library promises. float64: scikit-learn ranks cosine in the input's precision.
    """
    pixels = load_dataset("digits").train.images.reshape(1200, -1).astype(np.float64)
    return pixels @ np.random.default_rng(0).standard_normal((pixels.shape[1], 32))


def _sklearn(base, k, metric, queries=None):
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(base)
    return nn.kneighbors(queries)


def _distinct_rows(x: np.ndarray) -> np.ndarray:
    # Equal rows (equal images) tie exactly, and the two libraries may order ties differently.
    _, first = np.unique(x, axis=0, return_index=True)
    return x[np.sort(first)]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_all_points_knn_equals_sklearn(digits, metric):
    x = _distinct_rows(digits)
    d, i = knn(x, x, 10, metric=metric, exclude_self=True)
    sd, si = _sklearn(x, 10, metric)
    np.testing.assert_array_equal(i, si)
    np.testing.assert_allclose(d, sd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_queries_against_base_equal_sklearn(digits, metric):
    base, queries = _distinct_rows(digits[:900]), digits[900:]
    d, i = knn(queries, base, 7, metric=metric, chunk_size=64)  # several chunks
    sd, si = _sklearn(base, 7, metric, queries)
    np.testing.assert_array_equal(i, si)
    np.testing.assert_allclose(d, sd, rtol=1e-5, atol=1e-6)


def test_large_offset_keeps_exact_order():
    # Embeddings sharing a large offset (a fresh network's) make float32's |q|²-2q·b+|b|² lose the
    # digits that order the neighbours; the float64 re-measure restores scikit-learn's order.
    rng = np.random.default_rng(0)
    x = (1000 + rng.standard_normal((500, 16)) * 0.01).astype(np.float32)
    _, i = knn(x, x, 5, metric="euclidean", exclude_self=True)
    _, si = _sklearn(x.astype(np.float64), 5, "euclidean")
    np.testing.assert_array_equal(i, si)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_index_on_nearly_collapsed_rows_keeps_exact_order(metric):
    # The index ranks by one matrix-vector product: on rows sharing a large offset (nearly parallel
    # for cosine: distances ~1e-8, below float32's 1 - cos) its centring must keep the order.
    rng = np.random.default_rng(1)
    x = (1000 + rng.standard_normal((400, 16)) * 0.01).astype(np.float32)
    _, si = _sklearn(x.astype(np.float64), 6, metric)
    index = NeighbourIndex(x, metric)
    for row in (0, 123, 399):
        _, i = index.query(row, 5)
        np.testing.assert_array_equal(i, si[row][si[row] != row][:5])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_one_query_matches_all_points(digits, metric):
    x = _distinct_rows(digits)
    d_all, i_all = knn(x, x, 10, metric=metric, exclude_self=True)
    index = NeighbourIndex(x, metric)
    for row in (0, 17, len(x) - 1):
        d, i = index.query(row, 10)
        np.testing.assert_array_equal(i, i_all[row])
        np.testing.assert_allclose(d, d_all[row], rtol=1e-6, atol=1e-7)
    d, i = nearest(x[17] + 0.5, x, 3, metric=metric)  # a vector: nothing excluded
    sd, si = _sklearn(x, 3, metric, (x[17] + 0.5)[None])
    np.testing.assert_array_equal(i, si[0])


def test_bad_inputs_name_the_problem(digits):
    with pytest.raises(ValueError, match="metric 'manhattan'"):
        knn(digits, digits, 3, metric="manhattan")
    with pytest.raises(ValueError, match="k = 5 neighbours asked but only 4"):
        knn(digits[:5], digits[:5], 5, exclude_self=True)
    with pytest.raises(ValueError, match="query index 5000 is out of range"):
        nearest(5000, digits, 3)
    with pytest.raises(ValueError, match="query vector has 3 values"):
        nearest(np.zeros(3), digits, 3)


HEAP_AFTER_KNN = """
import numpy as np
from engine.neighbours import knn
x = np.random.default_rng(0).normal(size=(2500, 1280)).astype(np.float32)
knn(x, x, 506, metric="euclidean", exclude_self=True)
print(sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("Rss:")) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads Linux's /proc")
def test_knn_with_many_neighbours_keeps_its_heap_small():
    """A retrieval's kNN (k about R, 500) in 1280 dimensions re-measures ~32 MB of gathered float64 rows
    per block. Allocating them afresh per block fragmented glibc's heap: 2500 rows grew the process to
    7.7 GB (5000 rows: 12 GB, the 70k embed --from's peak). Reusing one buffer keeps it under 1.5 GB."""
    out = subprocess.run([sys.executable, "-c", HEAP_AFTER_KNN], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 1500, f"resident after the kNN: {out.stdout.strip()} MiB"
