"""``shapes`` — procedurally drawn sprites with known, independent factors of variation.

Each image is one coloured shape on black, drawn from six independent uniform factors: shape
(square, ellipse, triangle: the class label), scale, rotation, x, y and colour (hue). The same seed
always draws the same images: the ground truth for invariance and disentanglement measures.
"""
from __future__ import annotations

import colorsys

import numpy as np

from engine.data import DATASETS, ImageDataset, Split

SIZE = 32
SHAPES = ["square", "ellipse", "triangle"]
FACTORS = ("shape", "scale", "rotation", "x", "y", "hue")
N_TRAIN, N_TEST = 8000, 2000


def sample_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "scale": rng.uniform(0.5, 1.0, n),
        "rotation": rng.uniform(0, np.pi / 2, n),  # a quarter turn: no shape repeats itself within it
        "x": rng.uniform(0.3, 0.7, n),
        "y": rng.uniform(0.3, 0.7, n),
        "hue": rng.uniform(0, 1, n),
    }


def render(factors: dict[str, np.ndarray], size: int = SIZE) -> np.ndarray:
    """Draw the shapes with a signed-distance test per pixel, all images at once: uint8 (N, 3, H, W)."""
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
