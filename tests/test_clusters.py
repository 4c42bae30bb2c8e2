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


def _agreement_count(a, b):
    return int(((a == b) & (a >= 0)).sum())


def test_match_ids_keeps_the_most_points_under_their_id_as_brute_force():
    import itertools

    rng = np.random.default_rng(4)
    previous = rng.integers(0, 4, 300)
    current = np.where(rng.random(300) < 0.8, (previous + 1) % 4, rng.integers(0, 4, 300))  # renamed, noisy
    matched = cl.match_ids(previous, current)
    best = max(_agreement_count(previous, np.asarray(p)[current]) for p in itertools.permutations(range(4)))
    assert _agreement_count(previous, matched) == best > 0.75 * 300
    # the grouping itself is unchanged: scikit-learn's NMI and ARI see the same partition
    assert normalized_mutual_info_score(current, matched) == pytest.approx(1.0)
    assert adjusted_rand_score(current, matched) == pytest.approx(1.0)


def test_kmeans_ids_follow_the_previous_snapshot():
    z, y = _blobs(n=800, k=6, d=16, seed=5)
    first = cl.kmeans(z, 6, seed=0)
    moved = z + np.random.default_rng(0).normal(scale=0.05, size=z.shape)
    raw = cl.kmeans(moved, 6, seed=3)  # another start: the same clusters under other numbers
    assert (raw == first).mean() < 0.9
    assert (cl.match_ids(first, raw) == first).mean() > 0.99


def test_new_clusters_get_the_smallest_free_id_and_noise_stays():
    previous = np.array([0, 0, 0, 2, 2, 2, -1, -1, 5, 5])
    current = np.array([7, 7, 7, 3, 3, 3, 9, 9, -1, 4])
    # 7 -> 0 and 3 -> 2 by overlap; 4 follows 5 (one point shared); 9 covers only noise: a free id, 1
    assert cl.match_ids(previous, current).tolist() == [0, 0, 0, 2, 2, 2, 1, 1, -1, 5]
    # a cluster that shares no point with any (k-means after a jump) takes the id that fell free
    assert cl.match_ids([0, 0, 1, 1, 2, 2], [5, 5, 6, 6, 7, 8]).tolist() == [0, 0, 1, 1, 2, 3]
    assert cl.match_ids([0, 0, 1, 1, -1, -1], [5, 5, 6, 6, 7, 7]).tolist() == [0, 0, 1, 1, 2, 2]
    assert cl.match_ids([0, 0, 1, 1, 2, 2], [4, 4, 5, 5, 5, 5]).tolist() == [0, 0, 1, 1, 1, 1]
    assert cl.match_ids(previous, np.full(10, -1)).tolist() == [-1] * 10
    with pytest.raises(ValueError, match="same points"):
        cl.match_ids(previous, current[:5])


def test_purity_against_scikit_learns_contingency_matrix():
    from sklearn.metrics.cluster import contingency_matrix

    rng = np.random.default_rng(6)
    labels, found = rng.integers(0, 5, 500), rng.integers(-1, 7, 500)
    labels[:20] = -1
    keep = (labels >= 0) & (found >= 0)
    table = contingency_matrix(labels[keep], found[keep])
    assert cl.purity(labels, found) == pytest.approx(table.max(axis=0).sum() / keep.sum())
    assert cl.purity([0, 0, 1, 1], [3, 3, 4, 4]) == 1.0
    assert cl.purity([0, 1, 0, 1], [0, 0, 0, 0]) == 0.5
    assert cl.purity([-1, -1], [0, 1]) is None
    assert cl.cluster_makeup([0, 0, 1, -1, 2], [4, 4, 4, 1, -1]) == {1: (1, -1, 0), 4: (3, 0, 2)}


def test_follow_renames_saved_ids_and_computes_missing_ones():
    z, _ = _blobs(n=300, k=3, seed=8)
    first = cl.kmeans(z, 3, seed=0)
    saved = (first + 1) % 3  # a run's second snapshot, numbered another way
    track = cl.follow([(z, None), (z, saved), (z + 0.01, None)], "kmeans", k=3)
    assert all((ids == first).all() for ids in track)
    assert cl.default_k([0, 1, 1, -1]) == 2 and cl.default_k([-1, -1], 7) == 7 and cl.default_k([3, 3]) == 10
    with pytest.raises(ValueError, match="allowed: kmeans, hdbscan"):
        cl.cluster_ids(z, "dbscan")


def test_cluster_scores_report_purity():
    z, y = _blobs(n=400, k=4, seed=7)
    metrics, ids, _ = cl.cluster_scores(z, y)
    assert metrics["purity"] == pytest.approx(cl.purity(y, ids["kmeans"])) and metrics["purity"] > 0.99
    assert metrics["hdbscan_purity"] == pytest.approx(cl.purity(y, ids["hdbscan"]))


def test_hulls_outline_each_cluster_and_leave_strays_out():
    from scipy.spatial import Delaunay

    grid = np.array([(x, y) for x in range(5) for y in range(5)], dtype=float)
    xy = np.vstack([grid, grid + 20, [[100.0, 100.0]], [[0, 50], [1, 50], [2, 50]]])
    ids = np.array([0] * 25 + [1] * 25 + [1] + [2] * 3)
    shapes = {c: xy[rows] for c, rows in cl.hulls(xy, ids, coverage=1.0).items()}
    assert sorted(map(tuple, shapes[0])) == [(0, 0), (0, 4), (4, 0), (4, 4)]
    assert 2 not in shapes  # three points on a line: no area
    assert Delaunay(shapes[1]).find_simplex([[100.0, 100.0]])[0] >= 0  # the stray is inside at full coverage
    core = xy[cl.hulls(xy, ids, coverage=0.9)[1]]
    assert Delaunay(core).find_simplex([[100.0, 100.0]])[0] < 0  # ... and left out of the core
    assert (Delaunay(core).find_simplex(grid[[6, 12, 18]] + 20) >= 0).all()
    with pytest.raises(ValueError, match="coverage"):
        cl.hulls(xy, ids, coverage=0)
