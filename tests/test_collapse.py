"""Collapse indicators on synthetic cases with known answers, and the fresh-convnet trap."""
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
    assert c.collapse_verdict(3.0, 64, 0.5) == "dimensional collapse"
    assert c.collapse_verdict(4.0, 64, 0.5) == "healthy"
    assert c.collapse_verdict(1.2, 2, 0.5) == "dimensional collapse"  # a line in the plane
    assert c.collapse_verdict(1.9, 2, 0.5) == "healthy"


def test_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        c.collapse_indicators(np.zeros(5))
