"""Linear probe and kNN accuracy: the two measures every screen shows.

The linear probe is multinomial logistic regression on frozen, standardised embeddings, fitted on the
train split and scored on the test split. It minimises the same objective as scikit-learn's
``LogisticRegression(C=C)`` (mean cross-entropy + ||W||^2 / (2 C N)), in torch with full-batch
L-BFGS on the training device, which is many times faster than scikit-learn on the same features.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.neighbours import knn


def _tensor(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(device=device, dtype=torch.float32)


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 100,
                 device: str | torch.device = "cpu") -> float:
    """Accuracy on (test_x, test_y) of logistic regression fitted on (train_x, train_y)."""
    device = torch.device(device)
    xtr, xte = _tensor(train_x, device), _tensor(test_x, device)
    ytr = torch.as_tensor(np.asarray(train_y), device=device, dtype=torch.long)
    yte = torch.as_tensor(np.asarray(test_y), device=device, dtype=torch.long)
    if not (torch.isfinite(xtr).all() and torch.isfinite(xte).all()):
        raise ValueError("the embeddings contain NaN or infinite values: the model diverged "
                         "(try a lower learning rate)")
    mean, std = xtr.mean(0), xtr.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature stays 0, not NaN
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    n_classes = int(max(ytr.max().item(), yte.max().item())) + 1
    weight = torch.zeros(xtr.shape[1], n_classes, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    l2 = 1.0 / (C * len(xtr))
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ weight + bias, ytr) + 0.5 * l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((xte @ weight + bias).argmax(1) == yte).float().mean())


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
