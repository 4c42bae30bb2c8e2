"""The run directory as input and output: one schema per file (engine/schema.py), read by loaders that
leave out what does not fit with a note naming the file and line; and the writer's promises (a full
disk, Ctrl-C, --resume, a second writer, file permissions) with nothing saved lost.

Each test builds the bad input from a real run of the training job on digits."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import events as ev
from engine import schema
from engine.cli import main
from engine.config import TrainConfig
from engine.runs import METRICS, MetricsFollower, RunDir, load_checkpoint, load_snapshot
from engine.training import Control, train

SMALL = {"dataset": "digits", "eval_size": 200, "probe_train_size": 300, "projection": "pca"}


def by_kind(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A finished run with every file: 2 epochs, a checkpoint each epoch, the diagnostics on."""
    out = tmp_path_factory.mktemp("runs")
    events = list(train(TrainConfig(**SMALL, epochs=2, checkpoint_every=1, out=str(out), run_name="real")))
    assert isinstance(events[-1], ev.Finished)
    return Path(events[0].run_dir)


@pytest.fixture
def copy(real_run, tmp_path):
    """A fresh copy of the real run, to damage."""
    def make(name="copy"):
        target = tmp_path / name
        shutil.copytree(real_run, target)
        return target
    return make


def files_of(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- what the job writes fits the schema --------------------------------------------------------------

def test_every_file_of_a_real_run_fits_its_schema(real_run):
    config = schema.load_config(real_run / "config.json", strict=True)
    assert not config.notes and config.value["method"] == "supervised" and config.value["test_images"] > 0
    follower = MetricsFollower(real_run / METRICS)
    records = follower.poll()
    lines = (real_run / METRICS).read_text().splitlines()
    assert len(records) == len(lines) and not follower.take_notes()
    assert {r["kind"] for r in records} >= {"started", "step", "evaluation", "snapshot", "checkpoint", "finished"}
    for path in RunDir(real_run).snapshot_paths():
        snap = schema.load_snapshot(path, config.value)
        assert snap.value is not None and not snap.notes
        assert {"embeddings", "indices", "labels", "coords", "kmeans_clusters"} <= set(snap.value)
    summary = schema.load_summary(real_run / "summary.json")
    assert not summary.notes and summary.value["linear_probe_acc"] > 0.9 and "precision_at_1" in summary.value
    assert load_checkpoint(real_run)["step"] == records[-1]["summary"]["steps"]


def test_the_schema_of_metrics_is_the_events_own_declaration():
    assert set(schema.RECORD_KINDS) == {cls.kind for cls in ev.EVENTS}
    spec = schema.record_spec("step")
    assert spec["losses"][0] == dict[str, float] and spec["step"] == (int, True)
    assert schema.record_spec("snapshot")["dim"] == (int, False)  # the line's fields, not the event's arrays


def test_the_writer_refuses_what_does_not_fit(tmp_path):
    run = RunDir.create(tmp_path, "w")
    with pytest.raises(ValueError, match="'step' is \"x\", not a whole number"):
        run.append({"kind": "checkpoint", "step": "x", "epoch": 1.0, "path": "p"})
    with pytest.raises(ValueError, match="undeclared kind"):
        run.append({"kind": "mystery"})
    with pytest.raises(ValueError, match="'coords' has shape"):
        run.save_snapshot(0, embeddings=np.zeros((3, 2), np.float32), indices=np.arange(3), labels=np.zeros(3, int),
                          coords=np.zeros((3, 5)))
    assert not (tmp_path / "w" / METRICS).exists() and not list((tmp_path / "w" / "snapshots").iterdir())


# --- config.json from elsewhere -----------------------------------------------------------------------

@pytest.mark.parametrize("text, note", [
    ("[1, 2]", "config.json: a list, not a JSON object"),
    ('"digits"', "config.json: text, not a JSON object"),
    ('{"method": ', "not JSON"),
    (b"\xff\xfe{}", "cannot be read"),
])
def test_a_config_that_is_not_an_object_reads_as_empty_with_a_note(copy, text, note):
    run = copy()
    (run / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    loaded = RunDir(run).read_config()
    assert loaded.value in (None, {}) and note in loaded.notes[0]
    with pytest.raises(ValueError, match="does not describe a run"):
        RunDir(run).config()


def test_a_config_field_of_the_wrong_type_is_left_out_and_named(copy):
    run = copy()
    config = json.loads((run / "config.json").read_text())
    config.update(dataset=["x"], class_names=5, seed="zero", image_size=[8])
    (run / "config.json").write_text(json.dumps(config))
    loaded = RunDir(run).read_config()
    assert "dataset" not in loaded.value and "class_names" not in loaded.value and "seed" not in loaded.value
    assert loaded.value["method"] == "supervised"  # the rest reads
    text = " | ".join(loaded.notes)
    assert "'dataset' is [\"x\"], not text" in text and "'class_names' is 5, not a list of texts" in text
    assert "'seed' is \"zero\", not a whole number" in text and "'image_size' is [8], not [height, width]" in text


def test_resuming_a_run_whose_config_does_not_fit_names_the_field_and_changes_nothing(copy, capsys):
    run = copy()
    config = json.loads((run / "config.json").read_text())
    config["lr"] = "fast"
    (run / "config.json").write_text(json.dumps(config))
    before = files_of(run)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "config.json: 'lr' is \"fast\", not a number or null" in err and "Traceback" not in err
    assert files_of(run) == before


# --- metrics.jsonl from elsewhere ---------------------------------------------------------------------

BAD_LINES = [
    "[1, 2]",
    '"text"',
    "{not json",
    '{"kind": 5}',
    '{"kind": "teleport", "step": 1}',
    '{"kind": "step", "step": "a", "epoch": 1.0, "losses": 3, "lr": 0.1, "images_per_second": 1.0}',
    '{"kind": "started", "run_dir": "x", "config": [], "device": "cpu", "device_name": "cpu", '
    '"steps_per_epoch": "many", "total_steps": 10}',
    '{"kind": "evaluation", "step": 3, "epoch": 1.0, "metrics": [1]}',
    '{"kind": "finished", "summary": 3}',
    '{"kind": "step", "step": true, "epoch": 1.0, "losses": {"loss": 0.5}, "lr": 0.1, "images_per_second": 1.0}',
]


def test_bad_metrics_lines_are_skipped_with_their_line_numbers(tmp_path):
    good = '{"kind": "step", "step": 1, "epoch": 0.1, "losses": {"loss": 0.5}, "lr": 0.1, "images_per_second": 9.0}'
    path = tmp_path / METRICS
    path.write_text("\n".join([good] + BAD_LINES + [good.replace('"step": 1', '"step": 2')]) + "\n")
    follower = MetricsFollower(path)
    records = follower.poll()
    assert [r["step"] for r in records] == [1, 2]  # the good line after the bad ones is kept
    notes = follower.take_notes()
    assert len(notes) == len(BAD_LINES)
    for number, note in enumerate(notes, start=2):
        assert note.startswith(f"metrics.jsonl line {number}")
    assert "a list, not a JSON object" in notes[0] and "not JSON" in notes[2]
    assert "unknown kind \"teleport\"" in notes[4]
    assert "'step' is \"a\", not a whole number; 'losses' is 3, not an object" in notes[5]
    assert "'step' is true, not a whole number" in notes[9]


def test_following_a_live_file_keeps_the_lines_after_a_bad_one_in_the_same_poll(tmp_path):
    path = tmp_path / METRICS
    step = '{{"kind": "step", "step": {}, "epoch": 0.1, "losses": {{"loss": 0.5}}, "lr": 0.1, "images_per_second": 9.0}}'
    path.write_text(step.format(1) + "\n")
    follower = MetricsFollower(path)
    assert len(follower.poll()) == 1
    with open(path, "a") as f:
        f.write("[]\n" + step.format(2) + "\n" + '{"kind": "step", "step": 3')  # the last line still being written
    assert [r["step"] for r in follower.poll()] == [2]
    assert follower.take_notes() == ["metrics.jsonl line 2: a list, not a JSON object: skipped"]
    with open(path, "a") as f:
        f.write(', "epoch": 0.3, "losses": {"loss": 0.4}, "lr": 0.1, "images_per_second": 9.0}\n')
    assert [r["step"] for r in follower.poll()] == [3] and not follower.take_notes()


# --- snapshots from elsewhere -------------------------------------------------------------------------

def _rewrite_snapshot(path: Path, change) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(path, **arrays)


@pytest.mark.parametrize("change, note, usable", [
    (lambda a: a.update(embeddings=a["embeddings"][:, 0]), "'embeddings' has shape (200,), not 2-dimensional", False),
    (lambda a: a.update(labels=a["labels"][:5]), "'labels' has shape (5,), not (200,)", False),
    (lambda a: a.update(indices=a["indices"] + 0.5), "'indices' has float64 values, not whole numbers", False),
    (lambda a: a.update(indices=a["indices"] + 10**6), "'indices' has rows outside the test split", False),
    (lambda a: a.update(labels=a["labels"] + 50), "'labels' has labels outside -1 to 9", False),
    (lambda a: a.update(embeddings=a["embeddings"] * np.nan), "'embeddings' has values that are NaN", False),
    (lambda a: a.pop("embeddings"), "'embeddings' missing", False),
    (lambda a: a.update(step=np.array("x")), "'step' has <U1 values", False),
    (lambda a: a.update(coords=np.zeros((3, 7))), "'coords' has shape (3, 7), not (200, 2): left out", True),
    (lambda a: a.update(kmeans_clusters=np.zeros(200)), "'kmeans_clusters' has float64 values", True),
])
def test_a_snapshot_that_does_not_fit_is_skipped_or_loses_the_member(copy, change, note, usable):
    run = copy()
    path = RunDir(run).snapshot_paths()[-1]
    _rewrite_snapshot(path, change)
    config = RunDir(run).config()
    loaded = schema.load_snapshot(path, config)
    assert any(note in n for n in loaded.notes), loaded.notes
    assert all(n.startswith(f"snapshots/{path.name}") for n in loaded.notes)
    assert (loaded.value is not None) == usable
    if usable:
        assert loaded.value["embeddings"].shape == (200, 128)


class _Trap:
    """Unpickling this would create a file: the test checks that it never happens."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_a_pickled_member_is_refused_without_running_it(copy, tmp_path):
    run = copy()
    path = RunDir(run).snapshot_paths()[-1]
    trap = tmp_path / "pickle_ran"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["embeddings"] = np.array([_Trap(str(trap))] * 3, dtype=object)
    np.savez(path, **arrays)  # np.savez pickles object arrays
    assert pickle.loads(pickle.dumps(_Trap(str(tmp_path / "proof")))) is None and (tmp_path / "proof").exists()
    loaded = schema.load_snapshot(path)
    assert loaded.value is None and "Python objects" in loaded.notes[0]
    assert not trap.exists()
    with pytest.raises(ValueError, match="never done"):
        load_snapshot(path)


@pytest.mark.parametrize("data, note", [(b"PK\x03\x04cut", "cannot be read"), (b"", "cannot be read")])
def test_a_snapshot_that_is_not_an_npz_is_skipped(copy, data, note):
    path = RunDir(copy()).snapshot_paths()[-1]
    path.write_bytes(data)
    loaded = schema.load_snapshot(path)
    assert loaded.value is None and note in loaded.notes[0]


def test_a_summary_of_the_wrong_shape_reads_what_fits(copy):
    run = copy()
    (run / "summary.json").write_text(json.dumps({"method": "x", "epochs": "many", "knn_acc": 0.5, "odd": [1]}))
    loaded = schema.load_summary(run / "summary.json")
    assert loaded.value == {"method": "x", "knn_acc": 0.5}
    assert any("'epochs' is \"many\", not a number" in n for n in loaded.notes)
    (run / "summary.json").write_text("[1]")
    assert RunDir(run).summary() is None


# --- checkpoints -------------------------------------------------------------------------------------

def test_a_checkpoint_cut_short_says_it_is_incomplete_and_what_to_do(copy):
    run = copy()
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError) as error:
        load_checkpoint(run)
    message = str(error.value)
    assert "is incomplete" in message and "cut short" in message and "copy its checkpoint.pt again" in message
    assert "inline_container" not in message


@pytest.mark.parametrize("state, match", [
    ({"model": {"w": torch.zeros(1)}}, "no 'step' count"),
    ({"model": {"w": 3}, "step": 1}, "no 'model' weights"),
    ([1, 2], "it holds a list"),
])
def test_a_checkpoint_that_is_not_ours_is_named(tmp_path, state, match):
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=match):
        load_checkpoint(tmp_path)


# --- a full disk ---------------------------------------------------------------------------------------

class _FullDisk:
    """Every write to the run directory fails with ENOSPC once ``full`` is set, as on a full disk:
    the appends (os.write) and the whole files (the file objects engine.runs opens)."""

    def __init__(self, monkeypatch, errno_code=errno.ENOSPC):
        import engine.runs as runs

        self.full, self.code = False, errno_code
        real_write, real_fdopen = os.write, os.fdopen

        def write(fd, data):
            if self.full:
                raise OSError(self.code, os.strerror(self.code))
            return real_write(fd, data)

        def fdopen(fd, *args, **kw):
            f = real_fdopen(fd, *args, **kw)
            real = f.write

            def limited(data):
                if self.full:
                    raise OSError(self.code, os.strerror(self.code))
                return real(data)

            f.write = limited
            return f

        monkeypatch.setattr(runs.os, "write", write)
        monkeypatch.setattr(runs.os, "fdopen", fdopen)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "quota")])
def test_a_full_disk_gives_one_line_naming_the_folder_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys,
                                                                                   code, words):
    import engine.training as training

    disk = _FullDisk(monkeypatch, code)
    original = training._Job._checkpoint
    saved = []

    def checkpoint(job):
        event = original(job)
        saved.append(event.step)
        if len(saved) == 1:
            disk.full = True  # the disk fills up after the first checkpoint
        return event

    monkeypatch.setattr(training._Job, "_checkpoint", checkpoint)
    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--checkpoint-every", "1", "--eval-size", "200",
               "--probe-train-size", "300", "--no-diagnostics", "--out", str(tmp_path), "--run-name", "full",
               "--quiet"])
    err = capsys.readouterr().err.strip()
    run = tmp_path / "full"
    assert rc == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert words in err and str(run) in err and "last good checkpoint" in err
    assert load_checkpoint(run)["step"] == saved[0]  # the last good one loads
    assert not list(run.rglob("*.tmp"))
    lines = (run / METRICS).read_bytes()
    assert lines.endswith(b"\n") and all(json.loads(line) for line in lines.splitlines())  # no torn line


def test_a_checkpoint_cut_by_a_full_disk_reports_the_disk_not_torch(tmp_path, monkeypatch):
    disk = _FullDisk(monkeypatch)
    run = RunDir.create(tmp_path, "r")
    run.save_checkpoint({"model": {"w": torch.zeros(10)}, "step": 1})
    disk.full = True
    with pytest.raises(OSError) as error:
        run.save_checkpoint({"model": {"w": torch.ones(10**5)}, "step": 2})
    assert "the disk is full" in str(error.value) and "inline_container" not in str(error.value)
    assert load_checkpoint(run.path)["step"] == 1 and not list(run.path.glob(".*.tmp"))


def test_a_record_cut_by_a_full_disk_is_taken_back(tmp_path, monkeypatch):
    import engine.runs as runs

    run = RunDir.create(tmp_path, "r")
    run.append(ev.Message("first").to_record())
    real_write = os.write

    def half_then_full(fd, data):  # the disk takes part of the line, then refuses
        if len(data) > 10:
            return real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "write", half_then_full)
    with pytest.raises(OSError, match="disk is full"):
        run.append(ev.Message("second").to_record())
    monkeypatch.undo()
    run.append(ev.Message("third").to_record())
    assert [r["text"] for r in run.records()] == ["first", "third"]


# --- Ctrl-C ---------------------------------------------------------------------------------------------

def _ctrl_c_at_step(monkeypatch, step: int, times: int):
    """Send ``times`` SIGINTs to this process right after training step ``step``."""
    import engine.training as training

    original = training._Job._train_step

    def train_step(job, rows, scheduler):
        event = original(job, rows, scheduler)
        if event.step == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return event

    monkeypatch.setattr(training._Job, "_train_step", train_step)


CLI_SMALL = ["train", "--dataset", "digits", "--epochs", "5", "--eval-size", "200", "--probe-train-size", "300",
             "--no-diagnostics", "--quiet"]


def test_ctrl_c_stops_the_run_as_stop_does(tmp_path, monkeypatch, capsys):
    _ctrl_c_at_step(monkeypatch, 4, times=1)
    handler = signal.getsignal(signal.SIGINT)
    rc = main(CLI_SMALL + ["--out", str(tmp_path), "--run-name", "c"])
    out, err = capsys.readouterr()
    run = RunDir(tmp_path / "c")
    assert rc == 130 and "Traceback" not in err
    assert "Ctrl-C: stopping" in out + err and "Ctrl-C again aborts" in out + err
    assert run.summary()["stopped"] is True and run.summary()["steps"] == 4
    assert run.load_checkpoint()["step"] == 4
    last = run.records()[-1]
    assert last["kind"] == "finished" and last["stopped"] is True
    assert signal.getsignal(signal.SIGINT) is handler  # put back


def test_a_second_ctrl_c_aborts_with_an_end_record(tmp_path, monkeypatch, capsys):
    _ctrl_c_at_step(monkeypatch, 4, times=2)
    rc = main(CLI_SMALL + ["--out", str(tmp_path), "--run-name", "c", "--checkpoint-every", "1"])
    err = capsys.readouterr().err
    run = RunDir(tmp_path / "c")
    assert rc == 130 and "aborted by a second Ctrl-C" in err and "Traceback" not in err
    last = run.records()[-1]
    assert last["kind"] == "failed" and "second Ctrl-C" in last["message"]  # the window stops following it


def test_ctrl_c_in_a_terminal_stops_the_command_line_run(tmp_path):
    """As a user does it: python -m engine train in its own process, SIGINT once it trains."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "engine", *CLI_SMALL, "--epochs", "200", "--out", str(tmp_path),
                             "--run-name", "c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "c" / METRICS
    follower = MetricsFollower(metrics)
    try:
        while not any(r["kind"] == "step" for r in follower.poll()):  # until it trains
            assert proc.poll() is None, proc.stderr.read()
            try:
                proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    run = RunDir(tmp_path / "c")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "Ctrl-C: stopping" in out + err and run.summary()["stopped"] is True
    assert run.records()[-1]["kind"] == "finished" and run.load_checkpoint()["step"] == run.summary()["steps"]


# --- --resume --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, named", [
    (["--lr", "0.1"], "--lr"),
    (["--method", "triplet", "--margin", "0.3"], "--method, --margin"),
    (["--dataset", "fashion-mnist"], "--dataset"),
    (["--init-from", "somewhere"], "--init-from"),
    (["--preset", "digits"], "--preset"),
    (["--no-diagnostics"], "--no-diagnostics"),
])
def test_resume_refuses_every_other_flag_by_name(copy, capsys, flags, named):
    run = copy()
    before = files_of(run)
    assert main(["train", "--resume", str(run), "--epochs", "4", *flags, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{named} cannot change on resume" in err and "allowed: --epochs, --time-limit, --eval-every, --device" in err
    assert files_of(run) == before


def test_resume_through_the_engine_refuses_a_changed_setting(copy):
    run = copy()
    events = list(train(TrainConfig(resume=str(run), epochs=4, lr=0.5)))
    assert len(events) == 1 and isinstance(events[0], ev.Failed) and "--lr cannot change on resume" in events[0].message


def test_resuming_a_finished_run_says_how_to_extend_it(copy, capsys):
    run = copy()
    before = files_of(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is finished (2 epochs)" in err and f"--resume {run} --epochs 4" in err
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2  # not more than it trained
    assert files_of(run) == before


def test_resume_applies_and_records_what_may_change(copy, capsys):
    run = copy()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--eval-every", "0.5", "--time-limit", "30",
                 "--device", "cpu", "--quiet"]) == 0
    config = RunDir(run).config()
    assert config["epochs"] == 3 and config["eval_every"] == 0.5 and config["time_limit"] == 30
    assert config["device"] == "cpu" and config["lr"] == 2e-3  # the rest as saved
    records = RunDir(run).records()
    resumed = [r for r in records if r["kind"] == "continued"]
    assert len(resumed) == 1 and resumed[0]["changes"] == {"epochs": [2, 3], "eval_every": [1.0, 0.5],
                                                           "time_limit": [None, 30.0], "device": ["auto", "cpu"]}
    assert RunDir(run).summary()["epochs"] == 3 and [r["kind"] for r in records].count("finished") == 2


# --- one writer at a time ------------------------------------------------------------------------------------

HOLDER = """
import sys
from engine.runs import RunDir
RunDir(sys.argv[1]).lock()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_is_refused_naming_the_process_and_a_dead_ones_lock_is_taken_over(copy):
    run = copy()
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = files_of(run)
        events = list(train(TrainConfig(resume=str(run), epochs=3)))
        assert len(events) == 1 and isinstance(events[0], ev.Failed)
        assert f"is being written by process {holder.pid} on " in events[0].message
        assert files_of(run) == before  # nothing written, not even a failure record
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it, the lock file stays behind
        holder.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    events = list(train(TrainConfig(resume=str(run), epochs=3)))
    assert isinstance(events[-1], ev.Finished)


def test_a_run_being_written_is_refused_in_the_same_process_too(tmp_path):
    control = Control()
    first = train(TrainConfig(**SMALL, epochs=50, diagnostics=False, out=str(tmp_path), run_name="r"), control)
    started = next(first)
    second = list(train(TrainConfig(resume=started.run_dir, epochs=60)))
    assert isinstance(second[-1], ev.Failed) and f"process {os.getpid()}" in second[-1].message
    control.stop()
    assert isinstance(list(first)[-1], ev.Finished)  # the first writer is undisturbed


# --- permissions -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_get_the_permissions_of_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        events = list(train(TrainConfig(**SMALL, epochs=1, out=str(tmp_path), run_name="p", diagnostics=False)))
        (tmp_path / "plain").write_text("x")  # what any program gets
    finally:
        os.umask(old)
    assert isinstance(events[-1], ev.Finished)
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    files = [p for p in Path(events[0].run_dir).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", ".lock"}
    assert any(p.suffix == ".npz" for p in files)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(expected) for p in files}


# --- the runs of a folder at a glance (engine.runs.list_runs) ----------------------------------------

def _lines(path: Path) -> list[str]:
    return (path / METRICS).read_text().splitlines(keepends=True)


def _without_end(run: Path) -> None:
    lines = [line for line in _lines(run) if json.loads(line)["kind"] != "finished"]
    (run / METRICS).write_text("".join(lines))


def test_a_finished_run_is_listed_with_its_settings_and_last_step(real_run):
    from engine.runs import read_listing

    listing = read_listing(real_run)
    records = RunDir(real_run).records()
    assert listing.status == "finished" and listing.message == ""
    assert listing.config == RunDir(real_run).config()
    assert listing.step == max(r["step"] for r in records if "step" in r)
    assert listing.total_steps == by_kind_records(records, "started")[-1]["total_steps"]


def by_kind_records(records, kind):
    return [r for r in records if r["kind"] == kind]


def test_each_status_is_read_from_the_run_s_files(copy):
    from engine.runs import LOCK, read_listing

    failed = copy("failed")
    _without_end(failed)
    RunDir(failed).append(ev.Failed("out of memory: lower --batch-size", step=12).to_record())
    assert (read_listing(failed).status, read_listing(failed).message) == ("failed", "out of memory: lower --batch-size")

    stopped = copy("stopped")
    lines = _lines(stopped)
    end = json.loads(lines[-1]) | {"stopped": True}
    (stopped / METRICS).write_text("".join(lines[:-1]) + json.dumps(end) + "\n")
    assert read_listing(stopped).status == "stopped" and "stopped at step" in read_listing(stopped).message

    cut = copy("cut")  # no end record: running while its writer lives, stopped once it is gone
    _without_end(cut)
    host = __import__("socket").gethostname()
    (cut / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": host}))
    assert read_listing(cut).status == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (cut / LOCK).write_text(json.dumps({"pid": dead.pid, "host": host}))
    listing = read_listing(cut)
    assert listing.status == "stopped" and "without an end record" in listing.message
    (cut / LOCK).write_text("")  # no holder to ask (another program's run): its last write decides
    assert read_listing(cut).status == "running"
    old = (cut / METRICS).stat().st_mtime - 3600
    os.utime(cut / METRICS, (old, old))
    assert read_listing(cut).status == "stopped"

    resumed = copy("resumed")  # started again after its end: its last start counts
    RunDir(resumed).append(next(r for r in RunDir(resumed).records() if r["kind"] == "started"))
    (resumed / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": host}))
    assert read_listing(resumed).status == "running"


@pytest.mark.parametrize("damage, words", [
    (lambda run: (run / "config.json").write_text("{not json"), "not JSON"),
    (lambda run: (run / "config.json").write_text(json.dumps({"dataset": "digits"})), "method, encoder"),
    (lambda run: (run / METRICS).write_bytes(b"\x00garbage\n" * 10), "no line of it can be read"),
])
def test_a_damaged_run_is_listed_as_damaged_saying_why(copy, damage, words):
    from engine.runs import read_listing

    run = copy()
    damage(run)
    listing = read_listing(run)
    assert listing.status == "damaged" and words in listing.message


def test_a_long_log_is_read_from_its_end(copy):
    from engine.runs import TAIL_BYTES, read_listing

    run = copy()
    lines = _lines(run)
    steps = [line for line in lines if json.loads(line)["kind"] == "step"]
    padding = steps * (2 * TAIL_BYTES // sum(map(len, steps)) + 2)
    (run / METRICS).write_text("".join(lines[:-1] + padding + lines[-1:]))
    assert (run / METRICS).stat().st_size > 2 * TAIL_BYTES
    assert read_listing(run).status == "finished"


def test_the_folder_lists_its_runs_newest_first_and_nothing_else(copy, tmp_path):
    from engine.runs import list_runs

    runs = [copy(name) for name in ("b", "a", "c")]
    for age, run in zip((300, 100, 200), runs):
        stamp = (run / "config.json").stat().st_mtime - age
        os.utime(run / "config.json", (stamp, stamp))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "a-file.txt").write_text("x")
    assert [r.name for r in list_runs(tmp_path)] == ["a", "c", "b"]
    assert list_runs(tmp_path / "missing") == []
