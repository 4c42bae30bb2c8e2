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
scikit-learn sorts the whole n x n distance matrix. Recent kNN sets are cached by content, so the
three measures of one evaluation (and the next evaluation's drift) share their searches.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import torch

from engine.neighbours import knn

# The three measures of one evaluation ask for the same kNN sets several times (the map's kNN in
# trustworthiness and overlap, the embeddings' kNN in overlap and in drift, then again as "old" in
# the next evaluation's drift). A few recent results, keyed by the array's bytes, spare those
# searches; hashing 5k x 128 floats costs milliseconds, a search hundreds.
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def _knn_indices(x: np.ndarray, k: int, metric: str, device) -> np.ndarray:
    """All-points kNN indices (n, k) of ``x`` (self excluded), from the cache when x was seen."""
    x = np.ascontiguousarray(x)
    key = (hashlib.blake2b(x.view(np.uint8).reshape(-1), digest_size=16).hexdigest(), x.shape,
           x.dtype.str, k, metric)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    _, idx = knn(x, x, k, metric=metric, exclude_self=True, device=device)  # callers only read it
    with _CACHE_LOCK:
        _CACHE[key] = idx
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return idx


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

    The ranks r(i, j) compare distances in embedding space as float64 does (scikit-learn computes
    them in float64): for each map neighbour j of i, r(i, j) = 1 + #{l ≠ i : d(i, l) < d(i, j)},
    counted chunk by chunk with a binary search against the k map-neighbour distances instead of
    sorting every row. Like scikit-learn, k must be below n / 2. Exact ties in embedding space
    (equal points) may be ranked differently from scikit-learn's sort; for float32 input
    scikit-learn rounds its distances to float32 first, so it can differ from this by ~1e-8.
    """
    a, b = _check_pair(high, low, k)
    n = len(a)
    if k >= n / 2:
        raise ValueError(f"k = {k} neighbours for {n} points: trustworthiness needs k < n / 2 "
                         f"(scikit-learn's condition); allowed: 1 to {(n - 1) // 2}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric {metric!r}: allowed: euclidean, cosine")
    low_nn = _knn_indices(b, k, "euclidean", device)
    x64 = torch.as_tensor(a, dtype=torch.float64, device=device)
    if metric == "cosine":
        x64 = torch.nn.functional.normalize(x64, dim=1)  # a zero row stays zero (similarity 0)
    else:
        x64 = x64 - x64.mean(0)  # translation changes nothing but keeps |x|² - 2x·y + |y|² precise
    sq64 = (x64 * x64).sum(1)
    x32, sq32 = x64.float(), sq64.float()
    low_nn_t = torch.as_tensor(low_nn, device=x64.device)

    def exact(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """float64 distance (squared for euclidean: same order) of the pairs (r, c)."""
        dot = (x64[r] * x64[c]).sum(-1)
        return 1 - dot if metric == "cosine" else sq64[r] + sq64[c] - 2 * dot

    # r(i, j) - 1 = #{l : d(i, l) < d(i, j)} for the k map neighbours j of each row at once: sort the
    # row's k target distances s₀ ≤ … ≤ s_{k-1}; every l falls into the bucket p = #{s ≤ d(i, l)}
    # (a binary search), and d(i, l) < s_j exactly when p ≤ j, so the counts are a cumulative
    # histogram of the buckets. No n x n sort. The n x n distances are float32 (4x cheaper); the
    # targets are float64, and any distance within float32's error of a target is re-measured in
    # float64, so every comparison is the one float64 makes.
    chunk_size = chunk_size or max(1, min(1024, (1 << 22) // n))
    penalty = 0.0
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=x64.device)
        m = len(rows)
        if metric == "cosine":
            d = 1 - x32[rows] @ x32.T
            tol = torch.full((m, 1), 1e-6, device=x64.device)
        else:
            d = torch.addmm(sq32[None], x32[rows], x32.T, alpha=-2).add_(sq32[rows, None])
            tol = 1e-6 * (sq32[rows, None] + sq32.max())
        d[torch.arange(m, device=d.device), rows] = float("inf")
        nn_rows = low_nn_t[rows]
        t_exact = exact(rows[:, None].expand(-1, k), nn_rows)  # (m, k), map-neighbour order
        targets = t_exact.sort(1).values
        t32 = targets.float()
        # Only the points nearer than the farthest target land in a bucket below k: search those.
        r, c = torch.nonzero(d < t32[:, -1:] + tol, as_tuple=True)
        values = d[r, c]
        bucket = torch.searchsorted(t32[r], values[:, None], right=True)[:, 0]
        below = t32[r, (bucket - 1).clamp_min(0)]
        above = t32[r, bucket.clamp_max(k - 1)]
        close = ((bucket > 0) & (values - below <= tol[r, 0])) | ((bucket < k) & (above - values <= tol[r, 0]))
        if bool(close.any()):
            rc, cc = r[close], c[close]
            v = exact(rows[rc], cc)
            # a map neighbour's own distance is its target, bit for bit
            same = nn_rows[rc] == cc[:, None]
            is_target = same.any(1)
            v[is_target] = t_exact[rc[is_target], same[is_target].to(torch.int8).argmax(1)]
            bucket[close] = torch.searchsorted(targets[rc], v[:, None], right=True)[:, 0]
        hist = torch.bincount(r * (k + 1) + bucket, minlength=m * (k + 1)).reshape(m, k + 1)
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
    return _overlap_counts(_knn_indices(a, k, metric, device), _knn_indices(b, k, "euclidean", device)) / k


def neighbour_drift(old: np.ndarray, new: np.ndarray, k: int = 10, metric: str = "euclidean",
                    device: str | torch.device | None = None) -> np.ndarray:
    """(N,) float: for each point, the Jaccard overlap |A ∩ B| / |A ∪ B| of its k nearest neighbours
    A in ``old`` and B in ``new`` (two snapshots of the same points). 1: same neighbours."""
    a, b = _check_pair(old, new, k, names=("old", "new"))
    inter = _overlap_counts(_knn_indices(a, k, metric, device), _knn_indices(b, k, metric, device))
    return inter / (2 * k - inter)
