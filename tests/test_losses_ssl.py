"""Self-supervised losses: NT-Xent against pytorch-metric-learning, the others against their formulas."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.losses import LOSSES
from engine.losses.ssl import NTXent, VICReg, NegativeCosine, SwAV, Invariance, sinkhorn


def _pair(n=24, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def test_registered():
    for name in ("nt-xent", "vicreg", "negative-cosine", "swav", "invariance"):
        assert name in LOSSES


@pytest.mark.parametrize("temperature", [0.07, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("n", [2, 5, 32])
def test_nt_xent_equals_pytorch_metric_learning(temperature, n):
    from pytorch_metric_learning.losses import NTXentLoss

    z1, z2 = _pair(n, 8, seed=n)
    z1 = z1 + 0.5 * z2  # correlated views, as in training
    ours = NTXent(temperature)(z1, z2)
    labels = torch.cat([torch.arange(n), torch.arange(n)])
    ref = NTXentLoss(temperature=temperature)(torch.cat([z1, z2]), labels)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_nt_xent_gradients_equal_pytorch_metric_learning():
    from pytorch_metric_learning.losses import NTXentLoss

    z1, z2 = _pair(16, 8)
    a = torch.cat([z1, z2]).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    NTXent(0.5)(a[:16], a[16:]).backward()
    NTXentLoss(temperature=0.5)(b, torch.cat([torch.arange(16)] * 2)).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_nt_xent_logits_and_perfect_views():
    z1, _ = _pair(8, 8)
    loss = NTXent(0.5)
    s = loss.logits(z1, z1)
    assert s.shape == (16, 16)
    assert torch.allclose(torch.diagonal(s), torch.full((16,), 2.0), atol=1e-5)  # 1 / tau
    # identical, nearly orthogonal views: the loss approaches log(1 + (2N-2) e^{-1/tau} ...) from below
    eye = torch.eye(8) * 10
    assert loss(eye, eye) < NTXent(0.5)(*_pair(8, 8))


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")])
def test_nt_xent_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match=r"temperature: .* allowed: a number > 0"):
        NTXent(bad)


def test_nt_xent_batch_of_one_has_no_negatives():
    z1, z2 = _pair(1, 8)
    with pytest.raises(ValueError, match=r"batch size: 1 .*allowed: >= 2.*no negatives"):
        NTXent()(z1, z2)


def test_vicreg_terms_match_formula():
    z1, z2 = _pair(64, 8)
    z2 = 0.3 * z2
    parts = VICReg().parts(z1, z2)
    a, b = z1.double().numpy(), z2.double().numpy()
    inv = ((a - b) ** 2).mean()
    var = sum(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4)).mean() for z in (a, b)) / 2
    cov = 0.0
    for z in (a, b):
        c = np.cov(z, rowvar=False)
        cov += (c ** 2).sum() - (np.diag(c) ** 2).sum()
    cov /= 8
    assert np.isclose(parts["invariance"].item(), inv, rtol=1e-5)
    assert np.isclose(parts["variance"].item(), var, rtol=1e-5)
    assert np.isclose(parts["covariance"].item(), cov, rtol=1e-4)
    assert np.isclose(VICReg()(z1, z2).item(), 25 * inv + 25 * var + cov, rtol=1e-5)


def test_vicreg_sees_collapse():
    const = torch.ones(32, 8)
    parts = VICReg().parts(const, const)
    assert parts["invariance"] == 0 and parts["covariance"] == 0
    assert np.isclose(parts["variance"].item(), 1 - 1e-2, atol=1e-6)  # gamma - sqrt(eps): the hinge fires


def test_negative_cosine_formula_and_stop_gradient():
    p, t = _pair(16, 8)
    p.requires_grad_(True)
    t.requires_grad_(True)
    loss = NegativeCosine()(p, t)
    ref = (F.normalize(p, dim=1) - F.normalize(t, dim=1)).pow(2).sum(1).mean()
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    assert p.grad is not None and t.grad is None


def test_sinkhorn_balances_the_batch():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 8, generator=g)
    q = sinkhorn(scores, epsilon=0.5, iterations=50)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((8,), 8.0), atol=1e-2)  # each prototype gets N/K


def test_swav_swapped_prediction_formula():
    s1, s2 = (F.normalize(z, dim=1) for z in _pair(32, 6))
    loss = SwAV(temperature=0.1, epsilon=0.05, sinkhorn_iterations=3)
    q1, q2 = sinkhorn(s1, 0.05, 3), sinkhorn(s2, 0.05, 3)
    ref = -(q2 * F.log_softmax(s1 / 0.1, 1)).sum(1).mean() / 2 - (q1 * F.log_softmax(s2 / 0.1, 1)).sum(1).mean() / 2
    assert torch.allclose(loss(s1, s2), ref, atol=1e-6)
    with pytest.raises(ValueError, match="epsilon"):
        SwAV(epsilon=0)


def test_invariance_is_minimised_by_any_constant():
    z1, z2 = _pair(16, 8)
    assert Invariance()(z1, z1).abs() < 1e-6
    const = torch.ones(16, 8)
    assert Invariance()(const, const).abs() < 1e-6  # the collapsed solution is optimal
    assert torch.allclose(Invariance()(z1, z2), (z1 - z2).pow(2).sum(1).mean())
    # not scale-free: shrinking both outputs lowers it, down to 0 at the zero map
    assert torch.isclose(Invariance()(1e-3 * z1, 1e-3 * z2), 1e-6 * Invariance()(z1, z2))


def test_mismatched_views_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        NTXent()(torch.zeros(4, 3), torch.zeros(5, 3))
