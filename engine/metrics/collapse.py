"""Collapse indicators: is the encoder still using its embedding space?

- relative spread: how much the images' embeddings differ, as the RMS distance to their mean over
  their RMS norm (0 = one point for every image; scale-free);
- effective rank (RankMe, Garrido et al. 2023, "RankMe: Assessing the downstream performance of
  pretrained self-supervised representations by their rank"): exp of the Shannon entropy of the
  L1-normalised singular values of the *centred* embedding matrix, and the singular-value spectrum
  itself (dimensional collapse, Jing et al. 2022, shows as a tail of near-zero singular values);
- alignment and uniformity (Wang & Isola 2020, "Understanding contrastive representation learning
  through alignment and uniformity on the hypersphere"), the mean pairwise cosine similarity, and
  dead dimensions;
- ``l2_std``: the mean over dimensions of the std of the l2-normalised embeddings (SimSiam, Chen & He
  2021), as SimSiam defines it (kept for comparison; the verdict does not use it).

Centred, so that a shared offset says nothing. A freshly initialised convnet in eval mode (batch-norm
running statistics untouched) gives embeddings that share a large common offset: on digits their
relative spread is 0.004-0.006, their l2_std 0.004 of SimSiam's 1/sqrt(D), every raw cosine 0.99998,
yet the centred embeddings vary along 20-60 effective dimensions and a linear probe on them reaches
0.94. Alignment, uniformity and the mean cosine are therefore measured on the *centred* embeddings
(minus their mean over the evaluation points; two views are centred on the same mean), then
l2-normalised: they describe the shape of the cloud around its mean, which an offset does not
change, and agree with the verdict. (On raw normalised embeddings they would read "alignment 0.000,
uniformity -0.000, mean cosine 1.000" for that healthy network.) Points that coincide with the mean
up to float32 rounding have no direction: they count as the zero vector, and when every point
does (complete collapse) the mean cosine is 1, the cosine of identical points.

The verdict, graded (``collapse_verdict``), worst first:

- complete collapse: relative spread <= COMPLETE_SPREAD, one embedding for every image up to float32
  rounding;
- near collapse: relative spread < NEAR_SPREAD, the images still differ, but by less than 0.05 % of
  the embedding's norm, 5.5 times below the least measured on a healthy network (fresh, or in its
  first training steps);
- dimensional collapse: the centred embeddings use only a few of the available dimensions;
- healthy.
"""
from __future__ import annotations

import numpy as np

# torch is imported where it is used: the window reads the verdicts and thresholds below at start-up,
# before any run, and must not pay for torch's import then

# --- thresholds of the verdict (see collapse_verdict) ---------------------------------------------
# Complete collapse: no variation left beyond float32 rounding. A constant output rounded in float32
# varies by ~1e-7 of its norm (the unit roundoff is 6e-8); 1e-6 leaves room for a few roundings.
COMPLETE_SPREAD = 1e-6
# Near collapse: the images' embeddings differ by less than 0.05 % of their norm. Measured here
# on the evaluation images (digits' 597, 2000 of the others') in eval mode: random initialisations
# read 0.0044 at the least (convnet with its dense neck at embedding 32 to 512 on digits,
# Fashion-MNIST and shapes: 0.0044-0.013; without the neck, or resnet18: 0.10-0.34; seeds 0-2). In
# their first steps the two-view and pretext methods dip lower, as the weights move faster than
# batch norm's running statistics follow: 0.0028-0.0033 on digits at their defaults (simclr, byol,
# vicreg, swav, rotation, inpainting; seeds 0, 1; least 0.00276, swav at step 3), then rise past
# 0.01 by steps 8 to 12. An offset plus 1e-3 noise reads 2e-4. 5e-4 sits 5.5x under the healthy
# least and 2.5x over that near collapse.
NEAR_SPREAD = 5e-4
# Dimensional collapse: the centred embeddings use only a few of the available dimensions. Flagged
# when the effective rank is below max(DIMENSIONAL_MIN_RANK, DIMENSIONAL_FRACTION * min(d, N - 1)).
# 5 % keeps a supervised 10-class representation in 128 dims (neural collapse to ~C-1 = 9
# dimensions, effective rank about 9) healthy, while a rank-2 subspace of R^64 (threshold 3.2) or a
# line in R^2 (threshold 1.5) is flagged. Fresh convnets read 10-60 out of 32-512.
DIMENSIONAL_FRACTION = 0.05
DIMENSIONAL_MIN_RANK = 1.5
# A dimension is dead when its std across points is below this fraction of the typical
# per-dimension magnitude sqrt(mean ||z||^2 / d) (scale-free: a dimension that never moves).
DEAD_TOL = 1e-5

HEALTHY, DIMENSIONAL, NEAR, COMPLETE = "healthy", "dimensional collapse", "near collapse", "complete collapse"
VERDICTS = (HEALTHY, DIMENSIONAL, NEAR, COMPLETE)  # from good to worst


def _as_float64(embeddings) -> np.ndarray:
    z = embeddings.detach().cpu().numpy() if hasattr(embeddings, "detach") else np.asarray(embeddings)
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
    import torch

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
        if relative_spread(embeddings) <= COMPLETE_SPREAD:
            return 0.0
        spectrum = singular_values(embeddings)
    s = np.asarray(spectrum, dtype=np.float64)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def l2_std(embeddings) -> float:
    """Mean over dimensions of the std (over points) of the l2-normalised embeddings; compare with
    1/sqrt(d) (SimSiam). Not centred, as SimSiam defines it: a shared offset shrinks it (a fresh
    convnet reads 0.004 of 1/sqrt(d)), so the verdict reads the relative spread instead."""
    z = _as_float64(embeddings)
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return float(u.std(0).mean())


def mean_cosine(embeddings) -> float:
    """Mean cosine similarity over all pairs i != j of the rows that are not zero, via
    ||sum_i u_i||^2 = N + sum_{i!=j} u_i . u_j; 1.0 when fewer than two rows are (identical points)."""
    z = _as_float64(embeddings)
    if len(z) < 2:
        return float("nan")
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    u = z[norm[:, 0] > 0] / norm[norm[:, 0] > 0]
    n = len(u)
    if n < 2:
        return 1.0
    s = u.sum(0)
    return float((s @ s - n) / (n * (n - 1)))


def centred_directions(x, centre: np.ndarray, scale: float) -> np.ndarray:
    """Unit vectors of ``x - centre`` (float64 (N, D)); rows within COMPLETE_SPREAD * ``scale`` of the
    centre (float32 rounding of it) have no direction and become zero."""
    c = _as_float64(x) - centre
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    keep = norm > COMPLETE_SPREAD * scale
    return np.where(keep, c / np.where(keep, norm, 1.0), 0.0)


def dead_dimensions(embeddings, tol: float = DEAD_TOL) -> int:
    """Number of dimensions whose std across points is below ``tol`` times sqrt(mean ||z||^2 / d)."""
    z = _as_float64(embeddings)
    scale = np.sqrt((z * z).sum(1).mean() / z.shape[1])
    if scale == 0.0:
        return int(z.shape[1])
    return int((z.std(0) <= tol * scale).sum())


def _normalise(x) -> torch.Tensor:
    import torch

    t = x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t.float(), dim=1)


def alignment(view1, view2, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: E ||f(x) - f(x+)||_2^alpha over positive pairs (row i of each view),
    on l2-normalised embeddings (zero rows stay zero). 0 = both views map to the same point; lower
    is better."""
    a, b = _normalise(view1), _normalise(view2)
    if a.shape != b.shape:
        raise ValueError(f"views: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; allowed: equal (N, D)")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(embeddings, t: float = 2.0, max_points: int = 2000, seed: int = 0, chunk: int = 1024,
               distances: torch.Tensor | None = None) -> float:
    """Wang & Isola's uniformity: log E_{i<j} exp(-t ||u_i - u_j||^2) on l2-normalised embeddings.
    0 when all points coincide; about -4 (t = 2) for points uniform on a high-dimensional sphere.
    Lower is better. Above ``max_points`` a fixed random subset is used (2000 points = 2M pairs:
    the estimate moves by ~1e-3 against all 5k points, at a sixth of the cost).
    ``distances``: the (N, N) euclidean distances between the normalised embeddings, if computed."""
    import torch

    with torch.no_grad():  # a grad-carrying input costs no graph
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


def rank_threshold(dim: int, n_points: int | None = None) -> float:
    """The effective rank under which the verdict is dimensional collapse: a share of the dimensions
    the points can span, min(dim, n_points - 1)."""
    available = dim if n_points is None else min(dim, max(1, n_points - 1))
    return max(DIMENSIONAL_MIN_RANK, DIMENSIONAL_FRACTION * available)


def collapse_verdict(effective_rank: float, dim: int, spread: float, n_points: int | None = None) -> str:
    """``complete collapse`` if the relative spread <= COMPLETE_SPREAD (or is not a number); ``near
    collapse`` if it is < NEAR_SPREAD; else ``dimensional collapse`` if the effective rank is under
    ``rank_threshold(dim, n_points)``; else ``healthy``. Every input is centred and scale-free (see
    the module docstring for why)."""
    if not np.isfinite(spread) or spread <= COMPLETE_SPREAD:
        return COMPLETE
    if spread < NEAR_SPREAD:
        return NEAR
    if effective_rank < rank_threshold(dim, n_points):
        return DIMENSIONAL
    return HEALTHY


def collapse_indicators(embeddings, view1=None, view2=None, top: int = 64) -> dict:
    """Every figure of this module, computed once, as a flat JSON-able dict: the verdict and the
    figures shown beside it come from here. ``view1``/``view2`` (embeddings of two augmented views of
    the same images, row by row) give ``alignment``; without them it is None. Alignment, uniformity
    and the mean cosine are on the centred embeddings (see the module docstring)."""
    z = _as_float64(embeddings)
    n, d = z.shape
    spread = relative_spread(z)
    complete = not spread > COMPLETE_SPREAD
    spectrum = np.zeros(min(n, d)) if complete else singular_values(z)
    rank = 0.0 if complete else effective_rank(spectrum=spectrum)
    std = l2_std(z)
    centre, scale = z.mean(0), float(np.sqrt((z * z).sum(1).mean()))
    directions = centred_directions(z, centre, scale)
    aligned = None
    if view1 is not None:
        aligned = alignment(centred_directions(view1, centre, scale), centred_directions(view2, centre, scale))
    return {
        "effective_rank": rank,
        "relative_spread": spread,
        "l2_std": std,
        "l2_std_ratio": std * np.sqrt(d),  # 1 = SimSiam's ideal 1/sqrt(d)
        "mean_cosine": 1.0 if complete else mean_cosine(directions),
        "dead_dims": dead_dimensions(z),
        "uniformity": uniformity(directions),
        "alignment": aligned,
        "singular_values": [float(s) for s in spectrum[:top]],
        "collapse": collapse_verdict(rank, d, spread, n),
    }
