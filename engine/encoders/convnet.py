"""The field's Siamese architecture: conv + max-pool backbone, global average pooling, and a neck of
dense + batch norm + PReLU to the embedding (the training-only head belongs to the method)."""
from __future__ import annotations

from torch import nn

from engine.encoders import ENCODERS, Encoder
from engine.params import Param


NECKS = ("dense", "none")


def neck_param(pooled: str) -> Param:
    return Param("neck", "dense", "From the pooled features to the embedding: 'dense' = Linear + BatchNorm + "
                 "PReLU (the Siamese network's neck); 'none' = the pooled features themselves, the "
                 f"representation SimCLR probes (the embedding size is then {pooled}).",
                 type=str, choices=NECKS)


def make_neck(in_features: int, embedding_dim: int, kind: str = "dense", pooled: str = "") -> nn.Module:
    """The layer from the pooled features to the embedding. Without one ('none'), the embedding is the
    pooled features: on Fashion-MNIST a linear probe reads 2 points more from them than from the dense
    neck after it, at random init and after SimCLR alike (the neck is one more layer away from the
    image, like the projection head SimCLR discards)."""
    if kind == "none":
        if embedding_dim != in_features:
            raise ValueError(f"--embedding-dim: {embedding_dim} does not fit --neck none; allowed: "
                             f"{in_features}, the size of the pooled features ({pooled}). Set "
                             f"--embedding-dim {in_features}, or --neck dense")
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_features, embedding_dim), nn.BatchNorm1d(embedding_dim),
                         nn.PReLU(embedding_dim))


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in str(text).split(",")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ValueError(f"--widths: {text!r} is not valid; allowed: channel counts separated by "
                         "commas, one per conv + max-pool block, e.g. 32,64,128")
    return widths


@ENCODERS.register("convnet")
class ConvNet(Encoder):
    summary = "conv + max-pool blocks, global average pooling, neck Linear + BatchNorm + PReLU (or none)"
    params = (
        Param("widths", "32,64,128", "Channels of each conv + max-pool block (their count is the depth).",
              type=str, check=parse_widths),
        Param("convs_per_block", 2, "3x3 convolutions (each with batch norm and ReLU) before each max-pool.",
              type=int, low=1, high=4),
        neck_param("the last of the widths"),
    )

    def __init__(self, in_channels, image_size, embedding_dim, widths="32,64,128", convs_per_block=2,
                 neck="dense"):
        super().__init__(in_channels, image_size, embedding_dim)
        layers, c_in = [], in_channels
        for width in parse_widths(widths):
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                c_in = width
            # ceil_mode keeps a 1-pixel map poolable, so tiny inputs (8x8 digits) go through any depth
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.backbone = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pooling: any input size
        self.neck = make_neck(c_in, embedding_dim, neck, f"the last of --widths, {c_in}")

    def forward(self, x):
        return self.neck(self.pool(self.backbone(x)).flatten(1))
