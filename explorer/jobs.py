"""Background jobs of the window: the training job and short computations (projections, datasets).

Which thread owns what:
- A job's ``QThread`` runs only engine code (the training generator, a projection, a dataset load).
  It never touches a widget; it hands results to the GUI thread through queued Qt signals.
- The ``QObject`` of a job lives in the GUI thread, so its signals are delivered there.
- Every job carries an id; a listener drops the results of a job it no longer waits for (a stopped
  training job, a projection request overtaken by a newer one).

``live_jobs()`` lists the jobs whose thread has not finished, or whose ``finished`` signal the GUI
thread has not handled yet: results are queued before ``finished``, so once a job leaves this list
its results have been delivered. The window waits for them on close and the tests fail if any is
left running.
"""
from __future__ import annotations

import itertools
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal


_ids = itertools.count(1)
# every job's thread from its creation until the GUI thread has handled its ``finished`` signal; the
# strong references also keep a running QThread from being garbage collected
_live: set["_Thread"] = set()


def next_id() -> int:
    return next(_ids)


def training_in_thread() -> bool:
    """``EMBEDDING_EXPLORER_JOB=thread``: training jobs run in a thread of the window's process, not in
    a child process (see TrainingJob)."""
    import os

    return os.environ.get("EMBEDDING_EXPLORER_JOB", "process") == "thread"


def live_jobs() -> list["_Thread"]:
    """Threads started by the window whose end the GUI thread has not seen yet."""
    return list(_live)


def wait_all(timeout_ms: int = 60_000) -> bool:
    """Block until every job's thread has finished (used on close and by tests)."""
    ok = True
    for t in list(_live):
        ok &= t.wait(timeout_ms)
    return ok


class _Thread(QThread):
    """A QThread that runs ``body()`` once and records that it ended."""

    def __init__(self, body: Callable[[], None]):
        super().__init__()
        self._body = body
        self.done = False
        _live.add(self)
        self.finished.connect(self._on_finished)

    def run(self) -> None:  # worker thread
        try:
            self._body()
        finally:
            self.done = True

    def _on_finished(self) -> None:  # GUI thread
        _live.discard(self)


class TrainingJob(QObject):
    """Runs ``engine.training.train(config, control)`` for the window.

    By default the job runs in a child process (``engine.child``) and a worker thread here relays
    its events: the training's Python then never holds this process's interpreter lock, so the
    window keeps its frame rate. ``in_process=True`` (or ``EMBEDDING_EXPLORER_JOB=thread``) runs the
    generator in the worker thread itself, which starts faster and shares memory.

    Every event the generator yields is re-emitted as ``event_emitted(job_id, event)`` in the GUI
    thread. For a ``Snapshot`` the worker also reads the engine's 2D map (``coords``) from the
    snapshot file, so the GUI thread never touches the disk for it: ``snapshot_loaded(job_id, dict)``.
    ``ended(job_id)`` comes after the last event, once the generator is exhausted.
    """

    event_emitted = Signal(int, object)
    snapshot_loaded = Signal(int, object)
    ended = Signal(int)

    def __init__(self, config, parent: QObject | None = None, in_process: bool | None = None):
        super().__init__(parent)
        from engine.child import take_child
        from engine.training import Control

        self.id = next_id()
        self.config = config
        if in_process is None:
            in_process = training_in_thread()
        # a child process that is already warm when one was prepared (engine.child.prepare_standby)
        self._child, self._fallback = None, ""
        if not in_process:
            try:
                self._child = take_child()
            except (OSError, RuntimeError) as error:  # no process could be started: train here instead
                self._fallback = (f"the training process could not start ({type(error).__name__}: {error}); "
                                  "training runs in the window's process instead")
        self.in_process = self._child is None
        self.control = Control() if self._child is None else self._child.control
        self._thread = _Thread(self._run)
        self._thread.finished.connect(lambda: self.ended.emit(self.id))

    # controls (any thread: Control is thread-safe) -------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def paused(self) -> bool:
        return self.control.paused

    def is_running(self) -> bool:
        return self._thread.isRunning() or not self._thread.done

    def wait(self, timeout_ms: int = 60_000) -> bool:
        return self._thread.wait(timeout_ms)

    # worker thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        import numpy as np

        from engine import events as ev
        from engine.child import prepare_standby
        from engine.runs import load_snapshot
        from engine.training import train

        try:
            if self._child is not None:
                self._child.start(self.config)
            events = train(self.config, self.control) if self._child is None else self._child.events()
            for event in events:
                self.event_emitted.emit(self.id, event)
                if self._fallback and isinstance(event, ev.Started):  # the window shows a run's messages
                    self.event_emitted.emit(self.id, ev.Message(self._fallback, "warning"))
                if isinstance(event, ev.Snapshot):
                    # writable copies (torch warns on read-only arrays); the event's own stay frozen
                    snap = {"step": event.step, "epoch": event.epoch, "embeddings": np.array(event.embeddings),
                            "indices": event.indices, "labels": event.labels, "path": event.path}
                    if event.path:
                        try:
                            stored = load_snapshot(event.path)
                            for key, value in stored.items():
                                snap.setdefault(key, value)
                        except OSError:
                            pass  # the map then projects the embeddings itself
                    self.snapshot_loaded.emit(self.id, snap)
        except Exception as error:  # train() reports failures as events; this is a last resort
            self.event_emitted.emit(self.id, ev.Failed(f"{type(error).__name__}: {error}", 0,
                                                       type(error).__name__))
            traceback.print_exc()
        if self._child is not None:
            prepare_standby()  # the next Start finds a warm process


class FunctionJob(QObject):
    """``fn(*args)`` in a worker thread; ``done(request_id, result)`` or ``failed(request_id, message)``
    in the GUI thread. The caller compares ``request_id`` with the request it still waits for."""

    done = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, fn: Callable[..., Any], *args, request_id: int | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.id = next_id() if request_id is None else request_id
        self._fn, self._args = fn, args
        self._thread = _Thread(self._run)
        self._thread.finished.connect(self.deleteLater)

    def start(self) -> "FunctionJob":
        self._thread.start()
        return self

    def _run(self) -> None:  # worker thread
        try:
            result = self._fn(*self._args)
        except Exception as error:
            self.failed.emit(self.id, f"{type(error).__name__}: {error}")
            return
        self.done.emit(self.id, result)


def run_in_background(fn: Callable[..., Any], *args, on_done: Callable[[int, Any], None],
                      on_failed: Callable[[int, str], None] | None = None,
                      request_id: int | None = None) -> FunctionJob:
    """Start ``fn(*args)`` in a worker thread and call ``on_done`` in the GUI thread."""
    job = FunctionJob(fn, *args, request_id=request_id)
    job.done.connect(on_done)
    if on_failed is not None:
        job.failed.connect(on_failed)
    _pending.add(job)
    job.done.connect(lambda *_: _pending.discard(job))
    job.failed.connect(lambda *_: _pending.discard(job))
    return job.start()


_pending: set[FunctionJob] = set()  # keeps the QObject alive until its result is delivered


# projections ----------------------------------------------------------------------------------
PROJECTIONS = ("pca", "umap", "tsne")
PROJECTION_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}


def project(method: str, embeddings, previous=None, seed: int = 0):
    """2D coordinates of ``embeddings`` by ``engine.projection`` (worker thread).

    With ``previous`` (the layout of the same points at the snapshot before), the new layout starts
    from it and is aligned to it (``LiveProjection``), so the map can animate between snapshots.
    """
    import numpy as np

    from engine.projection import LiveProjection

    if method not in PROJECTIONS:
        raise ValueError(f"projection {method!r} is not valid; allowed: {', '.join(PROJECTIONS)}")
    live = LiveProjection(method, seed=seed, device="cpu")
    if previous is not None and len(previous) == len(embeddings):
        live.layout = np.asarray(previous, dtype=np.float32)
    # a writable copy: snapshot arrays are read-only, and torch warns on those
    return np.asarray(live.update(np.array(embeddings, dtype=np.float32)), dtype=np.float32)
