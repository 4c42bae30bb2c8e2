"""A PyTorch Lightning module on scikit-learn's digits that logs to Embedding Explorer through
``engine.lightning.ProbeLogger`` (``pip install -e '.[lightning]'``).

The module is a plain supervised convnet; the callback embeds a fixed probe set after each validation
and the window shows the map, collapse, triplets and probe accuracy as the epochs go:

    python examples/lightning_digits.py --epochs 10
    embedding-explorer open runs/lightning-digits
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.lightning import ProbeLogger, pl


class DigitsNet(pl.LightningModule):
    """A small convnet whose pooled features are the embedding; a linear head trains it."""

    def __init__(self, lr: float = 3e-3, width: int = 32):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the embedding the callback logs
        return self.encoder(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.head(self(x)), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.head(self(x)).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batches", type=int, default=None, help="training batches per epoch (default: all)")
    parser.add_argument("--out", default="runs")
    args = parser.parse_args(argv)
    pl.seed_everything(0, verbose=False)
    digits = load_digits()
    x = torch.from_numpy(digits.images[:, None] / 16).float()  # (1797, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(digits.target)
    train, val = torch.arange(0, 1400), torch.arange(1400, len(x))
    probe = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:300] + 1400  # fixed
    logger = ProbeLogger(x[probe], y[probe].numpy(), [str(i) for i in range(10)], root=args.out,
                         name="lightning-digits", projection="pca")
    trainer = pl.Trainer(max_epochs=args.epochs, limit_train_batches=args.batches, accelerator="cpu",
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1, callbacks=[logger])
    trainer.fit(DigitsNet(), DataLoader(TensorDataset(x[train], y[train]), batch_size=128, shuffle=True),
                DataLoader(TensorDataset(x[val], y[val]), batch_size=256))
    print(f"run written to {logger.path}")
    return str(logger.path)


if __name__ == "__main__":
    main()
