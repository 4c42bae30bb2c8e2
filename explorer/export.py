"""Export: the map and the plots as PNG/SVG, embeddings and 2D coordinates as .npy/CSV, and the
TensorBoard Embedding Projector files (tensors.tsv, metadata.tsv, sprite.png, projector_config.pbtxt).

The array and projector writers take plain numpy arrays (no Qt), so a script can call them too.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SPRITE_MAX = 8192  # the projector refuses sprite images larger than 8192 x 8192


def export_arrays(folder: str | Path, embeddings: np.ndarray, coords: np.ndarray | None, indices: np.ndarray,
                  labels: np.ndarray, class_names: list[str]) -> list[Path]:
    """embeddings.npy/.csv, coords.npy/.csv, labels.npy, indices.npy (rows of the test split)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    indices, labels = np.asarray(indices, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    names = np.array([class_names[int(y)] if 0 <= y < len(class_names) else "unlabelled" for y in labels])
    written = []
    for name, arr in (("embeddings", embeddings), ("labels", labels), ("indices", indices)):
        np.save(folder / f"{name}.npy", arr)
        written.append(folder / f"{name}.npy")
    header = "index,label," + ",".join(f"e{i}" for i in range(embeddings.shape[1]))
    table = np.column_stack([indices, labels, embeddings]).astype(object)
    np.savetxt(folder / "embeddings.csv", table, delimiter=",", header=header, comments="",
               fmt=["%d", "%d"] + ["%.7g"] * embeddings.shape[1])
    written.append(folder / "embeddings.csv")
    if coords is not None:
        coords = np.asarray(coords, dtype=np.float32)
        np.save(folder / "coords.npy", coords)
        with open(folder / "coords.csv", "w") as f:
            f.write("index,label,class,x,y\n")
            for i, y, n, (cx, cy) in zip(indices, labels, names, coords):
                f.write(f"{i},{y},{_csv(n)},{cx:.7g},{cy:.7g}\n")
        written += [folder / "coords.npy", folder / "coords.csv"]
    return written


def _csv(text: str) -> str:
    return f'"{text}"' if ("," in text or '"' in text) else text


def sprite_image(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Thumbnails (N, H, W) or (N, H, W, 3) uint8 tiled row-major into a square grid, as the
    projector expects (image i at row i // side, column i % side). Returns (sprite, tile size)."""
    n = len(images)
    side = math.ceil(math.sqrt(n))
    h, w = images.shape[1:3]
    tile = max(h, w)
    if side * tile > SPRITE_MAX:
        tile = SPRITE_MAX // side
    if (h, w) != (tile, tile):
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(im).resize((tile, tile))) for im in images])
    channels = images.shape[3:] if images.ndim == 4 else ()
    sprite = np.full((side * tile, side * tile, *channels), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, side)
        sprite[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = im
    return sprite, tile


def export_projector(folder: str | Path, embeddings: np.ndarray, labels: np.ndarray, class_names: list[str],
                     indices: np.ndarray, images: np.ndarray | None = None) -> list[Path]:
    """The TensorBoard Embedding Projector's files. Load them with ``tensorboard --logdir FOLDER``
    or upload tensors.tsv + metadata.tsv at projector.tensorflow.org."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    np.savetxt(folder / "tensors.tsv", embeddings, delimiter="\t", fmt="%.7g")
    with open(folder / "metadata.tsv", "w") as f:
        # more than one column: the projector wants a header line
        f.write("index\tlabel\tclass\n")
        for i, y in zip(indices, labels):
            name = class_names[int(y)] if 0 <= y < len(class_names) else "unlabelled"
            f.write(f"{int(i)}\t{int(y)}\t{name.replace(chr(9), ' ')}\n")
    written = [folder / "tensors.tsv", folder / "metadata.tsv"]
    config = ['embeddings {', '  tensor_name: "embeddings"', '  tensor_path: "tensors.tsv"',
              '  metadata_path: "metadata.tsv"']
    if images is not None:
        sprite, tile = sprite_image(np.asarray(images, dtype=np.uint8))
        Image.fromarray(sprite).save(folder / "sprite.png")
        written.append(folder / "sprite.png")
        config += ['  sprite {', '    image_path: "sprite.png"', f'    single_image_dim: {tile}',
                   f'    single_image_dim: {tile}', '  }']
    config.append('}')
    (folder / "projector_config.pbtxt").write_text("\n".join(config) + "\n")
    written.append(folder / "projector_config.pbtxt")
    return written


def export_widget(widget, path: str | Path) -> Path:
    """A widget as PNG (pixels) or SVG (vector where Qt paints vectors), chosen by the suffix."""
    from PySide6.QtCore import QPoint, QRect, QSize
    from PySide6.QtGui import QPainter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".svg":
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(str(path))
        gen.setSize(QSize(widget.width(), widget.height()))
        gen.setViewBox(QRect(0, 0, widget.width(), widget.height()))
        gen.setTitle(widget.objectName() or "Embedding Explorer")
        painter = QPainter(gen)
        from PySide6.QtWidgets import QWidget

        QWidget.render(widget, painter, QPoint())  # the widget's own render, also for graphics views
        painter.end()
    else:
        if not widget.grab().save(str(path)):
            raise ValueError(f"{path}: could not write the image (allowed suffixes: .png, .svg)")
    return path


def export_all(window, folder: str | Path) -> list[Path]:
    """Everything the window shows for the selected run, into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    session = window.session
    run = session.current
    if run is None or not run.snapshots:
        raise ValueError("nothing to export yet: select a run that has a snapshot")
    written = []
    view = window.map_panel.primary
    for suffix in ("png", "svg"):
        written.append(export_widget(view.plot, folder / f"map.{suffix}"))
    for name, widget in window.plot_widgets().items():
        if widget is not None and widget.isVisible():
            for suffix in ("png", "svg"):
                written.append(export_widget(widget, folder / f"{name}.{suffix}"))
    frame = view.frame_index(run)
    snap = run.snapshots[frame]
    coords = run.coords.get((frame, session.projection))
    written += export_arrays(folder, snap["embeddings"], coords, snap["indices"], snap["labels"], run.class_names)
    images = None
    if run.dataset is not None:
        images = np.stack([run.dataset.thumbnail("test", int(i)) for i in snap["indices"]])
    written += export_projector(folder / "projector", snap["embeddings"], snap["labels"], run.class_names,
                                snap["indices"], images)
    return written
