"""Training on several processes (engine/distributed.py), on the CPU with gloo, as a person starts it:
``torchrun --nproc_per_node 2 -m engine train ...``. Two processes on digits follow the loss of one
process with the same global batch, SimCLR's negatives are the global batch's, the run directory is
the one a single process writes and the window opens it; a world size that does not divide the batch
is refused saying what would; a killed rank stops the other with a message and the checkpoint resumes
on one process, then on two; in forked processes, the gradient of two ranks is one process's."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.cli import main
from engine.config import TrainConfig
from engine.distributed import (Launch, check_batch_divides, check_k_by_m_divides, first_host,
                                launch_from_environment)
from engine.losses.ssl import NTXent
from engine.runs import MetricsFollower, RunDir
from engine.schema import load_config, load_snapshot, load_summary
from engine.training import train

ROOT = Path(__file__).resolve().parents[1]
# 6 steps an epoch of 64 images: the global batch of every test here
SMALL = ["--method", "simclr", "--dataset", "digits", "--train-size", "384", "--test-size", "200",
         "--batch-size", "64", "--eval-every", "0", "--no-diagnostics", "--device", "cpu", "--projection", "pca",
         "--quiet"]


def torchrun(*args: str) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node 2 -m engine train ARGS`` (standalone: a free port)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "engine", "train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def losses(run: Path) -> list[float]:
    return [r["losses"]["loss"] for r in RunDir(run).records("step")]


# --- one process against two ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same SimCLR run (2 epochs, 12 steps) on two processes and on one."""
    out = tmp_path_factory.mktemp("dist")
    proc = torchrun(*SMALL, "--epochs", "2", "--out", str(out), "--run-name", "two")
    # the one process trains here while the two start up (their imports and rendezvous)
    config = TrainConfig(method="simclr", dataset="digits", train_size=384, test_size=200, batch_size=64,
                         epochs=2, eval_every=0, diagnostics=False, device="cpu", projection="pca", out=str(out),
                         run_name="one")
    events = list(train(config))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert isinstance(events[-1], ev.Finished), events[-1]
    return out / "two", out / "one", stdout


def test_two_processes_follow_one_process_loss(two_runs):
    two, one, _ = two_runs
    a, b = np.array(losses(two)), np.array(losses(one))
    assert len(a) == len(b) == 12
    # the first step is the same computation split in two (gathered negatives, synchronised batch norm,
    # the views of the global batch's draws); float sums in another order, then Adam's first steps
    # (about lr times the sign of each gradient) let the rounding grow a little
    assert a[0] == pytest.approx(b[0], rel=1e-5)
    assert np.abs(a - b).max() < 0.05 * b.mean()
    assert a[-1] < a[0] - 0.3 and b[-1] < b[0] - 0.3  # both learn


def test_simclr_negatives_are_the_global_batch(two_runs):
    two, one, _ = two_runs
    for run in (two, one):
        stats = [r["stats"] for r in RunDir(run).records("step")]
        # every view of the 64 images, but the anchor and its partner: 2 x 64 - 2 (32 a process: 62 without gathering)
        assert {s["negatives_per_anchor"] for s in stats} == {2 * 64 - 2}


def test_run_directory_is_a_single_process_one_and_the_window_opens_it(two_runs, qtbot):
    two, one, stdout = two_runs
    assert "distributed: 2 processes (gloo, torchrun)" in stdout
    assert stdout.count("run directory:") == 1  # rank 0 alone prints and writes
    files = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.name != ".lock")  # noqa: E731
    assert files(two) == files(one)
    c2, c1 = load_config(two / "config.json", strict=True).value, load_config(one / "config.json", strict=True).value
    differ = {k for k in c1 if c1[k] != c2[k]}
    assert differ == {"run_name"}, differ
    kinds = lambda run: [r["kind"] for r in RunDir(run).records() if r["kind"] != "message"]  # noqa: E731
    assert kinds(two) == kinds(one)
    follower = MetricsFollower(two / "metrics.jsonl")
    assert follower.poll() and not follower.take_notes()
    for snapshot in (two / "snapshots").glob("*.npz"):
        assert not load_snapshot(snapshot, c2).notes
    summary = load_summary(two / "summary.json")
    assert not summary.notes and summary.value["steps"] == 12
    assert summary.value["linear_probe_acc"] == pytest.approx(RunDir(one).summary()["linear_probe_acc"], abs=0.05)

    from explorer import jobs
    from explorer.session import Session
    from explorer.state import RunStatus

    session = Session()
    session.projection = "pca"  # the runs' own map: nothing to compute in a worker
    try:
        run = session.open_run(two)
        assert run.status == RunStatus.FINISHED and len(run.snapshots) == 2 and run.total_steps == 12
    finally:
        session.shutdown()
        qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=10_000)


# --- faults -------------------------------------------------------------------------------------------

def _worker(parent: int, rank: int) -> int | None:
    """The pid of rank ``rank`` among ``parent``'s children (its environment says RANK)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process in /proc")
def test_a_killed_rank_stops_the_other_and_the_checkpoint_resumes_on_one_process_then_two(tmp_path):
    proc = torchrun(*SMALL, "--epochs", "40", "--checkpoint-every", "1", "--out", str(tmp_path), "--run-name", "k")
    run = tmp_path / "k"
    deadline = time.monotonic() + 400
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    rank1 = _worker(proc.pid, 1)
    assert rank1 is not None
    os.kill(rank1, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "another process of this 2-process run stopped" in stderr
    assert "the last checkpoint is kept" in stderr and "resumes on any number of processes" in stderr
    failed = RunDir(run).records("failed")
    assert failed and failed[-1]["cause"] == "PeerLost"
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert saved % 6 == 0 and saved > 0

    # the checkpoint resumes on one process: one more epoch than it had
    more = list(train(TrainConfig(resume=str(run), epochs=saved // 6 + 1)))
    assert isinstance(more[-1], ev.Finished), more[-1]
    assert more[0].start_step == saved
    assert [e.step for e in more if isinstance(e, ev.StepReport)] == list(range(saved + 1, saved + 7))

    # and on two processes again (forked here, as torchrun starts them): one more epoch
    ended = in_two_processes(_resume_rank, str(run), saved // 6 + 2)
    assert ended[0][0] == "Finished" and ended[1][0] == "Finished", ended
    assert ended[0][1] == saved + 12 and ended[1][1] == saved + 12
    steps = [r["step"] for r in RunDir(run).records("step")]
    assert steps[-12:] == list(range(saved + 1, saved + 13)) and load_summary(run / "summary.json").value["steps"] == saved + 12


def _resume_rank(rank: int, run: str, epochs: int):
    from engine.distributed import launch_from_environment

    events = list(train(TrainConfig(resume=run, epochs=epochs), launch=launch_from_environment()))
    last = events[-1]
    return type(last).__name__, getattr(last, "summary", {}).get("steps"), getattr(last, "message", "")


def test_a_world_size_that_does_not_divide_the_batch_says_what_would(tmp_path, capsys, monkeypatch):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "3"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    code = main(["train", *SMALL, "--epochs", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--batch-size: a global batch of 64 images does not divide among 3 processes" in err
    assert "--batch-size 63 or --batch-size 66" in err and "run 2, 4, 8" in err
    assert not list(tmp_path.iterdir())  # refused before anything was written, before any process waits

    code = main(["train", "--method", "triplet", "--dataset", "digits", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "K x M = 8 x 16: a global batch of 128 images" in err and "--samples-per-class 15" in err


def test_dist_flags_need_a_launcher(tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    code = main(["train", *SMALL, "--dist-backend", "gloo", "--out", str(tmp_path)])
    assert code == 2 and "--dist-backend applies to a run on several processes" in capsys.readouterr().err


def test_resume_takes_the_launch_flags():
    from engine.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--resume", "runs/x", "--dist-backend", "gloo", "--dist-timeout", "60",
                                      "--epochs", "4"])
    assert config_from_args(args).resume == "runs/x"  # not refused: how the processes connect may change


# --- the parts --------------------------------------------------------------------------------------

def test_launch_from_torchrun_and_srun_environments():
    assert launch_from_environment({}) is None
    torchrun_env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launch_from_environment(torchrun_env, "gloo", 60) == Launch(3, 8, 1, 2, "torchrun", backend="gloo",
                                                                       timeout=60.0)
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
            "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}
    launch = launch_from_environment(srun)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.local_world_size) == (5, 8, 1, 4)
    assert (launch.launcher, launch.master_addr, launch.master_port) == ("srun", "gpu07", 24242)
    assert launch_from_environment(srun | {"MASTER_ADDR": "head", "MASTER_PORT": "1234"}).master_port == 1234
    # the batch script itself (no step) is not a rank
    assert launch_from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    with pytest.raises(ValueError, match="RANK='x' is not a whole number"):
        launch_from_environment({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="--dist-backend: 'mpi' is not valid"):
        launch_from_environment(torchrun_env, "mpi")
    assert [first_host(s) for s in ("n[003-005,9],c1", "head", "a1,b2", "")] == ["n003", "head", "a1", ""]


def test_batch_shares():
    assert check_batch_divides(512, 8) == 64 and check_k_by_m_divides(10, 8, 4) == 20
    with pytest.raises(ValueError, match=r"use --batch-size 99 or --batch-size 102 \(a multiple of 3\)"):
        check_batch_divides(100, 3)
    with pytest.raises(ValueError, match=r"--samples-per-class 9 or 6, or --classes-per-batch 12"):
        check_k_by_m_divides(10, 8, 3)


def test_nt_xent_split_by_anchors_is_the_whole_loss():
    """Each rank's anchors against every view: the mean of the ranks' losses is NT-Xent of the batch."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    loss = NTXent(0.5)
    shares = [torch.nn.functional.cross_entropy(*loss.anchor_logits(z1, z2, torch.arange(r * 4, r * 4 + 4)))
              for r in range(2)]
    assert torch.stack(shares).mean() == pytest.approx(float(loss(z1, z2)), rel=1e-6)


# --- gathered with their gradients: one step's gradients on two processes are one process's ---------

def in_two_processes(fn, *args) -> dict:
    """``fn(rank, *args)`` in two forked processes (torch and the data are loaded already: a child
    starts at once), with the environment torchrun gives its ranks; {rank: what fn returned}. A
    child's exception comes back as its repr, and fails the test."""
    import multiprocessing
    import socket

    # loaded here, once, for both children: what DDP and the gathers import would take each ~10 s
    import torch._dynamo  # noqa: F401
    import torch.distributed._functional_collectives  # noqa: F401
    from torch.nn.parallel import DistributedDataParallel  # noqa: F401

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_child, args=(rank, port, fn, args, queue), daemon=True) for rank in range(2)]
    for child in children:
        child.start()
    try:
        results = dict(queue.get(timeout=120) for _ in children)
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    for rank, (ok, value) in results.items():
        assert ok, f"rank {rank}: {value}"
    return {rank: value for rank, (_, value) in results.items()}


def _child(rank: int, port: int, fn, args, queue) -> None:
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        torch.set_num_threads(1)
        queue.put((rank, (True, fn(rank, *args))))
    except BaseException as error:  # noqa: BLE001 (the parent reports it)
        queue.put((rank, (False, repr(error))))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _rank_gradients(rank: int, name: str):
    """One training step of ``name`` on this rank's half of the batch, the gradients averaged over the
    ranks as DDP averages them."""
    import torch.distributed as dist

    from engine import distributed

    dist.init_process_group("gloo", rank=rank, world_size=2)
    method, images, labels = _grad_case(name)
    method.shard = distributed.Shard(rank, 2)
    if method.sync_batch_norm:
        method = distributed.sync_batch_norm(method, torch.device("cpu"))
    step = distributed.wrap(distributed.TrainingSteps(method), torch.device("cpu"))
    out = step(*(x[rank * 16:(rank + 1) * 16] for x in (images, labels)))
    out.loss.backward()
    # numpy: a tensor would travel through shared memory that this process takes with it when it ends
    grads = {k: p.grad.numpy().copy() for k, p in method.named_parameters() if p.grad is not None}
    return out.loss.item(), dict(out.stats), grads


def _grad_case(name: str):
    from engine.data import load_dataset
    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    ds = load_dataset("digits", train_size=200, test_size=16, seed=0)
    cls = METHODS.get(name)
    torch.manual_seed(0)
    encoder = build_encoder("convnet", ds.channels, ds.image_size, 16, widths="8,16")
    given = {"classes_per_batch": 4, "samples_per_class": 8} if name == "triplet" else {}
    info = DataInfo(ds.num_classes, tuple(int(c) for c in ds.class_counts()), ds.channels, ds.image_size,
                    ds.labelled, ds.name)
    method = cls(encoder, info, **resolve(cls.params, given))
    method.generator = torch.Generator().manual_seed(5)
    method.train()
    images = torch.from_numpy(ds.train.images[:32]).float() / 255
    if name == "triplet":  # a K x M batch of 4 classes x 8, in class order as the sampler lays it out
        labels = torch.from_numpy(ds.train.labels)
        rows = np.concatenate([np.flatnonzero(ds.train.labels == c)[:8] for c in range(4)])
        images, labels = torch.from_numpy(ds.train.images[rows]).float() / 255, labels[rows]
    else:
        labels = torch.from_numpy(ds.train.labels[:32])
    return method, images, labels


@pytest.mark.parametrize("name", ["simclr", "vicreg", "swav", "triplet"])
def test_two_processes_compute_the_gradient_of_the_global_batch(name):
    """Gathered with their gradients (each rank's loss reaches the embeddings of the other's images),
    with batch norm over the global batch (the two-view and the K x M methods synchronise it), and the
    views drawn for the global batch: the gradient DDP averages over two processes, each with 16
    images, is the gradient of one process with the 32. A gather without gradient for the other rank's
    rows puts every method's gradients off by about a half, and the triplet's own batch statistics in
    each rank its first convolution's by up to 40 times (both tried)."""
    import multiprocessing

    method, images, labels = _grad_case(name)
    out = method.training_step(images, labels)
    out.loss.backward()
    alone = {k: p.grad for k, p in method.named_parameters() if p.grad is not None}

    results = in_two_processes(_rank_gradients, name)
    (loss0, stats0, grads0), (loss1, _, grads1) = results[0], results[1]
    assert set(grads0) == set(alone)
    scale = max(float(g.abs().max()) for g in alone.values())
    for key, g in alone.items():
        np.testing.assert_array_equal(grads0[key], grads1[key])  # DDP averaged them: every rank steps alike
        # float sums in another order: within 1e-4 of the largest gradient (a bias before a batch norm has
        # a gradient of 0 up to rounding)
        np.testing.assert_allclose(grads0[key], g.numpy(), rtol=1e-3, atol=1e-4 * scale, err_msg=key)
    # the ranks' losses average to the global batch's (SimCLR: each rank's anchors; the others: the same loss)
    assert (loss0 + loss1) / 2 == pytest.approx(out.loss.item(), rel=1e-5)
    if name == "simclr":
        assert stats0["negatives_per_anchor"] == 2 * 32 - 2
