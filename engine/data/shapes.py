"""``shapes`` — procedurally drawn sprites with known, independent factors of variation.

Each image is one coloured shape on black, drawn from six independent uniform factors: shape
(square, ellipse, triangle: the class label), scale, rotation, x, y and colour (hue). The same seed
always draws the same images: the ground truth for invariance and disentanglement measures.

``painted-shapes`` draws the same sprites, but each shape has its own colour: the class's hue (red
squares, green ellipses, blue triangles), jittered a little, at a lightness drawn independently of
the class. Its colours are set in CIE Lab at one chroma, so the grey version of an image (its
lightness) says nothing about the class but its outline: the data colourisation is meant for, where
the colours of a grey image can be told from what is in it. On ``shapes`` the hue is drawn apart
from the shape and the grey level follows the hue, so the colours of a grey shape cannot be told.
"""
from __future__ import annotations

import colorsys

import numpy as np

from engine.data import DATASETS, ImageDataset, Split

SIZE = 32
SHAPES = ["square", "ellipse", "triangle"]
FACTORS = ("shape", "scale", "rotation", "x", "y", "hue")
N_TRAIN, N_TEST = 8000, 2000
# painted-shapes: each class's CIE Lab hue angle (in turns: red, green, blue), the jitter around it,
# one chroma and a lightness range at which every hue is inside the sRGB gamut
PAINTED_HUES = (30 / 360, 150 / 360, 270 / 360)
PAINTED_HUE_JITTER = 15 / 360
PAINTED_CHROMA = 30.0
PAINTED_LIGHTNESS = (55.0, 70.0)


def sample_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "scale": rng.uniform(0.5, 1.0, n),
        "rotation": rng.uniform(0, np.pi / 2, n),  # a quarter turn: no shape repeats itself within it
        "x": rng.uniform(0.3, 0.7, n),
        "y": rng.uniform(0.3, 0.7, n),
        "hue": rng.uniform(0, 1, n),
    }


def sample_painted_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The factors of ``painted-shapes``: those of ``shapes`` with the hue (a CIE Lab hue angle, in
    turns) set by the shape, plus ``lightness`` (CIE L), drawn apart from the shape."""
    factors = sample_factors(n, rng)
    jitter = rng.uniform(-PAINTED_HUE_JITTER, PAINTED_HUE_JITTER, n)
    factors["hue"] = (np.asarray(PAINTED_HUES)[factors["shape"]] + jitter) % 1.0
    factors["lightness"] = rng.uniform(*PAINTED_LIGHTNESS, n)
    return factors


def painted_colours(hue: np.ndarray, lightness: np.ndarray) -> np.ndarray:
    """sRGB colours (N, 3) in [0, 1] of CIE Lab (lightness, PAINTED_CHROMA, hue angle in turns)."""
    import torch

    from engine.color import lab_to_rgb

    angle = 2 * np.pi * np.asarray(hue, dtype=np.float64)
    lab = np.stack([lightness, PAINTED_CHROMA * np.cos(angle), PAINTED_CHROMA * np.sin(angle)], 1)
    rgb = lab_to_rgb(torch.as_tensor(lab, dtype=torch.float64).view(-1, 3, 1, 1))
    return rgb.view(-1, 3).numpy()


def render(factors: dict[str, np.ndarray], size: int = SIZE) -> np.ndarray:
    """Draw the shapes with a signed-distance test per pixel, all images at once: uint8 (N, 3, H, W).
    With a ``lightness`` factor the colours are painted-shapes' (``painted_colours``), else the
    hue is an HSV hue at full saturation and value."""
    n = len(factors["shape"])
    grid = (np.arange(size) + 0.5) / size
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    dx = gx[None] - factors["x"][:, None, None]
    dy = gy[None] - factors["y"][:, None, None]
    c, s = np.cos(factors["rotation"])[:, None, None], np.sin(factors["rotation"])[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy  # pixel in the shape's own frame
    r = 0.22 * factors["scale"][:, None, None]
    square = np.maximum(np.abs(u), np.abs(v)) <= r * 0.8
    ellipse = (u / r) ** 2 + (v / (0.55 * r)) ** 2 <= 1
    # equilateral triangle: inside all three half-planes at 120 degrees
    tri = np.ones_like(square)
    for k in range(3):
        a = np.pi / 2 + 2 * np.pi * k / 3
        tri &= u * np.cos(a) + v * np.sin(a) <= 0.5 * r
    shape = factors["shape"][:, None, None]
    mask = np.where(shape == 0, square, np.where(shape == 1, ellipse, tri))
    if "lightness" in factors:
        rgb = painted_colours(factors["hue"], factors["lightness"])
    else:
        rgb = np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in factors["hue"]])  # (N, 3)
    images = mask[:, None] * rgb[:, :, None, None] * 255
    return np.round(images).astype(np.uint8).reshape(n, 3, size, size)


@DATASETS.register("shapes")
def load_shapes(data_root=None, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", N_TRAIN), ("test", N_TEST)):
        f = sample_factors(n, rng)
        splits[name] = Split(render(f), f["shape"].astype(np.int64), {k: f[k] for k in FACTORS})
    return ImageDataset("shapes", splits["train"], splits["test"], list(SHAPES))


@DATASETS.register("painted-shapes")
def load_painted_shapes(data_root=None, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", N_TRAIN), ("test", N_TEST)):
        f = sample_painted_factors(n, rng)
        splits[name] = Split(render(f), f["shape"].astype(np.int64), dict(f))
    return ImageDataset("painted-shapes", splits["train"], splits["test"], list(SHAPES))
