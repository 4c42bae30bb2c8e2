"""Projections: finite maps, the aligned live mode, our torch UMAP against umap-learn, bad inputs.

umap-learn is the reference for layout quality, but its first call compiles with numba (~25 s here):
it runs once, in the module-scoped ``umap_learn`` fixture, shared by the two tests that need it.
"""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from engine.data import load_dataset
from engine.metrics.honesty import trustworthiness
from engine.projection import (PROJECTIONS, LiveProjection, UMAPProjector, approximate_knn,
                               exact_knn_with_self, find_ab_params, fuzzy_simplicial_set,
                               optimize_layout, procrustes, project)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Digits pixels through PCA to 30 dims as stand-in embeddings (float, no distance ties)."""
    ds = load_dataset("digits")
    pixels = ds.train.images.reshape(len(ds.train), -1).astype(np.float32) / 16
    return PCA(30, random_state=0).fit_transform(pixels).astype(np.float32), ds.train.labels


@pytest.fixture(scope="module")
def umap_learn(digits):
    """umap-learn's default UMAP of the digits embeddings, run once (numba compiles here)."""
    umap = pytest.importorskip("umap")
    x, _ = digits
    return umap.UMAP(random_state=0, n_jobs=1).fit(x)  # n_jobs=1: what random_state implies anyway


def _median_displacement(a: np.ndarray, b: np.ndarray) -> float:
    """Median distance a point moved, as a fraction of the layout's extent (largest side)."""
    return float(np.median(np.linalg.norm(a - b, axis=1)) / np.ptp(a, axis=0).max())


@pytest.mark.parametrize("method", PROJECTIONS.names())
def test_every_projection_draws_a_finite_map(digits, method):
    x = digits[0][:300]  # t-SNE is slow: a small set
    y = project(method, x, seed=0)
    assert y.shape == (300, 2) and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.ptp(y, axis=0).min() > 0
    assert trustworthiness(x, y, k=10) > (0.8 if method == "pca" else 0.95)


def test_registry_lists_the_three_projections():
    assert set(PROJECTIONS.names()) >= {"pca", "umap", "tsne"}
    for _, cls in PROJECTIONS.items():  # the window builds its forms from these
        assert cls.summary and {"n_neighbors", "metric"} <= {p.name for p in cls.params}
    with pytest.raises(ValueError, match="unknown projection 'mds'"):
        project("mds", np.random.default_rng(0).normal(size=(10, 3)))


def test_ab_parameters_are_umap_learns():
    # umap-learn 0.5's find_ab_params(spread=1.0, min_dist=0.1), printed once here.
    a, b = find_ab_params(1.0, 0.1)
    assert a == pytest.approx(1.5769434602697652, rel=1e-5)
    assert b == pytest.approx(0.8950608778515733, rel=1e-5)


def test_fuzzy_graph_equals_umap_learns(digits, umap_learn):
    # The same kNN into umap-learn's fuzzy_simplicial_set (compiled by the fixture's fit) and ours.
    from umap.umap_ import fuzzy_simplicial_set as umap_fuzzy

    x, _ = digits
    dists, idx = exact_knn_with_self(torch.as_tensor(x), 15, "euclidean")
    theirs, _, _ = umap_fuzzy(x, 15, np.random.RandomState(0), "euclidean",
                              knn_indices=idx.numpy(), knn_dists=dists.numpy().astype(np.float32))
    head, tail, w = fuzzy_simplicial_set(idx, dists)
    ours = np.zeros(theirs.shape, dtype=np.float32)
    ours[head.numpy(), tail.numpy()] = w.numpy()
    np.testing.assert_allclose(ours, theirs.toarray(), atol=1e-6)
    # and umap-learn's own graph (its own exact kNN in float32) differs only where float32 rounding
    # moved a near-tie or the σ search stopped elsewhere within its tolerance
    differs = np.abs(ours - umap_learn.graph_.toarray()) > 1e-3
    assert differs.sum() <= 0.001 * len(w)


def test_umap_layout_is_as_trustworthy_as_umap_learns(digits, umap_learn):
    x, _ = digits
    reference = trustworthiness(x, umap_learn.embedding_, k=10)  # 0.987 here
    ours = trustworthiness(x, project("umap", x, seed=0), k=10)  # 0.986 here
    assert ours > reference - 0.01


def test_layout_steps_are_the_same_on_complex_points_and_on_rows(digits):
    # The CPU runs the SGD on complex numbers x + iy, other devices on (n, 2) rows: same steps.
    x, _ = digits
    dists, idx = exact_knn_with_self(torch.as_tensor(x), 15, "euclidean")
    head, tail, w = fuzzy_simplicial_set(idx, dists)
    y0 = torch.as_tensor(project("pca", x)) / 10
    a, b = find_ab_params(1.0, 0.1)
    # a few epochs: the SGD is chaotic, so over many epochs rounding differences grow (30: ~2 units)
    runs = [optimize_layout(y0, head, tail, w, 4, 1.0, a, b, 5, torch.Generator().manual_seed(0),
                            complex_points=flag) for flag in (True, False)]
    torch.testing.assert_close(runs[0], runs[1], atol=1e-3, rtol=1e-4)
    assert (runs[0] - y0).abs().max() > 0.1  # it did move


def test_approximate_knn_finds_most_exact_neighbours(digits):
    x = torch.as_tensor(digits[0])
    _, exact = exact_knn_with_self(x, 15, "euclidean")
    dists, approx, centroids = approximate_knn(x, 15, generator=torch.Generator().manual_seed(0))
    assert (approx[:, 0] == torch.arange(len(x))).all() and (dists[:, 0] == 0).all()
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(exact.numpy(), approx.numpy())])
    assert recall > 0.9
    assert len(centroids) == round(len(x) ** 0.5)
    # warm start from the previous centroids: same quality
    _, again, _ = approximate_knn(x, 15, centroids)
    assert np.mean([len(set(a) & set(b)) / 15 for a, b in zip(exact.numpy(), again.numpy())]) > 0.9


def test_umap_with_approximate_knn_draws_a_good_map(digits):
    x, _ = digits
    projector = UMAPProjector(seed=0, exact_knn_max=0, n_epochs=200)  # force the k-means-cell search
    assert trustworthiness(x, projector.fit(x), k=10) > 0.97


@pytest.mark.parametrize("exact_knn_max", [2048, 0], ids=["exact", "approximate"])
def test_umap_with_cosine_keeps_cosine_neighbourhoods(digits, exact_knn_max):
    x, _ = digits
    y = project("umap", x, metric="cosine", exact_knn_max=exact_knn_max, n_epochs=200)
    assert np.isfinite(y).all()
    assert trustworthiness(x, y, k=10, metric="cosine") > 0.98  # 0.985 here; PCA: 0.84


@pytest.mark.parametrize("method, params", [("umap", {}), ("umap", {"exact_knn_max": 0}), ("pca", {})],
                         ids=["umap", "umap-approximate-knn", "pca"])
def test_live_map_keeps_still_points_still(digits, method, params):
    x, _ = digits
    live = LiveProjection(method, seed=0, **params)
    first = live.update(x)
    again = live.update(x)
    assert _median_displacement(first, again) < 0.01
    assert trustworthiness(x, again, k=10) > trustworthiness(x, first, k=10) - 0.005
    third = live.update(x)  # refreshes settle rather than wander off
    assert _median_displacement(first, third) < 0.015


def test_live_tsne_keeps_still_points_still_and_follows_moved_ones(digits):
    # 1000 points: before the refresh ran at a tenth of the first map's rate, a still layout moved
    # 2.2 % of its extent per refresh here (3.8 % after two), and up to 1.6 % on 300 points elsewhere
    x, labels = digits[0][:1000], digits[1][:1000]
    live = LiveProjection("tsne", seed=0)
    first = live.update(x)
    again = live.update(x)
    assert _median_displacement(first, again) < 0.01
    assert trustworthiness(x, again, k=10) > trustworthiness(x, first, k=10) - 0.005
    third = live.update(x)
    assert _median_displacement(first, third) < 0.015
    # 40 points of class 0 take the embeddings of 40 points of class 1: they travel to class 1's
    # island, the rest stay put
    zeros, ones = np.nonzero(labels == 0)[0][:40], np.nonzero(labels == 1)[0][:40]
    moved = x.copy()
    moved[zeros] = x[ones] + np.random.default_rng(0).normal(0, 0.01, (40, x.shape[1]))
    fourth = live.update(moved)
    still = np.setdiff1d(np.arange(len(x)), zeros)
    assert _median_displacement(third[still], fourth[still]) < 0.02
    travelled = np.linalg.norm(fourth[zeros] - third[zeros], axis=1)
    to_twin = np.linalg.norm(fourth[zeros] - fourth[ones], axis=1)
    assert np.median(to_twin) < np.median(travelled) / 3


def test_live_umap_moves_the_points_whose_embedding_changed(digits):
    x, labels = digits
    live = LiveProjection("umap", seed=0)
    first = live.update(x)
    # 40 points of class 0 take the embeddings of 40 points of class 1: they must travel to class 1's
    # island, the rest must stay put.
    zeros, ones = np.nonzero(labels == 0)[0][:40], np.nonzero(labels == 1)[0][:40]
    moved = x.copy()
    moved[zeros] = x[ones] + np.random.default_rng(0).normal(0, 0.01, (40, x.shape[1]))
    second = live.update(moved)
    still = np.setdiff1d(np.arange(len(x)), zeros)
    assert _median_displacement(first[still], second[still]) < 0.02
    travelled = np.linalg.norm(second[zeros] - first[zeros], axis=1)
    to_twin = np.linalg.norm(second[zeros] - second[ones], axis=1)
    assert np.median(to_twin) < np.median(travelled) / 3


def test_live_pca_undoes_rotations_and_reflections(digits):
    x, _ = digits
    live = LiveProjection("pca")
    first = live.update(x)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(x.shape[1], x.shape[1])))
    second = live.update(x @ rotation.astype(np.float32) * np.float32(-1))
    np.testing.assert_allclose(second, first, atol=1e-3 * np.ptp(first))


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 2)).astype(np.float32)
    angle = 0.7
    r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(procrustes(a @ r + 3.0, a), a, atol=1e-5)


def test_live_projection_resets(digits):
    x = digits[0][:200]
    live = LiveProjection("umap", n_neighbors=10, seed=0, n_epochs=50)
    first = live.update(x)
    live.reset()
    np.testing.assert_allclose(live.update(x), first)  # same seed, same fresh map
    third = live.update(x[:150])  # other points: a fresh map and a note, not an error
    assert third.shape == (150, 2) and "drawn afresh" in live.notes[0]


def test_bad_inputs_give_clear_messages(digits):
    x = digits[0][:50].copy()
    with pytest.raises(ValueError, match="at least 2 points; got 1"):
        project("umap", x[:1])
    with pytest.raises(ValueError, match="2-D array"):
        project("pca", x[0])
    bad = x.copy()
    bad[7, 3] = np.nan
    bad[9, 0] = np.inf
    with pytest.raises(ValueError, match="1 NaN and 1 infinite values in 2 of 50 points \\(first at row 7\\)"):
        LiveProjection("umap").update(bad)
    with pytest.raises(ValueError, match="--n-neighbors: 1 is out of range"):
        LiveProjection("umap", n_neighbors=1)
    with pytest.raises(ValueError, match="--min-dist: 0.0 is out of range"):
        project("umap", x, min_dist=0.0)
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) n_epochs"):
        LiveProjection("pca", n_epochs=10)


@pytest.mark.parametrize("method", PROJECTIONS.names())
def test_constant_embeddings_give_one_point(method):
    x = np.full((40, 8), 3.0, dtype=np.float32)
    y = project(method, x)
    assert y.shape == (40, 2) and not y.any()
    live = LiveProjection(method)
    live.update(x)
    assert "complete collapse" in live.notes[0]
    assert np.isfinite(live.update(np.random.default_rng(0).normal(size=(40, 8)))).all()  # recovers


def test_fewer_points_than_neighbours_reduces_them():
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    live = LiveProjection("umap", n_neighbors=15)
    y = live.update(x)
    assert y.shape == (6, 2) and np.isfinite(y).all()
    assert "n_neighbors reduced from 15 to 6" in live.notes[0]
    assert np.isfinite(project("umap", x[:2])).all()  # two points: one edge
    tsne = LiveProjection("tsne")
    assert np.isfinite(tsne.update(x)).all() and "perplexity reduced" in tsne.notes[0]
