"""The data path that keeps a GPU busy, checked where it can be on a CPU: a folder decoded by worker
processes holds the same images as one decoded in order; --compile falls back with a message where
the platform cannot compile, and compiles what it says; none of the GPU settings touch a CPU run."""
import numpy as np
import pytest
import torch
from PIL import Image

import engine.data.folder as folder
from engine import events as ev
from engine.config import TrainConfig
from engine.training import train


def test_a_folder_decoded_by_workers_is_the_folder_decoded_in_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / f"class{c}").mkdir()
        for i in range(100):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"class{c}" / f"{i}.png")
    (tmp_path / "class1" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setattr(folder, "decoding_workers", lambda n: 2)
    parallel = folder.load_folder(tmp_path)
    monkeypatch.setattr(folder, "decoding_workers", lambda n: 0)
    serial = folder.load_folder(tmp_path)
    assert len(parallel.train) + len(parallel.test) == 300
    for a, b in ((parallel.train, serial.train), (parallel.test, serial.test)):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert parallel.skipped_files == serial.skipped_files and "broken.png" in parallel.skipped_files[0]
    assert folder.decoding_workers(10) == 0  # a few files: no worker to start


def _digits(tmp_path, **kw):
    config = TrainConfig(**({"dataset": "digits", "out": str(tmp_path), "diagnostics": False, "epochs": 1,
                             "eval_every": 0, "final_eval": False, "train_size": 256, "batch_size": 64} | kw))
    return list(train(config))


def test_compile_that_the_platform_refuses_falls_back_with_a_message(tmp_path, monkeypatch):
    def refuse(fn, *a, **kw):
        def compiled(*args, **kwargs):
            raise RuntimeError("Compiler: cc is not found\nmore lines of the compiler's")
        return compiled

    monkeypatch.setattr(torch, "compile", refuse)
    events = _digits(tmp_path, compile=True)
    assert isinstance(events[-1], ev.Finished), events[-1]
    notes = [e.text for e in events if isinstance(e, ev.Message) and "--compile" in e.text]
    assert notes == ["--compile: torch.compile cannot compile convnet here (RuntimeError: Compiler: cc is not "
                     "found); training without it"]


def test_compile_runs_the_encoder_through_torch_compile(tmp_path, monkeypatch):
    calls = []

    def compile_(fn, *a, **kw):
        def compiled(*args, **kwargs):
            calls.append(args[0].shape[0])
            return fn(*args, **kwargs)
        return compiled

    plain = _digits(tmp_path, run_name="plain")
    monkeypatch.setattr(torch, "compile", compile_)
    compiled = _digits(tmp_path, compile=True, run_name="compiled")
    assert any("convnet is compiled (torch.compile)" in e.text for e in compiled if isinstance(e, ev.Message))
    assert calls[0] == 2 and calls.count(64) == 4  # the trial on two images, then every step
    losses = lambda events: [e.losses["loss"] for e in events if isinstance(e, ev.StepReport)]  # noqa: E731
    assert losses(compiled) == pytest.approx(losses(plain))
    state = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)["model"]
    assert all(k.startswith(("encoder.", "head.")) for k in state)  # the state dict as without --compile


def test_the_gpu_settings_leave_a_cpu_run_as_it_was(tmp_path):
    from engine.training import _Job

    job = _Job(TrainConfig(dataset="digits"), None)
    job.device, job.config = torch.device("cpu"), TrainConfig(dataset="digits").resolved()
    assert job._device_settings() == [] and not job.amp and not job.channels_last
    assert torch.backends.cudnn.benchmark is False


def test_gpu_check_dry_run_resolves_every_command(tmp_path):
    """bench/gpu_check.sh, the one prepared run for a lent GPU: on the CPU, --dry-run checks that each
    command it would run resolves (the scripts and their flags, torchrun, each training command's
    arguments as engine train reads them) and runs none of them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PYTHONPATH=str(root))
    done = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "every command resolves"
    ok = {line.split()[1].rstrip(":") for line in lines if line.startswith("ok ")}
    assert {"throughput", "torchrun", "supervised-epoch", "simclr-fashion-gpu", "byol-fashion-gpu",
            "vicreg-fashion-gpu", "ddp-nccl", "ddp-gloo", "ddp-cost"} <= ok
    assert not any(line.startswith("FAIL") for line in lines)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report.md").exists()  # nothing ran


def test_gpu_check_dry_run_names_a_command_that_does_not_resolve(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (root / "bench" / "gpu_check.sh").read_text().replace("--preset fashion-mnist-gpu", "--preset no-such")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "gpu_check.sh").write_text(script)
    for script in ("throughput.py", "ddp_cost.py"):
        (tmp_path / "bench" / script).write_text((root / "bench" / script).read_text())
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, PYTHONPATH=str(root))
    done = subprocess.run(["bash", str(tmp_path / "bench" / "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 1
    assert "FAIL supervised-epoch: --preset: 'no-such' is not valid" in done.stdout
    assert "ok   throughput" in done.stdout and done.stdout.splitlines()[-1] == "some commands do not resolve"


def test_out_of_gpu_memory_names_the_batch_that_fits_found_by_halving(tmp_path, monkeypatch):
    """No GPU here: a training step that runs out of memory above 16 images stands for one."""
    from engine.methods.supervised import Supervised

    step = Supervised.training_step

    def greedy(self, images, labels):
        if images.shape[0] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return step(self, images, labels)

    monkeypatch.setattr(Supervised, "training_step", greedy)
    events = _digits(tmp_path, batch_size=64)
    failed = events[-1]
    assert isinstance(failed, ev.Failed) and failed.cause == "OutOfMemoryError"
    assert failed.message == ("out of GPU memory at batch size 64: a batch of 16 fits, found by halving (32 did "
                              "not); rerun with --batch-size 16")
