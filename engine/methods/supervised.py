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
            "learning, the pretrained part more slowly, so it adapts without forgetting. Fine-tuning "
            "first trains the new head alone on the frozen network (a random head would send noise "
            "back into good features), then the whole network; batch-norm layers keep their "
            "pretrained statistics throughout.")
    params = (
        Param("freeze", False, "Keep the pretrained encoder fixed and train only the new head (option 1).",
              type=bool),
        Param("backbone_lr_scale", 0.1, "Learning rate of the pretrained part relative to the new layers "
              "when fine-tuning (option 2).", low=0.0, high=1.0),
        Param("head_warmup", 0.5, "Fraction of the run in which only the new head trains, the pretrained "
              "part frozen, before everything fine-tunes (linear probing then fine-tuning, Kumar et al. "
              "2022); 0: fine-tune from the first step.", low=0.0, high=1.0),
        Param("batch_norm", "frozen", "Batch-norm layers when fine-tuning: frozen (pretrained running "
              "statistics, scale and shift kept) or train (statistics re-estimated from the new data's "
              "batches, scale and shift learnt).", type=str, choices=("frozen", "train")),
    )
    defaults = {"epochs": 5, "batch_size": 64, "lr": 1e-3, "encoder": "efficientnet-lite0",
                "encoder_params": {"input_size": 96}}

    def __init__(self, encoder, info, freeze=False, backbone_lr_scale=0.1, head_warmup=0.5,
                 batch_norm="frozen"):
        super().__init__(encoder, info)
        self.hparams = {"freeze": freeze, "backbone_lr_scale": backbone_lr_scale, "head_warmup": head_warmup,
                        "batch_norm": batch_norm}
        self.freeze, self.backbone_lr_scale = freeze, backbone_lr_scale
        self.head_warmup = 0.0 if freeze else float(head_warmup)
        if freeze:
            encoder.requires_grad_(False)
        elif batch_norm == "frozen":
            encoder.freeze_batch_norm()
        backbone = encoder.backbone_parameters() or list(encoder.parameters())
        # what fine-tuning trains of the pretrained part (frozen batch-norm layers excluded); the
        # head warm-up switches exactly these off and on
        self._backbone = [p for p in backbone if p.requires_grad]
        self.warming_up = False

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # frozen means frozen: batch-norm statistics stay pretrained too
        return self

    def before_step(self, step: int, total_steps: int) -> None:
        warming_up = step < round(self.head_warmup * total_steps)
        if warming_up != self.warming_up:
            self.warming_up = warming_up
            for p in self._backbone:
                p.requires_grad_(not warming_up)
            # a backbone without trainable parameters keeps its batch-norm statistics (PretrainedEncoder.train)
            self.encoder.train(self.training)

    def parameter_groups(self, lr):
        """The new head at ``lr``, the pretrained part at ``lr * backbone_lr_scale``; biases and
        batch-norm scales and shifts (1-d parameters) without weight decay, which would only pull
        them towards zero, away from the values they were trained to."""
        if self.freeze:
            return [{"params": list(self.head.parameters()), "lr": lr}]
        ids = {id(p) for p in self._backbone}
        rest = [p for p in self.parameters() if id(p) not in ids and p.requires_grad]
        groups = []
        for params, rate in ((self._backbone, lr * self.backbone_lr_scale), (rest, lr)):
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": rate})
            groups.append({"params": [p for p in params if p.ndim <= 1], "lr": rate, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]
