"""The training panel: preset, method, dataset, encoder, parameters, device; Start, Pause, Stop; progress.

The lists and the parameter forms are built from the engine's registries and ``Param`` specs (name,
default, range, one-sentence help), so a new method or encoder appears here without GUI code. Each
field checks its value with ``Param.parse`` as it is typed and marks itself when the value is not
allowed; Start refuses while any field is marked.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QVBoxLayout,
                               QWidget)

from engine.params import Param
from engine.projection import PROJECTIONS
from explorer.state import TrainingState
from explorer.views import wrapped_tooltip
from explorer.views.kit import Panel

FOLDER_ITEM = "image folder…"
# a command-line flag in an engine message: --batch-size, --init-from (not a minus sign nor a range)
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
# the form's names for the settings that are not Param fields (the others: the field's own label)
FORM_LABELS = {"method": "Method", "dataset": "Dataset", "encoder": "Encoder", "device": "Device",
               "preset": "Preset"}


def field_label(name: str) -> str:
    """The label of a Param's field in the form (``batch_size`` -> "batch size")."""
    return name.replace("_", " ")


def in_form_words(text: str) -> str:
    """An engine message in the form's words: each command-line flag (``--batch-size``) becomes the
    label of its field ('batch size'), so a message names what the person sees, not what a script
    would type."""
    return FLAG.sub(lambda m: f"'{FORM_LABELS.get(m.group(1), field_label(m.group(1).replace('-', '_')))}'", text)

# The run-level settings as Param specs too, so they are checked and explained like the others.
# default None: the method's preferred value (shown greyed in the field).
GENERAL_PARAMS = (
    Param("epochs", None, "Passes over the training set.", int, low=1),
    Param("batch_size", None, "Images per optimisation step.", int, low=1),
    Param("lr", None, "Learning rate of AdamW (cosine decay after a short warm-up).", float, low=0,
          low_exclusive=True),
    Param("embedding_dim", 128, "Dimension D of the embedding (the representation's length).", int, low=1,
          high=4096),
    Param("train_size", None, "Train on a stratified subset of this many images (empty: all).", int, low=1),
    Param("eval_every", 1.0, "Epochs between evaluations and map snapshots (0: only at the end).", float,
          low=0),
    Param("time_limit", None, "Minutes for the whole run, evaluations included: it trains as many steps "
          "as fit, up to the epochs, and evaluates less often than asked if evaluating would take over a "
          "fifth of the time (empty: no limit).", float, low=0, low_exclusive=True),
    Param("seed", 0, "Random seed: the same seed gives the same run.", int, low=0),
)
EVAL_PARAMS = (
    Param("projection", "umap", "How the engine flattens the embeddings to 2D for the map.", str,
          choices=tuple(PROJECTIONS.names())),
    Param("diagnostics", True, "Collapse, triplets, clusters and the map at each evaluation (slower).",
          bool),
)


class ParamField(QWidget):
    """One form field for a ``Param``: a line edit, a combo box (choices) or a check box (bool)."""

    changed = Signal()

    def __init__(self, param: Param, placeholder: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.param = param
        self.error: str | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        tip = f"{param.help}\nAllowed: {param.allowed()}."
        if param.choices:
            self.editor = QComboBox()
            self.editor.addItems(list(param.choices))
            self.editor.setCurrentText(str(param.default))
            self.editor.currentIndexChanged.connect(self._on_editor_changed)
        elif param.type is bool:
            self.editor = QCheckBox()
            self.editor.setChecked(bool(param.default))
            self.editor.toggled.connect(self._on_editor_changed)
        else:
            self.editor = QLineEdit()
            if param.default is not None:
                self.editor.setText(str(param.default))
            if placeholder:
                self.editor.setPlaceholderText(placeholder)
            self.editor.textChanged.connect(self._on_editor_changed)
        self.editor.setObjectName(f"param_{param.name}")
        self.editor.setToolTip(wrapped_tooltip(tip))
        self.setToolTip(self.editor.toolTip())
        self._tip = tip
        layout.addWidget(self.editor)

    def text(self) -> str:
        if isinstance(self.editor, QComboBox):
            return self.editor.currentText()
        if isinstance(self.editor, QCheckBox):
            return "true" if self.editor.isChecked() else "false"
        return self.editor.text().strip()

    def set_text(self, text: str) -> None:
        if isinstance(self.editor, QComboBox):
            self.editor.setCurrentText(text)
        elif isinstance(self.editor, QCheckBox):
            self.editor.setChecked(str(text).lower() in ("true", "1", "yes"))
        else:
            self.editor.setText(text)

    def value(self) -> Any:
        """The parsed value; None for an empty field (the default); ValueError when not allowed."""
        text = self.text()
        if text == "":
            return None
        return self.param.parse(text)

    def validate(self) -> bool:
        try:
            self.value()
            self.error = None
        except ValueError as error:
            self.error = in_form_words(str(error))
        self.editor.setProperty("invalid", self.error is not None)
        self.editor.setToolTip(wrapped_tooltip(f"⚠ {self.error}\n\n{self._tip}" if self.error else self._tip))
        style = self.editor.style()
        style.unpolish(self.editor)
        style.polish(self.editor)
        return self.error is None

    def _on_editor_changed(self, *_) -> None:
        self.validate()
        self.changed.emit()


def _section(title: str) -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setContentsMargins(6, 6, 6, 6)
    return box, form


class WrappingLabel(QLabel):
    """A word-wrapped label exactly as high as its text needs at its current width. (A form sizes
    a wrapped label for one width; when a scroll bar narrowed the panel, the method help's last line
    was cut off.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setWordWrap(True)

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        # fixed, not just a minimum: a shorter text must give the space back, not float in it. The
        # old limits come off first: QLabel's height-for-width never answers below its minimum.
        self.setMinimumHeight(0)
        self.setMaximumHeight(16777215)  # QWIDGETSIZE_MAX
        self.setFixedHeight(max(0, self.heightForWidth(max(1, self.width()))))  # -1 for no text


class TrainingPanel(Panel):
    """Settings of the next run and the controls of the running one."""

    name = "training_panel"
    dock_name = "training"
    dock_title = "Training"
    margins = (2, 2, 2, 2)
    start_requested = Signal()
    pause_requested = Signal()
    stop_requested = Signal()
    help_text = ("Pick what to train and on what, then Start. A preset fills in a tested combination. "
                 "The method decides what the network is asked to do (name the class, pull augmented "
                 "views together, ...); the encoder is the network whose output is the representation. "
                 "Hover a field for what it does and what it allows; a field outlined in red holds a "
                 "value that is not allowed. The window trains in one process, on one GPU or the CPU; "
                 "training on several GPUs or machines is the command line's: torchrun --nproc_per_node N "
                 "-m engine train --preset ... (or srun; README, Scale), and File > Open run follows that "
                 "run from its directory while it trains.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        from engine.data import DATASETS
        from engine.encoders import ENCODERS
        from engine.methods import METHODS
        from engine.presets import PRESETS

        self.methods, self.encoders, self.presets = METHODS, ENCODERS, PRESETS
        self.preset_combo = QComboBox(objectName="preset_combo")
        self.preset_combo.addItem("(custom)", "")
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(name, name)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, preset.get("help", ""),
                                          Qt.ItemDataRole.ToolTipRole)
        self.method_combo = QComboBox(objectName="method_combo")
        self._fill_methods()
        self.method_help = WrappingLabel(objectName="method_help")
        self.method_help.setProperty("hint", True)
        self.dataset_combo = QComboBox(objectName="dataset_combo")
        for name in DATASETS.names():
            self.dataset_combo.addItem(name, name)
        self.dataset_combo.addItem(FOLDER_ITEM, FOLDER_ITEM)
        self._dataset_tip = ("The images to learn from. 'image folder…' takes a folder of your images (class "
                             "sub-folders give labels); you can also drop a folder onto the window.")
        self.dataset_combo.setToolTip(wrapped_tooltip(self._dataset_tip))
        self.encoder_combo = QComboBox(objectName="encoder_combo")
        for name, cls in ENCODERS.items():
            # a kind that needs its model named (timm:NAME, onnx:PATH) asks for it when picked
            self.encoder_combo.addItem(f"{name}:{cls.argument}…" if cls.argument else name, name)
            self.encoder_combo.setItemData(self.encoder_combo.count() - 1, cls.summary,
                                           Qt.ItemDataRole.ToolTipRole)
        self.encoder_combo.setToolTip(wrapped_tooltip(
            "The network whose output is the representation. The entries ending in '…' take a model of "
            "yours: a timm architecture by name, a TorchScript or ONNX file, a Python factory, an exported "
            "encoder or the encoder of an earlier run."))
        self.device_combo = QComboBox(objectName="device_combo")
        self._fill_devices()

        run_box, run_form = _section("Run")
        run_form.addRow("Preset", self.preset_combo)
        run_form.addRow("Method", self.method_combo)
        run_form.addRow(self.method_help)
        run_form.addRow("Dataset", self.dataset_combo)
        # why the method cannot train on this dataset (grey images for colorization, an empty folder),
        # said as soon as the field changes (MainWindow checks it with the loaded images)
        self.dataset_problem = WrappingLabel(objectName="dataset_problem")
        self.dataset_problem.setProperty("error", True)
        self.dataset_problem.hide()
        run_form.addRow(self.dataset_problem)
        run_form.addRow("Encoder", self.encoder_combo)
        run_form.addRow("Device", self.device_combo)

        self.general: dict[str, ParamField] = {}
        budget_box, budget_form = _section("Budget")
        # what an empty field means (short: the left column is ~150 px wide for a field on a laptop)
        empty = {"train_size": "all images", "time_limit": "no limit"}
        for p in GENERAL_PARAMS:
            f = ParamField(p, placeholder=empty.get(p.name, "method default") if p.default is None else None)
            self.general[p.name] = f
            budget_form.addRow(field_label(p.name), f)
        eval_box, eval_form = _section("Evaluation")
        for p in EVAL_PARAMS:
            f = ParamField(p)
            self.general[p.name] = f
            eval_form.addRow(field_label(p.name), f)
        self.method_box, self.method_form = _section("Method parameters")
        self.encoder_box, self.encoder_form = _section("Encoder parameters")
        self.method_fields: dict[str, ParamField] = {}
        self.encoder_fields: dict[str, ParamField] = {}

        form_host = QWidget()
        form_layout = QVBoxLayout(form_host)
        form_layout.setContentsMargins(2, 2, 2, 2)
        for box in (run_box, budget_box, self.method_box, self.encoder_box, eval_box):
            form_layout.addWidget(box)
        form_layout.addStretch(1)
        scroll = self.form_scroll = QScrollArea()
        self._revealing_dataset = False
        scroll.verticalScrollBar().rangeChanged.connect(lambda *_: self._show_dataset_field())
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_host)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.start_button = QPushButton("Start", objectName="start_button")
        self.start_button.setToolTip("Start training (Ctrl+R)")
        self.pause_button = QPushButton("Pause", objectName="pause_button")
        self.pause_button.setToolTip("Pause or resume at the next step (Space)")
        self.stop_button = QPushButton("Stop", objectName="stop_button")
        self.stop_button.setToolTip("Stop after this step; the run directory keeps a checkpoint")
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        self.progress_bar = QProgressBar(objectName="progress_bar")
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("ready")
        self.error_label = QLabel(objectName="form_error")
        self.error_label.setWordWrap(True)
        self.error_label.setProperty("error", True)
        self.error_label.hide()
        # settings of a run the form was filled from that the form has no field for (apply_config)
        self.carried: dict[str, Any] = {}
        self.carried_label = QLabel(objectName="carried_settings")
        self.carried_label.setWordWrap(True)
        self.carried_label.setProperty("hint", True)
        self.carried_label.linkActivated.connect(lambda _: self.set_carried({}))
        self.carried_label.hide()

        self.setMinimumWidth(260)
        for combo in (self.preset_combo, self.method_combo, self.dataset_combo, self.encoder_combo,
                      self.device_combo):  # long names (a folder path) must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        layout = self.body
        layout.addWidget(scroll, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.carried_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)

        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.encoder_combo.currentIndexChanged.connect(self._rebuild_encoder_form)
        self.dataset_combo.activated.connect(self._on_dataset_activated)
        self.encoder_combo.activated.connect(self._on_encoder_activated)
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.clicked.connect(self.pause_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self._last_dataset = self.dataset_combo.currentIndex()
        self._last_encoder = 0
        self._on_method_changed()
        self._progress_text = ""
        self.set_state(TrainingState.IDLE)

    # lists ---------------------------------------------------------------------------------------
    def _fill_methods(self) -> None:
        """Methods grouped by family: a disabled bold header per family, then its methods."""
        model = QStandardItemModel(self.method_combo)
        families: dict[str, list[str]] = {}
        for name, cls in self.methods.items():
            families.setdefault(cls.family, []).append(name)
        for family, names in families.items():
            header = QStandardItem(family)
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            font = header.font()
            font.setBold(True)
            header.setFont(font)
            model.appendRow(header)
            for name in names:
                item = QStandardItem("    " + name)
                item.setData(name, Qt.ItemDataRole.UserRole)
                item.setToolTip(wrapped_tooltip(self.methods.get(name).summary))
                model.appendRow(item)
        self.method_combo.setModel(model)
        self.select_method("supervised" if "supervised" in self.methods.names() else self.methods.names()[0])

    def _fill_devices(self) -> None:
        self.device_combo.addItem("auto", "auto")
        try:
            import torch

            has_cuda = torch.cuda.is_available()
            gpu = torch.cuda.get_device_name(0) if has_cuda else ""
        except Exception:  # a broken CUDA install must not stop the window
            has_cuda, gpu = False, ""
        self.device_combo.addItem(f"cuda ({gpu})" if has_cuda else "cuda (no GPU found)", "cuda")
        if not has_cuda:
            self.device_combo.model().item(1).setEnabled(False)
        self.device_combo.addItem("cpu", "cpu")
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU. One process here: several GPUs "
                                     "or machines train from the command line (torchrun --nproc_per_node N -m engine "
                                     "train ...), and the window opens that run")

    def select_method(self, name: str) -> None:
        i = self.method_combo.findData(name, Qt.ItemDataRole.UserRole)
        if i < 0:
            raise ValueError(f"method {name!r} is not valid; allowed: {', '.join(self.methods.names())}")
        self.method_combo.setCurrentIndex(i)

    def select_dataset(self, name: str) -> None:
        i = self.dataset_combo.findData(name)
        if i < 0:
            self.dataset_combo.insertItem(self.dataset_combo.count() - 1, name, name)
            i = self.dataset_combo.findData(name)
        self.dataset_combo.setCurrentIndex(i)
        self._last_dataset = i

    def select_encoder(self, name: str) -> None:
        """Select an encoder by name; a whole ``KIND:ARGUMENT`` (timm:resnet18) gets an entry of its own."""
        i = self.encoder_combo.findData(name)
        if i < 0:
            kind = name.partition(":")[0]
            if ":" not in name or kind not in self.encoders or not self.encoders.get(kind).argument:
                raise ValueError(f"encoder {name!r} is not valid; allowed: {', '.join(self.encoders.usages())}")
            self.encoder_combo.insertItem(self.encoder_combo.findData(kind), name, name)
            self.encoder_combo.setItemData(self.encoder_combo.findData(name), self.encoders.get(kind).summary,
                                           Qt.ItemDataRole.ToolTipRole)
            i = self.encoder_combo.findData(name)
        self.encoder_combo.setCurrentIndex(i)
        self._last_encoder = i

    @property
    def method(self) -> str:
        return self.method_combo.currentData(Qt.ItemDataRole.UserRole)

    # reactions -----------------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(name)))

    def apply_config(self, config: dict, source: str = "") -> list[str]:
        """Fill the form with a run's settings (its config.json), so that Start trains a new run like
        it; the settings the form has no field for (test size, weight decay, ...) are carried into that
        run and listed under the form. Returns notes on what could not be taken over; ValueError when
        the method or encoder is not known here."""
        from engine.config import TrainConfig

        method, encoder = config.get("method"), config.get("encoder")
        if method not in self.methods.names():
            raise ValueError(f"run {source} was trained with the method {method!r}, which this version does not "
                             f"have; allowed: {', '.join(self.methods.names())}")
        notes: list[str] = []
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(0)  # (custom): the run's own settings
        self.preset_combo.blockSignals(False)
        self.select_method(method)
        if config.get("dataset"):
            self.select_dataset(str(config["dataset"]))
        if encoder:
            self.select_encoder(str(encoder))
        device = config.get("device", "auto")
        i = self.device_combo.findData(device)
        if i >= 0 and self.device_combo.model().item(i).isEnabled():
            self.device_combo.setCurrentIndex(i)
        else:
            self.device_combo.setCurrentIndex(0)
            notes.append(f"it trained on {device}, not available here: device auto")
        for key, f in self.general.items():
            value = config.get(key)
            f.set_text("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        for fields, values in ((self.method_fields, config.get("method_params") or {}),
                               (self.encoder_fields, config.get("encoder_params") or {})):
            for key, f in fields.items():
                if key in values:
                    value = values[key]
                    f.set_text("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        defaults = TrainConfig().to_dict()
        formed = {"method", "dataset", "encoder", "device", "method_params", "encoder_params", *self.general}
        self.set_carried({k: v for k, v in config.items() if k in defaults and k not in formed
                          and k not in ("out", "run_name", "resume") and v != defaults[k]}, source)
        for f in self.invalid_fields():
            notes.append(f.error)
        return notes

    def set_carried(self, settings: dict, source: str = "") -> None:
        """The settings without a field of their own that the next run takes over ({} to forget them)."""
        self.carried = dict(settings)
        if self.carried:
            listed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.carried.items())
            self.carried_label.setText(f"Also from run {html.escape(source)}: {html.escape(listed)} "
                                       "(<a href='forget'>forget</a>)")
        self.carried_label.setVisible(bool(self.carried))

    def _on_preset_changed(self) -> None:
        name = self.preset_combo.currentData()
        if not name:
            return
        self.set_carried({})
        preset = self.presets[name]
        self.select_method(preset.get("method", "supervised"))
        self.select_dataset(preset.get("dataset", "digits"))
        if preset.get("encoder"):
            self.select_encoder(preset["encoder"])
        for key, field in self.general.items():
            if key in preset:
                field.set_text(str(preset[key]))
            elif field.param.default is None:
                field.set_text("")
        for fields, values in ((self.method_fields, preset.get("method_params", {})),
                               (self.encoder_fields, preset.get("encoder_params", {}))):
            defaults = self._method_encoder_defaults() if fields is self.encoder_fields else {}
            for key, field in fields.items():  # the preset's value, else the method's, else the parameter's
                value = values.get(key, defaults.get(key, field.param.default))
                field.set_text("" if value is None else str(value))
        device = preset.get("device", "auto")
        i = self.device_combo.findData(device)
        if i >= 0 and self.device_combo.model().item(i).isEnabled():
            self.device_combo.setCurrentIndex(i)
        else:
            self.device_combo.setCurrentIndex(0)

    def _on_method_changed(self) -> None:
        cls = self.methods.get(self.method)
        self.method_help.setText(f"<i>{html.escape(cls.summary)}.</i> {html.escape(cls.help)}")  # rich text
        self.method_help.setToolTip(wrapped_tooltip(cls.help))
        self.select_encoder(cls.defaults.get("encoder", "convnet"))
        preferred = cls.defaults.get("dataset")
        if preferred and not str(self.dataset_combo.currentData()).startswith("folder:"):
            self.select_dataset(preferred)  # e.g. colorization: colours that its grey images can tell
        for key in ("epochs", "batch_size", "lr"):
            self.general[key].editor.setPlaceholderText(f"default: {cls.defaults.get(key, '—')}")
        size = cls.defaults.get("train_size")  # a method's own train size holds on its own dataset only
        self.general["train_size"].editor.setPlaceholderText(f"{size} on {preferred}" if size else "all images")
        self.method_fields = self._rebuild_form(self.method_form, self.method_box, cls.params)
        self._rebuild_encoder_form()

    def _rebuild_encoder_form(self) -> None:
        name = self.encoder_combo.currentData()
        if name:
            self.encoder_fields = self._rebuild_form(self.encoder_form, self.encoder_box,
                                                     self.encoders.get(name).params)
            for key, value in self._method_encoder_defaults().items():  # e.g. invariance-only: neck none
                self.encoder_fields[key].set_text(str(value))

    def _method_encoder_defaults(self) -> dict:
        from engine.config import method_encoder_defaults

        name = self.encoder_combo.currentData()
        return method_encoder_defaults(self.methods.get(self.method), name) if name and self.method else {}

    def _rebuild_form(self, form: QFormLayout, box: QGroupBox, params) -> dict[str, ParamField]:
        while form.rowCount():
            form.removeRow(0)
        fields = {}
        for p in params:
            f = ParamField(p)
            fields[p.name] = f
            form.addRow(field_label(p.name), f)
        box.setVisible(bool(fields))
        return fields

    def _on_encoder_activated(self, index: int) -> None:
        """A kind that needs its model named (bare ``timm``, ``onnx``, ...) asks for it now."""
        kind = self.encoder_combo.itemData(index)
        cls = self.encoders.get(kind)
        if not cls.argument or ":" in kind:
            self._last_encoder = index
            return
        argument = self._ask_encoder_argument(kind, cls)
        if argument:
            self.select_encoder(f"{kind}:{argument}")
        else:
            self.encoder_combo.setCurrentIndex(self._last_encoder)

    def _ask_encoder_argument(self, kind: str, cls) -> str:
        files = {"torchscript": "TorchScript (*.pt *.pth *.ts *.jit);;All files (*)",
                 "onnx": "ONNX (*.onnx);;All files (*)", "torch": "PyTorch (*.pt *.pth *.bin);;All files (*)"}
        if kind in files:
            path, _ = QFileDialog.getOpenFileName(self, cls.summary, "", files[kind])
            return path
        if cls.argument in ("DIR", "RUN_DIR"):
            return QFileDialog.getExistingDirectory(self, cls.summary)
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(self, f"Encoder {kind}:{cls.argument}",
                                        f"{cls.summary}.\n{cls.argument}, e.g. {cls.example.partition(':')[2]}:")
        return text.strip() if ok else ""

    def _on_dataset_activated(self, index: int) -> None:
        if self.dataset_combo.itemData(index) != FOLDER_ITEM:
            self._last_dataset = index
            return
        path = QFileDialog.getExistingDirectory(self, "Image folder (class sub-folders give labels)")
        if path:
            self.use_folder(path)
        else:
            self.dataset_combo.setCurrentIndex(self._last_dataset)

    def use_folder(self, path: str | Path) -> None:
        """Train on a folder of images (``folder:PATH``)."""
        self.select_dataset(f"folder:{Path(path).expanduser().resolve()}")

    def dragEnterEvent(self, event) -> None:
        if any(Path(u.toLocalFile()).is_dir() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for u in event.mimeData().urls():
            if Path(u.toLocalFile()).is_dir():
                self.use_folder(u.toLocalFile())
                event.acceptProposedAction()
                return

    # the run to start ----------------------------------------------------------------------------
    def all_fields(self) -> list[ParamField]:
        return [*self.general.values(), *self.method_fields.values(), *self.encoder_fields.values()]

    def invalid_fields(self) -> list[ParamField]:
        return [f for f in self.all_fields() if not f.validate()]

    def build_config(self, out: str = "runs"):
        """The TrainConfig of the form, or ValueError (the bad fields are marked, Start refuses)."""
        from engine.config import TrainConfig

        bad = self.invalid_fields()
        if bad or self.dataset_problem.text():
            message = "; ".join([f.error for f in bad] + ([self.dataset_problem.text()] if self.dataset_problem.text() else []))
            self.show_error(message)
            raise ValueError(message)
        values = {k: f.value() for k, f in self.general.items()}
        config = TrainConfig(method=self.method, dataset=self.dataset_combo.currentData(),
                             encoder=self.encoder_combo.currentData(), device=self.device_combo.currentData(),
                             out=out, **{k: v for k, v in values.items() if v is not None},
                             **{k: v for k, v in self.carried.items() if k not in values})
        config.method_params = {k: f.value() for k, f in self.method_fields.items() if f.value() is not None}
        config.encoder_params = {k: f.value() for k, f in self.encoder_fields.items() if f.value() is not None}
        try:
            config = config.resolved()
        except ValueError as error:
            self.show_error(str(error))
            raise
        self.show_error("")
        return config

    def set_dataset_problem(self, text: str) -> None:
        """Mark the dataset field with why the run cannot start on it ("" when it can)."""
        text = in_form_words(text)
        new = bool(text) and text != self.dataset_problem.text()
        self.dataset_problem.setText(text)
        self.dataset_problem.setVisible(bool(text))
        if new:  # a long method help can push the field out of view (at 1280 x 800 colorization's did)
            # the form grows once its scroll area has laid it out again (a posted event), so it scrolls
            # now and again each time the form's height changes in the next half second
            self._revealing_dataset = True
            QTimer.singleShot(0, self._show_dataset_field)
            QTimer.singleShot(500, lambda: setattr(self, "_revealing_dataset", False))
        self.dataset_combo.setProperty("invalid", bool(text))
        self.dataset_combo.setToolTip(wrapped_tooltip(f"⚠ {text}" if text else self._dataset_tip))
        self.dataset_combo.style().unpolish(self.dataset_combo)
        self.dataset_combo.style().polish(self.dataset_combo)
        if not text and not self.invalid_fields():
            self.show_error("")

    def _show_dataset_field(self) -> None:
        """Scroll the form to the dataset field and its problem, while a new problem is being shown."""
        if not self._revealing_dataset:
            return
        self.form_scroll.ensureWidgetVisible(self.dataset_combo, 0, 10)
        self.form_scroll.ensureWidgetVisible(self.dataset_problem, 0, 10)  # last: the message must be seen

    def data_problem(self, dataset) -> str:
        """Why the form's method cannot train on ``dataset`` (an ImageDataset), or ""."""
        from engine.methods import DataInfo

        info = DataInfo(dataset.num_classes, tuple(int(c) for c in dataset.class_counts()), dataset.channels,
                        dataset.image_size, dataset.labelled, dataset.name)
        try:
            self.methods.get(self.method).check_data(info)
        except ValueError as error:
            return f"method '{self.method}' {error}"
        return ""

    def show_error(self, text: str) -> None:
        text = in_form_words(text)
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    # state and progress --------------------------------------------------------------------------
    def set_state(self, state: TrainingState | str) -> None:
        """Which buttons make sense now, and what the progress bar says while the job obeys."""
        state = TrainingState(state)
        self.start_button.setEnabled(state == TrainingState.IDLE)
        self.pause_button.setEnabled(state in (TrainingState.RUNNING, TrainingState.PAUSING, TrainingState.PAUSED))
        self.pause_button.setText("Resume" if state in (TrainingState.PAUSING, TrainingState.PAUSED) else "Pause")
        self.stop_button.setEnabled(state.active)
        if state == TrainingState.PAUSING:
            self.progress_bar.setFormat("pausing after this step…")
        elif state == TrainingState.PAUSED:
            self.progress_bar.setFormat(f"paused · {self._progress_text}" if self._progress_text else "paused")
        elif state == TrainingState.STOPPING:
            self.progress_bar.setFormat("stopping after this step…")
        elif state == TrainingState.RUNNING and self._progress_text:
            self.progress_bar.setFormat(self._progress_text)

    def show_progress(self, p: dict) -> None:
        total = max(1, int(p.get("total_steps") or 1))
        # QProgressBar.setValue repaints at once, and a synchronous repaint paints every dirty widget of
        # the window (all the plots) inside this slot: 50-65 ms of one tick. Updates off for the call,
        # the bar is repainted with the rest of the frame.
        self.progress_bar.setUpdatesEnabled(False)
        self.progress_bar.setValue(int(1000 * min(1.0, p["step"] / total)))
        self.progress_bar.setUpdatesEnabled(True)
        eta = p.get("eta_s")
        eta_text = "—" if eta is None else (f"{int(eta // 60)}:{int(eta % 60):02d}")
        self._progress_text = (f"epoch {p['epoch']:.1f}/{p.get('epochs', 0):g} · step {p['step']}/{total} · "
                               f"{p.get('images_per_second', 0):,.0f} img/s · ETA {eta_text}")
        self.progress_bar.setFormat(self._progress_text)
        self.progress_bar.setToolTip(self._progress_text)

    def show_starting(self) -> None:
        self._progress_text = ""
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting: loading data and model…")

    def show_finished(self, status: str) -> None:
        self._progress_text = ""
        if status == "finished":
            self.progress_bar.setValue(1000)
        self.progress_bar.setFormat(str(status))

    # settings ------------------------------------------------------------------------------------
    def save_settings(self, settings) -> None:
        settings.setValue("training/preset", self.preset_combo.currentData())
        settings.setValue("training/method", self.method)
        settings.setValue("training/dataset", self.dataset_combo.currentData())
        settings.setValue("training/encoder", self.encoder_combo.currentData())
        settings.setValue("training/device", self.device_combo.currentData())
        for key, f in self.general.items():
            settings.setValue(f"training/{key}", f.text())

    def restore_settings(self, settings) -> None:
        try:
            method = settings.value("training/method")
            if method:
                self.select_method(method)
            dataset = settings.value("training/dataset")
            if dataset and dataset != FOLDER_ITEM:
                self.select_dataset(dataset)
            encoder = settings.value("training/encoder")
            if encoder:
                self.select_encoder(encoder)
            device = settings.value("training/device")
            i = self.device_combo.findData(device)
            if i >= 0 and self.device_combo.model().item(i).isEnabled():
                self.device_combo.setCurrentIndex(i)
            for key, f in self.general.items():
                value = settings.value(f"training/{key}")
                if value is not None:
                    f.set_text(str(value))
        except ValueError:
            pass  # a method or encoder that no longer exists: keep the defaults
