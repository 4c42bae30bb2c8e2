"""A PyTorch Lightning callback that logs a fixed probe set to Embedding Explorer at each validation
(``pip install -e '.[lightning]'``).

    from engine.lightning import ProbeLogger

    trainer = L.Trainer(max_epochs=20, callbacks=[ProbeLogger(probe_x, probe_y, class_names=names)])
    trainer.fit(model, train_loader, val_loader)

It opens an ``engine.log`` run when fitting starts (the module's ``hparams`` as its settings), logs the
training loss every ``log_every_n_steps`` steps (the trainer's), embeds the probe set with the module
in eval mode after each validation (not the sanity check) and logs the embeddings, and finishes the
run when fitting ends (a failed line when it raises). Only the main process (global rank 0) writes.
``embed(module, x)``: how to get embeddings from a batch (default ``module(x)``); ``images``: the
probe as the window shows it, when ``inputs`` are normalised for the model (uint8 or floats in [0, 1]).

Works with ``lightning`` (``import lightning.pytorch``) or, where only that is installed,
``pytorch_lightning``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl
    except ImportError:
        pl = None

__all__ = ["ProbeLogger", "available"]

INSTALL = "pip install -e '.[lightning]' (or pip install lightning)"


def available() -> bool:
    return pl is not None


_Base = pl.Callback if pl is not None else object


class ProbeLogger(_Base):
    """Logs ``inputs`` (the probe set, a tensor the module takes) at each validation end; see the
    module docstring."""

    def __init__(self, inputs, labels=None, class_names=None, *, images=None, train=None, root: str | Path = "runs",
                 name: str = "lightning", settings: Mapping[str, Any] | None = None,
                 embed: Callable[[Any, Any], Any] | None = None, batch_size: int = 256, projection: str = "umap",
                 knn_k: int = 10, seed: int = 0):
        if pl is None:
            raise ImportError(f"engine.lightning needs PyTorch Lightning: {INSTALL}")
        import torch

        super().__init__()
        self.inputs = inputs if torch.is_tensor(inputs) else torch.as_tensor(np.asarray(inputs))
        if self.inputs.ndim < 2 or len(self.inputs) < 3:
            raise ValueError(f"inputs: shape {tuple(self.inputs.shape)} is not valid; allowed: (N, ...) with N >= 3, "
                             "the probe set as the module takes it")
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size: {batch_size!r} is not valid; allowed: a whole number >= 1")
        self.start_args = dict(images=self.inputs if images is None else images, labels=labels,
                               class_names=class_names, train=train, projection=projection, knn_k=knn_k, seed=seed)
        self.root, self.name, self.settings = root, name, dict(settings or {})
        self.embed_fn, self.batch_size = embed, batch_size
        self.run = None
        self.path: Path | None = None  # the run directory, once fitting has started

    # the hooks ----------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or self.run is not None:
            return
        from engine import log

        settings = {k: v for k, v in dict(getattr(pl_module, "hparams", {}) or {}).items()
                    if isinstance(v, (int, float, str, bool, type(None)))}
        settings.update(self.settings, max_epochs=trainer.max_epochs, module=type(pl_module).__name__)
        self.run = log.start(self.root, self.name, settings=settings, **self.start_args)
        self.path = self.run.path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.run is None:
            return
        every = max(1, int(getattr(trainer, "log_every_n_steps", 50) or 1))
        step = int(trainer.global_step)
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None or step % every:
            return
        value = float(loss.detach() if hasattr(loss, "detach") else loss)
        epoch = trainer.current_epoch + (batch_idx + 1) / max(1, _batches(trainer))
        self.run.log_losses(step, epoch=epoch, loss=value)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.run is None or trainer.sanity_checking:
            return
        self.run.log_embeddings(int(trainer.global_step), self.embed(pl_module), epoch=trainer.current_epoch + 1)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.run is not None:
            self.run.__exit__(type(exception), exception, None)  # a failed line naming it; what was logged stays
            self.run = None

    # embedding ----------------------------------------------------------------------------------
    def embed(self, pl_module):
        """The probe set's embeddings (N, D) by the module as it is now, in eval mode, without gradients."""
        import torch

        was_training = pl_module.training
        pl_module.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(self.inputs), self.batch_size):
                    x = self.inputs[start:start + self.batch_size].to(pl_module.device)
                    if x.dtype == torch.uint8:
                        x = x.float() / 255
                    z = self.embed_fn(pl_module, x) if self.embed_fn is not None else pl_module(x)
                    out.append(z.detach().float().flatten(1).cpu())
        finally:
            pl_module.train(was_training)
        return torch.cat(out)


def _batches(trainer) -> int:
    n = getattr(trainer, "num_training_batches", 1)
    return int(n) if isinstance(n, (int, float)) and np.isfinite(n) and n > 0 else 1
