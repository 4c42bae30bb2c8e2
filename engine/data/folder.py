"""``folder:PATH`` — the user's own images.

Sub-folders are classes; a flat folder of images is unlabelled (the probe is then off). Images are
centre-cropped to a square and resized to ``FOLDER_IMAGE_SIZE`` so they stack into one array.
Unreadable or corrupt files are skipped, counted, and listed in the run log.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data import ImageDataset, Split, stratified_subset

FOLDER_IMAGE_SIZE = 64
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TEST_FRACTION = 0.2


def _read(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # forces the whole decode, so a truncated file fails here, not later
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def load_folder(root: Path, seed: int = 0, size: int = FOLDER_IMAGE_SIZE) -> ImageDataset:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: pass folder:PATH with an existing folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs:
        files = [(f, label) for label, d in enumerate(class_dirs)
                 for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
        class_names = [d.name for d in class_dirs]
    else:
        files = [(f, -1) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        class_names = []
    images, labels, skipped = [], [], []
    for path, label in files:
        try:
            images.append(_read(path, size))
            labels.append(label)
        except Exception as error:  # PIL raises many kinds for corrupt files; each one is just skipped
            skipped.append(f"{path}: {type(error).__name__}: {error}")
    if not images:
        raise ValueError(f"no readable image in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                         f"{'; ' + str(len(skipped)) + ' unreadable' if skipped else ''})")
    labels = np.asarray(labels, np.int64)
    if class_names:
        present = np.unique(labels)
        if len(present) < 2:
            raise ValueError(f"{root} has images in only one class folder ({class_names[present[0]]}): "
                             "put each class in its own sub-folder (two at least), or put all images "
                             "directly in the folder to use it unlabelled")
    images = np.stack(images)
    if all((im[0] == im[1]).all() and (im[1] == im[2]).all() for im in images[:200]):
        images = images[:, :1]  # grayscale pictures stay one channel
    rng = np.random.default_rng(seed)
    n = len(labels)
    n_test = max(1, int(round(n * TEST_FRACTION))) if n > 1 else 0
    test_idx = stratified_subset(labels, n_test, rng) if n_test else np.array([], np.int64)
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    if len(train_idx) == 0:
        train_idx = test_idx
    notes = [f"{len(images)} images read from {root}"]
    if not class_names:
        notes.append("the folder has no class sub-folders: it is unlabelled, so the linear probe and "
                     "kNN accuracy are off")
    if skipped:
        notes.append(f"{len(skipped)} unreadable or corrupt file(s) skipped: " + "; ".join(skipped[:20])
                     + (" …" if len(skipped) > 20 else ""))
    full = Split(images, labels)
    return ImageDataset(f"folder:{root}", full.take(train_idx), full.take(test_idx), class_names,
                        notes=notes, skipped_files=skipped)
