"""A training job in a child process (engine.child): the window's default way to train."""
import os
import signal

from engine import events as ev
from engine.child import ChildJob, discard_standby, prepare_standby, take_child
from engine.runs import RunDir
from engine.config import TrainConfig


def config(tmp_path, **kw):
    return TrainConfig(**({"dataset": "digits", "out": str(tmp_path), "diagnostics": False, "epochs": 2,
                           "train_size": 300, "batch_size": 30, "projection": "pca"} | kw)).resolved()


def test_child_runs_the_job_and_streams_its_events(tmp_path):
    child = ChildJob()
    child.start(config(tmp_path))
    events = list(child.events())
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert "snapshot" in kinds and kinds.count("step") == events[0].total_steps
    snapshot = next(e for e in events if isinstance(e, ev.Snapshot))
    assert snapshot.embeddings.shape == (len(snapshot.indices), 128)  # arrays cross the pipe
    assert RunDir(events[0].run_dir).file("summary.json").exists()
    assert not child.process.is_alive()


def test_pause_and_stop_reach_the_child(tmp_path):
    child = ChildJob()
    child.control.pause()  # before the job starts: it must hold
    child.start(config(tmp_path, epochs=50))
    events = child.events()
    started = next(events)
    assert started.kind == "started"
    before = []
    for event in events:  # the step-0 evaluation, then the job says it holds
        before.append(event)
        if event.kind == "paused":
            break
    assert before[-1].kind == "paused" and not any(e.kind == "step" for e in before)
    child.control.stop()  # wakes the paused job, which stops before its first step
    rest = list(events)
    assert not any(e.kind == "step" for e in rest)
    assert rest[-1].kind == "finished" and rest[-1].stopped
    assert RunDir(started.run_dir).file("checkpoint.pt").exists()


def test_a_dead_child_is_a_failed_job_with_a_message(tmp_path):
    child = ChildJob()
    child.start(config(tmp_path, epochs=200))
    events = child.events()
    assert next(events).kind == "started"
    os.kill(child.process.pid, signal.SIGKILL)
    last = list(events)[-1]
    assert isinstance(last, ev.Failed) and "ended unexpectedly" in last.message


def test_a_prepared_child_waits_warm_and_is_taken_once():
    prepare_standby()
    first = take_child()
    try:
        assert first.process.is_alive()
        second = take_child()  # none waiting any more: a new one
        assert second is not first
        second.discard(timeout=5)
    finally:
        first.discard(timeout=5)
        discard_standby()
