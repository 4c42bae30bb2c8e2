"""Self-supervised losses on two views of one batch: z1[i] and z2[i] come from the same image.

Each is a small ``nn.Module`` with typed keyword arguments; ``forward`` returns the scalar to
minimise, and those made of several terms also have ``parts`` returning them by name (for the
loss curves).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.losses import LOSSES


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"views: shapes {tuple(z1.shape)} and {tuple(z2.shape)} are not valid; "
                         "allowed: two (N, D) tensors of the same shape")


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{name}: {value!r} is out of range; allowed: a number > 0")
    return v


@LOSSES.register("nt-xent")
class NTXent(nn.Module):
    """NT-Xent / InfoNCE of SimCLR (Chen et al. 2020), both views as anchors.

    With the 2N embeddings u = l2-normalise([z1; z2]) and s_ij = u_i . u_j / tau, the positive of
    anchor i is its other view j(i) = i +- N and the other 2N - 2 are its negatives:

        loss = 1/(2N) sum_i -log( exp(s_i,j(i)) / sum_{k != i} exp(s_ik) )

    Equal to pytorch-metric-learning's ``NTXentLoss(temperature)`` on ``[z1; z2]`` with labels
    ``[0..N-1, 0..N-1]``. Shapes: z1, z2 (N, D) with N >= 2 (a batch of 1 has no negative).
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)

    def logits(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The (2N, 2N) matrix s = u u^T / tau; the diagonal (an anchor against itself) is kept."""
        _check_pair(z1, z2)
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        return u @ u.T / self.temperature

    def anchor_logits(self, z1: torch.Tensor, z2: torch.Tensor, anchors: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the rows of s for the anchors, with each anchor against itself at -inf; the column of each
        row's positive). ``anchors``: indices i in [0, N) whose two views are anchors (rows i, then
        i + N); None: all 2N. On several ranks each takes its own images as anchors against the views
        of the global batch (engine/distributed.py): the mean of the ranks' losses is the loss."""
        _check_pair(z1, z2)
        n = z1.shape[0]
        if n < 2:
            raise ValueError(f"batch size: {n} is too small for NT-Xent; allowed: >= 2 (a batch of 1 "
                             "has no negatives)")
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        if anchors is None:
            anchors = torch.arange(n, device=u.device)
        rows = torch.cat([anchors, anchors + n])
        s = u[rows] @ u.T / self.temperature
        s = s.scatter(1, rows[:, None], float("-inf"))  # an anchor is not its own candidate
        target = torch.cat([anchors + n, anchors])
        return s, target

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(*self.anchor_logits(z1, z2))


@LOSSES.register("vicreg")
class VICReg(nn.Module):
    """Variance-Invariance-Covariance regularisation (Bardes, Ponce, LeCun 2022).

        invariance = mean ||z1 - z2||^2 / D          (MSE between the views)
        variance   = mean_d max(0, gamma - sqrt(Var(z_d) + eps)), per view, averaged
        covariance = sum_{d != e} C(z)_de^2 / D, per view, summed

    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance. The variance
    term keeps every dimension spread across the batch (no collapse); the covariance term
    decorrelates dimensions (no dimensional collapse). Shapes: (N, D), N >= 2.
    """

    def __init__(self, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4):
        super().__init__()
        self.sim_weight, self.var_weight, self.cov_weight = float(sim_weight), float(var_weight), float(cov_weight)
        self.gamma, self.eps = float(gamma), float(eps)

    def parts(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_pair(z1, z2)
        n, d = z1.shape
        if n < 2:
            raise ValueError(f"batch size: {n} is too small for VICReg; allowed: >= 2 (variance needs two)")
        invariance = F.mse_loss(z1, z2)
        variance = z1.new_zeros(())
        covariance = z1.new_zeros(())
        for z in (z1, z2):
            z = z - z.mean(0)
            std = torch.sqrt(z.var(0) + self.eps)
            variance = variance + F.relu(self.gamma - std).mean() / 2
            cov = z.T @ z / (n - 1)
            off = cov - torch.diag(torch.diagonal(cov))
            covariance = covariance + off.pow(2).sum() / d
        return {"invariance": invariance, "variance": variance, "covariance": covariance}

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        p = self.parts(z1, z2)
        return self.sim_weight * p["invariance"] + self.var_weight * p["variance"] + self.cov_weight * p["covariance"]


@LOSSES.register("negative-cosine")
class NegativeCosine(nn.Module):
    """BYOL's regression loss (Grill et al. 2020), symmetrised by the caller over the two views:

        loss = mean_i 2 - 2 cos(p_i, t_i)      (= ||p/|p| - t/|t| ||^2)

    ``p`` is the online prediction, ``t`` the target; the target is detached here, so no gradient
    reaches the teacher. Without that asymmetry (and a predictor) the same loss collapses.
    """

    def __init__(self, detach_target: bool = True):
        super().__init__()
        self.detach_target = bool(detach_target)

    def forward(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_pair(p, t)
        if self.detach_target:
            t = t.detach()
        return (2 - 2 * F.cosine_similarity(p, t, dim=1)).mean()


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft equal-partition assignment of N samples to K prototypes (Sinkhorn-Knopp as in SwAV):
    Q = exp(scores / epsilon), then alternately rows (prototypes) scaled to total 1/K and columns
    (samples) to 1/N; returned as (N, K) with each row summing to 1."""
    q = torch.exp((scores - scores.max()) / epsilon).T  # (K, N); max subtracted for stability
    q = q / q.sum()
    k, n = q.shape
    for _ in range(iterations):
        q = q / q.sum(1, keepdim=True) / k
        q = q / q.sum(0, keepdim=True) / n
    return (q * n).T


@LOSSES.register("swav")
class SwAV(nn.Module):
    """Swapped prediction over prototypes (Caron et al. 2020).

    ``scores1``, ``scores2`` (N, K) are cosine similarities of each view's l2-normalised projection
    to K l2-normalised prototypes. The codes q = sinkhorn(scores) (no gradient) spread the batch
    evenly over the prototypes (that equal partition is what prevents collapse); each view predicts
    the other's code:

        loss = -1/(2N) sum_i [ q2_i . log softmax(scores1_i / tau) + q1_i . log softmax(scores2_i / tau) ]
    """

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3):
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)
        self.epsilon = _check_positive("epsilon", epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)

    def forward(self, scores1: torch.Tensor, scores2: torch.Tensor) -> torch.Tensor:
        _check_pair(scores1, scores2)
        q1 = sinkhorn(scores1.detach(), self.epsilon, self.sinkhorn_iterations)
        q2 = sinkhorn(scores2.detach(), self.epsilon, self.sinkhorn_iterations)
        log_p1 = F.log_softmax(scores1 / self.temperature, dim=1)
        log_p2 = F.log_softmax(scores2 / self.temperature, dim=1)
        return -((q2 * log_p1).sum(1) + (q1 * log_p2).sum(1)).mean() / 2


@LOSSES.register("invariance")
class Invariance(nn.Module):
    """Invariance alone: the mean squared distance between the two views' embeddings, symmetric, no
    negatives, no regulariser:

        loss = mean_i ||z1_i - z2_i||^2

    Any constant map minimises it (loss 0), so training on it collapses; it is the control against
    which the other losses' anti-collapse devices are seen. It is deliberately not scale-free: the
    scale-free form (divided by the batch's mean squared norm) rewarded a large common offset, so the
    weights grew by orders of magnitude and the output kept the input's contrast along one direction
    (seen on digits: effective rank 1, never a point). Plain, it lets the encoder shrink its output,
    and a ReLU output shrinks to exactly zero (see ``InvarianceOnly``).
    """

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        _check_pair(z1, z2)
        return (z1 - z2).pow(2).sum(1).mean()
