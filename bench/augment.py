"""Batched on-device SimCLR augmentation against torchvision's per-image pipeline.

Same transformations, same settings, same images: ``SimCLRAugment`` on a whole batch versus its
``torchvision_equivalent()`` (torchvision.transforms.v2: RandomResizedCrop, RandomHorizontalFlip,
ColorJitter with p, RandomGrayscale, GaussianBlur with p) applied image by image, as a DataLoader
worker would. Prints the time per batch of each and the ratio (target: >= 5x on the CPU for
28x28 batches of 512), and the GPU figure when a GPU is present.

    python bench/augment.py [--batch 512] [--repeats 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import torch  # noqa: E402

from engine.augment import SimCLRAugment  # noqa: E402
from engine.data import load_dataset  # noqa: E402


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def images(name: str, batch: int) -> torch.Tensor:
    ds = load_dataset(name, train_size=batch, test_size=10, seed=0)
    return torch.from_numpy(ds.train.images[:batch]).float() / 255


def compare(label: str, x: torch.Tensor, repeats: int) -> None:
    aug = SimCLRAugment(x.shape[1], tuple(x.shape[2:]), blur_sigma=(0.1, 1.0))
    pipeline = aug.torchvision_equivalent()
    g = torch.Generator().manual_seed(0)
    per_image = timed(lambda: torch.stack([pipeline(img) for img in x]), repeats)
    batched = timed(lambda: aug(x, g), repeats)
    print(f"{label:<44} torchvision per image {per_image * 1e3:8.1f} ms   batched CPU {batched * 1e3:7.1f} ms   "
          f"ratio {per_image / batched:6.1f}x")
    if torch.cuda.is_available():
        xd = x.cuda()
        gd = torch.Generator(device="cuda").manual_seed(0)
        on_gpu = timed(lambda: aug(xd, gd), repeats, torch.cuda.synchronize)
        print(f"{'':<44} batched on {torch.cuda.get_device_name()}: {on_gpu * 1e3:7.2f} ms   "
              f"ratio against torchvision per image on the CPU {per_image / on_gpu:8.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for both sides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} CPU thread(s), median of {args.repeats}")
    compare("fashion-mnist 28x28 grey (crop, flip, jitter, blur)", images("fashion-mnist", args.batch), args.repeats)
    shapes = images("shapes", args.batch)
    shapes28 = torch.nn.functional.interpolate(shapes, size=28, mode="bilinear", align_corners=False).clamp(0, 1)
    compare("shapes 28x28 colour (all operations)", shapes28, args.repeats)


if __name__ == "__main__":
    main()
