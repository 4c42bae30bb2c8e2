"""Linear probe and kNN accuracy: the two measures every screen shows.

The linear probe is multinomial logistic regression on frozen, standardised embeddings, fitted on the
train split and scored on the test split. Its objective is scikit-learn's ``LogisticRegression(C=C)``
on ``StandardScaler`` features (population standard deviation, a constant feature left unscaled):
mean cross-entropy + ||W||^2 / (2 C N), the bias unpenalised. It is minimised to a tolerance, not for
a fixed number of steps, so the probe reports the optimum's accuracy (the same classifier scikit-learn
finds when run to convergence), whatever the thread count or device.

Speed comes from conditioning, not from cutting corners. The weights are searched as W = M B, where M
maps the standardised features onto their principal axes, axis j scaled by 1 / sqrt(var_j + alpha):
in the coordinates B the features are white and the penalty's curvature is 1 / (var_j + alpha), so
L-BFGS needs fewer iterations (what is left is the curvature that varies from row to row: rows far from
every boundary hardly count). The principal axes come from the d x d covariance when d <= N and from the N x N
Gram matrix when d > N (the optimum's weights lie in the span of the training rows, and only N of the
d directions are seen). Everything is in float64 and the penalty is that of W exactly (||W||^2, or
<B, M^T M B>, the fit working on the rows' coordinates X M), so M is only a change of
coordinates: however M is estimated (float32, a subsample of rows), the minimiser is the same.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from engine.neighbours import knn

TOLERANCE = 1e-6  # max |gradient| in the preconditioned coordinates at which the fit stops
MAX_ITER = 2000  # a safety net only: the well-conditioned problems here stop after 20 to 300
STALLED = 64 * torch.finfo(torch.float64).eps  # a change of the objective below this: no progress left
HISTORY = 20  # L-BFGS memory
COVARIANCE_ROWS = 16384  # rows that estimate the preconditioner's axes (all of them when fewer)


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe on standardised features: ``weight`` (d, K) and ``bias`` (K,), float64."""
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    objective: float  # mean cross-entropy + ||W||^2 / (2 C N) at the optimum found
    grad_max: float  # max |gradient| in the preconditioned coordinates there
    n_iter: int
    converged: bool

    def predict(self, x) -> torch.Tensor:
        x = (_tensor(x, self.weight.device) - self.mean) / self.scale
        return (x @ self.weight + self.bias).argmax(1)


def _tensor(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(device=device, dtype=torch.float64)


def _labels(y, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y.cpu() if torch.is_tensor(y) else y), device=device, dtype=torch.long)


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale) as scikit-learn's StandardScaler: population standard deviation, and a scale of 1
    for a feature whose variance is within rounding of 0 (it stays 0 after centring, not NaN)."""
    n = len(x)
    mean = x.mean(0)
    var = (x - mean).square().mean(0)
    eps = torch.finfo(x.dtype).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return mean, torch.where(constant, torch.ones_like(var), var.sqrt())


def objective(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, C: float) -> float:
    """scikit-learn's LogisticRegression objective divided by C N, on standardised ``x``, in float64."""
    x, weight, bias = x.double(), weight.double(), bias.double()
    log_p = (x @ weight + bias).log_softmax(1)
    rows = torch.arange(len(x), device=x.device)
    return float(-log_p[rows, y].mean() + 0.5 * weight.square().sum() / (C * len(x)))


def fit_probe(train_x, train_y, C: float = 1.0, tol: float = TOLERANCE, max_iter: int = MAX_ITER,
              n_classes: int | None = None, device: str | torch.device = "cpu") -> ProbeFit:
    """Multinomial logistic regression with L2 penalty 1 / C on standardised ``train_x``, minimised
    until the largest gradient entry (in the preconditioned coordinates) is at most ``tol``."""
    device = torch.device(device)
    x = _tensor(train_x, device)
    y = _labels(train_y, device)
    if not torch.isfinite(x).all():
        raise ValueError("the embeddings contain NaN or infinite values: the model diverged "
                         "(try a lower learning rate)")
    n, d = x.shape
    mean, scale = standardise(x)
    x = (x - mean) / scale
    k = n_classes or int(y.max()) + 1
    l2 = 1.0 / (C * n)
    transform = _preconditioner(x, alpha=4 * l2)  # (d, r): W = transform @ B
    r = transform.shape[1]
    # X W = (X M) B = Z B: the rows' coordinates Z are computed once (r <= d) and replace X, and the
    # penalty ||W||^2 = <B, M^T M B> is that of W exactly. The parameters are B^T (K, r) and the
    # products are laid out class-major, (K, r) @ (r, N) and (K, N) @ (N, r): on the CPU (MKL) these
    # ran about twice as fast as (N, r) @ (r, K) with K = 10 columns; the objective is the same.
    z_t = (x @ transform).T.contiguous()  # (r, N)
    del x
    metric = transform.T @ transform
    targets = torch.nn.functional.one_hot(y, k).to(torch.float64).T.contiguous()  # (K, N)
    params = torch.zeros(k * r + k, dtype=torch.float64, device=device, requires_grad=True)

    def unpack(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return transform @ p[:-k].view(k, r).T, p[-k:]

    @torch.no_grad()
    def closure():
        b_t, bias = params[:-k].view(k, r), params[-k:]
        metric_b = b_t @ metric
        log_p = torch.addmm(bias[:, None], b_t, z_t).log_softmax(0)  # (K, N)
        loss = -(log_p * targets).sum() / n + 0.5 * l2 * (b_t * metric_b).sum()
        g = log_p.exp_().sub_(targets).div_(n)  # d loss / d logits, (K, N)
        # the gradient by hand: autograd would form Z^T G, a reduction over N that BLAS runs
        # several times slower on the CPU
        params.grad = torch.cat([(g @ z_t.T + l2 * metric_b).flatten(), g.sum(1)])
        return loss

    # it stops when the largest gradient entry is at most tol (or after max_iter, with a warning)
    opt = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, max_eval=2 * max_iter, history_size=HISTORY,
                            tolerance_grad=tol, tolerance_change=STALLED, line_search_fn="strong_wolfe")
    opt.step(closure)
    loss = float(closure())  # the objective at the optimum found (that of W: the same function)
    grad_max = float(params.grad.abs().max())
    n_iter = int(opt.state[params].get("n_iter", 0))
    converged = grad_max <= tol
    if not converged:
        warnings.warn(f"the linear probe stopped after {n_iter} iterations with gradient {grad_max:.1e} "
                      f"above its tolerance {tol:.0e}: its accuracy may differ from the optimum's",
                      RuntimeWarning, stacklevel=2)
    with torch.no_grad():
        weight, bias = unpack(params.detach())
    return ProbeFit(weight, bias, mean, scale, loss, grad_max, n_iter, converged)


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0, tol: float = TOLERANCE,
                 max_iter: int = MAX_ITER, device: str | torch.device = "cpu") -> float:
    """Accuracy on (test_x, test_y) of logistic regression fitted on (train_x, train_y) to convergence."""
    device = torch.device(device)
    xte, yte = _tensor(test_x, device), _labels(test_y, device)
    if not torch.isfinite(xte).all():
        raise ValueError("the embeddings contain NaN or infinite values: the model diverged "
                         "(try a lower learning rate)")
    n_classes = int(max(_labels(train_y, device).max(), yte.max())) + 1
    fit = fit_probe(train_x, train_y, C=C, tol=tol, max_iter=max_iter, n_classes=n_classes, device=device)
    with torch.no_grad():
        return float((fit.predict(xte) == yte).double().mean())


def _preconditioner(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """M (d, r) whose columns are the principal axes of the centred rows ``x``, axis j scaled by
    1 / sqrt(var_j + alpha). ``alpha`` ~ 4 * l2 balances the curvature of the data term (at most about
    var_j / 4) against the penalty's. With d <= n the axes are estimated in float32, from a fixed subsample
    of the rows when there are many: M only changes coordinates, the objective is evaluated exactly."""
    n, d = x.shape
    if d <= n:
        sample = x
        if n > COVARIANCE_ROWS:
            gen = torch.Generator().manual_seed(0)
            sample = x[torch.randperm(n, generator=gen)[:COVARIANCE_ROWS].to(x.device)]
        xs = sample.float()
        cov = (xs.T @ xs).double() / len(xs)
        var, axes = torch.linalg.eigh(cov)
        return axes / (var.clamp_min(0) + alpha).sqrt()
    # d > n: the axes that the rows span, from the Gram matrix X X^T = U S^2 U^T; axis j is X^T u_j / s_j.
    # In float64: X^T u_j / s_j magnifies the error of u_j by 1 / s_j, and n x n x d costs less than d^3.
    s2, u = torch.linalg.eigh(x @ x.T)
    keep = s2 > s2.max() * 1e-10  # centring leaves one direction (at least) with s = 0
    s2, u = s2[keep], u[:, keep]
    var = s2 / n
    return (x.T @ u) / (s2.sqrt() * (var + alpha).sqrt())


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 10, metric: str = "cosine",
                 device: str | torch.device = "cpu") -> float:
    """Accuracy of a k-nearest-neighbour vote (each vote weighted by its similarity, which breaks ties)."""
    k = min(k, len(train_x))
    dist, idx = knn(test_x, train_x, k, metric=metric, device=device)
    train_y = np.asarray(train_y)
    votes = np.zeros((len(idx), int(train_y.max()) + 1))
    weights = 2.0 - dist if metric == "cosine" else 1.0 / (1e-8 + dist)
    np.add.at(votes, (np.arange(len(idx))[:, None], train_y[idx]), weights)
    return float((votes.argmax(1) == np.asarray(test_y)).mean())
