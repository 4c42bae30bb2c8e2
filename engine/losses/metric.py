"""Metric-learning losses: the contrastive family (pair, triplet with online mining) and the
non-contrastive family (center, cosine/CosFace, arc/ArcFace with sub-centres and adaptive margins).

Shapes: ``embeddings`` (B, D) float, ``labels`` (B,) int64 in [0, C). Every loss returns a scalar.
Distances are injectable: a name from ``DISTANCES`` ("euclidean", "cosine") or any callable
``(x (B, D), y (N, D)) -> (B, N)`` of non-negative distances.

The contrastive losses keep the statistics of their last call in ``self.stats`` (plain floats and
lists, for the training window: triplet categories, distance histograms); the classification-like
losses keep their parts in ``self.terms``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.losses import LOSSES
from engine.metrics.triplets import TripletDefinition

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖x_i − y_j‖², (B, D) x (N, D) -> (B, N), clamped at 0 (the expansion can go slightly negative)."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ y.T + (y * y).sum(1)).clamp_min(0)


def euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖x_i − y_j‖. The small floor keeps the gradient of the square root finite at 0 (self-pairs)."""
    return squared_euclidean(x, y).clamp_min(1e-12).sqrt()


def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − cos(x_i, y_j), in [0, 2]."""
    return (1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T).clamp_min(0)


DISTANCES: dict[str, Distance] = {"euclidean": euclidean, "cosine": cosine}


def get_distance(distance: str | Distance) -> Distance:
    if callable(distance):
        return distance
    if distance not in DISTANCES:
        raise ValueError(f"--distance: {distance!r} is not valid; allowed: one of {', '.join(DISTANCES)}")
    return DISTANCES[distance]


def check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--{name}: {value!r} is not valid; allowed: a number > 0")
    return float(value)


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """A zero that stays in the graph: backward and the optimiser step run, and change nothing."""
    return (embeddings * 0).sum()


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def uniform_bins(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Each value's bin among the evenly spaced ``edges`` (a linspace; values outside go to the end
    bins), by arithmetic: a binary search (``bucketize``) over a million distances took 8 ms."""
    bins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    return ((values.float() - lo) * (bins / (hi - lo))).floor_().clamp_(0, bins - 1).long()


def margin_edges(margin: float, limit: float | None, bins: int) -> torch.Tensor:
    """Symmetric fixed bins for D_an − D_ap: the whole possible range when the distance is bounded,
    otherwise ±4 margins (outliers fall in the end bins)."""
    lim = limit if limit is not None else 4 * margin
    return torch.linspace(-lim, lim, bins + 1)


@torch.no_grad()
def triplet_categories(dist: torch.Tensor, labels: torch.Tensor, margin: float, edges: torch.Tensor
                       ) -> dict[str, float | list[float]]:
    """Shares of easy / semi-hard / hard among all valid triplets (a, p, n) of a set, and the
    histogram of D_an − D_ap (course definitions, with D the distance the loss compares), and
    ``hinge_all``, the mean of max{0, D_ap − D_an + m} over all of them:
    easy D_an ≥ D_ap + m (zero loss), semi-hard D_ap ≤ D_an < D_ap + m, hard D_an < D_ap.

    ``dist`` (N, N). Everything is exact without forming the N³ triplets: each anchor's negative
    distances are sorted, and for each positive the number of negatives below D_ap + e is a binary
    search, for the margin and for every bin edge e; the hinge comes from prefix sums of the sorted
    negatives.
    """
    scalars, hist = _triplet_category_tensors(dist, labels, margin, edges)
    return _category_floats(torch.cat([scalars, hist]).tolist(), len(hist))


def _triplet_category_tensors(dist: torch.Tensor, labels: torch.Tensor, margin: float, edges: torch.Tensor,
                              chunk_queries: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, hard, semi-hard, hinge sum) and the histogram counts, as tensors on ``dist``'s device:
    no transfer to the host, so a training step pays for one transfer of all its statistics."""
    dist = dist.detach().float()
    pos, neg = _pair_masks(labels)
    w = pos.float()
    n_neg = neg.sum(1)
    neg_sorted = torch.where(neg, dist, torch.full_like(dist, float("inf"))).sort(1).values
    # prefix[a, c] = sum of anchor a's c smallest negative distances
    finite = torch.where(torch.isfinite(neg_sorted), neg_sorted, torch.zeros_like(neg_sorted))
    prefix = torch.cat([torch.zeros_like(finite[:, :1]), finite.cumsum(1)], 1)
    d_ap = torch.where(pos, dist, torch.zeros_like(dist))
    below_ap = torch.searchsorted(neg_sorted, d_ap.contiguous())  # negatives with D_an < D_ap
    below_ap_m = torch.searchsorted(neg_sorted, (d_ap + margin).contiguous())  # D_an < D_ap + m
    total = (n_neg.float()[:, None] * w).sum()
    hard = (below_ap.float() * w).sum()
    semi = ((below_ap_m - below_ap).float() * w).sum()
    hinge = ((below_ap_m.float() * (d_ap + margin) - prefix.gather(1, below_ap_m)) * w).sum()
    # histogram: below[a, p, k] = negatives of a with D_an − D_ap < inner edge k, in chunks of anchors
    inner = edges[1:-1].to(dist)
    n, k = dist.shape[0], len(inner)
    step = max(1, chunk_queries // max(1, n * k))
    cumulative = torch.zeros(k, device=dist.device)
    for a in range(0, n, step):
        rows = slice(a, a + step)
        queries = (d_ap[rows, :, None] + inner).reshape(d_ap[rows].shape[0], -1)
        below = torch.searchsorted(neg_sorted[rows], queries).view(-1, n, k).float()
        cumulative += (below * w[rows, :, None]).sum((0, 1))
    counts = torch.diff(cumulative, prepend=cumulative.new_zeros(1), append=total.view(1))
    return torch.stack([total, hard, semi, hinge]), counts


def _category_floats(values: list[float], bins: int) -> dict[str, float | list[float]]:
    total, hard, semi, hinge = values[:4]
    counts = values[4:4 + bins]
    if total == 0:
        return {"triplet_count": 0.0, "triplet_easy": 0.0, "triplet_semi_hard": 0.0, "triplet_hard": 0.0,
                "dan_dap_hist": [0.0] * bins, "hinge_all": 0.0}
    # the batch-all hinge averaged over every valid triplet (not only the non-zero ones): it falls
    # as triplets become easy, whichever mining trains the network
    return {"triplet_count": total, "triplet_easy": (total - hard - semi) / total,
            "triplet_semi_hard": semi / total, "triplet_hard": hard / total,
            "dan_dap_hist": [c / total for c in counts], "hinge_all": hinge / total}


def _mined_tensors(d_ap: torch.Tensor, d_an: torch.Tensor, keep: torch.Tensor, margin: float) -> torch.Tensor:
    """(count, easy, hard, sum D_ap, sum D_an) of the mined triplets where ``keep``, on the device."""
    diff = d_an - d_ap
    k = keep.float()
    return torch.stack([k.sum(), ((diff >= margin).float() * k).sum(), ((diff < 0).float() * k).sum(),
                        (d_ap.detach() * k).sum(), (d_an.detach() * k).sum()])


def _mined_floats(values: list[float]) -> dict[str, float]:
    n, easy, hard, sum_ap, sum_an = values
    if n == 0:
        return {"mined_count": 0.0, "mined_easy": 0.0, "mined_semi_hard": 0.0, "mined_hard": 0.0,
                "d_ap": 0.0, "d_an": 0.0}
    return {"mined_count": n, "mined_easy": easy / n, "mined_semi_hard": (n - easy - hard) / n,
            "mined_hard": hard / n, "d_ap": sum_ap / n, "d_an": sum_an / n}


@LOSSES.register("triplet")
class TripletLoss(nn.Module):
    """Triplet loss with online mining in the batch (Schroff et al. 2015; Hermans et al. 2017).

    ℓ(a, p, n) = max{0, D_ap − D_an + m}, with D = d² (``squared=True``, the course's
    max{0, d_ap² − d_an² + m}) or D = d (``squared=False``, Hermans et al.'s form). The triplets come
    from the batch (labels give positives and negatives; every row is an anchor):

    - ``batch-hard``: for each anchor, its farthest positive and its closest negative; the mean over
      anchors (Hermans et al. 2017, "batch hard").
    - ``batch-all``: every valid triplet, the loss averaged over the non-zero ones (Hermans et al.'s
      "BA≠0"): averaging over all would shrink the step as easy triplets take over.
    - ``semi-hard``: for each positive pair, the closest negative farther than the positive
      (D_an > D_ap, Schroff et al. 2015); pairs without one are left out; the mean over the mined.
    - ``random``: for each anchor, one positive and one negative drawn at random; the mean.

    ``normalize`` projects the embeddings on the unit sphere first (FaceNet), so a margin means the
    same at every training stage. With ``squared=True`` and ``normalize=True`` D ∈ [0, 4].

    Peer conventions: pytorch-metric-learning's ``TripletMarginLoss`` with ``LpDistance(power=2)``
    (or power=1 for ``squared=False``, ``normalize_embeddings`` as ``normalize``) gives the same values
    with ``BatchHardMiner`` and a ``MeanReducer`` (its default reducer averages over the non-zero
    triplets, which is *not* Hermans' batch-hard mean), and with ``TripletMarginMiner("all")`` and its
    default reducer for batch-all.

    After each call ``self.stats`` holds (floats and lists, see ``triplet_categories``):
    triplet_easy / triplet_semi_hard / triplet_hard (all valid triplets of the batch),
    mined_easy / mined_semi_hard / mined_hard (the triplets the miner kept), triplet_count,
    mined_count, hinge_all (the hinge averaged over all valid triplets: falls as they become easy),
    dan_dap_hist (fractions per bin of D_an − D_ap over all valid triplets),
    dan_dap_bins (the fixed bin edges), margin, d_ap / d_an (means over the mined), skipped
    (1.0 when the batch had no valid triplet: fewer than two classes, or one sample per class).
    """

    MININGS = ("batch-hard", "batch-all", "semi-hard", "random")

    _DEFAULT = TripletDefinition()  # the one place the triplet margin's default is written

    def __init__(self, margin: float = _DEFAULT.margin, distance: str | Distance = _DEFAULT.distance,
                 squared: bool = _DEFAULT.squared, mining: str = "batch-hard", normalize: bool = _DEFAULT.normalize,
                 bins: int = 40):
        super().__init__()
        self.margin = check_positive("margin", margin)
        if mining not in self.MININGS:
            raise ValueError(f"--mining: {mining!r} is not valid; allowed: one of {', '.join(self.MININGS)}")
        self.distance_name = distance if isinstance(distance, str) else getattr(distance, "__name__", "custom")
        self.distance = get_distance(distance)
        self.squared, self.mining, self.normalize = squared, mining, normalize
        self.edges = margin_edges(self.margin, self.difference_limit(), bins)
        self.stats: dict[str, float | list[float]] = {}

    def bin_edges(self) -> list[float]:
        """The fixed histogram edges as plain floats (rounded: they go to metrics.jsonl every step)."""
        return [round(e, 6) for e in self.edges.tolist()]

    @property
    def definition(self) -> TripletDefinition | None:
        """The triplet categories this loss trains with (its distance D and margin), for the
        evaluation's shares, the panels and the map; None for a distance given as a callable."""
        if self.distance_name not in DISTANCES:
            return None
        return TripletDefinition(self.margin, self.distance_name, self.squared, self.normalize)

    def difference_limit(self) -> float | None:
        """Largest possible |D_an − D_ap| when distances are bounded (unit sphere or cosine)."""
        return None if self.definition is None else self.definition.difference_limit()

    def pairwise(self, embeddings: torch.Tensor) -> torch.Tensor:
        """D (B, B): the distance the hinge compares (squared when ``squared``)."""
        x = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        if self.squared and self.distance is euclidean:
            return squared_euclidean(x, x)  # no square root: exact gradient at 0
        d = self.distance(x, x)
        return d * d if self.squared else d

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # on a GPU every read of a value to the host waits for the queue: the statistics are gathered
        # as tensors and read in one transfer at the end
        dist = self.pairwise(embeddings)
        pos, neg = _pair_masks(labels)
        valid = pos.any(1) & neg.any(1)
        scalars, hist = _triplet_category_tensors(dist, labels, self.margin, self.edges)
        if self.mining == "batch-hard":  # masks, not indexing: no shapes that depend on the data
            inf = torch.full_like(dist, float("inf"))
            d_ap = torch.where(pos, dist, -inf).max(1).values.where(valid, torch.zeros_like(dist[0]))
            d_an = torch.where(neg, dist, inf).min(1).values.where(valid, torch.zeros_like(dist[0]))
            losses = F.relu(d_ap - d_an + self.margin) * valid
            loss = losses.sum() / valid.sum().clamp_min(1)
            mined = _mined_tensors(d_ap, d_an, valid, self.margin)
        else:
            empty = dist.new_zeros(0)
            d_ap, d_an = self._mine(dist, pos, neg, valid) if bool(valid.any()) else (empty, empty)
            losses = F.relu(d_ap - d_an + self.margin)
            if self.mining == "batch-all":
                kept = losses > 0
                loss = losses.sum() / kept.sum().clamp_min(1)
            else:
                kept = torch.ones_like(losses, dtype=torch.bool)
                loss = losses.sum() / max(1, losses.numel())
            mined = _mined_tensors(d_ap, d_an, kept, self.margin)
        values = torch.cat([valid.float().sum().view(1), scalars, hist, mined.float()]).tolist()
        stats: dict[str, Any] = _category_floats(values[1:], len(hist))
        stats.update(_mined_floats(values[-5:]))
        stats.update(dan_dap_bins=self.bin_edges(), margin=self.margin, skipped=0.0)
        if values[0] == 0:  # no anchor with both a positive and a negative
            stats["skipped"] = 1.0
            self.stats = stats
            return zero_loss(embeddings)
        self.stats = stats
        return loss

    def _mine(self, dist, pos, neg, valid) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_ap, D_an) of the triplets mined by random, batch-all or semi-hard, each (T,)."""
        if self.mining == "random":
            a = valid.nonzero(as_tuple=True)[0]
            p = torch.multinomial(pos[a].float(), 1).squeeze(1)
            n = torch.multinomial(neg[a].float(), 1).squeeze(1)
            return dist[a, p], dist[a, n]
        a, p = pos.nonzero(as_tuple=True)
        a, p = a[valid[a]], p[valid[a]]
        if self.mining == "batch-all":
            # every (a, p, n): the (P, B) block of negatives for each positive pair
            an = dist[a]
            keep = neg[a]
            d_ap = dist[a, p][:, None].expand_as(an)
            return d_ap[keep], an[keep]
        # semi-hard: the closest negative beyond the positive
        d_ap = dist[a, p]
        cand = neg[a] & (dist[a] > d_ap[:, None])
        d_an = torch.where(cand, dist[a], torch.full_like(dist[a], float("inf"))).min(1).values
        found = cand.any(1)
        return d_ap[found], d_an[found]


@LOSSES.register("pair")
class PairLoss(nn.Module):
    """Pair (contrastive) loss (Hadsell, Chopra & LeCun 2006).

    Positive pairs: max{0, d − m_pos}^p ; negative pairs: max{0, m − d}^p, with p = 2 when
    ``squared`` (Hadsell's squared hinge; the factor 1/2 of the paper is dropped) and p = 1 otherwise.
    d is the plain distance (not squared): the margin m is a distance.

    ``mining``: ``all`` uses every pair of the batch; ``batch-hard`` only each anchor's farthest
    positive and closest negative. ``reduction``: ``nonzero`` averages the positive terms over the
    non-zero ones and the negative terms over theirs, then adds them (pytorch-metric-learning's
    ``ContrastiveLoss`` with its default ``AvgNonZeroReducer``: the loss keeps its size as pairs
    become easy); ``mean`` averages each over all its pairs.

    Peer conventions: with ``squared=False`` this equals pytorch-metric-learning's
    ``ContrastiveLoss(pos_margin=m_pos, neg_margin=m)`` with ``LpDistance(power=1)``; its
    squared distances would square d, not the hinge, so the squared form has no peer there.

    ``self.stats``: pos_dist_hist / neg_dist_hist (fractions per bin of d for positive / negative
    pairs), dist_bins (fixed edges), margin, pos_active / neg_active (share of pairs with a non-zero
    term), pos_dist / neg_dist (means), skipped.
    """

    MININGS = ("all", "batch-hard")
    REDUCTIONS = ("nonzero", "mean")

    def __init__(self, margin: float = 1.0, pos_margin: float = 0.0, distance: str | Distance = "euclidean",
                 squared: bool = True, mining: str = "all", reduction: str = "nonzero", normalize: bool = True,
                 bins: int = 40):
        super().__init__()
        self.margin = check_positive("margin", margin)
        if not 0 <= pos_margin < self.margin:
            raise ValueError(f"--pos-margin: {pos_margin!r} is not valid; allowed: a number >= 0 and "
                             f"< the margin {self.margin}")
        if mining not in self.MININGS:
            raise ValueError(f"--mining: {mining!r} is not valid; allowed: one of {', '.join(self.MININGS)}")
        if reduction not in self.REDUCTIONS:
            raise ValueError(f"reduction {reduction!r} is not valid; allowed: one of {', '.join(self.REDUCTIONS)}")
        self.pos_margin = float(pos_margin)
        self.distance_name = distance if isinstance(distance, str) else getattr(distance, "__name__", "custom")
        self.distance = get_distance(distance)
        self.squared, self.mining, self.reduction, self.normalize = squared, mining, reduction, normalize
        bounded = self.distance_name == "cosine" or (self.distance_name == "euclidean" and normalize)
        self.edges = torch.linspace(0, 2.0 if bounded else 2 * self.margin, bins + 1)
        self.stats: dict[str, float | list[float]] = {}

    def _reduce(self, terms: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if terms.numel() == 0:
            return zero_loss(like)
        if self.reduction == "mean":
            return terms.mean()
        return terms.sum() / (terms > 0).sum().clamp_min(1)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        dist = self.distance(x, x)
        # every pair once (i < j): the distances are symmetric, so the means, the shares and the
        # histograms over the upper triangle equal those over both orders, at half the gathering
        n = len(labels)
        i, j = torch.triu_indices(n, n, 1, device=dist.device)
        pair_dist, pair_same = dist.flatten().index_select(0, i * n + j), labels[i] == labels[j]
        if self.mining == "batch-hard":
            pos, neg = _pair_masks(labels)
            inf = torch.full_like(dist, float("inf"))
            has_pos, has_neg = pos.any(1), neg.any(1)
            d_pos = torch.where(pos, dist, -inf).max(1).values[has_pos]
            d_neg = torch.where(neg, dist, inf).min(1).values[has_neg]
        else:
            d_pos, d_neg = pair_dist[pair_same], pair_dist[~pair_same]
        pos_terms = F.relu(d_pos - self.pos_margin)
        neg_terms = F.relu(self.margin - d_neg)
        if self.squared:
            pos_terms, neg_terms = pos_terms ** 2, neg_terms ** 2
        with torch.no_grad():
            # both histograms in one count: positive pairs take the bins after the negatives'
            bins = len(self.edges) - 1
            counts = torch.bincount(uniform_bins(pair_dist, self.edges) + bins * pair_same,
                                    minlength=2 * bins).cpu().double().reshape(2, bins)
            shares = counts / counts.sum(1, keepdim=True).clamp_min(1)
            self.stats = {
                "pos_dist_hist": shares[1].tolist(),
                "neg_dist_hist": shares[0].tolist(),
                "dist_bins": [round(e, 6) for e in self.edges.tolist()], "margin": self.margin,
                "pos_margin": self.pos_margin,
                "pos_active": float((pos_terms > 0).float().mean()) if pos_terms.numel() else 0.0,
                "neg_active": float((neg_terms > 0).float().mean()) if neg_terms.numel() else 0.0,
                "pos_dist": float(d_pos.mean()) if d_pos.numel() else 0.0,
                "neg_dist": float(d_neg.mean()) if d_neg.numel() else 0.0,
                "skipped": float(not (pair_same.any() and (~pair_same).any())),
            }
        self.terms = {"positive": self._reduce(pos_terms, embeddings), "negative": self._reduce(neg_terms, embeddings)}
        return self.terms["positive"] + self.terms["negative"]


@LOSSES.register("center")
class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): cross-entropy through a linear head, plus the pull of each
    embedding towards a learned centre of its class:

        L = CE(W f + b, y) + λ/2 · mean_n ‖f(x_n) − c_{y_n}‖²

    embeddings (B, D), labels (B,); ``classifier`` Linear(D, C) and ``centers`` (C, D) are trained
    with the network (the centres usually at their own rate: see the method's parameter groups).
    Both terms are batch means (the paper sums both over the batch, which only rescales the pair).
    ``self.terms``: cross_entropy, center.
    """

    def __init__(self, num_classes: int, embedding_dim: int, center_weight: float = 0.01):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"center loss needs at least 2 classes, got {num_classes}")
        if center_weight < 0:
            raise ValueError(f"--center-weight: {center_weight!r} is not valid; allowed: a number >= 0")
        self.center_weight = float(center_weight)
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_dim))
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(self.classifier(embeddings), labels)
        center = (embeddings - self.centers[labels]).pow(2).sum(1).mean()
        self.terms = {"cross_entropy": ce, "center": center}
        return ce + self.center_weight / 2 * center


def auto_scale(num_classes: int) -> float:
    """The fixed scale of AdaCos (Zhang et al. 2019): s = √2 · log(C − 1)."""
    if num_classes < 3:
        raise ValueError(f"--scale: 'auto' (√2·log(C−1)) needs at least 3 classes, this data has "
                         f"{num_classes}; give a number > 0 instead")
    return math.sqrt(2) * math.log(num_classes - 1)


def adaptive_margins(class_counts: Sequence[int], a: float, lam: float, b: float) -> torch.Tensor:
    """Per-class margins for imbalanced data (Ha et al. 2020): m_c = a · N_c^(−λ) + b, (C,)."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.numel() == 0 or (counts <= 0).any():
        raise ValueError("--adaptive-margin needs the number of training samples of every class "
                         f"(got {list(class_counts)}); use a labelled dataset with every class present, "
                         "or leave --adaptive-margin empty")
    margins = a * counts.pow(-lam) + b
    if (margins <= 0).any():
        raise ValueError(f"--adaptive-margin: a={a}, lambda={lam}, b={b} give margins <= 0 "
                         f"({margins.min().item():.3g}); allowed: a, b such that every margin is > 0")
    return margins.float()


def parse_adaptive_margin(text: str) -> tuple[float, float, float] | None:
    """'a,lambda,b' -> (a, λ, b); '' -> None."""
    if text is None or str(text).strip() == "":
        return None
    try:
        a, lam, b = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--adaptive-margin: {text!r} is not valid; allowed: three numbers 'a,lambda,b' "
                         "(m_c = a·N_c^(−lambda) + b), or empty for one margin for all classes") from None
    return a, lam, b


class MarginSoftmaxLoss(nn.Module):
    """Shared head of CosFace and ArcFace: a normalised weight matrix without bias, k sub-centres per
    class (Deng et al. 2020: the class cosine is the largest of its k), a scale s, a margin per class.

    cos α_{n,c} = max_k ŵ_c^(k)ᵀ ẑ_n ; logits t_{n,c} = s · ψ(cos α_{n,c}) for c = y_n, s · cos α_{n,c}
    otherwise; L = mean_n CE(t_n, y_n). ``weight`` (C·k, D): rows c·k … c·k + k − 1 are class c's
    sub-centres (pytorch-metric-learning's ``W`` is its transpose, same order).
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: float, scale: float | str = "auto",
                 subcenters: int = 1, class_margins: torch.Tensor | Sequence[float] | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got {num_classes}")
        if not isinstance(subcenters, int) or subcenters < 1:
            raise ValueError(f"--subcenters: {subcenters!r} is not valid; allowed: a whole number >= 1")
        self.num_classes, self.subcenters = num_classes, subcenters
        self.scale = auto_scale(num_classes) if scale == "auto" else check_positive("scale", scale)
        self.margin = check_positive("margin", margin)
        if class_margins is None:
            margins = torch.full((num_classes,), self.margin)
        else:
            margins = torch.as_tensor(class_margins, dtype=torch.float32)
            if margins.shape != (num_classes,) or (margins <= 0).any():
                raise ValueError(f"class margins: need {num_classes} values > 0, got {margins.tolist()}")
        self.register_buffer("margins", margins)
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.terms: dict[str, torch.Tensor] = {}
        self.stats: dict[str, float] = {}

    def centers(self) -> torch.Tensor:
        """The unit class sub-centres (C, k, D), e.g. to draw them on the map."""
        return F.normalize(self.weight, dim=1).view(self.num_classes, self.subcenters, -1)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos α (B, C): the best sub-centre of each class."""
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        return cos.view(len(embeddings), self.num_classes, self.subcenters).max(2).values

    def target_logit(self, cos: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings)
        target = self.target_logit(cos.gather(1, labels[:, None]).squeeze(1), self.margins[labels])
        is_target = F.one_hot(labels, self.num_classes).bool()
        logits = self.scale * torch.where(is_target, target[:, None], cos)
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            angles = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
            self.terms = {"cross_entropy": loss.detach()}
            self.stats = {"target_angle": float(angles[is_target].mean()),
                          "nearest_other_angle": float(angles.masked_fill(is_target, 180.0).min(1).values.mean()),
                          "scale": self.scale}
        return loss


@LOSSES.register("cosine")
class CosFaceLoss(MarginSoftmaxLoss):
    """Cosine loss, CosFace (Wang et al. 2018): ψ(cos α) = cos α − m for the true class.

    Defaults m = 0.35, s = 'auto' (√2·log(C − 1), Zhang et al. 2019). Equals pytorch-metric-learning's
    ``CosFaceLoss(margin=m, scale=s)`` with its ``W`` set to ``weight.T``.
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: float = 0.35, scale: float | str = "auto",
                 subcenters: int = 1, class_margins: torch.Tensor | Sequence[float] | None = None):
        super().__init__(num_classes, embedding_dim, margin, scale, subcenters, class_margins)

    def target_logit(self, cos, margin):
        return cos - margin


@LOSSES.register("arc")
class ArcFaceLoss(MarginSoftmaxLoss):
    """Arc loss, ArcFace (Deng et al. 2019): the margin inside the cosine, ψ = cos(α + m), m in
    radians (pytorch-metric-learning takes degrees: pass ``np.degrees(m)`` there).

    Past α > π − m, cos(α + m) would rise again; there, as in the paper's code, ψ = cos α − m·sin m,
    which keeps ψ decreasing in α. With ``subcenters`` k > 1 this is the sub-center ArcFace of Deng et
    al. 2020. Equals pytorch-metric-learning's ``ArcFaceLoss`` / ``SubCenterArcFaceLoss`` with the
    same weights (``W = weight.T``).
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: float = 0.5, scale: float | str = "auto",
                 subcenters: int = 1, class_margins: torch.Tensor | Sequence[float] | None = None):
        super().__init__(num_classes, embedding_dim, margin, scale, subcenters, class_margins)

    def target_logit(self, cos, margin):
        # cos(α + m) = cos α cos m − sin α sin m: no acos, so the gradient stays finite at cos = ±1
        sin = (1 - cos * cos).clamp_min(1e-12).sqrt()
        shifted = cos * torch.cos(margin) - sin * torch.sin(margin)
        past = cos < torch.cos(math.pi - margin)
        return torch.where(past, cos - margin * torch.sin(margin), shifted)
