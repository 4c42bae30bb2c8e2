"""The session: what the window shows, in one QObject that every view reads and listens to.

It holds the runs (live ones, driven by a ``TrainingJob``, and opened ones, read from their run
directory and followed while another process writes them), which run is selected (and which is
compared beside it), the selected point and the selected points (as rows of the dataset's test
split, so two runs on the same data share a selection), the projection, the colouring and the
time-lapse frame. Views never call each other: they change the session and redraw on its signals.

Threads: everything here runs in the GUI thread. Training events arrive through queued signals and
are buffered; a 50 ms timer hands them on in batches (records to the curves, the latest snapshot to
the map), so a fast job cannot flood the event loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from explorer import jobs

FLUSH_MS = 50
FOLLOW_MS = 500
COLOURINGS = {"class": "class", "cluster": "cluster", "correct": "kNN correct / wrong",
              "overlap": "neighbour overlap (map honesty)", "triplet": "triplet category (anchor = selected)"}


def dataset_key(config: dict) -> tuple:
    """What decides the images of a run (or of any config): configs with one key share one loaded dataset."""
    return (config.get("dataset"), config.get("data_root"), config.get("train_size"), config.get("test_size"),
            config.get("imbalance"), config.get("seed", 0))


@dataclass
class RunState:
    """One run as the window knows it."""

    id: str
    name: str
    path: Path | None = None
    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    snapshots: list[dict] = field(default_factory=list)  # step, epoch, embeddings, indices, labels, coords?
    coords: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # (snapshot, method) -> (n, 2)
    live: bool = False  # trained by this window now
    following: bool = False  # another process writes it; polled
    status: str = "running"  # running, paused, stopping, finished, stopped, failed
    message: str = ""
    collapse_step: int | None = None  # the first evaluation with the worst verdict so far, if not "healthy"
    collapse_verdict: str = ""  # that verdict ("dimensional collapse", "near collapse", "complete collapse")
    dataset: Any = None  # engine.data.ImageDataset once loaded (thumbnails)
    follower: Any = None
    known_snapshots: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    total_steps: int = 0
    steps_per_epoch: int = 1
    start_step: int = 0
    device: str = ""

    @property
    def dataset_key(self) -> tuple:
        return dataset_key(self.config)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names") or [])

    def snapshot_row(self, snapshot: dict, test_row: int) -> int | None:
        """Position of a test-split row in a snapshot (None when it is not on the map)."""
        where = snapshot.get("_where")
        if where is None:
            where = {int(r): i for i, r in enumerate(snapshot["indices"])}
            snapshot["_where"] = where
        return where.get(int(test_row))


class Session(QObject):
    run_added = Signal(str)
    run_changed = Signal(str)  # status, message, collapse mark
    run_selected = Signal(str)
    compare_changed = Signal(str)  # "" when nothing is compared
    records_added = Signal(str, list)
    snapshot_added = Signal(str, int)  # run, index of the newest snapshot
    dataset_ready = Signal(str)
    progress_changed = Signal(str, dict)  # run, {step, epoch, total_steps, images_per_second, eta_s}
    point_selected = Signal(int)  # test-split row, -1 for none
    rows_selected = Signal(object)  # np.ndarray of test-split rows
    neighbours_changed = Signal(object)  # test-split rows of the selected point's neighbours
    view_changed = Signal()  # projection, colouring or frame
    training_state_changed = Signal(str)  # idle, running, paused, stopping
    message_posted = Signal(str, str)  # level (info, warning, error), text

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.runs: dict[str, RunState] = {}
        self.current_id = ""
        self.compare_id = ""
        self.selected_row = -1
        self.selected_rows = np.zeros(0, dtype=np.int64)
        self.neighbour_rows = np.zeros(0, dtype=np.int64)
        self.projection = "umap"
        self.colour_by = "class"
        self.frame = -1  # index into the run's snapshots; -1 follows the newest
        self.trails = False
        self.centroids = False
        self.job: jobs.TrainingJob | None = None
        self.training_state = "idle"
        self._job_run: dict[int, str] = {}
        self._pending_records: dict[str, list[dict]] = {}
        self._pending_snapshot: set[str] = set()
        self._pending_progress: dict[str, dict] = {}
        self._datasets: dict[tuple, Any] = {}
        self._dataset_waiters: dict[tuple, list[tuple[Callable, Callable | None]]] = {}  # while loading
        self._flush = QTimer(self, interval=FLUSH_MS)
        self._flush.timeout.connect(self._on_flush_timeout)
        self._flush.start()
        self._follow = QTimer(self, interval=FOLLOW_MS)
        self._follow.timeout.connect(self.poll_followed)
        self._follow.start()

    # runs ----------------------------------------------------------------------------------------
    @property
    def current(self) -> RunState | None:
        return self.runs.get(self.current_id)

    @property
    def compared(self) -> RunState | None:
        return self.runs.get(self.compare_id)

    def select_run(self, run_id: str) -> None:
        if run_id not in self.runs or run_id == self.current_id:
            return
        self.current_id = run_id
        self.frame = -1
        if self.compare_id == run_id:
            self.compare_id = ""
            self.compare_changed.emit("")
        self.run_selected.emit(run_id)
        self.view_changed.emit()

    def set_compare(self, run_id: str) -> None:
        """Show ``run_id`` beside the current run ("" to stop). Both must be of the same dataset."""
        if run_id and run_id in self.runs and self.current is not None:
            if self.runs[run_id].dataset_key[:1] != self.current.dataset_key[:1]:
                raise ValueError(f"run {self.runs[run_id].name} is on {self.runs[run_id].config.get('dataset')}, "
                                 f"not {self.current.config.get('dataset')}: side by side needs the same dataset")
        self.compare_id = run_id if run_id in self.runs and run_id != self.current_id else ""
        self.compare_changed.emit(self.compare_id)

    def _add_run(self, run: RunState, select: bool = True) -> None:
        self.runs[run.id] = run
        self.run_added.emit(run.id)
        self._request_dataset(run)
        if select or not self.current_id:
            self.select_run(run.id)

    def open_run(self, path: str | Path, select: bool = True) -> RunState:
        """Open a run directory; keep following it while it has no ``finished``/``failed`` line."""
        from engine.runs import CONFIG, METRICS, MetricsFollower, RunDir

        path = Path(path).expanduser().resolve()
        if not (path / CONFIG).exists():
            raise ValueError(f"{path} is not a run directory: it has no {CONFIG}")
        run_id = str(path)
        if run_id in self.runs:
            if select:
                self.select_run(run_id)
            return self.runs[run_id]
        run = RunState(run_id, path.name, path, RunDir(path).config(), status="running")
        run.follower = MetricsFollower(path / METRICS)
        run.following = True
        self._ingest_records(run, run.follower.poll())
        self._load_new_snapshots(run)
        if run.status == "running":
            run.status = "following"
        self._add_run(run, select)
        return run

    def poll_followed(self) -> None:
        """Read what followed runs' writers appended since the last poll (timer, every 500 ms)."""
        for run in list(self.runs.values()):
            if not run.following or run.follower is None:
                continue
            records = run.follower.poll()
            n_before = len(run.snapshots)
            self._load_new_snapshots(run)
            if records:
                self._ingest_records(run, records)
                self._pending_records.setdefault(run.id, []).extend(records)
            if len(run.snapshots) > n_before:
                self._pending_snapshot.add(run.id)
            if run.status in ("finished", "stopped", "failed"):
                run.following = False
                self.run_changed.emit(run.id)
        self._on_flush_timeout()

    def _ingest_records(self, run: RunState, records: list[dict]) -> None:
        for r in records:
            run.records.append(r)
            self._note_collapse(run, r)
            kind = r.get("kind")
            if kind == "started":
                run.total_steps = int(r.get("total_steps") or 0)
                run.steps_per_epoch = int(r.get("steps_per_epoch") or 1)
                run.device = r.get("device_name", "")
            elif kind == "plan":  # a time limit changed the run's length
                run.total_steps = int(r.get("total_steps") or run.total_steps)
            elif kind == "finished":
                run.status = "stopped" if r.get("stopped") else "finished"
            elif kind == "failed":
                run.status, run.message = "failed", r.get("message", "")

    def _load_new_snapshots(self, run: RunState) -> None:
        from engine.runs import load_snapshot

        if run.path is None:
            return
        for p in sorted((run.path / "snapshots").glob("step_*.npz")):
            if p.name in run.known_snapshots:
                continue
            try:
                data = load_snapshot(p)
            except (OSError, ValueError):
                continue  # still being written by a writer that does not rename: next poll
            run.known_snapshots.add(p.name)
            snap = dict(data)
            snap["step"] = int(snap.get("step", 0))
            snap["epoch"] = snap["step"] / max(1, run.steps_per_epoch)
            snap["path"] = str(p)
            run.snapshots.append(snap)
        run.snapshots.sort(key=lambda s: s["step"])

    # datasets (thumbnails) -----------------------------------------------------------------------
    def request_dataset(self, config: dict, on_ready: Callable[[Any], None],
                        on_failed: Callable[[str], None] | None = None) -> None:
        """``on_ready(dataset)`` with the images ``config`` names (dataset, subsets, seed): at once when
        they were loaded before, else from a worker thread; one load however many ask."""
        key = dataset_key(config)
        if key in self._datasets:
            on_ready(self._datasets[key])
            return
        waiting = self._dataset_waiters.setdefault(key, [])
        waiting.append((on_ready, on_failed))
        if len(waiting) == 1:
            from engine.restore import load_run_dataset

            jobs.run_in_background(load_run_dataset, dict(config),
                                   on_done=lambda _request, dataset: self._on_dataset_done(key, dataset),
                                   on_failed=lambda _request, message: self._on_dataset_failed(key, message))

    def _on_dataset_done(self, key: tuple, dataset) -> None:
        self._datasets[key] = dataset
        for on_ready, _ in self._dataset_waiters.pop(key, []):
            on_ready(dataset)

    def _on_dataset_failed(self, key: tuple, message: str) -> None:
        for _, on_failed in self._dataset_waiters.pop(key, []):
            if on_failed is not None:
                on_failed(message)

    def _request_dataset(self, run: RunState) -> None:
        if run.config.get("dataset"):
            self.request_dataset(run.config, lambda dataset: self._on_run_dataset(run.id, dataset),
                                 lambda message: self.message_posted.emit(
                                     "warning", f"images of the run could not be loaded: {message}"))

    def _on_run_dataset(self, run_id: str, dataset) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            run.dataset = dataset
            self.dataset_ready.emit(run_id)

    # training ------------------------------------------------------------------------------------
    def start_training(self, config) -> int:
        """Start a training job (engine.config.TrainConfig); returns its id."""
        if self.job is not None and self.job.is_running():
            raise ValueError("a training job is already running: stop it first")
        job = jobs.TrainingJob(config, self)
        job.event_emitted.connect(self._on_job_event)
        job.snapshot_loaded.connect(self._on_job_snapshot)
        job.ended.connect(self._on_job_ended)
        self.job = job
        self._set_training_state("running")
        job.start()
        return job.id

    def pause_training(self) -> None:
        if self.job is not None and self.training_state == "running":
            self.job.pause()
            self._set_training_state("paused")
            self._set_status("paused")

    def resume_training(self) -> None:
        if self.job is not None and self.training_state == "paused":
            self.job.resume()
            self._set_training_state("running")
            self._set_status("running")

    def stop_training(self) -> None:
        if self.job is not None and self.training_state in ("running", "paused"):
            self.job.stop()
            self._set_training_state("stopping")
            self._set_status("stopping")

    def _set_status(self, status: str) -> None:
        run_id = self._job_run.get(self.job.id) if self.job else None
        if run_id and run_id in self.runs:
            self.runs[run_id].status = status
            self.run_changed.emit(run_id)

    def _set_training_state(self, state: str) -> None:
        self.training_state = state
        self.training_state_changed.emit(state)

    def _on_job_event(self, job_id: int, event) -> None:
        from engine import events as ev

        if self.job is None or job_id != self.job.id:
            return  # an older job's late event
        if isinstance(event, ev.Started):
            name = Path(event.run_dir).name
            run = RunState(str(Path(event.run_dir).resolve()), name, Path(event.run_dir), dict(event.config),
                           live=True, total_steps=event.total_steps, steps_per_epoch=event.steps_per_epoch,
                           start_step=event.start_step, device=event.device_name)
            run.known_snapshots = set()
            self._job_run[job_id] = run.id
            self._add_run(run, select=True)
        run_id = self._job_run.get(job_id)
        if isinstance(event, ev.Failed):
            self.message_posted.emit("error", f"training failed: {event.message}")
            if run_id:
                self.runs[run_id].status, self.runs[run_id].message = "failed", event.message
                self.run_changed.emit(run_id)
        if run_id is None:
            return
        run = self.runs[run_id]
        if self.training_state == "stopping" and isinstance(event, (ev.StepReport, ev.Snapshot)):
            return  # a stopped job's last steps are not drawn; its files are still written
        record = event.to_record()
        run.records.append(record)
        self._note_collapse(run, record)
        self._pending_records.setdefault(run_id, []).append(record)
        # a Snapshot's arrays (and the engine's 2D map) arrive through snapshot_loaded
        if isinstance(event, ev.Message):
            self.message_posted.emit(event.level, event.text)
        elif isinstance(event, ev.Planned):
            run.total_steps = event.total_steps
            self.message_posted.emit("info", event.reason)
        elif isinstance(event, ev.StepReport):
            done = event.step - run.start_step
            elapsed = time.monotonic() - run.started
            eta = elapsed / done * (run.total_steps - event.step) if done > 0 else None
            self._pending_progress[run_id] = {
                "step": event.step, "epoch": event.epoch, "total_steps": run.total_steps,
                "epochs": run.total_steps / max(1, run.steps_per_epoch),
                "images_per_second": event.images_per_second, "eta_s": eta, "loss": event.losses.get("loss")}
        elif isinstance(event, ev.Finished):
            run.status = "stopped" if event.stopped else "finished"
            self.run_changed.emit(run_id)
            self.message_posted.emit("info", f"run {run.name} {run.status}: {run.path}")

    def _on_job_snapshot(self, job_id: int, snap: dict) -> None:
        run_id = self._job_run.get(job_id)
        if self.job is None or job_id != self.job.id or run_id is None or self.training_state == "stopping":
            return
        run = self.runs[run_id]
        run.snapshots.append(snap)
        if snap.get("path"):
            run.known_snapshots.add(Path(snap["path"]).name)
        self._pending_snapshot.add(run_id)

    def _on_job_ended(self, job_id: int) -> None:
        if self.job is None or job_id != self.job.id:
            return
        self._on_flush_timeout()
        run_id = self._job_run.get(job_id)
        if run_id and self.runs[run_id].status in ("running", "paused", "stopping"):
            self.runs[run_id].status = "stopped"
            self.run_changed.emit(run_id)
        if run_id:
            self.runs[run_id].live = False
        self._set_training_state("idle")

    def _on_flush_timeout(self) -> None:
        records, self._pending_records = self._pending_records, {}
        for run_id, batch in records.items():
            self.records_added.emit(run_id, batch)
        progress, self._pending_progress = self._pending_progress, {}
        for run_id, p in progress.items():
            self.progress_changed.emit(run_id, p)
        snaps, self._pending_snapshot = self._pending_snapshot, set()
        for run_id in snaps:
            self.snapshot_added.emit(run_id, len(self.runs[run_id].snapshots) - 1)

    def current_run_live_id(self) -> str:
        return self._job_run.get(self.job.id, "") if self.job is not None else ""

    # what is shown -------------------------------------------------------------------------------
    def select_point(self, test_row: int) -> None:
        test_row = int(test_row)
        if test_row != self.selected_row:
            self.selected_row = test_row
            self.point_selected.emit(test_row)

    def set_neighbour_rows(self, rows) -> None:
        self.neighbour_rows = np.asarray(rows, dtype=np.int64)
        self.neighbours_changed.emit(self.neighbour_rows)

    def select_rows(self, rows) -> None:
        self.selected_rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.rows_selected.emit(self.selected_rows)

    def set_projection(self, method: str) -> None:
        if method != self.projection:
            self.projection = method
            self.view_changed.emit()

    def set_colour_by(self, mode: str) -> None:
        if mode not in COLOURINGS:
            raise ValueError(f"colour by {mode!r} is not valid; allowed: {', '.join(COLOURINGS)}")
        if mode != self.colour_by:
            self.colour_by = mode
            self.view_changed.emit()

    def set_frame(self, index: int) -> None:
        if index != self.frame:
            self.frame = index
            self.view_changed.emit()

    def set_trails(self, on: bool) -> None:
        self.trails = bool(on)
        self.view_changed.emit()

    def set_centroids(self, on: bool) -> None:
        self.centroids = bool(on)
        self.view_changed.emit()

    def _note_collapse(self, run: RunState, record: dict) -> None:
        """Mark the run with the worst verdict of its evaluations so far and the first step it came
        (the map's badge): a near collapse that becomes complete is then badged as complete. Here,
        not in the collapse panel: a panel tabbed away reads its records only when shown."""
        from engine.metrics.collapse import VERDICTS

        verdict = (record.get("metrics") or {}).get("collapse") if record.get("kind") == "evaluation" else None
        if not (isinstance(verdict, str) and verdict in VERDICTS[1:]):
            return
        worst = VERDICTS.index(run.collapse_verdict) if run.collapse_verdict in VERDICTS else 0
        if VERDICTS.index(verdict) > worst:
            run.collapse_step, run.collapse_verdict = int(record.get("step") or 0), verdict
            self.run_changed.emit(run.id)

    def snapshot(self, run: RunState | None = None, frame: int | None = None) -> dict | None:
        """The snapshot a view shows for ``run``: the time-lapse frame, or the newest."""
        run = run or self.current
        if run is None or not run.snapshots:
            return None
        frame = self.frame if frame is None else frame
        return run.snapshots[frame if 0 <= frame < len(run.snapshots) else -1]

    def shutdown(self, timeout_ms: int = 120_000) -> None:
        """Stop the training job, wait for every worker thread (the run directory stays complete)."""
        self._flush.stop()
        self._follow.stop()
        if self.job is not None:
            self.job.stop()
        jobs.wait_all(timeout_ms)
        from engine.child import discard_standby

        discard_standby()  # the warm training process waiting for a next job
