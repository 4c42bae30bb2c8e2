"""Collapse indicators: is the encoder still using its embedding space?

- effective rank (RankMe, Garrido et al. 2023, "RankMe: Assessing the downstream performance of
  pretrained self-supervised representations by their rank"): exp of the Shannon entropy of the
  L1-normalised singular values of the *centred* embedding matrix;
- the singular-value spectrum itself (dimensional collapse, Jing et al. 2022, shows as a tail of
  near-zero singular values);
- ``l2_std``: the mean over dimensions of the std of the l2-normalised embeddings (SimSiam, Chen & He
  2021): about 1/sqrt(d) for well-spread outputs, 0 when every output is the same vector;
- alignment and uniformity (Wang & Isola 2020, "Understanding contrastive representation learning
  through alignment and uniformity on the hypersphere") on l2-normalised embeddings;
- mean pairwise cosine similarity and dead dimensions.

The verdict rests on *centred*, scale-free quantities only. A freshly initialised convnet in eval mode
(batch-norm running statistics untouched) gives embeddings that share a large common offset: their
l2-normalised std reads about 0.0005 against 1/sqrt(64) = 0.125, and every cosine is close to 1, yet
the centred embeddings vary along 20-40 effective dimensions. Judging by ``l2_std`` or by cosines would
call that network collapsed; the centred spread and the effective rank do not.
"""
from __future__ import annotations

import numpy as np
import torch

# --- thresholds of the verdict (see collapse_verdict) ---------------------------------------------
# Complete collapse: every embedding is (nearly) the same vector. Measured by the relative spread
# sqrt(mean ||z_i - mean||^2) / sqrt(mean ||z_i||^2), which is 0 for constant embeddings and 1 for
# centred ones. A fresh convnet (the offset trap) reads 0.004-0.007 on digits, Fashion-MNIST and
# shapes, so the threshold sits well below that; float32 rounding of a constant output is ~1e-7.
COMPLETE_SPREAD = 1e-4
# Dimensional collapse: the centred embeddings use only a few of the available dimensions. Flagged
# when the effective rank is below max(DIMENSIONAL_MIN_RANK, DIMENSIONAL_FRACTION * min(d, N - 1)).
# 5 % keeps a supervised 10-class representation in 128 dims (neural collapse to ~C-1 = 9
# dimensions, effective rank about 9) healthy, while a rank-2 subspace of R^64 (threshold 3.2) or a
# line in R^2 (threshold 1.5) is flagged. Fresh convnets read 20-40 out of 64.
DIMENSIONAL_FRACTION = 0.05
DIMENSIONAL_MIN_RANK = 1.5
# A dimension is dead when its std across points is below this fraction of the typical
# per-dimension magnitude sqrt(mean ||z||^2 / d) (scale-free: a dimension that never moves).
DEAD_TOL = 1e-5
# Below this relative spread the centred matrix is rounding noise: no rank to measure.
_NOISE_SPREAD = 1e-7

VERDICTS = ("healthy", "dimensional collapse", "complete collapse")


def _as_float64(embeddings) -> np.ndarray:
    z = embeddings.detach().cpu().numpy() if torch.is_tensor(embeddings) else np.asarray(embeddings)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"embeddings: shape {z.shape} is not valid; allowed: (N, D) with N >= 1")
    return z.astype(np.float64, copy=False)


def relative_spread(embeddings) -> float:
    """sqrt(mean_i ||z_i - mean||^2) / sqrt(mean_i ||z_i||^2): 0 when all points coincide, 1 when the
    embeddings are centred; invariant to the scale of the embeddings."""
    z = _as_float64(embeddings)
    total = float((z * z).sum(1).mean())
    if total == 0.0:
        return 0.0
    c = z - z.mean(0)
    return float(np.sqrt((c * c).sum(1).mean() / total))


def singular_values(embeddings) -> np.ndarray:
    """Singular values of the centred embedding matrix, largest first (min(N, D) of them)."""
    z = _as_float64(embeddings)
    c = torch.from_numpy(z - z.mean(0))
    # the d x d Gram matrix is cheaper than an SVD of N x d when N >> d; float64 keeps small values
    if c.shape[0] > c.shape[1]:
        ev = torch.linalg.eigvalsh(c.T @ c).clamp_min(0).flip(0)
        return ev.sqrt().numpy()
    return torch.linalg.svdvals(c).numpy()


def effective_rank(embeddings=None, *, spectrum: np.ndarray | None = None, eps: float = 1e-7) -> float:
    """RankMe: exp(-sum_k p_k log p_k) with p_k = sigma_k / ||sigma||_1 + eps, sigma the singular values
    of the centred embeddings. Between 1 and min(N, D); 0.0 when the centred matrix is zero (up to
    float32 rounding), i.e. no variation at all."""
    if spectrum is None:
        if relative_spread(embeddings) <= _NOISE_SPREAD:
            return 0.0
        spectrum = singular_values(embeddings)
    s = np.asarray(spectrum, dtype=np.float64)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def l2_std(embeddings) -> float:
    """Mean over dimensions of the std (over points) of the l2-normalised embeddings; compare with
    1/sqrt(d) (SimSiam). Blind to a shared offset: read it with the relative spread."""
    z = _as_float64(embeddings)
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return float(u.std(0).mean())


def mean_cosine(embeddings) -> float:
    """Mean cosine similarity over all pairs i != j, via ||sum_i u_i||^2 = N + sum_{i!=j} u_i . u_j."""
    z = _as_float64(embeddings)
    n = len(z)
    if n < 2:
        return float("nan")
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    s = u.sum(0)
    norms = (u * u).sum()  # N, except for zero rows
    return float((s @ s - norms) / (n * (n - 1)))


def dead_dimensions(embeddings, tol: float = DEAD_TOL) -> int:
    """Number of dimensions whose std across points is below ``tol`` times sqrt(mean ||z||^2 / d)."""
    z = _as_float64(embeddings)
    scale = np.sqrt((z * z).sum(1).mean() / z.shape[1])
    if scale == 0.0:
        return int(z.shape[1])
    return int((z.std(0) <= tol * scale).sum())


def _normalise(x) -> torch.Tensor:
    t = x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t.float(), dim=1)


def alignment(view1, view2, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: E ||f(x) - f(x+)||_2^alpha over positive pairs (row i of each view),
    on l2-normalised embeddings. 0 = both views map to the same point; lower is better."""
    a, b = _normalise(view1), _normalise(view2)
    if a.shape != b.shape:
        raise ValueError(f"views: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; allowed: equal (N, D)")
    return float((a - b).norm(dim=1).pow(alpha).mean())


@torch.no_grad()
def uniformity(embeddings, t: float = 2.0, max_points: int = 2000, seed: int = 0, chunk: int = 1024,
               distances: torch.Tensor | None = None) -> float:
    """Wang & Isola's uniformity: log E_{i<j} exp(-t ||u_i - u_j||^2) on l2-normalised embeddings.
    0 when all points coincide; about -4 (t = 2) for points uniform on a high-dimensional sphere.
    Lower is better. Above ``max_points`` a fixed random subset is used (2000 points = 2M pairs:
    the estimate moves by ~1e-3 against all 5k points, at a sixth of the cost).
    ``distances``: the (N, N) euclidean distances between the normalised embeddings, if computed."""
    n = len(embeddings) if distances is None else len(distances)
    if n < 2:
        return float("nan")
    idx = None
    if n > max_points:
        idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False)))
        n = max_points
    if distances is not None:
        if idx is not None:
            idx = idx.to(distances.device)
            distances = distances[idx][:, idx]
        vals = -t * distances.float() ** 2
        vals.fill_diagonal_(-float("inf"))
        return float(torch.logsumexp(vals.flatten(), 0) - np.log(n * (n - 1)))
    u = _normalise(embeddings)
    if idx is not None:
        u = u[idx]
    # The mean over i != j equals the mean over i < j (symmetry); a logsumexp per chunk of rows,
    # combined at the end, keeps memory at chunk x N. Centred first: float32 then keeps the small
    # distances of points sharing an offset (2 - 2 u_i.u_j would lose them).
    parts = []
    u = u - u.mean(0)
    sq = (u * u).sum(1)
    for start in range(0, n, chunk):
        uc = u[start:start + chunk]
        block = -t * ((uc * uc).sum(1, keepdim=True) - 2 * uc @ u.T + sq).clamp_min(0)
        rows = torch.arange(len(block))
        block[rows, rows + start] = -float("inf")
        parts.append(torch.logsumexp(block.flatten(), 0))
    return float(torch.logsumexp(torch.stack(parts), 0) - np.log(n * (n - 1)))


def collapse_verdict(effective_rank: float, dim: int, spread: float, n_points: int | None = None) -> str:
    """``complete collapse`` if the relative spread < COMPLETE_SPREAD; else ``dimensional collapse`` if
    the effective rank < max(DIMENSIONAL_MIN_RANK, DIMENSIONAL_FRACTION * min(dim, n_points - 1));
    else ``healthy``. Both inputs are centred and scale-free (see the module docstring for why)."""
    if not np.isfinite(spread) or spread < COMPLETE_SPREAD:
        return "complete collapse"
    available = dim if n_points is None else min(dim, max(1, n_points - 1))
    if effective_rank < max(DIMENSIONAL_MIN_RANK, DIMENSIONAL_FRACTION * available):
        return "dimensional collapse"
    return "healthy"


def collapse_indicators(embeddings, view1=None, view2=None, top: int = 64,
                        distances: torch.Tensor | None = None) -> dict:
    """All indicators of this module as a flat JSON-able dict. ``view1``/``view2`` (embeddings of two
    augmented views of the same images, row by row) give ``alignment``; without them it is None.
    ``distances``: see ``uniformity``."""
    z = _as_float64(embeddings)
    n, d = z.shape
    spread = relative_spread(z)
    spectrum = singular_values(z) if spread > _NOISE_SPREAD else np.zeros(min(n, d))
    rank = effective_rank(spectrum=spectrum) if spread > _NOISE_SPREAD else 0.0
    std = l2_std(z)
    return {
        "effective_rank": rank,
        "relative_spread": spread,
        "l2_std": std,
        "l2_std_ratio": std * np.sqrt(d),  # 1 = SimSiam's ideal 1/sqrt(d)
        "mean_cosine": mean_cosine(z),
        "dead_dims": dead_dimensions(z),
        "uniformity": uniformity(z, distances=distances),
        "alignment": None if view1 is None else alignment(view1, view2),
        "singular_values": [float(s) for s in spectrum[:top]],
        "collapse": collapse_verdict(rank, d, spread, n),
    }
