"""What logging costs a training loop: the same supervised loop (the engine's convnet and a linear head
on Fashion-MNIST, AdamW, batches of 128) without logging and with engine.log logging the loss at every
step and the embeddings of a 2000-image probe set at every epoch (the probe's forward pass included:
it is part of logging embeddings), in batches of the loop's own 128: on one CPU thread these cost 0.7
of batches of 500 (2.6 to 3.1 s against 3.9 to 4.2 s of CPU for the 2000 images, the same embeddings
to the bit; 2026-12-03, load 3 to 6 on 2 cores). Throughput = images trained / wall time from the
first step to the end of the last epoch's logging; ``finish()`` (waiting for the last evaluation) is
timed apart. The arms alternate (plain, logged, plain, logged) and each keeps its best, so a background hiccup does not
decide. Prints the ratio logged / plain (target >= 0.97) in wall time and in process CPU time (images
per CPU second, the evaluation thread's CPU and finish() included: on a shared machine the wall
ratio reads the load, the CPU ratio reads what logging costs), and per CPU second of the loop's own
thread (what the loop pays when the evaluation thread has a core of its own). Arms that run minutes
apart on a loaded machine do not see the same load, so it also prints, within each logged arm, each
part on its own thread's clock: training / (training + logging), logging = the probe's forward pass,
the log calls and the evaluation thread (``LoggedRun.evaluation_cpu_seconds``).

    python bench/logging_overhead.py [--train-size 60000] [--epochs 3] [--repeats 2]

The default epoch is Fashion-MNIST's whole training split (60 000 images): logging costs about the same
seconds per epoch whatever its size, so a half epoch (30 000) doubles its share.
"""
import argparse
import tempfile
import time

import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import log  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.encoders import build_encoder  # noqa: E402

BATCH, LR, PROBE = 128, 1e-3, 2000


def loop(data, epochs: int, out: str | None) -> tuple[float, float, float, float, dict]:
    """(images per wall second, images per process CPU second with finish() included, images per
    CPU second of the loop's thread, seconds finish() took, CPU seconds by part); ``out`` None: no
    logging. The parts, each on its own thread's clock: ``train`` (the loop's thread, logging left
    out), ``forward`` (the probe's forward pass), ``calls`` (log_losses and log_embeddings) and
    ``evaluation`` (the evaluation thread's)."""
    torch.manual_seed(0)
    x = torch.from_numpy(data.train.images)
    y = torch.from_numpy(data.train.labels)
    probe_x = torch.from_numpy(data.test.images[:PROBE]).float().div(255)
    encoder = build_encoder("convnet", data.channels, data.image_size, 128)
    head = torch.nn.Linear(128, len(data.class_names))
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=LR)
    run = None
    if out is not None:
        run = log.start(out, name="bench", images=data.test.images[:PROBE], labels=data.test.labels[:PROBE],
                        class_names=data.class_names, settings={"lr": LR, "batch_size": BATCH})
    step, images, start, cpu = 0, 0, time.perf_counter(), time.process_time()
    own = time.thread_time()
    parts = {"forward": 0.0, "calls": 0.0, "evaluation": 0.0}
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        for rows in order.split(BATCH):
            xb = x[rows].float().div_(255)
            loss = torch.nn.functional.cross_entropy(head(encoder(xb)), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            images += len(rows)
            if run is not None:
                t = time.thread_time()
                run.log_losses(step, loss=loss.item(), epoch=step / len(order.split(BATCH)))
                parts["calls"] += time.thread_time() - t
        if run is not None:
            t = time.thread_time()
            encoder.eval()
            with torch.no_grad():
                z = torch.cat([encoder(b) for b in probe_x.split(BATCH)])
            encoder.train()
            parts["forward"] += time.thread_time() - t
            t = time.thread_time()
            run.log_embeddings(step, z, epoch=epoch + 1)
            parts["calls"] += time.thread_time() - t
    rate = images / (time.perf_counter() - start)
    own = time.thread_time() - own
    parts["train"] = own - parts["forward"] - parts["calls"]
    finish = 0.0
    if run is not None:
        t = time.perf_counter()
        run.finish()
        finish = time.perf_counter() - t
        parts["evaluation"] = run.evaluation_cpu_seconds
    return rate, images / (time.process_time() - cpu), images / own, finish, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", train_size=args.train_size)
    print(f"fashion-mnist: {len(data.train)} training images, {args.epochs} epochs, batch {BATCH}, probe {PROBE}; "
          f"torch threads {torch.get_num_threads()}")
    plain, logged, plain_cpu, logged_cpu, plain_own, logged_own, finishes, shares = [], [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            rate, per_cpu, per_own, _, _ = loop(data, args.epochs, None)
            plain.append(rate)
            plain_cpu.append(per_cpu)
            plain_own.append(per_own)
            rate, per_cpu, per_own, finish, parts = loop(data, args.epochs, out)
            logged.append(rate)
            logged_cpu.append(per_cpu)
            logged_own.append(per_own)
            finishes.append(finish)
            print(f"  plain {plain[-1]:.0f} img/s ({plain_cpu[-1]:.0f} per CPU s), logged {rate:.0f} img/s "
                  f"({per_cpu:.0f} per CPU s; finish {finish:.1f} s)", flush=True)
            spent = parts["forward"] + parts["calls"] + parts["evaluation"]
            shares.append(parts["train"] / (parts["train"] + spent))
            print(f"    logged arm's CPU: training {parts['train']:.1f} s; logging {spent:.1f} s = probe forward "
                  f"{parts['forward']:.1f} + calls {parts['calls']:.1f} + evaluation thread {parts['evaluation']:.1f}: "
                  f"training / (training + logging) {shares[-1]:.3f}", flush=True)
    print(f"plain {max(plain):.0f} img/s, logged {max(logged):.0f} img/s: ratio {max(logged) / max(plain):.3f} "
          f"(target >= 0.97); finish() waited {min(finishes):.1f} s for the last evaluation")
    print(f"per CPU second: plain {max(plain_cpu):.0f}, logged {max(logged_cpu):.0f} images: ratio "
          f"{max(logged_cpu) / max(plain_cpu):.3f}; per CPU second of the loop's thread: plain {max(plain_own):.0f}, "
          f"logged {max(logged_own):.0f}: ratio {max(logged_own) / max(plain_own):.3f} (target >= 0.97)")
    # within one arm, each part on its own thread's clock: the load inflates them alike
    print(f"within the logged arm: training / (training + logging) {max(shares):.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
