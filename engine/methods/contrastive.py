"""SimCLR (Chen et al. 2020): two random views of each image, a projection head, NT-Xent.

``TwoViewMethod`` holds what every two-view method shares (the batched augmentation and its
parameters, ``views``, the projection MLP); the non-contrastive methods in ``ssl.py`` build on it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import SimCLRAugment, augment_from_params, augment_params
from engine.encoders import Encoder
from engine.losses.ssl import NTXent
from engine.methods import METHODS, DataInfo, Method, StepOutput
from engine.params import Param


def mlp(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True, bias: bool = True) -> nn.Sequential:
    """Linear - (BatchNorm) - ReLU - Linear: SimCLR's projection head, BYOL's projector/predictor."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=bias and not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=bias)]
    return nn.Sequential(*layers)


def check_batch(images: torch.Tensor, method: str) -> None:
    if images.shape[0] < 2:
        raise ValueError(f"batch size: {images.shape[0]} is too small for {method}; allowed: >= 2 "
                         "(batch statistics and in-batch comparisons need two images at least)")


class TwoViewMethod(Method):
    """Base of the methods trained on two augmented views of each image (not registered)."""

    needs_labels = False
    # batch norm over the global batch: a rank's own statistics would let the views of its images
    # recognise each other by them (SimCLR), and they are part of what holds collapse off
    sync_batch_norm = True

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.augment: SimCLRAugment = augment_from_params(info.channels, info.image_size, params, info.dataset)

    @torch.no_grad()
    def views(self, images: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented batches of float images in [0, 1] (B, C, H, W). On several
        ranks, each view's random draws are those of the global batch, of which this rank applies its
        rows' share: with the job's generator, the views are the ones one process would make."""
        g = generator if generator is not None else self.generator
        if not self.shard.distributed:
            return self.augment(images, g), self.augment(images, g)
        n = images.shape[0]
        start = self.shard.rank * n
        return tuple(self.augment.apply(images, self.augment.sample(n * self.shard.world_size, images.device, g)
                                        .rows(start, start + n)) for _ in range(2))

    def encode_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder embeddings of the two views, in one forward pass (batch norm sees all 2N)."""
        v1, v2 = self.views(images)
        h = self.encoder(torch.cat([v1, v2]))
        return h[: len(images)], h[len(images):]


@METHODS.register("simclr")
class SimCLR(TwoViewMethod):
    family = "contrastive"
    summary = "two augmented views of each image; each view must pick its partner out of the 2N-2 others"
    help = ("SimCLR (Chen et al. 2020). Each image is augmented twice (random resized crop, flip, colour "
            "jitter, grey, blur). Encoder, then a projection head (Linear-BN-ReLU-Linear) and "
            "l2-normalisation. NT-Xent: for each of the 2N views, a softmax over its cosine similarities "
            "divided by the temperature must pick its partner view; the other 2N-2 views are negatives. "
            "Negatives push images apart, which prevents collapse; the temperature sets how hard the "
            "nearest negatives weigh. The projection head is dropped after training.")
    params = (
        # 0.5 and 80 epochs from runs on digits (the plain command), after grey images got brightness and
        # contrast jitter: probe 0.985, 0.982, 0.980 for seeds 0, 1, 2 (37 s each). At 40 epochs: 0.975,
        # 0.977, 0.975 with tau 0.3; 0.978, 0.980, 0.973 with 0.5: seeds move it as much as tau does
        Param("temperature", 0.5, "NT-Xent temperature tau: smaller makes the hardest negatives weigh more.",
              low=0.0, low_exclusive=True),
        Param("projection_dim", 128, "Output size of the projection head (where the loss is computed).",
              type=int, low=1, high=4096),
        Param("hidden_dim", 512, "Hidden width of the projection head.", type=int, low=1, high=8192),
        # Gaussian blur is one of the course's three transformations (with crop and colour distortion);
        # on digits, bench/method_defaults.py, seed 0: probe 0.9816 / kNN 0.9665 with blur_p 0.5,
        # 0.9765 / 0.9631 without
    ) + augment_params(blur_p=0.5)
    defaults = {"batch_size": 256, "lr": 1e-3, "epochs": 80}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        self.projector = mlp(encoder.embedding_dim, params["hidden_dim"], params["projection_dim"])
        self.loss = NTXent(params["temperature"])

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(h), dim=1)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        check_batch(images, "simclr")
        h1, h2 = self.encode_views(images)
        z = self.project(torch.cat([h1, h2]))
        n = len(images)
        # this rank's views are the anchors; the candidates are the views of the global batch (every
        # rank's, gathered with their gradient), so the negatives are the global batch's 2N - 2
        z1, z2 = self.gather(z[:n]), self.gather(z[n:])
        anchors = torch.arange(self.shard.rank * n, (self.shard.rank + 1) * n, device=z.device)
        s, target = self.loss.anchor_logits(z1, z2, anchors)
        loss = F.cross_entropy(s, target)
        with torch.no_grad():
            s = s * self.loss.temperature  # cosine similarities, the anchors against itself at -inf
            rows = torch.arange(len(s), device=s.device)
            positive = s[rows, target]
            # how often a view's nearest other view is its partner (the task NT-Xent trains)
            top1 = (s.argmax(1) == target).float().mean()
            finite = torch.isfinite(s)
            negative = (s.masked_fill(~finite, 0).sum() - positive.sum()) / (finite.sum() - len(s))
        return StepOutput(loss, {"nt_xent": loss.detach()},
                          {"positive_cosine": float(positive.mean()), "negative_cosine": float(negative),
                           "pair_accuracy": float(top1),
                           # per anchor: every view of the global batch but itself and its partner
                           "negatives_per_anchor": float(s.shape[1] - 2)})

    @torch.no_grad()
    def logits(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The (2N, 2N) matrix of cosine similarities / tau between the 2N views of ``images``
        (rows 0..N-1: first views, N..2N-1: second views; the positive of row i is column i +- N;
        the diagonal, an anchor against itself, is kept and is excluded by the loss). Computed in
        eval mode (batch norm with running statistics) on fresh views."""
        check_batch(images, "simclr")
        was = self.training
        self.eval()
        try:
            v1, v2 = self.views(images, generator)
            z = self.project(self.encoder(torch.cat([v1, v2])))
            return self.loss.logits(z[: len(images)], z[len(images):])
        finally:
            self.train(was)

