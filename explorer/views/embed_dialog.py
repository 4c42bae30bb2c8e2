"""File > Embed a folder…: which folder, which encoder, where the run goes. The dialog only asks; the
session runs the job (``Session.start_embedding``) and the window shows its progress."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget)

# the encoders offered first; any other name the command line takes can be typed (timm:NAME, run:DIR …)
SUGGESTED = ("efficientnet-lite0", "resnet18-imagenet", "resnet50-imagenet", "timm:vit_small_patch14_dinov2",
             "run:", "exported:", "onnx:", "torchscript:", "pixels")


class _RunDialog(QDialog):
    """What the two dialogs share: the 2D map choice, the runs folder, an error line, the buttons; on
    accept, ``config()`` is checked and kept (``accepted_config``) or its error shown in the dialog."""

    def _finish(self, layout: QVBoxLayout, form: QFormLayout, prefix: str, out: str, accept_text: str,
                accept_name: str) -> QPushButton:
        self.map_combo = QComboBox(objectName=f"{prefix}_projection")
        self.map_combo.addItems(["umap", "pca", "none"])
        form.addRow("Map", self.map_combo)
        self.out_edit = QLineEdit(str(out), objectName=f"{prefix}_out")
        form.addRow("Runs folder", self.out_edit)
        layout.addLayout(form)
        self.error = QLabel(objectName=f"{prefix}_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b;")
        self.error.hide()
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        accept = buttons.addButton(accept_text, QDialogButtonBox.ButtonRole.AcceptRole)
        accept.setObjectName(accept_name)
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._config = None
        return accept

    def _with_browse(self, edit: QLineEdit, ask, name: str = "") -> QHBoxLayout:
        """``edit`` with a Browse… button beside it; ``ask()`` returns the path chosen, or "" for none."""
        browse = QPushButton("Browse…", objectName=name)
        browse.clicked.connect(lambda: edit.setText(ask() or edit.text()))
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(browse)
        return row

    def config(self):
        raise NotImplementedError

    def _on_accepted(self) -> None:
        try:
            self._config = self.config()
        except (ValueError, FileNotFoundError) as error:
            self.error.setText(str(error))
            self.error.show()
            return
        self.accept()

    def accepted_config(self):
        return self._config


class EmbedDialog(_RunDialog):
    """Folder, encoder (editable: any ``--encoder`` name), input size, device, the 2D map, the runs
    folder. ``config()`` is the checked ``engine.embed.EmbedConfig`` (ValueError naming the field)."""

    def __init__(self, folder: str = "", out: str = "runs", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("embed_dialog")
        self.setWindowTitle("Embed a folder")
        layout = QVBoxLayout(self)
        intro = QLabel("Every image of the folder goes through the encoder, without training; the run opens "
                       "when it is written. Sub-folders are classes; a flat folder is unlabelled.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.folder_edit = QLineEdit(folder, objectName="embed_folder")
        self.folder_edit.setPlaceholderText("a folder of images")
        form.addRow("Folder", self._with_browse(self.folder_edit, lambda: QFileDialog.getExistingDirectory(
            self, "Folder of images", self.folder_edit.text()), name="embed_browse"))
        self.encoder_combo = QComboBox(objectName="embed_encoder")
        self.encoder_combo.setEditable(True)
        self.encoder_combo.addItems(SUGGESTED)
        self.encoder_combo.setToolTip("Any encoder the command line takes: a name of the list, timm:NAME, "
                                      "run:RUN_DIR, exported:DIR, onnx:PATH, torchscript:PATH, python:module:function")
        form.addRow("Encoder", self.encoder_combo)
        self.size_edit = QLineEdit("auto", objectName="embed_input_size")
        self.size_edit.setToolTip("Size the images are decoded at for the encoder: auto (its own, e.g. 224), "
                                  "or a side in pixels (smaller is faster on a CPU)")
        form.addRow("Input size", self.size_edit)
        self.device_combo = QComboBox(objectName="embed_device")
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device_combo)
        self.embed_button = self._finish(layout, form, "embed", out, "Embed", "embed_button")
        self.map_combo.setToolTip("The 2D map computed once the images are embedded (none: when the run opens)")

    def config(self):
        """The EmbedConfig the fields ask for, checked (ValueError naming the field otherwise)."""
        from engine.embed import EmbedConfig
        from engine.encoders import ENCODERS
        from engine.params import resolve

        folder = self.folder_edit.text().strip()
        if not folder:
            raise ValueError("Folder: choose the folder of images to embed")
        encoder = self.encoder_combo.currentText().strip()
        params = {}
        size = self.size_edit.text().strip() or "auto"
        if size != "auto":
            param = next((p for p in ENCODERS.get(encoder).params if p.name == "input_size"), None)
            if param is None:
                raise ValueError(f"Input size: the encoder {encoder} takes no input size; leave it auto")
            if param.type is int and not size.isdigit():
                raise ValueError(f"Input size: {size!r} is not valid; allowed: auto, or a side in pixels")
            params["input_size"] = int(size) if param.type is int else size
        config = EmbedConfig(dataset=f"folder:{Path(folder).expanduser()}", encoder=encoder, encoder_params=params,
                             device=self.device_combo.currentText(), projection=self.map_combo.currentText(),
                             out=self.out_edit.text().strip() or "runs")
        config.validate()
        resolve(ENCODERS.get(encoder).params, params)  # a bad input size names itself
        return config


class OpenEmbeddingsDialog(_RunDialog):
    """File > Open embeddings…: embeddings made elsewhere (a .npy or .parquet with a table, or
    TensorBoard projector files), made into a run the window opens (``engine.imports``)."""

    FILTER = "Embeddings (*.npy *.parquet *.pbtxt *.tsv);;All files (*)"

    def __init__(self, out: str = "runs", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("open_embeddings_dialog")
        self.setWindowTitle("Open embeddings")
        layout = QVBoxLayout(self)
        intro = QLabel("Embeddings made elsewhere: a .npy (N, D) or .parquet with a table of labels, image paths "
                       "and metadata (one row per embedding, a header first), or TensorBoard's projector files "
                       "(projector_config.pbtxt: tensors, metadata, sprite).")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.file_edit = QLineEdit(objectName="embeddings_file")
        form.addRow("Embeddings", self._with_browse(self.file_edit, lambda: QFileDialog.getOpenFileName(
            self, "Embeddings", self.file_edit.text(), self.FILTER)[0]))
        self.table_edit = QLineEdit(objectName="embeddings_table")
        self.table_edit.setPlaceholderText("optional: a CSV/TSV table, one row per embedding")
        form.addRow("Table", self._with_browse(self.table_edit, lambda: QFileDialog.getOpenFileName(
            self, "Labels or metadata table", self.table_edit.text(), "Tables (*.csv *.tsv *.npy);;All files (*)")[0]))
        self.label_edit = QLineEdit(objectName="embeddings_label_column")
        self.label_edit.setPlaceholderText("auto: class_name, class, label, …")
        form.addRow("Label column", self.label_edit)
        self.root_edit = QLineEdit(objectName="embeddings_image_root")
        self.root_edit.setPlaceholderText("optional: the folder the table's image paths are relative to")
        form.addRow("Image folder", self._with_browse(self.root_edit, lambda: QFileDialog.getExistingDirectory(
            self, "Image folder", self.root_edit.text())))
        self.open_button = self._finish(layout, form, "embeddings", out, "Open", "embeddings_open")

    def config(self):
        from engine.embed import EmbedConfig

        path = self.file_edit.text().strip()
        if not path:
            raise ValueError("Embeddings: choose the file (.npy, .parquet, or projector_config.pbtxt)")
        if not Path(path).expanduser().exists():
            raise ValueError(f"Embeddings: {path} does not exist")
        config = EmbedConfig(from_file=str(Path(path).expanduser()), labels=self.table_edit.text().strip() or None,
                             label_column=self.label_edit.text().strip() or None,
                             image_root=self.root_edit.text().strip() or None,
                             projection=self.map_combo.currentText(), out=self.out_edit.text().strip() or "runs")
        config.validate()
        return config
