"""``folder:PATH`` — the user's own images.

Sub-folders are classes; a flat folder of images is unlabelled (the probe is then off). Images are
centre-cropped to a square and resized to ``FOLDER_IMAGE_SIZE`` so they stack into one array.

Every file is input from elsewhere: only regular files are opened (a FIFO named ``.png`` would block
the read for ever; devices and sockets are no images either; a symlink to a regular file is fine);
files PIL cannot decode (corrupt, truncated, not an image, over PIL's decompression-bomb limit) are
skipped and listed in a note. Each image is decoded at the size training needs, not at full size (see
``decode``), so a 12000 x 12000 photo does not cost gigabytes.

A labelled folder keeps a fifth of each class for testing, at least one image, so every class is
both trained on and tested; a folder too small for that is refused before training, saying how many
images it needs. An unlabelled folder has nothing to hold out (there is no accuracy to score): it
trains on all its images, and the map shows all of them.
"""
from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from engine.data import ImageDataset, Split

FOLDER_IMAGE_SIZE = 64
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TEST_FRACTION = 0.2
MIN_PER_CLASS = 2  # one to train on, one to test on
MIN_TEST = 3  # the map and its indicators need three points
MIN_UNLABELLED = 3
PARALLEL_FROM = 256  # files from which worker processes decode a folder


def _read(path: Path, size: int) -> np.ndarray:
    """The image as uint8 (3, size, size): the centred square, resized (``decode``)."""
    return decode(path, (size,), "RGB")[0]


def decode(path: Path, sizes: tuple[int, ...], mode: str = "RGB") -> list[np.ndarray]:
    """The image's centred square at each of ``sizes``, uint8 (C, s, s); ``mode`` "RGB" (C = 3) or
    "L" (C = 1, grey by luminance).

    Decoded at the size needed: a JPEG is decoded straight at 1/2, 1/4 or 1/8 scale (``draft``: the
    full-size pixels never exist); other formats are decoded in their own mode (one byte a pixel for
    grey) and shrunk from there (``resize`` with a box and ``reducing_gap``: no full-size crop or RGB
    copy); only the small results are converted to ``mode``. One decode serves every size (the
    encoder's input and the thumbnail)."""
    from PIL import Image

    largest = max(sizes)
    with warnings.catch_warnings():
        # between PIL's limit and twice it, PIL only warns; above, it raises DecompressionBombError
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            w, h = im.size
            side = min(w, h)
            # the smallest scale whose centred square still has at least ``largest`` pixels a side
            im.draft("RGB" if mode == "RGB" else "L",
                     (math.ceil(largest * w / side), math.ceil(largest * h / side)))  # JPEG only; else no-op
            w, h = im.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            if im.mode not in ("L", "RGB", "RGBA", "LA"):  # palette, 1-bit, 16-bit, CMYK...: no resampling in them
                im = im.convert("RGBA" if "transparency" in im.info or "A" in im.mode else "RGB")
            out = []
            for size in sizes:
                small = im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=3.0)
                arr = np.asarray(small.convert(mode), dtype=np.uint8)
                out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            return out


def peek(path: Path) -> tuple[str, tuple[int, int]] | None:
    """(PIL mode, (width, height)) read from the file's header only (nothing decoded), or None when
    the file is not a regular file or not an image PIL knows."""
    from PIL import Image

    if not_regular(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.mode, im.size
    except Exception:  # corrupt, not an image, a bomb: the decode will name it
        return None


def why_unreadable(error: Exception) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(error, Image.DecompressionBombError):
        return (f"more than {2 * Image.MAX_IMAGE_PIXELS} pixels, PIL's limit against decompression bombs; "
                "downscale it to use it")
    if isinstance(error, UnidentifiedImageError):
        return "not an image PIL can read"
    if isinstance(error, PermissionError):
        return "no permission to read it"
    return f"corrupt or truncated ({type(error).__name__}: {error})"


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (a symlink is followed: one to a regular file is
    fine), or None. Opening a FIFO would block until something writes to it; a device may never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken link" if path.is_symlink() else "gone since the folder was listed"
    if stat.S_ISREG(mode):
        return None
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def _candidates(folder: Path, recursive: bool) -> list[Path]:
    """Non-hidden files with an image suffix, sorted; symlinked sub-folders are not followed (no loops)."""
    if not recursive:
        return sorted(p for p in folder.iterdir()
                      if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def check_folder_path(text: str) -> Path:
    """The folder a ``folder:PATH`` dataset names, or ValueError saying what is wrong with the path."""
    if not text.strip():
        raise ValueError("--dataset folder: needs a path after 'folder:', e.g. folder:~/Pictures/pets "
                         "(sub-folders are classes; a flat folder is unlabelled)")
    root = Path(text).expanduser()
    if not root.exists():
        raise ValueError(f"--dataset folder:{text}: the folder {root} does not exist; give an existing folder")
    if not root.is_dir():
        raise ValueError(f"--dataset folder:{text}: {root} is a file, not a folder; give the folder that "
                         "holds the images")
    return root


def list_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(every candidate image file with its label, the class names): sub-folders are the classes
    (label = their index in sorted order, their own sub-folders included), a flat folder's images are
    unlabelled (-1). Files are in sorted order; nothing is opened yet."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs:
        files = [(f, label) for label, d in enumerate(class_dirs) for f in _candidates(d, recursive=True)]
        return files, [d.name for d in class_dirs]
    return [(f, -1) for f in _candidates(root, recursive=False)], []


class FolderImages:
    """Image files as a map-style dataset for a DataLoader: item i is (i, [the image at each of
    ``sizes``, uint8 (C, s, s)] or None, why it could not be read). Decoding happens in the worker."""

    def __init__(self, files: list[Path], sizes: tuple[int, ...], mode: str = "RGB"):
        self.files, self.sizes, self.mode = files, tuple(sizes), mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        kind = not_regular(path)
        if kind:
            return i, None, f"{kind}, not an image file: not opened"
        try:
            return i, decode(path, self.sizes, self.mode), ""
        except Exception as error:  # PIL raises many kinds for corrupt files; each one is just skipped
            return i, None, why_unreadable(error)


def decoder_init(_: int) -> None:
    """A decoding worker: PIL decodes; torch's threads stay with the training process."""
    import torch

    torch.set_num_threads(1)


def _as_is(item):
    return item  # the arrays as decoded (the DataLoader would make tensors of them)


def decoding_workers(n_files: int) -> int:
    """Worker processes that decode a folder into memory: none for a few files (starting workers costs
    more than decoding them), else one per core but one, up to 8."""
    if n_files < PARALLEL_FROM:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def load_folder(root: str | Path, seed: int = 0, size: int = FOLDER_IMAGE_SIZE) -> ImageDataset:
    import torch

    root = check_folder_path(str(root))
    files, class_names = list_folder(root)
    images, labels, skipped = [], [], []
    workers = decoding_workers(len(files))
    # decoded by a DataLoader's worker processes, in the files' order (one image each: results do not
    # depend on how many workers)
    loader = torch.utils.data.DataLoader(
        FolderImages([f for f, _ in files], (size,), "RGB"), batch_size=None, num_workers=workers,
        worker_init_fn=decoder_init if workers else None, prefetch_factor=16 if workers else None,
        collate_fn=_as_is)
    for i, decoded, why in loader:
        path, label = files[i]
        if decoded is None:
            skipped.append(f"{path}: {why}")
            continue
        images.append(decoded[0])
        labels.append(label)
    if not images:
        raise ValueError(f"no readable image in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                         f"{'; ' + str(len(skipped)) + ' unreadable' if skipped else ''})")
    labels = np.asarray(labels, np.int64)
    images = np.stack(images)
    if all((im[0] == im[1]).all() and (im[1] == im[2]).all() for im in images[:200]):
        images = images[:, :1]  # grayscale pictures stay one channel
    notes = [f"{len(images)} images read from {root}"]
    if skipped:
        notes.append(f"{len(skipped)} unreadable or corrupt file(s) skipped: " + "; ".join(skipped[:20])
                     + (" …" if len(skipped) > 20 else ""))
    full = Split(images, labels)
    if class_names:
        train_idx, test_idx = _labelled_split(root, labels, class_names, np.random.default_rng(seed))
        if len(test_idx) < 20:
            notes.append(f"small folder: {len(train_idx)} images to train on, {len(test_idx)} held out to test "
                         "on; the accuracies are those of a handful of images")
        train, test = full.take(train_idx), full.take(test_idx)
    else:
        if len(images) < MIN_UNLABELLED:
            raise ValueError(f"{root} has {len(images)} readable image(s); an unlabelled folder needs "
                             f"{MIN_UNLABELLED} at least: add images")
        notes.append("the folder has no class sub-folders: it is unlabelled, so the linear probe and kNN "
                     "accuracy are off, and the map shows every image (nothing is held out)")
        train = test = full
    return ImageDataset(f"folder:{root}", train, test, class_names, notes=notes, skipped_files=skipped)


def _labelled_split(root: Path, labels: np.ndarray, class_names: list[str], rng: np.random.Generator):
    """(train rows, test rows): a fifth of each class held out, one image at least and never all of it,
    and at least MIN_TEST in all; ValueError naming what to add when the folder is too small."""
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise ValueError(f"{root} has images in only one class folder ({class_names[present[0]]}): "
                         "put each class in its own sub-folder (two at least), or put all images "
                         "directly in the folder to use it unlabelled")
    few = [f"{class_names[c]} ({counts[c]})" for c in present if counts[c] < MIN_PER_CLASS]
    if few:
        raise ValueError(f"{root}: too few images in class folder(s) {', '.join(few)}: each class needs "
                         f"{MIN_PER_CLASS} at least, one to train on and one to test on; add images to them, "
                         "or move those folders out")
    needed = max(MIN_PER_CLASS * len(present), len(present) + MIN_TEST)
    if len(labels) < needed:
        raise ValueError(f"{root} has {len(labels)} images: too few to train and test on; with "
                         f"{len(present)} classes it needs {needed} ({MIN_PER_CLASS} per class, and {MIN_TEST} "
                         "held out for the map): add images")
    n_test = {c: int(np.clip(round(TEST_FRACTION * counts[c]), 1, counts[c] - 1)) for c in present}
    for c in sorted(present, key=lambda c: -counts[c]):  # top up to MIN_TEST from the largest classes
        while sum(n_test.values()) < MIN_TEST and n_test[c] < counts[c] - 1:
            n_test[c] += 1
    test = [rng.choice(np.flatnonzero(labels == c), n_test[c], replace=False) for c in present]
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx
