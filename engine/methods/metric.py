"""Metric learning: a Siamese network (the encoder: backbone + neck) trained so that distance means
similarity, with a loss from one of two families.

Contrastive (``pair``, ``triplet``): the loss compares embeddings of the batch with each other;
batches hold K classes x M samples (Hermans et al. 2017) so each anchor has positives and negatives
to mine. Non-contrastive (``center``, ``cosine``, ``arc``): classification with adjustments, through
a head used only in training (a linear layer and learned class centres; or a normalised weight matrix
without bias, one or more sub-centres per class).

Besides ``training_step``, each method fills the hooks of ``Method`` the training job and the window
use: ``notes`` (e.g. sampling with replacement), ``retrieval_metric`` (the distance its embedding is
meant for), ``evaluation_stats(embeddings, labels)`` (distance histograms or centre angles on an
evaluation subset) and, for the triplet method, ``triplet_definition`` (the loss's own distance and
margin, which the diagnostics count the evaluation's triplet shares with).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from engine.distributed import check_k_by_m_divides
from engine.data.samplers import check_k_by_m, k_by_m_batches, k_by_m_notes, k_by_m_steps
from engine.losses.metric import (ArcFaceLoss, CenterLoss, CosFaceLoss, PairLoss, TripletLoss, adaptive_margins,
                                  parse_adaptive_margin)
from engine.methods import METHODS, Method, StepOutput
from engine.metrics.triplets import TripletDefinition
from engine.params import Param, resolve

K_M_PARAMS = (
    Param("classes_per_batch", 8, "K: classes drawn for each batch (batch size = K x M, Hermans et al. 2017).",
          type=int, low=2),
    Param("samples_per_class", 16, "M: images of each of the K classes in a batch, so every anchor has "
          "M - 1 positives.", type=int, low=2),
)
DISTANCE_PARAMS = (
    Param("distance", "euclidean", "Distance between embeddings compared by the loss.", type=str,
          choices=("euclidean", "cosine")),
    Param("normalize", True, "Project embeddings on the unit sphere before the loss, so the margin "
          "keeps its meaning as training goes.", type=bool),
    Param("squared", True, "Square the distances in the hinge (the course's d_ap² − d_an² + m); off: "
          "plain distances.", type=bool),
)
MARGIN_SOFTMAX_PARAMS = (
    Param("scale", "auto", "Scale s of the cosine logits; 'auto' = √2·log(C − 1), the fixed scale of "
          "AdaCos (Zhang et al. 2019).", special=("auto",), low=0, low_exclusive=True),
    Param("subcenters", 1, "Sub-centres per class (Deng et al. 2020): each class keeps the best of k "
          "centres, so noisy or multi-modal classes need not squeeze into one.", type=int, low=1, high=16),
    Param("adaptive_margin", "", "Per-class margins 'a,lambda,b': m_c = a·N_c^(−lambda) + b (Ha et al. "
          "2020), wider for rare classes; empty: --margin for every class.", type=str),
)


class MetricMethod(Method):
    """Shared parts: notes for the run log, the distance for retrieval, a skipped step."""

    family = "metric learning"

    def __init__(self, encoder, info, **params):
        params = resolve(self.params, params)
        super().__init__(encoder, info, **params)
        if info.num_classes < 2 or not info.labelled:
            raise ValueError(f"method '{self.name()}' needs class labels (two classes at least); "
                             f"{info.dataset} has {info.num_classes}: use a self-supervised method")
        self.skipped_steps = 0

    @classmethod
    def name(cls) -> str:
        return next((n for n, c in METHODS.items() if c is cls), cls.__name__.lower())

    def _step(self, loss: torch.Tensor, terms: dict, stats: dict) -> StepOutput:
        if stats.get("skipped"):
            # no valid triplet or pair: a loss without gradient makes the job skip backward and the
            # optimiser step (a zero gradient would still let Adam's momentum move the weights)
            self.skipped_steps += 1
            stats["skipped_steps"] = float(self.skipped_steps)
            loss = torch.zeros((), device=loss.device)
            terms = {k: 0.0 for k in terms}
        return StepOutput(loss, terms, stats)


class _KByM(MetricMethod):
    """Contrastive methods: K x M batches from ``batches``; the batch size is K·M."""

    # a K x M batch is laid out class by class, so a rank's share holds a few of its classes: batch
    # statistics of that share alone would normalise each rank's classes apart before the mining
    # compares them (engine/distributed.py); over the global batch they are one process's
    sync_batch_norm = True

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        self.k, self.m = self.hparams["classes_per_batch"], self.hparams["samples_per_class"]
        check_k_by_m(self.k, self.m)
        present = sum(1 for c in info.class_counts if c > 0)
        if present:
            self.notes += k_by_m_notes(info.class_counts, self.k, self.m)
            self.k = min(self.k, present)  # the sampler takes every class when K exceeds them
        normalized = self.hparams["normalize"] or self.hparams["distance"] == "cosine"
        self.retrieval_metric = "cosine" if normalized else "euclidean"

    def images_per_batch(self, batch_size: int) -> int:
        return self.k * self.m

    def check_world_size(self, batch_size: int, world_size: int) -> None:
        check_k_by_m_divides(self.k, self.m, world_size)

    def batches(self, labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        # batch_size is K·M here: steps_per_epoch said so in the notes when they disagree
        return k_by_m_batches(labels, self.k, self.m, rng, self._num_batches)

    def steps_per_epoch(self, n_train: int, batch_size: int) -> int:
        if batch_size != self.k * self.m:
            note = (f"batch size {batch_size} (--batch-size) is not used by '{self.name()}': its batches hold "
                    f"K x M = {self.k} x {self.m} = {self.k * self.m} images (--classes-per-batch x "
                    "--samples-per-class)")
            if note not in self.notes:
                self.notes.append(note)
        self._num_batches = k_by_m_steps(n_train, self.k, self.m)
        return self._num_batches

    _num_batches: int | None = None


@METHODS.register("triplet")
class Triplet(_KByM):
    summary = "triplet loss max{0, d_ap² − d_an² + m} with online mining in K x M batches"
    help = ("Each image of the batch is an anchor: it is pulled towards images of its class (positives) "
            "and pushed from the others (negatives) until the negative is farther by a margin. Mining "
            "chooses which triplets count: batch-hard takes the farthest positive and the closest "
            "negative (Hermans et al. 2017); batch-all every triplet that still violates the margin. "
            "Easy triplets (already beyond the margin) teach nothing; their share rises as it learns.")
    params = (
        Param("margin", TripletDefinition.margin, "Minimum separation m between the anchor-negative and "
              "anchor-positive (squared) distances.", low=0, low_exclusive=True),
        Param("mining", "batch-hard", "Which triplets of the batch the loss uses.", type=str,
              choices=TripletLoss.MININGS),
    ) + DISTANCE_PARAMS + K_M_PARAMS
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        d = self.triplet_definition(self.hparams)
        self.loss = TripletLoss(margin=d.margin, distance=d.distance, squared=d.squared,
                                mining=self.hparams["mining"], normalize=d.normalize)

    @classmethod
    def triplet_definition(cls, params) -> TripletDefinition:
        """The loss's own: the evaluation's triplet shares count with the margin and distance it
        trains with (engine.metrics.diagnostics computes them on every anchor of the subset)."""
        return TripletDefinition(params["margin"], params["distance"], params["squared"], params["normalize"])

    def training_step(self, images, labels):
        # mined in the global batch: on several ranks, every rank's embeddings (engine/distributed.py)
        loss = self.loss(self.gather(self.encoder(images).float()), self.gather_labels(labels))
        return self._step(loss, {"triplet": loss.detach()}, dict(self.loss.stats))


@METHODS.register("pair")
class Pair(_KByM):
    summary = "pair (contrastive) loss: positives pulled together, negatives pushed beyond a margin"
    help = ("Every pair of images in the batch is either positive (same class: its distance is pulled "
            "to zero) or negative (different classes: pushed until farther than the margin; the squared "
            "hinge of Hadsell et al. 2006). Batches hold K classes x M images so both kinds exist.")
    params = (
        Param("margin", 1.0, "Distance beyond which a negative pair no longer counts.", low=0,
              low_exclusive=True),
        Param("mining", "all", "Pairs used: all of the batch, or each anchor's farthest positive and "
              "closest negative.", type=str, choices=PairLoss.MININGS),
    ) + DISTANCE_PARAMS + K_M_PARAMS
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        p = self.hparams
        self.loss = PairLoss(margin=p["margin"], distance=p["distance"], squared=p["squared"],
                             mining=p["mining"], normalize=p["normalize"])

    def training_step(self, images, labels):
        loss = self.loss(self.gather(self.encoder(images).float()), self.gather_labels(labels))
        terms = {k: v.detach() for k, v in self.loss.terms.items()}
        return self._step(loss, terms, dict(self.loss.stats))

    @torch.no_grad()
    def evaluation_stats(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Distance histograms of the positive and negative pairs of an evaluation subset."""
        emb = torch.as_tensor(embeddings).float()
        lab = torch.as_tensor(labels).long()
        keep = lab >= 0
        self.loss(emb[keep], lab[keep])
        return {k: v for k, v in self.loss.stats.items() if k != "skipped"}


def _centre_angles(centres: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Angles (degrees) between class centres (C, C), and the mean angle of each class's points to
    their centre (C,), for the angle view."""
    c = F.normalize(centres.float(), dim=1)
    between = torch.rad2deg(torch.acos((c @ c.T).clamp(-1, 1)))
    z = F.normalize(embeddings.float(), dim=1)
    lab = labels.long()
    keep = lab >= 0
    to_own = torch.rad2deg(torch.acos((z[keep] * c[lab[keep]]).sum(1).clamp(-1, 1)))
    per_class = [float(to_own[lab[keep] == k].mean()) if (lab[keep] == k).any() else None
                 for k in range(len(c))]
    off = ~torch.eye(len(c), dtype=torch.bool)
    return {"center_angles": between.tolist(), "point_center_angle": per_class,
            "min_center_angle": float(between[off].min()) if off.any() else 0.0}


@METHODS.register("center")
class Center(MetricMethod):
    summary = "center loss: cross-entropy + λ/2 ‖f(x) − c_y‖², class centres learned at their own rate"
    help = ("Classification through a linear head (used only in training), plus a pull of each embedding "
            "towards a learned centre of its class (Wen et al. 2016): cross-entropy separates the classes, "
            "the centre term makes each class compact.")
    params = (
        Param("center_weight", 0.01, "λ: weight of the pull towards the class centres.", low=0),
        Param("center_lr", 0.05, "Learning rate of the class centres (they move at their own pace, "
              "Wen et al. 2016).", low=0, low_exclusive=True),
    )
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        self.loss = CenterLoss(info.num_classes, encoder.embedding_dim, center_weight=self.hparams["center_weight"])

    def training_step(self, images, labels):
        emb = self.encoder(images).float()
        loss = self.loss(emb, labels)
        terms = {k: v.detach() for k, v in self.loss.terms.items()}
        with torch.no_grad():
            acc = (self.loss.classifier(emb).argmax(1) == labels).float().mean()
        return self._step(loss, terms, {"train_accuracy": float(acc)})

    def parameter_groups(self, lr):
        centres = [self.loss.centers]
        rest = [p for p in self.parameters() if p is not self.loss.centers and p.requires_grad]
        # no weight decay on the centres: it would drag them to the origin, away from their class
        return [{"params": rest, "lr": lr},
                {"params": centres, "lr": self.hparams["center_lr"], "weight_decay": 0.0}]

    def class_centers(self) -> np.ndarray:
        """(C, D) centres in embedding space, to draw on the map."""
        return self.loss.centers.detach().float().cpu().numpy()

    @torch.no_grad()
    def evaluation_stats(self, embeddings, labels) -> dict[str, Any]:
        return _centre_angles(self.loss.centers.detach().cpu(), torch.as_tensor(embeddings).cpu(),
                              torch.as_tensor(labels).cpu())


class _MarginSoftmax(MetricMethod):
    loss_class: ClassVar[type] = CosFaceLoss
    retrieval_metric = "cosine"

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        p = self.hparams
        counts = list(info.class_counts)
        k = p["subcenters"]
        if k > 1 and counts:
            too_small = [(c, n) for c, n in enumerate(counts) if n < k]
            if too_small:
                c, n = min(too_small, key=lambda t: t[1])
                raise ValueError(f"--subcenters: {k} is more than the {n} training sample(s) of class {c}: some "
                                 f"sub-centres could never be the nearest of any sample; allowed: 1 to "
                                 f"{max(1, min(counts))} on this data")
        margins = None
        adaptive = parse_adaptive_margin(p["adaptive_margin"])
        if adaptive is not None:
            if not counts or sum(counts) == 0 or len(counts) != info.num_classes:
                raise ValueError("--adaptive-margin needs the number of training samples of each class, and "
                                 f"{info.dataset} gives none; leave --adaptive-margin empty")
            margins = adaptive_margins(counts, *adaptive)
            self.notes.append(f"adaptive margins (Ha et al. 2020, a, lambda, b = {p['adaptive_margin']}) replace "
                              f"--margin: per class " + ", ".join(f"{m:.3f}" for m in margins.tolist()))
        self.loss = self.loss_class(info.num_classes, encoder.embedding_dim, margin=p["margin"],
                                    scale=p["scale"], subcenters=k, class_margins=margins)
        if p["scale"] == "auto":
            self.notes.append(f"--scale auto: s = √2·log(C − 1) = {self.loss.scale:.3f} for C = "
                              f"{info.num_classes}")

    def training_step(self, images, labels):
        loss = self.loss(self.encoder(images).float(), labels)
        return self._step(loss, {"cross_entropy": loss.detach()}, dict(self.loss.stats))

    def class_centers(self) -> np.ndarray:
        """(C, k, D) unit sub-centres (directions in embedding space), to draw on the map."""
        return self.loss.centers().detach().float().cpu().numpy()

    @torch.no_grad()
    def evaluation_stats(self, embeddings, labels) -> dict[str, Any]:
        """Angles between class centres (the dominant sub-centre of each class: the one nearest to
        most of its points), and each class's mean angle to it."""
        emb = torch.as_tensor(embeddings).float().cpu()
        lab = torch.as_tensor(labels).long().cpu()
        centres = self.loss.centers().detach().float().cpu()  # (C, k, D)
        z = F.normalize(emb, dim=1)
        dominant = []
        for c in range(len(centres)):
            rows = z[lab == c]
            best = (rows @ centres[c].T).argmax(1) if len(rows) else torch.zeros(1, dtype=torch.long)
            dominant.append(centres[c, torch.bincount(best, minlength=centres.shape[1]).argmax()])
        return _centre_angles(torch.stack(dominant), emb, lab)


@METHODS.register("cosine")
class Cosine(_MarginSoftmax):
    summary = "cosine loss (CosFace): normalised embedding and weights, s(cos α − m) for the true class"
    help = ("Classification on the sphere: embeddings and class weights are normalised (no bias), so a "
            "logit is the cosine of the angle to a class. The true class's cosine is lowered by a margin "
            "(Wang et al. 2018), so classes must be separated by an angle to reach the same loss.")
    params = (Param("margin", 0.35, "Margin m subtracted from the cosine of the true class.", low=0,
                    low_exclusive=True),) + MARGIN_SOFTMAX_PARAMS
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}
    loss_class = CosFaceLoss


@METHODS.register("arc")
class Arc(_MarginSoftmax):
    summary = "arc loss (ArcFace): the margin inside the cosine, s·cos(α + m) for the true class"
    help = ("Like the cosine loss, but the margin is an angle added to the angle to the true class "
            "(Deng et al. 2019): a constant geodesic gap between classes on the sphere. Sub-centres let a "
            "class keep several modes; adaptive margins give rare classes a wider gap.")
    params = (Param("margin", 0.5, "Angular margin m (radians) added to the angle to the true class.",
                    low=0, low_exclusive=True, high=math.pi / 2),) + MARGIN_SOFTMAX_PARAMS
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}
    loss_class = ArcFaceLoss
