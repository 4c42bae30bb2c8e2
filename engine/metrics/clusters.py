"""Clusters in embedding space: k-means and HDBSCAN cluster ids per point, their agreement with the
labels (NMI, ARI, purity), the silhouette of the labels, ids that follow the previous snapshot's, and
each cluster's outline on the 2D map.

Geometry: by default every measure here works on l2-normalised embeddings with euclidean distance,
like the triplet categories (engine.metrics.triplets): the losses of most methods live on the sphere,
and it makes the numbers independent of the scale of the encoder's output.

- k-means: scikit-learn's ``KMeans`` (Lloyd, k-means++ initialisation), k = number of classes by default.
- HDBSCAN (Campello et al. 2013): scikit-learn's ``HDBSCAN``, run on the embeddings reduced by PCA to
  ``dims`` dimensions (10 by default): density estimates in 64-128 dimensions are dominated by the
  curse of dimensionality, and on 5k points PCA-10 takes 0.2 s where the full space takes 1.2 s here.
- NMI (arithmetic normalisation) and ARI: scikit-learn's, on the labelled points.
- purity: the share of the labelled, clustered points whose cluster's majority class is their own,
  (1 / N) sum_c max_y |c and y|, from scikit-learn's contingency matrix (noise left out: its share is
  ``hdbscan_noise``). 1 = every cluster holds one class; it rises with the number of clusters, so it
  is read beside NMI, which does not.
- ids that follow (``match_ids``): k-means and HDBSCAN number their clusters anew at each call, so the
  same group of points gets another id, hence another colour, at the next snapshot. The ids of a new
  snapshot are renamed after the previous snapshot's by the assignment that keeps the most points
  under their old id: the Hungarian method (scipy's ``linear_sum_assignment``) on the contingency
  table of the two groupings. A cluster that shares no point with its counterpart gets the smallest
  id no followed cluster holds (so k-means keeps the ids 0..k-1, and a colour of the palette's first).
- outlines (``hulls``): the convex hull (scipy's ``ConvexHull``, Qhull) of each cluster's points on
  the map, around the share ``coverage`` of them nearest the cluster's median point, so that a few
  strays do not stretch it over other clusters.
- silhouette (Rousseeuw 1987): s_i = (b_i - a_i) / max(a_i, b_i), a_i the mean distance to the other
  points of its cluster, b_i the smallest mean distance to another cluster; s_i = 0 for a point alone
  in its cluster (scikit-learn's convention). Computed in torch from the float32 distance matrix
  (centred before the products, so a shared offset costs no precision; it agrees with scikit-learn's
  float64 to ~1e-6), one matmul against a one-hot matrix giving all per-cluster sums; above
  ``max_points`` on a random subset.
"""
from __future__ import annotations

import numpy as np

# torch is imported where it is used: the window reads ALGORITHMS at start-up

ALGORITHMS = {"kmeans": "k-means", "hdbscan": "HDBSCAN"}  # name -> the label a person reads


def _points(embeddings, normalize: bool) -> np.ndarray:
    z = embeddings.detach().cpu().numpy() if hasattr(embeddings, "detach") else np.asarray(embeddings)
    if z.ndim != 2:
        raise ValueError(f"embeddings: shape {z.shape} is not valid; allowed: (N, D)")
    z = z.astype(np.float32, copy=False)
    if normalize:
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z


def kmeans(embeddings, k: int, seed: int = 0, normalize: bool = True, n_init: int = 1) -> np.ndarray:
    """k-means cluster id (0..k-1) of every point."""
    from sklearn.cluster import KMeans

    z = _points(embeddings, normalize)
    if int(k) < 1:
        raise ValueError(f"k: {k} is not valid; allowed: a whole number >= 1")
    if len(z) < k:
        raise ValueError(f"k-means with k = {k} clusters needs at least {k} points; got {len(z)}")
    import warnings

    with warnings.catch_warnings():
        # identical points (collapse) make fewer distinct clusters than k: a fact, not a failure
        warnings.simplefilter("ignore")
        return KMeans(int(k), n_init=n_init, random_state=seed).fit_predict(z).astype(np.int64)


def hdbscan(embeddings, min_cluster_size: int | None = None, dims: int | None = 10,
            normalize: bool = True) -> np.ndarray:
    """HDBSCAN cluster id of every point, -1 for noise. ``min_cluster_size`` defaults to
    max(5, N / 100); ``dims`` reduces by PCA first (None keeps the full space)."""
    from sklearn.cluster import HDBSCAN

    z = _points(embeddings, normalize)
    n = len(z)
    size = max(5, n // 100) if min_cluster_size is None else int(min_cluster_size)
    if size < 2:
        raise ValueError(f"min_cluster_size: {min_cluster_size} is not valid; allowed: a whole number >= 2")
    if n < size:
        raise ValueError(f"HDBSCAN with min_cluster_size = {size} needs at least {size} points; got {n}")
    if dims is not None and z.shape[1] > dims:
        c = z - z.mean(0)
        # PCA through the d x d covariance: cheap for N >> d, no extra dependency
        _, vecs = np.linalg.eigh(c.T.astype(np.float64) @ c)
        z = (c @ vecs[:, ::-1][:, :dims]).astype(np.float32)
    if np.ptp(z, axis=0).max(initial=0.0) == 0.0:
        return np.zeros(n, dtype=np.int64)  # all points identical: one cluster (HDBSCAN cannot say so)
    return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(z).astype(np.int64)


def silhouette(embeddings, labels, normalize: bool = True, max_points: int = 10_000, seed: int = 0,
               chunk: int = 1024, distances=None) -> float | None:
    """Mean silhouette of the grouping ``labels`` (points with a label < 0 left out), euclidean.
    None when it is undefined: fewer than 2 groups, or as many groups as points. ``distances``: the
    (N, N) matrix of the same geometry if already computed (engine.metrics.triplets.distance_matrix)."""
    import torch

    with torch.no_grad():
        return _silhouette(embeddings, labels, normalize, max_points, seed, chunk, distances)


def _silhouette(embeddings, labels, normalize, max_points, seed, chunk, distances) -> float | None:
    import torch

    labels = np.asarray(labels).astype(np.int64).ravel()
    n_all = len(embeddings) if distances is None else len(distances)
    if len(labels) != n_all:
        raise ValueError(f"labels ({len(labels)},) do not match {n_all} embeddings")
    keep = np.flatnonzero(labels >= 0)
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    groups, y = np.unique(labels[keep], return_inverse=True)
    n, g = len(y), len(groups)
    if g < 2 or g >= n:
        return None
    if distances is None:
        from engine.metrics.triplets import _distances

        z = torch.from_numpy(_points(embeddings, normalize)[keep])
        shift = z.mean(0)

        def block(start: int) -> torch.Tensor:  # rows computed when needed: memory chunk x N
            d = _distances(z[start:start + chunk], z, "euclidean", shift)
            d[torch.arange(len(d)), torch.arange(len(d)) + start] = 0.0
            return d
    else:
        if len(keep) < n_all:
            kt = torch.from_numpy(keep).to(distances.device)
            distances = distances[kt][:, kt]

        def block(start: int) -> torch.Tensor:
            return distances[start:start + chunk]
    yt = torch.from_numpy(y)
    onehot = torch.nn.functional.one_hot(yt, g).float()
    sizes = onehot.sum(0)
    scores = []
    for start in range(0, n, chunk):
        d = block(start)
        onehot, yt, sizes = onehot.to(d.device), yt.to(d.device), sizes.to(d.device)
        rows = torch.arange(len(d), device=d.device)
        sums = (d.float() @ onehot).double()  # (chunk, g): sum of distances to each group
        own = yt[start:start + chunk]
        own_size = sizes[own].double()
        a = sums[rows, own] / (own_size - 1).clamp_min(1)
        mean_other = sums / sizes.double()
        mean_other[rows, own] = float("inf")
        b = mean_other.min(1).values
        s = (b - a) / torch.maximum(a, b)
        s = torch.where((own_size > 1) & (torch.maximum(a, b) > 0), s, torch.zeros_like(s))
        scores.append(s)
    return float(torch.cat(scores).mean())


def cluster_ids(embeddings, algorithm: str, k: int | None = None, seed: int = 0,
                normalize: bool = True) -> np.ndarray:
    """The ids of one of ALGORITHMS (k-means needs ``k``; HDBSCAN finds its number, -1 for noise)."""
    if algorithm == "kmeans":
        if k is None:
            raise ValueError("k-means needs k, the number of clusters")
        return kmeans(embeddings, k, seed=seed, normalize=normalize)
    if algorithm == "hdbscan":
        return hdbscan(embeddings, normalize=normalize)
    raise ValueError(f"clustering algorithm {algorithm!r} is not valid; allowed: {', '.join(ALGORITHMS)}")


def default_k(labels, num_classes: int = 0) -> int:
    """The k of k-means: the number of classes among the labelled points; with fewer than 2, the
    dataset's number of classes, or 10."""
    labels = np.asarray(labels).ravel()
    k = len(np.unique(labels[labels >= 0]))
    if k >= 2:
        return k
    return int(num_classes) if num_classes >= 2 else 10


def follow(snapshots, algorithm: str, k: int | None = None, previous=None, seed: int = 0) -> list[np.ndarray]:
    """Cluster ids of a sequence of snapshots of the same points, each renamed after the one before
    (``previous``: the ids before the first). ``snapshots``: (embeddings, ids or None) pairs; ids
    given (the ones saved with a run) are renamed only, the others are computed first."""
    out = []
    for embeddings, ids in snapshots:
        found = cluster_ids(embeddings, algorithm, k, seed) if ids is None else np.asarray(ids, dtype=np.int64)
        if previous is not None and len(previous) == len(found):
            found = match_ids(previous, found)
        out.append(found)
        previous = found
    return out


def match_ids(previous, current) -> np.ndarray:
    """``current``'s cluster ids renamed to follow ``previous`` (the same points in the same order):
    see the module docstring. Noise (-1) stays -1; the grouping itself is unchanged."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    previous = np.asarray(previous).astype(np.int64).ravel()
    current = np.asarray(current).astype(np.int64).ravel()
    if previous.shape != current.shape:
        raise ValueError(f"cluster ids of {len(previous)} and {len(current)} points: matching needs the same points")
    ours = np.unique(current[current >= 0])
    out = np.full_like(current, -1)
    if not len(ours):
        return out
    both = (previous >= 0) & (current >= 0)
    rename: dict[int, int] = {}
    if both.any():
        table = contingency_matrix(previous[both], current[both])  # rows: previous ids, columns: ours
        rows, cols = np.unique(previous[both]), np.unique(current[both])
        for i, j in zip(*linear_sum_assignment(table, maximize=True)):
            if table[i, j] > 0:  # no shared point: nothing to follow
                rename[int(cols[j])] = int(rows[i])
    taken = set(rename.values())  # a cluster that vanished leaves its id free: k-means keeps 0..k-1
    fresh = (i for i in range(len(taken) + len(ours) + 1) if i not in taken)
    for c in ours:
        if int(c) not in rename:
            rename[int(c)] = next(fresh)
    lut = np.array([rename[int(c)] for c in ours], dtype=np.int64)
    keep = current >= 0
    out[keep] = lut[np.searchsorted(ours, current[keep])]
    return out


def purity(labels, clusters) -> float | None:
    """Purity of ``clusters`` against ``labels`` (module docstring), on the points with a label >= 0
    and a cluster >= 0; None when there are none."""
    from sklearn.metrics.cluster import contingency_matrix

    labels, clusters = np.asarray(labels).ravel(), np.asarray(clusters).ravel()
    keep = (labels >= 0) & (clusters >= 0)
    if not keep.any():
        return None
    table = contingency_matrix(labels[keep], clusters[keep])  # rows: classes, columns: clusters
    return float(table.max(axis=0).sum() / keep.sum())


def cluster_makeup(labels, clusters) -> dict[int, tuple[int, int, int]]:
    """Per cluster id (>= 0): (size, its majority label or -1 when none of its points is labelled,
    how many of its labelled points have that label)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    clusters = np.asarray(clusters).astype(np.int64).ravel()
    out = {}
    for c in np.unique(clusters[clusters >= 0]):
        own = labels[clusters == c]
        known = own[own >= 0]
        if len(known):
            counts = np.bincount(known)
            out[int(c)] = (len(own), int(counts.argmax()), int(counts.max()))
        else:
            out[int(c)] = (len(own), -1, 0)
    return out


def hulls(xy, clusters, coverage: float = 0.9) -> dict[int, np.ndarray]:
    """Per cluster id (>= 0): its outline on the map, as the rows of ``xy`` at the vertices of the
    convex hull (counter-clockwise) of the share ``coverage`` of its points nearest its median point.
    Rows, not positions, so that a map moving its points (an animation) can draw the outline through
    the same points as they go. Clusters whose points span no area (fewer than 3, or all on a line)
    have none."""
    from scipy.spatial import ConvexHull, QhullError

    if not 0 < coverage <= 1:
        raise ValueError(f"coverage: {coverage!r} is not valid; allowed: 0 < coverage <= 1")
    xy = np.asarray(xy, dtype=np.float64)
    clusters = np.asarray(clusters).astype(np.int64).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(clusters):
        raise ValueError(f"hulls need (n, 2) positions and n cluster ids; got {xy.shape} and {clusters.shape}")
    finite = np.isfinite(xy).all(1)
    out = {}
    for c in np.unique(clusters[clusters >= 0]):
        rows = np.flatnonzero((clusters == c) & finite)
        if coverage < 1 and len(rows) > 3:
            pts = xy[rows]
            d = np.linalg.norm(pts - np.median(pts, axis=0), axis=1)
            rows = rows[np.argsort(d, kind="stable")[:max(3, int(np.ceil(coverage * len(rows))))]]
        if len(rows) < 3:
            continue
        try:
            hull = ConvexHull(xy[rows])
        except QhullError:  # all on a line, or all one point
            continue
        out[int(c)] = rows[hull.vertices]
    return out


def agreement(labels, clusters) -> tuple[float | None, float | None]:
    """(NMI, ARI) between the labels and the cluster ids, on the labelled points; None without labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels, clusters = np.asarray(labels), np.asarray(clusters)
    keep = labels >= 0
    if not keep.any():
        return None, None
    return (float(normalized_mutual_info_score(labels[keep], clusters[keep])),
            float(adjusted_rand_score(labels[keep], clusters[keep])))


def cluster_scores(embeddings, labels, k: int | None = None, seed: int = 0, normalize: bool = True,
                   with_hdbscan: bool = True, distances=None
                   ) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Everything above at once: (metrics, per-point cluster ids, notes).

    metrics: nmi, ari, purity (k-means vs labels), silhouette (of the labels), kmeans_silhouette,
    and with HDBSCAN hdbscan_clusters, hdbscan_noise (fraction), hdbscan_nmi, hdbscan_ari,
    hdbscan_purity. Without labels, k must be given and the label-based numbers are None.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    notes: list[str] = []
    labelled = labels[labels >= 0]
    if k is None:
        k = len(np.unique(labelled))
        if k < 2:
            k = 2
            notes.append("k-means: fewer than 2 classes in the labels, k = 2 used")
    ids = {"kmeans": kmeans(embeddings, k, seed=seed, normalize=normalize)}
    nmi, ari = agreement(labels, ids["kmeans"])
    sil = silhouette(embeddings, labels, normalize=normalize, seed=seed, distances=distances)
    if sil is None and len(labelled):
        notes.append("silhouette undefined: it needs at least 2 classes among the labelled points")
    metrics = {"nmi": nmi, "ari": ari, "purity": purity(labels, ids["kmeans"]), "silhouette": sil,
               "kmeans_silhouette": silhouette(embeddings, ids["kmeans"], normalize=normalize, seed=seed,
                                               distances=distances)}
    if with_hdbscan:
        ids["hdbscan"] = hdbscan(embeddings, normalize=normalize)
        found = ids["hdbscan"]
        h_nmi, h_ari = agreement(labels, found)
        metrics.update(hdbscan_clusters=int(len(np.unique(found[found >= 0]))),
                       hdbscan_noise=float((found < 0).mean()), hdbscan_nmi=h_nmi, hdbscan_ari=h_ari,
                       hdbscan_purity=purity(labels, found))
    return metrics, ids, notes
