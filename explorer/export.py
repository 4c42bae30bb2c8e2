"""Export: the map and the plots as PNG/SVG, embeddings and 2D coordinates as .npy/CSV, the metrics
of every evaluation, the TensorBoard Embedding Projector files (tensors.tsv, metadata.tsv, sprite.png,
projector_config.pbtxt), and the encoder (engine/export.py: safetensors + settings, TorchScript, ONNX).
``ExportDialog`` lets the user choose which.

The array, metrics and projector writers take plain numpy arrays and records (no Qt), so a script
can call them too.
"""
from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QDialog

SPRITE_MAX = 8192  # the projector refuses sprite images larger than 8192 x 8192
CONTENTS = {  # what the window can export besides the encoder, and how the dialog names it
    "images": "Map and plots (PNG and SVG)",
    "arrays": "Embeddings and 2D coordinates (.npy and .csv)",
    "metrics": "Metrics of every evaluation (metrics.csv), summary.json, config.json",
    "projector": "TensorBoard projector files (tensors.tsv, metadata.tsv, sprite.png)",
}
ENCODER_FORMATS = {"safetensors": "safetensors + encoder.json (load_encoder)", "torchscript": "TorchScript",
                   "onnx": "ONNX (dynamic batch, checked with onnxruntime)"}


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


def export_metrics(folder: str | Path, records: list[dict], run_dir: Path | None) -> list[Path]:
    """metrics.csv (one row per evaluation: step, epoch, final, and every figure that is a number), and
    copies of the run's summary.json and config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [r for r in records if r.get("kind") == "evaluation" and isinstance(r.get("metrics"), dict)]
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and k not in keys]
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "final", *keys])
        for r in rows:
            writer.writerow([r.get("step"), r.get("epoch"), bool(r.get("final")),
                             *(r["metrics"].get(k, "") for k in keys)])
    written = [folder / "metrics.csv"]
    for name in ("summary.json", "config.json"):
        if run_dir is not None and (Path(run_dir) / name).is_file():
            shutil.copy2(Path(run_dir) / name, folder / name)
            written.append(folder / name)
    return written


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def encoder_exportable(run) -> str:
    """'' when the run's encoder can be exported now, else why not (for the dialog's tooltip)."""
    if run is None or run.path is None:
        return "the run has no run directory yet"
    if not (Path(run.path) / "checkpoint.pt").is_file():
        every = run.config.get("checkpoint_every", 5)
        return f"the run has no checkpoint yet: one is written every {every} epochs and at the end"
    return ""


def export_all(window, folder: str | Path, contents=tuple(CONTENTS)) -> list[Path]:
    """What the window shows for the selected run, into ``folder``: the parts named in ``contents``
    (keys of CONTENTS). The encoder is exported apart, in the background (MainWindow.export_to)."""
    folder = Path(folder)
    unknown = set(contents) - set(CONTENTS)
    if unknown:
        raise ValueError(f"export: {', '.join(sorted(unknown))} is not valid; allowed: {', '.join(CONTENTS)}")
    folder.mkdir(parents=True, exist_ok=True)
    session = window.session
    run = session.current
    if run is None or not run.snapshots:
        raise ValueError("nothing to export yet: select a run that has a snapshot")
    written = []
    view = window.map_panel.primary
    if "images" in contents:
        for suffix in ("png", "svg"):
            written.append(export_widget(view.plot, folder / f"map.{suffix}"))
        for name, widget in window.plot_widgets().items():
            if widget is not None and widget.isVisible():
                for suffix in ("png", "svg"):
                    written.append(export_widget(widget, folder / f"{name}.{suffix}"))
    frame = view.frame_index(run)
    snap = run.snapshots[frame]
    if "arrays" in contents:
        coords = run.coords.get((frame, session.projection))
        written += export_arrays(folder, snap.embeddings, coords, snap.indices, snap.labels, run.class_names)
    if "metrics" in contents:
        written += export_metrics(folder, run.records, run.path)
    if "projector" in contents:
        images = None
        if run.dataset is not None:
            images = np.stack([run.dataset.thumbnail("test", int(i)) for i in snap.indices])
        written += export_projector(folder / "projector", snap.embeddings, snap.labels, run.class_names,
                                    snap.indices, images)
    return written


class ExportDialog(QDialog):
    """Where to, and what: the window's contents (CONTENTS) and the encoder in the formats ticked."""

    def __init__(self, run, folder: str = "", parent=None):
        from PySide6.QtWidgets import (QCheckBox, QDialogButtonBox, QFileDialog, QGroupBox, QHBoxLayout,
                                       QLabel, QLineEdit, QPushButton, QVBoxLayout)

        super().__init__(parent)
        self.setObjectName("export_dialog")
        self.setWindowTitle("Export")
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(str(folder), objectName="export_folder")
        self.folder_edit.setPlaceholderText("folder to write into")
        browse = QPushButton("Browse…", objectName="export_browse")
        browse.clicked.connect(lambda: self.folder_edit.setText(
            QFileDialog.getExistingDirectory(self, "Export into", self.folder_edit.text()) or self.folder_edit.text()))
        row.addWidget(QLabel("Folder"))
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        shown = QGroupBox("What the window shows (the selected run, the map's snapshot)")
        shown_layout = QVBoxLayout(shown)
        self.content_boxes = {}
        for key, text in CONTENTS.items():
            box = QCheckBox(text, objectName=f"export_{key}")
            box.setChecked(True)
            shown_layout.addWidget(box)
            self.content_boxes[key] = box
        layout.addWidget(shown)
        encoder = QGroupBox("The encoder, into the folder's encoder/ (reuse it without this program)")
        encoder_layout = QVBoxLayout(encoder)
        self.format_boxes = {}
        why_not = encoder_exportable(run)
        for fmt, text in ENCODER_FORMATS.items():
            box = QCheckBox(text, objectName=f"export_encoder_{fmt}")
            blocked = why_not or ("needs onnx and onnxruntime: pip install 'embedding-explorer[onnx]'"
                                  if fmt == "onnx" and not onnx_available() else "")
            box.setEnabled(not blocked)
            box.setChecked(not blocked)
            box.setToolTip(blocked or text)
            encoder_layout.addWidget(box)
            self.format_boxes[fmt] = box
        self.encoder_note = QLabel(why_not or "Each file is checked on the run's images before it is kept; "
                                   "ONNX must agree with torch within 1e-4.", objectName="export_encoder_note")
        self.encoder_note.setWordWrap(True)
        self.encoder_note.setProperty("hint", True)
        encoder_layout.addWidget(self.encoder_note)
        layout.addWidget(encoder)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("export_button")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        for box in [*self.content_boxes.values(), *self.format_boxes.values()]:
            box.toggled.connect(self._update_button)
        self.folder_edit.textChanged.connect(self._update_button)
        self._update_button()

    def folder(self) -> str:
        return self.folder_edit.text().strip()

    def contents(self) -> list[str]:
        return [k for k, box in self.content_boxes.items() if box.isChecked()]

    def encoder_formats(self) -> list[str]:
        return [f for f, box in self.format_boxes.items() if box.isChecked() and box.isEnabled()]

    def _update_button(self, *_) -> None:
        self.export_button.setEnabled(bool(self.folder()) and bool(self.contents() or self.encoder_formats()))
