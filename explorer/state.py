"""The window's typed state: the status of a run, the state of training, and a snapshot as the views
read it. Plain Python and numpy: no Qt, so a script can build them too.

The enums are strings (napari's ``StringEnum`` idea): a member equals its value, prints as its value and
is read from one (``RunStatus("finished")``), so records, settings and tests that hold the strings keep
working, while the code names every state it means.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Mapping

import numpy as np


class StringEnum(str, Enum):
    def __str__(self) -> str:
        return self.value


class RunStatus(StringEnum):
    """Where a run stands, as the runs list shows it."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    FOLLOWING = "following"  # another process writes it; the window polls its files
    DAMAGED = "damaged"  # its files do not say what was trained (engine.runs.read_listing)

    @property
    def ended(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.DAMAGED)


class TrainingState(StringEnum):
    """The window's training job: which buttons make sense now. PAUSING and STOPPING are asked for and
    not yet done: the job obeys between two steps, and says so (engine.events.Paused, its end)."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"

    @property
    def active(self) -> bool:
        """A job is under way (it can be paused or stopped)."""
        return self in (TrainingState.RUNNING, TrainingState.PAUSING, TrainingState.PAUSED)


# the arrays of a snapshot file the window reads by name (engine.training writes them); every other
# array of the file is kept in ``MapSnapshot.arrays``
_NAMED = ("step", "embeddings", "indices", "labels", "coords", "clusters", "neighbour_overlap")


@dataclass(frozen=True, eq=False)
class MapSnapshot:
    """The embeddings of the fixed evaluation subset at one evaluation, with what the engine computed
    on them: its 2D map (``coords``, in the run's own projection), k-means clusters and each point's
    neighbour overlap (map honesty), when it computed them."""

    step: int
    epoch: float
    embeddings: np.ndarray  # (n, D) float32
    indices: np.ndarray  # (n,) rows of the test split
    labels: np.ndarray  # (n,) int, -1 where unlabelled
    path: str = ""  # the .npz in the run directory
    coords: np.ndarray | None = None  # (n, 2)
    clusters: np.ndarray | None = None  # (n,)
    neighbour_overlap: np.ndarray | None = None  # (n,) in [0, 1]
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)  # anything else the file holds

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], steps_per_epoch: int = 1, path: str | Path = "",
                    step: int | None = None, epoch: float | None = None) -> "MapSnapshot":
        """From the arrays of a snapshot file (``engine.runs.load_snapshot``). The embeddings are a
        writable float32 copy (torch warns on read-only arrays)."""
        step = int(arrays["step"]) if step is None and "step" in arrays else int(step or 0)

        def optional(name: str) -> np.ndarray | None:
            return np.asarray(arrays[name]) if name in arrays else None

        return cls(step=step, epoch=step / max(1, steps_per_epoch) if epoch is None else float(epoch),
                   embeddings=np.array(arrays["embeddings"], dtype=np.float32),
                   indices=np.asarray(arrays["indices"], dtype=np.int64), labels=np.asarray(arrays["labels"]),
                   path=str(path), coords=optional("coords"), clusters=optional("clusters"),
                   neighbour_overlap=optional("neighbour_overlap"),
                   arrays={k: v for k, v in arrays.items() if k not in _NAMED})

    @classmethod
    def load(cls, path: str | Path, steps_per_epoch: int = 1) -> "MapSnapshot":
        from engine.runs import load_snapshot

        return cls.from_arrays(load_snapshot(Path(path)), steps_per_epoch, path)

    def __len__(self) -> int:
        return len(self.indices)

    @cached_property
    def _lookup(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the rows sorted, their positions), or None when row i is at position i (a collection's):
        a dict of a million rows took 1.2 s of the first click."""
        n = len(self.indices)
        if n and self.indices[0] == 0 and self.indices[-1] == n - 1 and (np.diff(self.indices) == 1).all():
            return None
        order = np.argsort(self.indices, kind="stable")
        return self.indices[order], order

    def row_of(self, test_row: int) -> int | None:
        """Position of a test-split row in this snapshot (None when it is not on the map)."""
        row, lookup = int(test_row), self._lookup
        if lookup is None:
            return row if 0 <= row < len(self.indices) else None
        rows, order = lookup
        i = int(np.searchsorted(rows, row))
        return int(order[i]) if i < len(rows) and rows[i] == row else None


@dataclass(frozen=True, eq=False)
class BarTriplets:
    """The triplets behind one bar of the Triplets panel's histogram of D_an - D_ap: the sampled
    triplets of a snapshot's points whose difference lies in [low, high) (engine.metrics.triplets.
    triplets_between, the sample the evaluation's histogram counted). Rows are test-split rows."""

    run_id: str
    step: int  # the snapshot's
    low: float
    high: float
    margin: float
    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    labels: np.ndarray  # (T, 3): the labels of anchor, positive, negative
    d_ap: np.ndarray
    d_an: np.ndarray
    closed: bool = False  # [low, high]: the histogram's last bin
    note: str = ""  # where they come from, when it is not the bar's own evaluation

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def category(self) -> str:
        """The bar's category, by its middle: < 0 hard, [0, m) semi-hard, >= m easy."""
        from engine.metrics.triplets import DIFFICULTY, difficulty

        return DIFFICULTY[int(difficulty(0.0, (self.low + self.high) / 2, self.margin))]
