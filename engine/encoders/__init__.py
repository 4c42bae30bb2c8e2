"""Encoders: networks (or fixed functions) from images to embedding vectors.

Every encoder takes float images in [0, 1], shape (B, C, H, W), and returns (B, embedding_dim).
Normalisation, channel repetition and resizing an encoder needs happen inside it, so a method or an
augmentation never has to know which encoder it feeds.

An encoder is named by its registry name (``convnet``), or, for the kinds that need to be told which
model (``engine/encoders/external.py``), by ``KIND:ARGUMENT``, as a folder of images is the dataset
``folder:PATH``: ``timm:resnet18``, ``onnx:model.onnx``, ``python:mypackage.models:make_encoder``.
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
    argument: ClassVar[str] = ""  # what follows "kind:" for the kinds that take one ("PATH", "NAME")
    example: ClassVar[str] = ""  # a whole name of such a kind, for messages ("timm:resnet18")
    embedding_dim: int
    batch_norm_frozen: bool = False  # set by freeze_batch_norm()

    def __init__(self, in_channels: int, image_size: tuple[int, int], embedding_dim: int, **params: Any):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        self.notes: list[str] = []  # what building it decided (resized, pooled, ...): shown in the run log

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters that came pretrained (fine-tuned with a smaller learning rate in transfer)."""
        return []

    def batch_norm_layers(self) -> list[nn.Module]:
        """The encoder's batch-norm layers (torch's ``_BatchNorm`` subclasses, timm's included)."""
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def freeze_batch_norm(self) -> int:
        """Keep every batch-norm layer as it came: its running statistics are used, never updated (the
        layer stays in eval mode while the rest of the encoder trains, ``train()`` included) and its
        scale and shift stop learning. What transfer fine-tuning does by default: small batches of
        another domain would otherwise replace the pretrained statistics within a few dozen steps, and
        the features the probe reads in eval mode would no longer be those the network trained with.
        Returns the number of layers frozen."""
        layers = self.batch_norm_layers()
        for layer in layers:
            layer.requires_grad_(False)
        self.batch_norm_frozen = True
        self.train(self.training)
        return len(layers)

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        if mode and self.batch_norm_frozen:
            for layer in self.batch_norm_layers():
                layer.eval()
        return self

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters initialised here (the neck): trained at the full learning rate."""
        backbone = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]


def input_view(name: str | None):
    """The fixed transformation an encoder was trained behind, by the name a method declares
    (``Method.input_view``) and an export records (``encoder.json``'s ``input.view``); None: none."""
    from engine.color import grey_view

    views = {"grey": grey_view}
    if name is not None and name not in views:
        raise ValueError(f"unknown input view {name!r}; allowed: {', '.join(views)}")
    return views[name] if name is not None else None


class InputView(nn.Module):
    """``encoder`` behind a fixed transformation of its [0, 1] input images (a method's
    ``encoder_input``): embeds what the encoder was trained to see. Train and eval modes pass through
    to the encoder, which it holds as its only submodule."""

    def __init__(self, encoder: nn.Module, view):
        super().__init__()
        self.encoder = encoder
        self.view = view
        self.training = encoder.training
        # what an exporter and the embedding helpers read from an encoder
        for name in ("embedding_dim", "in_channels", "image_size", "name"):
            if hasattr(encoder, name):
                setattr(self, name, getattr(encoder, name))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.view(images))


class EncoderRegistry(Registry[type[Encoder]]):
    """The encoder registry: ``get`` also takes ``KIND:ARGUMENT`` and returns the kind's class."""

    def get(self, name: str) -> type[Encoder]:
        kind, sep, _ = str(name).partition(":")
        if kind not in self:
            raise ValueError(f"unknown encoder '{name}': choose one of {', '.join(self.usages())}")
        cls = super().get(kind)
        if sep and not cls.argument:
            raise ValueError(f"encoder '{name}': {kind} takes nothing after ':'; use --encoder {kind}")
        return cls

    def usages(self) -> list[str]:
        """Each encoder as it is written on the command line (``timm:NAME``)."""
        return [f"{n}:{c.argument}" if c.argument else n for n, c in self.items()]


ENCODERS = EncoderRegistry("encoder")


def encoder_argument(name: str) -> str:
    """What follows ``KIND:`` in an encoder name ("" for the kinds that take nothing); ValueError
    naming the form when a kind that needs one has none."""
    cls = ENCODERS.get(name)
    argument = str(name).partition(":")[2]
    if cls.argument and not argument.strip():
        kind = str(name).partition(":")[0]
        raise ValueError(f"--encoder: {name!r} needs {cls.argument} after the colon: {kind}:{cls.argument}"
                         + (f", e.g. {cls.example}" if cls.example else ""))
    return argument


def check_encoder_name(name: str) -> None:
    """A bad encoder name (unknown, or a kind without its argument) raises ValueError saying the form."""
    encoder_argument(name)


def build_encoder(name: str, in_channels: int, image_size: tuple[int, int], embedding_dim: int = 128,
                  **params: Any) -> Encoder:
    cls = ENCODERS.get(name)
    if embedding_dim < 1:
        raise ValueError(f"--embedding-dim: {embedding_dim} is not valid; allowed: a whole number >= 1")
    values = resolve(cls.params, params)
    if cls.argument:
        values["source"] = encoder_argument(name)
    return cls(in_channels, image_size, embedding_dim, **values)


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
