"""A training job in a process of its own, for a window that must stay responsive.

In a thread, the job shares the window's interpreter lock: every stretch of Python the job runs
(the loop, its events, the evaluations' glue) delays the window's next frame. In a child process it
shares only the CPU. The events cross a pipe, pickled; pause, resume and stop cross as two
``multiprocessing`` events that the job's ``Control`` reads between steps.

A child is spawned (fork would copy the window's threads and locks), which costs seconds of imports;
so a child is started ahead, warms up (imports, the default dataset, a first optimiser step) and
waits for its job: ``prepare_standby()`` when the window opens and after each job, ``take_child()``
at Start.

    child = take_child()
    child.start(config)
    for event in child.events():    # the same events as engine.training.train
        ...
    child.control.stop()            # from any thread of the parent

Nothing here imports Qt.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import types
from typing import Any, Generator, Iterator

from engine import events as ev
from engine.config import TrainConfig
from engine.training import Control, train

# what a job imports on its first run: extension modules hold the interpreter lock while they load
WARM_UP_MODULES = ("engine.training", "engine.metrics.probe", "engine.metrics.retrieval",
                   "engine.metrics.diagnostics", "engine.projection", "engine.augment", "engine.runs",
                   "sklearn.model_selection")


def warm_up() -> list[str]:
    """Import what a training job imports on its first run, parse the default dataset and build a
    first optimiser (which imports torch's compiler stack, ~200 ms). Returns the modules imported.

    Run where nobody waits: in a child before its job, and in the window's process at start-up (for
    jobs run in a thread, and its own projections). Importing an extension module holds the GIL for
    up to half a second; done during a window's first training steps it froze the window (stalls of
    200-600 ms measured here)."""
    import importlib

    import torch

    from engine.data import load_dataset

    done = []
    for name in WARM_UP_MODULES:
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass
    load_dataset("digits")  # the default preset's data, parsed once per process (engine.data caches it)
    weight = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.AdamW([weight])
    weight.sum().backward()
    optimiser.step()
    return done


def _child_main(running, stop, configs, events) -> None:
    """The child process: warm up, wait for a job, run it and send every event, then ``None``."""
    import signal

    from threadpoolctl import threadpool_limits

    from engine.device import configure_threads

    # Ctrl-C in the window's terminal reaches this process too; the window decides (it stops the job
    # as Stop does), so the job is not cut short here without its checkpoint and summary
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threads = configure_threads(leave_one_core=True)  # the window's process keeps a core...
    threadpool_limits(threads)  # ...from numpy's and scikit-learn's pools too
    if hasattr(os, "nice"):
        os.nice(5)  # background work yields to the window when the machine is busy: a late frame shows
    warm_up()
    try:
        config = configs.recv()
    except (EOFError, OSError):
        return  # discarded unused: the window closed
    try:
        try:
            for event in train(TrainConfig.from_dict(config), Control(running, stop)):
                events.send(event)
        except (BrokenPipeError, ConnectionError):
            raise
        except Exception as error:  # train() reports failures as events; this is a last resort
            events.send(ev.Failed(f"{type(error).__name__}: {error}", 0, type(error).__name__))
        events.send(None)
    except (BrokenPipeError, ConnectionError):
        pass  # the window went away: what the job saved stays saved


@contextlib.contextmanager
def _main_script_hidden():
    """Spawn re-runs the parent's main script in the child unless it has an ``if __name__ ==
    "__main__"`` guard; a script that opens the window without one would open a second window
    there. The child needs nothing from it (its work is in this module), so it is not told of it."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class ChildJob:
    """A spawned process that warms up, then runs one ``engine.training.train`` job."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        running, stop = context.Event(), context.Event()  # shared with the child: its job's Control
        running.set()
        self.control = Control(running, stop)
        configs_in, self._configs = context.Pipe(duplex=False)
        self._events, events_out = context.Pipe(duplex=False)
        self.process = context.Process(target=_child_main, name="embedding-explorer-training", daemon=True,
                                       args=(running, stop, configs_in, events_out))
        with _main_script_hidden():
            self.process.start()
        configs_in.close()  # the child holds these ends: end of file when it exits
        events_out.close()

    def start(self, config: TrainConfig) -> None:
        self._configs.send(config.to_dict())

    def events(self) -> Iterator[ev.Event]:
        """The job's events until its last; a ``Failed`` event if the process dies on the way."""
        complete = False
        try:
            complete = yield from _received(self._events, self.process, "the training process",
                                            "the run directory keeps what was saved: try a smaller batch or dataset")
        finally:  # also when the caller stops listening: the job stops at its next step
            self.control.stop()
            # a complete job has saved everything: its process only exits (seconds, with torch loaded);
            # one stopped on the way gets the time to save its checkpoint and summary
            self.discard(timeout=1.0 if complete else 30.0)

    def discard(self, timeout: float = 30.0) -> None:
        """Close the pipes and give the process ``timeout`` seconds to exit (an unused child exits at
        once, one still warming up or saving is ended after that)."""
        _close(self.process, (self._configs, self._events), timeout)


def _received(events, process, who: str, fix: str) -> Generator[ev.Event, None, bool]:
    """The events a child process sends on ``events`` until its end marker (None); a ``Failed``
    event naming ``who`` and ``fix`` if the process dies on the way. Returns True once the job's
    end (or the process's) is seen, so the caller knows nothing is left to wait for."""
    while True:
        try:
            event = events.recv()
        except EOFError:  # killed, out of memory, crashed in native code
            process.join(5)
            yield ev.Failed(f"{who} ended unexpectedly (exit code {process.exitcode}); {fix}", 0, "ProcessExit")
            return True
        if event is None:
            return True
        yield event


def _close(process, pipes, timeout: float) -> None:
    """Close ``pipes`` and give ``process`` ``timeout`` seconds to exit, then end it."""
    for conn in pipes:
        conn.close()
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(1.0)


_standby: ChildJob | None = None
_standby_lock = threading.Lock()


def prepare_standby() -> None:
    """Start a warm child for the next job unless one is waiting (any thread of the parent)."""
    global _standby
    with _standby_lock:
        if _standby is None or not _standby.process.is_alive():
            _standby = ChildJob()


def take_child() -> ChildJob:
    """The waiting child, or a new one (which then warms up before it starts the job)."""
    global _standby
    with _standby_lock:
        child, _standby = _standby, None
    if child is None or not child.process.is_alive():
        child = ChildJob()
    return child


def discard_standby() -> None:
    """End the waiting child (the window closes). It holds nothing: one still warming up (imports,
    seconds) is ended at once instead of waited for."""
    global _standby
    with _standby_lock:
        child, _standby = _standby, None
    if child is not None:
        child.discard(timeout=0.2)


# --------------------------------------------------------------------------- any other job (embed)

def _job_main(target: str, config: dict, running, stop, events) -> None:
    """A spawned process for a job other than training: ``target`` names a generator function
    ``module:function(config_dict, control)`` yielding the engine's events; each is sent, then None."""
    import importlib
    import signal

    from threadpoolctl import threadpool_limits

    from engine.device import configure_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the window decides (Stop), as for training
    threadpool_limits(configure_threads(leave_one_core=True))
    if hasattr(os, "nice"):
        os.nice(5)
    module, _, name = target.partition(":")
    try:
        try:
            for event in getattr(importlib.import_module(module), name)(config, Control(running, stop)):
                events.send(event)
        except (BrokenPipeError, ConnectionError):
            raise
        except Exception as error:  # the job reports failures as events; this is a last resort
            events.send(ev.Failed(f"{type(error).__name__}: {error}", 0, type(error).__name__))
        events.send(None)
    except (BrokenPipeError, ConnectionError):
        pass  # the window went away: what the job wrote stays written


class ProcessJob:
    """A generator job (``target``: "module:function", called with ``config`` and a Control) in a
    spawned process of its own: its events come through ``events()``; ``control`` stops it."""

    def __init__(self, target: str, config: dict):
        context = multiprocessing.get_context("spawn")
        running, stop = context.Event(), context.Event()
        running.set()
        self.control = Control(running, stop)
        self._events, events_out = context.Pipe(duplex=False)
        self.process = context.Process(target=_job_main, name="embedding-explorer-job", daemon=False,
                                       args=(target, config, running, stop, events_out))
        with _main_script_hidden():
            self.process.start()
        events_out.close()

    def events(self) -> Iterator[ev.Event]:
        complete = False
        try:
            complete = yield from _received(self._events, self.process, "the job's process",
                                            "what it wrote is kept: try a smaller batch")
        finally:
            self.control.stop()
            _close(self.process, (self._events,), 1.0 if complete else 30.0)
