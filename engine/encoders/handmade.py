"""The hand-made representations the field starts from, as fixed (untrained) encoders.

"Is this a good representation?" is answered for them by the same probe, map and indicators as for a
trained network: the raw pixels, and an image's colour (its dominant colour or its colour histogram).
"""
from __future__ import annotations

import torch

from engine.color import rgb_to_hsv, rgb_to_lab
from engine.encoders import ENCODERS, Encoder
from engine.params import Param

# The range of each channel in each colour space, to bin it: (low, high) per channel
_RANGES = {"rgb": [(0, 1)] * 3, "hsv": [(0, 1)] * 3, "lab": [(0, 100), (-110, 110), (-110, 110)]}


@ENCODERS.register("pixels")
class Pixels(Encoder):
    summary = "the raw image, flattened (fixed: nothing to train)"
    trainable = False

    def __init__(self, in_channels, image_size, embedding_dim):
        super().__init__(in_channels, image_size, in_channels * image_size[0] * image_size[1])

    def forward(self, x):
        return x.flatten(1)


@ENCODERS.register("color")
class Color(Encoder):
    summary = "an image's dominant colour or colour histogram in RGB, HSV or Lab (fixed)"
    trainable = False
    params = (
        Param("space", "hsv", "Colour space the colours are described in.", type=str,
              choices=("rgb", "hsv", "lab")),
        Param("mode", "histogram", "A normalised joint colour histogram, or the centre of its fullest bin.",
              type=str, choices=("histogram", "dominant")),
        Param("bins", 4, "Bins per colour channel (the histogram has bins^3 cells).", type=int, low=2, high=16),
    )

    def __init__(self, in_channels, image_size, embedding_dim, space="hsv", mode="histogram", bins=4):
        dim = (bins ** 3 if in_channels == 3 else bins) if mode == "histogram" else (3 if in_channels == 3 else 1)
        super().__init__(in_channels, image_size, dim)
        self.space, self.mode, self.bins = space, mode, bins

    def forward(self, x):
        b = self.bins
        if x.shape[1] == 1:  # grayscale: the "colour" is the intensity
            values, ranges = x, [(0, 1)]
        else:
            values = {"rgb": lambda t: t, "hsv": rgb_to_hsv, "lab": rgb_to_lab}[self.space](x)
            ranges = _RANGES[self.space]
        cell = torch.zeros_like(values[:, 0], dtype=torch.long)
        for c, (lo, hi) in enumerate(ranges):
            idx = ((values[:, c] - lo) / (hi - lo) * b).long().clamp_(0, b - 1)
            cell = cell * b + idx
        n_cells = b ** len(ranges)
        hist = torch.zeros(x.shape[0], n_cells, device=x.device)
        hist.scatter_add_(1, cell.flatten(1), torch.ones_like(cell.flatten(1), dtype=hist.dtype))
        hist /= cell[0].numel()
        if self.mode == "histogram":
            return hist
        # dominant colour: the centre of the fullest cell, in the chosen space's units
        top = hist.argmax(1)
        centres = []
        for c in reversed(range(len(ranges))):
            lo, hi = ranges[c]
            centres.append(lo + (top % b + 0.5) / b * (hi - lo))
            top = top // b
        return torch.stack(centres[::-1], 1).float()
