"""Collapse indicators on synthetic cases with known answers, on real encoders at random
initialisation (the fresh-convnet trap) and on the collapse control."""
import numpy as np
import pytest
import torch

from engine.metrics import collapse as c


def test_constant_embeddings_are_complete_collapse():
    z = np.full((300, 64), 3.0, dtype=np.float32)
    out = c.collapse_indicators(z)
    assert out["collapse"] == "complete collapse"
    assert out["effective_rank"] == 0.0 and out["relative_spread"] == 0.0
    assert out["l2_std"] == pytest.approx(0.0, abs=1e-7)
    assert out["mean_cosine"] == pytest.approx(1.0)
    assert out["dead_dims"] == 64
    assert out["uniformity"] == pytest.approx(0.0, abs=1e-6)  # log E exp(0) = 0


def test_rank_two_subspace_is_dimensional_collapse():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(64, 2)))[0].T  # 2 orthonormal directions in R^64
    z = (rng.normal(size=(1000, 2)) @ basis + 5.0).astype(np.float32)  # offset: must not matter
    out = c.collapse_indicators(z)
    assert out["effective_rank"] == pytest.approx(2.0, abs=0.1)
    assert out["collapse"] == "dimensional collapse"
    assert sum(s > 1e-3 * out["singular_values"][0] for s in out["singular_values"]) == 2


def test_isotropic_gaussian_is_healthy():
    rng = np.random.default_rng(0)
    d = 64
    z = rng.normal(size=(4000, d)).astype(np.float32)
    out = c.collapse_indicators(z)
    assert out["collapse"] == "healthy"
    assert out["l2_std"] == pytest.approx(1 / np.sqrt(d), rel=0.02)
    assert out["effective_rank"] > 0.85 * d
    assert abs(out["mean_cosine"]) < 0.01
    assert out["dead_dims"] == 0
    assert out["uniformity"] < -3.5  # near the sphere's -4 for d large


def test_fresh_convnet_is_not_collapsed():
    from engine.data import load_dataset
    from engine.encoders import build_encoder, embed

    ds = load_dataset("digits")
    torch.manual_seed(0)
    enc = build_encoder("convnet", 1, (8, 8), 64)
    z = embed(enc, torch.from_numpy(ds.test.images)).numpy()
    out = c.collapse_indicators(z)
    assert out["l2_std"] < 0.01  # the trap: l2_std alone would say "collapsed"
    assert out["collapse"] == "healthy"
    assert out["effective_rank"] > 10


def test_effective_rank_matches_definition_and_spectrum():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 16)) @ np.diag(np.linspace(0.1, 3, 16))
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    assert np.allclose(c.singular_values(z), s, rtol=1e-6)
    p = s / s.sum()
    assert c.effective_rank(z) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)


def test_alignment_and_uniformity_against_direct_formulas():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(150, 8))
    b = a + 0.3 * rng.normal(size=a.shape)
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    assert c.alignment(a, b) == pytest.approx(((ua - ub) ** 2).sum(1).mean(), rel=1e-5)
    sq = ((ua[:, None] - ua[None]) ** 2).sum(-1)
    iu = np.triu_indices(len(a), 1)
    want = np.log(np.exp(-2 * sq[iu]).mean())
    assert c.uniformity(a, chunk=64) == pytest.approx(want, abs=1e-4)
    from engine.metrics.triplets import distance_matrix

    assert c.uniformity(a, distances=distance_matrix(a)) == pytest.approx(want, abs=1e-4)


def test_mean_cosine_and_dead_dims():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(100, 10))
    z[:, 3] = 7.0  # a dimension that never moves
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    cos = u @ u.T
    assert c.mean_cosine(z) == pytest.approx(cos[~np.eye(100, dtype=bool)].mean(), rel=1e-9)
    assert c.dead_dimensions(z) == 1


def test_verdict_thresholds():
    assert c.collapse_verdict(30.0, 64, 0.0) == "complete collapse"
    assert c.collapse_verdict(30.0, 64, float("nan")) == "complete collapse"
    assert c.collapse_verdict(30.0, 64, 1e-6) == "complete collapse"
    assert c.collapse_verdict(30.0, 64, 2e-6) == "near collapse"
    assert c.collapse_verdict(30.0, 64, 4.9e-4) == "near collapse"
    assert c.collapse_verdict(1.0, 64, 4.9e-4) == "near collapse"  # the worse of the two is named
    assert c.collapse_verdict(30.0, 64, 5e-4) == "healthy"
    assert c.collapse_verdict(30.0, 64, 0.0028) == "healthy"  # the least a healthy network read here
    assert c.collapse_verdict(3.0, 64, 0.5) == "dimensional collapse"
    assert c.collapse_verdict(4.0, 64, 0.5) == "healthy"
    assert c.collapse_verdict(1.2, 2, 0.5) == "dimensional collapse"  # a line in the plane
    assert c.collapse_verdict(1.9, 2, 0.5) == "healthy"


def test_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        c.collapse_indicators(np.zeros(5))


def _offset_plus_noise(noise, n=2000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=d) * 5 + noise * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("noise, verdict", [(1e-1, "healthy"), (1e-2, "healthy"), (1e-3, "near collapse"),
                                            (1e-5, "near collapse"), (1e-9, "complete collapse")])
def test_an_offset_plus_noise_is_graded_by_its_relative_spread(noise, verdict):
    """All images at one point but for noise: 1e-3 of noise on an offset of norm 40 (relative spread
    2e-4) is near collapse, though every centred figure of the noise looks spread out."""
    out = c.collapse_indicators(_offset_plus_noise(noise))
    assert out["collapse"] == verdict, out["relative_spread"]
    if verdict == "near collapse":
        assert out["relative_spread"] < c.NEAR_SPREAD and out["effective_rank"] > 50


@pytest.mark.parametrize("rank, verdict", [(1, "dimensional collapse"), (2, "dimensional collapse"),
                                           (5, "dimensional collapse"), (12, "healthy")])
def test_low_rank_embeddings_with_an_offset_and_a_little_noise(rank, verdict):
    rng = np.random.default_rng(rank)
    basis = np.linalg.qr(rng.normal(size=(128, rank)))[0].T
    z = rng.normal(size=(2000, rank)) @ basis + 3.0 + 1e-4 * rng.normal(size=(2000, 128))
    out = c.collapse_indicators(z.astype(np.float32))
    assert out["collapse"] == verdict
    assert out["effective_rank"] == pytest.approx(rank, rel=0.25)


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_identical_points_give_the_collapsed_figures_whatever_the_point(value):
    """Two completely collapsed runs, one at the zero vector (dead ReLUs) and one at a constant:
    the same figures (the raw cosine read 0.000 for the first and 1.000 for the second)."""
    z = np.full((200, 16), value, dtype=np.float32)
    out = c.collapse_indicators(z, z[:50], z[:50])
    assert out["collapse"] == "complete collapse"
    assert out["mean_cosine"] == 1.0 and out["uniformity"] == 0.0 and out["alignment"] == 0.0
    assert out["effective_rank"] == 0.0 and out["dead_dims"] == 16


def test_figures_are_centred_so_an_offset_changes_none_of_them():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(500, 32))
    v1, v2 = z[:100] + 0.1 * rng.normal(size=(100, 32)), z[:100] + 0.1 * rng.normal(size=(100, 32))
    plain = c.collapse_indicators(z, v1, v2)
    offset = 1e3 * rng.normal(size=32)  # 180x the spread: raw cosines would all read 1.000
    shifted = c.collapse_indicators(z + offset, v1 + offset, v2 + offset)
    for key in ("alignment", "uniformity", "mean_cosine", "effective_rank"):
        assert shifted[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
    assert shifted["collapse"] == plain["collapse"] == "healthy"
    assert abs(plain["mean_cosine"]) < 0.01 and plain["uniformity"] < -3 and plain["alignment"] < 0.1


@pytest.fixture(scope="module")
def slices():
    from engine.data import load_dataset

    return {"digits": load_dataset("digits").test.images[:300],
            "fashion-mnist": load_dataset("fashion-mnist", test_size=300, seed=0).test.images}


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
@pytest.mark.parametrize("encoder, params", [("convnet", {}), ("convnet", {"neck": "none"}), ("resnet18", {})])
def test_real_encoders_at_random_initialisation_are_healthy(slices, dataset, encoder, params):
    """Eval mode, batch norm at its default statistics: the dense neck's outputs share a large offset
    (relative spread 0.004-0.013 measured on 2000 images, l2_std 0.004 of SimSiam's ideal), which
    must not read as near collapse; nor must the figures beside the verdict say 'all together'
    (the raw cosines read 1.000)."""
    from engine.encoders import build_encoder, embed

    images = slices[dataset]
    torch.manual_seed(1)
    enc = build_encoder(encoder, 1, images.shape[2:], 128, **params)
    out = c.collapse_indicators(embed(enc, torch.from_numpy(images)).numpy())
    assert out["collapse"] == "healthy", out["relative_spread"]
    assert out["relative_spread"] > 5 * c.NEAR_SPREAD
    assert abs(out["mean_cosine"]) < 0.2 and out["uniformity"] < -1.0
