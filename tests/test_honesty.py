"""Map honesty against scikit-learn's trustworthiness and against brute-force set overlaps."""
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as sklearn_trustworthiness
from sklearn.neighbors import NearestNeighbors

from engine.data import load_dataset
from engine.metrics.honesty import neighbour_drift, neighbour_overlap, trustworthiness


@pytest.fixture(scope="module")
def digits_pca() -> np.ndarray:
    """Digits pixels through PCA to 20 dims, float64 (no distance ties, as scikit-learn ranks)."""
    pixels = load_dataset("digits").train.images.reshape(1200, -1).astype(np.float64) / 16
    return PCA(20, random_state=0).fit_transform(pixels)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_trustworthiness_equals_sklearn(digits_pca, metric):
    rng = np.random.default_rng(0)
    maps = {
        "pca": digits_pca[:, :2],  # a good map
        "noisy": digits_pca[:, :2] + rng.normal(0, 1.0, (len(digits_pca), 2)),  # a poor one
        "random": rng.normal(size=(len(digits_pca), 2)),  # no structure at all
    }
    for (name, low), k in zip(maps.items(), (12, 5, 1)):
        ours = trustworthiness(digits_pca, low, k=k, metric=metric)
        theirs = sklearn_trustworthiness(digits_pca, low, n_neighbors=k, metric=metric)
        assert ours == pytest.approx(theirs, abs=1e-12), (name, k)


def test_trustworthiness_resolves_near_ties_like_float64():
    # Integer pixels plus a 1e-6 jitter: many distances differ only beyond float32's digits, which
    # the float32 pass must hand to the float64 re-measure to rank as scikit-learn does.
    pixels = load_dataset("digits").train.images.reshape(1200, -1)[:600].astype(np.float64)
    high = pixels + np.random.default_rng(3).normal(0, 1e-6, pixels.shape)
    low = PCA(2, random_state=0).fit_transform(pixels)
    for metric in ("euclidean", "cosine"):
        assert trustworthiness(high, low, k=10, metric=metric) == pytest.approx(
            sklearn_trustworthiness(high, low, n_neighbors=10, metric=metric), abs=1e-12)


def test_trustworthiness_of_the_space_itself_is_one(digits_pca):
    assert trustworthiness(digits_pca, digits_pca, k=10) == pytest.approx(1.0)


def _brute_sets(x, k):
    idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(return_distance=False)
    return [set(row) for row in idx]


def test_neighbour_overlap_matches_set_intersection(digits_pca):
    low = digits_pca[:, :2] + np.random.default_rng(1).normal(0, 0.3, (len(digits_pca), 2))
    ours = neighbour_overlap(digits_pca, low, k=8)
    expected = [len(a & b) / 8 for a, b in zip(_brute_sets(digits_pca, 8), _brute_sets(low, 8))]
    np.testing.assert_allclose(ours, expected)
    assert ours.shape == (len(digits_pca),)
    np.testing.assert_allclose(neighbour_overlap(digits_pca, digits_pca, k=8), 1.0)


def test_neighbour_drift_is_jaccard(digits_pca):
    new = digits_pca + np.random.default_rng(2).normal(0, 0.2, digits_pca.shape)
    ours = neighbour_drift(digits_pca, new, k=6)
    expected = [len(a & b) / len(a | b) for a, b in zip(_brute_sets(digits_pca, 6), _brute_sets(new, 6))]
    np.testing.assert_allclose(ours, expected)
    assert 0 < ours.mean() < 1
    np.testing.assert_allclose(neighbour_drift(digits_pca, digits_pca * 3.0, k=6), 1.0)  # scale: same sets


def test_cached_neighbours_follow_the_content(digits_pca):
    # kNN sets are cached by content: an array changed in place must not get its old neighbours.
    x = digits_pca.copy()
    assert neighbour_drift(digits_pca, x, k=5).mean() == 1.0
    x[:] = np.random.default_rng(4).permutation(x)
    expected = [len(a & b) / len(a | b) for a, b in zip(_brute_sets(digits_pca, 5), _brute_sets(x, 5))]
    np.testing.assert_allclose(neighbour_drift(digits_pca, x, k=5), expected)


def test_bad_inputs_name_the_problem(digits_pca):
    low = digits_pca[:, :2]
    with pytest.raises(ValueError, match="k = 600 neighbours for 1200 points: trustworthiness needs k < n / 2"):
        trustworthiness(digits_pca, low, k=600)
    with pytest.raises(ValueError, match="high has 1200 points and low 10"):
        trustworthiness(digits_pca, low[:10])
    bad = digits_pca.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="old contains NaN"):
        neighbour_drift(bad, digits_pca)
    with pytest.raises(ValueError, match="k = 0 neighbours"):
        neighbour_overlap(digits_pca, low, k=0)
    with pytest.raises(ValueError, match="metric 'manhattan'"):
        trustworthiness(digits_pca, low, metric="manhattan")
