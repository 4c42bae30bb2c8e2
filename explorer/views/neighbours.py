"""The neighbours browser and the selection grid.

Clicking a point on the map shows its image large and its k nearest neighbours IN EMBEDDING SPACE
(not on the 2D map, which distorts them): ``engine.neighbours`` on the snapshot's embeddings, exact.
Clicking a neighbour walks to it. The selection grid shows the images of a rectangle or lasso
selection.
"""
from __future__ import annotations

import html
from collections import Counter

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QIcon, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QScrollArea, QSpinBox, QToolButton, QWidget

from explorer.session import Session
from explorer.views import wrapped_tooltip
from explorer.views.flow import FlowLayout
from explorer.views.kit import FRAMES, Panel, ThumbnailPixmaps, distance_text, thumbnail_pixmap

THUMB = 56


def _label_name(names: list[str], label: int) -> str:
    if label < 0:
        return "unlabelled"
    return names[label] if label < len(names) else str(label)


class ThumbnailGrid(QWidget):
    """Image buttons of one width, as many to a row as the width holds; reused between updates
    (creating widgets is the slow part). A label longer than a button is elided in the middle, so a
    trailing mark stays; the tooltip should name what it shortens."""

    def __init__(self, thumb: int = THUMB, parent: QWidget | None = None):
        super().__init__(parent)
        self.thumb = thumb
        self.button_width = thumb + 24
        self.grid = FlowLayout(self)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(4)
        self.buttons: list[QToolButton] = []
        self.on_click = None

    def show_items(self, items: list[tuple[int, QPixmap | np.ndarray | None, str, str]]) -> None:
        """items: (row, pixmap or image or None, text, tooltip)."""
        while len(self.buttons) < len(items):
            b = QToolButton(self)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setIconSize(QSize(self.thumb, self.thumb))
            b.setAutoRaise(True)
            b.setFixedWidth(self.button_width)
            b.clicked.connect(lambda _=False, b=b: self.on_click and self.on_click(b.property("row")))
            self.grid.addWidget(b)
            self.buttons.append(b)
        metrics = QFontMetrics(self.font())
        for b, (row, image, text, tip) in zip(self.buttons, items):
            b.setProperty("row", int(row))
            if isinstance(image, np.ndarray):
                image = thumbnail_pixmap(image, self.thumb)
            b.setIcon(QIcon(image) if image is not None else QIcon())
            b.setText("\n".join(metrics.elidedText(line, Qt.TextElideMode.ElideMiddle, self.button_width - 8)
                                for line in text.split("\n")))
            b.setToolTip(tip)
            b.show()
        for b in self.buttons[len(items):]:
            b.hide()


class NeighboursPanel(Panel):
    name = "neighbours_panel"
    dock_name = "neighbours"
    dock_title = "Neighbours"
    help_text = ("The clicked image and its k nearest neighbours in the embedding space itself, nearest "
                 "first, with their class and distance (cosine distance 1 - cos, or euclidean). This is "
                 "what a retrieval system built on this representation would return, and what the kNN "
                 "accuracy counts: a neighbour of another class is a retrieval error. The 2D map only "
                 "approximates these neighbourhoods. Click a neighbour to walk to it.")

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.neighbour_rows = np.zeros(0, dtype=np.int64)
        self.neighbour_distances = np.zeros(0, dtype=np.float32)
        self.pixmaps = ThumbnailPixmaps()

        self.image = QLabel(objectName="neighbours_image")
        self.image.setFixedSize(128, 128)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.info = QLabel("Click a point on the map.", objectName="neighbours_info")
        self.info.setWordWrap(True)
        self.k_spin = QSpinBox(objectName="neighbours_k")
        self.k_spin.setRange(1, 100)
        self.k_spin.setValue(12)
        self.k_spin.setToolTip("How many neighbours to show")
        self.metric_combo = QComboBox(objectName="neighbours_metric")
        self.metric_combo.addItems(["cosine", "euclidean"])
        self.metric_combo.setToolTip(wrapped_tooltip("cosine: 1 - cos of the angle (what normalised losses "
                                                     "train); euclidean: straight-line distance"))
        controls = QHBoxLayout()
        controls.addWidget(QLabel("k"))
        controls.addWidget(self.k_spin)
        controls.addWidget(QLabel("metric"))
        controls.addWidget(self.metric_combo)
        controls.addStretch(1)
        # k and metric on their own row under the image: beside it they set a 380 px minimum width
        head = QHBoxLayout()
        head.addWidget(self.image)
        head.addWidget(self.info, 1)

        self.grid = ThumbnailGrid()
        self.grid.on_click = self.session.select_point
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid)
        layout = self.body
        layout.addLayout(head)
        layout.addLayout(controls)
        layout.addWidget(QLabel("Nearest in embedding space:"))
        layout.addWidget(scroll, 1)

        session.point_selected.connect(self.update_neighbours)
        session.view_changed.connect(self.update_neighbours)
        session.run_selected.connect(lambda _: self.update_neighbours())
        session.dataset_ready.connect(lambda _: self.update_neighbours())
        session.snapshot_added.connect(self._on_session_snapshot_added)
        session.neighbour_index_ready.connect(self._on_session_neighbour_index_ready)
        self.k_spin.valueChanged.connect(self.update_neighbours)
        self.metric_combo.currentIndexChanged.connect(self.update_neighbours)

    def _on_session_snapshot_added(self, run_id: str, index: int) -> None:
        s = self.session
        if run_id != s.current_id:
            return
        if s.frame < 0 and s.selected_row >= 0:
            FRAMES.add(self, self.update_neighbours)  # in turn with the panels the snapshot changes
        else:  # a large snapshot's index is built ahead, in a worker: the first click need not wait
            s.neighbour_index(s.current, s.snapshot(), self.metric_combo.currentText(), build_small=False)

    def _on_session_neighbour_index_ready(self, run_id: str) -> None:
        if run_id == self.session.current_id and self.session.selected_row >= 0:
            self.update_neighbours()

    def update_neighbours(self, *_) -> None:
        s = self.session
        run, row = s.current, s.selected_row
        snap = s.snapshot(run) if run is not None else None
        pos = snap.row_of(row) if snap is not None and row >= 0 else None
        if pos is None:
            self.neighbour_rows = np.zeros(0, dtype=np.int64)
            self.neighbour_distances = np.zeros(0, dtype=np.float32)
            self.image.clear()
            self.info.setText("Click a point on the map." if row < 0 or run is None
                              else f"{run.point_name(row)} is not on this map.")
            self.grid.show_items([])
            s.set_neighbour_rows(self.neighbour_rows)
            if snap is not None:  # a large snapshot's index, built ahead in a worker
                s.neighbour_index(run, snap, self.metric_combo.currentText(), build_small=False)
            return
        emb = snap.embeddings
        metric = self.metric_combo.currentText()
        k = min(self.k_spin.value(), len(emb) - 1)
        index = s.neighbour_index(run, snap, metric)
        if index is None:  # a large snapshot's, being built in a worker (or failed): drawn when it is there
            failure = s.index_failures.get((run.id, id(snap), metric))
            self.neighbour_rows = np.zeros(0, dtype=np.int64)
            self.neighbour_distances = np.zeros(0, dtype=np.float32)
            self.info.setText(f"No neighbours: {html.escape(failure)}" if failure else
                              f"Preparing the neighbours of {len(emb):,} points…")
            self.grid.show_items([])
            s.set_neighbour_rows(self.neighbour_rows)
            return
        dist, idx = index.query(int(pos), k)
        indices, labels = snap.indices, snap.labels
        self.neighbour_rows = indices[idx]
        self.neighbour_distances = np.asarray(dist, dtype=np.float32)
        names = run.class_names
        ds = run.dataset
        label = int(labels[pos])
        same = int((labels[idx] == label).sum()) if label >= 0 else 0
        self.info.setText(f"<b>{_label_name(names, label)}</b> · {html.escape(run.point_name(row))}"
                          + ("" if run.is_collection else f"<br>step {snap.step}")
                          + (f"<br>{same} of {k} neighbours share its class" if label >= 0 else ""))
        if ds is not None:
            self.image.setPixmap(self.pixmaps.get(ds, row, 124))
        else:
            self.image.setText("(no images: the embeddings came without them)" if run.collection is not None
                               else "(loading images…)")
        items = []
        for r, i, d in zip(self.neighbour_rows, idx, self.neighbour_distances):
            name = _label_name(names, int(labels[i]))
            image = self.pixmaps.get(ds, int(r), self.grid.thumb) if ds is not None else None
            mark = "" if labels[i] == label else " ✗"
            items.append((int(r), image, f"{name}{mark}\n{distance_text(d)}",
                          f"{run.point_name(int(r))}: {name}, {metric} distance {d:.6g}"))
        self.grid.show_items(items)
        s.set_neighbour_rows(self.neighbour_rows)


class SelectionGrid(Panel):
    """The images of the points selected with the rectangle or the lasso."""

    name = "selection_grid"
    dock_name = "selection"
    dock_title = "Selection"
    help_text = ("The images inside the rectangle or lasso drawn on the map, with a count per class: "
                 "what a region of the map actually contains. Click an image to select its point.")
    MAX_SHOWN = 300

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.summary = QLabel("Choose Rectangle or Lasso above the map, then drag.")
        self.summary.setWordWrap(True)
        self.grid = ThumbnailGrid(thumb=48)
        self.grid.on_click = session.select_point
        self.pixmaps = ThumbnailPixmaps()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid)
        layout = self.body
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        session.rows_selected.connect(self.show_rows)

    def show_rows(self, rows) -> None:
        run = self.session.current
        rows = np.asarray(rows, dtype=np.int64)
        if run is None or not len(rows):
            self.summary.setText("Nothing selected.")
            self.grid.show_items([])
            return
        snap = self.session.snapshot(run)
        names, ds = run.class_names, run.dataset
        labels = []
        for r in rows:
            p = snap.row_of(int(r)) if snap is not None else None
            labels.append(int(snap.labels[p]) if p is not None else -1)
        label_names = [_label_name(names, lab) for lab in labels]
        counts = Counter(label_names)
        shown = min(len(rows), self.MAX_SHOWN)
        self.summary.setText(f"{len(rows)} points selected"
                             + (f" (first {shown} shown)" if shown < len(rows) else "") + ": "
                             + ", ".join(f"{n} {c}" for n, c in counts.most_common()))
        self.grid.show_items([(int(r), self.pixmaps.get(ds, int(r), self.grid.thumb) if ds is not None else None,
                               name, f"{run.point_name(int(r))}: {name}")
                              for r, name in zip(rows[:shown], label_names[:shown])])
