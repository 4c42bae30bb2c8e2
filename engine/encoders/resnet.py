"""ResNet-18 (He et al., Deep residual learning for image recognition, CVPR 2016), randomly initialised,
as an embedding network: torchvision's residual stages, global average pooling, and the same neck as
``convnet`` (Linear + BatchNorm1d + PReLU to the embedding).

Small images get a small-image stem (the usual CIFAR adaptation, e.g. SimCLR's CIFAR-10 ResNet): the
ImageNet stem (7x7 stride-2 convolution, then a stride-2 max-pool) shrinks a 32x32 image to 8x8
before the first residual block and an 8x8 digit to 2x2; a 3x3 stride-1 convolution without the
max-pool keeps the resolution for the residual stages to reduce.
"""
from __future__ import annotations

from torch import Tensor, nn

from engine.encoders import ENCODERS, Encoder
from engine.encoders.convnet import make_neck, neck_param
from engine.params import Param

SMALL_IMAGE_MAX_SIDE = 64  # "auto" uses the small-image stem for inputs up to this many pixels a side


@ENCODERS.register("resnet18")
class ResNet18(Encoder):
    summary = ("ResNet-18 (torchvision, random init; small-image stem for inputs <= 64 px), global "
               "average pooling, neck Linear + BatchNorm + PReLU (or none)")
    params = (
        Param("stem", "auto", "First layers: 'small' = 3x3 stride-1 conv and no max-pool (inputs <= 64 "
              "px), 'imagenet' = 7x7 stride-2 conv and max-pool, 'auto' picks by image size.",
              type=str, choices=("auto", "small", "imagenet")),
        neck_param("512"),
    )

    def __init__(self, in_channels: int, image_size: tuple[int, int], embedding_dim: int,
                 stem: str = "auto", neck: str = "dense"):
        super().__init__(in_channels, image_size, embedding_dim)
        from torchvision.models import resnet18  # heavy import, only when the encoder is built

        if stem == "auto":
            stem = "small" if max(image_size) <= SMALL_IMAGE_MAX_SIDE else "imagenet"
        self.stem = stem
        net = resnet18(weights=None)
        if stem == "small":
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # a freshly made conv1 needs torchvision's initialisation (Kaiming normal, fan-out, ReLU)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        feature_dim = net.fc.in_features  # 512
        net.fc = nn.Identity()  # torchvision's ResNet average-pools globally and flattens before fc
        self.backbone = net
        self.neck = make_neck(feature_dim, embedding_dim, neck, "512, ResNet-18's pooled features")

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.backbone(x))
