"""Everything computed at each evaluation of a training job besides the probe: collapse indicators,
triplet categories, clusters, the five properties, the live 2D map and its honesty.

``Diagnostics.evaluate`` returns a flat, JSON-able dict (floats, ints, strings, None, lists) that goes
into the evaluation event and ``metrics.jsonl`` as it is, and the aligned 2D coordinates of the
evaluation subset. Per-point arrays the window colours the map with (cluster ids, neighbour overlap,
neighbour drift) are kept in ``Diagnostics.arrays`` after each call (the run directory can save them
with the snapshot). One-line explanations of every key are in ``PROPERTY_HELP`` (tooltips), not in
each metrics line.

Budget: a full evaluation of 5k points must stay within ~3 s on a 2-core CPU, so the measures that
run the encoder again (smoothness, invariance, alignment, per-factor invariance) use a fixed random
subset of ``property_points`` images, and the triplet fractions at most ``triplet_anchors`` random
anchors (each against all its positives and negatives; every anchor of the default 2000-point
evaluation subset). Both are seeded: the same rows at every evaluation.

The triplet categories count with the method's ``TripletDefinition`` (its distance and margin: a
triplet run's loss's own), and the invariance and alignment use the method's views (for a method
without views of its own, the dataset's: engine.augment.dataset_views).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from engine.metrics import clusters, collapse, properties, triplets
from engine.metrics.triplets import TripletDefinition

# The five properties of a good representation (the course's list) and the key holding each number.
PROPERTIES = {"smoothness": "smoothness", "invariance": "invariance", "clustering": "silhouette",
              "sparsity": "sparsity", "disentanglement": "disentanglement"}

PROPERTY_HELP: dict[str, str] = {
    "effective_rank": "RankMe: exp of the entropy of the normalised singular values of the centred embeddings; "
                      "how many dimensions the representation really uses (1 to min(N, D)).",
    "relative_spread": "RMS distance of the embeddings to their mean over their RMS norm: 0 = all points "
                       "identical; under 0.0005 the verdict is near collapse.",
    "l2_std": "Mean per-dimension std of the l2-normalised embeddings, as SimSiam defines it (not centred): "
              "about 1/sqrt(D) when spread, 0 when collapsed, but also tiny when all points share a large "
              "offset (a fresh convnet); the verdict does not use it.",
    "l2_std_ratio": "l2_std x sqrt(D): 1 = SimSiam's ideal 1/sqrt(D).",
    "alignment": "Wang & Isola alignment: mean squared distance between the centred, l2-normalised embeddings "
                 "of two augmented views of the same image (0 = identical; lower is better).",
    "uniformity": "Wang & Isola uniformity: log mean exp(-2 ||u_i - u_j||^2) over pairs of centred, "
                  "l2-normalised embeddings (0 = all together, about -4 = spread around their mean).",
    "collapse": "healthy / dimensional collapse (effective rank under 5 % of the dimensions) / near collapse "
                "(relative spread under 0.0005) / complete collapse (all embeddings the same point).",
    "mean_cosine": "Mean cosine similarity between the centred embeddings of different images (near 0: "
                   "spread around their mean; 1: all the same point).",
    "dead_dims": "Dimensions that do not vary at all across the evaluation images.",
    "singular_values": "The singular-value spectrum of the centred embeddings (top 64), largest first.",
    "triplet_easy": "Share of (anchor, positive, negative) triplets with d_an >= d_ap + margin: no triplet loss.",
    "triplet_semi_hard": "Share of triplets with d_ap <= d_an < d_ap + margin: right order, inside the margin.",
    "triplet_hard": "Share of triplets with d_an < d_ap: the other-class point is closer than the same-class one.",
    "triplet_margin": "The margin m the triplet categories are counted with: the triplet loss's (a triplet "
                      "run's own --margin).",
    "triplet_definition": "The distance D and margin the triplet categories are counted with: the triplet "
                          "loss's (a triplet run's own).",
    "triplet_histogram": "Histogram of D_an - D_ap over sampled triplets (bins over triplet_histogram_range): "
                         "< 0 hard, [0, margin) semi-hard, >= margin easy.",
    "silhouette": "Clustering: mean silhouette of the classes, (b - a) / max(a, b) with a the mean distance "
                  "to its class and b to the nearest other class (-1 to 1, higher is better).",
    "knn_loo_acc": "Clustering: leave-one-out 10-NN accuracy on the evaluation images.",
    "nmi": "Normalised mutual information between k-means clusters (k = classes) and the labels (0 to 1).",
    "ari": "Adjusted Rand index between k-means clusters and the labels (0 = chance, 1 = identical).",
    "purity": "Share of the points whose k-means cluster's majority class is their own (0 to 1; rises with "
              "the number of clusters, so read it beside NMI).",
    "kmeans_silhouette": "Silhouette of the k-means clusters themselves (how well-separated the found groups are).",
    "hdbscan_clusters": "How many dense clusters HDBSCAN finds (on a 10-dimensional PCA of the embeddings).",
    "hdbscan_noise": "Share of points HDBSCAN leaves out as noise.",
    "hdbscan_nmi": "NMI between HDBSCAN's clusters (noise as one group) and the labels.",
    "hdbscan_ari": "ARI between HDBSCAN's clusters and the labels.",
    "hdbscan_purity": "Purity of HDBSCAN's clusters (noise left out): the share of the clustered points whose "
                      "cluster's majority class is their own.",
    "smoothness": "Embedding change per unit of small random pixel noise, relative to the same ratio between "
                  "different images (lower = smoother; 1 = noise moves it as much per pixel as real differences).",
    "invariance": "1 - distance between two augmented views of an image / distance between views of different "
                  "images (1 = views coincide, 0 = no closer than strangers).",
    "invariance_shape": "Invariance to the shape alone (shapes): should stay low, shape is the class.",
    "invariance_scale": "Invariance to the size of the shape alone (shapes).",
    "invariance_rotation": "Invariance to the rotation of the shape alone (shapes).",
    "invariance_x": "Invariance to the horizontal position alone (shapes).",
    "invariance_y": "Invariance to the vertical position alone (shapes).",
    "invariance_hue": "Invariance to the colour (hue) alone (shapes).",
    "sparsity": "Hoyer sparsity of the centred embeddings, averaged: 1 = one active dimension per image, "
                "0 = all dimensions equally active.",
    "participation_ratio": "(sum of covariance eigenvalues)^2 / sum of their squares: how many dimensions "
                           "carry the variance (1 to D).",
    "disentanglement": "DCI disentanglement against the known factors (shapes): 1 = each embedding dimension "
                       "serves a single factor.",
    "mig": "Mutual information gap: per factor, (best - second best dimension's mutual information) / the "
           "factor's entropy, averaged (shapes).",
    "predictability_shape": "Held-out accuracy of a linear read-out of the shape (shapes).",
    "predictability_scale": "Held-out R^2 of a linear read-out of the scale (shapes).",
    "predictability_rotation": "Held-out R^2 of a linear read-out of the rotation (shapes).",
    "predictability_x": "Held-out R^2 of a linear read-out of the x position (shapes).",
    "predictability_y": "Held-out R^2 of a linear read-out of the y position (shapes).",
    "predictability_hue": "Held-out R^2 of a linear read-out of the hue as (cos, sin) (shapes).",
    "trustworthiness": "Trustworthiness of the 2D map (as scikit-learn): are the map's 10 nearest "
                       "neighbours true neighbours in the embedding? (1 = yes).",
    "neighbour_overlap": "Mean share of each point's 10 nearest neighbours in the embedding that are also "
                         "its neighbours on the map.",
    "neighbour_drift": "Mean share of each point's 10 nearest neighbours that changed since the previous "
                       "evaluation (1 - Jaccard overlap; 0 = stable).",
    "notes": "Why some measures are missing (single class, unlabelled data, too few points).",
}


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined numbers become None; numpy scalars become Python ones."""
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


class Diagnostics:
    """The aggregator the training job calls at every evaluation (one instance per run).

    It keeps state across calls: the live 2D map (each layout aligned to the previous one), the
    previous embeddings (for neighbour drift) and the previous cluster ids (each evaluation's ids are
    renamed to follow them, ``clusters.match_ids``, so a cluster keeps its id and colour). The evaluation images must be the same rows each call.
    """

    def __init__(self, *, num_classes: int, labelled: bool, augment: torch.nn.Module, projection: str = "umap",
                 triplets: TripletDefinition = TripletDefinition(), device: str | torch.device = "cpu",
                 seed: int = 0, property_points: int = 128, factor_points: int = 64,
                 triplet_anchors: int | None = 2000, with_hdbscan: bool = True, k: int = 10):
        """``augment``: the views invariance and alignment are measured under (``Method.evaluation_views``);
        ``triplets``: the definition the triplet categories are counted with (``Method.triplet_definition``)."""
        if not isinstance(triplets, TripletDefinition):
            raise ValueError(f"triplets: {triplets!r} is not valid; allowed: a TripletDefinition")
        for name, value in (("property_points", property_points), ("factor_points", factor_points), ("k", k)):
            if int(value) < 2:
                raise ValueError(f"{name}: {value!r} is not valid; allowed: a whole number >= 2")
        from engine.projection import PROJECTIONS

        PROJECTIONS.get(projection)  # an unknown name fails here, not at the first evaluation
        self.num_classes = int(num_classes)
        self.labelled = bool(labelled)
        self.projection = projection
        self.triplets = triplets
        self.device = torch.device(device)
        self.seed = int(seed)
        self.augment = augment
        self.property_points = int(property_points)
        self.factor_points = int(factor_points)
        self.triplet_anchors = triplet_anchors
        self.with_hdbscan = with_hdbscan
        self.k = int(k)
        self._live = None  # created on first use: importing the projection costs time at start-up
        self._previous: np.ndarray | None = None
        self._previous_clusters: dict[str, np.ndarray] = {}  # algorithm -> the last evaluation's ids
        self.arrays: dict[str, np.ndarray] = {}  # per-point results of the last call (see module doc)
        self.timings: dict[str, float] = {}  # wall seconds per part of the last call
        self.cpu_timings: dict[str, float] = {}  # CPU seconds (all threads) per part of the last call

    @property
    def live(self):
        if self._live is None:
            from engine.projection import LiveProjection

            self._live = LiveProjection(self.projection, seed=self.seed, device=self.device)
        return self._live

    def evaluate(self, encoder: torch.nn.Module, images: torch.Tensor, labels: np.ndarray,
                 embeddings: np.ndarray, factors: dict[str, np.ndarray] | None,
                 step: int) -> tuple[dict, np.ndarray]:
        """(metrics, coords) for the evaluation subset: see the module docstring and PROPERTY_HELP."""
        from threadpoolctl import threadpool_limits

        # numpy's and scikit-learn's BLAS calls here are small (128 x 128 eigenproblems, k-means++
        # on 5k x 128): a multi-threaded OpenBLAS spin-waits on a busy machine and made them ~10x
        # slower than one thread (k-means 0.30 s CPU against 0.03 s, measured on 2 shared cores).
        # torch's own threads are not affected.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._evaluate(encoder, images, labels, embeddings, factors, step)

    def _evaluate(self, encoder, images, labels, embeddings, factors, step) -> tuple[dict, np.ndarray]:
        z = np.asarray(embeddings.detach().cpu() if torch.is_tensor(embeddings) else embeddings)
        if z.ndim != 2:
            raise ValueError(f"embeddings at step {step}: shape {z.shape} is not valid; allowed: (N, D)")
        z = z.astype(np.float32, copy=False)
        bad = ~np.isfinite(z).all(1)
        if bad.any():
            raise ValueError(f"embeddings contain NaN/inf at step {step} ({int(bad.sum())} of {len(z)} "
                             f"points, first at row {int(np.argmax(bad))}): the model has diverged; try a "
                             "lower learning rate")
        n = len(z)
        if n < 3:
            raise ValueError(f"diagnostics at step {step} need at least 3 evaluation points; got {n}")
        labels = np.asarray(labels).astype(np.int64).ravel()
        if len(labels) != n or len(images) != n:
            raise ValueError(f"step {step}: {len(images)} images, {len(labels)} labels and {n} embeddings; "
                             "allowed: one of each per evaluation point")
        if not self.labelled:
            labels = np.full(n, -1, dtype=np.int64)
        self.timings, self.cpu_timings, self.arrays = {}, {}, {}
        notes: list[str] = []
        metrics: dict[str, Any] = {}
        if encoder is None:  # embeddings logged from elsewhere (engine.log): no views to measure
            views = (None, None)
            notes.append("smoothness and invariance need the encoder: this run holds its embeddings only")
        else:
            views = self._timed("views", lambda: properties.view_embeddings(
                encoder, images, self.augment, n=self.property_points, seed=self.seed, device=self.device))

        # one (N, N) distance matrix between the l2-normalised embeddings serves the triplets (when
        # their definition is that distance), both silhouettes and the kNN accuracy
        dist = self._timed("distances", lambda: triplets.distance_matrix(z, device=self.device))
        metrics.update(self._timed("collapse", lambda: collapse.collapse_indicators(z, *views)))
        self._timed("triplets", lambda: self._triplets(z, labels, dist, metrics, notes))
        self._timed("clusters", lambda: self._clusters(z, labels, dist, metrics, notes))
        self._timed("properties", lambda: self._properties(encoder, images, z, labels, views, factors, dist,
                                                           metrics, notes))
        del dist
        coords = self._timed("projection", lambda: self.live.update(z))
        notes.extend(getattr(self.live, "notes", []))
        self._timed("honesty", lambda: self._honesty(z, coords, metrics))
        metrics["notes"] = notes
        self.timings["total"] = sum(self.timings.values())
        self.cpu_timings["total"] = sum(self.cpu_timings.values())
        return {k: _finite_or_none(v) for k, v in metrics.items()}, coords

    # -- parts --------------------------------------------------------------------------------------

    def _timed(self, name: str, fn):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.timings[name] = time.perf_counter() - start
        self.cpu_timings[name] = time.process_time() - cpu
        return out

    def _triplets(self, z, labels, dist, metrics, notes) -> None:
        definition = self.triplets
        if not self.labelled:
            fr = triplets.TripletFractions(None, None, None, 0, 0, "triplets undefined: the data are unlabelled")
        else:
            # the shared matrix holds plain euclidean distances between normalised embeddings
            shared = dist if definition.distance == "euclidean" and definition.normalize else None
            fr = triplets.triplet_fractions(z, labels, definition, max_anchors=self.triplet_anchors,
                                            seed=self.seed, device=self.device, distances=shared)
        metrics.update(triplet_easy=fr.easy, triplet_semi_hard=fr.semi_hard, triplet_hard=fr.hard,
                       triplet_margin=definition.margin, triplet_definition=definition.describe())
        if fr.note:
            notes.append(fr.note)
        if fr.easy is None:
            return
        hist = triplets.margin_histogram(z, labels, definition, seed=self.seed)
        if hist is not None:
            metrics["triplet_histogram"] = [int(c) for c in hist[0]]
            metrics["triplet_histogram_range"] = [float(hist[1][0]), float(hist[1][-1])]

    def _clusters(self, z, labels, dist, metrics, notes) -> None:
        labelled = labels[labels >= 0]
        k = clusters.default_k(labels, self.num_classes)
        if (len(np.unique(labelled)) if len(labelled) else self.num_classes) < 2:
            notes.append(f"k-means: fewer than 2 classes among the evaluation labels, k = {k}")
        if len(z) < k:
            notes.append(f"clusters undefined: {len(z)} evaluation points for k = {k} clusters")
            metrics.update(nmi=None, ari=None, silhouette=None, kmeans_silhouette=None)
            return
        with_hdbscan = self.with_hdbscan and len(z) >= max(5, len(z) // 100)
        found, ids, more = clusters.cluster_scores(z, labels, k=k, seed=self.seed, with_hdbscan=with_hdbscan,
                                                   distances=dist)
        metrics.update(found)
        if not self.labelled:
            notes.append("silhouette, NMI and ARI undefined: the data are unlabelled")
        notes.extend(more)
        for name, found_ids in ids.items():
            before = self._previous_clusters.get(name)
            if before is not None and len(before) == len(found_ids):
                found_ids = clusters.match_ids(before, found_ids)  # same grouping, the ids of the last one
            self._previous_clusters[name] = found_ids
            self.arrays[f"{name}_clusters"] = found_ids

    def _properties(self, encoder, images, z, labels, views, factors, dist, metrics, notes) -> None:
        if encoder is not None:
            metrics["smoothness"] = properties.smoothness(encoder, images, n=self.property_points, seed=self.seed,
                                                          device=self.device)
            metrics["invariance"] = properties.invariance(*views, seed=self.seed)
        metrics["knn_loo_acc"] = properties.knn_accuracy_loo(z, labels, k=min(self.k, len(z) - 1),
                                                             device=self.device, distances=dist)
        metrics["sparsity"] = properties.hoyer_sparsity(z)
        metrics["participation_ratio"] = properties.participation_ratio(z)
        if not factors:
            return
        from engine.data import shapes

        if encoder is not None and all(k in factors for k in shapes.FACTORS):
            size = int(images.shape[-1])
            inv = properties.factor_invariance(encoder, z, factors, n=self.factor_points, seed=self.seed,
                                               device=self.device, size=size)
            metrics.update({f"invariance_{k}": v for k, v in inv.items()})
        if len(z) >= 10:
            dis = properties.disentanglement(z, factors, seed=self.seed)
            metrics["disentanglement"] = dis["disentanglement"]
            metrics["mig"] = dis["mig"]
            metrics.update({f"predictability_{k}": v for k, v in dis["predictability"].items()})
        else:
            notes.append("disentanglement undefined: fewer than 10 evaluation points")

    def _honesty(self, z, coords, metrics) -> None:
        from engine.metrics import honesty

        # the map and the embedding are compared in the geometry the map was drawn in (euclidean);
        # scikit-learn's trustworthiness needs k < N / 2
        k = max(1, min(self.k, (len(z) - 1) // 2))
        metrics["trustworthiness"] = honesty.trustworthiness(z, coords, k=k, device=self.device)
        overlap = np.asarray(honesty.neighbour_overlap(z, coords, k=k, device=self.device))
        metrics["neighbour_overlap"] = float(overlap.mean())
        self.arrays["neighbour_overlap"] = overlap
        if self._previous is not None and self._previous.shape[0] == len(z):
            # honesty gives the Jaccard overlap (1 = same neighbours); drift is its complement
            drift = 1.0 - np.asarray(honesty.neighbour_drift(self._previous, z, k=k, device=self.device))
            metrics["neighbour_drift"] = float(drift.mean())
            self.arrays["neighbour_drift"] = drift
        else:
            metrics["neighbour_drift"] = None
        self._previous = z.copy()
