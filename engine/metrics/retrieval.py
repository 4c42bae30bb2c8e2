"""Retrieval metrics of an embedding (Musgrave, Belongie & Lim 2020, "A Metric Learning Reality Check").

The query set is the reference set: every labelled point asks for its nearest neighbours among the
others (itself excluded). For a query of class y with R other points of class y:

- precision@1: is the nearest neighbour of class y;
- R-precision: the share of class y among the R nearest;
- MAP@R: (1/R) Σ_{i=1..R} P(i)·rel(i), with rel(i) = 1 when the i-th neighbour is of class y and
  P(i) the precision among the first i: like R-precision, but rewarding the right ones first;
- recall@k (Oh Song et al. 2016): at least one of the k nearest is of class y.

Each is the mean over queries. Queries of a class with no other member (R = 0) are left out, as
pytorch-metric-learning's ``AccuracyCalculator`` does (with none left, the figures are None);
unlabelled points (label −1) take no part.
NMI compares k-means clusters (k = the number of classes) with the labels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.neighbours import knn


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray, metric: str = "euclidean",
                      ks: Sequence[int] = (1, 5, 10), nmi: bool = True, seed: int = 0) -> dict:
    """precision_at_1, r_precision, map_at_r, recall_at_{k} for each k, nmi (when asked) and
    precision_at_1_per_class (a list, one value per class label 0..C−1, None where a class has no
    query): floats, ready for metrics.jsonl. When no point has a same-class peer (one point per class)
    the retrieval figures are None: they are undefined, not zero."""
    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"embeddings {x.shape} and labels {y.shape}: need (N, D) and (N,)")
    keep = y >= 0
    x, y = x[keep], y[keep]
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    r = counts[inverse] - 1  # same-class references of each query
    query = r > 0
    n_classes = int(y.max()) + 1 if len(y) else 0
    if not query.any():  # e.g. a small folder's test split, one image per class: nothing to retrieve
        out = {"precision_at_1": None, "r_precision": None, "map_at_r": None,
               **{f"recall_at_{k}": None for k in ks}, "precision_at_1_per_class": [None] * n_classes}
        if nmi and len(classes) > 1 and len(x) > len(classes):
            out["nmi"] = clustering_nmi(x, y, len(classes), metric, seed)
        return out
    k_max = int(max(r.max(), max(ks)))
    k_max = min(k_max, len(x) - 1)
    _, idx = knn(x, x, k_max, metric=metric, exclude_self=True)
    hit = y[idx] == y[:, None]  # (N, k_max)
    hit, r_q, yq = hit[query], r[query], y[query]
    ranks = np.arange(1, k_max + 1)
    within_r = ranks[None, :] <= r_q[:, None]
    rel = hit & within_r
    precision_at_i = np.cumsum(rel, 1) / ranks
    out: dict = {
        "precision_at_1": float(hit[:, 0].mean()),
        "r_precision": float((rel.sum(1) / r_q).mean()),
        "map_at_r": float(((precision_at_i * rel).sum(1) / r_q).mean()),
    }
    for k in ks:
        out[f"recall_at_{k}"] = float(hit[:, :min(k, k_max)].any(1).mean())
    per_class = []
    for c in range(n_classes):
        rows = yq == c
        per_class.append(float(hit[rows, 0].mean()) if rows.any() else None)
    out["precision_at_1_per_class"] = per_class
    if nmi and len(classes) > 1:
        out["nmi"] = clustering_nmi(x, y, len(classes), metric, seed)
    return out


def clustering_nmi(x: np.ndarray, y: np.ndarray, n_clusters: int, metric: str = "euclidean", seed: int = 0) -> float:
    """NMI between k-means clusters of the embeddings and the labels (on the unit sphere for cosine)."""
    from sklearn.metrics import normalized_mutual_info_score

    from engine.metrics.clusters import kmeans

    clusters = kmeans(x, n_clusters, seed=seed, normalize=metric == "cosine", n_init=3)
    return float(normalized_mutual_info_score(y, clusters))
