"""Which device trains, and how many CPU threads torch may use."""
from __future__ import annotations

import os

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
