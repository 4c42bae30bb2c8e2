"""Pretext tasks: a supervised task made out of the images themselves (no labels).

- ``rotation`` (Gidaris, Singh & Komodakis 2018): which of 0/90/180/270 degrees was an image turned by;
- ``colorization`` (Zhang, Isola & Efros 2016): the colours of a grey image, as a distribution over a
  fixed palette of quantised ab bins per pixel, class-rebalanced;
- ``inpainting`` (Pathak et al. 2016): the pixels of a removed patch (context encoder), L2 plus an
  optional adversarial term.

The encoder is any registered encoder (images -> one vector). The task's head or decoder is a
training-only attribute of the method and is discarded after training: the probe and the map use
the encoder. Decoders start from the embedding vector alone, so everything the decoder draws had to
pass through the representation.

Each method has ``debug(images)``: input / target / prediction for a few images, as uint8 arrays
shaped like ``ImageDataset.thumbnail`` ((n, H, W) grey or (n, H, W, 3) colour), for the pretext
debugger in the window.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.augment import augment_from_params, augment_params
from engine.color import lab_to_rgb, lightness_as_grey, rgb_to_lab
from engine.encoders import Encoder
from engine.methods import METHODS, DataInfo, Method, StepOutput
from engine.methods.contrastive import mlp
from engine.params import Param

COLOUR_DATASETS = "painted-shapes, shapes, cifar10, stl10, or a folder of colour images"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float (B, C, H, W) in [0, 1] -> uint8 (B, H, W) for grey, (B, H, W, 3) for colour."""
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return x[:, 0] if x.shape[1] == 1 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


class ImageDecoder(nn.Module):
    """Embedding (B, D) -> map (B, out_channels, H, W): a dense layer to a (H/4, W/4) grid of
    features, two (nearest x2 upsample, 3x3 conv, batch norm, ReLU) stages, a 1x1 conv, cropped to
    (H, W). Small on purpose: the representation must carry the content, not the decoder."""

    def __init__(self, embedding_dim: int, out_channels: int, image_size: tuple[int, int], width: int = 64):
        super().__init__()
        self.image_size = image_size
        self.h0, self.w0 = math.ceil(image_size[0] / 4), math.ceil(image_size[1] / 4)
        self.width = width
        self.fc = nn.Sequential(nn.Linear(embedding_dim, width * self.h0 * self.w0), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        for _ in range(2):
            stages += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*stages, nn.Conv2d(width, out_channels, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.up(self.fc(h).view(-1, self.width, self.h0, self.w0))
        return x[:, :, : self.image_size[0], : self.image_size[1]]


# --------------------------------------------------------------------------------------------------

@METHODS.register("rotation")
class Rotation(Method):
    family = "pretext task"
    summary = "predict by how much each image was rotated (0, 90, 180 or 270 degrees)"
    help = ("Rotation prediction (Gidaris, Singh & Komodakis 2018). Every image of the batch is shown in "
            "all four rotations, and a linear head on the encoder's embedding classifies the rotation "
            "(cross-entropy). To tell which way is up the encoder has to recognise the object and its "
            "orientation, so its features become useful for classes it never saw labelled. The head is "
            "dropped after training. It starts on Fashion-MNIST (6000 training images, 1 epoch: about 1.5 "
            "minutes of CPU), where clothes have one way up: there it beats raw pixels' probe (0.806 against "
            "0.789) and a random initialisation's kNN (0.788 against 0.727). On digits the 8x8 glyphs look "
            "alike turned (0, 1, 8; 6 and 9), so the task is ambiguous: after 30 epochs it stays under both "
            "(probe 0.956 against 0.972, kNN 0.886 against 0.943). The 6000 images hold on Fashion-MNIST "
            "only; --train-size 60000 trains on all of them.")
    params = (
        Param("head_hidden_dim", 512, "Hidden width of the rotation head: 0 for a linear head, else an MLP "
              "(Linear-BN-ReLU-Linear) that takes the task-specific part off the embedding.",
              type=int, low=0, high=8192),
    ) + augment_params(crop_min=0.6)
    needs_labels = False
    # the MLP head and milder crops (0.6 of the area, not 0.3: an 8x8 digit cropped to a third is hardly
    # a digit) by measurement, bench/method_defaults.py on digits, seed 0, one thread: probe 0.9564 / kNN
    # 0.8861 in 54 s of CPU, against 0.9514 / 0.8074 with a linear head and the shared crops (head 512
    # alone: 0.9330 / 0.8509; no crops: 0.9481 / 0.8425; lr 3e-4: 0.9497 / 0.9028). Still under random
    # init's kNN (0.9430) and raw pixels' probe (0.9715): on digits the kNN falls from the first
    # evaluation (epoch 3) on, whatever of these is set. So it starts on Fashion-MNIST, where which way is
    # up is well posed: 6000 images, 1 epoch (46 steps, 93 s of CPU) give probe 0.8059 / kNN 0.7877 against
    # pixels 0.7887 / random init 0.7274 (10000 images: 0.8286 / 0.8103, but 159 s of CPU)
    defaults = {"batch_size": 128, "lr": 1e-3, "epochs": 1, "dataset": "fashion-mnist", "train_size": 6000}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__(encoder, info, **params)
        h, w = info.image_size
        if h != w:
            raise ValueError(f"rotation: images of {h}x{w} are not square; allowed: square images (height "
                             "== width), so that a quarter turn keeps the shape")
        hidden = int(params.get("head_hidden_dim", 0))
        self.head = mlp(encoder.embedding_dim, hidden, 4) if hidden else nn.Linear(encoder.embedding_dim, 4)
        # Gidaris et al. train on augmented images (random crops, flips): without them the task is
        # solved within a few epochs on digits and the features narrow to orientation cues
        self.augment = augment_from_params(info.channels, info.image_size, params, info.dataset)

    @staticmethod
    def rotate_all(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> the 4B rotated images (all images at 0 degrees, then 90, 180, 270) and the
        rotation index 0..3 of each."""
        x = torch.cat([torch.rot90(images, k, (2, 3)) for k in range(4)])
        y = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
        return x, y

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            images = self.augment(images)
        x, y = self.rotate_all(images)
        logits = self.head(self.encoder(x))
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        return StepOutput(loss, {"cross_entropy": loss.detach()}, {"rotation_accuracy": float(accuracy)})

    @torch.no_grad()
    def debug(self, images: torch.Tensor) -> dict[str, Any]:
        """For each image, its four rotations and what the head predicts, in eval mode.

        Returns ``input`` uint8 (4n, H, W[, 3]) (image i at rotation k is row k * n + i),
        ``target`` and ``prediction`` in degrees (4n,) int, ``probabilities`` (4n, 4) float."""
        was = self.training
        self.eval()
        try:
            x, y = self.rotate_all(images)
            p = F.softmax(self.head(self.encoder(x)), 1)
        finally:
            self.train(was)
        return {"input": to_uint8(x), "target": (y * 90).cpu().numpy(),
                "prediction": (p.argmax(1) * 90).cpu().numpy(), "probabilities": p.cpu().numpy()}


# --------------------------------------------------------------------------------------------------

AB_STEP = 10.0  # Zhang et al.'s grid: ab quantised in 10 x 10 cells
AB_RANGE = 110.0  # ab cell centres at -110, -100, ..., 110
SOFT_BINS, SOFT_SIGMA = 5, 5.0  # Zhang et al.'s soft encoding: the 5 nearest bins, a Gaussian of sigma 5


def ab_palette() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed palette of in-gamut ab bins and a lookup from grid cell to palette index.

    A cell is in the palette when some sRGB colour (a 32^3 grid of them) has its ab in that cell
    (Zhang et al. find 313 such cells; this grid finds a similar number). The lookup maps each of
    the 23 x 23 cells to its own palette entry, or to the nearest one for out-of-gamut cells.
    Returns palette (Q, 2) ab centres, lookup (23 * 23,) int64."""
    levels = torch.linspace(0, 1, 32)
    rgb = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (32768, 2)
    n = int(round(2 * AB_RANGE / AB_STEP)) + 1
    cells = ((ab + AB_RANGE) / AB_STEP).round().clamp(0, n - 1).long()
    used = torch.unique(cells[:, 0] * n + cells[:, 1])
    centres = torch.stack([used // n, used % n], 1).float() * AB_STEP - AB_RANGE
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1).reshape(-1, 2)
    lookup = torch.cdist(grid.float() * AB_STEP - AB_RANGE, centres).argmin(1)
    return centres, lookup


@METHODS.register("colorization")
class Colorization(Method):
    family = "pretext task"
    summary = "predict the colours of a grey image, per pixel, over a palette of quantised ab bins"
    help = ("Colourisation (Zhang, Isola & Efros 2016). Images are converted to CIE Lab; the encoder sees "
            "the lightness L alone (as a grey image), and a small decoder predicts, for every pixel, a "
            "distribution over a fixed palette of quantised ab colour bins. The target of a pixel is "
            "soft, as in the paper: its true colour spread over the 5 nearest bins with a Gaussian "
            "(sigma 5 in ab units, half a bin). Cross-entropy, rebalanced so that rare, saturated colours "
            "weigh as much as the common greys; the predicted distribution turns back into a colour by "
            "its annealed mean. The representation is that of the grey image: the probe, the map and "
            "their references (random init, raw pixels) all see the grey version. Needs colour images "
            "whose colours can be told from their grey version: painted-shapes (each shape has its own "
            "colour) is the dataset to start with; on shapes the hue is drawn apart from the shape, "
            "so the task has no answer there.")
    params = (
        Param("rebalance", 0.5, "Mixing lambda of the class rebalancing: weights 1 / ((1-lambda) p + lambda/Q) "
              "(0: full rebalancing, 1: none).", low=0.0, high=1.0),
        Param("decode_temperature", 0.38, "Temperature of the annealed mean that turns a predicted distribution "
              "into one colour (1: the mean, towards 0: the mode).", low=0.0, high=1.0, low_exclusive=True),
        Param("targets", "soft", "Per-pixel targets: soft (the true colour spread over its 5 nearest bins "
              "with a Gaussian, sigma 5: Zhang et al.) or hard (one-hot on the nearest bin).", type=str,
              choices=("soft", "hard")),
    )
    needs_labels = False
    defaults = {"batch_size": 128, "lr": 1e-3, "epochs": 1, "dataset": "painted-shapes"}

    @classmethod
    def check_data(cls, info: DataInfo) -> None:
        super().check_data(info)
        if info.channels != 3:
            raise ValueError(f"needs colour images: dataset '{info.dataset}' has {info.channels} channel(s); allowed: "
                             f"colour images with 3 channels ({COLOUR_DATASETS}): a grey image has no colour "
                             "to predict")

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        try:
            self.check_data(info)
        except ValueError as error:
            raise ValueError(f"colorization {error}") from None
        super().__init__(encoder, info, **params)
        palette, lookup = ab_palette()
        self.register_buffer("palette", palette)
        self.register_buffer("lookup", lookup)
        self.register_buffer("counts", torch.zeros(len(palette)))  # bin counts seen so far: p for rebalancing
        d2 = torch.cdist(palette, palette) ** 2
        smooth = torch.exp(-d2 / (2 * 5.0 ** 2))  # Zhang et al. smooth p with a Gaussian, sigma = 5
        self.register_buffer("smoothing", smooth / smooth.sum(1, keepdim=True))
        # colours are predicted at half resolution (Zhang et al. predict at a quarter) and upsampled:
        # the palette's 259 channels per pixel dominate the cost, and colour varies slowly anyway
        h, w = info.image_size
        self.decoder = ImageDecoder(encoder.embedding_dim, len(palette), (math.ceil(h / 2), math.ceil(w / 2)))
        self.rebalance = float(params["rebalance"])
        self.decode_temperature = float(params["decode_temperature"])
        self.soft = params.get("targets", "soft") == "soft"

    # the encoder learns from, is evaluated on and is exported behind the grey version of the images
    input_view = "grey"
    grey = staticmethod(lightness_as_grey)  # from Lab, which the loss needs anyway

    def soft_targets(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zhang et al.'s soft encoding: ab (B, 2, H, W) -> (bins (B, SOFT_BINS, H, W) int64, the
        SOFT_BINS palette entries nearest to each pixel's colour, nearest first; weights (B,
        SOFT_BINS, H, W), a Gaussian of the distance to each, sigma SOFT_SIGMA, summing to 1)."""
        b, _, h, w = ab.shape
        flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
        d2 = torch.cdist(flat.float(), self.palette) ** 2
        nearest, bins = d2.topk(SOFT_BINS, dim=1, largest=False)  # sorted: nearest first
        # relative to the nearest, so that a colour far outside the palette keeps a finite kernel
        weights = torch.softmax(-(nearest - nearest[:, :1]) / (2 * SOFT_SIGMA ** 2), dim=1)
        shape = (b, h, w, SOFT_BINS)
        return bins.view(shape).permute(0, 3, 1, 2), weights.view(shape).permute(0, 3, 1, 2)

    def quantise(self, ab: torch.Tensor) -> torch.Tensor:
        """ab (B, 2, H, W) -> palette index of each pixel (B, H, W)."""
        n = int(round(2 * AB_RANGE / AB_STEP)) + 1
        cell = ((ab + AB_RANGE) / AB_STEP).round().clamp(0, n - 1).long()
        return self.lookup[cell[:, 0] * n + cell[:, 1]]

    def class_weights(self) -> torch.Tensor:
        """w_q proportional to 1 / ((1 - lambda) p~_q + lambda / Q), with E_p~[w] = 1 (Zhang et al. eq. 4)."""
        q = len(self.palette)
        p = self.counts / self.counts.sum().clamp_min(1)
        p = self.smoothing @ p
        w = 1 / ((1 - self.rebalance) * p + self.rebalance / q)
        return w / (p * w).sum().clamp_min(1e-12)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        lab = rgb_to_lab(images)
        ab = F.avg_pool2d(lab[:, 1:], 2, ceil_mode=True)
        with torch.no_grad():
            if self.soft:
                bins, weights = self.soft_targets(ab)
                target = bins[:, 0]  # the nearest bin: the rebalancing weight's, the accuracy's
            else:
                target = self.quantise(ab)
            self.counts += torch.bincount(target.flatten(), minlength=len(self.palette)).float()
        logits = self.decoder(self.encoder(self.grey(lab)))
        log_p = F.log_softmax(logits.float(), 1)
        if self.soft:  # -sum_q z_q log p_q over the 5 bins that carry the target
            ce = -(weights * log_p.gather(1, bins)).sum(1)
        else:
            ce = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        w = self.class_weights()[target]  # v(Z) = w of the target's nearest bin (Zhang et al. eq. 2)
        loss = (w * ce).mean()
        with torch.no_grad():
            accuracy = (logits.argmax(1) == target).float().mean().item()
            plain = ce.mean().item()
        return StepOutput(loss, {"rebalanced_cross_entropy": loss.detach()},
                          {"bin_accuracy": accuracy, "plain_cross_entropy": plain})

    def decode(self, logits: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
        """Predicted bin logits (B, Q, h, w) and L (B, 1, H, W) -> RGB (B, 3, H, W) in [0, 1]: ab is the
        annealed mean sum_q softmax(log p / T)_q ab_q (Zhang et al. eq. 5) with T = decode_temperature,
        upsampled bilinearly to L's size when the prediction is coarser."""
        probs = F.softmax(F.log_softmax(logits, 1) / self.decode_temperature, 1)
        ab = torch.einsum("bqhw,qc->bchw", probs, self.palette)
        if ab.shape[-2:] != lightness.shape[-2:]:
            ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        return lab_to_rgb(torch.cat([lightness, ab], 1))

    @torch.no_grad()
    def colorize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (B, 3, H, W) -> the model's colouring of their grey version, in eval mode."""
        was = self.training
        self.eval()
        try:
            lab = rgb_to_lab(images)
            return self.decode(self.decoder(self.encoder(self.grey(lab))), lab[:, :1])
        finally:
            self.train(was)

    @torch.no_grad()
    def debug(self, images: torch.Tensor) -> dict[str, Any]:
        """``input`` the grey image the encoder sees, ``prediction`` its predicted colours, ``target`` the
        true colours: uint8 (n, H, W, 3) each."""
        lab = rgb_to_lab(images)
        return {"input": to_uint8(self.grey(lab)), "prediction": to_uint8(self.colorize(images)),
                "target": to_uint8(images)}


# --------------------------------------------------------------------------------------------------

class Discriminator(nn.Module):
    """A small conv net: image (B, C, H, W) -> one real/fake logit per image."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(width, 2 * width, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


@METHODS.register("inpainting")
class Inpainting(Method):
    family = "pretext task"
    summary = "fill in a removed square patch from its surroundings (context encoder)"
    help = ("Inpainting, the context encoder (Pathak et al. 2016). A random square patch of each image is "
            "replaced by the mean grey level; the encoder sees the rest, and a decoder regresses the "
            "missing pixels (L2 loss on the patch). An adversarial loss from a small discriminator that tells "
            "real images from inpainted ones (the paper's and the course's recipe: L2 plus adversarial) "
            "makes the fill sharper; it is one switch away (--adversarial-weight 0.001), off by default "
            "since on digits it lowered the probe (see the parameter's help). The "
            "decoder and discriminator are dropped after training.")
    params = (
        Param("patch_size", "auto", "Side of the removed square patch in pixels, smaller than the image "
              "('auto': half the image side).", type=int, low=1, special=("auto",)),
        Param("adversarial_weight", 0.0, "Weight of the adversarial loss from the discriminator (0: L2 only; "
              "Pathak et al. and the course use L2 plus the adversarial term, weight 0.001). Off by default "
              "because it measurably hurt here: on digits (30 epochs, one thread) 0.001 gave probe 0.9749 / "
              "kNN 0.9514 against 0.9782 / 0.9698 with L2 alone (seed 0), and 0.9715 / 0.9464 against "
              "0.9765 / 0.9464 (seed 1: the probe no better than raw pixels' 0.9715). It sharpens the fill, "
              "not the representation.", low=0.0),
    )
    needs_labels = False
    defaults = {"batch_size": 128, "lr": 1e-3, "epochs": 30}

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        h, w = info.image_size
        patch = params.get("patch_size", "auto")
        patch = min(h, w) // 2 if patch == "auto" else int(patch)
        if not 1 <= patch < min(h, w):
            raise ValueError(f"--patch-size: {patch} is out of range; allowed: a whole number >= 1 and < "
                             f"{min(h, w)}, the image's side ({h}x{w}), or 'auto'")
        super().__init__(encoder, info, **params)
        self.patch = patch
        self.decoder = ImageDecoder(encoder.embedding_dim, info.channels, info.image_size)
        self.adversarial_weight = float(params.get("adversarial_weight", 0.0))
        self.discriminator = Discriminator(info.channels) if self.adversarial_weight > 0 else None

    def mask(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 1, H, W) float: 1 inside each sample's randomly placed patch, 0 elsewhere."""
        h, w = self.info.image_size
        gdev = generator.device if generator is not None else device
        top = torch.randint(0, h - self.patch + 1, (batch,), generator=generator, device=gdev).to(device)
        left = torch.randint(0, w - self.patch + 1, (batch,), generator=generator, device=gdev).to(device)
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < top.view(-1, 1, 1) + self.patch)
                  & (cols >= left.view(-1, 1, 1)) & (cols < left.view(-1, 1, 1) + self.patch))
        return inside.unsqueeze(1).float()

    @staticmethod
    def remove(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The patch replaced by the batch's mean level per channel (Pathak et al. fill with the mean)."""
        fill = images.mean((0, 2, 3), keepdim=True).detach()
        return images * (1 - mask) + fill * mask

    def inpaint(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's full image (B, C, H, W) in [0, 1] and the composite (original outside the patch)."""
        recon = torch.sigmoid(self.decoder(self.encoder(self.remove(images, mask))))
        return recon, images * (1 - mask) + recon * mask

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        mask = self.mask(images.shape[0], images.device)
        recon, composite = self.inpaint(images, mask)
        l2 = ((recon - images) ** 2 * mask).sum() / (mask.sum() * images.shape[1]).clamp_min(1)
        terms: dict[str, torch.Tensor | float] = {"l2": l2.detach()}
        loss = l2
        if self.discriminator is not None:
            # one optimiser trains both players: the discriminator's loss sees detached fakes, and the
            # encoder-decoder's adversarial loss goes through a detached copy of the discriminator's weights
            real = self.discriminator(images)
            fake = self.discriminator(composite.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
            frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
            fooled = functional_call(self.discriminator, frozen, (composite,))
            adv = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
            loss = l2 + self.adversarial_weight * adv + d_loss
            terms.update({"adversarial": adv.detach(), "discriminator": d_loss.detach()})
        return StepOutput(loss, terms)

    @torch.no_grad()
    def debug(self, images: torch.Tensor, seed: int = 0) -> dict[str, Any]:
        """``input`` the image with its patch removed, ``prediction`` the inpainted image, ``target`` the
        original (uint8, like thumbnails), ``mask`` bool (n, H, W); patch positions drawn from ``seed``."""
        was = self.training
        self.eval()
        try:
            g = torch.Generator(device=images.device).manual_seed(seed)
            mask = self.mask(images.shape[0], images.device, g)
            _, composite = self.inpaint(images, mask)
        finally:
            self.train(was)
        return {"input": to_uint8(self.remove(images, mask)), "prediction": to_uint8(composite),
                "target": to_uint8(images), "mask": mask[:, 0].bool().cpu().numpy()}
