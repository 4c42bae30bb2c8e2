"""Datasets: every dataset is held in memory as uint8 images, so batches are one indexing away.

A loader is registered under a name and returns an ``ImageDataset``; ``load_dataset`` resolves a name
(``folder:PATH`` included), then applies the stratified subsets and the class imbalance asked for.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from engine.registry import Registry, import_submodules


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,), -1 where unlabelled
    factors: dict[str, np.ndarray] | None = None  # known factors of variation (shapes), per image

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> "Split":
        factors = None if self.factors is None else {k: v[index] for k, v in self.factors.items()}
        return Split(self.images[index], self.labels[index], factors)


@dataclass
class ImageDataset:
    name: str
    train: Split
    test: Split
    class_names: list[str]
    notes: list[str] = field(default_factory=list)  # e.g. corrupt files skipped: shown in the run log
    skipped_files: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0 and bool((self.train.labels >= 0).all())

    @property
    def is_color(self) -> bool:
        return self.channels == 3

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train.labels[self.train.labels >= 0], minlength=self.num_classes)

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise ValueError(f"split {name!r}: allowed: train, test")
        return self.train if name == "train" else self.test

    def thumbnail(self, split: str, index: int) -> np.ndarray:
        """The image as uint8 (H, W) for grayscale or (H, W, 3) for colour, ready to display."""
        img = self.split(split).images[int(index)]
        return img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))

    def label_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < self.num_classes else "unlabelled"


DatasetLoader = Callable[..., ImageDataset]  # loader(data_root: Path | None, seed: int) -> ImageDataset
DATASETS: Registry[DatasetLoader] = Registry("dataset")
FOLDER_PREFIX = "folder:"
LOGGED_PREFIX = "logged:"  # a run written by engine.log: its probe images are the dataset


def default_data_root() -> Path:
    return Path(os.environ.get("EMBEDDING_EXPLORER_DATA", Path.home() / ".cache" / "embedding-explorer"))


def dataset_names() -> list[str]:
    return DATASETS.names() + [FOLDER_PREFIX + "PATH"]


def check_dataset_name(name: str) -> None:
    """ValueError for an unknown name, or a ``folder:PATH`` whose path is empty or not a folder."""
    if name.startswith(FOLDER_PREFIX):
        from engine.data.folder import check_folder_path

        check_folder_path(name[len(FOLDER_PREFIX):])
    elif name.startswith(LOGGED_PREFIX):
        if not (Path(name[len(LOGGED_PREFIX):]).expanduser() / "probe_images.npy").is_file():
            raise ValueError(f"dataset {name!r}: not a run written by engine.log (no probe_images.npy there)")
    else:
        DATASETS.get(name)


def stratified_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``size`` rows keeping the class proportions (sorted, so order stays stable)."""
    n = len(labels)
    if size >= n:
        return np.arange(n)
    if (labels < 0).any():
        return np.sort(rng.choice(n, size, replace=False))
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(np.arange(n), train_size=size, stratify=labels,
                                   random_state=int(rng.integers(2**31)))
    except ValueError:  # a class too small to stratify: fall back to a plain random subset
        keep = rng.choice(n, size, replace=False)
    return np.sort(keep)


def long_tail_subset(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Keep class c at a fraction ratio**(c / (C-1)) of its size: the first class whole, the last
    at ``ratio`` (the exponential profile of Cui et al. 2019, used for long-tailed benchmarks)."""
    classes = np.unique(labels[labels >= 0])
    keep = []
    for rank, c in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        frac = ratio ** (rank / max(1, len(classes) - 1))
        n = max(1, int(round(len(rows) * frac)))
        keep.append(rng.choice(rows, n, replace=False))
    return np.sort(np.concatenate(keep))


@functools.lru_cache(maxsize=4)
def _load_registered(name: str, root: Path, seed: int) -> ImageDataset:
    """A registered dataset, parsed once per process: the window loads it for thumbnails and the
    training job again; parsing (a CSV, IDX files) holds the GIL and would stall the window.
    Callers never modify the arrays (subsets are copies), so sharing them is safe."""
    return DATASETS.get(name)(data_root=root, seed=seed)


def load_dataset(name: str, *, data_root: str | Path | None = None, train_size: int | None = None,
                 test_size: int | None = None, imbalance: float | None = None,
                 seed: int = 0) -> ImageDataset:
    """Load a registered dataset (or ``folder:PATH``) with optional subsets and class imbalance.

    Raises ValueError for a bad name or setting and FileNotFoundError (with both ways to get the
    data) when it is not on disk and cannot be downloaded.
    """
    for value, field_name in ((train_size, "--train-size"), (test_size, "--test-size")):
        if value is not None and value < 1:
            raise ValueError(f"{field_name}: {value} is not valid; allowed: a whole number >= 1")
    if imbalance is not None and not 0 < imbalance <= 1:
        raise ValueError(f"--imbalance: {imbalance} is not valid; allowed: a ratio in (0, 1], "
                         "the size of the rarest class over the most frequent")
    root = Path(data_root) if data_root else default_data_root()
    if name.startswith(FOLDER_PREFIX):  # never cached: the user's folder may have changed
        from engine.data.folder import load_folder

        ds = load_folder(name[len(FOLDER_PREFIX):], seed=seed)
    elif name.startswith(LOGGED_PREFIX):  # the probe set a training loop of its own logged (engine.log)
        from engine.log import load_logged

        ds = load_logged(name[len(LOGGED_PREFIX):], seed=seed)
    else:
        ds = _load_registered(name, root, seed)
    rng = np.random.default_rng(seed)
    train, test = ds.train, ds.test
    if imbalance is not None and imbalance < 1:
        if not ds.labelled:
            raise ValueError("--imbalance needs class labels; this dataset is unlabelled")
        train = train.take(long_tail_subset(train.labels, imbalance, rng))
    if train_size is not None:
        train = train.take(stratified_subset(train.labels, train_size, rng))
    if test_size is not None:
        test = test.take(stratified_subset(test.labels, test_size, rng))
    return replace(ds, train=train, test=test)


import_submodules(__name__, __path__)
