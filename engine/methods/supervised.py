"""Supervised representation learning and transfer learning.

``supervised``: the encoder learns from labels through a classification head that is thrown away
after training; the representation is what the encoder outputs before that head.
``transfer``: start from a pretrained encoder (ImageNet weights, or an earlier run with
``--init-from``). Option 1, ``--freeze``: keep the pretrained representation as it is and train only
the head. Option 2: fine-tune everything, the pretrained backbone at a smaller learning rate.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.methods import METHODS, Method, StepOutput
from engine.params import Param


@METHODS.register("supervised")
class Supervised(Method):
    family = "supervised"
    summary = "cross-entropy through a classification head that is discarded after training"
    help = ("The network learns to name the class of each image. The last layer (the head) only serves "
            "training; the features just before it are the representation, reused for other tasks.")
    defaults = {"epochs": 15, "batch_size": 128, "lr": 2e-3}

    def __init__(self, encoder, info, **params):
        super().__init__(encoder, info, **params)
        if info.num_classes < 2:
            raise ValueError(f"method 'supervised' needs class labels (two classes at least); "
                             f"{info.dataset} has {info.num_classes}: use a self-supervised method")
        self.head = nn.Linear(encoder.embedding_dim, info.num_classes)

    def training_step(self, images, labels):
        logits = self.head(self.encoder(images))
        loss = nn.functional.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss, {"cross_entropy": loss.detach()}, {"train_accuracy": acc})


@METHODS.register("transfer")
class Transfer(Supervised):
    family = "transfer"
    summary = "reuse a pretrained encoder: frozen features (--freeze) or fine-tuning"
    help = ("Start from a network trained on another task (ImageNet, or an earlier run). Frozen: its "
            "features are used as they are and only a new head learns. Fine-tuned: everything keeps "
            "learning, the pretrained part more slowly, so it adapts without forgetting.")
    params = (
        Param("freeze", False, "Keep the pretrained encoder fixed and train only the new head (option 1).",
              type=bool),
        Param("backbone_lr_scale", 0.1, "Learning rate of the pretrained part relative to the new layers "
              "when fine-tuning (option 2).", low=0.0, high=1.0),
    )
    defaults = {"epochs": 5, "batch_size": 64, "lr": 1e-3, "encoder": "efficientnet-lite0"}

    def __init__(self, encoder, info, freeze=False, backbone_lr_scale=0.1):
        super().__init__(encoder, info)
        self.freeze, self.backbone_lr_scale = freeze, backbone_lr_scale
        if freeze:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # frozen means frozen: batch-norm statistics stay pretrained too
        return self

    def parameter_groups(self, lr):
        if self.freeze:
            return [{"params": list(self.head.parameters()), "lr": lr}]
        backbone = self.encoder.backbone_parameters() or list(self.encoder.parameters())
        ids = {id(p) for p in backbone}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": backbone, "lr": lr * self.backbone_lr_scale}, {"params": rest, "lr": lr}]
