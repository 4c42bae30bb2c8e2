"""What a step of the SimCLR GPU preset costs in communication on several processes, collective by
collective, beside its compute: the numbers of the README's "Scale" section.

    torchrun --standalone --nproc_per_node 2 bench/ddp_cost.py [--batch 512] [--device cpu|cuda]
    python bench/ddp_cost.py --on-paper IMAGES_PER_S   # the README's scale table from one GPU's rate
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

``--on-paper T1`` runs nothing distributed: from one GPU's images/s on the preset (T1) and the
model's own counts (parameters, batch norms), it prints what a step would take on 4 GPUs of one node
and on 8 nodes of 8, with ring collectives (W - 1 latency steps, (W - 1) / W of the bytes each way):

    t(W)     = max(B / W / T1, t_launch) + t_gather + t_grad + t_bn + t_fig
    t_gather = 2 [(W-1) a + (W-1)/W * 2 B 128 * 4 bytes / b]   z of both views, forward and backward
    t_grad   = 2 (W-1) a + 2 (W-1)/W * 4 P bytes / b           DDP's all-reduce (it overlaps backward)
    t_bn     = 2 L (W-1) a                                     L synchronised batch norms, forward and back
    t_fig    = 2 (W-1) a                                       the step's figures

a and b: latency of one step of a collective and bandwidth per GPU: --latency-us and --gbps, in a
node (NVLink) and between nodes (InfiniBand); their defaults are vendor-order figures, not measured.
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


def preset_model():
    """The SimCLR GPU preset's model (convnet 64,128,256 without neck, 256-d, projection head), its
    trained parameter count and its batch norms."""
    import torch

    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    info = DataInfo(10, (6000,) * 10, 1, (28, 28), True, "fashion-mnist")
    encoder = build_encoder("convnet", 1, (28, 28), 256, widths="64,128,256", neck="none")
    simclr = METHODS.get("simclr")
    method = simclr(encoder, info, **resolve(simclr.params, {}))
    params = sum(p.numel() for p in method.parameters() if p.requires_grad)
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return method, params, norms


def on_paper(args) -> int:
    """What a step of the SimCLR preset would take on W GPUs, from one GPU's rate (see the docstring)."""
    _, params, norms = preset_model()
    t1, launch = args.on_paper, args.launch_ms / 1000
    print(f"SimCLR GPU preset on paper: one GPU at {t1:g} images/s (T1), {params / 1e6:.2f} M parameters, "
          f"{len(norms)} batch norms; latency {args.latency_us[0]:g} / {args.latency_us[1]:g} us and "
          f"{args.gbps[0]:g} / {args.gbps[1]:g} GB/s per GPU in a node / between nodes; a step at least "
          f"{args.launch_ms:g} ms")
    print(f"{'run':<30}{'per GPU':>8}{'compute':>9}{'gather':>8}{'grads':>8}{'bn':>8}{'step ms':>9}"
          f"{'speed-up':>10}{'epoch s':>9}")
    base = None
    for label, nodes, gpus, batch in (("1 GPU, B 512", 1, 1, 512), ("4 GPUs (1 node), B 512", 1, 4, 512),
                                      ("8 nodes x 8 GPUs, B 512", 8, 8, 512),
                                      ("8 nodes x 8 GPUs, B 8192", 8, 8, 8192)):
        w = nodes * gpus
        a = args.latency_us[nodes > 1] * 1e-6
        b = args.gbps[nodes > 1] * 1e9
        share = (w - 1) / w
        compute = max(batch / w / t1, launch)
        gather = 2 * ((w - 1) * a + share * 2 * batch * 128 * 4 / b)
        grads = 2 * (w - 1) * a + 2 * share * 4 * params / b
        bn = 2 * len(norms) * (w - 1) * a
        fig = 2 * (w - 1) * a
        step = compute + gather + grads + bn + fig
        rate = batch / step  # images/s of the run
        base = base or rate
        print(f"{label:<30}{batch // w:>8}{1000 * compute:>9.2f}{1000 * gather:>8.2f}{1000 * grads:>8.2f}"
              f"{1000 * bn:>8.2f}{1000 * step:>9.2f}{rate / base:>9.1f}x{60000 / rate:>9.2f}")
    return 0


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512, help="global batch (default 512, the preset's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--backend", default="auto", help="auto (nccl on GPUs, else gloo), nccl or gloo")
    ap.add_argument("--on-paper", type=float, metavar="T1",
                    help="print the scale table from one GPU's images/s on the preset; no processes needed")
    ap.add_argument("--latency-us", type=float, nargs=2, default=(10.0, 20.0), metavar=("NODE", "NET"),
                    help="latency of one collective step in a node and between nodes (default 10 20)")
    ap.add_argument("--gbps", type=float, nargs=2, default=(300.0, 25.0), metavar=("NODE", "NET"),
                    help="GB/s per GPU in a node and between nodes (default 300 25)")
    ap.add_argument("--launch-ms", type=float, default=3.0,
                    help="the least time of a step however small its batch: launching its operators (default 3)")
    ap.add_argument("--dry-run", action="store_true", help="check the settings and imports, measure nothing")
    args = ap.parse_args(argv)
    if args.on_paper is not None and not args.dry_run:
        return on_paper(args)
    if args.dry_run:
        import torch.distributed  # noqa: F401

        from engine.distributed import gather  # noqa: F401
        print(f"ddp_cost: batch {args.batch}, {args.reps} repetitions, on {args.device}: settings and imports resolve")
        return 0
    import torch.distributed as dist

    from engine.distributed import launch_from_environment, rank_device, start, stop

    launch = launch_from_environment(backend=args.backend)
    if args.on_paper is not None:
        ap.error("--on-paper runs in one process: python bench/ddp_cost.py --on-paper T1")
    if launch is None:
        ap.error("start it with torchrun --standalone --nproc_per_node 2 bench/ddp_cost.py")
    device = rank_device(torch.device(args.device), launch)
    backend = start(launch, device)
    world, rank = launch.world_size, launch.rank
    share = args.batch // world
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    method, params, norms = preset_model()
    method.to(device)
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
