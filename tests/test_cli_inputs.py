"""The command line as a user drives it with bad input: every argument error exits 2 with one message
naming the argument and the way on (never a traceback, never exit 1); exit 1 is a failed training,
out of memory included, whose message says what to change; a run given to --resume or --init-from that
cannot be used is left as it was."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.cli import main

FAST = ["--epochs", "1", "--eval-every", "0", "--no-diagnostics", "--quiet", "--train-size", "200",
        "--test-size", "100"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished digits run, and copies of it damaged in each way a run from elsewhere can be."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", *FAST, "--out", str(root), "--run-name", "good"]) == 0
    good = root / "good"
    state = torch.load(good / "checkpoint.pt", weights_only=True)

    def copy(name, damage):
        shutil.copytree(good, root / name)
        damage(root / name)

    copy("no-checkpoint", lambda d: (d / "checkpoint.pt").unlink())
    copy("no-step", lambda d: torch.save({"model": state["model"]}, d / "checkpoint.pt"))
    copy("garbage-checkpoint", lambda d: (d / "checkpoint.pt").write_bytes(b"not a checkpoint"))
    copy("wrong-weights", lambda d: torch.save({"model": {"x": torch.zeros(1)}, "step": 3}, d / "checkpoint.pt"))
    copy("garbage-config", lambda d: (d / "config.json").write_text("{not json"))
    copy("config-list", lambda d: (d / "config.json").write_text("[1, 2]"))
    config = json.loads((good / "config.json").read_text())
    copy("config-without-encoder",
         lambda d: (d / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "encoder"})))
    (root / "empty").mkdir()
    (root / "a-file.txt").write_text("x")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(capsys, argv):
    code = main(["train", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("argv, says", [
    (["--seed", "-1"], ["--seed", "-1", "allowed: a whole number from 0"]),
    (["--seed", str(2**70)], ["--seed", "allowed"]),
    (["--run-name", "a/b"], ["--run-name", "'a/b'", "a folder name"]),
    (["--run-name", ".."], ["--run-name"]),
    (["--run-name", ""], ["--run-name"]),
    (["--train-size", "0"], ["--train-size", "0", "allowed"]),
    (["--test-size", "-3"], ["--test-size", "-3", "allowed"]),
    (["--imbalance", "2"], ["--imbalance", "2.0", "allowed"]),
    (["--batch-size", "5000"], ["--batch-size", "5000", "larger than the training set (200 images)"]),
    (["--batch-size", "1"], ["--batch-size", "1", "batch norm needs 2 images a batch", "allowed: 2 to 200"]),
    (["--train-size", "1"], ["the training set has 1 image", "batch norm needs 2", "--train-size"]),
    (["--projection", "nope"], ["--projection", "'nope'", "pca"]),  # even with --no-diagnostics
    (["--dataset", "folder:"], ["folder:", "needs a path"]),
    (["--dataset", "folder:/no/such/folder"], ["/no/such/folder", "does not exist"]),
])
def test_bad_settings_exit_2_naming_them(runs, capsys, argv, says):
    code, err = _cli(capsys, [*FAST, "--out", str(runs / "out"), *argv])
    assert code == 2, err
    for text in says:
        assert text in err


def test_out_that_is_a_file_exits_2(runs, capsys):
    code, err = _cli(capsys, [*FAST, "--out", str(runs / "a-file.txt")])
    assert code == 2 and "--out" in err and "is a file" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_a_device_that_is_absent_exits_2(runs, capsys):
    code, err = _cli(capsys, [*FAST, "--out", str(runs / "out"), "--device", "cuda"])
    assert code == 2 and "no CUDA GPU is visible" in err


def test_a_method_that_needs_labels_on_an_unlabelled_folder_exits_2(runs, tmp_path, capsys):
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    code, err = _cli(capsys, [*FAST, "--out", str(runs / "out"), "--dataset", f"folder:{tmp_path}"])
    assert code == 2 and "needs class labels" in err and "self-supervised method" in err


@pytest.mark.parametrize("flag", ["--resume", "--init-from"])
@pytest.mark.parametrize("name, says", [
    ("missing", ["the folder does not exist"]),
    ("a-file.txt", ["is a file, not a run directory"]),
    ("empty", ["not a run directory: it has no config.json"]),
    ("no-checkpoint", ["has no checkpoint.pt yet", "stopped before its first", "start a new run"]),
    ("no-step", ["incomplete", "no 'step' count", "start a new run"]),
    ("garbage-checkpoint", ["corrupt or truncated", "start a new run"]),
    ("garbage-config", ["config.json cannot be read", "damaged"]),
    ("config-list", ["config.json has no valid method, dataset, encoder, embedding_dim"]),
    ("config-without-encoder", ["config.json has no valid encoder"]),
])
def test_a_run_that_cannot_be_used_exits_2_and_stays_as_it_was(runs, capsys, flag, name, says):
    source = runs / name
    before = _files(source) if source.is_dir() else None
    argv = [flag, str(source), "--quiet"]
    if flag == "--init-from":
        argv = [*FAST, "--out", str(runs / "out"), *argv]
    code, err = _cli(capsys, argv)
    assert code == 2, err
    assert f"{flag} {source}" in err
    for text in says:
        assert text in err
    if before is not None:
        assert _files(source) == before  # nothing appended, nothing rewritten


def test_resuming_weights_that_do_not_fit_the_config_exits_2(runs, capsys):
    source = runs / "wrong-weights"
    before = _files(source)
    code, err = _cli(capsys, ["--resume", str(source), "--quiet"])
    assert code == 2 and "its checkpoint does not fit its config.json" in err and "start a new run" in err
    assert _files(source) == before


def test_running_out_of_cpu_memory_names_the_cause_and_the_fix_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    """A real allocator failure (torch asks for 4 TiB) in the middle of the second epoch."""
    from engine import events as ev
    from engine.methods.supervised import Supervised
    from engine.runs import load_checkpoint
    from engine.training import TrainConfig, train

    original = Supervised.training_step
    calls = []

    def step(self, images, labels):
        calls.append(1)
        if len(calls) == 12:  # 9 steps an epoch: the first checkpoint is written after step 9
            torch.empty(1 << 42, dtype=torch.uint8)
        return original(self, images, labels)

    monkeypatch.setattr(Supervised, "training_step", step)
    config = TrainConfig(dataset="digits", out=str(tmp_path), epochs=3, checkpoint_every=1, eval_every=0,
                         diagnostics=False)
    events = list(train(config))
    failed = events[-1]
    assert isinstance(failed, ev.Failed) and not failed.bad_input
    assert failed.message.startswith("out of CPU memory at step 11 (4096.0 GiB asked for at once)")
    assert "--batch-size 64" in failed.message and "--train-size" in failed.message
    assert "the last checkpoint is kept" in failed.message and "DefaultCPUAllocator" not in failed.message
    assert load_checkpoint(events[0].run_dir)["step"] == 9


def test_out_of_memory_while_setting_up_exits_1_with_the_fix(tmp_path):
    """--embedding-dim 2e9: the encoder's last layer alone asks for a terabyte."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "engine", "train", *FAST, "--embedding-dim", "2000000000",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=root,
                          timeout=300)
    assert done.returncode == 1, done.stderr
    assert "out of CPU memory while loading the data and building the model" in done.stderr
    assert "--embedding-dim" in done.stderr and "Traceback" not in done.stderr


def test_open_of_a_folder_that_is_not_a_run_exits_2_before_any_window(runs, capsys):
    from explorer.app import main as app_main

    for path, says in ((runs / "missing", "does not exist"), (runs / "a-file.txt", "is a file"),
                       (runs / "empty", "has no config.json")):
        assert app_main(["open", str(path)]) == 2
        assert says in capsys.readouterr().err


@pytest.mark.parametrize("name, says", [("missing", "the folder does not exist"),
                                        ("garbage-config", "config.json cannot be read"),
                                        ("no-step", "no 'step' count")])
def test_export_of_a_run_that_cannot_be_used_exits_2(runs, capsys, name, says):
    assert main(["export", str(runs / name), "--out", str(runs / "exported")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_the_window_started_by_torchrun_says_distributed_runs_are_the_command_lines(monkeypatch, capsys):
    from explorer.app import main as app_main

    for name, value in (("RANK", "1"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert app_main([]) == 2
    err = capsys.readouterr().err
    assert "started by torchrun as process 1 of 4, and it trains in one process" in err
    assert "torchrun --nproc_per_node N -m engine train" in err and "embedding-explorer open RUN_DIR" in err
