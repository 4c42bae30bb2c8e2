"""Exact k nearest neighbours in embedding space, in torch on the training device, chunked for memory."""
from __future__ import annotations

import numpy as np
import torch

METRICS = ("cosine", "euclidean")


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.to(device=device or t.device, dtype=torch.float32)


@torch.no_grad()
def knn(queries, base, k: int, metric: str = "cosine", exclude_self: bool = False,
        chunk_size: int = 4096, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each row of ``queries``.

    Returns (distances, indices), each (n_queries, k), nearest first. Cosine distance is 1 - cos.
    ``exclude_self`` drops each query's own row when ``queries`` is ``base`` (all-points kNN).
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid; allowed: {', '.join(METRICS)}")
    q, b = _as_tensor(queries, device), _as_tensor(base, device)
    if b.device != q.device:
        b = b.to(q.device)
    available = len(b) - (1 if exclude_self else 0)
    if k < 1 or k > available:
        raise ValueError(f"k = {k} neighbours asked but only {available} other points exist; "
                         f"allowed: 1 to {available}")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        b = torch.nn.functional.normalize(b, dim=1)
    b_sq = (b * b).sum(1)
    dists, idx = [], []
    for start in range(0, len(q), chunk_size):
        qc = q[start:start + chunk_size]
        if metric == "cosine":
            d = 1 - qc @ b.T
        else:
            d = ((qc * qc).sum(1, keepdim=True) - 2 * qc @ b.T + b_sq).clamp_min_(0)
        if exclude_self:
            rows = torch.arange(len(qc), device=q.device)
            d[rows, rows + start] = float("inf")
        dc, ic = torch.topk(d, k, dim=1, largest=False)
        dists.append(dc if metric == "cosine" else dc.sqrt())
        idx.append(ic)
    return torch.cat(dists).cpu().numpy(), torch.cat(idx).cpu().numpy()
