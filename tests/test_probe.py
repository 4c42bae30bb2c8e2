"""The torch linear probe reaches scikit-learn's optimum; the kNN accuracy is scikit-learn's classifier's.

The reference is ``LogisticRegression(C=1)`` on ``StandardScaler`` features run to convergence (a tiny
tol and a high max_iter), on real data: digits pixels, a Fashion-MNIST slice, and pretrained features
wider than 1024 dimensions (fewer rows than dimensions, and more)."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from engine.data import load_dataset
from engine.metrics.probe import TOLERANCE, fit_probe, knn_accuracy, linear_probe, objective


def _flat(split, pool: int = 1) -> np.ndarray:
    x = torch.from_numpy(split.images).float().div(255)
    if pool > 1:
        x = torch.nn.functional.avg_pool2d(x, pool)
    return x.flatten(1).numpy()


@pytest.fixture(scope="module")
def digits():
    d = load_dataset("digits")
    return _flat(d.train), d.train.labels, _flat(d.test), d.test.labels


@pytest.fixture(scope="module")
def fashion():
    d = load_dataset("fashion-mnist", train_size=1000, test_size=1000, seed=0)
    return _flat(d.train, pool=2), d.train.labels, _flat(d.test, pool=2), d.test.labels


@pytest.fixture(scope="module")
def pretrained():
    """EfficientNet-Lite0's 1280-d ImageNet features of Fashion-MNIST images (at 32 px: quick)."""
    from engine.encoders import build_encoder, embed

    d = load_dataset("fashion-mnist", train_size=600, test_size=400, seed=1)
    encoder = build_encoder("efficientnet-lite0", d.channels, d.image_size, 128, input_size=32)
    train, test = (embed(encoder, torch.from_numpy(s.images), batch_size=256).numpy() for s in (d.train, d.test))
    assert train.shape[1] == 1280
    return train, d.train.labels, test, d.test.labels


def sklearn_at_optimum(xtr, ytr, xte, yte):
    """(accuracy, objective, test logits) of scikit-learn's LogisticRegression(C=1) fitted to convergence."""
    scaler = StandardScaler().fit(xtr.astype(np.float64))
    a, b = scaler.transform(xtr.astype(np.float64)), scaler.transform(xte.astype(np.float64))
    with threadpool_limits(1):  # its L-BFGS-B's small BLAS calls: threads cost 10x more CPU than they save
        model = LogisticRegression(C=1.0, tol=1e-9, max_iter=20000).fit(a, ytr)
    assert model.n_iter_[0] < 20000  # converged
    obj = objective(torch.from_numpy(a), torch.as_tensor(ytr), torch.from_numpy(model.coef_.T),
                    torch.from_numpy(model.intercept_), C=1.0)
    return model.score(b, yte), obj, model.decision_function(b)


def check_against_sklearn(data, rows: int | None = None):
    xtr, ytr, xte, yte = data
    if rows is not None:
        xtr, ytr = xtr[:rows], ytr[:rows]
    fit = fit_probe(xtr, ytr)
    assert fit.converged and fit.grad_max <= TOLERANCE and fit.n_iter < 1000
    ours = float((fit.predict(xte).numpy() == yte).mean())
    assert ours == linear_probe(xtr, ytr, xte, yte)
    ref, ref_obj, ref_logits = sklearn_at_optimum(xtr, ytr, xte, yte)
    assert fit.objective == pytest.approx(ref_obj, rel=1e-5)  # the same optimum
    # the same classifier: within 0.1 point, and a test image the two label differently is a tie for
    # scikit-learn itself (its two top logits closer than a thousandth of their median gap), which two
    # solvers stopping at a tolerance may break either way (1280-d features, 2 threads: one of 400
    # images, a gap of 4.6e-05 against a median of 3.4)
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    differ = fit.predict(xte).numpy() != ref_logits.argmax(1)
    assert (gap[differ] < 1e-3 * np.median(gap)).all()
    assert abs(ours - ref) <= max(0.001, differ.mean())


def test_probe_matches_sklearn_at_convergence_on_digits_pixels(digits):
    check_against_sklearn(digits)


def test_probe_matches_sklearn_at_convergence_on_fashion_mnist(fashion):
    check_against_sklearn(fashion)


def test_probe_matches_sklearn_on_pretrained_features_wider_than_the_train_split(pretrained):
    check_against_sklearn(pretrained)  # 600 rows x 1280 dims: the Gram matrix's axes


@pytest.mark.parametrize("rows", [600, 1200])
def test_wide_features_are_preconditioned(digits, rows):
    """Above 1024 dimensions too, with fewer rows than dimensions or more: in the coordinates B
    (W = M B) the data term's curvature is var_j / (var_j + alpha) along axis j, at most 1, and the
    penalty's is exactly 1 / (var_j + alpha)."""
    from engine.metrics.probe import _preconditioner, standardise

    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.from_numpy(digits[0][:rows]).double() @ torch.randn(64, 1100, generator=gen, dtype=torch.float64))
    mean, scale = standardise(x)
    x = (x - mean) / scale
    alpha = 4 / rows
    m = _preconditioner(x, alpha)
    assert m.shape[0] == 1100 and m.shape[1] <= min(rows, 1100)
    penalty = m.T @ m  # the penalty's curvature in B
    scale = 1 / penalty.diagonal()  # var_j + alpha
    assert torch.allclose(penalty * scale, torch.eye(len(scale), dtype=torch.float64), atol=1e-4)
    var = scale - alpha
    z = x @ m  # the data term's curvature in B is that of a softmax on z
    assert torch.allclose(z.T @ z / rows, torch.diag(var / scale), atol=1e-4)
    assert float(var.max()) > 100 * float(var.min().clamp_min(alpha))  # the features alone: ill-conditioned


def test_probe_stops_on_its_tolerance(digits):
    xtr, ytr, _, _ = digits
    loose, tight = fit_probe(xtr, ytr, tol=1e-3), fit_probe(xtr, ytr, tol=1e-7)
    assert loose.grad_max <= 1e-3 and tight.grad_max <= 1e-7 and loose.n_iter < tight.n_iter
    assert tight.objective <= loose.objective
    with pytest.warns(RuntimeWarning, match="stopped after 5 iterations"):
        assert not fit_probe(xtr, ytr, max_iter=5).converged


def test_probe_is_the_same_with_one_or_two_threads():
    """Random-init convnet features of digits (the case that read 0.9414 with one thread and 0.9397
    with two when the probe stopped at a fixed 50 iterations)."""
    from engine.encoders import build_encoder, embed

    d = load_dataset("digits")
    torch.manual_seed(0)
    encoder = build_encoder("convnet", d.channels, d.image_size, 128)
    xtr, xte = (embed(encoder, torch.from_numpy(s.images)) for s in (d.train, d.test))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            fit = fit_probe(xtr, d.train.labels)
            results.append((fit, linear_probe(xtr, d.train.labels, xte, d.test.labels)))
    finally:
        torch.set_num_threads(threads)
    (one, acc_one), (two, acc_two) = results
    assert acc_one == acc_two
    assert one.objective == pytest.approx(two.objective, rel=1e-6)  # both within the tolerance of the optimum
    assert torch.equal(one.predict(xte), two.predict(xte))


def test_probe_standardises_as_scikit_learn(digits):
    """Population standard deviation; a constant feature (digits' border pixels) is left unscaled."""
    xtr, ytr, _, _ = digits
    fit = fit_probe(xtr, ytr, tol=1e-3)
    scaler = StandardScaler().fit(xtr.astype(np.float64))
    assert np.allclose(fit.mean.numpy(), scaler.mean_) and np.allclose(fit.scale.numpy(), scaler.scale_)


def test_knn_accuracy_matches_sklearn(fashion):
    xtr, ytr, xte, yte = fashion
    ours = knn_accuracy(xtr, ytr, xte, yte, k=1, metric="euclidean")
    ref = KNeighborsClassifier(1, algorithm="brute").fit(xtr, ytr).score(xte, yte)
    assert ours == pytest.approx(ref)


def test_probe_refuses_nan_embeddings(digits):
    xtr, ytr, xte, yte = digits
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(bad, ytr, xte, yte)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(xtr, ytr, bad, yte)


@pytest.mark.parametrize("rows", [None, 300])
def test_reported_objective_is_that_of_the_weights(digits, rows):
    """The fit works on the rows' coordinates X M with its parameters laid out class-major; the
    objective it reports is scikit-learn's on the standardised features with the weights it returns
    (so those are W = M B, the right way round)."""
    xtr, ytr, _, _ = digits
    if rows is not None:
        xtr, ytr = xtr[:rows], ytr[:rows]
    fit = fit_probe(xtr, ytr)
    x = (torch.from_numpy(xtr).double() - fit.mean) / fit.scale
    assert fit.converged
    assert fit.objective == pytest.approx(objective(x, torch.as_tensor(ytr), fit.weight, fit.bias, C=1.0), rel=1e-12)
