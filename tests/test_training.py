"""The training job on real digits: it learns, it streams, it writes a readable run, it obeys."""
import json
import re
import threading

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.runs import RunDir, load_snapshot
from engine.config import TrainConfig
from engine.training import Control, train


def run(tmp_path, **kw):
    config = TrainConfig(**({"dataset": "digits", "out": str(tmp_path), "diagnostics": False} | kw))
    return list(train(config))


def by_kind(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run(out, epochs=6, eval_every=2)


def test_supervised_beats_random_init_and_pixels(digits_run):
    summary = by_kind(digits_run, ev.Finished)[0].summary
    assert summary["linear_probe_acc"] >= 0.97
    assert summary["linear_probe_acc"] > summary["baseline_linear_probe_acc"] + 0.02
    assert summary["knn_acc"] > summary["baseline_knn_acc"]
    assert 0.95 < summary["pixels_linear_probe_acc"] < 0.99  # raw pixels: about 0.97 on this split


def test_events_stream_in_order(digits_run):
    assert isinstance(digits_run[0], ev.Started) and isinstance(digits_run[-1], ev.Finished)
    steps = [e.step for e in by_kind(digits_run, ev.StepReport)]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) == digits_run[0].total_steps
    snaps = by_kind(digits_run, ev.Snapshot)
    assert [s.step for s in snaps] == [0, 18, 36, len(steps)]  # start, every 2 epochs, end
    assert all(np.array_equal(s.indices, snaps[0].indices) for s in snaps)  # same points every time
    assert not snaps[0].embeddings.flags.writeable
    losses = [e.losses["loss"] for e in by_kind(digits_run, ev.StepReport)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 5


def test_run_directory_matches_the_events(digits_run):
    run_dir = RunDir(digits_run[0].run_dir)
    config = run_dir.config()
    assert config["method"] == "supervised" and config["epochs"] == 6 and config["batch_size"] == 128
    records = run_dir.records()
    assert [r["kind"] for r in records].count("step") == digits_run[0].total_steps
    evals = run_dir.records("evaluation")
    assert [r["metrics"]["linear_probe_acc"] for r in evals] == pytest.approx(
        [e.metrics["linear_probe_acc"] for e in by_kind(digits_run, ev.Evaluation)])
    summary = run_dir.summary()
    for key in ("method", "dataset", "encoder", "device", "epochs", "train_seconds", "images_per_second",
                "linear_probe_acc", "knn_acc", "baseline_linear_probe_acc", "baseline_knn_acc",
                "pixels_linear_probe_acc"):
        assert summary[key] is not None, key
    snap = load_snapshot(run_dir.snapshot_paths()[-1])
    last = by_kind(digits_run, ev.Snapshot)[-1]
    assert np.allclose(snap["embeddings"], last.embeddings) and np.array_equal(snap["labels"], last.labels)
    state = torch.load(run_dir.file("checkpoint.pt"), weights_only=True)
    assert state["step"] == digits_run[0].total_steps
    assert not list(run_dir.path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_resume_continues_step_and_epoch_counts(tmp_path):
    first = run(tmp_path, epochs=2, eval_every=0, final_eval=False)
    run_dir = first[0].run_dir
    more = list(train(TrainConfig(resume=run_dir, epochs=4, diagnostics=False)))
    started = more[0]
    assert started.start_step == first[0].total_steps and started.run_dir == run_dir
    steps = [e.step for e in by_kind(more, ev.StepReport)]
    assert steps[0] == started.start_step + 1 and steps[-1] == 2 * started.start_step
    assert by_kind(more, ev.Finished)[0].summary["epochs"] == 4
    assert [r["step"] for r in RunDir(run_dir).records("step")] == list(range(1, steps[-1] + 1))


def test_transfer_from_an_earlier_run(tmp_path, digits_run):
    events = run(tmp_path, method="transfer", init_from=digits_run[0].run_dir, epochs=1,
                 method_params={"freeze": True})
    started = events[0]
    assert any("initialised from run" in n for n in started.notes)
    first_eval = by_kind(events, ev.Evaluation)[0].metrics
    # the pretrained representation is good before any step: far above random initialisation
    assert first_eval["linear_probe_acc"] > first_eval["baseline_linear_probe_acc"] + 0.02
    assert by_kind(events, ev.Finished)[0].summary["linear_probe_acc"] >= 0.97


def test_fixed_encoder_is_evaluated_not_trained(tmp_path):
    events = run(tmp_path, encoder="pixels")
    assert not by_kind(events, ev.StepReport)
    assert any("nothing to train" in e.text for e in by_kind(events, ev.Message))
    summary = by_kind(events, ev.Finished)[0].summary
    assert summary["linear_probe_acc"] == pytest.approx(summary["pixels_linear_probe_acc"], abs=0.01)


def test_stop_in_the_middle_of_an_epoch_keeps_the_run(tmp_path):
    control = Control()
    events = []
    for event in train(TrainConfig(dataset="digits", out=str(tmp_path), diagnostics=False, epochs=5), control):
        events.append(event)
        if isinstance(event, ev.StepReport) and event.step == 13:
            control.stop()
    finished = by_kind(events, ev.Finished)[0]
    assert finished.stopped and by_kind(events, ev.StepReport)[-1].step == 13
    run_dir = RunDir(events[0].run_dir)
    assert run_dir.summary()["stopped"] and run_dir.summary()["steps"] == 13
    assert torch.load(run_dir.file("checkpoint.pt"), weights_only=True)["step"] == 13


def test_pause_holds_the_job_until_resumed(tmp_path):
    control = Control()
    seen, paused_at = [], threading.Event()

    def consume():
        for event in train(TrainConfig(dataset="digits", out=str(tmp_path), diagnostics=False, epochs=2,
                                       eval_every=0, final_eval=False), control):
            seen.append(event)
            if isinstance(event, ev.StepReport) and event.step == 3:
                control.pause()
                paused_at.set()

    def steps() -> int:
        return sum(isinstance(e, ev.StepReport) for e in seen)

    worker = threading.Thread(target=consume)
    worker.start()
    assert paused_at.wait(60)
    count = steps()
    worker.join(0.5)
    assert worker.is_alive() and steps() == count  # no step while paused
    control.resume()
    worker.join(60)
    assert isinstance(seen[-1], ev.Finished) and not seen[-1].stopped
    # the job said when it held and when it went on, between steps 3 and 4
    kinds = [e.kind for e in seen]
    held = kinds.index("paused")
    assert seen[held].step == 3 and kinds[held + 1] == "resumed" and seen[held + 2].step == 4
    assert not any(r.get("kind") in ("paused", "resumed") for r in RunDir(seen[0].run_dir).records())


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    events = run(tmp_path, lr=1e6, epochs=40, checkpoint_every=1, eval_every=0)
    failed = by_kind(events, ev.Failed)
    assert failed, "a learning rate of 1e6 must diverge"
    message = failed[0].message
    assert "at step" in message and "lower learning rate" in message
    run_dir = RunDir(events[0].run_dir)
    if by_kind(events, ev.Checkpointed):
        state = torch.load(run_dir.file("checkpoint.pt"), weights_only=True)
        assert state["step"] == by_kind(events, ev.Checkpointed)[-1].step
    assert run_dir.records("failed")


def test_a_method_s_preferred_encoder_settings_fill_in_unless_given():
    resolved = TrainConfig(method="invariance-only", dataset="digits").resolved()
    assert resolved.encoder_params == {"neck": "none"} and resolved.lr == 3e-2
    given = TrainConfig(method="invariance-only", dataset="digits", embedding_dim=64,
                        encoder_params={"neck": "dense"}).resolved()
    assert given.encoder_params == {"neck": "dense"}
    assert TrainConfig(method="invariance-only", dataset="digits",
                       encoder="efficientnet-lite0").resolved().encoder_params == {}  # it has no neck
    assert TrainConfig(method="simclr", dataset="digits").resolved().encoder_params == {}


@pytest.mark.parametrize("kw, match", [
    ({"method": "nope"}, "unknown method 'nope'"),
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({"encoder": "nope"}, "unknown encoder 'nope'"),
    ({"epochs": 0}, "--epochs: 0"),
    ({"batch_size": -4}, "--batch-size: -4"),
    ({"lr": 0.0}, "--lr: 0.0"),
    ({"lr": float("nan")}, "--lr: nan"),
    ({"batch_size": 5000}, "larger than the training set"),
])
def test_bad_settings_fail_with_a_clear_message(tmp_path, kw, match):
    events = run(tmp_path, **kw)
    assert len(events) == 1 and isinstance(events[0], ev.Failed)
    assert match in events[0].message


def test_corrupt_checkpoint_is_explained(tmp_path):
    first = run(tmp_path, epochs=1, eval_every=0, final_eval=False)
    ckpt = RunDir(first[0].run_dir).file("checkpoint.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    config_before = RunDir(first[0].run_dir).file("config.json").read_text()
    events = list(train(TrainConfig(resume=first[0].run_dir, epochs=2)))
    assert isinstance(events[-1], ev.Failed) and "corrupt or truncated" in events[-1].message
    assert RunDir(first[0].run_dir).file("config.json").read_text() == config_before
    json.loads(config_before)


def test_resuming_a_run_from_an_older_version_says_what_to_do(tmp_path):
    first = run(tmp_path, epochs=1, eval_every=0, final_eval=False)
    config_file = RunDir(first[0].run_dir).file("config.json")
    config = json.loads(config_file.read_text())
    config["method_params"]["retired_setting"] = 0.1  # a setting this version does not take
    config_file.write_text(json.dumps(config))
    events = list(train(TrainConfig(resume=first[0].run_dir, epochs=2)))
    assert isinstance(events[-1], ev.Failed)
    assert "unknown parameter(s) retired_setting" in events[-1].message
    assert f"--init-from {first[0].run_dir}" in events[-1].message


def test_out_of_gpu_memory_at_every_batch_size_says_so(tmp_path, monkeypatch):
    """Every halving runs out of memory too: the message says not even 2 images fit (the halving that
    finds a batch that fits is in test_data_path.py)."""
    from engine.methods.supervised import Supervised

    def exhausted(self, images, labels):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Supervised, "training_step", exhausted)
    events = run(tmp_path, batch_size=64, eval_every=0)
    failed = by_kind(events, ev.Failed)[0]
    assert failed.message.startswith("out of GPU memory at batch size 64: not even a batch of 2 fits")
    assert (RunDir(events[0].run_dir).path / "error.log").exists()


def test_budget_fits_training_evaluations_and_the_final_evaluation_into_the_limit():
    from engine.budget import TimeBudget

    budget = TimeBudget(minutes=10, started=0.0)
    # step 0: 14 s, of which 4 s the map and indicators and 4 s the reference probes; the end's
    # probes see 10x the images
    budget.measured_evaluation(14.0, 4.0, 4.0, scale=10.0)
    growth = TimeBudget.PROBE_GROWTH
    assert budget.final_seconds == pytest.approx(4 + (6 + 4) * 10 * growth)
    assert budget.eval_seconds == 10.0
    # a later, warm evaluation: 7 s, 4 of them the map; the estimate of the end follows it
    budget.measured_evaluation(7.0, 4.0, 0.0, scale=10.0)
    assert budget.final_seconds == pytest.approx(4 + (3 + 4) * 10 * growth)
    # 60 s gone, 0.1 s a step, an evaluation every 100 steps
    total = budget.total_steps(now=60.0, step=20, seconds_per_step=0.1, eval_every=100, planned=10**6)
    left = 600 * TimeBudget.SAFETY - 60 - (4 + 70 * growth)
    assert total == 20 + int(left // (0.1 + 7.0 / 100))
    assert budget.total_steps(now=60.0, step=20, seconds_per_step=0.1, eval_every=100, planned=500) == 500
    assert budget.total_steps(now=590.0, step=20, seconds_per_step=0.1, eval_every=100, planned=500) == 20


def test_budget_spaces_evaluations_out_when_they_would_eat_the_time_limit():
    from engine.budget import TimeBudget

    budget = TimeBudget(minutes=9, started=0.0)
    assert budget.eval_interval(asked=200, current=200, seconds_per_step=0.01) == 200  # nothing measured yet
    # a fast GPU: 10 ms a step, an evaluation 4 s; every 200 steps (2 s of training) evaluating would
    # take 67 % of the time. At most 20 %: 4 * 0.8 / (0.2 * 0.01) = 1600 steps, a multiple of 200
    budget.measured_evaluation(4.0, 2.0, 0.0, scale=10.0)
    assert TimeBudget.MAX_EVAL_SHARE == 0.2
    interval = budget.eval_interval(asked=200, current=200, seconds_per_step=0.01)
    assert interval == 1600
    # a little timing noise does not move it (share 4 / (4 + 1600 * 0.012) = 17 %)
    assert budget.eval_interval(asked=200, current=1600, seconds_per_step=0.012) == 1600
    # training got slower (another job on the device): evaluations come back closer, never below the ask
    assert budget.eval_interval(asked=200, current=1600, seconds_per_step=0.05) == 400
    assert budget.eval_interval(asked=200, current=1600, seconds_per_step=1.0) == 200
    # a slow CPU step: evaluating every 200 steps is already cheap, the ask stands
    assert budget.eval_interval(asked=200, current=200, seconds_per_step=0.5) == 200


def test_time_limit_spaces_evaluations_out_and_says_so(tmp_path, monkeypatch):
    from engine.budget import TimeBudget

    monkeypatch.setattr(TimeBudget, "MAX_EVAL_SHARE", 0.01)  # digits' steps are fast: any evaluation is too much
    events = run(tmp_path, epochs=10_000, time_limit=0.1, eval_every=0.25, batch_size=32)
    notes = [e.text for e in by_kind(events, ev.Message) if "evaluating every" in e.text]
    assert notes and "(asked: 0.25)" in notes[0] and "at most 1 % of the time" in notes[0]
    # the interval the note gives is several times the one asked for, and after the plan the
    # evaluations on the way keep to it (how many epochs fit in 6 s depends on the machine's load, so
    # the test reads the interval, not a count of evaluations)
    every = float(re.search(r"evaluating every ([0-9.e+-]+) epochs", notes[-1]).group(1))
    quarter = round(0.25 * events[0].steps_per_epoch)
    interval = every * events[0].steps_per_epoch  # the note rounds to 3 digits
    assert interval >= 2 * quarter
    on_the_way = [e.step for e in by_kind(events, ev.Evaluation) if not e.final and e.step > 0]
    assert all(step % quarter == 0 for step in on_the_way)  # on the grid asked for
    after_plan = [step for step in on_the_way if step > TimeBudget.FIRST_PLAN_STEP]
    assert len(after_plan) <= events[-1].summary["steps"] / interval + 1
    assert all(b - a >= 0.99 * interval for a, b in zip(after_plan, after_plan[1:]))


def test_time_limit_shortens_the_run_and_still_ends_with_the_final_evaluation(tmp_path):
    events = run(tmp_path, epochs=10_000, time_limit=0.1, eval_every=20)
    plans = by_kind(events, ev.Planned)
    assert plans and plans[-1].total_steps < 10_000 * events[0].steps_per_epoch
    assert "time limit 0.1 min" in plans[0].reason
    finished = events[-1]
    assert isinstance(finished, ev.Finished) and not finished.stopped
    assert by_kind(events, ev.Evaluation)[-1].final
    assert finished.summary["steps"] == plans[-1].total_steps
    assert finished.summary["time_limit_minutes"] == 0.1
    assert RunDir(events[0].run_dir).records("plan")


def test_time_limit_must_be_positive(tmp_path):
    events = run(tmp_path, time_limit=0)
    assert isinstance(events[-1], ev.Failed) and "--time-limit: 0" in events[-1].message
