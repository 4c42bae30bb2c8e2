"""What a step of the SimCLR GPU preset costs in communication on several processes, collective by
collective, beside its compute: the numbers of the README's "Scale" section.

    torchrun --standalone --nproc_per_node 2 bench/ddp_cost.py [--batch 512] [--device cpu|cuda]
    python bench/ddp_cost.py --dry-run

Per step, a run on W processes (engine/distributed.py) adds to one process's work on its B / W images:

- the all-gather of the projections of both views (2 x B x 128 floats in all): SimCLR's negatives;
- the all-reduce of the gradients (DistributedDataParallel; the preset's convnet, widths 64,128,256,
  and projection head: about 1.4 M parameters);
- the synchronised batch norm: per batch-norm layer, one small all-gather of its statistics forward and
  one backward (7 layers in the preset's model);
- one all-reduce of the step's figures (loss, its terms, whether to stop).

Each collective is timed alone (mean of --reps after a warm-up), and one training step of the model
at B / W images alone, so the table shows which part grows with W. Rank 0 prints.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)


def timed(fn, reps: int, sync) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512, help="global batch (default 512, the preset's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--backend", default="auto", help="auto (nccl on GPUs, else gloo), nccl or gloo")
    ap.add_argument("--dry-run", action="store_true", help="check the settings and imports, measure nothing")
    args = ap.parse_args(argv)
    if args.dry_run:
        import torch.distributed  # noqa: F401

        from engine.distributed import gather  # noqa: F401
        print(f"ddp_cost: batch {args.batch}, {args.reps} repetitions, on {args.device}: settings and imports resolve")
        return 0
    import torch.distributed as dist

    from engine.distributed import launch_from_environment, rank_device, start, stop
    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    launch = launch_from_environment(backend=args.backend)
    if launch is None:
        ap.error("start it with torchrun --standalone --nproc_per_node 2 bench/ddp_cost.py")
    device = rank_device(torch.device(args.device), launch)
    backend = start(launch, device)
    world, rank = launch.world_size, launch.rank
    share = args.batch // world
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    # the preset's model: convnet 64,128,256 without neck (256-d), projection head 512 -> 128
    info = DataInfo(10, (6000,) * 10, 1, (28, 28), True, "fashion-mnist")
    encoder = build_encoder("convnet", 1, (28, 28), 256, widths="64,128,256", neck="none")
    simclr = METHODS.get("simclr")
    method = simclr(encoder, info, **resolve(simclr.params, {})).to(device)
    params = sum(p.numel() for p in method.parameters() if p.requires_grad)
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    images = torch.rand(share, 1, 28, 28, device=device)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def compute() -> None:  # one process's step on its share, nothing shared
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = method.training_step(images, None).loss
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()

    z = torch.randn(share, 128, device=device)
    grads = torch.randn(params, device=device)
    figures = torch.zeros(8, dtype=torch.float64, device=device)
    parts = [torch.empty_like(z) for _ in range(world)]

    def stats_gathers() -> None:  # SyncBatchNorm: per layer, mean, invstd and count of each rank, forward and back
        for m in norms:
            s = torch.randn(1, 2 * m.num_features + 1, device=device)
            dist.all_gather([torch.empty_like(s) for _ in range(world)], s)
            dist.all_gather([torch.empty_like(s) for _ in range(world)], s)

    rows = [("compute: one step on B/W images", timed(compute, max(3, args.reps // 4), sync)),
            ("all-gather of z, both views", timed(lambda: [dist.all_gather(parts, z) for _ in range(2)], args.reps, sync)),
            (f"all-reduce of {params / 1e6:.2f} M gradients", timed(lambda: dist.all_reduce(grads), args.reps, sync)),
            (f"batch-norm statistics ({len(norms)} layers)", timed(stats_gathers, args.reps, sync)),
            ("the step's figures", timed(lambda: dist.all_reduce(figures), args.reps, sync))]
    if rank == 0:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"SimCLR GPU preset's model, global batch {args.batch} on {world} processes ({share} each), {backend} "
              f"on {name}")
        print(f"{'part of a step':<40}{'ms':>9}")
        for label, seconds in rows:
            print(f"{label:<40}{1000 * seconds:>9.2f}")
        comm = sum(seconds for _, seconds in rows[1:])
        print(f"{'communication in all':<40}{1000 * comm:>9.2f}  ({100 * comm / (comm + rows[0][1]):.0f} % of a step "
              "without overlap)")
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
