"""The run directory: one folder per run, readable without the program.

    config.json      every resolved setting
    metrics.jsonl    one JSON object per event, with a "kind" field
    snapshots/       step_<n>.npz per evaluation: embeddings, indices, labels (and 2D coords)
    checkpoint.pt    the last good state (always loaded with weights_only=True)
    summary.json     the final figures

Whole files are written to a temporary name and renamed, so a crash never leaves a half-written file.
``metrics.jsonl`` is append-only: each line goes out in one ``write`` call of a complete line, and
readers skip a torn last line, so an interrupted append loses at most that one line.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

CONFIG, METRICS, SUMMARY, CHECKPOINT, SNAPSHOTS = (
    "config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "snapshots")


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and readers must not choke."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(obj: Any, **kw) -> str:
    return json.dumps(_clean(obj), default=_json_default, **kw)


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(to_json(obj, indent=2, sort_keys=False)), binary=False)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class RunDir:
    """Writes and reads one run's folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | Path, name: str) -> "RunDir":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path, n = root / name, 1
        while path.exists():
            n += 1
            path = root / f"{name}-{n}"
        path.mkdir()
        (path / SNAPSHOTS).mkdir()
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # writing -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json(self.file(CONFIG), config)

    def write_summary(self, summary: dict) -> None:
        write_json(self.file(SUMMARY), summary)

    def append(self, record: dict) -> None:
        line = (to_json(record) + "\n").encode()
        fd = os.open(self.file(METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def save_snapshot(self, step: int, **arrays: np.ndarray) -> Path:
        path = self.path / SNAPSHOTS / f"step_{step:08d}.npz"
        atomic_write(path, lambda f: np.savez(f, step=np.int64(step), **arrays))
        return path

    def save_checkpoint(self, state: dict) -> Path:
        import torch

        atomic_write(self.file(CHECKPOINT), lambda f: torch.save(state, f))
        return self.file(CHECKPOINT)

    # reading -----------------------------------------------------------------------------------
    def config(self) -> dict:
        return read_json(self.file(CONFIG))

    def summary(self) -> dict | None:
        return read_json(self.file(SUMMARY)) if self.file(SUMMARY).exists() else None

    def records(self, kind: str | None = None) -> list[dict]:
        return [r for r in read_records(self.file(METRICS)) if kind is None or r.get("kind") == kind]

    def snapshot_paths(self) -> list[Path]:
        return sorted((self.path / SNAPSHOTS).glob("step_*.npz"))

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        return load_checkpoint(self.file(CHECKPOINT), map_location)


def load_snapshot(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Load a checkpoint safely (weights_only), or raise ValueError naming the file and the fix."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run directory, or its {CHECKPOINT}")
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}: the run never saved one (it stopped before "
                                    "its first checkpoint); start a new run instead")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}): "
                         "it cannot be loaded; start a new run, or resume from a copy of the run "
                         "made before the damage") from error
    # what every checkpoint this program writes holds (the training job's _checkpoint)
    problem = ("it is not a dictionary" if not isinstance(state, dict)
               else "no 'model' weights" if not isinstance(state.get("model"), dict)
               or not all(isinstance(v, torch.Tensor) for v in state["model"].values())
               else "no 'step' count" if type(state.get("step")) is not int or state["step"] < 0
               else "its 'optimizer' state is not a dictionary"
               if not isinstance(state.get("optimizer"), (dict, type(None))) else None)
    if problem:
        raise ValueError(f"checkpoint {path} is incomplete or not an Embedding Explorer checkpoint ({problem}): "
                         "it cannot be used; start a new run, or use a copy of the run made before the damage")
    return state


def read_records(path: Path) -> Iterator[dict]:
    if not Path(path).exists():
        return iter(())
    return iter(MetricsFollower(path).poll())


class MetricsFollower:
    """Reads the lines appended to a ``metrics.jsonl`` since the last call (another process may still
    be writing it: a run on a remote GPU box into a synced folder). A line is returned only once it
    is complete (ends with a newline)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for line in data[:end].splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line from a crash in the middle of a write: skip it
        return records
