"""The pair histogram: distances of the positive and the negative pairs of the map's points."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QWidget

from explorer.views.inspectors.base import Inspector
from explorer.views.kit import distance_text
from explorer.views.palette import RIGHT, WRONG


def _fill(colour: str, alpha: int = 70) -> QColor:
    c = QColor(colour)
    c.setAlpha(alpha)
    return c


class PairHistogram(Inspector):
    """Distances of all positive and all negative pairs of the map's points, with the margin. Made for
    the pair loss (a pair run's own margin and distance); any other labelled run is shown at the pair
    loss's defaults."""

    name = "pair_histogram"
    needs_labels = True
    dock_title = "Pairs"
    long_title = "Pair distances"
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

        # 245 000 pairs, ~10 ms of a core (in a worker thread: ``_measured``), with a smooth histogram
        self.max_points = 700
        self.plot = pg.PlotWidget(objectName="pair_distance_plot")
        self.plot.setBackground(None)
        self.plot.setLabel("bottom", "distance d between the two embeddings of a pair")
        self.plot.setLabel("left", "share of pairs")
        self.plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        self.positive_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=_fill(RIGHT),
                                              pen=pg.mkPen(RIGHT, width=1.5), name="positive pairs")
        self.negative_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=_fill(WRONG),
                                              pen=pg.mkPen(WRONG, width=1.5), name="negative pairs")
        self.plot.addItem(self.positive_curve)
        self.plot.addItem(self.negative_curve)
        self.margin_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("k", width=2, style=Qt.PenStyle.DashLine),
                                           label="m = {value:.2f}",
                                           labelOpts={"position": 0.9, "color": "k", "fill": (255, 255, 255, 180)})
        self.plot.addItem(self.margin_line)
        self.summary = QLabel(objectName="pair_summary")
        self.summary.setWordWrap(True)
        self.controls.addWidget(QLabel("distances of positive and negative pairs"))
        layout = self.body
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.status)
        self.stats: dict[str, Any] = {}

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
        snap = self._get_snapshot()
        labels = snap.labels.astype(np.int64)
        keep = labels >= 0
        if len(np.unique(labels[keep])) < 2:
            self._clear("Pairs need labelled points of two classes at least.")
            return
        loss = self.loss()
        rows = np.flatnonzero(keep)
        if len(rows) > self.max_points:  # a fixed subset: the pairs grow with the square of the points
            rows = np.sort(np.random.default_rng(0).choice(rows, self.max_points, replace=False))
        key = (str(self.run_dir), snap.step, len(keep), len(rows), loss.margin, loss.distance_name,
               loss.squared, loss.normalize)
        stats = self._measured(key, pair_statistics, loss, snap.embeddings[rows], labels[rows])
        self._show(stats, loss, snap, rows, keep)

    def _show(self, stats: dict, loss, snap, rows: np.ndarray, keep: np.ndarray) -> None:
        self.stats = dict(stats)
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
            f"Mean distance: positives {distance_text(self.stats['pos_dist'])}, negatives "
            f"{distance_text(self.stats['neg_dist'])}. "
            f"Negative pairs inside the margin (still pushed): {100 * self.stats['neg_active']:.1f}%. {settings}.")
        subset = f"a fixed random {len(rows)} of the {int(keep.sum())}" if len(rows) < keep.sum() else f"the {len(rows)}"
        self.status.setText(f"all pairs of {subset} labelled points of the map, step {snap.step}")


def pair_statistics(loss, embeddings: np.ndarray, labels: np.ndarray) -> dict:
    """The pair loss's own statistics (histograms of positive and negative distances, shares inside the
    margin) over every pair of the points."""
    import torch

    with torch.no_grad():
        loss(torch.from_numpy(np.ascontiguousarray(embeddings)), torch.from_numpy(labels))
    return dict(loss.stats)
