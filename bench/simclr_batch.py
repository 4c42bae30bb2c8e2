"""The largest SimCLR batch that fits in the training device's memory (issue: "batch size as large as
memory allows"), for the convnet on 28x28 grey images (Fashion-MNIST's shape).

Doubles the batch from 256 until one full training step (two augmented views, encoder, projection
head, NT-Xent over the 2N x 2N similarities, backward, AdamW) runs out of memory, and prints each
batch's peak memory and step time. On a CPU it stops at --max-batch (no OOM to find there).

    python bench/simclr_batch.py [--device cuda] [--max-batch 65536]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import torch  # noqa: E402

from engine.encoders import build_encoder  # noqa: E402
from engine.methods import METHODS, DataInfo  # noqa: E402
from engine.params import resolve  # noqa: E402


def one_step(batch: int, device: torch.device) -> tuple[float, float]:
    """(seconds, peak GiB) of one SimCLR training step at this batch size."""
    info = DataInfo(10, (6000,) * 10, 1, (28, 28), True, "fashion-mnist")
    encoder = build_encoder("convnet", 1, (28, 28), 128)
    simclr = METHODS.get("simclr")
    method = simclr(encoder, info, **resolve(simclr.params, {})).to(device)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    images = torch.rand(batch, 1, 28, 28, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(2):  # the first step includes cuDNN's algorithm search
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = method.training_step(images, labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        float(loss.detach())
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return times[-1], peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-batch", type=int, default=65536)
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None
    print(f"SimCLR, convnet, 28x28 grey, one training step per batch size on {name}"
          + (f" ({total:.0f} GiB)" if total else ""))
    largest, batch = None, 256
    while batch <= args.max_batch:
        try:
            seconds, peak = one_step(batch, device)
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch:>6}: out of memory")
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        largest = batch
        print(f"batch {batch:>6}: {seconds * 1e3:8.1f} ms/step  peak {peak:6.1f} GiB")
        batch *= 2
    print(f"largest batch that fits: {largest}" + (" (the --max-batch cap)" if largest == args.max_batch else ""))


if __name__ == "__main__":
    main()
