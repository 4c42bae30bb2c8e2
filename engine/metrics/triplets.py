"""Triplet categories of any representation (not only metric learning): Hermans et al. 2017 ("In
defense of the triplet loss") and Schroff et al. 2015 (FaceNet) name, for an anchor a, a positive p
(same class) and a negative n (other class), with distances d_ap, d_an and a margin m:

- easy:      d_an >= d_ap + m       (the triplet loss max(0, d_ap - d_an + m) is 0)
- semi-hard: d_ap <= d_an < d_ap + m (right order, inside the margin)
- hard:      d_an <  d_ap           (the negative is closer than the positive)

Ties (d_an exactly d_ap, or d_ap + m) go where the triplet loss puts them: a tie at d_ap still costs
m, so it is semi-hard; a tie at d_ap + m costs 0, so it is easy. Constant embeddings are therefore
all semi-hard.

Distances: euclidean on l2-normalised embeddings by default, so that distances lie in [0, 2] whatever
the scale of the encoder's output and a margin means the same thing across runs and methods
(``normalize=False`` gives raw euclidean distances); ``cosine`` is 1 - cos, also in [0, 2]
(for unit vectors it equals half the squared euclidean distance).

Counting all valid triplets without enumerating them: for one anchor, sort its negatives' distances;
then the number of negatives closer than d_ap (hard) and closer than d_ap + m (hard + semi-hard) for
every positive is one ``searchsorted`` each. Anchors are processed in chunks (memory chunk x N), and
``max_anchors`` optionally evaluates a random subset of anchors, each still against all its
positives and negatives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("euclidean", "cosine")
CATEGORY_NAMES = ("anchor", "positive", "easy negative", "semi-hard negative", "hard negative",
                  "unlabelled", "negative")
ANCHOR, POSITIVE, EASY, SEMI_HARD, HARD, UNLABELLED, NEGATIVE = range(len(CATEGORY_NAMES))


def _check(embeddings, labels, margin: float, metric: str) -> tuple[torch.Tensor, np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid; allowed: {', '.join(METRICS)}")
    try:
        m = float(margin)
    except (TypeError, ValueError):
        m = float("nan")
    if not m >= 0:
        raise ValueError(f"margin: {margin!r} is not valid; allowed: a number >= 0")
    z = embeddings if torch.is_tensor(embeddings) else torch.from_numpy(np.asarray(embeddings))
    z = z.detach().to(torch.float32)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if z.ndim != 2 or len(z) != len(labels):
        raise ValueError(f"embeddings {tuple(z.shape)} and labels ({len(labels)},) do not match; "
                         "allowed: (N, D) embeddings and N labels")
    return z, labels


def _prepare(z: torch.Tensor, metric: str, normalize: bool) -> torch.Tensor:
    return torch.nn.functional.normalize(z, dim=1) if (normalize or metric == "cosine") else z


def _distances(q: torch.Tensor, b: torch.Tensor, metric: str, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Distances between rows of q and rows of b (already normalised as the metric wants).

    Both are centred on ``shift`` (default: the mean of b) first: euclidean distances do not change,
    but float32 no longer loses them when all points share a large offset (a fresh convnet's
    normalised embeddings differ by ~1e-3, below what 2 - 2 cos resolves in float32). Cosine distance
    is computed as ||u - v||^2 / 2, its value for unit vectors.
    """
    shift = b.mean(0) if shift is None else shift
    q, b = q - shift, b - shift
    sq = ((q * q).sum(1, keepdim=True) - 2 * q @ b.T + (b * b).sum(1)).clamp_min(0)
    return sq / 2 if metric == "cosine" else sq.sqrt()


@torch.no_grad()
def distance_matrix(embeddings, metric: str = "euclidean", normalize: bool = True,
                    device: str | torch.device = "cpu", chunk: int = 1024) -> torch.Tensor:
    """All pairwise distances (N, N) float32, zero diagonal: euclidean between l2-normalised
    embeddings by default (``normalize=False``: raw), or cosine distance 1 - cos. Computed once, it
    serves the triplets, the silhouettes, the kNN accuracy and the uniformity of one evaluation
    (``distances=`` arguments), 100 MB for 5k points."""
    z, _ = _check(embeddings, np.zeros(len(embeddings)), 0.0, metric)
    z = _prepare(z.to(device), metric, normalize)
    shift = z.mean(0)
    out = torch.empty(len(z), len(z), device=z.device)
    for start in range(0, len(z), chunk):
        out[start:start + chunk] = _distances(z[start:start + chunk], z, metric, shift)
    out.fill_diagonal_(0.0)
    return out


@dataclass(frozen=True)
class TripletFractions:
    """Fractions of easy / semi-hard / hard among the valid triplets counted (None when undefined)."""

    easy: float | None
    semi_hard: float | None
    hard: float | None
    triplets: int  # how many triplets were counted
    anchors: int  # how many anchors they came from
    note: str | None = None  # why the fractions are undefined, or that anchors were sampled


def _undefined(note: str) -> TripletFractions:
    return TripletFractions(None, None, None, 0, 0, note)


def _single_class_note(labels: np.ndarray) -> str | None:
    valid = labels[labels >= 0]
    if len(np.unique(valid)) < 2:
        return (f"triplets undefined: {len(np.unique(valid))} labelled class(es) in the evaluation subset; "
                "a triplet needs a positive and a negative of another class")
    return None


@torch.no_grad()
def triplet_fractions(embeddings, labels, margin: float = 0.2, metric: str = "euclidean",
                      normalize: bool = True, max_anchors: int | None = None, chunk: int = 256,
                      seed: int = 0, device: str | torch.device = "cpu",
                      distances: torch.Tensor | None = None) -> TripletFractions:
    """Fractions of easy, semi-hard and hard triplets among all valid (a, p, n) of the points.

    Labels < 0 (unlabelled) take part in no triplet. ``max_anchors`` evaluates that many random
    anchors (each against all its positives and negatives) instead of all of them. ``distances``:
    the ``distance_matrix`` of the same embeddings and metric, if already computed.
    """
    z, labels = _check(embeddings, labels, margin, metric)
    note = _single_class_note(labels)
    if note:
        return _undefined(note)
    z = _prepare(z.to(device), metric, normalize)
    shift = z.mean(0)
    if distances is not None:
        z = distances  # rows are looked up instead of computed
    lab = torch.from_numpy(labels).to(z.device)
    counts = np.bincount(labels[labels >= 0])
    # anchors that have at least one positive (a class of one forms no triplet)
    anchors = np.flatnonzero((labels >= 0) & (counts[np.maximum(labels, 0)] > 1))
    sampled = max_anchors is not None and len(anchors) > max_anchors
    if sampled:
        anchors = np.sort(np.random.default_rng(seed).choice(anchors, max_anchors, replace=False))
    valid = lab >= 0
    total = hard = not_easy = 0
    for start in range(0, len(anchors), chunk):
        a = torch.from_numpy(anchors[start:start + chunk]).to(z.device)
        d = distances[a] if distances is not None else _distances(z[a], z, metric, shift)
        same = lab[a][:, None] == lab[None]
        pos = same & valid[None]
        pos[torch.arange(len(a)), a] = False
        neg = ~same & valid[None]
        neg_sorted = torch.where(neg, d, torch.full_like(d, float("inf"))).sort(dim=1).values
        # non-positives query -inf: no negative is closer than that, so they add 0
        q = torch.where(pos, d, torch.full_like(d, -float("inf")))
        hard += int(torch.searchsorted(neg_sorted, q, side="left").sum())
        not_easy += int(torch.searchsorted(neg_sorted, q + float(margin), side="left").sum())
        total += int((pos.sum(1) * neg.sum(1)).sum())
    if total == 0:
        return _undefined("triplets undefined: no anchor has both a positive and a negative")
    note = (f"triplet fractions from {len(anchors)} random anchors (each against all its positives and "
            "negatives)") if sampled else None
    return TripletFractions((total - not_easy) / total, (not_easy - hard) / total, hard / total,
                            total, len(anchors), note)


@torch.no_grad()
def margin_histogram(embeddings, labels, metric: str = "euclidean", normalize: bool = True,
                     bins: int = 80, samples: int = 20_000, seed: int = 0,
                     value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Histogram of d_an - d_ap over ``samples`` triplets drawn uniformly from all valid triplets.

    Returns (counts, edges) like ``np.histogram``, or None for fewer than two classes. Read it against
    the margin: < 0 hard, [0, m) semi-hard, >= m easy. The default range is [-2, 2] for normalised
    or cosine distances (both lie in [0, 2]) and +-(largest sampled |difference|) otherwise.
    """
    z, labels = _check(embeddings, labels, 0.0, metric)
    if _single_class_note(labels):
        return None
    z = _prepare(z, metric, normalize)
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(labels >= 0)
    order = valid[np.argsort(labels[valid], kind="stable")]  # valid points grouped by class
    lab_sorted = labels[order]
    classes, start, size = np.unique(lab_sorted, return_index=True, return_counts=True)
    cls = np.searchsorted(classes, labels[order])
    # a uniform triplet = anchor drawn with weight (#positives x #negatives), then uniform p and n
    weight = (size[cls] - 1) * (len(order) - size[cls])
    if weight.sum() == 0:
        return None
    a_pos = rng.choice(len(order), samples, p=weight / weight.sum())
    c = cls[a_pos]
    k = rng.integers(0, size[c] - 1)  # a positive other than the anchor: skip the anchor's slot
    k += k >= (a_pos - start[c])
    p_pos = start[c] + k
    j = rng.integers(0, len(order) - size[c])  # a negative: skip the anchor's class block
    n_pos = np.where(j < start[c], j, j + size[c])
    a, p, n = (torch.from_numpy(order[x]) for x in (a_pos, p_pos, n_pos))
    d_ap = _distances_rows(z[a], z[p], metric)
    d_an = _distances_rows(z[a], z[n], metric)
    diff = (d_an - d_ap).numpy()
    if value_range is None:
        if normalize or metric == "cosine":
            value_range = (-2.0, 2.0)
        else:
            r = float(np.abs(diff).max()) or 1.0
            value_range = (-r, r)
    counts, edges = np.histogram(diff, bins=bins, range=value_range)
    return counts, edges


def _distances_rows(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    d = (x - y).norm(dim=1)  # differences first: exact even when all points share an offset
    return d * d / 2 if metric == "cosine" else d


@dataclass(frozen=True)
class AnchorCategories:
    """The category of every point for one anchor (codes index ``CATEGORY_NAMES``)."""

    codes: np.ndarray  # int8 (N,)
    distances: np.ndarray  # float32 (N,): distance of every point to the anchor
    hardest_positive: int | None  # the farthest positive (None: the anchor's class has no other point)
    hardest_negative: int | None  # the closest negative (None: no other class)
    reference_distance: float | None  # the d_ap the negatives are judged against

    @property
    def names(self) -> np.ndarray:
        return np.asarray(CATEGORY_NAMES)[self.codes]


@torch.no_grad()
def anchor_categories(embeddings, labels, anchor: int, margin: float = 0.2, metric: str = "euclidean",
                      normalize: bool = True, positive: int | None = None) -> AnchorCategories:
    """Category of every point relative to ``anchor``: anchor, positive, easy / semi-hard / hard
    negative, unlabelled (label < 0), or plain negative when the anchor has no positive.

    A negative's category needs one d_ap: by default the hardest (farthest) positive's, as in
    batch-hard mining; so an easy negative is easy with every positive, and a hard negative is
    closer than at least that positive. ``positive`` picks another positive as the reference.
    """
    z, labels = _check(embeddings, labels, margin, metric)
    n = len(labels)
    if not 0 <= int(anchor) < n:
        raise ValueError(f"anchor: {anchor} is not valid; allowed: 0 to {n - 1}")
    anchor = int(anchor)
    if labels[anchor] < 0:
        raise ValueError(f"anchor: point {anchor} is unlabelled; allowed: a labelled point")
    z = _prepare(z, metric, normalize)
    d = _distances(z[anchor:anchor + 1], z, metric)[0].numpy()
    pos = labels == labels[anchor]
    pos[anchor] = False
    neg = (labels >= 0) & (labels != labels[anchor])
    codes = np.full(n, UNLABELLED, dtype=np.int8)
    codes[anchor] = ANCHOR
    codes[pos] = POSITIVE
    hardest_pos = int(np.flatnonzero(pos)[np.argmax(d[pos])]) if pos.any() else None
    hardest_neg = int(np.flatnonzero(neg)[np.argmin(d[neg])]) if neg.any() else None
    if positive is not None:
        if not (0 <= int(positive) < n and pos[int(positive)]):
            raise ValueError(f"positive: {positive} is not valid; allowed: a point of the anchor's class "
                             "other than the anchor")
        reference = float(d[int(positive)])
    else:
        reference = None if hardest_pos is None else float(d[hardest_pos])
    if reference is None:
        codes[neg] = NEGATIVE
    else:
        dn = d[neg]
        codes[neg] = np.where(dn < reference, HARD, np.where(dn < reference + float(margin), SEMI_HARD, EASY))
    return AnchorCategories(codes, d.astype(np.float32), hardest_pos, hardest_neg, reference)
