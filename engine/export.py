"""Take the encoder out: export it, and load it back in one call.

    from engine.export import load_encoder
    encoder = load_encoder("exported/")       # a torch module in eval mode, no window, no run directory
    embeddings = encoder.embed(["a.png", "b.jpg"])   # image files, uint8 arrays or [0, 1] tensors -> (N, D)

An export folder (format ``embedding-explorer-encoder``, version 1; a public surface, see README):

    encoder.json            the settings: the input the encoder takes, the embedding size, how to
                            rebuild it, where it came from, and the check of each file
    encoder.safetensors     its weights (the encoder module's state dict), rebuilt by ``load_encoder``
                            from the settings: needs this package (and timm for timm models)
    encoder.torchscript.pt  TorchScript: ``torch.jit.load`` it, no embedding-explorer needed
    encoder.onnx            ONNX with a dynamic batch: onnxruntime, no torch needed
    README.md               the same, in a few lines for whoever receives the folder

Every file takes the same input: float32 images in [0, 1], shape (N, C, H, W), with C, H and W from
``encoder.json``; the resizing, channel repetition and normalisation the encoder was trained with
happen inside it. Each file is checked before it is kept: reloaded (safetensors, TorchScript) or run
by onnxruntime (ONNX), on the same images as the torch encoder; ONNX must agree within
``ONNX_TOLERANCE`` (max absolute difference), and the figure is written into ``encoder.json``.
A format that fails leaves the others written; nothing is half-written (temporary name, then rename).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

FORMAT = "embedding-explorer-encoder"
FORMAT_VERSION = 1
SETTINGS = "encoder.json"
FILES = {"safetensors": "encoder.safetensors", "torchscript": "encoder.torchscript.pt", "onnx": "encoder.onnx"}
FORMATS = tuple(FILES)
ONNX_TOLERANCE = 1e-4
CHECK_IMAGES = 16
REBUILDABLE_KINDS = ("timm", "python")  # kinds whose architecture is code, not a file of their own


class ExportError(Exception):
    """An export that could not write every format asked for; ``result`` holds what was written."""

    def __init__(self, message: str, result: "ExportResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # format -> file written
    checks: dict[str, dict] = field(default_factory=dict)  # format -> {max_abs_diff, images, ...}
    failed: dict[str, str] = field(default_factory=dict)  # format -> why
    settings: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What was written, one line a file, with its check: for the command line and the window."""
        out = []
        for fmt, path in self.files.items():
            check = self.checks.get(fmt, {})
            size = path.stat().st_size / 1e6
            if fmt == "onnx":
                how = (f"onnxruntime against torch on {check['images']} images (batches of "
                       f"{' and '.join(map(str, check['batch_sizes']))}): max abs difference "
                       f"{check['max_abs_diff']:.2e} (limit {check['tolerance']:g})")
            else:
                how = f"loaded back: max abs difference {check['max_abs_diff']:.2e}"
            out.append(f"{path.name:<24} {size:8.2f} MB  {how}")
        out += [f"{FILES[fmt]:<24} not written: {why}" for fmt, why in self.failed.items()]
        return out


def default_formats() -> tuple[list[str], str]:
    """Every format this installation can write, and a note when ONNX is left out for want of onnx."""
    import importlib.util

    if all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime")):
        return list(FORMATS), ""
    return ["safetensors", "torchscript"], ("onnx left out: it needs onnx and onnxruntime (pip install "
                                            "'embedding-explorer[onnx]')")


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    bad = [f for f in names if f not in FILES]
    if bad or not names:
        raise ValueError(f"--format: {','.join(bad) or repr(formats)} is not valid; allowed: one or more of "
                         f"{', '.join(FORMATS)}, separated by commas")
    return list(dict.fromkeys(names))


def portable(name: str) -> bool:
    """Whether ``load_encoder`` can rebuild this encoder from code (safetensors needs that)."""
    from engine.encoders import ENCODERS

    return not ENCODERS.get(name).argument or name.partition(":")[0] in REBUILDABLE_KINDS


def rebuild_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that rebuild an encoder whose weights come next: no download, no weights file."""
    from engine.encoders import ENCODERS

    known = {p.name for p in ENCODERS.get(name).params}
    out = {k: v for k, v in params.items() if k in known}
    if "random_init" in known:
        out["random_init"] = True
    if "weights" in known:
        out["weights"] = ""
    return out


# ---------------------------------------------------------------- export

def export_encoder(encoder, folder: str | Path, formats: str | Sequence[str] = FORMATS,
                   recipe: dict | None = None, about: dict | None = None, images=None,
                   tolerance: float = ONNX_TOLERANCE, input_view: str | None = None) -> ExportResult:
    """Write ``encoder`` (an ``engine.encoders.Encoder``) into ``folder`` in ``formats``.

    ``recipe``: how ``load_encoder`` rebuilds it for safetensors ({"name", "params", "in_channels",
    "image_size", "embedding_dim"}); None when it cannot be rebuilt from code (safetensors is then
    refused, saying why). ``about``: where it came from (a run, its method and dataset), kept in the
    settings. ``images``: float [0, 1] (N, C, H, W) to check the files on (default: random images).
    ``input_view``: the fixed transformation the encoder was trained behind (``Method.input_view``,
    e.g. colorization's "grey"): TorchScript and ONNX hold it, safetensors' rebuild applies it, and
    ``encoder.json`` records it, so every format embeds an image as the run's map did.
    Raises ExportError when a format fails (the others are written) and ValueError for bad settings.
    """
    from engine.encoders.external import OnnxModule

    formats = parse_formats(formats)
    if not (isinstance(tolerance, (int, float)) and tolerance > 0 and math.isfinite(tolerance)):
        raise ValueError(f"--onnx-tolerance: {tolerance!r} is not valid; allowed: a number > 0")
    if any(isinstance(m, OnnxModule) for m in encoder.modules()):
        raise ValueError(f"{getattr(encoder, 'name', 'this encoder')} is an ONNX model already: use its file as "
                         "it is (onnxruntime), there is nothing to export")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    from engine.encoders import InputView
    from engine.encoders import input_view as view_named

    encoder = encoder.cpu().eval()
    view = view_named(input_view)
    model = encoder if view is None else InputView(encoder, view)  # what embeds; safetensors keeps encoder's weights
    channels = int(encoder.in_channels)
    height, width = (int(s) for s in encoder.image_size)
    if images is None:
        images = torch.rand(CHECK_IMAGES, channels, height, width, generator=torch.Generator().manual_seed(0))
        images_from = "random images"
    else:
        images = torch.as_tensor(images, dtype=torch.float32)[:CHECK_IMAGES]
        images_from = (about or {}).get("images_from", "the images given")
    with torch.no_grad():
        reference = model(images).float()
    settings = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "embedding_dim": int(reference.shape[1]),
        "input": {"channels": channels, "height": height, "width": width, "dtype": "float32",
                  "range": [0.0, 1.0], "layout": "NCHW",
                  "preprocessing": "inside the encoder: give it [0, 1] images of this shape; the resizing, "
                                   "channel repetition and normalisation it was trained with happen in it",
                  "view": input_view},
        "output": {"shape": ["batch", int(reference.shape[1])], "dtype": "float32"},
        "encoder": recipe,
        "files": {},
        "checks": {},
        "source": about or {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "engine_version": _engine_version(), "torch_version": torch.__version__,
    }
    result = ExportResult(folder, settings=settings)
    writers = {"safetensors": _write_safetensors, "torchscript": _write_torchscript, "onnx": _write_onnx}
    for fmt in formats:
        path = folder / FILES[fmt]
        tmp = folder / f".{FILES[fmt]}.tmp"
        try:
            check = writers[fmt](encoder if fmt == "safetensors" else model, tmp, images, reference, settings,
                                 tolerance)
        except Exception as error:  # every format is tried; what failed is said, the rest is kept
            result.failed[fmt] = str(error) if isinstance(error, (ValueError, RuntimeError)) else \
                f"{type(error).__name__}: {error}"
            _remove(tmp)
            continue
        check["images_from"] = images_from
        os.replace(tmp, path)
        result.files[fmt], result.checks[fmt] = path, check
    settings["files"] = {fmt: p.name for fmt, p in result.files.items()}
    settings["checks"] = result.checks
    if result.files:
        previous = _read_previous_files(folder)
        from engine.runs import write_json

        write_json(folder / SETTINGS, settings)
        (folder / "README.md").write_text(_readme(settings))
        for name in previous - set(settings["files"].values()):  # an earlier export's files: not this one's
            _remove(folder / name)
    if result.failed:
        written = ", ".join(p.name for p in result.files.values()) or "nothing"
        raise ExportError(f"export to {folder}: {'; '.join(f'{f}: {w}' for f, w in result.failed.items())} "
                          f"(written: {written})", result)
    return result


def _remove(path: Path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def _read_previous_files(folder: Path) -> set[str]:
    try:
        previous = json.loads((folder / SETTINGS).read_text()).get("files", {})
        return {v for v in previous.values() if v in FILES.values()}
    except (OSError, ValueError, AttributeError):
        return set()


def _engine_version() -> str:
    import engine

    return engine.__version__


def _max_abs_diff(a, b) -> float:
    return float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())


def _write_safetensors(encoder, tmp: Path, images, reference, settings, tolerance) -> dict:
    from safetensors.torch import save_model

    recipe = settings["encoder"]
    if recipe is None or not portable(recipe["name"]):
        name = recipe["name"] if recipe else getattr(encoder, "name", "this encoder")
        raise ValueError(f"safetensors holds weights only, and {name} keeps its architecture in a file of its "
                         "own, which the loader could not rebuild elsewhere: export it as torchscript or onnx")
    save_model(encoder, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    rebuilt = _rebuild(settings, tmp)
    with torch.no_grad():
        return {"max_abs_diff": _max_abs_diff(rebuilt(images), reference), "images": len(images)}


def _rebuild(settings: dict, weights: Path):
    """The encoder of ``settings["encoder"]`` with the weights of a safetensors file, in eval mode."""
    from safetensors.torch import load_model

    from engine.encoders import build_encoder

    recipe = settings["encoder"]
    encoder = build_encoder(recipe["name"], int(recipe["in_channels"]), tuple(recipe["image_size"]),
                            int(recipe["embedding_dim"]), **rebuild_params(recipe["name"], recipe.get("params", {})))
    missing, unexpected = load_model(encoder, str(weights), strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights} does not fit {recipe['name']}: missing {', '.join(sorted(missing)[:5]) or 'none'}; "
                         f"unexpected {', '.join(sorted(unexpected)[:5]) or 'none'}. Export the encoder again "
                         "with this version")
    from engine.encoders import InputView, input_view

    view = input_view(settings["input"].get("view"))
    return (encoder if view is None else InputView(encoder, view)).eval()


def _write_torchscript(encoder, tmp: Path, images, reference, settings, tolerance) -> dict:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        # the input's height and width are fixed by the export (encoder.json): the shape checks a trace
        # freezes are the ones it should
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(encoder, images[:2], check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={_settings_key(): json.dumps(_embedded(settings))})
        loaded = torch.jit.load(str(tmp), map_location="cpu")
        out = loaded(images)
    return {"max_abs_diff": _max_abs_diff(out, reference), "images": len(images)}


def _settings_key() -> str:
    from engine.encoders.external import SETTINGS_KEY

    return SETTINGS_KEY


def _embedded(settings: dict) -> dict:
    """The settings a TorchScript or ONNX file carries inside: enough to use it alone."""
    return {k: settings[k] for k in ("format", "format_version", "embedding_dim", "input", "output", "source")}


def _write_onnx(encoder, tmp: Path, images, reference, settings, tolerance) -> dict:
    """torch.onnx's exporter (torch.export based; the TorchScript-based one where that fails, e.g. for
    a TorchScript model inside), a dynamic batch, checked with onnxruntime on batches of N and 1."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install 'embedding-explorer[onnx]'") from None
    exporter, errors = "", []
    for dynamo in (True, False):
        try:
            _onnx_export(encoder, images[:2], tmp, dynamo)
            exporter = "torch.export" if dynamo else "torchscript"
            break
        except Exception as error:
            first = re.sub(r"\x1b\[[0-9;]*m", "", (str(error).strip().splitlines() or [""])[0])[:300]
            errors.append(f"{'torch.export' if dynamo else 'TorchScript'}-based exporter: "
                          f"{type(error).__name__}: {first}")
    if not exporter:
        raise RuntimeError("torch.onnx could not export the encoder (" + "; ".join(errors) + ")")
    model = onnx.load(str(tmp))
    entry = model.metadata_props.add()
    entry.key, entry.value = _settings_key(), json.dumps(_embedded(settings))
    onnx.save(model, str(tmp))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = images.numpy().astype(np.float32)
    full = session.run(None, {name: x})[0]
    single = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(min(4, len(x)))])
    diff = max(_max_abs_diff(full, reference), _max_abs_diff(single, reference[:len(single)]))
    if not diff <= tolerance:
        raise ValueError(f"onnxruntime's output differs from torch's by up to {diff:.2e} on {len(x)} images "
                         f"(limit {tolerance:g}); the ONNX file is not kept. A model with large activations may "
                         "need a looser limit (--onnx-tolerance)")
    return {"max_abs_diff": diff, "images": len(x), "batch_sizes": [len(x), 1], "tolerance": tolerance,
            "exporter": exporter, "opset": int(model.opset_import[0].version)}


def _onnx_export(encoder, example, path: Path, dynamo: bool) -> None:
    import contextlib
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(encoder, (example,), str(path), input_names=["images"], output_names=["embeddings"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True,
                              external_data=False, verbose=False, optimize=True)
        else:  # traced first: this exporter cannot follow a Python module into a TorchScript one inside it
            traced = torch.jit.trace(encoder, example, check_trace=False)
            torch.onnx.export(traced, (example,), str(path), input_names=["images"], output_names=["embeddings"],
                              dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, dynamo=False,
                              opset_version=18)


def _readme(settings: dict) -> str:
    inp = settings["input"]
    shape = f"(N, {inp['channels']}, {inp['height']}, {inp['width']})"
    src = settings.get("source", {})
    origin = ", ".join(f"{k} {src[k]}" for k in ("method", "dataset", "run") if src.get(k)) or "an encoder"
    lines = [f"# Encoder exported by Embedding Explorer ({origin})", "",
             f"Input: float32 images in [0, 1], shape {shape}; output: (N, {settings['embedding_dim']}) embeddings.",
             "Resizing and normalisation happen inside the encoder. Settings and checks: encoder.json "
             f"(format {FORMAT}, version {FORMAT_VERSION}).", ""]
    files = settings["files"]
    if "safetensors" in files:
        lines += ["With embedding-explorer installed (`pip install embedding-explorer`):", "```python",
                  "from engine.export import load_encoder", "encoder = load_encoder('.')",
                  "embeddings = encoder.embed(['image.png'])  # files, uint8 arrays or [0, 1] tensors", "```", ""]
    if "torchscript" in files:
        lines += ["With PyTorch only:", "```python", "import torch",
                  f"encoder = torch.jit.load('{files['torchscript']}')",
                  f"embeddings = encoder(torch.rand{shape.replace('N', '8')})", "```", ""]
    if "onnx" in files:
        lines += ["With onnxruntime only:", "```python", "import numpy as np, onnxruntime as ort",
                  f"session = ort.InferenceSession('{files['onnx']}')",
                  f"embeddings = session.run(None, {{'images': np.random.rand{shape.replace('N', '8')}.astype(np.float32)}})[0]",
                  "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- from a run, or from an encoder's name

def encoder_from_run(run_dir: str | Path):
    """(the encoder of a run with its checkpoint's weights, in eval mode, the run's config).

    Needs neither the dataset nor the window: the config says the channels and image size."""
    from engine.encoders import build_encoder
    from engine.encoders.weights import fit_state_dict
    from engine.restore import read_run_config
    from engine.runs import CHECKPOINT, CONFIG, load_checkpoint

    run, config = read_run_config(run_dir)
    try:
        name, channels = config["encoder"], int(config["channels"])
        image_size = tuple(int(s) for s in config["image_size"])
        embedding_dim = int(config["embedding_dim"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{run.file(CONFIG)} lacks the encoder, channels, image_size or embedding_dim (a run from "
                         "an earlier version?): train it again to export its encoder") from None
    params = dict(config.get("encoder_params") or {})
    has_checkpoint = run.file(CHECKPOINT).exists()
    encoder = build_encoder(name, channels, image_size, embedding_dim,
                            **(rebuild_params(name, params) if has_checkpoint else params))
    if has_checkpoint:
        state = load_checkpoint(run.path)
        weights = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
        fit_state_dict(encoder, weights, str(run.file(CHECKPOINT)), f"the run's encoder ({name})")
    elif any(True for _ in encoder.parameters()) and encoder.trainable:
        raise FileNotFoundError(f"run {run.path.name} has no {CHECKPOINT} yet: a checkpoint is written every "
                                f"{config.get('checkpoint_every', 5)} epochs and at the end")
    return encoder.eval(), config


def export_run(run_dir: str | Path, folder: str | Path | None = None, formats: str | Sequence[str] = FORMATS,
               tolerance: float = ONNX_TOLERANCE, dataset=None) -> ExportResult:
    """Export the encoder of a run (default folder: RUN_DIR/encoder). The files are checked on the run's
    test images when its dataset can be loaded (``dataset``: the one the caller holds), else on random ones."""
    from engine.runs import RunDir

    encoder, config = encoder_from_run(run_dir)
    run_dir = Path(run_dir)
    folder = Path(folder) if folder is not None else run_dir / "encoder"
    recipe = _recipe(config["encoder"], config.get("encoder_params") or {}, encoder, int(config["embedding_dim"]))
    summary = RunDir(run_dir).summary() or {}  # what of it fits its schema (engine/schema.py)
    about = {"run": run_dir.name, "method": config.get("method"), "dataset": config.get("dataset"),
             "encoder": config.get("encoder"), "class_names": config.get("class_names") or [],
             "linear_probe_acc": summary.get("linear_probe_acc"), "knn_acc": summary.get("knn_acc")}
    images = None
    try:
        if dataset is None:
            from engine.restore import load_run_dataset

            dataset = load_run_dataset(config)
        images = torch.from_numpy(dataset.test.images[:CHECK_IMAGES]).float() / 255
        about["images_from"] = f"{len(images)} test images of {config.get('dataset')}"
    except Exception:  # the dataset may be elsewhere (a folder on another machine): random images check too
        images = None
    from engine.methods import METHODS

    method = config.get("method")
    view = METHODS.get(method).input_view if method in METHODS else None  # embed / logged runs: none
    return export_encoder(encoder, folder, formats, recipe, about, images, tolerance, input_view=view)


def _recipe(name: str, params: dict, encoder, embedding_dim: int) -> dict | None:
    """How load_encoder rebuilds ``encoder`` (None when its architecture is a file, not code)."""
    if not portable(name):
        return None
    return {"name": name, "params": rebuild_params(name, params), "in_channels": int(encoder.in_channels),
            "image_size": [int(s) for s in encoder.image_size], "embedding_dim": embedding_dim}


def export_named(name: str, folder: str | Path, formats: str | Sequence[str] = FORMATS,
                 in_channels: int | None = None, image_size: tuple[int, int] | None = None,
                 embedding_dim: int = 128, tolerance: float = ONNX_TOLERANCE, **params: Any) -> ExportResult:
    """Export an encoder as the engine builds it from its name, e.g. ``timm:resnet18`` with its hub
    weights or ``--weights``: its own input size and channels unless given."""
    from engine.encoders import ENCODERS, build_encoder

    kind, _, argument = name.partition(":")
    if kind == "run":
        return export_run(argument, folder, formats, tolerance)
    cls = ENCODERS.get(name)
    if kind == "exported":  # another set of formats of an export: from its weights where it has them
        loaded = load_encoder(argument)
        safetensors = loaded.format == "safetensors"
        return export_encoder(loaded.net if safetensors else loaded, folder, formats,
                              loaded.settings.get("encoder") if safetensors else None,
                              loaded.settings.get("source"), tolerance=tolerance)
    if not cls.argument and (in_channels is None or image_size is None):
        raise ValueError(f"--encoder {name}: give the images it will take: --channels (1 or 3) and --image-size "
                         "(e.g. 28)")
    encoder = build_encoder(name, in_channels, image_size, embedding_dim, **params)
    return export_encoder(encoder, folder, formats, _recipe(name, params, encoder, embedding_dim),
                          {"encoder": name}, tolerance=tolerance)


# ---------------------------------------------------------------- the loader

def read_settings(folder: str | Path) -> dict:
    """``encoder.json`` of an export folder, checked: ValueError naming the file and the fix."""
    from engine.encoders.weights import read_json_text

    path = Path(folder) / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{Path(folder)} is not an exported encoder: it has no {SETTINGS} (export one "
                                "with: embedding-explorer export RUN_DIR)")
    settings = read_json_text(path.read_bytes(), str(path))
    if settings.get("format") != FORMAT:
        raise ValueError(f"{path} is not the settings of an exported encoder (format {settings.get('format')!r}, "
                         f"expected {FORMAT!r})")
    version = settings.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(f"{path} is format version {version!r}; this version of embedding-explorer reads "
                         f"versions 1 to {FORMAT_VERSION}: upgrade it (pip install -U embedding-explorer)")
    for key in ("input", "embedding_dim", "files"):
        if key not in settings:
            raise ValueError(f"{path} lacks {key!r}: the export is damaged; export the encoder again")
    view = settings["input"].get("view") if isinstance(settings["input"], dict) else None
    if view is not None:
        from engine.encoders import input_view

        try:
            input_view(view)
        except ValueError as error:
            raise ValueError(f"{path}: {error} (an export of a newer version?): upgrade embedding-explorer "
                             "(pip install -U embedding-explorer) or export the encoder again") from None
    return settings


def load_encoder(path: str | Path, format: str = "auto", device: str = "cpu") -> "LoadedEncoder":
    """The exported encoder in ``path`` (its folder, or any file in it), ready to embed.

    ``format``: 'safetensors' (rebuilt from code: trainable), 'torchscript', 'onnx' (onnxruntime), or
    'auto' (the first of these the folder holds)."""
    folder = Path(path).expanduser()
    if folder.is_file():
        if format == "auto":
            format = next((f for f, n in FILES.items() if n == folder.name), "auto")
        folder = folder.parent
    settings = read_settings(folder)
    files = {f: folder / n for f, n in settings["files"].items() if f in FILES and (folder / n).is_file()}
    if format == "auto":
        usable = [f for f in FORMATS if f in files and (f != "safetensors" or settings.get("encoder"))]
        if not usable:
            raise FileNotFoundError(f"{folder} has none of its encoder files ({', '.join(settings['files'].values())})")
        format = usable[0]
    if format not in FILES:
        raise ValueError(f"format {format!r} is not valid; allowed: auto, {', '.join(FORMATS)}")
    if format not in files:
        raise FileNotFoundError(f"{folder} has no {format} file (it holds: {', '.join(p.name for p in files.values())})")
    if format == "safetensors":
        net = _rebuild(settings, files["safetensors"])
    elif format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(files["torchscript"]), map_location="cpu")
    else:
        from engine.encoders.external import OnnxModule

        net = OnnxModule(files["onnx"])
    return LoadedEncoder(net, settings, format).to(device).eval()


class LoadedEncoder(nn.Module):
    """An exported encoder: ``encoder(images)`` on [0, 1] float (N, C, H, W) tensors at its input size,
    or ``encoder.embed(anything)`` on image files, uint8 arrays or tensors of any size."""

    def __init__(self, net, settings: dict, format: str):
        super().__init__()
        self.net, self.settings, self.format = net, settings, format
        inp = settings["input"]
        self.channels, self.image_size = int(inp["channels"]), (int(inp["height"]), int(inp["width"]))
        self.in_channels = self.channels  # the names an engine Encoder has, so it exports again
        self.embedding_dim = int(settings["embedding_dim"])

    def forward(self, images):
        return self.net(images)

    def embed(self, images, batch_size: int = 256):
        """(N, embedding_dim) float32 embeddings of image files (paths), uint8 or float arrays
        (N, H, W), (N, H, W, C) numpy or (N, C, H, W) torch, resized and converted to the input."""
        from engine.encoders.external import InputAdapter

        batch = _as_batch(images, self.image_size)
        adapter = InputAdapter(batch.shape[1], self.channels, self.image_size)
        device = next((p.device for p in self.net.parameters()), torch.device("cpu"))
        out = []
        with torch.no_grad():
            for start in range(0, len(batch), batch_size):
                out.append(self.net(adapter(batch[start:start + batch_size]).to(device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embedding_dim)


def _as_batch(images, size: tuple[int, int]):
    """float [0, 1] (N, C, H, W) from paths, numpy arrays (N, H, W[, C]) or torch tensors (N[, C], H, W)."""
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, Path)):
        return torch.from_numpy(np.stack([_read_image(Path(p), size) for p in images])).float() / 255
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:
            arr = arr[:, None]
        elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)[:, :3]
        images = torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images: a {type(images).__name__} is not valid; allowed: image file paths, a numpy "
                         "array (N, H, W) or (N, H, W, C), or a torch tensor (N, C, H, W)")
    x = images if images.dim() == 4 else images[:, None]
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


def _read_image(path: Path, size: tuple[int, int]):
    """An image file as uint8 (3, H, W): centre-cropped to the input's aspect, resized (as folder: does)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            target = size[1] / size[0]
            cw, ch = (min(w, round(h * target)), h) if w / h > target else (w, min(h, round(w / target)))
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch)).resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} could not be read as an image ({type(error).__name__}: {error})") from None
