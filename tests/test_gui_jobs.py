"""explorer.jobs' workers and the interpreter's garbage: cyclic garbage a worker makes is collected in
the GUI thread, never in the worker (where destroying a Qt object the GUI thread owns froze the suite)."""
from __future__ import annotations

import gc
import threading

from explorer import jobs

GARBAGE = 5000  # cycles: seven times the interpreter's first threshold (700), which alone collects in the worker


def test_a_workers_cyclic_garbage_is_collected_in_the_gui_thread(qtbot):
    deleted_in: list[threading.Thread] = []

    class Cycle:
        def __init__(self):
            self.itself = self

        def __del__(self):
            deleted_in.append(threading.current_thread())

    def make_garbage() -> int:
        for _ in range(GARBAGE):
            Cycle()
        return len(deleted_in)  # those collected in the worker, by then

    gc.enable()  # as outside the tests' own block (conftest): the block must turn collection off itself
    with jobs.garbage_collected_in_gui_thread(interval_s=0.05):
        assert not gc.isenabled()
        collected_in_worker = []
        jobs.run(make_garbage, on_done=collected_in_worker.append)
        qtbot.waitUntil(lambda: bool(collected_in_worker) and len(deleted_in) == GARBAGE, timeout=30_000)
    assert collected_in_worker == [0]
    assert set(deleted_in) == {threading.main_thread()}
    assert gc.isenabled()  # as it was before the block
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)


def test_without_the_block_the_worker_collects_what_it_makes(qtbot):
    """The peer: the interpreter by itself collects in whichever thread passes its threshold, so the
    first test's result is the block's doing."""
    deleted_in: list[threading.Thread] = []

    class Cycle:
        def __init__(self):
            self.itself = self

        def __del__(self):
            deleted_in.append(threading.current_thread())

    worker_threads = []

    def make_garbage() -> None:
        worker_threads.append(threading.current_thread())
        for _ in range(GARBAGE):
            Cycle()

    gc.enable()
    try:
        done = []
        jobs.run(make_garbage, on_done=done.append)
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        assert worker_threads[0] in set(deleted_in)
    finally:
        gc.disable()  # the conftest's block is still on for this test
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)
