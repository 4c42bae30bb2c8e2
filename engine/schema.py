"""The run directory's files, declared: one schema per file, one typed loader per file.

    config.json      TrainConfig's fields (engine/config.py) and RunFacts (below)
    metrics.jsonl    one record per line, each an event of engine/events.py (its ``record_fields``)
    snapshots/*.npz  SNAPSHOT_MEMBERS (below)
    summary.json     SUMMARY_FIELDS (below), and the final evaluation's other figures
    checkpoint.pt    CHECKPOINT_FIELDS (below), read with ``torch.load(weights_only=True)``
    embeddings.json  EmbeddingsManifest (below): a run of ``embed`` holds a whole collection, one row
                     per image, in COLLECTION_ARRAYS (.npy, memory-mapped), items.csv and skipped.csv

A run directory may come from elsewhere (sent by someone, written by an older or newer version, by
another program through the same schema, damaged by a full disk), so every file is input. The loaders
here never raise for what a file holds: a value that does not fit is left out with a note that names
the file (and the line, or the field), and the caller shows what is readable. Where something must
be complete (resuming a run, rebuilding its model) ``strict=True`` turns the notes into one
``ValueError``. The writers (engine/runs.py) check what they write against the same schema, so what
this program writes always reads back, and a program that writes run directories has one definition
to follow.
"""
from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Union

import numpy as np

from engine import events as ev

Spec = dict[str, tuple[Any, bool]]  # field -> (type, required)


# --- values against declared types ---------------------------------------------------------------

def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as JSON gives it) fits the type ``hint``: int, float, str, bool, None, Any,
    unions, list[X], tuple[X, ...] (a JSON list), dict[str, X]. A bool is not a number; an int is a
    float, and so is null (NaN or infinity, written as null)."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # null too: JSON has no NaN or infinity, the writer puts null in their place
        return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        return not args or all(conforms(v, args[0]) for v in value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return all(isinstance(k, str) for k in value) and (not args or all(conforms(v, args[1]) for v in value.values()))
    return isinstance(value, hint)


def describe(hint: Any, plural: bool = False) -> str:
    """A type in words, for the notes: "a whole number", "text or null", "a list of whole numbers"."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        words = " or ".join(describe(a, plural) for a in args)
        return words + (" or null" if len(args) < len(typing.get_args(hint)) else "")
    if hint in (list, tuple) or origin in (list, tuple):
        args = typing.get_args(hint)
        return "lists" if plural else (f"a list of {describe(args[0], True)}" if args and args[0] is not Any
                                       else "a list")
    if hint is dict or origin is dict:
        return "objects" if plural else "an object"
    words = {int: ("a whole number", "whole numbers"), float: ("a number", "numbers"), str: ("text", "texts"),
             bool: ("true or false", "true or false"), Any: ("a value", "values")}.get(hint)
    return words[plural] if words else getattr(hint, "__name__", str(hint))


def spec_of(cls, required: tuple[str, ...] = ()) -> Spec:
    """The fields of a dataclass with their types; those without a default (and ``required``) must be there."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], (f.default is MISSING and f.default_factory is MISSING) or f.name in required)
            for f in fields(cls)}


def check_object(obj: Any, spec: Spec, where: str, keep_others: Any = None) -> tuple[dict | None, list[str]]:
    """(the fields of ``obj`` that fit ``spec``, notes on the rest). ``None`` when ``obj`` is not a JSON
    object or lacks a required field. Fields the spec does not name are dropped (a newer version's),
    unless ``keep_others`` gives the type they must have."""
    if not isinstance(obj, dict):
        return None, [f"{where}: {_kind_of(obj)}, not a JSON object: left out"]
    clean, notes = {}, []
    for name, value in obj.items():
        if name in spec:
            hint, _ = spec[name]
            if conforms(value, hint):
                clean[name] = value
            else:
                notes.append(f"{where}: '{name}' is {_shown(value)}, not {describe(hint)}: left out")
        elif keep_others is not None and isinstance(name, str):
            if conforms(value, keep_others):
                clean[name] = value
            else:
                notes.append(f"{where}: '{name}' is {_shown(value)}, not {describe(keep_others)}: left out")
    missing = [n for n, (_, required) in spec.items() if required and n not in clean]
    if missing:
        return None, notes + [f"{where}: {', '.join(repr(m) for m in missing)} missing: left out"]
    return clean, notes


def _kind_of(value: Any) -> str:
    return {list: "a list", str: "text", bool: "true/false", type(None): "null", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Loaded:
    """What a loader could read (``value``: None when nothing was readable) and its notes."""

    value: Any
    notes: list[str] = field(default_factory=list)

    def strict(self) -> Any:
        """The value, or ValueError listing every note."""
        if self.value is None or self.notes:
            raise ValueError("; ".join(self.notes) or "unreadable")
        return self.value


def _read_json(path: Path) -> Loaded:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return Loaded(None, [f"{path}: missing"])
    except (OSError, UnicodeDecodeError) as error:
        return Loaded(None, [f"{path}: cannot be read ({type(error).__name__}: {error})"])
    try:
        return Loaded(json.loads(text))
    except json.JSONDecodeError as error:
        return Loaded(None, [f"{path}: not JSON ({error})"])


# --- config.json -----------------------------------------------------------------------------------

@dataclass
class RunFacts:
    """What ``config.json`` records beside the settings (TrainConfig): the run's data and model as built."""

    device_resolved: str = ""  # the device it trained on, e.g. "cuda:0"
    train_images: int | None = None  # images in the train split as sliced
    test_images: int | None = None  # images in the test split: snapshot indices are rows of it
    class_names: list[str] = field(default_factory=list)  # label i is class_names[i]
    image_size: list[int] | None = None  # [height, width]
    channels: int | None = None
    eval_rows: list[int] = field(default_factory=list)  # the fixed evaluation subset (rows of the test split)
    embedding_dim_actual: int | None = None  # D of the embedding (a fixed encoder may differ from embedding_dim)


def config_spec() -> Spec:
    from engine.config import TrainConfig

    return spec_of(TrainConfig) | spec_of(RunFacts)


# what resuming a run or rebuilding its model cannot do without
CONFIG_REQUIRED = ("method", "dataset", "encoder", "embedding_dim")


def load_config(path: str | Path, strict: bool = False) -> Loaded:
    """``config.json`` as a dict of the fields that fit; ``strict``: every field must fit and the
    CONFIG_REQUIRED ones be there (else ValueError naming the file and the fields)."""
    path = Path(path)
    read = _read_json(path)
    if read.value is None:
        loaded = read
    else:
        clean, notes = check_object(read.value, config_spec(), path.name)
        if clean is not None:
            size = clean.get("image_size")
            if size is not None and (len(size) != 2 or min(size) < 1):
                notes.append(f"{path.name}: 'image_size' is {_shown(size)}, not [height, width]: left out")
                del clean["image_size"]
            if strict:
                missing = [k for k in CONFIG_REQUIRED if clean.get(k) is None]
                if missing:
                    notes.append(f"{path.name}: {', '.join(repr(m) for m in missing)} missing")
        loaded = Loaded(clean if clean is not None else {}, notes)
    if strict:
        try:
            loaded.strict()
        except ValueError as error:
            raise ValueError(f"{path} does not describe a run: {error}") from None
    return loaded


def check_config(config: dict, where: str = "config.json") -> None:
    """For the writer: ValueError unless ``config`` (as JSON gives it back) fits the schema."""
    _check_written(config, config_spec(), where)


def _check_written(obj: dict, spec: Spec, where: str, keep_others: Any = None) -> None:
    from engine.runs import to_json

    as_read = json.loads(to_json(obj))
    clean, notes = check_object(as_read, spec, where, keep_others)
    dropped = set(as_read) - set(clean or {})
    if notes or clean is None or dropped:
        raise ValueError("written record does not fit the run-directory schema (engine/schema.py): "
                         + "; ".join(notes + [f"{where}: '{d}' is not declared" for d in sorted(dropped)]))


# --- metrics.jsonl ----------------------------------------------------------------------------------

RECORD_KINDS: dict[str, type[ev.Event]] = {cls.kind: cls for cls in ev.EVENTS}


def record_spec(kind: str) -> Spec | None:
    cls = RECORD_KINDS.get(kind)
    return None if cls is None else cls.record_fields()


def check_record(record: Any, where: str) -> tuple[dict | None, list[str]]:
    """One line of ``metrics.jsonl``, as JSON gave it: (the record, or None to skip it; notes)."""
    if not isinstance(record, dict):
        return None, [f"{where}: {_kind_of(record)}, not a JSON object: skipped"]
    kind = record.get("kind")
    spec = record_spec(kind) if isinstance(kind, str) else None
    if spec is None:
        return None, [f"{where}: unknown kind {_shown(kind)} (allowed: {', '.join(RECORD_KINDS)}): skipped"]
    label = f"{where} ({kind})"
    clean, notes = check_object({k: v for k, v in record.items() if k != "kind"}, spec, label)
    if clean is None or notes:  # a record is used whole (a step's losses, an evaluation's figures)
        problems = "; ".join(n[len(label) + 2:].removesuffix(": left out") for n in notes)
        return None, [f"{label}: {problems}: skipped"]
    return {"kind": kind} | clean, []


def check_written_record(record: dict) -> None:
    kind = record.get("kind")
    spec = record_spec(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ValueError(f"written record has an undeclared kind {kind!r} (engine/events.py EVENTS)")
    _check_written({k: v for k, v in record.items() if k != "kind"}, spec, f"metrics.jsonl ({kind})")


def parse_metrics_lines(data: bytes, first_line: int, name: str = "metrics.jsonl") -> tuple[list[dict], list[str]]:
    """Complete lines of ``metrics.jsonl`` (``first_line``: the number of the first, from 1)."""
    records, notes = [], []
    for number, line in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"),
                                  start=first_line):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            notes.append(f"{where}: not JSON (a line cut short by a crash?): skipped")
            continue
        record, more = check_record(value, where)
        notes += more
        if record is not None:
            records.append(record)
    return records, notes


# --- snapshots/step_N.npz ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One array of a snapshot: its kind of number and its shape (n: points, D: embedding dimension)."""

    dtype: str  # "integer" or "float"
    shape: tuple[str | int, ...]
    required: bool = False
    help: str = ""


SNAPSHOT_MEMBERS: dict[str, Member] = {
    "step": Member("integer", (), True, "the training step of the evaluation"),
    "embeddings": Member("float", ("n", "D"), True, "the fixed evaluation subset's embeddings (finite)"),
    "indices": Member("integer", ("n",), True, "their rows in the test split (0 <= i < test_images)"),
    "labels": Member("integer", ("n",), True, "their labels (-1: unlabelled; else < len(class_names))"),
    "coords": Member("float", ("n", 2), False, "the 2D map the job laid out (finite)"),
    "clusters": Member("integer", ("n",), False, "cluster id of each point (k-means)"),
    "kmeans_clusters": Member("integer", ("n",), False, "k-means cluster ids"),
    "hdbscan_clusters": Member("integer", ("n",), False, "HDBSCAN cluster ids (-1: noise)"),
    "neighbour_overlap": Member("float", ("n",), False, "share of each point's neighbours the map keeps"),
    "neighbour_drift": Member("float", ("n",), False, "share of its neighbours that changed since the last snapshot"),
}


def _fits(arr: np.ndarray, member: Member, sizes: dict[str, int]) -> str | None:
    """Why ``arr`` does not fit ``member`` (None when it does); fills ``sizes`` with n and D."""
    if member.dtype == "integer" and not np.issubdtype(arr.dtype, np.integer):
        return f"{arr.dtype} values, not whole numbers"
    if member.dtype == "float" and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return f"{arr.dtype} values, not numbers"
    if arr.ndim != len(member.shape):
        return f"shape {arr.shape}, not {len(member.shape)}-dimensional {tuple(member.shape)}"
    for got, want in zip(arr.shape, member.shape):
        if isinstance(want, int) and got != want or isinstance(want, str) and sizes.setdefault(want, got) != got:
            return f"shape {arr.shape}, not {tuple(sizes.get(w, w) if isinstance(w, str) else w for w in member.shape)}"
    if member.dtype == "float" and not np.isfinite(arr).all():
        return "values that are NaN or infinite"
    return None


def check_snapshot(arrays: dict[str, Any], where: str, config: dict | None = None) -> Loaded:
    """(the members that fit, notes). ``value`` is None when a required member does not fit."""
    config = config or {}
    sizes: dict[str, int] = {}
    clean: dict[str, np.ndarray] = {}
    notes: list[str] = []
    order = sorted(arrays, key=lambda k: (not SNAPSHOT_MEMBERS.get(k, Member("", ())).required, k))
    for name in order:  # the required members first: they set n and D
        member = SNAPSHOT_MEMBERS.get(name)
        if member is None:
            continue  # a member this version does not know (a newer version's): not used
        arr = arrays[name]
        if isinstance(arr, _Pickled):
            why = "Python objects (loading them would run pickled code, which is never done)"
        else:
            why = _fits(arr, member, sizes) if isinstance(arr, np.ndarray) else f"a {type(arr).__name__}, not an array"
        if why is None and name == "indices" and len(arr):
            limit = config.get("test_images")
            if arr.min() < 0 or (limit is not None and arr.max() >= limit):
                why = f"rows outside the test split (0 to {limit - 1 if limit is not None else '...'})"
        if why is None and name == "labels" and len(arr):
            names = config.get("class_names") or []
            if arr.min() < -1 or (names and arr.max() >= len(names)):
                why = f"labels outside -1 to {len(names) - 1 if names else '...'}"
        if why is not None:
            if member.required:
                return Loaded(None, notes + [f"{where}: '{name}' has {why}: snapshot skipped"])
            notes.append(f"{where}: '{name}' has {why}: left out")
            continue
        clean[name] = arr
    missing = [n for n, m in SNAPSHOT_MEMBERS.items() if m.required and n not in clean]
    if missing:
        return Loaded(None, notes + [f"{where}: {', '.join(repr(m) for m in missing)} missing: snapshot skipped"])
    clean["step"] = np.int64(clean["step"])
    return Loaded(clean, notes)


def load_snapshot(path: str | Path, config: dict | None = None) -> Loaded:
    """A snapshot's arrays that fit SNAPSHOT_MEMBERS (``config``: the run's, to check rows and labels
    against its test split and classes). Pickled members are never loaded (``allow_pickle=False``)."""
    path = Path(path)
    where = f"snapshots/{path.name}"
    arrays: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                return Loaded(None, [f"{where}: a single array, not an .npz of named arrays: skipped"])
            for name in data.files:
                try:
                    arrays[name] = data[name]
                except ValueError:  # an object array: it would need pickle, which is never run
                    arrays[name] = _Pickled()
    except FileNotFoundError:
        return Loaded(None, [f"{where}: missing"])
    except Exception as error:  # a zip cut short, not a zip at all, an unreadable member
        return Loaded(None, [f"{where}: cannot be read ({type(error).__name__}: {error}): skipped"])
    return check_snapshot(arrays, where, config)


class _Pickled:
    """Stands for a member that holds Python objects: never unpickled, always refused."""


def check_written_snapshot(arrays: dict[str, np.ndarray]) -> None:
    loaded = check_snapshot({k: np.asarray(v) for k, v in arrays.items()}, "snapshot")
    undeclared = sorted(set(arrays) - set(SNAPSHOT_MEMBERS))
    if loaded.value is None or loaded.notes or undeclared:
        raise ValueError("written snapshot does not fit the run-directory schema (engine/schema.py): "
                         + "; ".join(loaded.notes + [f"'{u}' is not declared" for u in undeclared]))


# --- summary.json ------------------------------------------------------------------------------------

@dataclass
class Summary:
    """``summary.json``: the run's final figures. Besides these fields it holds the final evaluation's
    other figures (numbers, text, true/false or null: precision_at_1, map_at_r, effective_rank, ...)."""

    method: str | None = None
    dataset: str | None = None
    encoder: str | None = None
    device: str | None = None
    epochs: float | None = None  # epochs trained
    epochs_planned: int | None = None
    steps: int | None = None
    stopped: bool | None = None  # stopped before its end (Stop, Ctrl-C)
    train_seconds: float | None = None
    images_per_second: float | None = None
    linear_probe_acc: float | None = None
    knn_acc: float | None = None
    baseline_linear_probe_acc: float | None = None  # the same encoder at random initialisation
    baseline_knn_acc: float | None = None
    pixels_linear_probe_acc: float | None = None  # the raw pixels
    references_note: str | None = None  # why the three above are missing (a time limit they did not fit)
    job_seconds: float | None = None  # the whole job, set-up and evaluations included
    final_evaluation_seconds: float | None = None
    time_limit_minutes: float | None = None


SUMMARY_OTHERS = int | float | str | bool | None


def load_summary(path: str | Path) -> Loaded:
    path = Path(path)
    read = _read_json(path)
    if read.value is None:
        return read
    clean, notes = check_object(read.value, spec_of(Summary), path.name, keep_others=SUMMARY_OTHERS)
    return Loaded(clean, notes)


def check_summary(summary: dict) -> None:
    _check_written(summary, spec_of(Summary), "summary.json", keep_others=SUMMARY_OTHERS)


# --- checkpoint.pt -----------------------------------------------------------------------------------

CHECKPOINT_FIELDS = {
    "model": "the method's state dict: encoder (keys 'encoder.*') and training-only heads",
    "optimizer": "the optimiser's state dict, or null for a method with nothing to train",
    "step": "the training step it was saved at",
    "epoch": "the same in epochs",
    "method": "the method's name",
    "encoder": "the encoder's name",
}


def check_checkpoint(state: Any, where: str) -> None:
    """ValueError naming the checkpoint and what it lacks, unless ``state`` holds what every checkpoint
    this program writes holds (CHECKPOINT_FIELDS; the training job's _checkpoint)."""
    import torch

    model = state.get("model") if isinstance(state, dict) else None
    step = state.get("step") if isinstance(state, dict) else None
    problem = (f"it is not a dictionary (it holds a {type(state).__name__})" if not isinstance(state, dict)
               else "no 'model' weights" if not isinstance(model, dict)
               or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in model.items())
               else "no 'step' count" if type(step) is not int or step < 0
               else "its 'optimizer' state is not a dictionary"
               if not isinstance(state.get("optimizer"), (dict, type(None))) else None)
    if problem:
        raise ValueError(f"{where} is incomplete or not an Embedding Explorer checkpoint ({problem}): "
                         "it cannot be used; start a new run, or use a copy of the run made before the damage")


# --- a whole collection's embeddings: embeddings.json and its arrays -------------------------------
#
# A run made by ``embedding-explorer embed`` (every image of a folder through an encoder, or embeddings
# made elsewhere, opened with ``embed --from``) holds one row per image instead of snapshots of an
# evaluation subset. The arrays are plain ``.npy`` files, read memory-mapped: a 100k-image run opens
# without its embeddings or thumbnails being read into memory, only the pages the window touches.

EMBEDDINGS_FORMAT = "embedding-explorer-embeddings"
EMBEDDINGS_VERSION = 1
MANIFEST, EMBEDDINGS_NPY, LABELS_NPY, THUMBNAILS_NPY, COORDS_NPY, ITEMS_CSV, SKIPPED_CSV = (
    "embeddings.json", "embeddings.npy", "labels.npy", "thumbnails.npy", "coords.npy", "items.csv", "skipped.csv")


@dataclass
class EmbeddingsManifest:
    """``embeddings.json``: what the collection's arrays hold. Written last: a run without it is
    still being embedded (or its job died before the end)."""

    format: str  # EMBEDDINGS_FORMAT
    format_version: int  # EMBEDDINGS_VERSION; a reader refuses a newer one
    n: int  # rows: images embedded
    dim: int  # D
    class_names: list[str] = field(default_factory=list)  # label i is class_names[i]
    source: str = ""  # what was embedded or opened: folder:PATH, npy:FILE, parquet:FILE, projector:FILE
    encoder: str | None = None  # the encoder that embedded the images (None: embeddings made elsewhere)
    input_size: list[int] | None = None  # [height, width] the images were decoded at for the encoder
    channels: int | None = None  # channels the encoder was given (1 grey, 3 colour)
    thumbnail_size: list[int] | None = None  # [height, width] of thumbnails.npy
    layout: str | None = None  # the projection coords.npy holds (umap, pca), None without coords.npy
    layout_seconds: float | None = None
    embed_seconds: float | None = None  # decoding, the encoder, thumbnails and writing
    images_per_second: float | None = None
    skipped: int = 0  # files that could not be read (listed in skipped.csv)
    complete: bool = True  # False: stopped before every image was embedded
    created: str = ""


@dataclass(frozen=True)
class CollectionArray:
    """One ``.npy`` of a collection: its kind of number, shape (n rows first), whether required."""

    dtype: str  # "float", "integer" or "uint8"
    shape: tuple[str | int, ...]
    required: bool
    help: str


COLLECTION_ARRAYS: dict[str, CollectionArray] = {
    EMBEDDINGS_NPY: CollectionArray("float", ("n", "D"), True, "float32 embeddings, one row per image (finite)"),
    LABELS_NPY: CollectionArray("integer", ("n",), False, "labels: -1 unlabelled, else < len(class_names)"),
    THUMBNAILS_NPY: CollectionArray("uint8", ("n", "C", "h", "w"), False,
                                    "thumbnails, C = 1 (grey) or 3 (RGB), as the images were seen"),
    COORDS_NPY: CollectionArray("float", ("n", 2), False, "the 2D map computed when the run was made"),
}
# items.csv: a header line, then one line per row: ``path`` (the image's file, relative to the folder
# embedded or as the table gave it; may be empty) and any metadata columns of a table opened with it.
# skipped.csv: ``path,reason``, one line per file that could not be read.


@dataclass
class Collection:
    """A collection as read: arrays memory-mapped (copy-on-write: writable in memory, the file never
    changes), ``rows`` the rows usable (all of them unless some were cut short or not finite)."""

    path: Path
    manifest: dict
    embeddings: np.ndarray  # (m, D) float32, m = len(rows)
    labels: np.ndarray  # (m,) int64
    rows: np.ndarray  # (m,) rows of the collection's files
    thumbnails: np.ndarray | None = None  # (m, C, h, w) uint8
    coords: np.ndarray | None = None  # (m, 2) float32
    items: list[dict[str, str]] | None = None  # items.csv's rows
    class_names: list[str] = field(default_factory=list)


def open_npy(path: Path, where: str) -> tuple[np.ndarray | None, list[str]]:
    """A ``.npy`` memory-mapped (copy-on-write), its complete rows only when the file is cut short;
    (None, notes) when it is missing, not a ``.npy``, holds Python objects or is Fortran-ordered."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None, [f"{where}: missing"]
    except Exception as error:  # not a .npy at all, a header cut short
        return None, [f"{where}: not a NumPy .npy file ({type(error).__name__}: {error}): left out"]
    if dtype.hasobject:
        return None, [f"{where}: holds Python objects (loading them would run pickled code, which is never done): "
                      "left out"]
    if fortran and len(shape) > 1:
        return None, [f"{where}: Fortran-ordered; save it in C order (numpy's default): left out"]
    if not shape:
        return None, [f"{where}: a single number, not an array of rows: left out"]
    row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    notes = []
    rows = shape[0]
    if row_bytes and (size - offset) < rows * row_bytes:
        rows = max(0, (size - offset) // row_bytes)
        notes.append(f"{where}: cut short: {rows} of its {shape[0]} rows are complete; the rest are left out")
    if rows == 0 or row_bytes == 0:
        return np.zeros((rows, *shape[1:]), dtype=dtype), notes
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=(rows, *shape[1:])), notes


def _array_fits(arr: np.ndarray, spec: CollectionArray, n: int, dim: int | None) -> str | None:
    if spec.dtype == "float" and not np.issubdtype(arr.dtype, np.floating):
        return f"{arr.dtype} values, not numbers"
    if spec.dtype == "integer" and not np.issubdtype(arr.dtype, np.integer):
        return f"{arr.dtype} values, not whole numbers"
    if spec.dtype == "uint8" and arr.dtype != np.uint8:
        return f"{arr.dtype} values, not uint8 pixels"
    if arr.ndim != len(spec.shape):
        return f"shape {arr.shape}, not {len(spec.shape)}-dimensional {spec.shape}"
    if arr.shape[0] < n:
        return f"{arr.shape[0]} rows, not {n}"
    if len(spec.shape) > 1 and isinstance(spec.shape[1], int) and arr.shape[1] != spec.shape[1]:
        return f"shape {arr.shape}, not (n, {spec.shape[1]})"
    if spec.shape == ("n", "D") and dim is not None and arr.shape[1] != dim:
        return f"{arr.shape[1]} dimensions, not embeddings.json's {dim}"
    if spec.shape == ("n", "C", "h", "w") and arr.shape[1] not in (1, 3):
        return f"{arr.shape[1]} channels, not 1 (grey) or 3 (RGB)"
    return None


def _finite_rows(arr: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Whether each row is finite, read in chunks (a memory-mapped array is never read whole)."""
    ok = np.ones(len(arr), dtype=bool)
    for start in range(0, len(arr), chunk):
        ok[start:start + chunk] = np.isfinite(arr[start:start + chunk]).all(axis=tuple(range(1, arr.ndim)))
    return ok


def is_collection(run_dir: str | Path) -> bool:
    """Whether the run directory holds a collection's embeddings (``embed``) rather than snapshots."""
    return (Path(run_dir) / MANIFEST).exists() or (Path(run_dir) / EMBEDDINGS_NPY).exists()


def load_collection(run_dir: str | Path) -> Loaded:
    """A collection's files as a ``Collection`` (arrays memory-mapped), or None with notes when its
    embeddings cannot be used. What does not fit is left out with a note naming the file: a cut-short
    embeddings file gives its complete rows; rows that are not finite are left out; labels, thumbnails,
    coordinates or items that do not fit are dropped (the points then show unlabelled, without images,
    or the map is computed anew)."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    read = _read_json(run_dir / MANIFEST)
    if read.value is None:
        return Loaded(None, [n + (" (the run is still being embedded, or its job ended before writing it)"
                                  if "missing" in n else "") for n in read.notes])
    manifest, more = check_object(read.value, spec_of(EmbeddingsManifest), MANIFEST)
    notes += more
    if manifest is None:
        return Loaded(None, notes)
    if manifest["format"] != EMBEDDINGS_FORMAT:
        return Loaded(None, notes + [f"{MANIFEST}: format {_shown(manifest['format'])}, not {EMBEDDINGS_FORMAT!r}"])
    if manifest["format_version"] > EMBEDDINGS_VERSION:
        return Loaded(None, notes + [f"{MANIFEST}: format version {manifest['format_version']} is newer than this "
                                     f"program reads ({EMBEDDINGS_VERSION}): update embedding-explorer"])
    n, dim = manifest["n"], manifest["dim"]
    names = [str(c) for c in manifest.get("class_names") or []]
    emb, more = open_npy(run_dir / EMBEDDINGS_NPY, EMBEDDINGS_NPY)
    notes += more
    if emb is None:
        return Loaded(None, notes)
    why = _array_fits(emb, COLLECTION_ARRAYS[EMBEDDINGS_NPY], 0, dim)
    if why:
        return Loaded(None, notes + [f"{EMBEDDINGS_NPY}: {why}: the run cannot be shown"])
    if len(emb) > n:
        notes.append(f"{EMBEDDINGS_NPY}: {len(emb)} rows, more than embeddings.json's {n}: the first {n} are used")
        emb = emb[:n]
    m = len(emb)
    if m == 0:
        return Loaded(None, notes + [f"{EMBEDDINGS_NPY}: no complete row: the run cannot be shown"])
    if emb.dtype != np.float32:
        emb = np.asarray(emb, dtype=np.float32)
    finite = _finite_rows(emb)
    rows = np.arange(m)
    if not finite.all():
        rows = np.flatnonzero(finite)
        notes.append(f"{EMBEDDINGS_NPY}: {m - len(rows)} row(s) hold NaN or infinite values (first: row "
                     f"{int(np.flatnonzero(~finite)[0])}): left out")
        if not len(rows):
            return Loaded(None, notes + [f"{EMBEDDINGS_NPY}: no finite row: the run cannot be shown"])
        emb = np.ascontiguousarray(emb[rows])

    def optional(name: str) -> np.ndarray | None:
        if not (run_dir / name).exists():
            return None
        arr, more = open_npy(run_dir / name, name)
        notes.extend(more)
        if arr is None:
            return None
        why = _array_fits(arr, COLLECTION_ARRAYS[name], m, dim)
        if why:
            notes.append(f"{name}: {why}: left out")
            return None
        arr = arr[:m]
        return arr if len(rows) == m else arr[rows]

    labels = optional(LABELS_NPY)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) and (labels.min() < -1 or labels.max() >= len(names)):
            notes.append(f"{LABELS_NPY}: labels outside -1 to {len(names) - 1} (embeddings.json names "
                         f"{len(names)} classes): left out, every point unlabelled")
            labels = None
    if labels is None:
        labels = np.full(len(rows), -1, dtype=np.int64)
    thumbnails = optional(THUMBNAILS_NPY)
    coords = optional(COORDS_NPY)
    if coords is not None:
        coords = np.asarray(coords, dtype=np.float32)
        if not np.isfinite(coords).all():
            notes.append(f"{COORDS_NPY}: NaN or infinite values: left out (the map is computed anew)")
            coords = None
    items = _read_items(run_dir / ITEMS_CSV, m, notes)
    if items is not None and len(rows) != m:
        items = [items[int(r)] for r in rows]
    emb.setflags(write=False)  # as a snapshot's: readers may keep what they derive from it (anchor_categories)
    return Loaded(Collection(run_dir, manifest, emb, labels, rows, thumbnails, coords, items, names), notes)


def _read_items(path: Path, n: int, notes: list[str]) -> list[dict[str, str]] | None:
    import csv

    if not path.exists():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            items = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        notes.append(f"{ITEMS_CSV}: cannot be read ({type(error).__name__}: {error}): left out")
        return None
    if len(items) < n:
        notes.append(f"{ITEMS_CSV}: {len(items)} rows, not {n}: left out")
        return None
    return items[:n]


def check_written_manifest(manifest: dict) -> None:
    _check_written(manifest, spec_of(EmbeddingsManifest), MANIFEST)
