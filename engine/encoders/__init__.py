"""Encoders: networks (or fixed functions) from images to embedding vectors.

Every encoder takes float images in [0, 1], shape (B, C, H, W), and returns (B, embedding_dim).
Normalisation, channel repetition and resizing an encoder needs happen inside it, so a method or an
augmentation never has to know which encoder it feeds.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from engine.params import Param, resolve
from engine.registry import Registry, import_submodules


class Encoder(nn.Module):
    """Base class. Subclasses set the class attributes and ``embedding_dim`` in ``__init__``."""

    summary: ClassVar[str] = ""  # one line for --help and the window
    params: ClassVar[tuple[Param, ...]] = ()
    trainable: ClassVar[bool] = True  # False for the hand-made representations (pixels, colour)
    pretrained: ClassVar[str] = ""  # where pretrained weights come from, "" when randomly initialised
    embedding_dim: int

    def __init__(self, in_channels: int, image_size: tuple[int, int], embedding_dim: int, **params: Any):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.embedding_dim = embedding_dim

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters that came pretrained (fine-tuned with a smaller learning rate in transfer)."""
        return []

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters initialised here (the neck): trained at the full learning rate."""
        backbone = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]


ENCODERS: Registry[type[Encoder]] = Registry("encoder")


def build_encoder(name: str, in_channels: int, image_size: tuple[int, int], embedding_dim: int = 128,
                  **params: Any) -> Encoder:
    cls = ENCODERS.get(name)
    if embedding_dim < 1:
        raise ValueError(f"--embedding-dim: {embedding_dim} is not valid; allowed: a whole number >= 1")
    return cls(in_channels, image_size, embedding_dim, **resolve(cls.params, params))


@torch.no_grad()
def embed(encoder: nn.Module, images_uint8: torch.Tensor, batch_size: int = 1024,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Embeddings of uint8 images (N, C, H, W) in eval mode, batched; returns float32 on ``device``."""
    was_training = encoder.training
    encoder.eval()
    device = torch.device(device)
    out = []
    for start in range(0, len(images_uint8), batch_size):
        x = images_uint8[start:start + batch_size].to(device, non_blocking=True).float().div_(255)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out.append(encoder(x).float())
    encoder.train(was_training)
    if not out:
        return torch.zeros(0, getattr(encoder, "embedding_dim", 0), device=device)
    return torch.cat(out)


import_submodules(__name__, __path__)
