"""SimCLR's training throughput on this data path against the usual per-image pipeline, same model.

    python bench/throughput.py                      # a GPU if there is one: resnet18, 32x32, batch 512
    python bench/throughput.py --device cpu         # small: batch 64, a few steps (same table)
    python bench/throughput.py --dry-run            # check the settings and the imports, train nothing

Both sides train the same SimCLR (``resnet18`` with the small-image stem, projection head, NT-Xent,
AdamW) on 32 x 32 RGB images, CIFAR-10's shape, with the training job's settings on a GPU (bfloat16
autocast, channels-last, cudnn.benchmark):

- **on-device**: the images live on the device as uint8; a step indexes its batch there, and the
  batched augmentation (engine/augment.py) makes both views there, as ``engine train`` does;
- **per-image**: torchvision's per-image pipeline with the same settings
  (``SimCLRAugment.torchvision_equivalent``) in a DataLoader with ``--workers`` processes, pinned
  memory, non-blocking copies: the usual way.

The images are random uint8 (their content does not change the cost of a step), so no dataset is
needed. Each side runs warm-up steps, then timed steps; images/s counts the images of the batch (each
in two views). The GPU busy fraction is the GPU's kernel time over the wall time of the timed steps
(torch.profiler); on a CPU there is none to report.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)


def build(device, batch: int):
    import torch

    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    info = DataInfo(10, (5000,) * 10, 3, (32, 32), True, "cifar10")
    encoder = build_encoder("resnet18", 3, (32, 32), 512, neck="none")
    simclr = METHODS.get("simclr")
    method = simclr(encoder, info, **resolve(simclr.params, {})).to(device)
    if device.type == "cuda":
        method.to(memory_format=torch.channels_last)
    method.generator = torch.Generator(device).manual_seed(0)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    return method, optimizer


def step_on_views(method, optimizer, v1, v2, amp: bool) -> None:
    """One SimCLR step on views made elsewhere (the per-image pipeline's)."""
    import torch
    import torch.nn.functional as F

    with torch.autocast(v1.device.type, dtype=torch.bfloat16, enabled=amp):
        n = len(v1)
        h = method.encoder(torch.cat([v1, v2]))
        z = method.project(h)
        loss = F.cross_entropy(*method.loss.anchor_logits(z[:n], z[n:]))
    optimizer.zero_grad(set_to_none=True)
    loss.float().backward()
    optimizer.step()


def step_on_device(method, optimizer, images, batch: int, amp: bool, channels_last: bool) -> None:
    """One step as ``engine train`` makes it: index the uint8 batch on the device, views there."""
    import torch

    rows = torch.randint(0, len(images), (batch,), device=images.device)
    x = images[rows].float().div_(255)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = method.training_step(x, None).loss
    optimizer.zero_grad(set_to_none=True)
    loss.float().backward()
    optimizer.step()


class PerImageViews:
    """Item i: two views of image i by torchvision's per-image pipeline, float (3, 32, 32)."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        x = torch.from_numpy(self.images[i]).float().div_(255)
        return self.transform(x), self.transform(x)


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)


def timed(run_steps, device, profile: bool) -> tuple[float, float, float | None]:
    """(wall seconds of the timed steps, this process's CPU seconds in them, GPU busy fraction or None)."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    if not profile:
        start, cpu = time.perf_counter(), time.process_time()
        run_steps()
        sync()
        return time.perf_counter() - start, time.process_time() - cpu, None
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        start, cpu = time.perf_counter(), time.process_time()
        run_steps()
        sync()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    try:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernel_us = sum(getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0) for e in kernels)
    except Exception as error:  # noqa: BLE001 (a profiler that changed its fields: the rate still stands)
        print(f"[note] GPU busy fraction not measured: torch.profiler gave {type(error).__name__}: {error}")
        return wall, cpu, None
    return wall, cpu, min(1.0, kernel_us / 1e6 / wall)


def main(argv=None) -> int:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if gpu else "cpu")
    ap.add_argument("--batch", type=int, help="images a step (default 512 on a GPU, 64 on a CPU)")
    ap.add_argument("--steps", type=int, help="timed steps a side (default 30 on a GPU, 3 on a CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 5 on a GPU, 1 on a CPU)")
    ap.add_argument("--workers", type=int, help="DataLoader workers of the per-image side (default 8 on a GPU, 2 "
                                                "on a CPU)")
    ap.add_argument("--threads", type=int, help="torch threads of the training process (default 1 on a CPU, as the "
                                                "project measures; torch's own choice on a GPU)")
    ap.add_argument("--images", type=int, default=50_000, help="images held (default 50000, CIFAR-10's train split)")
    ap.add_argument("--dry-run", action="store_true", help="check the settings and imports, train nothing")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not gpu:
        if not args.dry_run:
            ap.error("--device cuda: no CUDA GPU is visible; use --device cpu")
    cuda = device.type == "cuda"
    batch = args.batch or (512 if cuda else 64)
    steps = args.steps or (30 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    workers = args.workers if args.workers is not None else (8 if cuda else 2)
    images_n = args.images if cuda else min(args.images, 4096)
    import numpy as np
    import torchvision  # noqa: F401  (the per-image side's pipeline)

    from engine.augment import SimCLRAugment  # noqa: F401
    if args.dry_run:
        print(f"throughput: SimCLR resnet18 32x32, batch {batch}, {warmup} + {steps} steps a side, {workers} "
              f"workers, {images_n} images, on {device}: settings and imports resolve")
        return 0

    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    if cuda:
        torch.backends.cudnn.benchmark = True
        amp = torch.cuda.is_bf16_supported()
    else:
        amp = False
    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, (images_n, 3, 32, 32), dtype=np.uint8)
    print(f"SimCLR, resnet18 (small-image stem), 32x32 RGB (random uint8), batch {batch}, on {name}; "
          f"{warmup} warm-up + {steps} timed steps a side"
          + ("; bfloat16 autocast, channels-last" if amp else ""), flush=True)

    results = {}
    # on-device: the uint8 images on the device, batched views there
    method, optimizer = build(device, batch)
    on_device = torch.from_numpy(host).to(device)
    for _ in range(warmup):
        step_on_device(method, optimizer, on_device, batch, amp, cuda)
    results["on-device uint8, batched views"] = timed(
        lambda: [step_on_device(method, optimizer, on_device, batch, amp, cuda) for _ in range(steps)], device, cuda)
    del on_device, method, optimizer

    # per-image: torchvision's pipeline in DataLoader workers, pinned, non-blocking copies
    method, optimizer = build(device, batch)
    transform = method.augment.torchvision_equivalent()
    sampler = torch.utils.data.RandomSampler(range(len(host)), replacement=True,
                                             num_samples=(warmup + steps) * batch)
    loader = torch.utils.data.DataLoader(
        PerImageViews(host, transform), batch_size=batch, sampler=sampler, num_workers=workers,
        pin_memory=cuda, drop_last=True, worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None, persistent_workers=False)
    batches = iter(loader)

    def per_image(n: int) -> None:
        for _ in range(n):
            v1, v2 = next(batches)
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            if cuda:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            step_on_views(method, optimizer, v1, v2, amp)

    per_image(warmup)
    results[f"per-image torchvision, {workers} workers"] = timed(lambda: per_image(steps), device, cuda)

    # CPU s: the training process's own (a DataLoader worker's decoding and augmenting is not in it)
    print(f"\n{'pipeline':<36}{'images/s':>10}{'ms/step':>9}{'CPU s':>8}{'GPU busy':>10}")
    rates = []
    for label, (wall, cpu, busy) in results.items():
        rate = steps * batch / wall
        rates.append(rate)
        print(f"{label:<36}{rate:>10.1f}{1000 * wall / steps:>9.1f}{cpu:>8.2f}"
              f"{(f'{100 * busy:.0f} %' if busy is not None else 'n/a'):>10}")
    print(f"{'on-device / per-image':<36}{rates[0] / rates[1]:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
