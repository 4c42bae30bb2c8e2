"""The five properties of a good representation (the course's list), one number each.

- smoothness: how much a small random pixel perturbation moves the embedding, per unit of input
  change, relative to the same ratio between different images (a dimensionless local/global stretch
  ratio; lower = smoother, 1 = noise moves the embedding as much per pixel as real differences do).
- invariance: 1 - (mean distance between two augmented views of the same image) / (mean distance
  between views of different images); 1 = views coincide, 0 = no closer than strangers. On ``shapes``
  the same with images that differ in exactly one known factor (redrawn with engine.data.shapes).
- clustering: silhouette of the classes (engine.metrics.clusters) and leave-one-out kNN accuracy.
- sparsity: Hoyer's sparsity (Hoyer 2004) of each centred embedding, averaged, and the participation
  ratio (sum lambda)^2 / sum lambda^2 of the covariance spectrum (how many dimensions carry variance).
- disentanglement (known factors only): per-factor linear predictability (held-out R^2, or accuracy
  for a categorical factor), DCI disentanglement (Eastwood & Williams 2018) from the linear
  importance matrix, and the mutual information gap (MIG, Chen et al. 2018).

All distances are euclidean on the raw embeddings in ratios, so a common offset or a global scale
(a fresh convnet, see engine.metrics.collapse) changes none of these numbers.
"""
from __future__ import annotations

import numpy as np
import torch

# factors whose values wrap around (hue 0 and 1 are the same colour): predicted through (cos, sin)
CIRCULAR_FACTORS = {"hue": 1.0}


# --- encoder passes -------------------------------------------------------------------------------

@torch.no_grad()
def _encode(encoder: torch.nn.Module, images: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    """Float images in [0, 1] -> float32 embeddings on the CPU, eval mode (the training mode is restored)."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = [encoder(images[i:i + batch_size].to(device)).float().cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def _float_images(images, rows: np.ndarray | None = None) -> torch.Tensor:
    """uint8 (or float in [0, 1]) images as float in [0, 1] on the CPU, where the seeded noise and
    augmentation draws happen (the encoder pass moves them to its device)."""
    x = images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
    if rows is not None:
        x = x[torch.from_numpy(rows).to(x.device)]
    x = x.cpu()
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random pairing i -> j with j != i (a cyclic shift of a random order)."""
    order = rng.permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, 1)
    return partner


def _stranger_distance(e: torch.Tensor, rng: np.random.Generator) -> float:
    """Mean distance between embeddings of different images (random pairs i != j)."""
    return float((e - e[torch.from_numpy(_derangement(len(e), rng))]).norm(dim=1).mean())


# --- smoothness -----------------------------------------------------------------------------------

def smoothness(encoder: torch.nn.Module, images, noise: float = 0.02, n: int = 256, seed: int = 0,
               device: str | torch.device = "cpu") -> float:
    """mean_i(||f(x_i + d_i) - f(x_i)|| / ||d_i||) / mean_i(||f(x_i) - f(x_j)|| / ||x_i - x_j||).

    d_i is Gaussian pixel noise of std ``noise`` (in [0, 1] units, clipped to the valid range; the
    clipped difference is what is divided by), x_j a random other image. Lower = smoother.
    """
    if not noise > 0:
        raise ValueError(f"noise: {noise!r} is not valid; allowed: a number > 0")
    if len(images) < 2:
        raise ValueError("smoothness needs at least 2 images")
    x = _float_images(images, _subset(len(images), n, seed))
    g = torch.Generator().manual_seed(seed)
    noisy = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    e = _encode(encoder, torch.cat([x, noisy]), device)
    clean, moved = e[:len(x)], e[len(x):]
    dx = (noisy - x).flatten(1).norm(dim=1)
    local = ((moved - clean).norm(dim=1) / dx.clamp_min(1e-12))[dx > 0].mean()
    partner = torch.from_numpy(_derangement(len(x), np.random.default_rng(seed)))
    dxx = (x - x[partner]).flatten(1).norm(dim=1)
    keep = dxx > 0  # duplicate images say nothing about the stretch
    if not keep.any():
        return float("nan")
    global_ = ((clean - clean[partner]).norm(dim=1)[keep] / dxx[keep]).mean()
    if global_ == 0:
        return float("nan")  # every image maps to the same point: no stretch to compare with
    return float(local / global_)


# --- invariance -----------------------------------------------------------------------------------

def view_embeddings(encoder: torch.nn.Module, images, augment: torch.nn.Module, n: int = 256,
                    seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of two random augmented views of ``n`` images (row i of both = the same image).

    ``augment`` maps float images (B, C, H, W) in [0, 1] to views (and accepts ``generator=``): the
    method's own views, or the dataset's (engine.augment.dataset_views; no flips on digits).
    """
    x = _float_images(images, _subset(len(images), n, seed))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        v1, v2 = augment(x, generator=g), augment(x, generator=g)
    e = _encode(encoder, torch.cat([v1, v2]), device)
    return e[:len(x)], e[len(x):]


def invariance(view1: torch.Tensor, view2: torch.Tensor, seed: int = 0) -> float:
    """1 - mean ||f(v1_i) - f(v2_i)|| / mean ||f(v1_i) - f(v2_j)|| (j != i): 1 = the two views of an
    image coincide, 0 = they are no closer than views of different images."""
    a, b = torch.as_tensor(view1).float(), torch.as_tensor(view2).float()
    if len(a) < 2:
        return float("nan")
    partner = torch.from_numpy(_derangement(len(a), np.random.default_rng(seed)))
    strangers = float((a - b[partner]).norm(dim=1).mean())
    if strangers == 0:
        return float("nan")  # all views in one point: invariance is trivial and says nothing
    return 1.0 - float((a - b).norm(dim=1).mean()) / strangers


def factor_invariance(encoder: torch.nn.Module, embeddings, factors: dict[str, np.ndarray],
                      n: int = 128, seed: int = 0, device: str | torch.device = "cpu",
                      size: int | None = None) -> dict[str, float]:
    """Invariance to each factor of ``shapes``: image i redrawn with only factor k changed (a new
    random value; a different class for ``shape``) against its own embedding, relative to the
    distance between different images. {factor: 1 - mean ||f(x_i) - f(x_i^k)|| / mean ||f(x_i) - f(x_j)||}.
    ``embeddings`` are those of the images drawn from ``factors`` (row by row)."""
    from engine.data import shapes

    missing = [k for k in shapes.FACTORS if k not in factors]
    if missing:
        raise ValueError(f"factors: {', '.join(missing)} missing; allowed: the factors of shapes "
                         f"({', '.join(shapes.FACTORS)})")
    e = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    strangers = _stranger_distance(e, rng)
    rows = _subset(len(e), n, seed)
    # every factor the images were drawn from (painted-shapes' lightness too), so they redraw alike
    base = {k: np.asarray(v)[rows] for k, v in factors.items()}
    fresh = shapes.sample_factors(len(rows), rng)
    images, names = [], []
    for k in shapes.FACTORS:
        changed = dict(base)
        if k == "shape":
            changed[k] = (base[k] + rng.integers(1, len(shapes.SHAPES), len(rows))) % len(shapes.SHAPES)
        else:
            changed[k] = fresh[k]
        images.append(shapes.render(changed, size=size or shapes.SIZE))
        names.append(k)
    moved = _encode(encoder, _float_images(np.concatenate(images)), device).view(len(names), len(rows), -1)
    out = {}
    for i, k in enumerate(names):
        d = float((moved[i] - e[torch.from_numpy(rows)]).norm(dim=1).mean())
        out[k] = float("nan") if strangers == 0 else 1.0 - d / strangers
    return out


# --- clustering -----------------------------------------------------------------------------------

def probe_cv_correct(embeddings, labels, folds: int = 5, seed: int = 0) -> np.ndarray | None:
    """Per point, whether a linear probe that never saw it names its class: the probe's objective
    (logistic regression, C = 1, on standardised embeddings, as engine.metrics.probe.linear_probe),
    fitted on the other folds of the labelled points (scikit-learn's cross_val_predict, ``folds``
    stratified folds shuffled with ``seed``; fewer when a class has fewer points). False for the
    unlabelled. None without two classes of two points each. The map's "linear probe correct /
    wrong", beside knn_loo_correct's kNN vote on the same points."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels).astype(np.int64).ravel()
    keep = np.flatnonzero(labels >= 0)
    y = labels[keep]
    counts = np.bincount(y)[np.unique(y)] if len(y) else np.zeros(0, int)
    if len(counts) < 2 or counts.min() < 2:
        return None
    x = np.asarray(embeddings, dtype=np.float64)[keep]
    splits = StratifiedKFold(n_splits=int(min(folds, counts.min())), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        predicted = cross_val_predict(probe, x, y, cv=splits)
    correct = np.zeros(len(labels), dtype=bool)
    correct[keep] = predicted == y
    return correct


@torch.no_grad()
def knn_loo_correct(embeddings, labels, k: int = 10, device: str | torch.device = "cpu",
                    distances: torch.Tensor | None = None) -> np.ndarray | None:
    """Leave-one-out kNN vote on the evaluation subset, per point: True where a labelled point's k
    nearest other labelled points (cosine) vote for its own class, each vote weighted by 2 - cosine
    distance (as engine.metrics.probe.knn_accuracy); False for the others and the unlabelled. None
    without 2 classes. ``distances``: the euclidean distance matrix of the l2-normalised embeddings if
    already computed (same neighbour order as cosine; cosine distance = d^2 / 2). The one definition
    behind the Properties panel's kNN figure and the map's "kNN correct / wrong" colouring."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    keep = np.flatnonzero(labels >= 0)
    y = labels[keep]
    if len(np.unique(y)) < 2:
        return None
    k = min(k, len(keep) - 1)
    if distances is None:
        from engine.neighbours import knn

        z = np.asarray(embeddings, dtype=np.float32)[keep]
        dist, idx = knn(z, z, k, metric="cosine", exclude_self=True, device=device)
    else:
        if len(keep) < len(distances):
            kt = torch.from_numpy(keep).to(distances.device)
            d = distances[kt][:, kt]
        else:
            d = distances
        diagonal = d.diagonal().clone()
        d.fill_diagonal_(float("inf"))  # no copy of the N x N matrix: the diagonal is put back below
        try:
            dt, it = torch.topk(d, k, dim=1, largest=False)
        finally:
            d.diagonal().copy_(diagonal)
        dist, idx = (dt * dt / 2).cpu().numpy(), it.cpu().numpy()
    votes = np.zeros((len(y), int(y.max()) + 1))
    np.add.at(votes, (np.arange(len(y))[:, None], y[idx]), 2.0 - dist)
    correct = np.zeros(len(labels), dtype=bool)
    correct[keep] = votes.argmax(1) == y
    return correct


def knn_accuracy_loo(embeddings, labels, k: int = 10, device: str | torch.device = "cpu",
                     distances: torch.Tensor | None = None) -> float | None:
    """Leave-one-out kNN accuracy on the evaluation subset (labelled points only; ``knn_loo_correct``).
    None without 2 classes."""
    correct = knn_loo_correct(embeddings, labels, k, device, distances)
    return None if correct is None else float(correct[np.asarray(labels).ravel() >= 0].mean())


# --- sparsity -------------------------------------------------------------------------------------

def hoyer_sparsity(embeddings, centre: bool = True) -> float:
    """Mean over points of Hoyer's sparsity (sqrt(d) - ||z||_1 / ||z||_2) / (sqrt(d) - 1): 1 = one
    active dimension, 0 = all dimensions equal in magnitude. Centred by default: a common offset is
    not information about the point (it would dominate a fresh convnet's embeddings)."""
    z = np.asarray(embeddings, dtype=np.float64)
    d = z.shape[1]
    if d < 2:
        return float("nan")
    if centre:
        z = z - z.mean(0)
    l2 = np.linalg.norm(z, axis=1)
    ok = l2 > 0
    if not ok.any():
        return float("nan")
    ratio = np.abs(z[ok]).sum(1) / l2[ok]
    return float(((np.sqrt(d) - ratio) / (np.sqrt(d) - 1)).mean())


def participation_ratio(embeddings) -> float:
    """(sum_k lambda_k)^2 / sum_k lambda_k^2 over the covariance eigenvalues: between 1 (one direction
    carries all the variance) and d (isotropic); 0 for constant embeddings."""
    z = np.asarray(embeddings, dtype=np.float64)
    c = z - z.mean(0)
    lam = np.linalg.eigvalsh(c.T @ c / max(1, len(z) - 1)).clip(min=0)
    total = lam.sum()
    return 0.0 if total <= 0 else float(total ** 2 / (lam ** 2).sum())


# --- disentanglement ------------------------------------------------------------------------------

def _factor_targets(name: str, values: np.ndarray) -> tuple[str, np.ndarray]:
    """('class', int codes) for a categorical factor, ('value', (N, m) float) otherwise."""
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.integer) or v.dtype == bool:
        return "class", np.unique(v, return_inverse=True)[1]
    if name in CIRCULAR_FACTORS:
        angle = 2 * np.pi * v / CIRCULAR_FACTORS[name]
        return "value", np.stack([np.cos(angle), np.sin(angle)], 1)
    return "value", v.astype(np.float64)[:, None]


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights of ridge regression on standardised x (with a bias column left unpenalised)."""
    d = x.shape[1]
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = alpha * np.eye(d + 1)
    reg[-1, -1] = 0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def disentanglement(embeddings, factors: dict[str, np.ndarray], alpha: float = 1.0, seed: int = 0,
                    bins: int = 20) -> dict:
    """Linear predictability of each factor and two disentanglement scores.

    Embeddings are standardised per dimension; a ridge regression (``alpha``) per factor is fitted on a
    random half of the points and scored on the other half: R^2 for a continuous factor (mean over
    cos/sin for a circular one), accuracy for a categorical one (ridge on one-hot targets, argmax).

    DCI disentanglement: R_jk = |w_jk| of the ridge fitted on all points with standardised targets
    (summed over a factor's target columns); D_j = 1 - H_K(R_j. / sum_k R_jk) (entropy in base K);
    D = sum_j rho_j D_j with rho_j = sum_k R_jk / sum R. 1 = each dimension serves one factor.

    MIG: mutual information between each dimension (``bins`` equal-frequency bins) and each factor
    (its categories, or ``bins`` equal-frequency bins), per factor (largest - second largest) / H(factor),
    averaged over factors. 1 = each factor is captured by one dimension alone.

    Returns {"disentanglement": D, "mig": MIG, "predictability": {factor: R^2 or accuracy}}.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    n, d = z.shape
    names = [k for k in factors if len(np.asarray(factors[k])) == n]
    if not names:
        raise ValueError("factors: none has one value per embedding")
    if n < 10:
        raise ValueError(f"disentanglement needs at least 10 points; got {n}")
    std = z.std(0)
    zs = (z - z.mean(0)) / np.where(std > 0, std, 1.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    train, test = order[: n // 2], order[n // 2:]
    predictability, importance = {}, []
    for name in names:
        kind, t = _factor_targets(name, factors[name])
        if kind == "class":
            onehot = np.eye(t.max() + 1)[t]
            w = _ridge(zs[train], onehot[train], alpha)
            pred = (np.hstack([zs[test], np.ones((len(test), 1))]) @ w).argmax(1)
            predictability[name] = float((pred == t[test]).mean())
            target = (onehot - onehot.mean(0)) / np.maximum(onehot.std(0), 1e-12)
        else:
            w = _ridge(zs[train], t[train], alpha)
            pred = np.hstack([zs[test], np.ones((len(test), 1))]) @ w
            resid = ((t[test] - pred) ** 2).sum(0)
            total = ((t[test] - t[test].mean(0)) ** 2).sum(0)
            predictability[name] = float(np.mean(1 - resid / np.maximum(total, 1e-12)))
            target = (t - t.mean(0)) / np.maximum(t.std(0), 1e-12)
        w_all = _ridge(zs, target, alpha)[:-1]
        importance.append(np.abs(w_all).sum(1))
    r = np.stack(importance, 1)  # (d, K)
    k = r.shape[1]
    if k < 2 or r.sum() == 0:
        dci = float("nan")
    else:
        p = r / np.maximum(r.sum(1, keepdims=True), 1e-300)
        h = -(p * np.log(np.where(p > 0, p, 1))).sum(1) / np.log(k)
        rho = r.sum(1) / r.sum()
        dci = float((rho * (1 - h)).sum())
    return {"disentanglement": dci, "mig": _mig(z, factors, names, bins), "predictability": predictability}


def _bin_codes(x: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bins per column (ranks), as ints in [0, bins)."""
    ranks = np.argsort(np.argsort(x, axis=0, kind="stable"), axis=0)
    return (ranks * bins // len(x)).astype(np.int64)


def _mig(z: np.ndarray, factors: dict, names: list[str], bins: int) -> float:
    n, d = z.shape
    zc = _bin_codes(z, bins)  # (n, d)
    gaps = []
    for name in names:
        v = np.asarray(factors[name])
        if np.issubdtype(v.dtype, np.integer) or v.dtype == bool:
            vc = np.unique(v, return_inverse=True)[1]
        else:
            vc = _bin_codes(v[:, None].astype(np.float64), bins)[:, 0]
        m = int(vc.max()) + 1
        pv = np.bincount(vc, minlength=m) / n
        hv = -(pv[pv > 0] * np.log(pv[pv > 0])).sum()
        if hv == 0 or d < 2:
            continue
        # all d joint histograms at once: one bincount over (dimension, z bin, factor bin)
        flat = (np.arange(d)[None] * bins + zc) * m + vc[:, None]
        joint = np.bincount(flat.ravel(), minlength=d * bins * m).reshape(d, bins, m) / n
        pz = joint.sum(2, keepdims=True)
        ratio = joint / np.maximum(pz * pv[None, None], 1e-300)
        mi = (joint * np.log(np.where(joint > 0, ratio, 1))).sum((1, 2))
        top = np.sort(mi)[::-1]
        gaps.append((top[0] - top[1]) / hv)
    return float(np.mean(gaps)) if gaps else float("nan")
