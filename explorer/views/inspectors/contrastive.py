"""The contrastive inspector: a clicked image's two SimCLR views and its row of InfoNCE probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QPushButton, QWidget

from explorer.views.flow import FlowLayout
from explorer.views.inspectors.base import Inspector
from explorer.views.inspectors.widgets import HeatStrip, ImageTile


class ContrastiveInspector(Inspector):
    """For a clicked image: its two augmented views and the InfoNCE row of its first view against a
    batch of 2N views; a temperature spin box re-weighs the same similarities."""

    name = "contrastive_inspector"
    dock_title = "SimCLR views"
    methods = point_methods = ("simclr",)
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
        tau = QLabel("τ")  # "temperature τ" made the header wider than the window's right column
        tau.setToolTip(self.temperature_spin.toolTip())
        self.controls.addWidget(tau)
        self.controls.addWidget(self.temperature_spin)
        self.controls.addWidget(self.resample_button)
        tiles = FlowLayout()  # the plot moves under the views when the dock is narrow
        for tile in self.tiles.values():
            tiles.addWidget(tile)
        tiles.addWidget(self._temperature_plot())
        self.strip = HeatStrip("logit_strip")
        self.strip_label = QLabel(objectName="contrastive_summary")
        self.strip_label.setWordWrap(True)
        self.strip_label.setTextFormat(Qt.TextFormat.RichText)
        layout = self.body
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

