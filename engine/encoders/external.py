"""Encoders a user already has, named ``KIND:ARGUMENT`` like the dataset ``folder:PATH``.

    torchscript:PATH          a model saved with torch.jit.save: embeds, trains (fine-tuning, transfer)
    onnx:PATH                 run with onnxruntime: embeds (not a torch module: nothing to train)
    timm:NAME                 timm.create_model(NAME): the hub's pretrained weights when online or
                              cached, --weights FILE for a state dict of your own, --random-init for none
    python:package.module:fn  fn() returns a torch module; --weights FILE loads a state dict into it
    torch:PATH                a model saved whole with torch.save(model): a pickle, only with --trust-pickle
    exported:DIR              an encoder written by ``embedding-explorer export`` (engine/export.py)
    run:RUN_DIR               the encoder of a run directory, from its checkpoint

Each is wrapped the same way (``ExternalEncoder``). Our images, float in [0, 1] with the dataset's
channels and size, become what the model takes (``InputAdapter``): its number of channels (gray
repeated to RGB, RGB to gray by luminance), its input size (resized, antialiased) and its
normalisation. Each is read from the model where it says (timm's ``pretrained_cfg``, the ONNX input
shape, an export's settings, the first convolution's weight), else taken from the parameters
(``--input-size``, ``--input-channels``, ``--normalize``), else the dataset's own. The model's output
becomes one vector per image: a (B, D) output as it is, a feature map (B, C, H, W) averaged over H and
W, tokens (B, N, D) averaged over N (each said in the run log), anything else refused, saying why.

The embedding size is the model's (found by running it once on two images); ``--embedding-dim``
does not apply. Where the model is a torch module it trains like the pretrained backbones: its
parameters are the "backbone" that ``transfer`` fine-tunes at a smaller learning rate or freezes.
"""
from __future__ import annotations

import difflib
import importlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from engine.encoders import ENCODERS, Encoder
from engine.encoders.pretrained import IMAGENET_MEAN, IMAGENET_STD
from engine.encoders.weights import (existing_file, first_conv_channels, fit_state_dict, read_json_text,
                                     read_state_dict, reinitialise, sniff, wrong_file)
from engine.params import Param

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B in a gray level
SETTINGS_KEY = "embedding_explorer.json"  # an export's settings inside a TorchScript or ONNX file
PROBE_BATCH = 2  # images the model is run on once, to learn its output (2: batch norm needs > 1)


# ---------------------------------------------------------------- parameters

def parse_size(text: Any) -> tuple[int, int] | None:
    """'auto' -> None; 'N' -> (N, N); 'HxW' -> (H, W). ValueError naming --input-size otherwise."""
    text = str(text).strip().lower()
    if text == "auto":
        return None
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1 or max(parts) > 4096:
        raise ValueError(f"--input-size: {text!r} is not valid; allowed: auto, a side in pixels (224) or "
                         "height x width (224x160)")
    return parts[0], parts[1]


NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": ((0.5,) * 3, (0.5,) * 3)}


def parse_normalize(text: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None | str:
    """'auto' -> 'auto'; 'none' -> None; a named one or 'MEAN/STD' (comma lists) -> (mean, std)."""
    text = str(text).strip().lower()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    if text in NORMALIZATIONS:
        return NORMALIZATIONS[text]
    try:
        mean_text, std_text = text.split("/")
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
        if len(mean) != len(std) or not all(s > 0 and math.isfinite(s) for s in std):
            raise ValueError
    except ValueError:
        raise ValueError(f"--normalize: {text!r} is not valid; allowed: auto, none, imagenet, inception, or "
                         "MEAN/STD as comma lists, e.g. 0.5,0.5,0.5/0.25,0.25,0.25") from None
    return mean, std


INPUT_SIZE = Param("input_size", "auto", "Size the images are resized to before the model: a side (224) or "
                   "HxW; auto: the model's own where it says (timm's pretrained_cfg, the ONNX input shape, an "
                   "export), else the dataset's image size.", type=str, check=parse_size)
INPUT_CHANNELS = Param("input_channels", "auto", "Channels the model takes: gray images are repeated to 3, "
                       "colour ones turned gray for 1; auto: what the model says (its first convolution, "
                       "ONNX shape, timm), else the dataset's.", type=str, choices=("auto", "1", "3"))
NORMALIZE = Param("normalize", "auto", "Normalisation of the [0, 1] images before the model: auto (the "
                  "model's own where it says: timm's pretrained_cfg, an export; else none), none, imagenet, "
                  "inception (mean 0.5, std 0.5), or MEAN/STD as comma lists.", type=str, check=parse_normalize)
POOL = Param("pool", "auto", "How the model's output becomes one vector per image: auto (a vector as it is, a "
             "C x H x W feature map averaged over H and W, N tokens averaged) or flatten (every value, in "
             "order).", type=str, choices=("auto", "flatten"))
WEIGHTS = Param("weights", "", "A state dict to load into the model: a .safetensors file, or a .pt/.pth/.bin "
                "saved with torch.save (read with weights_only=True). Empty: none (timm: the hub's).", type=str)
TRUST_PICKLE = Param("trust_pickle", False, "Read files that hold Python objects (a model saved whole with "
                     "torch.save(model), a checkpoint with settings objects). Unpickling runs code from the "
                     "file: only for files you trust.", type=bool)
RANDOM_INIT = Param("random_init", False, "Same architecture with random weights (the random-initialisation "
                    "baseline of the run).", type=bool)
ADAPT = (INPUT_SIZE, INPUT_CHANNELS, NORMALIZE, POOL)


@dataclass
class ModelSays:
    """What a model file says about the input it takes (None: it does not say)."""

    channels: int | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    fixed: bool = False  # the file itself fixes channels and size (an ONNX graph, an export)
    source: str = ""  # where it says it: "timm's pretrained_cfg", "the ONNX input shape", ...


class InputAdapter(nn.Module):
    """[0, 1] images (B, channels, H, W) -> what the model takes: its size, channels, normalisation.
    Each step is skipped where nothing changes, so the adapter of a model that takes our images as
    they are is the identity (and costs nothing in a TorchScript or ONNX export)."""

    def __init__(self, channels: int, model_channels: int, size: tuple[int, int] | None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        if channels != model_channels and {channels, model_channels} != {1, 3}:
            raise ValueError(f"images with {channels} channels cannot be given to a model that takes "
                             f"{model_channels}; allowed: the same number, or 1 and 3 (gray and RGB)")
        self.channels, self.model_channels = channels, model_channels
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.normalise = mean is not None
        if self.normalise:
            if len(mean) not in (1, model_channels):
                raise ValueError(f"--normalize: {len(mean)} means for a model that takes {model_channels} "
                                 "channel(s); give one value per channel, or one for all")
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                                 persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                                 persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            # resized before the channels change: a gray image is resized once, not three times
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.model_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.model_channels == 1 and x.shape[1] == 3:
            x = (x * self.luma).sum(1, keepdim=True)
        if self.normalise:
            x = (x - self.mean) / self.std
        return x

    def describe(self, image_size: tuple[int, int] | None) -> list[str]:
        notes = []
        if self.size is not None and image_size is not None and tuple(image_size) != self.size:
            notes.append(f"images resized from {image_size[0]}x{image_size[1]} to the model's "
                         f"{self.size[0]}x{self.size[1]}")
        if self.channels != self.model_channels:
            notes.append("gray images repeated to 3 channels for the model" if self.model_channels == 3
                         else "colour images turned gray (luminance) for the model")
        if self.normalise:
            mean = ", ".join(f"{v:.3g}" for v in self.mean.flatten().tolist())
            std = ", ".join(f"{v:.3g}" for v in self.std.flatten().tolist())
            notes.append(f"normalised with mean ({mean}) and std ({std})")
        return notes


# ---------------------------------------------------------------- the wrapper every kind shares

class ExternalEncoder(Encoder):
    """A model from elsewhere behind an ``InputAdapter``, its output reduced to one vector per image.

    Subclasses set ``kind`` (their registry name) and implement ``load(source, size, **params) ->
    (model, ModelSays)``. ``in_channels`` / ``image_size`` may be None (an encoder exported on its
    own, without a dataset): they are then the model's own.
    """

    kind: ClassVar[str] = ""
    argument = "PATH"
    params = ADAPT

    def __init__(self, in_channels: int | None, image_size: tuple[int, int] | None, embedding_dim: int,
                 source: str = "", input_size: str = "auto", input_channels: str = "auto",
                 normalize: str = "auto", pool: str = "auto", **kind_params: Any):
        super().__init__(in_channels, image_size, embedding_dim)
        self.source = str(source)
        self.name = f"{self.kind}:{self.source}"
        size = parse_size(input_size)
        model, says = self.load(self.source, size, **kind_params)
        self.model = model
        channels = None if input_channels == "auto" else int(input_channels)
        if says.fixed and size is not None and says.size is not None and size != says.size:
            raise ValueError(f"{self.name} takes {says.size[0]}x{says.size[1]} images ({says.source}); "
                             f"--input-size {input_size} does not fit it: leave it auto, and the images are "
                             f"resized to {says.size[0]}x{says.size[1]}")
        if says.fixed and channels is not None and says.channels is not None and channels != says.channels:
            raise ValueError(f"{self.name} takes {says.channels}-channel images ({says.source}); "
                             f"--input-channels {channels} does not fit it: leave it auto")
        size = size or says.size or (tuple(image_size) if image_size else None)
        if image_size is None:
            if size is None:
                raise ValueError(f"{self.name} does not say its input size: give it (--input-size, e.g. 224)")
            self.image_size = image_size = size
        model_channels = channels or says.channels or in_channels or 3
        if in_channels is None:
            self.in_channels = in_channels = model_channels
        normalisation = parse_normalize(normalize)
        mean, std = (says.mean, says.std) if normalisation == "auto" else (normalisation or (None, None))
        self.adapter = InputAdapter(in_channels, model_channels, size, mean, std)
        self.pool = pool
        self.embedding_dim, self.reduction, reduction_note = self._probe()
        self.notes += [f"{self.name}: {n}" for n in self.adapter.describe(image_size)]
        read = [what for what, used in (("input size", input_size == "auto" and says.size),
                                        ("channels", input_channels == "auto" and says.channels),
                                        ("normalisation", normalisation == "auto" and says.mean)) if used]
        if says.source and read:
            self.notes.append(f"{self.name}: {', '.join(read)} from {says.source}")
        if reduction_note:
            self.notes.append(f"{self.name}: {reduction_note}")
        self.trainable = type(self).trainable and any(True for _ in self.model.parameters())

    def load(self, source: str, size: tuple[int, int] | None, **params: Any) -> tuple[nn.Module, ModelSays]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(self.adapter(images))
        if self.reduction == "mean_hw":
            return out.mean((2, 3))
        if self.reduction == "mean_tokens":
            return out.mean(1)
        if self.reduction == "flatten":
            return out.flatten(1)
        return out

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())  # all of it came from elsewhere: the pretrained part

    @torch.no_grad()
    def _probe(self) -> tuple[int, str, str]:
        """Run the model once on two random images: (embedding size, reduction, note)."""
        x = torch.rand(PROBE_BATCH, self.in_channels, *self.image_size, generator=torch.Generator().manual_seed(0))
        prepared = self.adapter(x)
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model(prepared)
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
            raise ValueError(f"{self.name} fails on images of shape {tuple(prepared.shape)} "
                             f"({type(error).__name__}: {first}). If the model takes another input size or "
                             "number of channels, set them: --input-size (e.g. 224) and --input-channels "
                             "(1 or 3)") from None
        finally:
            self.model.train(was_training)
        return self._reduction(out)

    def _reduction(self, out: Any) -> tuple[int, str, str]:
        why = f"{self.name} must return one tensor of features per image"
        if isinstance(out, dict):
            raise ValueError(f"{why}, but returns a dict (keys {', '.join(map(str, list(out)[:6]))}); wrap it "
                             "in a module that returns the features, e.g. with a python:package.module:function "
                             "factory")
        if isinstance(out, (tuple, list)):
            raise ValueError(f"{why}, but returns a {type(out).__name__} of {len(out)}; wrap it in a module "
                             "that returns the features, e.g. with a python:package.module:function factory")
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{why}, but returns a {type(out).__name__}")
        shape = tuple(out.shape)
        if out.dim() == 0 or shape[0] != PROBE_BATCH:
            raise ValueError(f"{why}: {PROBE_BATCH} images gave an output of shape {shape}, not one row per image")
        if not out.is_floating_point():
            raise ValueError(f"{why}, but returns {out.dtype} values (class indices?), not features")
        if out.dim() == 1:
            raise ValueError(f"{why}, but returns one number per image (shape {shape}): a score or a "
                             "class, not a vector of features")
        if self.pool == "flatten":
            dim = math.prod(shape[1:])
            return dim, "flatten", (f"its output of shape {shape[1:]} per image flattened to {dim} values"
                                    if out.dim() > 2 else "")
        if out.dim() == 2:
            return shape[1], "as is", ""
        if out.dim() == 4:
            return shape[1], "mean_hw", (f"it returns a feature map of {shape[1]}x{shape[2]}x{shape[3]} per "
                                         f"image: its average over the {shape[2]}x{shape[3]} positions (global "
                                         "average pooling) is the embedding (--pool flatten keeps every value)")
        if out.dim() == 3:
            return shape[2], "mean_tokens", (f"it returns {shape[1]} tokens of {shape[2]} values per image: "
                                             "their average is the embedding (--pool flatten keeps every value)")
        raise ValueError(f"{why}, but returns shape {shape}; --pool flatten would use all "
                         f"{math.prod(shape[1:])} values of each image")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _says_from_settings(settings: dict, source: str) -> ModelSays:
    """What an export's settings (engine/export.py) say: its input is [0, 1], no normalisation."""
    inp = settings.get("input", {})
    try:
        return ModelSays(int(inp["channels"]), (int(inp["height"]), int(inp["width"])), fixed=True, source=source)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{source}: the export's settings have no valid input (channels, height, width); "
                         "export the encoder again") from None


def _says_from_timm_cfg(model: nn.Module, source: str) -> ModelSays:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if not isinstance(cfg, dict) or "input_size" not in cfg:
        return ModelSays(channels=first_conv_channels(model))
    c, h, w = cfg["input_size"]
    return ModelSays(int(c), (int(h), int(w)), tuple(cfg.get("mean") or ()) or None,
                     tuple(cfg.get("std") or ()) or None, source=source)


def _load_weights(model: nn.Module, weights: str, trust_pickle: bool, architecture: str,
                  ignore: tuple[str, ...] = ()) -> list[str]:
    path = existing_file(weights, "--weights")
    state = read_state_dict(path, trust_pickle)
    return fit_state_dict(model, state, str(path), architecture, ignore)


# ---------------------------------------------------------------- the kinds

@ENCODERS.register("torchscript")
class TorchScriptEncoder(ExternalEncoder):
    kind = "torchscript"
    example = "torchscript:model.pt"
    summary = "your TorchScript file (torch.jit.save): embeds, and fine-tunes with transfer"
    pretrained = "the TorchScript file"
    params = ADAPT + (RANDOM_INIT,)

    def load(self, source, size, random_init=False):
        path = existing_file(source, f"--encoder {self.kind}:{source}")
        if sniff(path) != "torchscript":
            raise ValueError(wrong_file(path, "a TorchScript file (saved with torch.jit.save)"))
        extra = {SETTINGS_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
                model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as error:
            raise ValueError(f"{path} could not be loaded as TorchScript ({_first_line(error)}): the file is "
                             "corrupt, or was saved by a newer PyTorch") from None
        if random_init:
            reinitialise(model)
        if extra[SETTINGS_KEY]:
            settings = read_json_text(extra[SETTINGS_KEY], f"{path} ({SETTINGS_KEY})")
            return model, _says_from_settings(settings, "the export's settings in the file")
        return model, ModelSays(channels=first_conv_channels(model), source="its first convolution")


class OnnxModule(nn.Module):
    """An onnxruntime session as a module: (B, C, H, W) float tensors in, its first output out.
    Not differentiable; a graph with a fixed batch size is run in chunks of it."""

    def __init__(self, path: Path):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError("--encoder onnx: needs onnxruntime: pip install 'embedding-explorer[onnx]' "
                             "(or pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph optimisations
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:
            raise ValueError(f"{path} could not be loaded as ONNX ({_first_line(error)})"
                             + ("" if sniff(path) in ("onnx", "unknown") else f"; {wrong_file(path, 'an ONNX file')}"))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); an image "
                             "encoder takes one, the batch of images")
        self.input = inputs[0]
        self.path = path
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}
        if self.input.type not in types or len(self.input.shape) != 4:
            raise ValueError(f"{path} takes {self.input.type} of shape {self.input.shape}; an image encoder "
                             "takes float images of shape (batch, channels, height, width)")
        self.dtype = types[self.input.type]
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np

        arr = x.detach().to("cpu", torch.float32).numpy().astype(self.dtype, copy=False)
        if self.fixed_batch is None:
            out = self.session.run(self.output_names[:1], {self.input.name: arr})[0]
        else:  # a graph exported for one batch size: run it chunk by chunk, the last one padded
            b, outs = self.fixed_batch, []
            for start in range(0, len(arr), b):
                chunk = arr[start:start + b]
                pad = b - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                outs.append(self.session.run(self.output_names[:1], {self.input.name: chunk})[0][:b - pad])
            out = np.concatenate(outs)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def __deepcopy__(self, memo):  # holds no weights of its own: a copy can share the session
        return self

    def says(self) -> ModelSays:
        shape = self.input.shape
        channels = shape[1] if isinstance(shape[1], int) else None
        size = (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        if SETTINGS_KEY in meta:
            settings = read_json_text(meta[SETTINGS_KEY], f"{self.path} ({SETTINGS_KEY})")
            return _says_from_settings(settings, "the export's settings in the file")
        return ModelSays(channels, size, fixed=True, source="the ONNX input shape")


@ENCODERS.register("onnx")
class OnnxEncoder(ExternalEncoder):
    kind = "onnx"
    example = "onnx:model.onnx"
    summary = "your ONNX file, run with onnxruntime: embeds (nothing to train: not a torch module)"
    pretrained = "the ONNX file"
    trainable = False

    def load(self, source, size):
        path = existing_file(source, f"--encoder {self.kind}:{source}")
        module = OnnxModule(path)
        if module.fixed_batch is not None:
            self.notes.append(f"{self.kind}:{source} takes batches of exactly {module.fixed_batch}: images go "
                              "through it in chunks of that size (export it with a dynamic batch to go faster)")
        if len(module.output_names) > 1:
            self.notes.append(f"{self.kind}:{source} has {len(module.output_names)} outputs; the first, "
                              f"{module.output_names[0]}, is the embedding")
        return module, module.says()


@ENCODERS.register("timm")
class TimmEncoder(ExternalEncoder):
    kind = "timm"
    argument = "NAME"
    example = "timm:vit_small_patch14_dinov2"
    summary = ("any timm model: its hub weights when online or cached (DINOv2: vit_small_patch14_dinov2), "
               "--weights FILE, or --random-init; pooled features")
    pretrained = "timm: the Hugging Face hub (or --weights)"
    params = (WEIGHTS, RANDOM_INIT, TRUST_PICKLE) + ADAPT

    def load(self, name, size, weights="", random_init=False, trust_pickle=False):
        import timm
        from timm.models import get_pretrained_cfg

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
            raise ValueError(f"timm:{name}: timm {timm.__version__} has no model {name!r}"
                             + (f"; close names: {', '.join(close)}" if close else "")
                             + "; list them with: python -c \"import timm; print(timm.list_models('*vit*'))\"")
        cfg = get_pretrained_cfg(name)
        kwargs: dict[str, Any] = {"num_classes": 0}  # no classifier: the pooled features are the embedding
        if size is not None and cfg is not None and cfg.fixed_input_size:
            kwargs["img_size"] = size  # a ViT's position embeddings are made (or resampled) for this size
        hub = not weights and not random_init
        model = _timm_from_hub(name, kwargs) if hub else timm.create_model(name, pretrained=False, **kwargs)
        if weights:
            classifier = (cfg.classifier if cfg is not None else None) or "head"
            classifiers = classifier if isinstance(classifier, (tuple, list)) else (classifier,)
            self.notes += _load_weights(model, weights, trust_pickle, f"timm's {name}",
                                        ignore=tuple(f"{c}." for c in classifiers))
        says = _says_from_timm_cfg(model, "timm's pretrained_cfg")
        if "img_size" in kwargs:
            says.size = size
        return model, says


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all: offline, hub downloads retry for a minute."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _timm_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """timm.create_model with the hub's pretrained weights: from the cache when the hub cannot be
    reached. FileNotFoundError saying how to get them when they are neither cached nor reachable."""
    import timm
    from huggingface_hub import constants

    online = _hub_reachable()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or not online  # offline: the cache only, at once, no retries
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except RuntimeError as error:
        if "No pretrained weights exist" not in str(error):
            raise
        raise ValueError(f"timm:{name} has no pretrained weights in timm: use --random-init, or --weights "
                         "FILE with a state dict of your own") from None
    except OSError as error:  # not in the cache (offline), or the download failed
        where = "the hub cannot be reached" if not online else f"the download failed ({_first_line(error)})"
        raise FileNotFoundError(
            f"timm:{name}: its pretrained weights are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and {where}. Connect to the internet once and build this encoder again (the weights are then "
            "cached), or pass --weights FILE with a state dict, or --random-init") from None
    finally:
        constants.HF_HUB_OFFLINE = saved


@ENCODERS.register("python")
class PythonEncoder(ExternalEncoder):
    kind = "python"
    argument = "package.module:function"
    example = "python:mypackage.models:make_encoder"
    summary = "your Python factory: function() returns a torch module (--weights FILE loads a state dict)"
    pretrained = "your factory (and --weights)"
    params = (WEIGHTS, RANDOM_INIT, TRUST_PICKLE) + ADAPT

    def load(self, source, size, weights="", random_init=False, trust_pickle=False):
        module_name, _, function_name = source.rpartition(":")
        if not module_name or not function_name:
            raise ValueError(f"--encoder python:{source}: give the module and the function, "
                             "python:package.module:function, e.g. python:mypackage.models:make_encoder")
        try:
            module = _import_from_cwd(module_name)
        except Exception as error:
            raise ValueError(f"python:{source}: could not import {module_name} ({type(error).__name__}: "
                             f"{_first_line(error)}); install the package, or run from the folder that "
                             "holds it (or add that folder to PYTHONPATH)") from None
        factory = getattr(module, function_name, None)
        if not callable(factory):
            raise ValueError(f"python:{source}: {module_name} has no function {function_name!r}"
                             + ("" if factory is None else f" (it is a {type(factory).__name__})"))
        try:
            model = factory()
        except Exception as error:  # the user's code: its own message is the explanation
            raise ValueError(f"python:{source}: {function_name}() raised {type(error).__name__}: "
                             f"{_first_line(error)}") from None
        if not isinstance(model, nn.Module):
            raise ValueError(f"python:{source}: {function_name}() returned a {type(model).__name__}; it must "
                             "return a torch.nn.Module that maps images (B, C, H, W) to features")
        if weights:
            self.notes += _load_weights(model, weights, trust_pickle, f"the module {function_name}() returns")
        if random_init:
            reinitialise(model)
        says = _says_from_timm_cfg(model, f"{function_name}()'s pretrained_cfg")
        return model, says


def _import_from_cwd(module_name: str):
    """Import a module, the current folder searched too (as ``python -m`` does; the installed
    ``embedding-explorer`` command and the window's training process would not look there)."""
    import os
    import sys

    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)  # last: an installed package of the same name wins
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(cwd)


@ENCODERS.register("torch")
class PickledModelEncoder(ExternalEncoder):
    kind = "torch"
    example = "torch:model.pt --trust-pickle"
    summary = "a model saved whole with torch.save(model): a pickle, which runs code when read: only with --trust-pickle"
    pretrained = "the pickled model file"
    params = (TRUST_PICKLE, RANDOM_INIT) + ADAPT

    def load(self, source, size, trust_pickle=False, random_init=False):
        from engine.encoders.weights import load_torch_file

        path = existing_file(source, f"--encoder {self.kind}:{source}")
        kind = sniff(path)
        if kind not in ("torch", "pickle"):
            raise ValueError(wrong_file(path, "a model saved with torch.save(model)"))
        obj = load_torch_file(path, trust_pickle)
        if not isinstance(obj, nn.Module):
            raise ValueError(wrong_file(path, "a model saved with torch.save(model)") if trust_pickle
                             else f"{path} holds weights without a model: give its architecture too: "
                                  f"--encoder timm:NAME --weights {path}, or --encoder "
                                  f"python:package.module:function --weights {path}")
        if random_init:
            reinitialise(obj)
        return obj, _says_from_timm_cfg(obj, "the model's pretrained_cfg")


@ENCODERS.register("exported")
class ExportedEncoder(ExternalEncoder):
    kind = "exported"
    argument = "DIR"
    example = "exported:exported/my-encoder"
    summary = "an encoder written by 'embedding-explorer export' (safetensors, TorchScript or ONNX)"
    pretrained = "the exported encoder"
    params = (Param("export_format", "auto", "Which of the export's files to use; auto: safetensors, else "
                    "TorchScript, else ONNX.", type=str, choices=("auto", "safetensors", "torchscript", "onnx")),)

    def load(self, source, size, export_format="auto"):
        from engine.export import load_encoder

        loaded = load_encoder(source, format=export_format)
        self.notes.append(f"exported:{source}: its {loaded.format} file")
        return loaded.net, _says_from_settings(loaded.settings, f"{source}'s encoder.json")


@ENCODERS.register("run")
class RunEncoder(ExternalEncoder):
    kind = "run"
    argument = "RUN_DIR"
    example = "run:runs/20260101-120000-simclr-digits"
    summary = "the encoder of a run directory (its checkpoint), as it was trained"
    pretrained = "the run's checkpoint"
    params = ()

    def load(self, source, size):
        from engine.export import encoder_from_run

        encoder, config = encoder_from_run(source)
        size = tuple(int(s) for s in config["image_size"])
        return encoder, ModelSays(int(config["channels"]), size, fixed=True, source=f"run {Path(source).name}")
