"""The engine's training job against a minimal hand-written torch loop: same encoder, same data on
the same device, same batches, same optimiser, evaluation off (timed from the first to the last
step, so the job's work before and after training is left out, as the loop has none). Prints the throughput ratio
(target >= 0.95). Runs alternate (job, loop, job, loop) and the best of each is kept, so a
background hiccup does not decide the result.
"""
import sys
import time

import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import events as ev  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.encoders import build_encoder  # noqa: E402
from engine.config import TrainConfig  # noqa: E402
from engine.training import train  # noqa: E402

DATASET, TRAIN_SIZE, EPOCHS, BATCH, LR, SEED = "fashion-mnist", 6000, 2, 128, 1e-3, 0


def engine_job(out: str) -> float:
    config = TrainConfig(dataset=DATASET, train_size=TRAIN_SIZE, epochs=EPOCHS, batch_size=BATCH, lr=LR,
                         seed=SEED, out=out, eval_every=0, final_eval=False, diagnostics=False,
                         checkpoint_every=10_000)
    images, start, last = 0, None, None
    for event in train(config):
        if isinstance(event, ev.StepReport):
            last = time.perf_counter()
            if start is None:  # the clock starts after the first step, as in the loop below
                start = last
            else:
                images += BATCH
        elif isinstance(event, ev.Failed):
            sys.exit(event.message)
    # the clock stops at the last step: the end-of-run evaluation and summary are not training
    return images / (last - start)


def minimal_loop() -> float:
    data = load_dataset(DATASET, train_size=TRAIN_SIZE, seed=SEED)
    torch.manual_seed(SEED)
    encoder = build_encoder("convnet", 1, data.image_size, 128)
    head = torch.nn.Linear(128, data.num_classes)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=5e-4)
    x_all, y_all = torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels)
    images, start = 0, None
    for epoch in range(EPOCHS):
        order = np.random.default_rng([SEED, epoch]).permutation(len(y_all))
        for s in range(len(order) // BATCH):
            idx = torch.as_tensor(order[s * BATCH:(s + 1) * BATCH])
            x, y = x_all[idx].float().div_(255), y_all[idx]
            loss = torch.nn.functional.cross_entropy(head(encoder(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            if start is None:
                start = time.perf_counter()
            else:
                images += BATCH
    return images / (time.perf_counter() - start)


def main() -> None:
    import tempfile

    job, loop = [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(3):
            job.append(engine_job(out))
            loop.append(minimal_loop())
    print(f"engine job    {max(job):8.1f} images/s  (runs: {', '.join(f'{v:.0f}' for v in job)})")
    print(f"minimal loop  {max(loop):8.1f} images/s  (runs: {', '.join(f'{v:.0f}' for v in loop)})")
    print(f"throughput ratio job / loop: {max(job) / max(loop):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
