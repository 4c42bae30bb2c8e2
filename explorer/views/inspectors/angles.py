"""The angle view: angles between class centres, and each point's angle to its own centre."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from explorer.state import MapSnapshot
from explorer.views.inspectors.base import Inspector
from explorer.views.inspectors.widgets import MatrixView
from explorer.views.palette import class_colour
from explorer.views.plots import LegendRow


class AngleView(Inspector):
    """Angles between class centres (a matrix) and each point's angle to its class centre (one
    histogram per class). Made for the centre-based losses, whose head holds the centres; any other
    labelled run shows the directions of its class means instead."""

    name = "angle_view"
    needs_labels = True
    dock_title = "Angles"
    long_title = "Class angles"
    centre_methods = ("center", "cosine", "arc")  # trained class centres: the head's, not the means
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

        self.matrix = MatrixView("centre_angle_matrix")
        self.plot = pg.PlotWidget(objectName="point_angle_plot")
        self.plot.setBackground(None)
        self.plot.setLabel("bottom", "° to own centre")
        self.plot.setLabel("left", "points")
        self.plot.setMinimumHeight(110)
        # one entry a class: a row under the plot (inside it, ten classes covered the histograms)
        self.legend = LegendRow()
        self.legend.setObjectName("angle_legend")
        self.curves: list = []
        self.point_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("k", width=1.5, style=Qt.PenStyle.DashLine))
        self.point_line.hide()
        self.plot.addItem(self.point_line)
        self.source = QLabel(objectName="angle_source")
        self.source.setWordWrap(True)
        self.point_label = QLabel(objectName="angle_point")
        self.point_label.setWordWrap(True)
        self.controls.addWidget(QLabel("angles between class centres (degrees)"))
        # the matrix and the histograms side by side, the sentences under both (beside the plot, they
        # left it 30 to 50 px of height in a bottom dock)
        layout = QGridLayout()
        self.body.addLayout(layout, 1)
        layout.addWidget(self.matrix, 0, 0, 2, 1)
        layout.addWidget(self.plot, 0, 1)
        layout.addWidget(self.legend, 1, 1)
        layout.addWidget(self.point_label, 2, 0, 1, 2)
        layout.addWidget(self.source, 3, 0, 1, 2)
        layout.addWidget(self.status, 4, 0, 1, 2)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 2)
        layout.setRowStretch(0, 1)
        self.centre_angles = np.zeros((0, 0))
        self.point_angles = np.zeros(0)
        self._drawn_key: tuple | None = None  # what the matrix and histograms show

    def _clear(self, message: str) -> None:
        self._drawn_key = None
        self.matrix.set_matrix(np.zeros((0, 0)), [], (0, 1))
        for c in self.curves:
            self.plot.removeItem(c)
        self.curves = []
        self.legend.set_entries([])
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
        if method in self.centre_methods and (self.run_dir / "checkpoint.pt").exists():
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
        why = ("no checkpoint yet" if method in self.centre_methods else f"{method} has no class centres")
        return means, f"directions of the class means of the embeddings ({why})"

    def _draw_key(self, snap: MapSnapshot) -> tuple:
        ckpt = self.run_dir / "checkpoint.pt"
        return (str(self.run_dir), id(snap), snap.step,
                ckpt.stat().st_mtime_ns if ckpt.exists() else None)

    def _draw(self) -> None:
        import pyqtgraph as pg

        snap = self._get_snapshot()
        labels = snap.labels.astype(np.int64)
        if self._drawn_key == self._draw_key(snap):  # a click: only the point changes
            self._draw_point(snap, labels, self._unit, self._centres)
            return
        self._drawn_key = None
        keep = labels >= 0
        if keep.sum() == 0:
            self._clear("The run's points are unlabelled: no classes, no class centres.")
            return
        emb = snap.embeddings
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
        self.curves = []
        entries = []
        finite = self.point_angles[np.isfinite(self.point_angles)]
        edges = np.linspace(0, max(10.0, float(np.ceil(finite.max() / 5) * 5)) if finite.size else 90, 37)
        for c in range(len(centres)):
            values = self.point_angles[labels == c]
            if not len(values):
                continue
            counts, _ = np.histogram(values, edges)
            curve = pg.PlotDataItem(edges, counts, stepMode="center",
                                    pen=pg.mkPen(class_colour(c), width=1.5),
                                    name=names[c] if c < len(names) else str(c))
            self.plot.addItem(curve)
            self.curves.append(curve)
            entries.append((names[c] if c < len(names) else str(c), class_colour(c), Qt.PenStyle.SolidLine))
        self.legend.set_entries(entries)
        mean_gap = float(off.min()) if off.size else float("nan")
        self.source.setText(f"Centres: {source}. Smallest angle between two centres: {mean_gap:.1f}°; "
                            f"median angle of a point to its centre: {np.nanmedian(self.point_angles):.1f}°.")
        self.status.setText(f"{int(keep.sum())} points of the map, step {snap.step}")
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

