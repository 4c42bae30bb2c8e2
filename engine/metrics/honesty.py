"""How honest a 2D map is about the embedding space, and how much neighbourhoods move between snapshots.

- ``trustworthiness`` — scikit-learn's definition (Venna & Kaski 2001):
  T(k) = 1 - 2 / (n k (2n - 3k - 1)) Σᵢ Σ_{j ∈ Uᵢ(k)} max(0, r(i, j) - k),
  where Uᵢ(k) are the k nearest neighbours of i in the map and r(i, j) the rank of j among i's
  neighbours in the embedding space (1 = nearest). 1: every map neighbour is a true neighbour.
- ``neighbour_overlap`` — per point, the fraction of its k nearest neighbours in embedding space
  that are also among its k nearest in the map (the window shades points by it).
- ``neighbour_drift`` — per point, the Jaccard overlap |A ∩ B| / |A ∪ B| of its kNN sets in two
  snapshots of the embeddings (1: same neighbours; 0: all new).

Computed with torch on the chosen device, chunked: a 5k-point map takes a fraction of a second where
scikit-learn sorts the whole n x n distance matrix.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.neighbours import knn


def _check_pair(high, low, k: int, names=("high", "low")) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(high), np.asarray(low)
    for name, x in zip(names, (a, b)):
        if x.ndim != 2:
            raise ValueError(f"{name} has shape {x.shape}: need a 2-D array (points, dims)")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values: the neighbours are undefined")
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} points and {names[1]} {len(b)}: need the same points")
    if not isinstance(k, (int, np.integer)) or k < 1 or k > len(a) - 1:
        raise ValueError(f"k = {k!r} neighbours for {len(a)} points: allowed: 1 to {len(a) - 1}")
    return a, b


@torch.no_grad()
def trustworthiness(high: np.ndarray, low: np.ndarray, k: int = 10, metric: str = "euclidean",
                    chunk_size: int | None = None, device: str | torch.device | None = None) -> float:
    """scikit-learn's ``sklearn.manifold.trustworthiness(high, low, n_neighbors=k, metric=metric)``.

    The ranks r(i, j) come from float64 distances in embedding space (as scikit-learn computes them):
    for each map neighbour j of i, r(i, j) = 1 + #{l ≠ i : d(i, l) < d(i, j)}, counted chunk by chunk
    with a binary search against the k map-neighbour distances instead of sorting every row. Like scikit-learn, k must be below n / 2. Exact ties in embedding
    space (equal points) may be ranked differently from scikit-learn's sort; for float32 input
    scikit-learn rounds its distances to float32 first, so it can differ from this by ~1e-8.
    """
    a, b = _check_pair(high, low, k)
    n = len(a)
    if k >= n / 2:
        raise ValueError(f"k = {k} neighbours for {n} points: trustworthiness needs k < n / 2 "
                         f"(scikit-learn's condition); allowed: 1 to {(n - 1) // 2}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric {metric!r}: allowed: euclidean, cosine")
    _, low_nn = knn(b, b, k, metric="euclidean", exclude_self=True, device=device)
    x = torch.as_tensor(a, dtype=torch.float64, device=device)
    if metric == "cosine":
        norms = x.norm(dim=1, keepdim=True)
        x = torch.where(norms > 0, x / norms.clamp_min(1e-300), torch.zeros_like(x))
    else:
        x = x - x.mean(0)  # translation changes nothing but keeps |x|² - 2x·y + |y|² precise
    sq = (x * x).sum(1)
    low_nn_t = torch.as_tensor(low_nn, device=x.device)
    # r(i, j) - 1 = #{l : d(i, l) < d(i, j)} for the k map neighbours j of each row at once: sort the
    # row's k target distances s₀ ≤ … ≤ s_{k-1}; every l falls into the bucket p = #{s ≤ d(i, l)}
    # (a binary search), and d(i, l) < s_j exactly when p ≤ j, so the counts are a cumulative
    # histogram of the buckets. No n x n sort.
    chunk_size = chunk_size or max(1, min(1024, (1 << 22) // n))
    penalty = 0.0
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=x.device)
        if metric == "cosine":
            d = 1 - x[rows] @ x.T
        else:
            d = (sq[rows, None] - 2 * x[rows] @ x.T + sq[None]).clamp_min_(0)
        d[torch.arange(len(rows)), rows] = float("inf")
        targets = d.gather(1, low_nn_t[rows]).sort(1).values  # (m, k)
        # Only the points nearer than the farthest target land in a bucket below k: search those.
        r, c = torch.nonzero(d < targets[:, -1:], as_tuple=True)
        bucket = torch.searchsorted(targets[r], d[r, c, None], right=True)[:, 0]
        hist = torch.bincount(r * (k + 1) + bucket, minlength=len(rows) * (k + 1)).reshape(len(rows), k + 1)
        ranks = 1 + hist[:, :k].cumsum(1)
        penalty += float((ranks - k).clamp_min(0).sum())
    return 1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def _overlap_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, how many entries of a[i] appear in b[i] (rows of distinct indices)."""
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    return (ta[:, :, None] == tb[:, None, :]).any(2).sum(1).numpy()


def neighbour_overlap(high: np.ndarray, low: np.ndarray, k: int = 10, metric: str = "euclidean",
                      device: str | torch.device | None = None) -> np.ndarray:
    """(N,) float: for each point, |kNN_high(i) ∩ kNN_low(i)| / k — 1 where the map keeps its
    neighbourhood, near k/N where it does not. ``metric`` is the embedding space's; the map's is
    euclidean."""
    a, b = _check_pair(high, low, k)
    _, hi = knn(a, a, k, metric=metric, exclude_self=True, device=device)
    _, lo = knn(b, b, k, metric="euclidean", exclude_self=True, device=device)
    return _overlap_counts(hi, lo) / k


def neighbour_drift(old: np.ndarray, new: np.ndarray, k: int = 10, metric: str = "euclidean",
                    device: str | torch.device | None = None) -> np.ndarray:
    """(N,) float: for each point, the Jaccard overlap |A ∩ B| / |A ∪ B| of its k nearest neighbours
    A in ``old`` and B in ``new`` (two snapshots of the same points). 1: same neighbours."""
    a, b = _check_pair(old, new, k, names=("old", "new"))
    _, ia = knn(a, a, k, metric=metric, exclude_self=True, device=device)
    _, ib = knn(b, b, k, metric=metric, exclude_self=True, device=device)
    inter = _overlap_counts(ia, ib)
    return inter / (2 * k - inter)
