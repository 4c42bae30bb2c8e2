"""Batched random augmentations on the training device, with per-sample random parameters.

``SimCLRAugment`` is the view generator of SimCLR (Chen et al. 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", appendix A): random resized crop resized back to
the input size, horizontal flip, colour jitter (brightness, contrast, saturation, hue) with
probability ``jitter_p``, drop to grey with probability ``gray_p``, Gaussian blur with probability
``blur_p``. The whole batch is transformed at once on whatever device it lives on:

- crop + flip: one 2x3 affine matrix per sample, ``affine_grid`` + bilinear ``grid_sample``;
- jitter: per-sample factors broadcast over (B, 1, 1, 1); the hue shift is a fused RGB -> HSV ->
  RGB rotation;
- blur: a separable Gaussian with a per-sample sigma, as a grouped convolution (one group per
  sample and channel).

The per-image CPU pipeline of torchvision with the same settings (``torchvision_equivalent``) is the
fallback for large images that do not fit on the device as a batch, and the baseline of
``bench/augment.py``.

Differences from torchvision, on purpose: jitter applies its four operations in a fixed order
(brightness, contrast, saturation, hue) rather than a random one; a crop whose sampled aspect ratio
does not fit the image is clipped to the image instead of re-drawn up to ten times.

Grey images get the brightness and contrast part of the jitter (the analogue of colour distortion
there); saturation, hue and the drop to grey need three channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.params import Param

# luma weights of ITU-R BT.601, the ones torchvision's rgb_to_grayscale uses
_LUMA = (0.299, 0.587, 0.114)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (B, 3, H, W) to RGB in [0, 1]: channel n of RGB is
    v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6 and n = 5, 3, 1 for R, G, B."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = (n + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def shift_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images (B, 3, H, W) by ``shift`` turns (broadcast, e.g. (B, 1, 1, 1)),
    keeping HSV saturation and value: the same as rgb_to_hsv, h += shift, hsv_to_rgb, fused into one
    pass (hue is kept in sixths of a turn and wrapped once at the end), which makes colour jitter
    about three times faster on the CPU than going through the two conversions."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    maxc = rgb.amax(1, keepdim=True)
    delta = maxc - rgb.amin(1, keepdim=True)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h6 = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    n = torch.tensor([5.0, 3.0, 1.0], device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6 + 6 * shift, 6)
    return maxc - delta * torch.minimum(k, 4 - k).clamp(0, 1)


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    w = torch.tensor(_LUMA, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


@dataclass(frozen=True)
class AugmentParams:
    """The random draws of one batch, one row per sample (all tensors of length B)."""

    crop: torch.Tensor  # (B, 4): centre x, centre y in [0, 1], width and height as fractions of the image
    flip: torch.Tensor  # (B,) bool
    angle: torch.Tensor  # (B,) rotation in radians (0 = none)
    brightness: torch.Tensor  # (B,) multiplicative factor (1 = unchanged)
    contrast: torch.Tensor  # (B,) factor (1 = unchanged)
    saturation: torch.Tensor  # (B,) factor (1 = unchanged)
    hue: torch.Tensor  # (B,) shift in turns of the colour wheel (0 = unchanged)
    gray: torch.Tensor  # (B,) bool
    sigma: torch.Tensor  # (B,) blur sigma in pixels (0 = no blur)

    def rows(self, start: int, stop: int) -> "AugmentParams":
        """The draws of samples ``start`` to ``stop`` - 1 (a rank's share of a global batch's draws)."""
        return AugmentParams(*(getattr(self, f.name)[start:stop] for f in fields(self)))


def _check_range(name: str, value: float, low: float, high: float, low_exclusive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    bad = not (v > low if low_exclusive else v >= low) or not v <= high
    if bad:
        lo = f"> {low}" if low_exclusive else f">= {low}"
        raise ValueError(f"{name}: {value!r} is out of range; allowed: a number {lo} and <= {high}")
    return v


class SimCLRAugment(nn.Module):
    """SimCLR's random views, batched on the device: ``augment(images, generator=None)``.

    Input and output: float images in [0, 1], shape (B, C, H, W), on any device; the output has the
    input's shape and stays in [0, 1]. Each sample draws its own crop, flip, jitter factors, grey
    coin and blur sigma (``sample`` returns the draws; ``apply`` applies given draws).

    Colour operations (jitter and drop to grey) are skipped on 1-channel data: a grey image has no
    hue or saturation, and SimCLR's colour distortion is about colour. Crop, flip and blur apply to
    any channel count.

    Args:
        channels, image_size: the shape of the images (C, (H, W)).
        crop_scale: range of the crop's area as a fraction of the image, 0 < low <= high <= 1.
        crop_ratio: range of the crop's aspect ratio (width / height), drawn log-uniformly.
        flip: horizontal flip with probability 1/2.
        jitter: colour jitter strength s in [0, 1]: brightness, contrast and saturation factors drawn
            from [1 - s, 1 + s], hue shift from [-s/4, s/4] (torchvision's ColorJitter(s, s, s, s/4);
            SimCLR's CIFAR setting is s = 0.4).
        jitter_p: probability that a sample is jittered.
        gray_p: probability that a sample is turned grey (replicated luma).
        blur_p: probability that a sample is blurred.
        blur_sigma: range of the blur's sigma in pixels; the kernel has radius ceil(2 sigma_high),
            at most half the image.
        rotate: largest random rotation in degrees, drawn uniformly from [-rotate, rotate] and
            composed into the crop's affine matrix (not part of SimCLR's set; 0 turns it off).
    """

    def __init__(self, channels: int, image_size: tuple[int, int] | int,
                 crop_scale: tuple[float, float] = (0.2, 1.0), crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip: bool = True, jitter: float = 0.4, jitter_p: float = 0.8, gray_p: float = 0.2,
                 blur_p: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 2.0), rotate: float = 0.0):
        super().__init__()
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if int(channels) < 1:
            raise ValueError(f"channels: {channels!r} is not valid; allowed: a whole number >= 1")
        self.channels = int(channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        lo = _check_range("crop_scale (low)", crop_scale[0], 0.0, 1.0, low_exclusive=True)
        hi = _check_range("crop_scale (high)", crop_scale[1], lo, 1.0)
        self.crop_scale = (lo, hi)
        rlo = _check_range("crop_ratio (low)", crop_ratio[0], 0.0, math.inf, low_exclusive=True)
        rhi = _check_range("crop_ratio (high)", crop_ratio[1], rlo, math.inf)
        self.crop_ratio = (rlo, rhi)
        self.flip = bool(flip)
        self.jitter = _check_range("jitter", jitter, 0.0, 1.0)
        self.jitter_p = _check_range("jitter_p", jitter_p, 0.0, 1.0)
        self.gray_p = _check_range("gray_p", gray_p, 0.0, 1.0)
        self.blur_p = _check_range("blur_p", blur_p, 0.0, 1.0)
        slo = _check_range("blur_sigma (low)", blur_sigma[0], 0.0, math.inf)
        shi = _check_range("blur_sigma (high)", blur_sigma[1], slo, math.inf)
        self.blur_sigma = (slo, shi)
        radius = math.ceil(2 * shi)
        self.blur_radius = max(0, min(radius, (min(self.image_size) - 1) // 2))
        self.rotate = _check_range("rotate", rotate, 0.0, 180.0)

    @property
    def colour(self) -> bool:
        return self.channels == 3

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, image_size={self.image_size}, crop_scale={self.crop_scale}, "
                f"flip={self.flip}, jitter={self.jitter}, jitter_p={self.jitter_p}, gray_p={self.gray_p}, "
                f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma}")

    # -- random draws ------------------------------------------------------------------------------

    def sample(self, batch: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> AugmentParams:
        """Draw the parameters of ``batch`` samples. The draws happen on the generator's device (or
        ``device`` without one) and land on ``device``."""
        device = torch.device(device)
        gdev = generator.device if generator is not None else device

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=gdev)

        # random resized crop: area fraction and log aspect ratio, then a centre where it fits
        area = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * u(batch)
        log_r = math.log(self.crop_ratio[0]) + (math.log(self.crop_ratio[1]) - math.log(self.crop_ratio[0])) * u(batch)
        ratio = log_r.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = w / 2 + (1 - w) * u(batch)
        cy = h / 2 + (1 - h) * u(batch)
        flip = (u(batch) < 0.5) if self.flip else torch.zeros(batch, dtype=torch.bool, device=gdev)
        angle = math.radians(self.rotate) * (2 * u(batch) - 1)

        ones, zeros = torch.ones(batch, device=gdev), torch.zeros(batch, device=gdev)
        # brightness and contrast for every image (grey ones too: without them two views of a grey image
        # share their ink level, a shortcut the network learns instead of shapes); saturation, hue and
        # the drop to grey need colour
        jittered = u(batch) < self.jitter_p
        s = self.jitter
        bright = torch.where(jittered, 1 - s + 2 * s * u(batch), ones)
        contrast = torch.where(jittered, 1 - s + 2 * s * u(batch), ones)
        if self.colour:
            sat = torch.where(jittered, 1 - s + 2 * s * u(batch), ones)
            hue = torch.where(jittered, (s / 4) * (2 * u(batch) - 1), zeros)
            gray = u(batch) < self.gray_p
        else:
            sat, hue = ones, zeros
            gray = torch.zeros(batch, dtype=torch.bool, device=gdev)
        blurred = u(batch) < self.blur_p
        sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u(batch)
        sigma = torch.where(blurred, sigma, zeros)
        to = {"device": device}
        return AugmentParams(torch.stack([cx, cy, w, h], 1).to(**to), flip.to(**to), angle.to(**to), bright.to(**to),
                             contrast.to(**to), sat.to(**to), hue.to(**to), gray.to(**to), sigma.to(**to))

    # -- the transformations -------------------------------------------------------------------------

    def apply(self, images: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Apply given per-sample draws to float images in [0, 1] (B, C, H, W)."""
        x = self._crop_flip(images, p.crop, p.flip, p.angle)
        x = self._jitter(x, p)
        if self.colour:
            g = grayscale(x).expand_as(x)
            x = torch.where(p.gray.view(-1, 1, 1, 1), g, x)
        if self.blur_radius > 0 and bool((p.sigma > 0).any()):
            x = self._blur(x, p.sigma)
        return x.clamp(0, 1)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"images: shape {tuple(images.shape)} is not valid; allowed: "
                             f"(B, {self.channels}, H, W) float in [0, 1]")
        return self.apply(images, self.sample(images.shape[0], images.device, generator))

    @staticmethod
    def _crop_flip(x: torch.Tensor, crop: torch.Tensor, flip: torch.Tensor,
                   angle: torch.Tensor | None = None) -> torch.Tensor:
        # output coordinate u in [-1, 1] reads the input at centre + diag(w, h) R(angle) F u, with F
        # the mirror when flipped: one affine matrix per sample
        cx, cy, w, h = crop.to(x.dtype).unbind(1)
        sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
        a = torch.zeros_like(w) if angle is None else angle.to(x.dtype)
        cos, sin = a.cos(), a.sin()
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = w * cos * sign
        theta[:, 0, 1] = -w * sin
        theta[:, 0, 2] = 2 * cx - 1
        theta[:, 1, 0] = h * sin * sign
        theta[:, 1, 1] = h * cos
        theta[:, 1, 2] = 2 * cy - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _jitter(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        def per(t: torch.Tensor) -> torch.Tensor:
            return t.to(x.dtype).view(-1, 1, 1, 1)

        x = (x * per(p.brightness)).clamp(0, 1)
        colour = x.shape[1] == 3
        # contrast blends with the mean grey level
        mean = (grayscale(x) if colour else x).mean((1, 2, 3), keepdim=True)
        x = ((x - mean) * per(p.contrast) + mean).clamp(0, 1)
        if not colour:
            return x
        g = grayscale(x)
        x = ((x - g) * per(p.saturation) + g).clamp(0, 1)
        if bool((p.hue != 0).any()):
            x = shift_hue(x, per(p.hue))
        return x

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        r = self.blur_radius
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        s = sigma.to(x.dtype).clamp_min(1e-3).view(-1, 1)  # sigma -> 0 gives a delta: no blur
        k = torch.exp(-t[None] ** 2 / (2 * s ** 2))
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1): one kernel per group
        y = F.pad(x.reshape(1, b * c, hgt, wid), (r, r, r, r), mode="reflect")
        y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
        y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
        return y.view(b, c, hgt, wid)

    def torchvision_equivalent(self) -> Any:
        """The per-image torchvision (v2) pipeline with the same settings, for (C, H, W) float
        tensors in [0, 1]: the CPU fallback for large images and the baseline of the benchmark."""
        from torchvision.transforms import v2

        steps: list[Any] = [v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, ratio=self.crop_ratio,
                                                 antialias=False)]
        if self.flip:
            steps.append(v2.RandomHorizontalFlip())
        if self.rotate > 0:
            steps.append(v2.RandomRotation(self.rotate))
        s = self.jitter
        if self.colour:
            steps.append(v2.RandomApply([v2.ColorJitter(s, s, s, s / 4)], p=self.jitter_p))
            steps.append(v2.RandomGrayscale(p=self.gray_p))
        elif s > 0:
            steps.append(v2.RandomApply([v2.ColorJitter(s, s)], p=self.jitter_p))
        if self.blur_radius > 0 and self.blur_p > 0:
            steps.append(v2.RandomApply([v2.GaussianBlur(2 * self.blur_radius + 1, self.blur_sigma)], p=self.blur_p))
        return v2.Compose(steps)


# -- the same settings as typed parameters, shared by every method that trains on two views ----------

AUGMENT_PARAMS: tuple[Param, ...] = (
    Param("crop_min", 0.3, "Smallest crop, as a fraction of the image's area (random resized crop).",
          low=0.0, high=1.0, low_exclusive=True),
    Param("flip", "auto", "Flip views horizontally with probability 1/2 ('auto': yes, except on digits, "
          "whose mirror images are not digits).", type=bool, special=("auto",)),
    Param("jitter", 0.4, "Jitter strength s: brightness and contrast in [1-s, 1+s] (grey images too), "
          "saturation in [1-s, 1+s] and hue in [-s/4, s/4] (colour images).", low=0.0, high=1.0),
    Param("jitter_p", 0.8, "Probability that a view is jittered.", low=0.0, high=1.0),
    Param("gray_p", 0.2, "Probability that a view is turned grey (colour data only).", low=0.0, high=1.0),
    Param("blur_p", 0.0, "Probability that a view is blurred with a Gaussian (SimCLR's default: 0.5, as on "
          "ImageNet; its CIFAR runs use none).", low=0.0, high=1.0),
    Param("blur_sigma", 1.0, "Largest blur sigma in pixels (drawn from [0.1, this]).", low=0.1, high=10.0),
    Param("rotate", 0.0, "Largest random rotation in degrees (drawn from [-this, this]; not in SimCLR's set).",
          low=0.0, high=180.0),
)


def augment_params(**defaults: Any) -> tuple[Param, ...]:
    """``AUGMENT_PARAMS`` with some defaults of a method's own (e.g. SimCLR's blur), the rest shared:
    ``augment_params(blur_p=0.5)``. Each value is checked by its parameter; an unknown name is an error."""
    known = {p.name for p in AUGMENT_PARAMS}
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise ValueError(f"augment_params: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
    return tuple(replace(p, default=p.parse(defaults[p.name])) if p.name in defaults else p for p in AUGMENT_PARAMS)


def flips_make_sense(dataset: str) -> bool:
    """Whether a mirrored image is still an image of the same kind: not for handwritten digits (a
    mirrored 3 is no digit), yes for clothes, objects, scenes and shapes."""
    name = dataset.lower()
    return not ("digit" in name or ("mnist" in name and "fashion" not in name))


def dataset_views(channels: int, image_size: tuple[int, int], dataset: str) -> SimCLRAugment:
    """The views the two-view methods train with on ``dataset`` at their default settings
    (``AUGMENT_PARAMS``' defaults, flips as ``flips_make_sense`` decides): what a method without
    views of its own is measured under (invariance, alignment)."""
    from engine.params import resolve

    return augment_from_params(channels, image_size, resolve(AUGMENT_PARAMS, {}), dataset)


def augment_from_params(channels: int, image_size: tuple[int, int], values: dict[str, Any],
                        dataset: str = "") -> SimCLRAugment:
    """A ``SimCLRAugment`` from resolved ``AUGMENT_PARAMS`` values (extra keys are ignored); ``dataset``
    decides ``flip='auto'``."""
    flip = flips_make_sense(dataset) if values["flip"] == "auto" else bool(values["flip"])
    return SimCLRAugment(channels, image_size, crop_scale=(values["crop_min"], 1.0), flip=flip,
                         jitter=values["jitter"], jitter_p=values["jitter_p"], gray_p=values["gray_p"],
                         blur_p=values["blur_p"], blur_sigma=(0.1, values["blur_sigma"]), rotate=values["rotate"])
