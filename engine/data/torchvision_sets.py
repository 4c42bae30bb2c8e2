"""Fashion-MNIST, MNIST, CIFAR-10 and STL-10 through torchvision (downloaded when online).

Fashion-MNIST is also found offline where Debian's ``dataset-fashion-mnist`` package puts the
original IDX files, and in any folder holding those four ``.gz`` files.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from engine.data import DATASETS, ImageDataset, Split

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format): magic, dimensions as big-endian int32, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape).copy()  # frombuffer is read-only; torch wants writable memory


def _idx_folder(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        if all((folder / f).exists() for pair in IDX_FILES.values() for f in pair):
            return folder
    return None


def _idx_dataset(name: str, folder: Path, classes: list[str]) -> ImageDataset:
    splits = {}
    for split, (img_file, lbl_file) in IDX_FILES.items():
        images = read_idx(folder / img_file)[:, None]
        labels = read_idx(folder / lbl_file).astype(np.int64)
        splits[split] = Split(np.ascontiguousarray(images), labels)
    return ImageDataset(name, splits["train"], splits["test"], classes,
                        notes=[f"{name} read from {folder}"])


def _download_failed(name: str, root: Path, error: Exception, extra: str = "") -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} is not on this machine and could not be downloaded ({type(error).__name__}: {error}). "
        f"Either connect to the internet and run again (it is saved under {root}), "
        f"or pass --data-root pointing to a folder that already holds it{extra}."
    )


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(data_root: Path, seed: int = 0) -> ImageDataset:
    folder = _idx_folder([data_root / "FashionMNIST" / "raw", data_root, DEBIAN_FASHION])
    if folder is not None:
        return _idx_dataset("fashion-mnist", folder, FASHION_CLASSES)
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(data_root), train=True, download=True)
    except Exception as error:  # offline: no route to the mirrors
        raise _download_failed("Fashion-MNIST", data_root, error,
                               ", or install Debian's package: apt-get install dataset-fashion-mnist "
                               f"(it puts the files in {DEBIAN_FASHION})") from error
    return _idx_dataset("fashion-mnist", data_root / "FashionMNIST" / "raw", FASHION_CLASSES)


@DATASETS.register("mnist")
def load_mnist(data_root: Path, seed: int = 0) -> ImageDataset:
    folder = _idx_folder([data_root / "MNIST" / "raw"])
    if folder is None:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(data_root), train=True, download=True)
            MNIST(str(data_root), train=False, download=True)
        except Exception as error:
            raise _download_failed("MNIST", data_root, error) from error
        folder = data_root / "MNIST" / "raw"
    return _idx_dataset("mnist", folder, [str(i) for i in range(10)])


@DATASETS.register("cifar10")
def load_cifar10(data_root: Path, seed: int = 0) -> ImageDataset:
    try:
        from torchvision.datasets import CIFAR10

        sets = {s: CIFAR10(str(data_root), train=(s == "train"), download=True) for s in ("train", "test")}
    except Exception as error:
        raise _download_failed("CIFAR-10", data_root, error) from error
    splits = {s: Split(np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)), np.asarray(d.targets, np.int64))
              for s, d in sets.items()}
    return ImageDataset("cifar10", splits["train"], splits["test"], list(sets["train"].classes))


@DATASETS.register("stl10")
def load_stl10(data_root: Path, seed: int = 0) -> ImageDataset:
    try:
        from torchvision.datasets import STL10

        sets = {s: STL10(str(data_root), split=s, download=True) for s in ("train", "test")}
    except Exception as error:
        raise _download_failed("STL-10", data_root, error) from error
    splits = {s: Split(np.ascontiguousarray(d.data), np.asarray(d.labels, np.int64)) for s, d in sets.items()}
    return ImageDataset("stl10", splits["train"], splits["test"], list(sets["train"].classes))
