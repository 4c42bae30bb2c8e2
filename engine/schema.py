"""The run directory's files, declared: one schema per file, one typed loader per file.

    config.json      TrainConfig's fields (engine/config.py) and RunFacts (below)
    metrics.jsonl    one record per line, each an event of engine/events.py (its ``record_fields``)
    snapshots/*.npz  SNAPSHOT_MEMBERS (below)
    summary.json     SUMMARY_FIELDS (below), and the final evaluation's other figures
    checkpoint.pt    CHECKPOINT_FIELDS (below), read with ``torch.load(weights_only=True)``

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
