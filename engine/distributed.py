"""Training on several processes with PyTorch's own distributed engine.

    torchrun --nproc_per_node 4 -m engine train --preset simclr-fashion-gpu
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m engine train ...
    srun --ntasks-per-node 8 python -m engine train ...

The launcher starts one process (a *rank*) per GPU or CPU share and says so in the environment
(torchrun: RANK, WORLD_SIZE, LOCAL_RANK; SLURM's srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS,
SLURM_LOCALID); ``launch_from_environment`` reads it. The processes connect with
``torch.distributed`` (NCCL between GPUs, gloo between CPUs) and train one model:

- every rank draws the same global batch (same seed, same sampler, the K x M class sampler of metric
  learning included) and takes its equal share of the rows (``Shard.rows``), so the run sees the
  batches one process with the same ``--batch-size`` would;
- DistributedDataParallel averages the gradients;
- where a loss compares the images of a batch with each other (SimCLR's negatives, VICReg's
  variance and covariance, SwAV's equal-partition assignments, the triplet and pair mining), the
  method gathers the embeddings of every rank with their gradients (``gather``), so it compares the
  global batch, not each rank's share;
- where a method needs the statistics of the batch (the two-view methods: batch norm is part of what
  keeps them from collapsing, and a per-rank statistic would let SimCLR tell a rank's images apart),
  batch norm is synchronised across ranks (``sync_batch_norm``);
- rank 0 alone evaluates and writes the run directory, so the window follows a distributed run like
  any other.

Nothing here imports Qt.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BACKENDS = ("auto", "nccl", "gloo")
# seconds a rank waits for the others in one collective before it gives up: the evaluations, which
# rank 0 runs while the others wait, must fit in it (the final one on Fashion-MNIST takes about a minute)
DEFAULT_TIMEOUT = 1800.0
# the ranks whose launcher did not name a rendezvous port (srun without MASTER_PORT) share this one
SLURM_PORT_BASE = 20000


class PeerLost(RuntimeError):
    """Another rank of the run stopped (killed, crashed or unreachable): this one cannot go on."""


@dataclass(frozen=True)
class Shard:
    """This process's part of a run: rank ``rank`` of ``world_size`` (0 of 1 alone)."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, global_rows):
        """This rank's equal share of the rows of a global batch (a numpy array or a tensor)."""
        n = len(global_rows) // self.world_size
        return global_rows[self.rank * n:(self.rank + 1) * n]


@dataclass(frozen=True)
class Launch:
    """How the launcher started this process, and the flags of the distributed run."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "torchrun" or "srun"
    master_addr: str | None = None  # srun: where rank 0 listens (torchrun sets its own)
    master_port: int | None = None
    backend: str = "auto"
    timeout: float = DEFAULT_TIMEOUT

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)


def launch_from_environment(env: Mapping[str, str] | None = None, backend: str = "auto",
                            timeout: float = DEFAULT_TIMEOUT) -> Launch | None:
    """The launch this process belongs to, read from the environment torchrun or srun set; None for a
    process started alone. ValueError for a launcher's environment that does not make sense."""
    env = os.environ if env is None else env
    if backend not in BACKENDS:
        raise ValueError(f"--dist-backend: {backend!r} is not valid; allowed: {', '.join(BACKENDS)}")
    if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise ValueError(f"--dist-timeout: {timeout!r} is not valid; allowed: seconds > 0")
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK", rank)
        local_world = _int(env, "LOCAL_WORLD_SIZE", world)
        launch = Launch(rank, world, local, local_world, "torchrun", backend=backend, timeout=float(timeout))
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:  # a task of srun (not the batch script)
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS")
        local = _int(env, "SLURM_LOCALID", 0)
        local_world = _int(env, "SLURM_STEP_TASKS_PER_NODE", 0) if env.get(
            "SLURM_STEP_TASKS_PER_NODE", "").isdigit() else _tasks_on_node(env, world)
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
        if not addr:
            raise ValueError("srun: cannot tell where rank 0 runs (SLURM_STEP_NODELIST is unset); export "
                             "MASTER_ADDR=<first node of the job> before srun")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else \
            SLURM_PORT_BASE + _int(env, "SLURM_JOB_ID", 0) % 20000
        launch = Launch(rank, world, local, local_world, "srun", addr, port, backend, float(timeout))
    else:
        return None
    if not (0 <= launch.rank < launch.world_size and 0 <= launch.local_rank):
        raise ValueError(f"{launch.launcher}: rank {launch.rank} of world size {launch.world_size} (local rank "
                         f"{launch.local_rank}) does not make sense; start the processes with torchrun or srun")
    return launch


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"the launcher's {name}={value!r} is not a whole number; start the processes with "
                         "torchrun or srun") from None


def _tasks_on_node(env: Mapping[str, str], world: int) -> int:
    """SLURM_TASKS_PER_NODE reads like '4(x2),3': the first node's count (enough to size GPUs per node)."""
    found = re.match(r"(\d+)", env.get("SLURM_STEP_TASKS_PER_NODE", "") or env.get("SLURM_TASKS_PER_NODE", ""))
    return int(found[1]) if found else world


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[03-05,09],cpu1' -> 'gpu03' (zero padding kept)."""
    nodelist = nodelist.strip()
    if not nodelist:
        return ""
    found = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not found:
        return ""
    prefix, ranges = found[1], found[2]
    if not ranges:
        return prefix
    return prefix + re.split(r"[-,]", ranges)[0]


# --- the process group ----------------------------------------------------------------------------

def rank_device(device, launch: Launch):
    """The device of this rank: its own GPU (LOCAL_RANK, wrapping round when a node has fewer GPUs
    than processes, which only gloo accepts), or the CPU."""
    if device.type != "cuda":
        return device
    index = launch.local_rank % max(1, torch.cuda.device_count())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def choose_backend(asked: str, device) -> str:
    if asked == "auto":
        return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if asked == "nccl" and device.type != "cuda":
        raise ValueError(f"--dist-backend nccl connects GPUs, and this run trains on the {device.type}: use "
                         "--dist-backend gloo (or auto), or --device cuda")
    if asked == "nccl" and not dist.is_nccl_available():
        raise ValueError("--dist-backend nccl: this PyTorch has no NCCL; use --dist-backend gloo (or auto)")
    return asked


def start(launch: Launch, device) -> str:
    """Join the run's process group (a rendezvous: it returns when every rank has joined, or raises
    after the timeout). Returns the backend used."""
    backend = choose_backend(launch.backend, device)
    if dist.is_initialized():
        return dist.get_backend()
    kwargs = {}
    if launch.launcher == "srun":
        kwargs["init_method"] = f"tcp://{launch.master_addr}:{launch.master_port}"
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size,
                            timeout=timedelta(seconds=launch.timeout), **kwargs)
    return backend


def stop() -> None:
    """Leave the process group (nothing waits for the others here: a rank that finished goes)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a group whose peers are gone cannot be torn down politely; the process ends
            pass


def check_batch_divides(batch: int, world_size: int) -> int:
    """Images per rank of a global batch of ``batch``; ValueError saying what would divide."""
    if batch % world_size == 0:
        return batch // world_size
    lower, upper = (batch // world_size) * world_size, (batch // world_size + 1) * world_size
    sizes = " or ".join(f"--batch-size {n}" for n in (lower, upper) if n >= world_size)
    raise ValueError(_refusal("--batch-size", batch, world_size, f"{sizes} (a multiple of {world_size})"))


def check_k_by_m_divides(k: int, m: int, world_size: int) -> int:
    """Images per rank of a K x M batch; ValueError naming the K and M that would divide."""
    if (k * m) % world_size == 0:
        return k * m // world_size
    near = sorted(range(2, m + world_size + 1), key=lambda mm: (abs(mm - m), mm))
    ms = [mm for mm in near if (k * mm) % world_size == 0][:2]
    ks = [kk for kk in range(k + 1, k + world_size + 1) if (kk * m) % world_size == 0][:1]
    fits = [f"--samples-per-class {' or '.join(map(str, ms))}"] if ms else []
    fits += [f"--classes-per-batch {kk}" for kk in ks]
    raise ValueError(_refusal(f"K x M = {k} x {m}", k * m, world_size,
                              f"{', or '.join(fits)} (K x M a multiple of {world_size})"))


def _refusal(what: str, batch: int, world_size: int, fits: str) -> str:
    counts = [n for n in range(2, min(batch, 64) + 1) if batch % n == 0][:6]
    procs = (f", or run {', '.join(map(str, counts[:-1]))}{' or ' if len(counts) > 1 else ''}{counts[-1]} "
             f"processes (numbers that divide {batch})") if counts else ", or run one process"
    return (f"{what}: a global batch of {batch} images does not divide among {world_size} processes (each "
            f"trains on an equal share of every batch); use {fits}{procs}")


# --- what the methods use ----------------------------------------------------------------------------

def gather(x, shard: Shard):
    """``x`` (n, ...) of every rank, concatenated in rank order (world_size * n, ...), differentiable:
    the gradient of each rank's loss flows back to the rank that computed the rows. Alone: ``x``."""
    if not shard.distributed:
        return x
    if x.is_cuda and dist.get_backend() != "nccl":  # gloo gathers CPU tensors (the copies are differentiable)
        return gather(x.cpu(), shard).to(x.device)
    from torch.distributed import _functional_collectives as fc

    # all_gather_single_autograd is the name from torch 2.10 on; all_gather_tensor_autograd before
    gather_fn = getattr(fc, "all_gather_single_autograd", None) or fc.all_gather_tensor_autograd
    out = gather_fn(x.contiguous(), 0, dist.group.WORLD)
    return fc.wait_tensor(out) if hasattr(fc, "wait_tensor") else out


def gather_labels(labels, shard: Shard):
    """Labels (or any tensor without gradient) of every rank, in rank order."""
    if not shard.distributed:
        return labels
    if labels.is_cuda and dist.get_backend() != "nccl":
        return gather_labels(labels.cpu(), shard).to(labels.device)
    parts = [torch.empty_like(labels) for _ in range(shard.world_size)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def all_sum(values, device):
    """The sums over the ranks of a list of floats (one collective)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch norm computing its statistics over the global batch: torch's
    SyncBatchNorm on GPUs that NCCL connects; elsewhere (the CPU, where torch's refuses to run, or
    gloo between GPUs) ``GlobalBatchNorm`` (the same statistics through one gathered tensor)."""
    if device.type == "cuda" and dist.get_backend() == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module


class GlobalBatchNorm(_BatchNorm):
    """Batch norm on the CPU whose training statistics are those of every rank's batch together: per
    channel, the sums of x and x^2 and the count of each rank, gathered with their gradient (so the
    backward pass is that of one batch norm over the global batch), in float64 so the variance
    E[x^2] - E[x]^2 keeps its digits. Alone, and in evaluation, it is torch's batch norm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"batch norm: input of shape {tuple(x.shape)}; allowed: (N, C, ...)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if not (self.training and world > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        xd = x.double()
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims), xd.new_tensor([x.numel() / c])])
        total = gather(local[None], Shard(dist.get_rank(), world)).sum(0)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def wrap(module, device, find_unused_parameters: bool = False):
    """DistributedDataParallel around ``module``: it averages the gradients over the ranks in the
    backward pass. Buffers are not broadcast at each step: batch statistics are synchronised where
    the method needs them, and rank 0's are the ones saved and evaluated."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # torch 2.14 renamed broadcast_buffers (which still works, with a warning)
    sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False})
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters, **sync)


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from a collective that lost another rank (killed, crashed, timed out)."""
    kinds = tuple(k for k in (getattr(dist, "DistError", None), getattr(dist, "DistBackendError", None)) if k)
    if isinstance(error, PeerLost) or (kinds and isinstance(error, kinds)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
        "NCCL communicator", "ProcessGroupGloo", "gloo", "NCCL error", "Watchdog"))


class TrainingSteps(nn.Module):
    """The method's training step as a module's forward, for DistributedDataParallel (it averages the
    gradients of what runs inside its forward)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        return self.method.training_step(images, labels)


def peer_lost_message(error: BaseException, shard: Shard, step: int, run_dir, checkpoint_kept: bool) -> str:
    """What a rank says when another rank of its run is gone."""
    cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    resume = f"--resume {run_dir}" if run_dir else "--resume RUN_DIR"
    return (f"another process of this {shard.world_size}-process run stopped (killed, crashed or unreachable) "
            f"at step {step}, so this one stops too ({cause}); "
            + ("the last checkpoint is kept and " if checkpoint_kept else "")
            + f"the run resumes on any number of processes: torchrun --nproc_per_node N -m engine train {resume}")
