"""The window's background work: the training job's relay and short computations (projections,
datasets, a rebuilt model, warm-ups), as workers in one thread pool. The session starts them; views
never do.

Which thread owns what:
- A ``Worker`` runs only engine code (the training generator or the relay of a child process's
  events, a projection, a dataset load) in a thread of this module's pool. It never touches a widget;
  its results reach the GUI thread through queued signals (``yielded``, ``returned``, ``failed``).
- ``run(fn, *args, on_done=..., on_failed=...)`` is a function in a worker; ``TrainingJob`` the training.
- Every worker started here is listed by ``live_jobs()`` from its start until the GUI thread has
  handled its ``finished`` signal: results are queued before ``finished``, so once a worker leaves the
  list its results have been delivered. The tests fail if any is left running; ``shutdown`` ends what
  is left when the window has closed, without waiting long for a computation nobody will see.
- Python's cyclic garbage is collected only in the GUI thread (``garbage_collected_in_gui_thread``):
  a collection that a worker's allocations trigger runs in that worker and may destroy a Qt object
  the GUI thread owns, taking Qt's locks while the GUI thread, inside Qt under those locks, waits for
  the interpreter's: the window froze so (CI, tests/test_gui_window.py: a dataset worker's collection
  against the GUI thread deleting a menu).

Why not superqt's workers (the model this follows): their ``run`` wraps the work in
``warnings.catch_warnings()`` and replaces ``warnings.showwarning``, process-wide state that
overlapping workers restore out of order. Here the training relay lives for a whole run beside short
workers; a projection that starts before it and ends during it leaves the window with the filters
"always" and every later warning sent to a finished worker's signal (tried: superqt 0.9). Their pause
would also stop the relay reading, not the job in its child process: pausing goes through the job's
``Control``, and the job says when it has paused.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import itertools
import os
import traceback
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

_ids = itertools.count(1)
_live: set["Worker"] = set()
_pool: QThreadPool | None = None
# the training relay holds a thread for a whole run and the pool's default is one thread per core:
# on a 2-core machine a projection would wait behind a dataset load
MAX_THREADS = 16


def next_id() -> int:
    return next(_ids)


def training_in_thread() -> bool:
    """``EMBEDDING_EXPLORER_JOB=thread``: training jobs run in a thread of the window's process, not in
    a child process (see TrainingJob)."""
    return os.environ.get("EMBEDDING_EXPLORER_JOB", "process") == "thread"


@contextlib.contextmanager
def garbage_collected_in_gui_thread(interval_s: float = 1.0) -> Iterator[None]:
    """Within the block the interpreter never collects cyclic garbage by itself (in whichever thread
    allocates); a timer of the GUI thread's event loop collects it instead every ``interval_s``, as
    often as the interpreter's own thresholds would (pyqtgraph's ``GarbageCollector``). At the end
    garbage is collected once and automatic collection comes back. Call it in the GUI thread, with a
    QApplication made."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    was_enabled = gc.isenabled()
    collector = GarbageCollector(interval=interval_s)  # disables automatic collection, starts its timer
    try:
        yield
    finally:
        collector.timer.stop()
        gc.collect()
        if was_enabled:
            gc.enable()


def _thread_pool() -> QThreadPool:
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(MAX_THREADS)
    return _pool


class _WorkerSignals(QObject):
    yielded = Signal(object)  # each item of a generator, in order
    returned = Signal(object)  # a function's result (None for a generator)
    failed = Signal(str)  # the exception that ended the work: "Type: message"
    finished = Signal()  # last, in every case


class Worker(QRunnable):
    """``fn(*args)`` in a thread of the pool: a function's result comes as ``returned``, a generator's
    items as ``yielded``, an exception as ``failed``, then ``finished``. The signals live in the GUI
    thread (made there), so their slots run there."""

    def __init__(self, fn: Callable[..., Any], *args):
        super().__init__()
        self.signals = _WorkerSignals()
        self._fn, self._args = fn, args

    def run(self) -> None:  # worker thread
        try:
            try:
                result = self._fn(*self._args)
                if inspect.isgenerator(result):
                    for item in result:
                        self.signals.yielded.emit(item)
                    result = None
                self.signals.returned.emit(result)
            except RuntimeError as error:
                if _gone(error):
                    raise
                self._fail(error)
            except Exception as error:
                self._fail(error)
            finally:
                self.signals.finished.emit()
        except RuntimeError as error:  # the interpreter is tearing the signals down: nobody listens
            if not _gone(error):
                raise

    def _fail(self, error: Exception) -> None:
        traceback.print_exc()
        self.signals.failed.emit(f"{type(error).__name__}: {error}")


def _gone(error: RuntimeError) -> bool:
    return "has been deleted" in str(error) or "already deleted" in str(error)


def start(worker: Worker) -> Worker:
    """Run a worker in the pool and list it in ``live_jobs()`` until its end is handled."""
    _live.add(worker)
    worker.signals.finished.connect(lambda: _live.discard(worker))  # in the GUI thread, after its results
    _thread_pool().start(worker)
    return worker


class _Delivery(QObject):
    """Hands a worker's result to callbacks, as a child of their owner: once the owner is deleted (a
    window closed before its projection ended), Qt drops the connection instead of calling into it."""

    def __init__(self, owner: QObject, on_done, on_failed):
        super().__init__(owner)
        self._on_done, self._on_failed = on_done, on_failed

    def returned(self, result) -> None:
        if self._on_done is not None:
            self._on_done(result)

    def failed(self, message: str) -> None:
        if self._on_failed is not None:
            self._on_failed(message)

    def finished(self) -> None:
        self.deleteLater()


def run(fn: Callable[..., Any], *args, owner: QObject | None = None, on_done: Callable[[Any], None] | None = None,
        on_failed: Callable[[str], None] | None = None) -> Worker:
    """``fn(*args)`` in a worker; ``on_done(result)`` or ``on_failed(message)`` in the GUI thread, unless
    ``owner`` (the object the callbacks belong to) has been deleted by then."""
    worker = Worker(fn, *args)
    if owner is not None:
        delivery = _Delivery(owner, on_done, on_failed)
        worker.signals.returned.connect(delivery.returned)
        worker.signals.failed.connect(delivery.failed)
        worker.signals.finished.connect(delivery.finished)
    else:
        if on_done is not None:
            worker.signals.returned.connect(on_done)
        if on_failed is not None:
            worker.signals.failed.connect(on_failed)
    return start(worker)


def live_jobs() -> list[Worker]:
    """Workers started here whose end the GUI thread has not seen yet."""
    return list(_live)


def wait_all(timeout_ms: int = 60_000) -> bool:
    """Block until every worker's thread has finished (tests). Their signals are delivered afterwards,
    by the event loop."""
    return _pool is None or _pool.waitForDone(timeout_ms)


def shutdown(timeout_ms: int = 3000) -> bool:
    """The window has closed: drop the work not started yet and wait ``timeout_ms`` at most for the
    rest. False when a worker is still running (a long computation in C cannot be interrupted): the
    caller then leaves without it."""
    if _pool is None:
        return True
    _pool.clear()
    return _pool.waitForDone(timeout_ms)


class TrainingJob(QObject):
    """Runs ``engine.training.train(config, control)`` for the window.

    By default the job runs in a child process (``engine.child``) and a worker here relays its events:
    the training's Python then never holds this process's interpreter lock, so the window keeps its
    frame rate. ``in_process=True`` (or ``EMBEDDING_EXPLORER_JOB=thread``) runs the generator in the
    worker itself, which starts faster and shares memory.

    ``emitted(job_id, item)`` comes in the GUI thread for every event the job yields, in order; a
    ``Snapshot`` event is followed by its ``explorer.state.MapSnapshot``, read by the worker from the
    snapshot file (with the engine's 2D map), so the GUI thread never touches the disk for it.
    ``ended(job_id)`` comes once the worker is done (after the last event, and after the child process
    has exited). Pause, resume and stop cross to the job through its ``Control``; the job says when it
    has paused (``engine.events.Paused``).
    """

    emitted = Signal(int, object)
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
        self._worker = Worker(self._relay)
        self._worker.signals.yielded.connect(self._on_worker_yielded)
        self._worker.signals.finished.connect(self._on_worker_finished)
        self._running = False

    # controls (any thread: Control is thread-safe) -------------------------------------------
    def start(self) -> None:
        self._running = True
        start(self._worker)

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    def is_running(self) -> bool:
        """The worker has not ended yet (it may be tidying up after the job's last event)."""
        return self._running

    # GUI thread ------------------------------------------------------------------------------------
    def _on_worker_yielded(self, item) -> None:
        self.emitted.emit(self.id, item)

    def _on_worker_finished(self) -> None:
        self._running = False
        self.ended.emit(self.id)

    # worker thread -----------------------------------------------------------------------------
    def _relay(self):
        from engine import events as ev
        from engine.training import train
        from explorer.state import MapSnapshot

        try:
            if self._child is not None:
                self._child.start(self.config)
            events = train(self.config, self.control) if self._child is None else self._child.events()
            for event in events:
                yield event
                if self._fallback and isinstance(event, ev.Started):  # the window shows a run's messages
                    yield ev.Message(self._fallback, "warning")
                if isinstance(event, ev.Snapshot):
                    yield self._map_snapshot(event, MapSnapshot)
        except Exception as error:  # train() reports failures as events; this is a last resort
            traceback.print_exc()
            yield ev.Failed(f"{type(error).__name__}: {error}", 0, type(error).__name__)

    @staticmethod
    def _map_snapshot(event, cls):
        """The snapshot as the views read it: the event's arrays and what the engine stored beside them."""
        from engine.runs import load_snapshot

        arrays = {"embeddings": event.embeddings, "indices": event.indices, "labels": event.labels}
        if event.path:
            try:
                arrays = load_snapshot(event.path) | arrays
            except (OSError, ValueError):
                pass  # the map then projects the embeddings itself
        return cls.from_arrays(arrays, path=event.path, step=event.step, epoch=event.epoch)


class EmbedJob(QObject):
    """Runs ``engine.embed.embed(config, control)`` for the window (File > Embed a folder…): in a
    spawned process of its own (``engine.child.ProcessJob``: its DataLoader workers and the encoder
    never hold this process's interpreter lock), or, with ``EMBEDDING_EXPLORER_JOB=thread``, in a
    worker thread here, decoding in that thread (no worker processes forked from the window).
    ``emitted(job_id, event)`` for each event in the GUI thread, ``ended(job_id)`` once done."""

    emitted = Signal(int, object)
    ended = Signal(int)

    def __init__(self, config, parent: QObject | None = None):
        super().__init__(parent)
        from engine.training import Control

        self.id = next_id()
        self.config = config
        self.in_process = training_in_thread()
        if self.in_process:
            config.workers = 0
        self._process = None
        self.control = Control()
        self._worker = Worker(self._relay)
        # bound methods, not lambdas: Qt drops them when this object is deleted (the window closed)
        self._worker.signals.yielded.connect(self._on_worker_yielded)
        self._worker.signals.finished.connect(self._on_worker_finished)

    def _on_worker_yielded(self, event) -> None:
        self.emitted.emit(self.id, event)

    def _on_worker_finished(self) -> None:
        self.ended.emit(self.id)

    def start(self) -> None:
        if not self.in_process:
            from engine.child import ProcessJob

            self._process = ProcessJob("engine.embed:embed_job", self.config.to_dict())
            self.control = self._process.control
        start(self._worker)

    def stop(self) -> None:
        self.control.stop()

    def _relay(self):  # worker thread
        from engine import events as ev
        from engine.embed import embed

        try:
            yield from (self._process.events() if self._process is not None else embed(self.config, self.control))
        except Exception as error:  # the job reports failures as events; this is a last resort
            traceback.print_exc()
            yield ev.Failed(f"{type(error).__name__}: {error}", 0, type(error).__name__)
