"""explorer.jobs' workers and the interpreter's garbage: cyclic garbage a worker makes is collected in
the GUI thread, never in the worker (where destroying a Qt object the GUI thread owns froze the suite)."""
from __future__ import annotations

import gc
import threading

from explorer import jobs

GARBAGE = 5000  # cycles: seven times the interpreter's first threshold (700), which alone collects in the worker


class Cycle:
    """An object only the cyclic collector frees; says in which thread it was."""
    deleted_in: list[threading.Thread] = []

    def __init__(self):
        self.itself = self

    def __del__(self):
        Cycle.deleted_in.append(threading.current_thread())


def make_garbage() -> int:
    for _ in range(GARBAGE):
        Cycle()
    return len(Cycle.deleted_in)  # those collected by then: in the worker


def test_a_workers_cyclic_garbage_is_collected_in_the_gui_thread(qtbot):
    deleted_in = Cycle.deleted_in
    deleted_in.clear()

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
    Cycle.deleted_in.clear()
    gc.enable()
    try:
        collected_in_worker = []
        jobs.run(make_garbage, on_done=collected_in_worker.append)
        qtbot.waitUntil(lambda: bool(collected_in_worker), timeout=30_000)
        assert collected_in_worker[0] > 0 and threading.main_thread() not in Cycle.deleted_in[:collected_in_worker[0]]
    finally:
        gc.disable()  # the conftest's block is still on for this test
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)
