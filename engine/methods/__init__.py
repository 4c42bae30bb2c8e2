"""Methods: a method = encoder + training-only head(s) + loss + batch sampler + augmentations.

A method module registers a ``Method`` subclass with ``@METHODS.register(name)``; this package imports
every module it holds, so the command line's --help and the window's method list pick it up alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from engine.distributed import Shard, check_batch_divides, gather, gather_labels
from engine.encoders import Encoder
from engine.metrics.triplets import TripletDefinition
from engine.params import Param, resolve
from engine.registry import Registry, import_submodules

FAMILIES = ("supervised", "transfer", "metric learning", "pretext task", "contrastive",
            "non-contrastive self-supervised", "collapse control")


@dataclass(frozen=True)
class DataInfo:
    """What a method may know about the data when it builds its heads."""

    num_classes: int
    class_counts: tuple[int, ...]
    channels: int
    image_size: tuple[int, int]
    labelled: bool
    dataset: str


@dataclass
class StepOutput:
    """``loss`` is minimised; ``terms`` are its parts (logged as curves); ``stats`` are other numbers
    a view may draw (e.g. triplet fractions), floats or small lists."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor | float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class Method(nn.Module):
    """Base class. ``self.encoder`` is the representation the probe and the map use.

    Besides ``training_step``, a method may provide these hooks; each has a default here, and the
    training job and the window use them without asking whether they exist:

    - ``before_step(step, total_steps)`` / ``after_step(step, total_steps)``: around each training step
      (phases of training; an EMA teacher's update);
    - ``notes``: sentences for the run log (e.g. sampling with replacement), filled in ``__init__``
      or ``steps_per_epoch``;
    - ``retrieval_metric``: the distance its embedding is meant for ("euclidean" or "cosine"),
      used by the retrieval figures;
    - ``triplet_definition(params)``: the distance and margin the triplet diagnostics count easy /
      semi-hard / hard triplets with (the triplet loss's own for the triplet method);
    - ``augment``: the module that makes its training views (float images (B, C, H, W) in [0, 1],
      takes ``generator=``), or None; ``evaluation_views()`` gives it, or the dataset's own views,
      to the invariance property and the alignment;
    - ``input_view``: the name of a fixed transformation the encoder sees its images through
      (colorization: "grey"); ``encoder_input(images)`` applies it, and the evaluation, its
      references and an exported encoder embed through it too (``representation()``);
    - ``evaluation_stats(embeddings, labels)``: the method's own figures on an evaluation subset
      (triplet categories, distance histograms, class-centre angles), merged into the evaluation.

    On several processes (engine/distributed.py) each rank's ``training_step`` gets its share of the
    global batch; ``shard`` says which (rank, world size). A loss that compares the images of a batch
    with each other calls ``gather`` on its embeddings (the global batch's, with their gradient);
    ``sync_batch_norm`` says whether batch norm must see the global batch's statistics;
    ``images_per_batch`` and ``check_world_size`` say how many images a batch holds and whether it
    divides among the ranks. ``generator``, when the job sets one, draws the random parts of a step
    (the two-view augmentations) the same in every rank, so each rank takes its rows' share of the
    draws of the global batch.
    """

    family: ClassVar[str] = "supervised"
    summary: ClassVar[str] = ""  # one line: what it learns and from what
    help: ClassVar[str] = ""  # a paragraph in the words of the field, for the window
    params: ClassVar[tuple[Param, ...]] = ()
    needs_labels: ClassVar[bool] = True
    # Defaults the method prefers for the generic settings (e.g. a larger batch for SimCLR); "dataset"
    # names the one the window offers when the method is chosen (digits when it names none)
    defaults: ClassVar[dict[str, Any]] = {}
    # the fixed transformation the encoder sees its images through (engine.encoders.input_view), or None
    input_view: ClassVar[str | None] = None
    retrieval_metric: str = "euclidean"
    # batch statistics are part of the method (its batch norm must see the global batch on several ranks)
    sync_batch_norm: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, info: DataInfo, **params: Any):
        super().__init__()
        self.encoder = encoder
        self.info = info
        self.hparams = params
        self.notes: list[str] = []
        # not a class attribute: nn.Module keeps a submodule in _modules, which a class attribute
        # of the same name would shadow; a subclass assigns its augmentation module over this
        self.augment: nn.Module | None = None
        self.shard = Shard()  # set by the training job on several processes
        self.generator: torch.Generator | None = None  # set by the job: the step's random draws

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of every rank's share of the batch, in rank order, with its gradient (alone: ``x``)."""
        return gather(x, self.shard)

    def gather_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return gather_labels(labels, self.shard)

    def images_per_batch(self, batch_size: int) -> int:
        """Images of one global batch (``--batch-size``; K x M for the class samplers)."""
        return batch_size

    def check_world_size(self, batch_size: int, world_size: int) -> None:
        """ValueError saying what would divide when a global batch does not split among the ranks."""
        check_batch_divides(self.images_per_batch(batch_size), world_size)

    @classmethod
    def check_data(cls, info: DataInfo) -> None:
        """ValueError saying why this method cannot train on the data ``info`` describes, in words
        that follow "method 'NAME' " (checked before any model is built; the window checks its form's
        dataset with it as the field changes). Default: class labels when the method needs them."""
        if cls.needs_labels and not info.labelled:
            raise ValueError(f"needs class labels but {info.dataset} is unlabelled: choose a self-supervised "
                             "method, or sort the images into class sub-folders")

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """One batch: images float in [0, 1] (B, C, H, W) on the device, labels int64 (B,)."""
        raise NotImplementedError

    def batches(self, labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Row indices of each batch of one epoch. Default: a shuffled pass, the last partial batch
        dropped (batch norm and in-batch negatives want full batches)."""
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start:start + batch_size]

    def steps_per_epoch(self, n_train: int, batch_size: int) -> int:
        return max(1, n_train // batch_size)

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups. Default: everything at ``lr``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def before_step(self, step: int, total_steps: int) -> None:
        """Called before each training step, ``step`` of them done out of ``total_steps`` (which a time
        limit may still change): a method whose training has phases switches them here (transfer's
        head warm-up), so a resumed run enters the phase its step belongs to."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (an EMA teacher updates itself here)."""

    def evaluation_stats(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """The method's own figures on an evaluation subset (embeddings (n, D), labels (n,), -1 where
        unlabelled). Default: none."""
        return {}

    @classmethod
    def triplet_definition(cls, params: Mapping[str, Any]) -> TripletDefinition:
        """The distance and margin that make a triplet easy, semi-hard or hard for this method's
        representation (the evaluation's triplet shares, the Triplets panel, the triplet inspector,
        the map's colouring), from its resolved ``params``. Default: the triplet loss's defaults; a
        method that trains with a triplet loss returns that loss's."""
        return TripletDefinition()

    def encoder_input(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the encoder is trained to see them, from the dataset's float images (B, C, H, W)
        in [0, 1]: as they are, or through the method's ``input_view`` (colorization's encoder sees
        the lightness alone). The evaluation measures the representation of this input, and its
        references (random init, raw pixels) get the same input, so that they compare like with like."""
        from engine.encoders import input_view

        view = input_view(self.input_view)
        return images if view is None else view(images)

    def representation(self) -> nn.Module:
        """The module the evaluation embeds images with: the encoder, behind the method's
        ``input_view`` when it has one (an export of the encoder keeps it too)."""
        from engine.encoders import InputView, input_view

        view = input_view(self.input_view)
        return self.encoder if view is None else InputView(self.encoder, view)

    def evaluation_views(self) -> nn.Module:
        """The random views the invariance property and the alignment are measured under: the
        method's own (``augment``) where it trains on views, else the dataset's own views
        (engine.augment.dataset_views: e.g. no flips on digits)."""
        if self.augment is not None:
            return self.augment
        from engine.augment import dataset_views

        return dataset_views(self.info.channels, self.info.image_size, self.info.dataset)


METHODS: Registry[type[Method]] = Registry("method")


def run_triplet_definition(config: Mapping[str, Any]) -> TripletDefinition:
    """The triplet definition of a saved run, from its ``config.json`` (``method``, ``method_params``),
    for the window's views of it. Raises ValueError when the config names an unknown method or
    values it does not take."""
    method = config.get("method") if isinstance(config, Mapping) else None
    params = config.get("method_params") if isinstance(config, Mapping) else None
    if not isinstance(method, str) or not isinstance(params, (dict, type(None))):
        raise ValueError(f"config.json: method {method!r} with method_params {params!r} is not valid; "
                         "allowed: a method name and an object of its parameters")
    cls = METHODS.get(method)
    try:
        return cls.triplet_definition(resolve(cls.params, params or {}))
    except (TypeError, KeyError) as error:
        raise ValueError(f"config.json: method_params {params!r} do not fit method {method!r} ({error})") from error

import_submodules(__name__, __path__)
