"""Triplet categories of any representation (not only metric learning): Hermans et al. 2017 ("In
defense of the triplet loss") and Schroff et al. 2015 (FaceNet) name, for an anchor a, a positive p
(same class) and a negative n (other class), with distances d_ap, d_an and a margin m:

- easy:      d_an >= d_ap + m       (the triplet loss max(0, d_ap - d_an + m) is 0)
- semi-hard: d_ap <= d_an < d_ap + m (right order, inside the margin)
- hard:      d_an <  d_ap           (the negative is closer than the positive)

Ties (d_an exactly d_ap, or d_ap + m) go where the triplet loss puts them: a tie at d_ap still costs
m, so it is semi-hard; a tie at d_ap + m costs 0, so it is easy. Constant embeddings are therefore
all semi-hard.

Which distance and which margin: a ``TripletDefinition``, the one the triplet loss trains with
(engine.losses.metric.TripletLoss builds its own from it). Its defaults, the loss's defaults, are
written only there: the squared euclidean distance between l2-normalised embeddings (D in [0, 4],
the course's max{0, d_ap^2 - d_an^2 + m}) and its margin. A method declares the definition its
representation is judged by (``Method.triplet_definition``): a triplet run its own margin and
distance, every other method the default. The shares in an evaluation, the Triplets panel, the
triplet inspector and the map's triplet colouring all count with it, so they agree with the loss's
own shares on the same points (pytorch-metric-learning's ``TripletMarginMiner`` with the matching
``LpDistance`` counts the same triplets).

Counting all valid triplets without enumerating them: for one anchor, sort its positives' distances;
then for every negative the number of positives farther than d_an (hard) and farther than d_an - m
(hard + semi-hard) is one ``searchsorted`` each. Anchors are processed class by class in chunks
(memory chunk x N), and ``max_anchors`` optionally evaluates a random subset of anchors, each still
against all its positives and negatives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.neighbours import centred_rows

METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class TripletDefinition:
    """When a triplet is easy, semi-hard or hard: the distance D the hinge max{0, D_ap - D_an + m}
    compares and the margin m. ``distance``: "euclidean" or "cosine" (1 - cos); ``normalize``
    projects the embeddings on the unit sphere first (always, for cosine); ``squared`` compares
    D = d^2 instead of d. The defaults are the triplet loss's."""

    margin: float = 0.2
    distance: str = "euclidean"
    squared: bool = True
    normalize: bool = True

    def __post_init__(self):
        if self.distance not in METRICS:
            raise ValueError(f"distance {self.distance!r} is not valid; allowed: {', '.join(METRICS)}")
        try:
            m = float(self.margin)
        except (TypeError, ValueError):
            m = float("nan")
        if not (m >= 0 and np.isfinite(m)):
            raise ValueError(f"margin: {self.margin!r} is not valid; allowed: a number >= 0")
        object.__setattr__(self, "margin", m)

    @property
    def on_sphere(self) -> bool:
        """Whether the embeddings are l2-normalised before the distance."""
        return self.normalize or self.distance == "cosine"

    def difference_limit(self) -> float | None:
        """Largest possible |D_an - D_ap| (None when distances are unbounded): d lies in [0, 2] on
        the sphere (cosine distance too), so D in [0, 4] when squared."""
        if not self.on_sphere:
            return None
        return 4.0 if self.squared else 2.0

    def describe(self) -> str:
        """E.g. 'squared euclidean distance between l2-normalised embeddings, margin 0.2'."""
        name = "cosine distance (1 - cos)" if self.distance == "cosine" else (
            "euclidean distance between " + ("l2-normalised" if self.normalize else "raw") + " embeddings")
        return f"{'squared ' if self.squared else ''}{name}, margin {self.margin:g}"


CATEGORY_NAMES = ("anchor", "positive", "easy negative", "semi-hard negative", "hard negative",
                  "unlabelled", "negative")
ANCHOR, POSITIVE, EASY, SEMI_HARD, HARD, UNLABELLED, NEGATIVE = range(len(CATEGORY_NAMES))
DIFFICULTY = {EASY: "easy", SEMI_HARD: "semi-hard", HARD: "hard"}  # a triplet's category, in one word


def difficulty(d_ap, d_an, margin: float) -> np.ndarray:
    """The category code (HARD, SEMI_HARD or EASY) of triplets with distances ``d_ap`` and ``d_an``
    (numbers or arrays) under ``margin``: the rule of the module docstring, ties included. Every
    place that names a triplet's category asks here; ``DIFFICULTY[code]`` is its word."""
    d_ap, d_an = np.asarray(d_ap), np.asarray(d_an)
    return np.where(d_an < d_ap, HARD, np.where(d_an < d_ap + float(margin), SEMI_HARD, EASY)).astype(np.int8)


def _check(embeddings, labels) -> tuple[torch.Tensor, np.ndarray]:
    z = embeddings if torch.is_tensor(embeddings) else torch.from_numpy(np.asarray(embeddings))
    z = z.detach().to(torch.float32)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if z.ndim != 2 or len(z) != len(labels):
        raise ValueError(f"embeddings {tuple(z.shape)} and labels ({len(labels)},) do not match; "
                         "allowed: (N, D) embeddings and N labels")
    return z, labels


def _prepare(z: torch.Tensor, metric: str, normalize: bool) -> torch.Tensor:
    return torch.nn.functional.normalize(z, dim=1) if (normalize or metric == "cosine") else z


def _distances(q: torch.Tensor, b: torch.Tensor, metric: str, shift: torch.Tensor | None = None,
               squared: bool = False) -> torch.Tensor:
    """Distances between rows of q and rows of b (already normalised as the metric wants), squared
    when ``squared``.

    Both are centred on ``shift`` (default: the mean of b) first: euclidean distances do not change,
    but float32 no longer loses them when all points share a large offset (a fresh convnet's
    normalised embeddings differ by ~1e-3, below what 2 - 2 cos resolves in float32). Cosine distance
    is computed as ||u - v||^2 / 2, its value for unit vectors.
    """
    shift = b.mean(0) if shift is None else shift
    b = b - shift
    return _centred_distances(q - shift, b, (b * b).sum(1), metric, squared)


def _centred_distances(q: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor, metric: str,
                       squared: bool) -> torch.Tensor:
    """``_distances`` of rows already centred, ``b_sq`` the squared norms of b's rows."""
    return _from_squared(((q * q).sum(1, keepdim=True) - 2 * q @ b.T + b_sq).clamp_min(0), metric, squared)


def _from_squared(sq: torch.Tensor, metric: str, squared: bool) -> torch.Tensor:
    """The distance D from ‖q - b‖² (of unit rows, for cosine: 1 - cos = ‖u - v‖² / 2)."""
    d = sq / 2 if metric == "cosine" else (sq if squared else sq.sqrt())
    return d * d if squared and metric == "cosine" else d


@torch.no_grad()
def distance_matrix(embeddings, metric: str = "euclidean", normalize: bool = True,
                    device: str | torch.device = "cpu", chunk: int = 1024) -> torch.Tensor:
    """All pairwise distances (N, N) float32, zero diagonal: euclidean between l2-normalised
    embeddings by default (``normalize=False``: raw), or cosine distance 1 - cos. Computed once, it
    serves the triplets, the silhouettes, the kNN accuracy and the uniformity of one evaluation
    (``distances=`` arguments), 100 MB for 5k points."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid; allowed: {', '.join(METRICS)}")
    z, _ = _check(embeddings, np.zeros(len(embeddings)))
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
def triplet_fractions(embeddings, labels, definition: TripletDefinition = TripletDefinition(),
                      max_anchors: int | None = None, chunk: int = 256, seed: int = 0,
                      device: str | torch.device = "cpu", distances: torch.Tensor | None = None) -> TripletFractions:
    """Fractions of easy, semi-hard and hard triplets among all valid (a, p, n) of the points, with
    the distance and margin of ``definition``.

    Labels < 0 (unlabelled) take part in no triplet. ``max_anchors`` evaluates that many random
    anchors (each against all its positives and negatives) instead of all of them. ``distances``:
    the plain (not squared) ``distance_matrix`` of the same embeddings with the definition's
    distance and normalisation, if already computed.
    """
    z, labels = _check(embeddings, labels)
    note = _single_class_note(labels)
    if note:
        return _undefined(note)
    metric, squared, margin = definition.distance, definition.squared, definition.margin
    z = _prepare(z.to(device), metric, definition.normalize)
    shift = z.mean(0)
    if distances is not None:
        z = distances  # rows are looked up instead of computed
    counts = np.bincount(labels[labels >= 0])
    # anchors that have at least one positive (a class of one forms no triplet)
    anchors = np.flatnonzero((labels >= 0) & (counts[np.maximum(labels, 0)] > 1))
    sampled = max_anchors is not None and len(anchors) > max_anchors
    if sampled:
        anchors = np.sort(np.random.default_rng(seed).choice(anchors, max_anchors, replace=False))
    total = hard = not_easy = 0
    # anchors class by class: their positives are the same few columns (P) of every row
    for c in np.unique(labels[anchors]):
        pos_np = np.flatnonzero(labels == c)
        pos_cols = torch.from_numpy(pos_np).to(z.device)
        neg_cols = torch.from_numpy(np.flatnonzero((labels >= 0) & (labels != c))).to(z.device)
        class_anchors = anchors[labels[anchors] == c]
        for start in range(0, len(class_anchors), chunk):
            a_np = class_anchors[start:start + chunk]
            a = torch.from_numpy(a_np).to(z.device)
            if distances is not None:
                d = distances[a] ** 2 if squared else distances[a]
            else:
                d = _distances(z[a], z, metric, shift, squared)
            n_hard, n_not_easy = _count_below(d[:, pos_cols].double().cpu().numpy(),
                                              d[:, neg_cols].double().cpu().numpy(),
                                              np.searchsorted(pos_np, a_np), margin)
            hard, not_easy = hard + n_hard, not_easy + n_not_easy
            total += len(a_np) * (len(pos_np) - 1) * len(neg_cols)
    if total == 0:
        return _undefined("triplets undefined: no anchor has both a positive and a negative")
    note = (f"triplet fractions from {len(anchors)} random anchors (each against all its positives and "
            "negatives)") if sampled else None
    return TripletFractions((total - not_easy) / total, (not_easy - hard) / total, hard / total,
                            total, len(anchors), note)


def _count_below(d_ap: np.ndarray, d_an: np.ndarray, self_col: np.ndarray, margin: float) -> tuple[int, int]:
    """For rows of anchors: D to their positives (R, P), the anchor itself at ``self_col``, and to
    their negatives (R, Q). Returns the (a, p, n) with D_an < D_ap (hard) and with D_an < D_ap + m
    (not easy), i.e. for each negative the positives farther than D_an, or than D_an - m.

    One sorted 1-D array of every row's positives (row r shifted by r strides, so rows never mix)
    answers all R x Q queries in two ``searchsorted`` calls over sorted queries: numpy's, on sorted
    input, is ~3x faster here than torch's batched row search (most of the evaluation's triplet
    time). float64 keeps the shifted float32 distances exact."""
    rows, p = d_ap.shape
    low = min(d_ap.min(), d_an.min()) - margin - 1.0
    stride = max(d_ap.max(), d_an.max()) - low + 1.0
    d_ap = d_ap.copy()
    d_ap[np.arange(rows), self_col] = low + 0.5  # below every query: counted by each, as no positive
    shift = (np.arange(rows) * stride - low)[:, None]
    positives = np.sort(d_ap, axis=1) + shift  # each row sorted, rows in order: sorted overall
    queries = np.sort((d_an + shift).ravel())
    # a query of row r finds r * p entries of the rows before it; (r + 1) * p - found = farther ones
    base = d_an.shape[1] * p * rows * (rows + 1) // 2
    hard = base - int(np.searchsorted(positives.ravel(), queries, side="right").sum())
    not_easy = base - int(np.searchsorted(positives.ravel(), queries - margin, side="right").sum())
    return hard, not_easy


@dataclass(frozen=True)
class SampledTriplets:
    """Triplets as rows of the embeddings (anchor, positive, negative) with their distances D."""

    anchor: np.ndarray  # int64 (T,)
    positive: np.ndarray
    negative: np.ndarray
    d_ap: np.ndarray  # float32 (T,)
    d_an: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.d_an - self.d_ap

    def __len__(self) -> int:
        return len(self.anchor)

    def subset(self, mask: np.ndarray) -> "SampledTriplets":
        return SampledTriplets(self.anchor[mask], self.positive[mask], self.negative[mask], self.d_ap[mask],
                               self.d_an[mask])


@torch.no_grad()
def sample_triplets(embeddings, labels, definition: TripletDefinition = TripletDefinition(),
                    samples: int = 20_000, seed: int = 0) -> SampledTriplets | None:
    """``samples`` triplets drawn uniformly from all valid triplets (an anchor with weight #positives x
    #negatives, then a uniform positive and negative), with the definition's distances; None for fewer
    than two classes. The same seed draws the same triplets: what ``margin_histogram`` counted."""
    z, labels = _check(embeddings, labels)
    if _single_class_note(labels):
        return None
    metric = definition.distance
    z = _prepare(z, metric, definition.normalize)
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
    a, p, n = (order[x] for x in (a_pos, p_pos, n_pos))
    ta, tp, tn = (torch.from_numpy(x) for x in (a, p, n))
    d_ap = _distances_rows(z[ta], z[tp], metric, definition.squared).numpy()
    d_an = _distances_rows(z[ta], z[tn], metric, definition.squared).numpy()
    return SampledTriplets(a, p, n, d_ap, d_an)


@torch.no_grad()
def margin_histogram(embeddings, labels, definition: TripletDefinition = TripletDefinition(),
                     bins: int = 80, samples: int = 20_000, seed: int = 0,
                     value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Histogram of D_an - D_ap (the definition's distance) over ``samples`` triplets drawn
    uniformly from all valid triplets (``sample_triplets``).

    Returns (counts, edges) like ``np.histogram``, or None for fewer than two classes. Read it against
    the margin: < 0 hard, [0, m) semi-hard, >= m easy. The default range is the definition's
    ``difference_limit`` (e.g. [-4, 4] for squared distances on the sphere) when distances are
    bounded, and +-(largest sampled |difference|) otherwise.
    """
    sampled = sample_triplets(embeddings, labels, definition, samples, seed)
    if sampled is None:
        return None
    diff = sampled.difference
    if value_range is None:
        limit = definition.difference_limit()
        if limit is None:
            limit = float(np.abs(diff).max()) or 1.0
        value_range = (-limit, limit)
    counts, edges = np.histogram(diff, bins=bins, range=value_range)
    return counts, edges


def triplets_between(embeddings, labels, definition: TripletDefinition, low: float, high: float,
                     closed: bool = False, samples: int = 20_000, seed: int = 0) -> SampledTriplets | None:
    """The triplets ``sample_triplets`` draws (same seed: the ones ``margin_histogram`` counted) whose
    D_an - D_ap lies in [low, high), or [low, high] when ``closed`` (a histogram's last bin)."""
    sampled = sample_triplets(embeddings, labels, definition, samples, seed)
    if sampled is None:
        return None
    v = sampled.difference.astype(np.float64)
    return sampled.subset((v >= low) & ((v <= high) if closed else (v < high)))


def in_bin(values: np.ndarray, edges: np.ndarray, index: int) -> np.ndarray:
    """Which ``values`` ``np.histogram(values, edges)`` counts in bin ``index``: [e_i, e_i+1), the
    last bin closed on the right."""
    edges = np.asarray(edges, dtype=np.float64)
    if not 0 <= index < len(edges) - 1:
        raise ValueError(f"bin {index} is not valid; allowed: 0 to {len(edges) - 2}")
    lo, hi = edges[index], edges[index + 1]
    v = np.asarray(values, dtype=np.float64)
    return (v >= lo) & ((v <= hi) if index == len(edges) - 2 else (v < hi))


def _distances_rows(x: torch.Tensor, y: torch.Tensor, metric: str, squared: bool) -> torch.Tensor:
    d = (x - y).norm(dim=1)  # differences first: exact even when all points share an offset
    d = d * d / 2 if metric == "cosine" else d
    return d * d if squared else d


@dataclass(frozen=True)
class AnchorCategories:
    """The category of every point for one anchor (codes index ``CATEGORY_NAMES``)."""

    codes: np.ndarray  # int8 (N,)
    distances: np.ndarray  # float32 (N,): the definition's distance D of every point to the anchor
    hardest_positive: int | None  # the farthest positive (None: the anchor's class has no other point)
    hardest_negative: int | None  # the closest negative (None: no other class)
    reference_distance: float | None  # the d_ap the negatives are judged against

    @property
    def names(self) -> np.ndarray:
        return np.asarray(CATEGORY_NAMES)[self.codes]


@torch.no_grad()
def prepare_points(embeddings: np.ndarray, definition: TripletDefinition = TripletDefinition()) -> None:
    """Make and keep what ``anchor_categories`` needs of read-only ``embeddings`` (any thread): the
    window asks it in a worker when a large run opens, so its first click does not wait for it (a
    normalised and centred copy of every point: ~0.3 s for 70k x 1280, ~2 s for a million)."""
    centred_rows(embeddings, definition.on_sphere)


@torch.no_grad()
def anchor_categories(embeddings, labels, anchor: int, definition: TripletDefinition = TripletDefinition(),
                      positive: int | None = None) -> AnchorCategories:
    """Category of every point relative to ``anchor``: anchor, positive, easy / semi-hard / hard
    negative, unlabelled (label < 0), or plain negative when the anchor has no positive; with the
    distance D and margin of ``definition``.

    A negative's category needs one D_ap: by default the hardest (farthest) positive's, as in
    batch-hard mining; so an easy negative is easy with every positive, and a hard negative is
    closer than at least that positive. ``positive`` picks another positive as the reference.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    # the rows the neighbour index of the same read-only array ranks with (engine.neighbours), and the
    # product of its query for the same anchor: a click makes one pass over the points, not two
    rows = centred_rows(embeddings, definition.on_sphere)
    n = len(labels)
    if len(rows) != n:
        raise ValueError(f"embeddings {tuple(rows.rows.shape)} and labels ({n},) do not match; "
                         "allowed: (N, D) embeddings and N labels")
    if not 0 <= int(anchor) < n:
        raise ValueError(f"anchor: {anchor} is not valid; allowed: 0 to {n - 1}")
    anchor = int(anchor)
    if labels[anchor] < 0:
        raise ValueError(f"anchor: point {anchor} is unlabelled; allowed: a labelled point")
    margin = definition.margin
    sq = (2 * rows.ranking(anchor) + 2 * rows.half_sq[anchor]).clamp_min(0)  # ‖q - b‖² = 2 ranking + |q|²
    d = _from_squared(sq, definition.distance, definition.squared).numpy()
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
        codes[neg] = difficulty(reference, d[neg], margin)
    return AnchorCategories(codes, d.astype(np.float32), hardest_pos, hardest_neg, reference)
