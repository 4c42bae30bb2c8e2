"""Self-supervised methods without negatives (Uelwer et al. 2023's families), and the control.

- ``vicreg`` (information maximisation): invariance plus a variance hinge and a covariance penalty;
- ``byol`` (teacher-student): an online network with a predictor regresses an EMA teacher's output;
- ``swav`` (clustering): each view predicts the other's balanced assignment to learned prototypes;
- ``invariance-only`` (collapse control): the two views pulled together and nothing else.

All four train on the two views of ``TwoViewMethod`` (the batched SimCLR augmentation).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import AUGMENT_PARAMS
from engine.encoders import Encoder
from engine.losses.ssl import VICReg, Invariance, NegativeCosine, SwAV
from engine.methods import METHODS, DataInfo, StepOutput
from engine.methods.contrastive import TwoViewMethod, check_batch, mlp
from engine.params import Param


def _split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = z.shape[0] // 2
    return z[:n], z[n:]


@METHODS.register("vicreg")
class VICRegMethod(TwoViewMethod):
    family = "non-contrastive self-supervised"
    summary = "two views made equal while every embedding dimension keeps its variance and decorrelates"
    help = ("VICReg (Bardes, Ponce & LeCun 2022), information maximisation. Encoder, then an expander MLP "
            "(Linear-BN-ReLU-Linear). Loss: the mean squared distance between the two views' outputs "
            "(invariance), plus a hinge keeping each dimension's standard deviation across the batch above "
            "1 (variance: no collapse), plus the squared off-diagonal covariances (no two dimensions carry "
            "the same information: no dimensional collapse). No negatives, no teacher.")
    params = (
        Param("sim_weight", 25.0, "Weight of the invariance term (mean squared distance of the two views).",
              low=0.0),
        Param("var_weight", 25.0, "Weight of the variance hinge (each dimension's std kept above 1).", low=0.0),
        Param("cov_weight", 1.0, "Weight of the covariance penalty (off-diagonal covariances squared).", low=0.0),
        Param("projection_dim", 256, "Output size of the expander (where the loss is computed).",
              type=int, low=2, high=8192),
        Param("hidden_dim", 512, "Hidden width of the expander.", type=int, low=1, high=8192),
    ) + AUGMENT_PARAMS
    defaults = {"batch_size": 256, "lr": 1e-3, "epochs": 40}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.projector = mlp(encoder.embedding_dim, params["hidden_dim"], params["projection_dim"])
        self.loss = VICReg(params["sim_weight"], params["var_weight"], params["cov_weight"])

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        check_batch(images, "vicreg")
        h1, h2 = self.encode_views(images)
        z1, z2 = _split(self.projector(torch.cat([h1, h2])))
        # variance and covariance are the global batch's: every rank's outputs, with their gradient
        parts = self.loss.parts(self.gather(z1), self.gather(z2))
        loss = (self.loss.sim_weight * parts["invariance"] + self.loss.var_weight * parts["variance"]
                + self.loss.cov_weight * parts["covariance"])
        return StepOutput(loss, {k: v.detach() for k, v in parts.items()})


@METHODS.register("byol")
class BYOL(TwoViewMethod):
    family = "non-contrastive self-supervised"
    summary = "an online network with a predictor regresses a slowly moving (EMA) copy of itself"
    help = ("BYOL (Grill et al. 2020), teacher-student. The online branch (encoder, projector, predictor) "
            "predicts the teacher's projection of the other view, by cosine; the teacher (encoder and "
            "projector) gets no gradient and follows the online weights as an exponential moving average "
            "whose rate rises from the base value to 1 along a cosine. The predictor and the stop-gradient "
            "make the two branches asymmetric, which keeps it from collapsing without negatives.")
    params = (
        Param("ema", 0.99, "Base EMA rate of the teacher (its weights keep this fraction each step; it rises "
              "to 1 by the end).", low=0.0, high=1.0),
        Param("projection_dim", 128, "Output size of the projector and the predictor.", type=int, low=1, high=4096),
        Param("hidden_dim", 512, "Hidden width of the projector and the predictor.", type=int, low=1, high=8192),
        Param("predictor_lr_scale", 1.0, "Learning rate of the predictor relative to the rest (SimSiam and "
              "DirectPred find a predictor that adapts faster than the encoder helps).", low=0.0,
              low_exclusive=True, high=100.0),
    ) + AUGMENT_PARAMS
    # batch 128, not 256: twice the steps for the same images (BYOL learns by steps: the teacher moves
    # once a step). bench/method_defaults.py on digits, seed 0, one thread: probe 0.9749 / kNN 0.9514 in
    # 54 s of CPU, against 0.9732 / 0.9347 at batch 256 (random init's kNN 0.9430, pixels' probe 0.9715);
    # batch 64 reached 0.9732 / 0.9430, a predictor at 10x the rate 0.9698 / 0.9531
    defaults = {"batch_size": 128, "lr": 1e-3, "epochs": 40}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.projector = mlp(encoder.embedding_dim, params["hidden_dim"], params["projection_dim"])
        self.predictor = mlp(params["projection_dim"], params["hidden_dim"], params["projection_dim"])
        self.teacher = nn.Sequential(copy.deepcopy(encoder), copy.deepcopy(self.projector))
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.loss = NegativeCosine()
        self.ema_rate = float(params["ema"])

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        check_batch(images, "byol")
        v1, v2 = self.views(images)
        both = torch.cat([v1, v2])
        p1, p2 = _split(self.predictor(self.projector(self.encoder(both))))
        with torch.no_grad():
            t1, t2 = _split(self.teacher(both))
        # each view's prediction regresses the teacher's output for the other view (symmetrised)
        loss = (self.loss(p1, t2) + self.loss(p2, t1)) / 2
        return StepOutput(loss, {"regression": loss.detach()}, {"ema": self.ema_rate})

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The online encoder and projector at ``lr``, the predictor at ``lr`` x predictor_lr_scale (the
        teacher has no gradient: the EMA moves it)."""
        predictor = list(self.predictor.parameters())
        ids = {id(p) for p in predictor}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        # the predictor first: the step records report the last group's rate, the run's own
        return [{"params": predictor, "lr": lr * float(self.hparams["predictor_lr_scale"])},
                {"params": rest, "lr": lr}]

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher; rate 1 - (1 - base)(cos(pi step / total) + 1) / 2 (BYOL's schedule)."""
        base = float(self.hparams["ema"])
        self.ema_rate = 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(1, total_steps)) + 1) / 2
        online = list(self.encoder.parameters()) + list(self.projector.parameters())
        for t, o in zip(self.teacher.parameters(), online):
            t.mul_(self.ema_rate).add_(o.detach(), alpha=1 - self.ema_rate)
        # batch-norm running statistics are copied, not averaged: the teacher sees the same data
        online_buffers = list(self.encoder.buffers()) + list(self.projector.buffers())
        for t, o in zip(self.teacher.buffers(), online_buffers):
            t.copy_(o)


@METHODS.register("swav")
class SwAVMethod(TwoViewMethod):
    family = "non-contrastive self-supervised"
    summary = "each view predicts which learned prototype the other view is assigned to, batch spread evenly"
    help = ("SwAV (Caron et al. 2020), clustering. Projections are l2-normalised and compared with K "
            "learned, l2-normalised prototypes. The Sinkhorn-Knopp algorithm turns one view's scores into "
            "a soft assignment that uses every prototype equally across the batch (this equal partition is "
            "what prevents collapse); the other view must predict it through a softmax at a temperature, "
            "and vice versa (swapped prediction).")
    params = (
        Param("prototypes", 30, "Number of prototypes K (learned cluster centres).", type=int, low=2, high=65536),
        Param("temperature", 0.1, "Softmax temperature of the prediction of the assignments.",
              low=0.0, low_exclusive=True),
        Param("epsilon", 0.05, "Entropy regularisation of Sinkhorn-Knopp (smaller: harder assignments).",
              low=0.0, low_exclusive=True),
        Param("projection_dim", 128, "Output size of the projector.", type=int, low=1, high=4096),
        Param("hidden_dim", 512, "Hidden width of the projector.", type=int, low=1, high=8192),
    ) + AUGMENT_PARAMS
    defaults = {"batch_size": 256, "lr": 1e-3, "epochs": 40}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.projector = mlp(encoder.embedding_dim, params["hidden_dim"], params["projection_dim"])
        self.prototypes = nn.Linear(params["projection_dim"], params["prototypes"], bias=False)
        self.loss = SwAV(params["temperature"], params["epsilon"])

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        check_batch(images, "swav")
        with torch.no_grad():  # prototypes live on the unit sphere (SwAV normalises them each step)
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        h1, h2 = self.encode_views(images)
        z = F.normalize(self.projector(torch.cat([h1, h2])), dim=1)
        s1, s2 = _split(self.prototypes(z))
        # the equal partition of Sinkhorn-Knopp spreads the global batch (every rank's scores)
        s1, s2 = self.gather(s1), self.gather(s2)
        loss = self.loss(s1, s2)
        with torch.no_grad():
            used = torch.unique(torch.cat([s1, s2]).argmax(1)).numel()
        return StepOutput(loss, {"swapped_prediction": loss.detach()}, {"prototypes_used": used})


@METHODS.register("invariance-only")
class InvarianceOnly(TwoViewMethod):
    family = "collapse control"
    summary = "two views pulled together and nothing else: the control that collapses"
    help = ("The invariance term alone: the squared distance between the encoder's embeddings of two views of "
            "each image. No negatives (SimCLR), no asymmetry (BYOL), no variance term (VICReg), no projector "
            "(it could absorb the loss by shrinking its own output), and the encoder's batch norm frozen "
            "(batch statistics alone hold off complete collapse). A constant output minimises it, and training"
            " goes there: after a jump in the first steps, the loss falls to exactly 0 as the encoder's output"
            " units go silent one after another. On digits with its defaults (neck 'none', batch 32, lr 3e-2),"
            " every test image had the same embedding at the first evaluation in 12 seeds of 12, and the probe"
            " fell from 0.95 to 0.10 (chance). Keep neck 'none': the dense neck's PReLU still passes a little "
            "of its input, and with it only 3 seeds of 6 reached a single point.")
    params = AUGMENT_PARAMS
    defaults = {"batch_size": 32, "lr": 3e-2, "epochs": 5, "encoder_params": {"neck": "none"}}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.loss = Invariance()
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    def _batch_norms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def _calibrate(self, views: torch.Tensor) -> None:
        """Measure the encoder's batch-norm statistics once, on the first batch, then freeze them.

        Batch norm in training mode rescales every batch to unit variance per feature, so the encoder
        cannot shrink its output to a point whatever the loss wants (a projector with batch norm
        reached only dimensional collapse). Frozen, each batch-norm layer is a fixed affine map, the
        same in training and evaluation, and nothing but the invariance loss shapes the output."""
        norms = self._batch_norms()
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: this one batch
            m.train()
        self.encoder(views)
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        self.calibrated.fill_(True)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        check_batch(images, "invariance-only")
        v1, v2 = self.views(images)
        both = torch.cat([v1, v2])
        if not bool(self.calibrated):
            self._calibrate(both)
        for m in self._batch_norms():  # frozen each step: an evaluation puts the encoder back in train mode
            m.eval()
        h = self.encoder(both)
        loss = self.loss(*_split(h))
        with torch.no_grad():
            spread = ((h - h.mean(0)).pow(2).sum(1).mean() / h.pow(2).sum(1).mean().clamp_min(1e-30)).sqrt()
        return StepOutput(loss, {"invariance": loss.detach()}, {"train_spread": float(spread)})
