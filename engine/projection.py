"""2D maps of embeddings: PCA, UMAP, t-SNE, and a live mode that keeps the map still between snapshots.

``project(method, embeddings)`` draws one map. ``LiveProjection(method).update(embeddings)`` is called
with the embeddings of the SAME points at successive training steps; each new layout starts from the
previous one and is aligned to it, so a point moves only as much as its embedding changed and the map
can be animated and scrubbed:

- PCA: the new principal plane is rotated/reflected onto the previous layout by orthogonal Procrustes
  (Schönemann 1966: R = U Vᵀ from the SVD of Y_newᵀ Y_prev).
- UMAP: our own UMAP (McInnes, Healy & Melville 2018) in torch, CPU or GPU. A refresh rebuilds the
  fuzzy kNN graph of the new embeddings and runs a few epochs of the same SGD from the previous layout
  at a low learning rate.
- t-SNE: scikit-learn's TSNE, warm-started with ``init=`` the previous layout, no early exaggeration
  and a tenth of the first map's learning rate; points whose neighbourhood jumped are placed among
  their new neighbours first, as in UMAP.

The UMAP here follows umap-learn's definitions (umap-learn stays the reference for layout quality):
kNN with the point itself as its 0th neighbour; per point ρᵢ = distance to the nearest other point and
σᵢ found by binary search so that Σⱼ exp(-max(0, dᵢⱼ - ρᵢ)/σᵢ) = log₂ k; directed weights
wᵢⱼ = exp(-max(0, dᵢⱼ - ρᵢ)/σᵢ); the fuzzy union W = P + Pᵀ - P∘Pᵀ; edges below max(W)/n_epochs
dropped; each edge sampled in proportion to its weight; attraction along an edge
-2ab‖Δ‖^{2(b-1)} / (1 + a‖Δ‖^{2b}) Δ, repulsion from ``negative_sample_rate`` random points
2b / ((0.001 + ‖Δ‖²)(1 + a‖Δ‖^{2b})) Δ, each gradient coordinate clipped to ±4, learning rate decaying
linearly to 0; a, b fitted so that 1/(1 + a x^{2b}) ≈ the min_dist curve. What differs: an epoch's
edges are applied at once (gather, gradient, clip, ``index_add_``) instead of one by one (that is what
makes it fast in torch), edges fire on a schedule with a random phase, negatives come from a
pre-drawn random pool, and the first layout starts from PCA (umap-learn's default is spectral).
Sets above 2048 points use an approximate kNN: k-means cells (√n of them, warm-started from the
previous refresh's centroids) each searched exactly against its nearest cells, merged with the
previous refresh's neighbours (recall ≈ 0.92 cold on 70k Fashion-MNIST, rising with each refresh;
same trustworthiness as exact at 5k, at half the cost). A refresh also places points whose
neighbourhood jumped far (another cluster) among their new neighbours before the SGD, which alone
moves a point about one unit.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from engine.params import Param, resolve
from engine.registry import Registry

DeviceLike = str | torch.device | None


# --------------------------------------------------------------------------- input checks


def check_embeddings(embeddings, what: str = "embeddings") -> np.ndarray:
    """The embeddings as a float32 (N, D) array, or a ValueError saying what is wrong with them."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().numpy()
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{what} have shape {x.shape}: a projection needs a 2-D array (points, dims)")
    if len(x) < 2:
        raise ValueError(f"{what}: a projection needs at least 2 points; got {len(x)}")
    if x.shape[1] < 1:
        raise ValueError(f"{what} have no dimensions (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{what} have dtype {x.dtype}: a projection needs numbers")
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        rows = np.nonzero(~finite.all(1))[0]
        raise ValueError(f"{what} contain {n_nan} NaN and {n_inf} infinite values in {len(rows)} of "
                         f"{len(x)} points (first at row {rows[0]}): the model has diverged or its "
                         "input is broken; a projection needs finite numbers")
    return x


def all_equal(x: np.ndarray) -> bool:
    """All points equal (complete collapse): no direction to draw them along."""
    return bool(np.all(x == x[0]))


def _degenerate_layout(n: int) -> np.ndarray:
    """Every point at the origin: points that cannot be told apart are drawn as one. (A tiny random
    blob looked, once the view fitted itself to it, like any healthy cloud.)"""
    return np.zeros((n, 2), np.float32)


def _device(device: DeviceLike) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


# --------------------------------------------------------------------------- alignment


def procrustes(moving: np.ndarray, target: np.ndarray, translate: bool = True) -> np.ndarray:
    """``moving`` rotated/reflected (and shifted, if ``translate``) to best match ``target``.

    Orthogonal Procrustes: with centred A (moving) and B (target), R = U Vᵀ where U S Vᵀ = svd(Aᵀ B)
    minimises ‖A R - B‖_F over orthogonal R. No scaling: distances in the layout keep their meaning.
    """
    a = moving.astype(np.float64)
    b = target.astype(np.float64)
    ca, cb = (a.mean(0), b.mean(0)) if translate else (np.zeros(a.shape[1]), np.zeros(b.shape[1]))
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    return ((a - ca) @ (u @ vt) + cb).astype(np.float32)


# --------------------------------------------------------------------------- projections


class Projector:
    """One way to lay embeddings out in 2D.

    ``fit(x)`` draws a first layout; ``refresh(x, previous)`` draws the same points again after their
    embeddings changed, starting from / aligned to ``previous``. ``notes`` collects what the
    projector adjusted (e.g. fewer neighbours than asked), for the run log.
    """

    label = ""  # the name a person reads (menus, titles)
    summary = ""
    warm = False  # True when refresh starts from the previous layout (not only aligns to it)
    params: list[Param] = [
        Param("n_neighbors", 15, "Neighbours that define each point's neighbourhood (UMAP's k; t-SNE's "
              "perplexity is twice it).", int, low=2),
        Param("metric", "euclidean", "Distance between embeddings the map preserves.", str,
              choices=("euclidean", "cosine")),
    ]

    def __init__(self, seed: int = 0, device: DeviceLike = None, **params):
        """``params``: any of this projector's ``params`` (by name); checked, defaults filled in."""
        values = resolve(type(self).params, params)
        for name, value in values.items():
            setattr(self, name, value)
        self.seed = int(seed)
        self.device = _device(device)
        self.notes: list[str] = []

    def reset(self) -> None:
        """Forget any state kept between layouts (random streams restart from the seed)."""

    def fit(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def refresh(self, x: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return procrustes(self.fit(x), previous)


PROJECTIONS: Registry[type[Projector]] = Registry("projection")


@PROJECTIONS.register("pca")
class PCAProjector(Projector):
    label = "PCA"
    summary = "The plane of largest variance (linear: global distances kept, clusters may overlap)."

    def fit(self, x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(x, device=self.device, dtype=torch.float64)
        t = t - t.mean(0)
        if t.shape[1] == 1:
            return torch.cat([t, torch.zeros_like(t)], 1).float().cpu().numpy()
        # The top-2 principal axes: from the SVD of the points when there are fewer points than dimensions
        # (the eigenvectors of a 4096 x 4096 scatter matrix took 100 s for 60 points here), else the
        # top-2 eigenvectors of the D x D scatter matrix (cheap for D up to a few thousand).
        if t.shape[0] < t.shape[1]:
            comps = torch.linalg.svd(t, full_matrices=False)[2][:2].T
        else:
            comps = torch.linalg.eigh(t.T @ t)[1][:, [-1, -2]]
        # Fixed sign (largest loading positive) so the same data always gives the same picture.
        signs = torch.sign(comps[comps.abs().argmax(0), torch.arange(2, device=t.device)])
        y = t @ (comps * torch.where(signs == 0, 1.0, signs))
        return y.float().cpu().numpy()

    def refresh(self, x: np.ndarray, previous: np.ndarray) -> np.ndarray:
        # Both layouts are centred at 0: rotation/reflection only.
        return procrustes(self.fit(x), previous, translate=False)


@PROJECTIONS.register("tsne")
class TSNEProjector(Projector):
    """scikit-learn's Barnes-Hut t-SNE (van der Maaten & Hinton 2008); perplexity = 2 x n_neighbors
    (30 for the default 15, scikit-learn's default), reduced when there are too few points.

    A refresh continues the optimisation from the previous layout without early exaggeration, at a
    tenth of the learning rate the first map ended with, after placing the points whose
    neighbourhood jumped (``relocate``, as UMAP's refresh does). The low rate is what keeps a still
    layout still: scikit-learn's ``learning_rate="auto"`` is N / (4 x exaggeration), so turning
    exaggeration off raises it twelvefold (500 instead of 50 for the 2000-point map), and its
    per-coordinate gains grow by 0.2 an iteration while a force keeps its direction, which turns the
    small residual forces of an unconverged t-SNE (it keeps expanding) into visible drift. Points that
    really moved are carried by the relocation and then by the same growing gains.
    """

    label = "t-SNE"
    summary = "t-SNE (scikit-learn): local neighbourhoods kept, distances between clusters not meaningful."
    warm = True
    _EXAGGERATION, _ITERATIONS = 12.0, 1000  # the first map's: scikit-learn's defaults
    _REFRESH_ITERATIONS = 250  # scikit-learn's fewest
    _REFRESH_RATE_FRACTION = 0.1  # of the first map's learning rate (UMAP's refresh uses a tenth too)

    def __init__(self, seed: int = 0, device: DeviceLike = None, **params):
        super().__init__(seed, device, **params)
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self._graph: tuple | None = None  # kNN graph (head, tail, weight) of the last layout's points
        self.relocated = 0  # points the last refresh placed among their new neighbours first

    def _perplexity(self, n: int) -> float:
        wanted = 2.0 * self.n_neighbors
        allowed = max(1.0, (n - 1) / 3.0)
        if wanted > allowed:
            self.notes.append(f"t-SNE perplexity reduced from {wanted:g} to {allowed:g}: only {n} points")
            return allowed
        return wanted

    def _neighbour_graph(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each point's ``n_neighbors`` nearest points, as equally weighted edges (head, tail, weight)."""
        from engine.neighbours import knn

        k = min(self.n_neighbors, len(x) - 1)
        _, idx = knn(x, x, k, metric=self.metric, exclude_self=True)
        tail = torch.as_tensor(idx).reshape(-1)
        head = torch.arange(len(x)).repeat_interleave(k)
        return head, tail, torch.ones(len(tail))

    def _run(self, x: np.ndarray, init, exaggeration: float, max_iter: int, learning_rate) -> np.ndarray:
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=self._perplexity(len(x)), init=init, metric=self.metric,
                    early_exaggeration=exaggeration, max_iter=max_iter, random_state=self.seed,
                    learning_rate=learning_rate)
        return tsne.fit_transform(x).astype(np.float32)

    def fit(self, x: np.ndarray) -> np.ndarray:
        self._graph = self._neighbour_graph(x)
        return self._run(x, "pca", self._EXAGGERATION, self._ITERATIONS, "auto")

    def refresh(self, x: np.ndarray, previous: np.ndarray) -> np.ndarray:
        graph = self._neighbour_graph(x)
        y0 = torch.as_tensor(previous, dtype=torch.float32)
        self.relocated = 0
        if self._graph is not None and len(self._graph[0]) and int(self._graph[0].max()) < len(y0):
            extent = float((y0.max(0).values - y0.min(0).values).max())
            y0, self.relocated = relocate(y0, self._graph, graph, 0.05 * extent, generator=self.generator)
            if self.relocated:
                self.notes.append(f"{self.relocated} points changed neighbourhood so much that they were "
                                  "placed among their new neighbours before the refresh")
        self._graph = graph
        # scikit-learn's "auto" rate of the first map, N / (4 x exaggeration) but at least 50
        rate = self._REFRESH_RATE_FRACTION * max(len(x) / (4 * self._EXAGGERATION), 50.0)
        layout = self._run(x, y0.numpy(), 1.0, self._REFRESH_ITERATIONS, rate)
        return procrustes(layout, previous)  # a rigid alignment undoes any drift of the whole picture


# --------------------------------------------------------------------------- UMAP in torch


@lru_cache(maxsize=16)
def find_ab_params(spread: float = 1.0, min_dist: float = 0.1) -> tuple[float, float]:
    """a, b such that 1 / (1 + a x^{2b}) fits the curve that is 1 up to ``min_dist`` and
    exp(-(x - min_dist) / spread) after it, on x in [0, 3 spread] (umap-learn's definition:
    a ≈ 1.577, b ≈ 0.895 for min_dist = 0.1, spread = 1)."""
    from scipy.optimize import curve_fit

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


def smooth_knn_dist(dists: torch.Tensor, n_iter: int = 64, tolerance: float = 1e-5,
                    min_scale: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point (σ, ρ) of UMAP's fuzzy set, for kNN distances (n, k) whose column 0 is the point itself.

    ρᵢ = the smallest non-zero distance (local connectivity 1). σᵢ: binary search (``n_iter`` halvings,
    stop within ``tolerance``) for Σ_{j≥1} exp(-max(0, dᵢⱼ - ρᵢ)/σᵢ) = log₂ k. σᵢ is kept at least
    ``min_scale`` x the mean distance (of the point if ρᵢ > 0, else of all points), as umap-learn does.
    """
    d = dists.double()
    n, k = d.shape
    target = math.log2(k)
    positive = d > 0
    has_nonzero = positive.any(1)
    first_nonzero = torch.argmax(positive.to(torch.int8), dim=1)
    rho = torch.where(has_nonzero, d.gather(1, first_nonzero[:, None])[:, 0], torch.zeros_like(d[:, 0]))
    shifted = (d[:, 1:] - rho[:, None])
    lo = torch.zeros(n, dtype=d.dtype, device=d.device)
    hi = torch.full_like(lo, math.inf)
    mid = torch.ones_like(lo)
    done = torch.zeros(n, dtype=torch.bool, device=d.device)
    for _ in range(n_iter):
        psum = torch.where(shifted > 0, torch.exp(-shifted / mid[:, None]), torch.ones_like(shifted)).sum(1)
        done = done | ((psum - target).abs() < tolerance)
        if bool(done.all()):
            break
        too_big = psum > target
        new_hi = torch.where(too_big, mid, hi)
        new_lo = torch.where(too_big, lo, mid)
        new_mid = torch.where(torch.isinf(new_hi), mid * 2, (new_lo + new_hi) / 2)
        lo, hi = torch.where(done, lo, new_lo), torch.where(done, hi, new_hi)
        mid = torch.where(done, mid, new_mid)
    floor = min_scale * torch.where(rho > 0, d.mean(1), d.mean())
    sigma = torch.maximum(mid, floor)
    return sigma, rho


def fuzzy_simplicial_set(knn_idx: torch.Tensor, knn_dists: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """UMAP's symmetric fuzzy graph as COO (rows, cols, weights), both directions of every edge.

    ``knn_idx``/``knn_dists`` (n, k): each point's k nearest points, itself first (distance 0).
    Directed memberships exp(-max(0, d - ρ)/σ) (1 where d ≤ ρ), 0 to itself; then the fuzzy union
    W = P + Pᵀ - P∘Pᵀ.
    """
    n, k = knn_idx.shape
    sigma, rho = smooth_knn_dist(knn_dists)
    d = knn_dists.double()
    rows = torch.arange(n, device=knn_idx.device).repeat_interleave(k)
    cols = knn_idx.reshape(-1).long()
    shifted = (d - rho[:, None]).reshape(-1)
    sig = sigma.repeat_interleave(k)
    vals = torch.where((shifted <= 0) | (sig == 0), torch.ones_like(shifted), torch.exp(-shifted / sig))
    keep = (cols != rows) & (vals > 0)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    # P + Pᵀ - P∘Pᵀ: gather both directions under one key per ordered pair.
    keys = torch.cat([rows * n + cols, cols * n + rows])
    both = torch.cat([vals, vals])
    uniq, inverse = torch.unique(keys, return_inverse=True)
    total = torch.zeros(len(uniq), dtype=both.dtype, device=both.device).index_add_(0, inverse, both)
    count = torch.zeros(len(uniq), dtype=torch.long, device=both.device).index_add_(
        0, inverse, torch.ones_like(inverse))
    product = torch.ones_like(total).scatter_reduce_(0, inverse, both, reduce="prod")
    weights = total - torch.where(count > 1, product, torch.zeros_like(product))
    return uniq // n, uniq % n, weights.float()


def _kmeans(x: torch.Tensor, centroids: torch.Tensor, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's iterations from ``centroids``; returns (centroids, assignment). Empty cells keep theirs."""
    for _ in range(n_iter + 1):
        # |x|² is the same for every centroid of a row: it does not change the argmin
        assign = torch.addmm((centroids * centroids).sum(1)[None], x, centroids.T, alpha=-2).argmin(1)
        if _ == n_iter:
            break
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=len(centroids)).to(x.dtype)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
    return centroids, assign


def _merge_previous(x: torch.Tensor, dists: torch.Tensor, idx: torch.Tensor, previous: torch.Tensor,
                    chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of (found neighbours ∪ previous neighbours), columns 1: of each (n, k), self in column 0."""
    out_d, out_i = dists.clone(), idx.clone()
    sq = (x * x).sum(1)
    for s in range(0, len(x), chunk):
        rows = slice(s, s + chunk)
        prev = previous[rows, 1:]
        xr = x[rows]
        cols = x.index_select(0, prev.reshape(-1)).view(len(prev), prev.shape[1], -1)
        # ‖a - b‖² = |a|² + |b|² - 2 a·b on centred vectors (the caller centres them)
        dot = torch.bmm(cols, xr[:, :, None])[:, :, 0]
        prev_d = (sq[prev] + sq[rows, None] - 2 * dot).clamp_min_(0).sqrt_()
        cand_i = torch.cat([idx[rows, 1:], prev], 1)
        cand_d = torch.cat([dists[rows, 1:], prev_d], 1)
        cand_i, order = cand_i.sort(1)
        cand_d = cand_d.gather(1, order)
        cand_d[:, 1:][cand_i[:, 1:] == cand_i[:, :-1]] = float("inf")  # each neighbour once
        best_d, best = torch.topk(cand_d, idx.shape[1] - 1, dim=1, largest=False)
        out_d[rows, 1:], out_i[rows, 1:] = best_d, cand_i.gather(1, best)
    return out_d, out_i


def approximate_knn(x: torch.Tensor, k: int, centroids: torch.Tensor | None = None,
                    n_probe: int | None = None, n_iter: int = 2, generator: torch.Generator | None = None,
                    previous: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Euclidean kNN (self included, first) by k-means cells: √n cells; the points of each cell are
    compared exactly with every point of the ``n_probe`` cells whose centroids are nearest its own.

    ``centroids`` from the previous refresh warm-start k-means (the embeddings moved a little);
    ``previous`` (n, k) neighbour indices of the previous refresh are candidates too, so the graph
    of unchanged embeddings does not flicker and its recall only grows from refresh to refresh.
    ``n_probe`` None: 8 cells, 4 when ``previous`` neighbours come along (they carry the recall).
    Returns (distances (n, k), indices (n, k), centroids).
    """
    if n_probe is None:
        n_probe = 8 if previous is None else 4
    if previous is not None:
        n_iter = min(n_iter, 1)  # the cells only follow the embeddings' small moves
    n = len(x)
    n_cells = max(1, int(round(math.sqrt(n))))
    if centroids is None or len(centroids) != n_cells or centroids.shape[1] != x.shape[1]:
        pick = torch.randperm(n, generator=generator)[:n_cells].to(x.device)
        centroids, n_iter = x[pick].clone(), n_iter + 3
    centroids, assign = _kmeans(x, centroids, n_iter)
    order = torch.argsort(assign)
    counts = torch.bincount(assign, minlength=n_cells)
    starts = torch.cumsum(counts, 0) - counts
    n_probe = min(n_probe, n_cells)
    c_sq = (centroids * centroids).sum(1)
    probes = torch.topk(c_sq[None] - 2 * centroids @ centroids.T, n_probe, dim=1, largest=False).indices
    x_sq = (x * x).sum(1)
    others = k - 1  # the point itself is prepended as neighbour 0
    out_d = torch.zeros(n, k, device=x.device)
    out_i = torch.arange(n, device=x.device)[:, None].repeat(1, k)
    starts_l, counts_l, probes_l = starts.tolist(), counts.tolist(), probes.tolist()
    for c in range(n_cells):
        if counts_l[c] == 0 or others == 0:
            continue
        members = order[starts_l[c]:starts_l[c] + counts_l[c]]
        cand = torch.cat([order[starts_l[p]:starts_l[p] + counts_l[p]] for p in probes_l[c]])
        xm = x.index_select(0, members)
        d = torch.addmm(x_sq[cand][None], xm, x.index_select(0, cand).T, alpha=-2)
        d = d.add_(x_sq[members][:, None]).clamp_min_(0)
        d[cand[None] == members[:, None]] = float("inf")
        kk = min(others, len(cand) - 1)
        dc, ic = torch.topk(d, kk, dim=1, largest=False)
        if kk < others:  # a tiny neighbourhood: repeat its farthest candidate
            dc = torch.cat([dc, dc[:, -1:].expand(-1, others - kk)], 1)
            ic = torch.cat([ic, ic[:, -1:].expand(-1, others - kk)], 1)
        out_d[members, 1:], out_i[members, 1:] = dc.sqrt(), cand[ic]
    if previous is not None and previous.shape == out_i.shape:
        out_d, out_i = _merge_previous(x, out_d, out_i, previous.to(x.device))
    return out_d, out_i, centroids


def exact_knn_with_self(x: torch.Tensor, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN from engine.neighbours, with the point itself prepended as neighbour 0 (distance 0)."""
    from engine.neighbours import knn

    d, i = knn(x, x, k - 1, metric=metric, exclude_self=True, device=x.device)
    n = len(x)
    d = torch.cat([torch.zeros(n, 1), torch.as_tensor(d)], 1).to(x.device)
    i = torch.cat([torch.arange(n)[:, None], torch.as_tensor(i)], 1).to(x.device)
    return d, i


def optimize_layout(y: torch.Tensor, head: torch.Tensor, tail: torch.Tensor, weights: torch.Tensor,
                    n_epochs: int, learning_rate: float, a: float, b: float,
                    negative_sample_rate: int, generator: torch.Generator,
                    complex_points: bool | None = None) -> torch.Tensor:
    """UMAP's SGD, one vectorised step per epoch (see the module docstring for the gradients).

    Edge e fires when w_e / max(w) of the epochs have passed since its last firing (umap-learn's
    epochs-per-sample schedule), starting at a random phase so that short refreshes sample edges
    fairly. Each firing moves both ends (attraction) and pushes the head away from
    ``negative_sample_rate`` random points. The learning rate decays linearly to 0.

    ``complex_points`` (default: on the CPU) holds the layout as complex numbers x + iy: gathers and
    ``index_add_`` then move one 8-byte element per point, several times faster on the CPU than
    (n, 2) rows. Other devices use (n, 2) rows; both compute the same steps.
    """
    device = y.device
    y = y.clone()
    n, n_edges = len(y), len(head)
    if n_edges == 0 or n_epochs == 0:
        return y
    if complex_points is None:
        complex_points = device.type == "cpu"
    rate = negative_sample_rate
    period = (weights.max() / weights).to(device)  # epochs between firings
    next_fire = torch.rand(n_edges, generator=generator).to(device) * period
    # Negatives are read as a contiguous window of a pre-drawn pool (no per-epoch RNG, no wrap).
    most = n_edges * max(rate, 1)
    pool = torch.randint(0, n, (most + (1 << 16),), generator=generator).to(device)
    offsets = torch.randint(0, 1 << 16, (n_epochs,), generator=generator).tolist()
    points = torch.view_as_complex(y.contiguous()) if complex_points else y
    row = points.shape[1:]  # () for complex points, (2,) for rows

    def sq(diff: torch.Tensor) -> torch.Tensor:
        return diff.real * diff.real + diff.imag * diff.imag if complex_points else (diff * diff).sum(-1)

    def scaled_clipped(coeff: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
        g = coeff * diff if complex_points else coeff[..., None] * diff
        (torch.view_as_real(g) if complex_points else g).clamp_(-4.0, 4.0)  # each coordinate
        return g

    for epoch in range(n_epochs):
        alpha = learning_rate * (1.0 - epoch / n_epochs)
        fire = torch.nonzero(next_fire <= epoch).squeeze(1)
        if len(fire) == 0:
            continue
        next_fire[fire] += period[fire]
        h, t = head.index_select(0, fire), tail.index_select(0, fire)
        yh = points.index_select(0, h)
        diff = yh - points.index_select(0, t)
        d2 = sq(diff).clamp_min_(1e-30)  # 0 only if diff is 0, and then the step is 0 anyway
        d2b = d2.pow(b)
        grad = scaled_clipped((-2.0 * a * b) * (d2b / d2) / (a * d2b + 1.0), diff)
        step = torch.zeros_like(points).index_add_(0, t, grad, alpha=-alpha)
        if rate > 0:
            neg = pool[offsets[epoch]:offsets[epoch] + len(fire) * rate]
            diff = yh[:, None] - points.index_select(0, neg).view(len(fire), rate, *row)
            d2 = sq(diff)
            grad = grad + scaled_clipped((2.0 * b) / ((0.001 + d2) * (a * d2.pow(b) + 1.0)), diff).sum(1)
        step.index_add_(0, h, grad, alpha=alpha)
        points += step
    return torch.view_as_real(points).clone() if complex_points else points


def _neighbour_mean(y: torch.Tensor, head: torch.Tensor, tail: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per point, the weighted mean position of its graph neighbours (itself where it has none)."""
    if y.device.type == "cpu":  # one 8-byte complex element per point: faster gathers (see above)
        yc = torch.view_as_complex(y.contiguous())
        num = torch.view_as_real(torch.zeros_like(yc).index_add_(0, head, w * yc.index_select(0, tail)))
    else:
        num = torch.zeros_like(y).index_add_(0, head, w[:, None] * y.index_select(0, tail))
    den = torch.zeros(len(y), device=y.device).index_add_(0, head, w)
    return torch.where(den[:, None] > 0, num / den.clamp_min(1e-30)[:, None], y)


def relocate(y: torch.Tensor, old_graph: tuple, new_graph: tuple, threshold: float,
             n_iter: int = 10, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Points whose neighbourhood moved far away are placed among their new neighbours first.

    A warm refresh moves a point by at most about one unit (a few epochs at a low learning rate), so
    a point whose embedding jumped to another cluster would stay behind, drawn among strangers. The
    gap of a point = distance from it to the weighted mean of its graph neighbours' positions; when
    the new graph's gap exceeds the old graph's by more than ``threshold``, the point is moved to the
    mean of its new neighbours, ``n_iter`` times (neighbours that moved too are followed), plus a
    little jitter so moved twins do not sit on one spot. Points whose neighbours did not change keep
    their gap and stay put. Returns (layout, number of points moved).
    """
    gap_old = (y - _neighbour_mean(y, *old_graph)).norm(dim=1)
    gap_new = (y - _neighbour_mean(y, *new_graph)).norm(dim=1)
    jump = gap_new > gap_old + threshold
    count = int(jump.sum())
    if count == 0:
        return y, 0
    y = y.clone()
    for _ in range(n_iter):
        y[jump] = _neighbour_mean(y, *new_graph)[jump]
    noise = torch.randn(count, 2, generator=generator).to(y.device)
    y[jump] += noise * float(gap_old.median()) * 0.1
    return y, count


@PROJECTIONS.register("umap")
class UMAPProjector(Projector):
    """UMAP in torch (see the module docstring and ``params``)."""

    label = "UMAP"
    summary = "UMAP (own torch version): local neighbourhoods kept, fast warm refreshes for live maps."
    warm = True

    params = Projector.params + [
        Param("min_dist", 0.1, "How tightly points may pack in the map (umap-learn's min_dist).", float,
              low=0.0, low_exclusive=True),
        Param("n_epochs", "auto", "Epochs of the first map; auto: 500 up to 10k points, else 200 "
              "(umap-learn's rule).", int, low=1, special=("auto",)),
        Param("learning_rate", 1.0, "Starting learning rate of the first map.", float, low=0.0,
              low_exclusive=True),
        Param("refresh_epochs", 15, "Epochs of each warm refresh of a live map.", int, low=0),
        Param("refresh_learning_rate", 0.1, "Starting learning rate of a warm refresh (low: points stay "
              "put unless their neighbourhood changed).", float, low=0.0, low_exclusive=True),
        Param("negative_sample_rate", 5, "Random points each point is pushed away from per edge.", int, low=0),
        Param("exact_knn_max", 2048, "Largest set searched exactly for its kNN graph; above, k-means "
              "cells (approximate).", int, low=0),
    ]

    def __init__(self, seed: int = 0, device: DeviceLike = None, **params):
        if params.get("n_epochs", "auto") is None:
            params["n_epochs"] = "auto"
        super().__init__(seed, device, **params)
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self._centroids: torch.Tensor | None = None  # k-means cells of the last approximate kNN
        self._knn: torch.Tensor | None = None  # its neighbour indices (candidates for the next one)
        self._graph: tuple | None = None  # (head, tail, weight) of the last layout
        self.relocated = 0  # points the last refresh placed among their new neighbours first

    def _epochs(self, n: int) -> int:
        return self.n_epochs if self.n_epochs != "auto" else (500 if n <= 10000 else 200)

    def _k(self, n: int) -> int:
        if self.n_neighbors > n:
            self.notes.append(f"UMAP n_neighbors reduced from {self.n_neighbors} to {n}: only {n} points")
            return n
        return self.n_neighbors

    def graph(self, x: np.ndarray, n_epochs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fuzzy graph (head, tail, weight) of ``x``, weak edges (< max / n_epochs) dropped."""
        t = torch.as_tensor(x, device=self.device, dtype=torch.float32)
        k = self._k(len(t))
        if len(t) <= self.exact_knn_max:
            dists, idx = exact_knn_with_self(t, k, self.metric)
        else:
            # Cosine through unit vectors: ‖u - v‖² = 2 - 2 cos, so cosine distance = ‖u - v‖² / 2.
            u = torch.nn.functional.normalize(t, dim=1) if self.metric == "cosine" else t - t.mean(0)
            previous = self._knn if self._knn is not None and len(self._knn) == len(u) else None
            dists, idx, self._centroids = approximate_knn(u, k, self._centroids, generator=self.generator,
                                                          previous=previous)
            self._knn = idx
            if self.metric == "cosine":
                dists = dists * dists / 2
        head, tail, w = fuzzy_simplicial_set(idx, dists)
        keep = w >= w.max() / n_epochs
        return head[keep], tail[keep], w[keep]

    def _initial(self, x: np.ndarray) -> torch.Tensor:
        """PCA, scaled as umap-learn scales every initialisation: largest |coordinate| 10, noise 1e-4,
        then each axis stretched to [0, 10]."""
        pca = PCAProjector(seed=self.seed).fit(x).astype(np.float64)
        pca = pca * (10.0 / max(np.abs(pca).max(), 1e-30))
        pca = torch.as_tensor(pca) + torch.randn(pca.shape, generator=self.generator, dtype=torch.float64) * 1e-4
        span = (pca.max(0).values - pca.min(0).values).clamp_min(1e-12)
        return (10.0 * (pca - pca.min(0).values) / span).float().to(self.device)

    def fit(self, x: np.ndarray) -> np.ndarray:
        self._centroids = self._knn = None
        n_epochs = self._epochs(len(x))
        y0 = self._initial(x)
        self._graph = self.graph(x, n_epochs)
        y = optimize_layout(y0, *self._graph, n_epochs, self.learning_rate, *find_ab_params(1.0, self.min_dist),
                            self.negative_sample_rate, self.generator)
        return y.cpu().numpy().astype(np.float32)

    def refresh(self, x: np.ndarray, previous: np.ndarray) -> np.ndarray:
        # The graph keeps the first layout's edge threshold (max / n_epochs of a full run) so a
        # refresh optimises the same objective, only for fewer epochs.
        y0 = torch.as_tensor(previous, dtype=torch.float32, device=self.device)
        graph = self.graph(x, self._epochs(len(x)))
        self.relocated = 0
        if self._graph is not None and len(self._graph[0]) and int(self._graph[0].max()) < len(y0):
            # A refresh moves a point about one unit at most; 5 % of the extent is beyond that.
            extent = float((y0.max(0).values - y0.min(0).values).max())
            y0, self.relocated = relocate(y0, self._graph, graph, 0.05 * extent, generator=self.generator)
            if self.relocated:
                self.notes.append(f"{self.relocated} points changed neighbourhood so much that they were "
                                  "placed among their new neighbours before the refresh")
        self._graph = graph
        y = optimize_layout(y0, *graph, self.refresh_epochs, self.refresh_learning_rate,
                            *find_ab_params(1.0, self.min_dist), self.negative_sample_rate, self.generator)
        return y.cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- entry points


def _make(method: str, seed: int, device: DeviceLike, params: dict) -> Projector:
    cls = PROJECTIONS.get(method)
    return cls(seed=seed, device=device, **params)


def project(method: str, embeddings: np.ndarray, seed: int = 0, device: DeviceLike = None,
            **params) -> np.ndarray:
    """One 2D map (N, 2) float32 of ``embeddings`` (N, D) by ``method`` (one of ``PROJECTIONS``).

    ``params`` go to the projector (e.g. ``n_neighbors``, ``metric``). All-equal embeddings give
    one point (every row at 0) instead of failing; NaN/inf, 1 point or a non-2-D array raise ValueError.
    """
    x = check_embeddings(embeddings)
    projector = _make(method, seed, device, params)
    if all_equal(x):
        return _degenerate_layout(len(x))
    return projector.fit(x)


def layout(method: str, embeddings: np.ndarray, previous: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A 2D map (N, 2) float32 of ``embeddings`` by ``method``, on the CPU. With ``previous`` (the map of
    the same points at the snapshot before), the new one starts from it and is aligned to it
    (``LiveProjection``), so a view can animate from one to the other."""
    live = LiveProjection(method, seed=seed, device="cpu")
    if previous is not None and len(previous) == len(embeddings):
        live.layout = np.asarray(previous, dtype=np.float32)
    # a writable copy: snapshot arrays may be read-only, and torch warns on those
    return np.asarray(live.update(np.array(embeddings, dtype=np.float32)), dtype=np.float32)


class LiveProjection:
    """Successive maps of the same points during training, each aligned to the previous one.

    ``update(embeddings)`` returns the (N, 2) float32 layout for this snapshot: the first call draws
    a fresh map, later calls refresh it (warm start for UMAP/t-SNE, Procrustes for PCA), so a point
    moves only as much as its embedding changed. ``reset()`` forgets the layout (next update starts
    fresh); so does an update with a different number of points (with a note). ``notes`` says what
    the last update adjusted (reduced neighbours, a collapsed set, relocated points …).
    """

    def __init__(self, method: str = "umap", n_neighbors: int = 15, seed: int = 0,
                 device: DeviceLike = None, **params):
        self.method = method
        self.seed = seed
        self.projector = _make(method, seed, device, dict(params, n_neighbors=n_neighbors))
        self.layout: np.ndarray | None = None
        self.notes: list[str] = []
        self.updates = 0
        self._degenerate = False  # the last layout was one point (collapse): nothing to start from

    def reset(self) -> None:
        self.projector.reset()
        self.layout = None
        self._degenerate = False
        self.updates = 0
        self.notes = []

    def update(self, embeddings) -> np.ndarray:
        x = check_embeddings(embeddings)
        self.projector.notes = []
        if self.layout is not None and len(x) != len(self.layout):
            # Other points than last time: nothing to align to. A fresh map beats a failed evaluation.
            self.projector.notes.append(f"the map follows {len(x)} points now instead of "
                                        f"{len(self.layout)}: drawn afresh, not aligned to the last one")
            self.reset()
        constant = all_equal(x)
        if constant:
            layout = _degenerate_layout(len(x))
            self.projector.notes.append("all embeddings are equal (complete collapse): the map is one "
                                        "point")
        elif self.layout is None or self._degenerate:
            layout = self.projector.fit(x)
        else:
            layout = self.projector.refresh(x, self.layout)
        self._degenerate = constant
        self.notes = list(self.projector.notes)
        self.layout = layout
        self.updates += 1
        return layout
