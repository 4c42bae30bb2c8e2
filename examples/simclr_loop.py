"""A plain PyTorch SimCLR loop on scikit-learn's digits that logs to Embedding Explorer.

Nothing here comes from the project but ``engine.log``: the model, the views and the loss are the
loop's own. Run it, then open the run in the window (it can be opened while it trains):

    python examples/simclr_loop.py --epochs 20
    embedding-explorer open runs/simclr-loop
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from engine import log


def views(x: torch.Tensor) -> torch.Tensor:
    """One random view per image: a crop of 60-100 % of its side, moved and turned a little (an affine
    warp per image), a random contrast and a little noise."""
    n = len(x)
    scale = torch.empty(n).uniform_(0.6, 1.0)
    angle = torch.empty(n).uniform_(-0.3, 0.3)
    shift = torch.empty(n, 2).uniform_(-0.25, 0.25)
    theta = torch.stack([torch.stack([scale * angle.cos(), -scale * angle.sin(), shift[:, 0]], 1),
                         torch.stack([scale * angle.sin(), scale * angle.cos(), shift[:, 1]], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    x = x * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4)
    return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, the 2N - 2 others negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(z1)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.from_numpy(digits.images[:, None] / 16).float()  # (1797, 1, 8, 8) in [0, 1]
    labels = digits.target
    encoder = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))  # the projection head
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    probe = np.random.default_rng(0).permutation(len(images))[:600]  # a fixed probe set

    with log.start(args.out, name="simclr-loop", images=images[probe].numpy(), labels=labels[probe],
                   class_names=[str(i) for i in range(10)], settings={"lr": 3e-3, "temperature": 0.5},
                   projection="pca") as run:
        step = 0
        for epoch in range(args.epochs):
            for batch in torch.randperm(len(images)).split(256):
                x = images[batch]
                loss = nt_xent(head(encoder(views(x))), head(encoder(views(x))))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.log_losses(step, loss=loss.item(), epoch=epoch + 1)
                step += 1
            encoder.eval()
            with torch.no_grad():
                run.log_embeddings(step, encoder(images[probe]), epoch=epoch + 1)
            encoder.train()
    print(f"run written to {run.path}: linear probe {run.finish()['linear_probe_acc']:.3f}")
    return str(run.path)


if __name__ == "__main__":
    main()
