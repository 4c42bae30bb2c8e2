"""Colour spaces in torch (batched, differentiable): RGB <-> HSV and RGB <-> CIE Lab (D65).

Images are float (B, 3, H, W) with RGB in [0, 1]. HSV comes out in [0, 1] per channel; Lab as
L in [0, 100] and a, b roughly in [-110, 110], the usual ranges.
"""
from __future__ import annotations

import torch

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)  # a constant: an exported model (ONNX) holds no matrix inverse
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754])


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(1)
    minc, _ = rgb.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / safe % 6,
                    torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _linear(rgb: torch.Tensor) -> torch.Tensor:  # sRGB gamma removed
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def _gamma(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(rgb > 0.0031308, 1.055 * rgb.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * rgb)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    m = _RGB_TO_XYZ.to(rgb)
    xyz = torch.einsum("ij,bjhw->bihw", m, _linear(rgb.clamp(0, 1))) / _WHITE_D65.to(rgb)[None, :, None, None]
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    delta = 6 / 29
    xyz = torch.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4 / 29)) * _WHITE_D65.to(lab)[None, :, None, None]
    rgb = torch.einsum("ij,bjhw->bihw", _XYZ_TO_RGB.to(lab), xyz)
    return _gamma(rgb.clamp(0, 1)).clamp(0, 1)


def lightness_as_grey(lab: torch.Tensor) -> torch.Tensor:
    """Lab (B, 3, H, W) -> the RGB image with the same lightness and no colour (a = b = 0): L shown as a
    grey image in 3 channels, in [0, 1]."""
    return lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1))


def grey_view(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> its grey version (``lightness_as_grey``): what colorization's
    encoder is trained on, and so what it embeds wherever it is used (the evaluation, an export)."""
    return lightness_as_grey(rgb_to_lab(rgb))
