"""Model and weight files from elsewhere, read as untrusted input.

A file is recognised by its content, not its name (``sniff``): safetensors, a TorchScript archive, a
``torch.save`` archive or a bare pickle. Weights are read without running code: safetensors as they
are, ``torch.save`` files with ``torch.load(weights_only=True)``. A file that holds Python objects
besides tensors (a whole model saved with ``torch.save(model)``, a checkpoint with an
``argparse.Namespace`` in it) can only be read by unpickling it, and unpickling runs code from the
file: it is refused unless the user says the file is trusted (``--trust-pickle``).

A state dict that does not fit its architecture is refused naming a few missing and unexpected keys
and the tensors whose shapes differ; a whole-file prefix (``module.`` from DistributedDataParallel,
``backbone.`` or ``encoder.`` from a training wrapper) is recognised and taken off.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

SHOWN_KEYS = 5  # keys named in a mismatch message, of each kind
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "encoder",
                     "backbone", "weights", "params")


def existing_file(path: str, what: str) -> Path:
    """``path`` as a Path, or FileNotFoundError naming ``what`` asked for it."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what}: no file at {p}" + (" (it is a folder)" if p.is_dir() else "")
                                + "; give the path of an existing file")
    return p


def sniff(path: Path) -> str:
    """What the file is, by its first bytes: 'safetensors', 'torchscript', 'torch' (a torch.save
    archive), 'pickle' (a legacy torch.save or plain pickle), 'onnx' (a protobuf whose name ends in
    .onnx) or 'unknown'."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                return "torchscript"
            if any(n.endswith("data.pkl") for n in names):
                return "torch"
            return "unknown"
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return "unknown"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2 and later start with PROTO
        return "pickle"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "unknown"


def pickle_refusal(path: Path, error: Exception | str, flag: str = "--trust-pickle") -> str:
    """The message for a file that only unpickling could read."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    objects = f" ({found.group(1)})" if found else ""
    return (f"{path} holds Python objects besides tensors{objects}: reading it means unpickling it, and "
            f"unpickling runs code from the file, so it is refused. If you trust the file, add {flag}; "
            "better, save only the weights (torch.save(model.state_dict(), PATH), or a .safetensors "
            "file), or the whole model as TorchScript (torch.jit.save) or ONNX")


def load_torch_file(path: Path, trust_pickle: bool, flag: str = "--trust-pickle") -> Any:
    """``torch.load`` of a torch.save file: weights only, unless trusted. ValueError with the fix for a
    file that needs unpickling or that is corrupt."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if not isinstance(error, pickle.UnpicklingError) or "Weights only load failed" not in str(error):
            raise ValueError(f"{path} could not be read ({type(error).__name__}: {str(error).splitlines()[0]}): "
                             "the file is corrupt, truncated, or not a PyTorch file") from None
        if not trust_pickle:
            raise ValueError(pickle_refusal(path, error, flag)) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=False)  # the user trusts the file


def is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def read_state_dict(path: str | Path, trust_pickle: bool = False, what: str = "--weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file: .safetensors, or a torch.save file of a state dict (also nested
    in a checkpoint under 'state_dict', 'model', ...). ValueError naming the file and the fix."""
    path = existing_file(str(path), what)
    kind = sniff(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:
            raise ValueError(f"{path} could not be read as safetensors ({error}): the file is corrupt or "
                             "truncated") from None
    if kind == "torchscript":
        raise ValueError(f"{path} is a TorchScript model, not a state dict: use it whole with "
                         f"--encoder torchscript:{path}")
    if kind == "onnx":
        raise ValueError(f"{path} is an ONNX model, not a state dict: use it whole with --encoder onnx:{path}")
    if kind not in ("torch", "pickle"):
        raise ValueError(f"{path} is not a weights file this program reads: expected .safetensors, or a "
                         "state dict saved with torch.save")
    obj = load_torch_file(path, trust_pickle)
    if isinstance(obj, nn.Module):  # a whole model, trusted
        return obj.state_dict()
    state = _find_state_dict(obj)
    if state is None:
        keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} holds no state dict (found: {keys}); save one with "
                         "torch.save(model.state_dict(), PATH)")
    return state


def _find_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in NESTED_STATE_KEYS:
            if key in obj and is_state_dict(obj[key]):
                return obj[key]
            if key in obj and isinstance(obj[key], nn.Module):
                return obj[key].state_dict()
    return None


def _shown(keys: list[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN_KEYS]) + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def _common_prefix(keys: list[str]) -> str:
    """The first dotted component when every key starts with it ('module.'), else ''."""
    firsts = {k.split(".", 1)[0] for k in keys}
    return f"{firsts.pop()}." if len(firsts) == 1 and all("." in k for k in keys) else ""


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, architecture: str,
                   ignore: tuple[str, ...] = ()) -> list[str]:
    """Load ``state`` into ``model`` strictly; returns notes (a prefix taken off, keys ignored).
    Keys starting with one of ``ignore`` (a classifier the encoder does not keep) are dropped. A state
    dict that does not fit raises ValueError naming missing, unexpected and mis-shaped keys."""
    notes = []
    wanted = model.state_dict()
    if not set(state) & set(wanted):
        prefix = _common_prefix(list(state))
        if prefix and set(k[len(prefix):] for k in state) & set(wanted):
            state = {k[len(prefix):]: v for k, v in state.items()}
            notes.append(f"{source}: the prefix '{prefix}' of every key was taken off")
    dropped = [k for k in state if k not in wanted and k.startswith(ignore)] if ignore else []
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        notes.append(f"{source}: {_shown(dropped)} left out (the classifier: the embedding is the "
                     "features before it)")
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in wanted]
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(wanted[k].shape)})" for k in wanted
              if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_shown(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_shown(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} tensor(s) of another shape: {'; '.join(shapes[:SHOWN_KEYS])}")
        raise ValueError(f"{source} does not fit {architecture}: {'; '.join(parts)}. Check that the "
                         "weights were saved from this architecture (and its settings, e.g. the number "
                         "of classes or the input size)")
    model.load_state_dict(state, strict=False)  # strict=False: batch-norm counters may be absent
    return notes


def first_conv_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first convolution (the first 4-D parameter), if it has one."""
    for _, p in model.named_parameters():
        if p.dim() == 4:
            return int(p.shape[1])
    return None


@torch.no_grad()
def reinitialise(model: nn.Module) -> None:
    """Random weights for any torch module, a TorchScript one included: a layer with
    ``reset_parameters`` uses its own; any other matrix or kernel gets PyTorch's default for linear and
    convolution layers (Kaiming uniform, a = sqrt(5)), a vector named like a scale 1 and any other
    vector 0; batch-norm statistics start again at mean 0, variance 1."""
    done: set[int] = set()
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset) and not isinstance(module, torch.jit.ScriptModule):
            reset()
            done.update(id(p) for p in module.parameters(recurse=False))
    for name, p in model.named_parameters():
        if id(p) in done:
            continue
        if p.dim() >= 2:
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        elif name.rsplit(".", 1)[-1] in ("weight", "gamma", "scale"):
            p.fill_(1.0)
        else:
            p.zero_()
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.zero_()
        elif name.endswith("running_var"):
            b.fill_(1.0)


def read_json_text(text: str | bytes, source: str) -> dict:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source} is not valid JSON ({error}); export the encoder again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} holds a {type(data).__name__}, not an object of settings")
    return data


def wrong_file(path: Path, expected: str) -> str:
    """The message for a file that is not the ``expected`` kind: what it is, and how to use it."""
    kind = sniff(path)
    weights_fix = (f"give its architecture too: --encoder timm:NAME --weights {path}, or --encoder "
                   f"python:package.module:function --weights {path}")
    if kind == "safetensors":
        return f"{path} is a safetensors state dict (weights without the architecture), not {expected}: {weights_fix}"
    if kind in ("torch", "pickle"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return (f"{path} is a model saved whole with torch.save(model) (a pickle), not {expected}. "
                    "Unpickling runs code from the file, so it is loaded only as --encoder "
                    f"torch:{path} with --trust-pickle, if you trust it")
        except Exception as error:
            return f"{path} could not be read ({type(error).__name__}): it is corrupt or truncated"
        if _find_state_dict(obj) is not None:
            return f"{path} is a state dict saved with torch.save (weights without the architecture), not {expected}: {weights_fix}"
        return f"{path} holds a {type(obj).__name__}, not {expected}"
    if kind == "torchscript":
        return f"{path} is a TorchScript model, not {expected}: use --encoder torchscript:{path}"
    if kind == "onnx":
        return f"{path} is an ONNX model, not {expected}: use --encoder onnx:{path}"
    return (f"{path} is not {expected}, nor another model file this program reads (TorchScript, ONNX, "
            "safetensors, torch.save)")
