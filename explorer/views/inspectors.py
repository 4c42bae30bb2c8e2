"""Inspectors: small views that open up one method's training signal for one clicked image.

- ``TripletInspector``  anchor, hardest positive, hardest negative, their distances and category;
- ``AngleView``         center / cosine / arc: angles between class centres, each point's angle to its own;
- ``PairHistogram``     pair: distances of positive and negative pairs against the margin;
- ``ContrastiveInspector`` simclr: two views of a clicked image and its InfoNCE row, temperature to play;
- ``PretextDebugger``   rotation / colorization / inpainting: input, target, prediction;
- ``AugmentationPreview`` SimCLR's random views of a few images at settings changed with sliders.

Every inspector has the same small API, so the window can treat them alike:

    widget.set_run(run_dir, dataset=None, snapshot=None)   # a run directory (str or Path)
    widget.show_point(test_row)                            # a row of the dataset's test split (-1: none)
    widget.attach(session)                                 # or: follow an explorer.session.Session

``attach`` connects ``run_selected``, ``dataset_ready``, ``snapshot_added``, ``view_changed`` (the
time-lapse frame) and ``point_selected``. Inspectors that need the trained heads (decoders,
projection head, class weights) rebuild the method from ``checkpoint.pt`` through
``engine.restore.load_trained_method`` in a worker thread (``explorer.jobs.run_in_background``) and
reload it when the checkpoint file changes; a followed session's dataset is never loaded here (it
arrives with ``dataset_ready``). What stays in the GUI thread is small: one forward pass of a few
images (at most a batch of 64) on the CPU, for a clicked point. A hidden inspector does nothing until
it is shown, and "hidden" includes a dock tabbed behind another one: Qt keeps such a dock
``isVisible()`` and only moves it off the window, so ``is_shown`` also asks for a visible region.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel,
                               QMessageBox, QPushButton, QScrollArea, QSizePolicy, QSlider, QToolButton, QVBoxLayout,
                               QWidget)

from explorer.views import wrapped_tooltip
from explorer.views.flow import FlowLayout

# viridis, a few stops: perceptually even, readable in grey
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                     [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], dtype=float)
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
CATEGORY_COLOURS = {"easy": "#2ca02c", "semi-hard": "#ff7f0e", "hard": "#d62728"}


def colour_of(value: float) -> QColor:
    """Viridis colour of a value in [0, 1]."""
    t = float(np.clip(value, 0, 1)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    rgb = _VIRIDIS[i] + (t - i) * (_VIRIDIS[i + 1] - _VIRIDIS[i])
    return QColor(*(int(round(c)) for c in rgb))


def to_pixmap(image: np.ndarray, size: int) -> QPixmap:
    """uint8 (H, W) grey or (H, W, 3) colour -> a pixmap scaled to ``size`` (longer side), pixels kept
    sharp (nearest neighbour: an 8x8 digit must show its 64 pixels, not a blur)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if image.ndim == 2:
        qimage = QImage(image.data, w, h, w, QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    qimage = qimage.copy()  # own the pixels: the numpy buffer may go away
    return QPixmap.fromImage(qimage).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.FastTransformation)


class ImageTile(QWidget):
    """One image with a caption above it and a note below."""

    def __init__(self, name: str, size: int = 96, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.size_px = size
        self.caption = QLabel(objectName=f"{name}_caption", alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture = QLabel(objectName=f"{name}_image", alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setFixedSize(size + 4, size + 4)
        self.picture.setStyleSheet("border: 1px solid palette(mid);")
        self.note = QLabel(objectName=f"{name}_note", alignment=Qt.AlignmentFlag.AlignCenter)
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)
        # a tile is as wide as its image and a little more: long captions wrap instead of widening the dock
        self.setMaximumWidth(size + 40)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        layout.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.note)
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray | None, caption: str = "", note: str = "",
                  box: np.ndarray | None = None) -> None:
        """``box``: a bool (H, W) mask whose bounding box is outlined in red (the inpainted patch)."""
        self.image = None if image is None else np.asarray(image)
        self.caption.setText(caption)
        self.note.setText(note)
        if image is None:
            self.picture.clear()
            return
        pixmap = to_pixmap(image, self.size_px)
        if box is not None and box.any():
            ys, xs = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
            scale = pixmap.width() / image.shape[1]
            p = QPainter(pixmap)
            p.setPen(QPen(QColor("#e41a1c"), 2))
            p.drawRect(QRectF(xs[0] * scale + 1, ys[0] * scale + 1, (xs[-1] - xs[0] + 1) * scale - 2,
                              (ys[-1] - ys[0] + 1) * scale - 2))
            p.end()
        self.picture.setPixmap(pixmap)


class MatrixView(QWidget):
    """A small square matrix as coloured cells with their values written in (class angles)."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.values = np.zeros((0, 0))
        self.labels: list[str] = []
        self.range = (0.0, 1.0)
        self.fmt = "{:.0f}"
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_matrix(self, values: np.ndarray, labels: list[str], value_range: tuple[float, float],
                   fmt: str = "{:.0f}") -> None:
        self.values, self.labels, self.range, self.fmt = np.asarray(values, float), list(labels), value_range, fmt
        self.update()

    def paintEvent(self, event) -> None:
        n = len(self.values)
        if n == 0:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        margin = 8 + 7 * max((len(s) for s in self.labels), default=1)
        cell = max(4.0, min((self.width() - margin - 4) / n, (self.height() - margin - 4) / n))
        lo, hi = self.range
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, min(10.0, cell / 3.2)))
        p.setFont(font)
        for i in range(n):
            p.setPen(self.palette().windowText().color())
            short = self.labels[i][:10] if i < len(self.labels) else str(i)
            p.drawText(QRectF(0, margin + i * cell, margin - 4, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, short)
            p.drawText(QRectF(margin + i * cell, 0, cell, margin - 2),
                       Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, short[:4])
            for j in range(n):
                v = self.values[i, j]
                rect = QRectF(margin + j * cell, margin + i * cell, cell, cell)
                if i == j or not np.isfinite(v):
                    p.fillRect(rect, QColor("#dddddd"))
                    continue
                t = (v - lo) / (hi - lo) if hi > lo else 0.5
                c = colour_of(t)
                p.fillRect(rect, c)
                if cell >= 18:
                    p.setPen(QColor("black") if t > 0.55 else QColor("white"))
                    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.fmt.format(v))
        p.end()


class HeatStrip(QWidget):
    """One row of values as a strip of coloured cells; the ``marked`` cell is outlined in red and the
    ``blank`` cell (an anchor against itself) drawn grey."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.values = np.zeros(0)
        self.marked: int | None = None
        self.blank: int | None = None
        self.setMinimumHeight(44)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(400, 44)

    def set_values(self, values: np.ndarray, marked: int | None, blank: int | None = None) -> None:
        self.values, self.marked, self.blank = np.asarray(values, float), marked, blank
        self.update()

    def paintEvent(self, event) -> None:
        n = len(self.values)
        if n == 0:
            return
        p = QPainter(self)
        w = (self.width() - 2) / n
        h = self.height() - 14
        finite = self.values[np.isfinite(self.values)]
        hi = float(finite.max()) if finite.size else 1.0
        for i, v in enumerate(self.values):
            rect = QRectF(1 + i * w, 1, w, h)
            p.fillRect(rect, QColor("#bbbbbb") if i == self.blank or not np.isfinite(v)
                       else colour_of(v / hi if hi > 0 else 0))
        if self.marked is not None:
            x = 1 + self.marked * w
            p.setPen(QPen(QColor("#e41a1c"), 2))
            p.drawRect(QRectF(x, 1, max(w, 2), h))
            p.drawText(QRectF(x - 30, h + 1, w + 60, 13), Qt.AlignmentFlag.AlignHCenter, "positive")
        p.end()


# --------------------------------------------------------------------------------------------------

class Pending(Exception):
    """What a drawing waits for (the dataset, the rebuilt model); ``refresh`` runs again when it is there."""


class Inspector(QWidget):
    """Base: the run, its dataset and snapshot, the selected row, the lazily rebuilt trained method."""

    methods: tuple[str, ...] = ()  # the methods this inspector is for; () = any run
    needs_method = False  # rebuild the trained method from checkpoint.pt
    uses_snapshot = True  # redraw at every new snapshot (else only when the checkpoint changes)
    help_text = ""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.config: dict = {}
        self.dataset = None
        self.snapshot: dict | None = None
        self.row = -1
        self._method = None
        self._method_key: tuple | None = None
        self._session = None
        self._dirty = True  # the first show draws (or says what is missing)
        self._method_request: tuple[int, Path, tuple] | None = None  # (job id, run dir, checkpoint key)
        self._dock: QDockWidget | None = None
        self.status = QLabel(objectName=f"{type(self).__name__.lower()}_status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(dark);")

    # the API ----------------------------------------------------------------------------------
    def set_run(self, run_dir: str | Path | None, dataset=None, snapshot: dict | None = None) -> None:
        """Show ``run_dir`` (None: nothing). ``dataset``: its ImageDataset if already loaded;
        ``snapshot``: the snapshot dict to read embeddings from (default: the newest on disk)."""
        from engine.runs import RunDir

        new_dir = Path(run_dir) if run_dir else None
        if new_dir != self.run_dir:
            self._method, self._method_key = None, None
            self.dataset = None
        self.run_dir = new_dir
        self.config = RunDir(new_dir).config() if new_dir and (new_dir / "config.json").exists() else {}
        if dataset is not None:
            self.dataset = dataset
        self.snapshot = snapshot
        self.refresh()

    def set_snapshot(self, snapshot: dict | None) -> None:
        self.snapshot = snapshot
        if self.uses_snapshot or (self.needs_method and self._checkpoint_key() != self._method_key):
            self.refresh()

    def show_point(self, test_row: int) -> None:
        self.row = int(test_row)
        self.refresh()

    def applies(self) -> bool:
        return not self.methods or self.config.get("method") in self.methods

    @property
    def busy(self) -> bool:
        """A rebuild of the trained model is under way in a worker thread."""
        return self._method_request is not None

    def is_shown(self) -> bool:
        """On screen: visible, and not in a dock tabbed behind another one (Qt leaves such a dock
        ``isVisible()`` and moves it off the window, so its visible region is empty)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def refresh(self) -> None:
        """Redraw now if shown, else when shown."""
        if not self.is_shown():
            self._dirty = True
            return
        self._dirty = False
        if not self.config:
            self._clear("No run selected.")
            return
        if not self.applies():
            self._clear(f"This view is for {', '.join(self.methods)} runs; the selected run uses "
                        f"{self.config.get('method')}.")
            return
        try:
            self._draw()
        except Pending as waiting:  # keep what is drawn; refresh() runs again when it arrives
            self.status.setText(str(waiting))
        except (FileNotFoundError, ValueError) as error:  # no checkpoint or snapshot yet, a bad file
            self._clear(str(error))
        except (KeyError, RuntimeError) as error:  # a run directory from another version of the program
            self._clear(f"This run cannot be inspected: {type(error).__name__}: {error}")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._follow_dock()
        if self._dirty:
            self.refresh()

    def _follow_dock(self) -> None:
        """Draw when the tab of the dock holding this inspector is brought to the front: no show
        event comes then (the dock was never hidden, only moved off the window)."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and dock is not self._dock:
            self._dock = dock
            dock.visibilityChanged.connect(self._on_dock_visibility_changed)

    def _on_dock_visibility_changed(self, visible: bool) -> None:
        if visible and self._dirty:
            QTimer.singleShot(0, self._refresh_if_dirty)  # once the dock layout has put it back

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self.refresh()

    # helpers for subclasses --------------------------------------------------------------------
    def _draw(self) -> None:
        raise NotImplementedError

    def _clear(self, message: str) -> None:
        self.status.setText(message)

    def _get_dataset(self):
        """The run's dataset. Following a session: the session's copy, loaded in a worker thread
        (raises Pending until ``dataset_ready``); standalone: loaded here."""
        if self.dataset is None:
            run = self._session.current if self._session is not None else None
            if run is not None and self.run_dir is not None and Path(run.path) == self.run_dir:
                if run.dataset is None:
                    raise Pending(f"Loading the {self.config.get('dataset', 'run')} dataset…")
                self.dataset = run.dataset
            else:
                from engine.restore import load_run_dataset

                self.dataset = load_run_dataset(self.config)
        return self.dataset

    def _get_snapshot(self) -> dict:
        if self.snapshot is None:
            from engine.runs import RunDir, load_snapshot

            paths = RunDir(self.run_dir).snapshot_paths()
            if not paths:
                raise FileNotFoundError("The run has no snapshot yet: one is written at every evaluation.")
            self.snapshot = load_snapshot(paths[-1])
        return self.snapshot

    def _checkpoint_key(self) -> tuple | None:
        ckpt = self.run_dir / "checkpoint.pt" if self.run_dir is not None else None
        return (str(ckpt), ckpt.stat().st_mtime_ns) if ckpt is not None and ckpt.exists() else None

    def _get_method(self):
        """The trained method, rebuilt once per checkpoint file version. Following a session (the
        window, where a run may be training): in a worker thread, as reading the checkpoint and
        building the model (and a dataset not loaded yet) would freeze the window; raises Pending
        until it is there, then ``refresh`` runs again. Standalone (a script, a test): at once."""
        from explorer import jobs
        from engine.restore import load_trained_method

        key = self._checkpoint_key()
        if key is None:  # no checkpoint yet: load_trained_method says so, at once
            load_trained_method(self.run_dir, dataset=self.dataset)
        if self._method is not None and key == self._method_key:
            return self._method
        if self._session is None:
            self._method, self.dataset = load_trained_method(self.run_dir, dataset=self.dataset)
            self._method_key = key
            return self._method
        waiting = Pending("Rebuilding the trained model from its checkpoint…")
        if self._method_request is not None and self._method_request[1:] == (self.run_dir, key):
            raise waiting
        dataset = self._get_dataset()  # the session's copy (Pending until it is loaded)
        request_id = jobs.next_id()
        self._method_request = (request_id, self.run_dir, key)
        jobs.run_in_background(load_trained_method, self.run_dir, dataset, on_done=self._on_method_loaded,
                               on_failed=self._on_method_failed, request_id=request_id)
        raise waiting

    def _on_method_loaded(self, request_id: int, result) -> None:
        if self._method_request is None or self._method_request[0] != request_id:
            return  # overtaken: another run or a newer checkpoint
        _, run_dir, key = self._method_request
        self._method_request = None
        if run_dir != self.run_dir:
            return
        self._method, dataset = result
        self._method_key = key
        if self.dataset is None:
            self.dataset = dataset
        self.refresh()

    def _on_method_failed(self, request_id: int, message: str) -> None:
        if self._method_request is None or self._method_request[0] != request_id:
            return
        self._method_request = None
        self._clear(f"The trained model could not be rebuilt: {message}")

    def _snapshot_position(self, snap: dict) -> int | None:
        where = np.flatnonzero(np.asarray(snap["indices"]) == self.row)
        return int(where[0]) if len(where) else None

    def _class_name(self, label: int) -> str:
        names = self.config.get("class_names") or []
        return names[label] if 0 <= label < len(names) else ("unlabelled" if label < 0 else str(label))

    def _images(self, rows: np.ndarray):
        """Float test images in [0, 1] (B, C, H, W) of the given test rows."""
        import torch

        data = self._get_dataset()
        return torch.from_numpy(np.asarray(data.test.images[np.asarray(rows)])).float() / 255

    # session wiring ----------------------------------------------------------------------------
    def attach(self, session) -> None:
        """Follow an ``explorer.session.Session``: its selected run, time-lapse frame and point."""
        self._session = session
        session.run_selected.connect(self._on_session_run_selected)
        session.dataset_ready.connect(self._on_session_dataset_ready)
        session.snapshot_added.connect(self._on_session_snapshot_added)
        session.view_changed.connect(self._on_session_view_changed)
        session.point_selected.connect(self.show_point)
        if session.current is not None:
            self._on_session_run_selected(session.current_id)

    def _on_session_run_selected(self, run_id: str) -> None:
        run = self._session.runs.get(run_id)
        if run is None:
            return
        self.row = self._session.selected_row
        self.set_run(run.path, dataset=run.dataset, snapshot=self._session.snapshot(run))

    def _on_session_dataset_ready(self, run_id: str) -> None:
        run = self._session.current
        if run is not None and run.id == run_id and self.dataset is None:
            self.dataset = run.dataset
            self.refresh()

    def _on_session_snapshot_added(self, run_id: str, index: int) -> None:
        if run_id == self._session.current_id:
            self._on_session_view_changed()

    def _on_session_view_changed(self) -> None:
        snap = self._session.snapshot()
        if snap is not None and snap is not self.snapshot:
            self.set_snapshot(snap)


def _help_button(widget: Inspector) -> QToolButton:
    """The window's "?" button: the help paragraph as a tooltip and, on click, in a message box."""
    button = QToolButton(text="?", objectName=f"{widget.objectName()}_help")
    button.setAutoRaise(True)
    button.setToolTip(wrapped_tooltip(widget.help_text))
    button.clicked.connect(lambda: QMessageBox.information(widget, widget.objectName().replace("_", " "),
                                                           widget.help_text))
    return button


# --------------------------------------------------------------------------------------------------

class TripletInspector(Inspector):
    """Anchor (the clicked point), its hardest positive and hardest negative within the evaluation
    subset, their distances and the triplet's category at a margin (spin box)."""

    help_text = (
        "A triplet is an anchor, a positive (same class) and a negative (another class). Here the anchor is "
        "the point you clicked on the map; among the map's points, the hardest positive is the one of its "
        "class that lies farthest from it, and the hardest negative the closest point of another class: "
        "the triplet batch-hard mining would train on (Hermans et al. 2017). With d_ap and d_an their "
        "distances to the anchor and m the margin, the triplet is easy when D_an >= D_ap + m (the loss "
        "max(0, D_ap - D_an + m) is already zero), semi-hard when the order is right but inside the margin, "
        "and hard when the negative is closer than the positive. The distance D and the margin are the "
        "triplet loss's, as in the evaluation's triplet shares and on the map's triplet colouring: a "
        "triplet run's own, otherwise the loss's defaults (squared euclidean distance between "
        "l2-normalised embeddings, D in [0, 4]).")

    triplet_shown = Signal(int, int, int)  # test rows of anchor, hardest positive, hardest negative

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("triplet_inspector")
        self.result: dict[str, Any] = {}
        from engine.metrics.triplets import TripletDefinition

        self.definition = TripletDefinition()  # the run's (see set_run); the spin box may change its margin
        self.margin_spin = QDoubleSpinBox(objectName="triplet_margin_spin", decimals=3, minimum=0.0,
                                          maximum=4.0, singleStep=0.05, value=self.definition.margin)
        self.margin_spin.setToolTip("Margin m of the categories: easy when D_an >= D_ap + m (starts at the "
                                    "run's own).")
        self.margin_spin.valueChanged.connect(lambda _: self.refresh())
        head = QHBoxLayout()
        head.addWidget(QLabel("margin m"))
        head.addWidget(self.margin_spin)
        head.addStretch(1)
        head.addWidget(_help_button(self))
        self.tiles = {k: ImageTile(f"triplet_{k}", 96) for k in ("anchor", "positive", "negative")}
        row = FlowLayout()
        for tile in self.tiles.values():
            row.addWidget(tile)
        self.verdict = QLabel(objectName="triplet_verdict", alignment=Qt.AlignmentFlag.AlignCenter)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.verdict.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(row)
        layout.addWidget(self.verdict)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._margin_run: Path | None = None

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
        super().set_run(run_dir, dataset, snapshot)
        if self.run_dir != self._margin_run and self.config:
            from engine.methods import run_triplet_definition
            from engine.metrics.triplets import TripletDefinition

            self._margin_run = self.run_dir
            try:
                self.definition = run_triplet_definition(self.config)
            except ValueError:  # a config this version cannot read: the default, as the map does
                self.definition = TripletDefinition()
            self.margin_spin.setValue(self.definition.margin)  # refreshes when it changes

    def _clear(self, message: str) -> None:
        self.result = {}
        for tile in self.tiles.values():
            tile.set_image(None)
        self.verdict.clear()
        super()._clear(message)

    def _draw(self) -> None:
        from engine.metrics.triplets import EASY, HARD, SEMI_HARD, anchor_categories

        if self.row < 0:
            self._clear("Click a point on the map: it becomes the anchor.")
            return
        snap = self._get_snapshot()
        pos = self._snapshot_position(snap)
        if pos is None:
            self._clear(f"Test image {self.row} is not among the map's points (the evaluation subset).")
            return
        labels = np.asarray(snap["labels"])
        if labels[pos] < 0:
            self._clear("The anchor is unlabelled: it has no positives or negatives.")
            return
        from dataclasses import replace

        definition = replace(self.definition, margin=self.margin_spin.value())
        margin = definition.margin
        cats = anchor_categories(np.asarray(snap["embeddings"]), labels, pos, definition)
        if cats.hardest_positive is None or cats.hardest_negative is None:
            self._clear("The anchor's class has no other point on the map, or there is no other class.")
            return
        rows = np.asarray(snap["indices"])
        p, n = cats.hardest_positive, cats.hardest_negative
        d_ap, d_an = float(cats.distances[p]), float(cats.distances[n])
        category = "hard" if d_an < d_ap else "semi-hard" if d_an < d_ap + margin else "easy"
        data = self._get_dataset()  # first: ``result`` is set only once the tiles can show it
        self.result = {"anchor": self.row, "positive": int(rows[p]), "negative": int(rows[n]),
                       "d_ap": d_ap, "d_an": d_an, "margin": margin, "category": category,
                       "counts": {name: int((cats.codes == code).sum())
                                  for name, code in (("easy", EASY), ("semi-hard", SEMI_HARD), ("hard", HARD))}}
        self.tiles["anchor"].set_image(data.thumbnail("test", self.row), "anchor",
                                       f"#{self.row} · {self._class_name(int(labels[pos]))}")
        self.tiles["positive"].set_image(data.thumbnail("test", int(rows[p])), "hardest positive",
                                         f"#{rows[p]} · {self._class_name(int(labels[p]))}<br>D_ap = {d_ap:.3f}")
        self.tiles["negative"].set_image(data.thumbnail("test", int(rows[n])), "hardest negative",
                                         f"#{rows[n]} · {self._class_name(int(labels[n]))}<br>D_an = {d_an:.3f}")
        colour = CATEGORY_COLOURS[category]
        c = self.result["counts"]
        self.verdict.setText(
            f"D_an − D_ap = {d_an - d_ap:+.3f}, margin m = {margin:g}: "
            f"<b style='color:{colour}'>{category}</b><br>"
            f"this anchor's negatives against its hardest positive: {c['easy']} easy, {c['semi-hard']} "
            f"semi-hard, {c['hard']} hard")
        self.status.setText(f"D: {definition.describe()}, over the {len(labels)} points of the map "
                            f"(step {int(snap.get('step', 0))})")
        self.triplet_shown.emit(self.row, int(rows[p]), int(rows[n]))


# --------------------------------------------------------------------------------------------------

class AngleView(Inspector):
    """Angles between class centres (a matrix) and each point's angle to its class centre (one
    histogram per class) for the centre-based losses."""

    methods = ("center", "cosine", "arc")
    help_text = (
        "The center, cosine (CosFace) and arc (ArcFace) losses give each class a centre: a learned point "
        "(center loss) or a row of the normalised weight matrix of the training head (cosine, arc). On the "
        "sphere, what matters is the angle. The matrix shows the angle between every two class centres: "
        "well-trained classes sit far apart (on many classes, close to 90 degrees or more). The histograms "
        "show, for every point of the map, the angle between its embedding and its own class centre: a "
        "margin loss squeezes each class into a narrow cone, so the histograms move to the left and "
        "narrow as training goes. With sub-centres, each class uses the sub-centre nearest most of its "
        "points. The clicked point's angle is the dashed line.")

    centres_changed = Signal(object)  # (C, D) unit class centres in embedding space, for the map

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        self.setObjectName("angle_view")
        self.matrix = MatrixView("centre_angle_matrix")
        self.plot = pg.PlotWidget(objectName="point_angle_plot")
        self.plot.setBackground(None)
        self.plot.setLabel("bottom", "angle to own class centre (degrees)")
        self.plot.setLabel("left", "points")
        self.legend = self.plot.addLegend(offset=(-5, 5), labelTextSize="7pt")
        self.curves: list = []
        self.point_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("k", width=1.5, style=Qt.PenStyle.DashLine))
        self.point_line.hide()
        self.plot.addItem(self.point_line)
        self.source = QLabel(objectName="angle_source")
        self.source.setWordWrap(True)
        self.point_label = QLabel(objectName="angle_point")
        self.point_label.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(QLabel("angles between class centres (degrees)"))
        head.addStretch(1)
        head.addWidget(_help_button(self))
        # the matrix keeps the whole height on the left; plot and sentences share the right
        layout = QGridLayout(self)
        layout.addLayout(head, 0, 0, 1, 2)
        layout.addWidget(self.matrix, 1, 0, 4, 1)
        layout.addWidget(self.plot, 1, 1)
        layout.addWidget(self.point_label, 2, 1)
        layout.addWidget(self.source, 3, 1)
        layout.addWidget(self.status, 4, 1)
        layout.setColumnStretch(0, 2)
        layout.setColumnStretch(1, 3)
        layout.setRowStretch(1, 1)
        self.centre_angles = np.zeros((0, 0))
        self.point_angles = np.zeros(0)
        self._drawn_key: tuple | None = None  # what the matrix and histograms show

    def applies(self) -> bool:
        return bool(self.config)  # any labelled run: class means stand in for a head's centres

    def _clear(self, message: str) -> None:
        self._drawn_key = None
        self.matrix.set_matrix(np.zeros((0, 0)), [], (0, 1))
        for c in self.curves:
            self.plot.removeItem(c)
        self.curves = []
        self.legend.clear()
        self.point_line.hide()
        self.point_label.clear()
        super()._clear(message)

    def centres(self, embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
        """(C, D) unit class centres and where they come from."""
        import torch.nn.functional as F
        import torch

        num_classes = len(self.config.get("class_names") or []) or int(labels.max()) + 1
        z = F.normalize(torch.from_numpy(np.asarray(embeddings, np.float32)), dim=1)
        lab = torch.from_numpy(labels.astype(np.int64))
        method = self.config.get("method")
        if method in self.methods and (self.run_dir / "checkpoint.pt").exists():
            raw = torch.from_numpy(self._get_method().class_centers()).float()
            if raw.dim() == 2:  # center loss: points in embedding space
                return F.normalize(raw, dim=1).numpy(), "the center loss's learned class centres"
            raw = F.normalize(raw, dim=2)  # (C, k, D) sub-centres: each class's most used one
            out = []
            for c in range(len(raw)):
                rows = z[lab == c]
                best = (rows @ raw[c].T).argmax(1) if len(rows) else torch.zeros(1, dtype=torch.long)
                out.append(raw[c, torch.bincount(best, minlength=raw.shape[1]).argmax()])
            k = raw.shape[1]
            return torch.stack(out).numpy(), ("rows of the head's normalised weight matrix" +
                                              (f" (the most used of {k} sub-centres)" if k > 1 else ""))
        means = np.stack([F.normalize(z[lab == c].mean(0), dim=0).numpy() if (lab == c).any()
                          else np.full(z.shape[1], np.nan, np.float32) for c in range(num_classes)])
        why = ("no checkpoint yet" if method in self.methods else f"{method} has no class centres")
        return means, f"directions of the class means of the embeddings ({why})"

    def _draw_key(self, snap: dict) -> tuple:
        ckpt = self.run_dir / "checkpoint.pt"
        return (str(self.run_dir), id(snap), int(snap.get("step", 0)),
                ckpt.stat().st_mtime_ns if ckpt.exists() else None)

    def _draw(self) -> None:
        import pyqtgraph as pg

        snap = self._get_snapshot()
        labels = np.asarray(snap["labels"]).astype(np.int64)
        if self._drawn_key == self._draw_key(snap):  # a click: only the point changes
            self._draw_point(snap, labels, self._unit, self._centres)
            return
        self._drawn_key = None
        keep = labels >= 0
        if keep.sum() == 0:
            self._clear("The run's points are unlabelled: no classes, no class centres.")
            return
        emb = np.asarray(snap["embeddings"], np.float32)
        centres, source = self.centres(emb[keep], labels[keep])
        cosines = np.clip(centres @ centres.T, -1, 1)
        self.centre_angles = np.degrees(np.arccos(cosines))
        names = list(self.config.get("class_names") or [str(i) for i in range(len(centres))])
        off = self.centre_angles[~np.eye(len(centres), dtype=bool)]
        off = off[np.isfinite(off)]
        self.matrix.set_matrix(self.centre_angles, names, (float(off.min()) if off.size else 0.0,
                                                           float(off.max()) if off.size else 180.0))
        z = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.point_angles = np.full(len(labels), np.nan)
        self.point_angles[keep] = np.degrees(np.arccos(np.clip((z[keep] * centres[labels[keep]]).sum(1), -1, 1)))
        for c in self.curves:
            self.plot.removeItem(c)
        self.legend.clear()
        self.curves = []
        finite = self.point_angles[np.isfinite(self.point_angles)]
        edges = np.linspace(0, max(10.0, float(np.ceil(finite.max() / 5) * 5)) if finite.size else 90, 37)
        for c in range(len(centres)):
            values = self.point_angles[labels == c]
            if not len(values):
                continue
            counts, _ = np.histogram(values, edges)
            curve = pg.PlotDataItem(edges, counts, stepMode="center",
                                    pen=pg.mkPen(CLASS_COLOURS[c % len(CLASS_COLOURS)], width=1.5),
                                    name=names[c] if c < len(names) else str(c))
            self.plot.addItem(curve)
            self.curves.append(curve)
        mean_gap = float(off.min()) if off.size else float("nan")
        self.source.setText(f"Centres: {source}. Smallest angle between two centres: {mean_gap:.1f}°; "
                            f"median angle of a point to its centre: {np.nanmedian(self.point_angles):.1f}°.")
        self.status.setText(f"{int(keep.sum())} points of the map, step {int(snap.get('step', 0))}")
        self._unit, self._centres = z, centres
        self._drawn_key = self._draw_key(snap)
        self.centres_changed.emit(centres)
        self._draw_point(snap, labels, z, centres)

    def _draw_point(self, snap, labels, z, centres) -> None:
        pos = self._snapshot_position(snap) if self.row >= 0 else None
        if pos is None or labels[pos] < 0:
            self.point_line.hide()
            self.point_label.setText("Click a point on the map to see its angle to each centre.")
            return
        own = int(labels[pos])
        angles = np.degrees(np.arccos(np.clip(centres @ z[pos], -1, 1)))
        others = np.where(np.arange(len(angles)) == own, np.inf, angles)
        nearest = int(np.nanargmin(others))
        self.point_line.setValue(float(angles[own]))
        self.point_line.show()
        verdict = "closer to its own centre" if angles[own] < others[nearest] else "closer to another class's centre"
        self.point_label.setText(f"Point #{self.row} ({self._class_name(own)}): {angles[own]:.1f}° to its centre, "
                                 f"{others[nearest]:.1f}° to the nearest other ({self._class_name(nearest)}): {verdict}.")


# --------------------------------------------------------------------------------------------------

class PairHistogram(Inspector):
    """Distances of all positive and all negative pairs of the map's points, with the margin."""

    methods = ("pair",)
    help_text = (
        "The pair (contrastive) loss looks at two images at a time. A positive pair (same class) is pulled "
        "together: its loss grows with the distance. A negative pair (different classes) is pushed apart, "
        "but only until it is farther than the margin m; beyond it, it costs nothing (Hadsell, Chopra & "
        "LeCun 2006). The two histograms are the distances of every positive pair (green) and every negative "
        "pair (red) among the map's points; the vertical line is the margin. Training moves the green hill "
        "to the left and the red hill beyond the line; where they overlap, retrieval makes mistakes. The "
        "shares of pairs that still cost something are printed below.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        self.setObjectName("pair_histogram")
        self.max_points = 1000
        self.plot = pg.PlotWidget(objectName="pair_distance_plot")
        self.plot.setBackground(None)
        self.plot.setLabel("bottom", "distance d between the two embeddings of a pair")
        self.plot.setLabel("left", "share of pairs")
        self.plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        self.positive_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(44, 160, 44, 70),
                                              pen=pg.mkPen("#2ca02c", width=1.5), name="positive pairs")
        self.negative_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(214, 39, 40, 70),
                                              pen=pg.mkPen("#d62728", width=1.5), name="negative pairs")
        self.plot.addItem(self.positive_curve)
        self.plot.addItem(self.negative_curve)
        self.margin_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("k", width=2, style=Qt.PenStyle.DashLine),
                                           label="m = {value:.2f}",
                                           labelOpts={"position": 0.9, "color": "k", "fill": (255, 255, 255, 180)})
        self.plot.addItem(self.margin_line)
        self.summary = QLabel(objectName="pair_summary")
        self.summary.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(QLabel("distances of positive and negative pairs"))
        head.addStretch(1)
        head.addWidget(_help_button(self))
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.status)
        self.stats: dict[str, Any] = {}

    def applies(self) -> bool:
        return bool(self.config)  # any labelled run: the run's pair settings, else the pair defaults

    def show_point(self, test_row: int) -> None:
        self.row = int(test_row)  # the histograms are over all pairs: nothing to redraw

    def _clear(self, message: str) -> None:
        self.stats = {}
        self.positive_curve.setData([], [])
        self.negative_curve.setData([], [])
        self.summary.clear()
        super()._clear(message)

    def loss(self):
        """A PairLoss with the run's settings (pair runs) or the pair method's defaults."""
        from engine.losses.metric import PairLoss
        from engine.methods import METHODS
        from engine.params import resolve

        given = self.config.get("method_params") or {} if self.config.get("method") == "pair" else {}
        p = resolve(METHODS.get("pair").params, {k: v for k, v in given.items()
                                                 if k in {q.name for q in METHODS.get("pair").params}})
        return PairLoss(margin=p["margin"], distance=p["distance"], squared=p["squared"], mining="all",
                        normalize=p["normalize"])

    def _draw(self) -> None:
        import torch

        snap = self._get_snapshot()
        labels = np.asarray(snap["labels"]).astype(np.int64)
        keep = labels >= 0
        if len(np.unique(labels[keep])) < 2:
            self._clear("Pairs need labelled points of two classes at least.")
            return
        loss = self.loss()
        rows = np.flatnonzero(keep)
        if len(rows) > self.max_points:  # a fixed subset: 1000 points are half a million pairs, 0.1 s
            rows = np.sort(np.random.default_rng(0).choice(rows, self.max_points, replace=False))
        with torch.no_grad():
            loss(torch.from_numpy(np.asarray(snap["embeddings"], np.float32)[rows]), torch.from_numpy(labels[rows]))
        self.stats = dict(loss.stats)
        edges = np.asarray(self.stats["dist_bins"])
        self.positive_curve.setData(edges, np.asarray(self.stats["pos_dist_hist"]))
        self.negative_curve.setData(edges, np.asarray(self.stats["neg_dist_hist"]))
        self.margin_line.setValue(loss.margin)
        self.plot.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)
        settings = (f"{loss.distance_name} distance{' between l2-normalised embeddings' if loss.normalize else ''}"
                    f", margin m = {loss.margin:g}")
        if self.config.get("method") != "pair":
            settings += " (the pair loss's defaults: this run is not a pair run)"
        self.summary.setText(
            f"Mean distance: positives {self.stats['pos_dist']:.3f}, negatives {self.stats['neg_dist']:.3f}. "
            f"Negative pairs inside the margin (still pushed): {100 * self.stats['neg_active']:.1f}%. {settings}.")
        subset = f"a fixed random {len(rows)} of the {int(keep.sum())}" if len(rows) < keep.sum() else f"the {len(rows)}"
        self.status.setText(f"all pairs of {subset} labelled points of the map, step {int(snap.get('step', 0))}")


# --------------------------------------------------------------------------------------------------

class ContrastiveInspector(Inspector):
    """For a clicked image: its two augmented views and the InfoNCE row of its first view against a
    batch of 2N views; a temperature spin box re-weighs the same similarities."""

    methods = ("simclr",)
    needs_method = True
    uses_snapshot = False  # the views come from the model and the images, not from the map's snapshot
    batch_size = 64
    help_text = (
        "SimCLR learns by a game of matching (Chen et al. 2020). Every image of a batch is augmented twice; "
        "for each view, the other 2N-1 views are candidates and exactly one of them, the other view of the "
        "same image, is right. The model scores each candidate by the cosine similarity of their projected "
        "embeddings divided by the temperature tau, and a softmax over the candidates turns scores into "
        "probabilities; the loss (NT-Xent, or InfoNCE) is minus the log probability of the right one. Here: "
        "the clicked image, its two views, and the first view's row of probabilities over a batch of test "
        "images (the positive outlined). Change tau: a small tau sharpens the softmax so the closest "
        "negatives dominate the loss; a large tau spreads the weight over all of them.")

    views_embedded = Signal(object)  # (2, D) encoder embeddings of the two views, for a line on the map

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("contrastive_inspector")
        self.seed = 0
        self.similarities = np.zeros(0)
        self.positive = -1
        self.view_embeddings: np.ndarray | None = None
        self.tiles = {k: ImageTile(f"contrastive_{k}", 80) for k in ("image", "view1", "view2")}
        self.temperature_spin = QDoubleSpinBox(objectName="temperature_spin", decimals=3, minimum=0.01,
                                               maximum=5.0, singleStep=0.05, value=0.5)
        self.temperature_spin.setToolTip("Temperature tau of the softmax (the run's own at first).")
        self.temperature_spin.valueChanged.connect(self._redraw_strip)
        self.resample_button = QPushButton("new views", objectName="contrastive_resample")
        self.resample_button.clicked.connect(self._on_resample_clicked)
        head = QHBoxLayout()
        head.addWidget(QLabel("temperature τ"))
        head.addWidget(self.temperature_spin)
        head.addWidget(self.resample_button)
        head.addStretch(1)
        head.addWidget(_help_button(self))
        tiles = FlowLayout()  # the plot moves under the views when the dock is narrow
        for tile in self.tiles.values():
            tiles.addWidget(tile)
        tiles.addWidget(self._temperature_plot())
        self.strip = HeatStrip("logit_strip")
        self.strip_label = QLabel(objectName="contrastive_summary")
        self.strip_label.setWordWrap(True)
        self.strip_label.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(tiles)
        strip_title = QLabel("softmax over the 2N−1 other views of the batch (first view's row of NT-Xent); "
                             "colour: p relative to the largest p of the row")
        strip_title.setWordWrap(True)
        layout.addWidget(strip_title)
        layout.addWidget(self.strip)
        layout.addWidget(self.strip_label)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._tau_run: Path | None = None

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
        super().set_run(run_dir, dataset, snapshot)
        if self.run_dir != self._tau_run and self.config.get("method") == "simclr":
            self._tau_run = self.run_dir
            self.temperature_spin.setValue(float((self.config.get("method_params") or {}).get("temperature", 0.5)))

    TAUS = np.geomspace(0.01, 5.0, 80)

    def _temperature_plot(self):
        """p(positive) and the hardest negative's p against tau (log axis), the spin box's tau marked."""
        import pyqtgraph as pg

        plot = self.tau_plot = pg.PlotWidget(objectName="temperature_plot")
        plot.setBackground(None)
        plot.setLogMode(x=True, y=False)
        plot.setYRange(0, 1, padding=0.02)
        plot.setLabel("bottom", "τ")
        plot.setLabel("left", "p")
        plot.setMinimumSize(160, 120)
        plot.setMaximumSize(320, 170)
        # fixed ticks: pyqtgraph labels every minor tick of a log axis, unreadable in a narrow dock
        plot.getAxis("bottom").setTicks([[(np.log10(t), f"{t:g}") for t in (0.01, 0.03, 0.1, 0.3, 1, 3)]])
        plot.addLegend(offset=(5, 2), labelTextSize="7pt")
        self.tau_positive = plot.plot(pen=pg.mkPen("#e41a1c", width=2), name="positive")
        self.tau_negative = plot.plot(pen=pg.mkPen("#377eb8", width=1.5), name="hardest negative")
        self.tau_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("k", style=Qt.PenStyle.DashLine))
        plot.addItem(self.tau_line)
        return plot

    def _on_resample_clicked(self) -> None:
        self.seed += 1
        self.refresh()

    def _clear(self, message: str) -> None:
        self.tau_positive.setData([], [])
        self.tau_negative.setData([], [])
        self.similarities = np.zeros(0)
        for tile in self.tiles.values():
            tile.set_image(None)
        self.strip.set_values(np.zeros(0), None)
        self.strip_label.clear()
        super()._clear(message)

    def batch_rows(self, n_test: int) -> np.ndarray:
        """The clicked row first, then other test rows (fixed by the seed) up to ``batch_size``."""
        rng = np.random.default_rng(self.seed)
        others = np.delete(np.arange(n_test), self.row)
        take = min(self.batch_size - 1, len(others))
        return np.concatenate([[self.row], rng.choice(others, take, replace=False)])

    def _draw(self) -> None:
        import torch

        from engine.methods.pretext import to_uint8

        if self.row < 0:
            self._clear("Click an image on the map.")
            return
        method = self._get_method()
        data = self._get_dataset()
        rows = self.batch_rows(len(data.test))
        x = self._images(rows)
        with torch.no_grad():
            v1, v2 = method.views(x, torch.Generator().manual_seed(self.seed))
            h = method.encoder(torch.cat([v1, v2]))
            z = method.project(h)
        n = len(rows)
        self.similarities = (z[0] @ z.T).numpy()  # cosine similarity of view 1 of the clicked image to all 2N
        self.positive = n
        self.view_embeddings = torch.stack([h[0], h[n]]).numpy()
        self.tiles["image"].set_image(data.thumbnail("test", self.row), "image",
                                      f"#{self.row} · {self._class_name(int(data.test.labels[self.row]))}")
        self.tiles["view1"].set_image(to_uint8(v1[:1])[0], "view 1 (anchor)")
        self.tiles["view2"].set_image(to_uint8(v2[:1])[0], "view 2 (positive)",
                                      f"cos = {self.similarities[n]:.3f}")
        others = np.delete(np.arange(2 * n), [0, n])
        hardest = others[np.argmax(self.similarities[others])]  # the same at every tau
        curves = np.array([self.probabilities(t)[[n, hardest]] for t in self.TAUS])
        self.tau_positive.setData(self.TAUS, curves[:, 0])
        self.tau_negative.setData(self.TAUS, curves[:, 1])
        self._redraw_strip()
        self.status.setText(f"batch of N = {n} test images (the clicked one first), 2N = {2 * n} views; "
                            "model in eval mode")
        self.views_embedded.emit(self.view_embeddings)

    def probabilities(self, temperature: float | None = None) -> np.ndarray:
        """Softmax over the 2N − 1 other views of cos / tau (the anchor's own column is NaN)."""
        tau = self.temperature_spin.value() if temperature is None else float(temperature)
        logits = self.similarities / tau
        logits[0] = -np.inf
        p = np.exp(logits - logits.max())
        p /= p.sum()
        p[0] = np.nan
        return p

    def _redraw_strip(self) -> None:
        if not len(self.similarities):
            return
        p = self.probabilities()
        tau = self.temperature_spin.value()
        others = np.delete(np.arange(len(p)), [0, self.positive])
        rank = 1 + int((p[others] > p[self.positive]).sum())
        hardest = others[np.argmax(p[others])]
        self.strip.set_values(p, self.positive, blank=0)
        self.tau_line.setValue(np.log10(tau))  # log-mode axes take positions in log10
        self.strip_label.setText(
            f"τ = {tau:g}: p(positive) = <b>{p[self.positive]:.3f}</b>, loss −log p = {-np.log(p[self.positive]):.3f}, "
            f"positive ranked {rank} of {len(p) - 1}; hardest negative (column {hardest}) p = {p[hardest]:.3f}, "
            f"cos = {self.similarities[hardest]:.3f}. Columns 0–{len(p) // 2 - 1}: first views, "
            f"{len(p) // 2}–{len(p) - 1}: second views (grey: the anchor itself).")


# --------------------------------------------------------------------------------------------------

class PretextDebugger(Inspector):
    """For a clicked image: what the pretext task's input, target and prediction look like."""

    methods = ("rotation", "colorization", "inpainting")
    needs_method = True
    uses_snapshot = False  # input, target and prediction come from the model, not from the snapshot
    help_text = (
        "A pretext task invents labels from the images themselves, and the representation is whatever the "
        "encoder had to learn to solve it. Rotation (Gidaris et al. 2018): the image is turned by 0, 90, 180 "
        "or 270 degrees and the model must say by how much; shown: the four turns with the true and the "
        "predicted angle. Colourisation (Zhang et al. 2016): the model sees only the lightness and predicts "
        "the colours; shown: the grey input, the predicted colours, the true colours. Inpainting (Pathak et "
        "al. 2016): a square patch is removed and the model paints it back; shown: the masked input, the "
        "inpainted image, the original. A prediction that looks right means the encoder captured what the "
        "task needs; the probe and the map tell whether that also separates the classes.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("pretext_debugger")
        self.seed = 0
        self.output: dict[str, Any] = {}
        self.tiles: list[ImageTile] = []
        self.tile_row = FlowLayout()
        self.resample_button = QPushButton("new patch", objectName="pretext_resample")
        self.resample_button.clicked.connect(self._on_resample_clicked)
        self.title = QLabel(objectName="pretext_title")
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.resample_button)
        head.addWidget(_help_button(self))
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(self.tile_row)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _on_resample_clicked(self) -> None:
        self.seed += 1
        self.refresh()

    def _set_tiles(self, count: int) -> list[ImageTile]:
        while len(self.tiles) > count:
            tile = self.tiles.pop()
            self.tile_row.removeWidget(tile)
            tile.deleteLater()
        while len(self.tiles) < count:
            tile = ImageTile(f"pretext_tile_{len(self.tiles)}", 80)
            self.tile_row.addWidget(tile)
            self.tiles.append(tile)
        return self.tiles

    def shown_images(self) -> list[np.ndarray]:
        return [t.image for t in self.tiles if t.image is not None]

    def _clear(self, message: str) -> None:
        self.output = {}
        for tile in self.tiles:
            tile.set_image(None)
        super()._clear(message)

    def _draw(self) -> None:
        if self.row < 0:
            self._clear("Click an image on the map.")
            return
        method = self._get_method()
        name = self.config["method"]
        x = self._images(np.array([self.row]))
        self.resample_button.setVisible(name == "inpainting")
        label = self._class_name(int(self._get_dataset().test.labels[self.row]))
        if name == "inpainting":
            out = method.debug(x, seed=self.seed)
        else:
            out = method.debug(x)
        self.output = out
        if name == "rotation":
            self.title.setText(f"rotation · image #{self.row} ({label}) in its four turns")
            tiles = self._set_tiles(4)
            for k, tile in enumerate(tiles):
                true, pred, prob = int(out["target"][k]), int(out["prediction"][k]), out["probabilities"][k]
                ok = "#2ca02c" if true == pred else "#d62728"
                tile.set_image(out["input"][k], f"input: turned {true}°",
                               f"target {true}°<br><b style='color:{ok}'>predicted {pred}°</b><br>"
                               f"p = {prob.max():.2f}")
            right = int((out["target"] == out["prediction"]).sum())
            self.status.setText(f"{right} of 4 rotations recognised; the head's probabilities for the upright image: "
                                + ", ".join(f"{d}°: {100 * p:.0f}%" for d, p in zip((0, 90, 180, 270),
                                                                                     out["probabilities"][0])))
            return
        titles = {"colorization": ("input: lightness only", "prediction: colours", "target: true colours"),
                  "inpainting": ("input: patch removed", "prediction: inpainted", "target: original")}[name]
        self.title.setText(f"{name} · image #{self.row} ({label})")
        tiles = self._set_tiles(3)
        box = out["mask"][0] if name == "inpainting" else None
        for tile, key, caption in zip(tiles, ("input", "prediction", "target"), titles):
            tile.set_image(out[key][0], caption, box=box if key == "prediction" else None)
        if name == "inpainting":
            mask = out["mask"][0]
            err = np.abs(out["prediction"][0].astype(float) - out["target"][0].astype(float))
            err = err if err.ndim == 2 else err.mean(-1)
            self.status.setText(f"patch of {method.patch}x{method.patch} px; mean absolute error inside it: "
                                f"{err[mask].mean():.1f} of 255 (the encoder saw only the rest)")
        else:
            err = np.abs(out["prediction"][0].astype(float) - out["target"][0].astype(float)).mean()
            self.status.setText(f"mean absolute colour error: {err:.1f} of 255 (same lightness: only a, b differ)")


# --------------------------------------------------------------------------------------------------

class AugmentationPreview(Inspector):
    """A grid of SimCLR views of a few images: one row per image (the original first), redrawn when a
    setting changes. The draws are seeded, so moving one slider changes one thing."""

    help_text = (
        "Two-view methods (SimCLR, BYOL, VICReg, SwAV, ...) learn what stays the same when an image is "
        "distorted, so the distortions decide what the representation ignores. Each row is one image: the "
        "original, then random views drawn with the current settings: a random crop of at least 'crop min' "
        "of the area resized back, a horizontal flip, colour jitter of strength s with probability p, a "
        "drop to grey, a Gaussian blur. Too weak, and the task is trivial (the views are almost the same "
        "image); too strong, and the two views no longer show the same thing. Chen et al. 2020 found crop "
        "plus colour distortion the pair that matters most. Colour settings do nothing on grey images.")

    STEPS = 1000
    MIN_CELL = 28  # pixels of the smallest preview image
    uses_snapshot = False  # images and settings only: a new snapshot changes nothing here

    def __init__(self, parent: QWidget | None = None, images: int = 4, views: int = 6):
        super().__init__(parent)
        from engine.augment import AUGMENT_PARAMS

        self.setObjectName("augmentation_preview")
        self.n_images, self.n_views = images, views
        self.seed = 0
        self.dataset_rows: np.ndarray | None = None
        self.views = np.zeros(0)
        self.params = {p.name: p for p in AUGMENT_PARAMS}
        # a slider for every numeric setting the engine declares (a new one appears by itself)
        self.slider_names = [p.name for p in AUGMENT_PARAMS
                             if p.type is not bool and p.low is not None and p.high is not None]
        self.sliders: dict[str, QSlider] = {}
        self.value_labels: dict[str, QLabel] = {}
        form = QGridLayout()
        for i, name in enumerate(self.slider_names):
            p = self.params[name]
            slider = QSlider(Qt.Orientation.Horizontal, objectName=f"{name}_slider")
            slider.setRange(0, self.STEPS)
            slider.setToolTip(wrapped_tooltip(p.help))
            slider.setValue(self._to_slider(name, p.default))
            slider.valueChanged.connect(self._on_slider_value_changed)
            slider.setMinimumWidth(40)  # two columns of sliders fit the window's left column
            value = QLabel(objectName=f"{name}_value")
            value.setMinimumWidth(36)
            self.sliders[name], self.value_labels[name] = slider, value
            form.addWidget(QLabel(name.replace("_", " ")), i // 2, 3 * (i % 2))
            form.addWidget(slider, i // 2, 3 * (i % 2) + 1)
            form.addWidget(value, i // 2, 3 * (i % 2) + 2)
        self.flip_box = QCheckBox("flip", objectName="flip_check")
        self.flip_box.setToolTip(wrapped_tooltip(self.params["flip"].help))
        self.flip_box.toggled.connect(lambda _: self.refresh())
        self.redraw_button = QPushButton("new draw", objectName="augmentation_redraw")
        self.redraw_button.clicked.connect(self._on_redraw_clicked)
        head = QHBoxLayout()
        head.addWidget(self.flip_box)
        head.addWidget(self.redraw_button)
        head.addStretch(1)
        head.addWidget(_help_button(self))
        self.grid_host = QWidget(objectName="augmentation_grid")
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(3)
        self.cells: list[list[QLabel]] = []
        self.cell_px = 64  # follows the width: the grid fits a narrow dock without a horizontal scroll
        self._cell_images: dict[tuple[int, int], np.ndarray] = {}
        self._form: dict[str, Any] = {}
        for r in range(images):
            row = []
            for c in range(views + 1):
                cell = QLabel(objectName=f"augment_cell_{r}_{c}")
                # only the height is fixed: a fixed width would hold the preview wider than a narrow dock
                cell.setMinimumWidth(self.MIN_CELL + 4)
                cell.setFixedHeight(self.cell_px + 4)
                cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == 0:
                    cell.setStyleSheet("border: 2px solid palette(highlight);")
                self.grid.addWidget(cell, r, c)
                row.append(cell)
            self.cells.append(row)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(form)
        caption = QLabel("original (outlined), then views drawn at these settings:", wordWrap=True)
        layout.addWidget(caption)
        # no scroll area of its own: the dock's scrolls the whole preview, so the grid is never squeezed
        # to a sliver under the sliders in a short dock
        layout.addWidget(self.grid_host)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._update_value_labels()

    # settings ---------------------------------------------------------------------------------
    def _to_slider(self, name: str, value: float) -> int:
        p = self.params[name]
        return int(round((float(value) - p.low) / (p.high - p.low) * self.STEPS))

    def value(self, name: str) -> float:
        p = self.params[name]
        v = p.low + (p.high - p.low) * self.sliders[name].value() / self.STEPS
        if p.low_exclusive and v <= p.low:
            v = p.low + (p.high - p.low) / self.STEPS / 2  # the slider's left end: the smallest allowed
        return int(round(v)) if p.type is int else v

    def settings(self) -> dict[str, Any]:
        """The current values as AUGMENT_PARAMS keys."""
        defaults = {name: p.default for name, p in self.params.items()}
        return defaults | {name: self.value(name) for name in self.slider_names} | {"flip": self.flip_box.isChecked()}

    def set_settings(self, values: dict[str, Any]) -> None:
        """Move the sliders to ``values`` (AUGMENT_PARAMS keys; others ignored), redraw once."""
        from engine.augment import flips_make_sense

        for w in list(self.sliders.values()) + [self.flip_box]:
            w.blockSignals(True)
        for name in self.slider_names:
            if name in values:
                self.sliders[name].setValue(self._to_slider(name, values[name]))
        flip = values.get("flip", "auto")
        self.flip_box.setChecked(flips_make_sense(self.config.get("dataset", "")) if flip == "auto" else bool(flip))
        for w in list(self.sliders.values()) + [self.flip_box]:
            w.blockSignals(False)
        self._update_value_labels()
        self.refresh()

    def _update_value_labels(self) -> None:
        for name, label in self.value_labels.items():
            label.setText(f"{self.value(name):.0f}" if self.params[name].high > 20 else f"{self.value(name):.2f}")

    def _on_slider_value_changed(self, _value: int) -> None:
        self._update_value_labels()
        self.refresh()

    def _on_redraw_clicked(self) -> None:
        self.seed += 1
        self.refresh()

    # data ------------------------------------------------------------------------------------
    def applies(self) -> bool:
        return bool(self.config) or self.dataset is not None

    def set_dataset(self, dataset, rows: np.ndarray | None = None) -> None:
        """Preview on ``dataset``'s test images ``rows`` (default: a few of different classes)."""
        self.dataset = dataset
        self.dataset_rows = None if rows is None else np.asarray(rows)[: self.n_images]
        self.refresh()

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
        previous = self.run_dir
        Inspector.set_run(self, run_dir, dataset, snapshot)
        if self.run_dir != previous and self.config:
            defaults = {p.name: p.default for p in self.params.values()}
            self.set_settings(defaults | dict(self.config.get("method_params") or {}))

    def refresh(self) -> None:
        # before any run, a dataset given by set_dataset (the window: the one chosen in the training form)
        if not self.config and self.dataset is not None:
            self._dirty = not self.is_shown()
            if not self._dirty:
                self._draw()
            return
        super().refresh()

    def rows(self) -> np.ndarray:
        """The images shown: the clicked one first, then one per class."""
        data = self._get_dataset()
        if self.dataset_rows is not None:
            base = list(self.dataset_rows)
        else:
            labels = data.test.labels
            base = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels[labels >= 0])]
            base = base or list(range(len(labels)))
        if self.row >= 0:
            base = [self.row] + [r for r in base if r != self.row]
        return np.asarray(base[: self.n_images])

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        margins = self.layout().contentsMargins()
        width = self.width() - margins.left() - margins.right()
        size = int(np.clip(width / (self.n_views + 1) - 7, self.MIN_CELL, 72))
        if size != self.cell_px:
            self.cell_px = size
            for (r, c), image in self._cell_images.items():
                self.cells[r][c].setPixmap(to_pixmap(image, size))
            for row in self.cells:
                for cell in row:
                    cell.setFixedHeight(size + 4)

    def follow_form(self, fields: dict[str, Any]) -> None:
        """Mirror a parameter form: ``fields`` maps names to editors with ``value()`` (None: the default)
        and a ``changed`` signal, e.g. ``TrainingPanel.method_fields`` of a two-view method. Call it
        again whenever the form is rebuilt; names that are not augmentation settings are ignored."""
        self._form = {k: f for k, f in fields.items() if k in self.params}
        for f in self._form.values():
            f.changed.connect(self._on_form_changed)
        self._on_form_changed()

    def _on_form_changed(self) -> None:
        values = {}
        for name, f in self._form.items():
            try:
                v = f.value()
            except (ValueError, RuntimeError):  # a half-typed value, or a field already deleted
                continue
            values[name] = self.params[name].default if v is None else v
        if values:
            self.set_settings(values)

    def _clear(self, message: str) -> None:
        self._cell_images = {}
        self.views = np.zeros(0)
        for row in self.cells:
            for cell in row:
                cell.clear()
        super()._clear(message)

    def _draw(self) -> None:
        import torch

        from engine.augment import augment_from_params
        from engine.methods.pretext import to_uint8

        data = self._get_dataset()
        rows = self.rows()
        augment = augment_from_params(data.channels, data.image_size, self.settings(), data.name)
        x = torch.from_numpy(np.asarray(data.test.images[rows])).float() / 255
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            views = torch.stack([augment(x, g) for _ in range(self.n_views)], 1)  # (B, V, C, H, W)
        self.views = views.numpy()
        for r in range(self.n_images):
            for c in range(self.n_views + 1):
                cell = self.cells[r][c]
                if r >= len(rows):
                    self._cell_images.pop((r, c), None)
                    cell.clear()
                    continue
                image = data.thumbnail("test", int(rows[r])) if c == 0 else to_uint8(views[r, c - 1:c])[0]
                self._cell_images[(r, c)] = image
                cell.setPixmap(to_pixmap(image, self.cell_px))
        grey = ("" if data.channels == 3 else
                " Grey images: jitter changes brightness and contrast; saturation, hue and grey need colour.")
        self.status.setText(f"{len(rows)} test images of {data.name} × {self.n_views} views, seed {self.seed}.{grey}")


class _FitScrollArea(QScrollArea):
    """Gives its widget the viewport's size, never less than the widget's minimum: scroll bars appear
    only below the minimum. (``widgetResizable`` would size a widget holding word-wrapped labels by
    its preferred height, taller than the dock, and scroll a plot that should shrink.)"""

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def eventFilter(self, watched, event) -> bool:
        # new content (a longer text, another tile) changes the least height: fit again
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self._fit()
        return super().eventFilter(watched, event)

    def _fit(self) -> None:
        widget, view = self.widget(), self.viewport().size()
        if widget is not None:
            width = max(view.width(), widget.minimumSizeHint().width())
            layout = widget.layout()
            # the least height at this width: wrapped labels need more lines when narrow
            least = (layout.totalMinimumHeightForWidth(width) if layout is not None and layout.hasHeightForWidth()
                     else widget.minimumSizeHint().height())
            widget.resize(width, max(view.height(), least))


def in_scroll_area(widget: QWidget) -> QScrollArea:
    """The widget in a frameless scroll area, for a dock: a dock squeezed below the inspector's
    minimum size then scrolls instead of drawing its rows over each other."""
    area = _FitScrollArea(objectName=f"{widget.objectName()}_scroll")
    area.setWidget(widget)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


# which inspector shows the clicked point for a run of each method (the window raises its dock)
POINT_INSPECTOR = {"triplet": "triplet_inspector", "pair": "triplet_inspector", "center": "triplet_inspector",
                   "cosine": "triplet_inspector", "arc": "triplet_inspector", "simclr": "contrastive_inspector",
                   "rotation": "pretext_debugger", "colorization": "pretext_debugger",
                   "inpainting": "pretext_debugger"}

INSPECTORS = (TripletInspector, AngleView, PairHistogram, ContrastiveInspector, PretextDebugger, AugmentationPreview)
