"""Clusters: k-means and HDBSCAN ids, NMI/ARI, and our torch silhouette against scikit-learn's."""
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from engine.metrics import clusters as cl


def _blobs(n=600, k=4, d=16, seed=0):
    return make_blobs(n_samples=n, centers=k, n_features=d, cluster_std=0.5, center_box=(-20, 20),
                      random_state=seed)


def test_kmeans_on_separable_blobs_has_nmi_one():
    z, y = _blobs()
    ids = cl.kmeans(z, 4, normalize=False)
    nmi, ari = cl.agreement(y, ids)
    assert nmi == pytest.approx(1.0) and ari == pytest.approx(1.0)


@pytest.mark.parametrize("normalize", [False, True])
def test_silhouette_matches_sklearn(normalize):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 700)
    z = rng.normal(size=(700, 12)) + 1.5 * np.eye(12)[y] + 3.0
    y[:4] = -1  # left out, as in the unlabelled rows
    y[4] = 7  # a class of one point: silhouette 0 for it, as in scikit-learn
    keep = y >= 0
    ref_z = z / np.linalg.norm(z, axis=1, keepdims=True) if normalize else z
    want = silhouette_score(ref_z[keep], y[keep])
    assert cl.silhouette(z, y, normalize=normalize, chunk=100) == pytest.approx(want, abs=1e-6)  # float32 input


def test_silhouette_subsample_and_undefined_cases():
    z, y = _blobs(n=900)
    full = cl.silhouette(z, y, normalize=False)
    part = cl.silhouette(z, y, normalize=False, max_points=300)
    assert part == pytest.approx(full, abs=0.03)
    assert cl.silhouette(z, np.zeros(900, dtype=int)) is None
    assert cl.silhouette(z[:3], np.arange(3)) is None  # as many groups as points


def test_cluster_scores_with_hdbscan_on_blobs():
    z, y = _blobs(n=800, k=4, d=16, seed=2)
    metrics, ids, notes = cl.cluster_scores(z, y, seed=0)
    assert metrics["nmi"] == pytest.approx(normalized_mutual_info_score(y, ids["kmeans"]))
    assert metrics["ari"] == pytest.approx(adjusted_rand_score(y, ids["kmeans"]))
    assert metrics["nmi"] > 0.99
    assert metrics["hdbscan_clusters"] == 4 and metrics["hdbscan_nmi"] > 0.9
    assert len(ids["hdbscan"]) == 800 and notes == []


def test_constant_embeddings_do_not_crash():
    z = np.ones((50, 8))
    metrics, ids, notes = cl.cluster_scores(z, np.arange(50) % 3)
    assert metrics["silhouette"] == 0.0  # all distances 0: every s_i = 0, as scikit-learn
    assert (ids["hdbscan"] == ids["hdbscan"][0]).all()


def test_single_class_notes_and_too_few_points():
    z, _ = _blobs(n=60)
    metrics, _, notes = cl.cluster_scores(z, np.zeros(60, dtype=int), with_hdbscan=False)
    assert metrics["silhouette"] is None and any("silhouette undefined" in n for n in notes)
    with pytest.raises(ValueError, match="at least 10 points"):
        cl.kmeans(z[:5], 10)
    with pytest.raises(ValueError, match="k:"):
        cl.kmeans(z, 0)


def test_precomputed_distances_give_the_same_silhouette():
    from engine.metrics.triplets import distance_matrix

    z, y = _blobs(n=500, seed=3)
    y[:10] = -1
    d = distance_matrix(z)
    assert cl.silhouette(z, y, distances=d) == pytest.approx(cl.silhouette(z, y), abs=1e-6)
    assert cl.silhouette(z, y, distances=d, max_points=200) == pytest.approx(
        cl.silhouette(z, y, max_points=200), abs=1e-6)
