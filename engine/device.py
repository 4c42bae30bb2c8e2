"""Which device trains, how many CPU threads torch may use, and how the C heap serves a CPU forward."""
from __future__ import annotations

import contextlib
import os
import platform
from typing import Iterator

DEVICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str):
    """``auto`` picks cuda, then mps, then cpu. Asking for an absent device is a ValueError."""
    import torch

    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"--device: {name!r} is not valid; allowed: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device: {name!r} asked but no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device: 'mps' asked but Apple's Metal backend is not available; use auto or cpu")
    return torch.device(name)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def configure_threads(leave_one_core: bool) -> int:
    """Size torch's CPU thread pool. The window leaves a core to the GUI thread so it never freezes."""
    import torch

    cores = os.cpu_count() or 1
    n = max(1, cores - 1) if leave_one_core else cores
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the person's own choice wins (several jobs at once)
        n = max(1, min(n, int(os.environ["OMP_NUM_THREADS"])))
    torch.set_num_threads(n)
    return n


# mallopt(3) parameters (glibc's malloc.h) and glibc's own defaults, put back after ``freed_memory_kept``
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_TRIM_THRESHOLD, _GLIBC_MMAP_MAX = 128 * 1024, 65536
KEPT_FREE_BYTES = 1 << 30  # free heap memory kept for the next batch before any is given back


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Within the block, glibc's malloc keeps the memory torch frees and serves the next batch from it,
    instead of giving it back to the system and mapping it anew; yields whether it applied (glibc,
    Linux), and elsewhere does nothing.

    Why: glibc serves every block over its mmap threshold (32 MiB at most) with a fresh ``mmap`` and
    unmaps it when it is freed, so each batch of a CPU forward faults its activations in and zeroes them
    again. Measured here (efficientnet-lite0 at 224 px, one torch thread, 128 images): batch 64 took
    87-94 ms of system time per image beside 37-42 ms of user time (24 800 page faults an image),
    batch 16 46 + 39 ms, batch 8 25-29 + 37-43 ms; in this block batch 8 and 16 take 0 ms of system
    time and 32-35 ms of user time. Peak memory is the same (a batch's activations are live together
    either way); the memory is only kept until the block ends, which puts glibc's defaults back and
    returns what is free (``malloc_trim``). The setting is the process's: use it where the process
    is the job's (the command line, the window's job process), around the loop."""
    libc = None
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, KEPT_FREE_BYTES) == 1
        except (OSError, AttributeError):
            libc, applied = None, False
    else:
        applied = False
    try:
        yield applied
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD)
            libc.malloc_trim(0)
