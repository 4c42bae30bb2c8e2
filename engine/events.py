"""The small, frozen events a training job yields.

Whoever listens (the command line, the window, a test) gets the same objects. Each event has a
``kind`` and ``to_record()``, the JSON object written as one line of ``metrics.jsonl``; its
``record_fields()`` declare that line's fields and types, the schema engine/schema.py reads the file
with (``EVENTS`` lists every kind). Arrays inside events are read-only copies: a listener on another
thread can keep them safely.
"""
from __future__ import annotations

import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np


def _frozen_array(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_record(self) -> dict[str, Any]:
        record = {"kind": self.kind}
        record.update(asdict(self))
        return record

    @classmethod
    def record_fields(cls) -> dict[str, tuple[Any, bool]]:
        """The fields of this kind's line in ``metrics.jsonl``: name -> (type, required)."""
        hints = typing.get_type_hints(cls)
        return {f.name: (hints[f.name], f.default is MISSING and f.default_factory is MISSING) for f in fields(cls)}


@dataclass(frozen=True)
class Started(Event):
    """The job is set up: the run directory exists and the data and model are ready."""

    kind: ClassVar[str] = "started"
    run_dir: str
    config: dict
    device: str
    device_name: str
    steps_per_epoch: int
    total_steps: int
    start_step: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepReport(Event):
    """One optimisation step: every loss term, learning rate, throughput and method statistics."""

    kind: ClassVar[str] = "step"
    step: int
    epoch: float  # fractional epoch, e.g. 2.5 halfway through the third epoch
    losses: dict[str, float]
    lr: float
    images_per_second: float
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned(Event):
    """The job changed its length (a time limit: as many steps as fit); progress and ETA follow it."""

    kind: ClassVar[str] = "plan"
    total_steps: int
    epochs: float
    reason: str = ""


@dataclass(frozen=True)
class Evaluation(Event):
    """Quality of the representation now: probe and kNN accuracy, and any indicators."""

    kind: ClassVar[str] = "evaluation"
    step: int
    epoch: float
    metrics: dict[str, Any]
    final: bool = False


@dataclass(frozen=True)
class Snapshot(Event):
    """Embeddings of the fixed evaluation subset (same indices every time, so a map can animate)."""

    kind: ClassVar[str] = "snapshot"
    step: int
    epoch: float
    embeddings: np.ndarray  # (n, D) float32, read-only
    indices: np.ndarray  # (n,) rows of the test split
    labels: np.ndarray  # (n,) int, -1 where unlabelled
    path: str = ""  # the .npz in the run directory, once written

    def __post_init__(self):
        for name in ("embeddings", "indices", "labels"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))

    def to_record(self) -> dict[str, Any]:
        # the arrays live in the .npz; the log line points to it
        return {"kind": self.kind, "step": self.step, "epoch": self.epoch, "path": self.path,
                "n": int(self.embeddings.shape[0]), "dim": int(self.embeddings.shape[1])}

    @classmethod
    def record_fields(cls) -> dict[str, tuple[Any, bool]]:
        return {"step": (int, True), "epoch": (float, True), "path": (str, False), "n": (int, False),
                "dim": (int, False)}


@dataclass(frozen=True)
class Checkpointed(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    epoch: float
    path: str


@dataclass(frozen=True)
class Continued(Event):
    """A run continues from its checkpoint (--resume); ``changes``: each setting changed on resuming,
    as [before, after] (e.g. {"epochs": [10, 20]})."""

    kind: ClassVar[str] = "continued"
    step: int
    epoch: float
    changes: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Message(Event):
    """Something a person should read: skipped files, a fixed encoder, a fallback taken."""

    kind: ClassVar[str] = "message"
    text: str
    level: str = "info"  # info or warning


@dataclass(frozen=True)
class Paused(Event):
    """The job holds between two steps, as ``Control.pause`` asked: a listener can say "paused" now
    (not when it asked). Like ``Resumed``, a control acknowledgement, not written to metrics.jsonl."""

    kind: ClassVar[str] = "paused"
    step: int


@dataclass(frozen=True)
class Resumed(Event):
    """The job goes on after a pause (not after a stop: the next event is its end)."""

    kind: ClassVar[str] = "resumed"
    step: int


@dataclass(frozen=True)
class Progress(Event):
    """How far a job that does not train has come (``embed``: images embedded, then the 2D map). Like
    ``Paused``, for whoever listens now; not written to metrics.jsonl."""

    kind: ClassVar[str] = "progress"
    stage: str  # "embedding" or "layout"
    done: int  # images embedded or skipped so far
    total: int  # images to embed
    skipped: int = 0
    images_per_second: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    summary: dict
    stopped: bool = False  # True when the person stopped it before the last epoch


@dataclass(frozen=True)
class Failed(Event):
    """The job could not go on. ``message`` names the cause and the fix; saved files are kept."""

    kind: ClassVar[str] = "failed"
    message: str
    step: int = 0
    cause: str = ""  # the exception's type, for logs
    # the job never started because something asked for is not usable (a setting, a folder, a run to
    # resume); the command line exits 2 for it, 1 for a failure of the training itself
    bad_input: bool = False


# every kind of line ``metrics.jsonl`` may hold (Paused and Resumed are not written: they say how the
# job obeys its Control, now)
EVENTS: tuple[type[Event], ...] = (Started, Continued, StepReport, Planned, Evaluation, Snapshot, Checkpointed, Message,
                                   Finished, Failed)
