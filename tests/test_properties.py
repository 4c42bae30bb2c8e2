"""The five properties on cases with known answers, on real images where images are needed."""
import numpy as np
import pytest
import torch
from torch import nn

from engine.metrics import properties as pr


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class MeanColour(nn.Module):
    """Mean of each channel: blind to where the shape is, sensitive to its colour."""

    def forward(self, x):
        return x.mean((2, 3))


class RowSums(nn.Module):
    """Sum of each row of pixels: unchanged by a horizontal flip."""

    def forward(self, x):
        return x.sum(3).flatten(1)


class Flip(nn.Module):
    def forward(self, x, generator=None):
        flip = torch.rand(len(x), generator=generator) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


@pytest.fixture(scope="module")
def digits():
    from engine.data import load_dataset

    return load_dataset("digits").test


def test_identity_encoder_has_smoothness_one(digits):
    assert pr.smoothness(Flatten(), digits.images, n=128) == pytest.approx(1.0, rel=1e-5)


def test_rough_encoder_is_less_smooth_than_a_blur(digits):
    rough = nn.Sequential(Flatten(), nn.Linear(64, 64))
    with torch.no_grad():
        rough[1].weight.copy_(torch.sign(torch.randn(64, 64)) * 50)
    x = torch.from_numpy(digits.images).float() / 255

    class Steep(nn.Module):  # a staircase: flat almost everywhere, jumps at steps
        def forward(self, x):
            return torch.round(x.flatten(1) * 3)

    class Blur(nn.Module):
        def forward(self, x):
            return nn.functional.avg_pool2d(x, 4).flatten(1)

    assert pr.smoothness(Blur(), digits.images, n=128) < 1.0 < pr.smoothness(Steep(), digits.images, n=128)
    assert np.isfinite(pr.smoothness(rough, x, n=64))


def test_invariance_is_one_for_an_invariant_encoder(digits):
    e1, e2 = pr.view_embeddings(RowSums(), digits.images, augment=Flip(), n=200)
    assert pr.invariance(e1, e2) == pytest.approx(1.0, abs=1e-6)
    f1, f2 = pr.view_embeddings(Flatten(), digits.images, augment=Flip(), n=200)
    assert pr.invariance(f1, f2) < 0.9


def test_view_embeddings_are_seeded(digits):
    from engine.augment import dataset_views

    views = dataset_views(1, (8, 8), "digits")
    e1, e2 = pr.view_embeddings(Flatten(), digits.images, views, n=50, seed=3)
    assert e1.shape == e2.shape == (50, 64) and not torch.equal(e1, e2)
    again = pr.view_embeddings(Flatten(), digits.images, views, n=50, seed=3)
    assert torch.equal(again[0], e1)  # same seed, same views


@pytest.mark.parametrize("dataset, flips", [("digits", False), ("mnist", False), ("fashion-mnist", True),
                                            ("shapes", True)])
def test_a_method_without_views_is_measured_under_the_dataset_s_own(dataset, flips):
    """Supervised training has no views: invariance is measured under those a two-view method would
    train with on that dataset (a mirrored digit is no digit), not SimCLR's generic ones."""
    from engine.augment import AUGMENT_PARAMS
    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    def build(name, **params):
        cls = METHODS.get(name)
        return cls(encoder, info, **resolve(cls.params, params))

    info = DataInfo(10, (10,) * 10, 1, (8, 8), True, dataset)
    encoder = build_encoder("convnet", 1, (8, 8), 16, widths="8,16")
    views = build("supervised").evaluation_views()
    assert views.flip is flips
    assert views.crop_scale[0] == next(p.default for p in AUGMENT_PARAMS if p.name == "crop_min")
    simclr = build("simclr", flip=True, crop_min=0.5)
    assert simclr.evaluation_views() is simclr.augment  # a two-view method: its own views


def test_factor_invariance_on_shapes():
    from engine.data.shapes import render, sample_factors

    factors = sample_factors(300, np.random.default_rng(0))
    enc = MeanColour()
    emb = enc(torch.from_numpy(render(factors)).float() / 255).numpy()
    inv = pr.factor_invariance(enc, emb, factors, n=150)
    assert set(inv) == {"shape", "scale", "rotation", "x", "y", "hue"}
    # mean colour ignores position (up to pixel rounding) and changes with hue and scale
    assert inv["x"] > 0.8 and inv["y"] > 0.8
    assert inv["hue"] < 0.3 and inv["scale"] < inv["x"]


def test_sparsity_measures():
    d = 16
    onehot = np.eye(d)[np.arange(100) % d]
    assert pr.hoyer_sparsity(onehot, centre=False) == pytest.approx(1.0)
    signs = np.sign(np.random.default_rng(0).normal(size=(100, d)))
    assert pr.hoyer_sparsity(signs, centre=False) == pytest.approx(0.0, abs=1e-12)
    z = np.random.default_rng(1).normal(size=(50, d))
    want = np.mean([(np.sqrt(d) - np.abs(r).sum() / np.linalg.norm(r)) / (np.sqrt(d) - 1) for r in z - z.mean(0)])
    assert pr.hoyer_sparsity(z) == pytest.approx(want)
    iso = np.random.default_rng(2).normal(size=(20000, d))
    assert pr.participation_ratio(iso) == pytest.approx(d, rel=0.02)
    line = np.outer(np.arange(30.0), np.ones(d))
    assert pr.participation_ratio(line) == pytest.approx(1.0)
    assert pr.participation_ratio(np.ones((10, d))) == 0.0


def test_knn_accuracy_loo_against_a_loop():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 120)
    z = rng.normal(size=(120, 5)) + np.eye(5)[y]
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = 1 - u @ u.T
    right = 0
    for i in range(120):
        order = [j for j in np.argsort(d[i], kind="stable") if j != i][:10]
        votes = np.zeros(3)
        for j in order:
            votes[y[j]] += 2 - d[i, j]
        right += votes.argmax() == y[i]
    assert pr.knn_accuracy_loo(z, y, k=10) == pytest.approx(right / 120)
    from engine.metrics.triplets import distance_matrix

    d = distance_matrix(z)
    assert pr.knn_accuracy_loo(z, y, k=10, distances=d) == pytest.approx(right / 120)
    assert float(d.diagonal().abs().max()) == 0.0  # the shared matrix is left as it was
    assert pr.knn_accuracy_loo(z, np.zeros(120, dtype=int)) is None


def _shapes_factor_codes(n=3000, seed=0):
    from engine.data.shapes import sample_factors

    f = sample_factors(n, np.random.default_rng(seed))
    cols = [np.eye(3)[f["shape"]] @ np.array([[-1.0], [0.0], [1.0]]), f["scale"][:, None],
            f["rotation"][:, None], f["x"][:, None], f["y"][:, None], np.cos(2 * np.pi * f["hue"])[:, None]]
    z = np.hstack(cols)
    return f, (z - z.mean(0)) / z.std(0)


def test_disentanglement_true_factors_beat_a_rotation():
    f, z = _shapes_factor_codes()
    rng = np.random.default_rng(5)
    z = np.hstack([z, 0.1 * rng.normal(size=(len(z), 4))])  # a few nuisance dimensions
    q = np.linalg.qr(rng.normal(size=(z.shape[1], z.shape[1])))[0]
    true, rotated = pr.disentanglement(z, f), pr.disentanglement(z @ q, f)
    assert true["disentanglement"] > 0.8 > rotated["disentanglement"] + 0.2
    assert true["mig"] > 0.3 > rotated["mig"] + 0.1
    # a rotation keeps linear predictability: information is there, only mixed
    for k in ("scale", "x", "y"):
        assert true["predictability"][k] > 0.95
        assert rotated["predictability"][k] == pytest.approx(true["predictability"][k], abs=0.02)
    # one ordered code for three classes: a linear read-out cannot isolate the middle one
    assert 0.5 < true["predictability"]["shape"] < 0.9


def test_disentanglement_bad_input():
    with pytest.raises(ValueError, match="at least 10"):
        pr.disentanglement(np.zeros((5, 3)), {"x": np.arange(5.0)})
    with pytest.raises(ValueError, match="one value per embedding"):
        pr.disentanglement(np.zeros((20, 3)), {"x": np.arange(5.0)})
