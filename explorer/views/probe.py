"""The probe panel (``probe_plot``): linear-probe and kNN accuracy at each evaluation, beside the
figures every result is read against (random initialisation, raw pixels)."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QWidget

from explorer.views.palette import BACKGROUND, FOREGROUND, color
from explorer.views.plots import LegendRow, new_plot
from explorer.views.records import RecordPanel
from explorer.views.series import Series, number


# evaluation key, legend name, palette index
PROBE_CURVES = (("linear_probe_acc", "linear probe", 0), ("knn_acc", "kNN", 1),
                ("precision_at_1", "precision@1", 2), ("map_at_r", "MAP@R", 4))
# evaluation key, legend name, palette index (of the curve it is read against), dash style
PROBE_REFERENCES = (
    ("baseline_linear_probe_acc", "random init, linear probe", 0, Qt.PenStyle.DashLine),
    ("baseline_knn_acc", "random init, kNN", 1, Qt.PenStyle.DashLine),
    ("pixels_linear_probe_acc", "raw pixels, linear probe", 8, Qt.PenStyle.DotLine),
)


class ProbePlot(RecordPanel):
    """Linear-probe and kNN accuracy at each evaluation, with the random-initialisation and raw-pixel
    figures as horizontal reference lines; precision@1 and MAP@R when the engine reports them. Points
    of the final evaluation (the full protocol: whole train split against whole test split) are
    marked with a star."""

    name = "probe_plot"
    dock_title = "Probe"
    long_title = "Probe and kNN accuracy"
    title = "Probe accuracy"
    help_text = (
        "How good is the representation for a task it was not trained on? At each evaluation the "
        "encoder is frozen and a linear classifier (the linear probe) is fitted on the embeddings of "
        "labelled training images and scored on test images; the kNN accuracy asks instead whether an "
        "image's nearest neighbours in embedding space share its class. Both are read against two "
        "references (dashed and dotted lines): the same encoder with random weights, untrained, and a "
        "probe on the raw pixels. A learned representation is worth something only where it rises "
        "above them; a random convnet is often a surprisingly strong baseline on small images. "
        "precision@1 and MAP@R are retrieval scores (Musgrave et al. 2020): is the nearest neighbour of "
        "the same class, and how many of the R same-class images come first. Stars mark the final "
        "evaluation, which uses the full train and test splits, so it can differ from the quick "
        "estimates made during training.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        # rising accuracies fill the top right corner: the legend goes below the plot
        self.widget, self.plot = new_plot(self, "accuracy", legend=False)
        self.body.addWidget(self.widget, 1)
        self.legend = LegendRow()
        self.body.addWidget(self.legend)
        self._series: dict[str, Series] = {}
        self._items: dict[str, pg.PlotDataItem] = {}
        self._references: dict[str, float] = {}
        self._reference_items: dict[str, pg.PlotDataItem] = {}
        self._final = Series()
        self._final_item: pg.ScatterPlotItem | None = None
        self._last_step = 0.0
        self._drawn_to = 1.0  # the x the reference lines reach

    def curve_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self._series[key]
        return s.x.copy(), s.y.copy()

    def curves(self) -> list[str]:
        return list(self._series)

    def references(self) -> dict[str, float]:
        """The reference figures now drawn (the latest reported value of each)."""
        return dict(self._references)

    def _reset(self) -> None:
        for item in list(self._items.values()) + list(self._reference_items.values()):
            self.plot.removeItem(item)
        if self._final_item is not None:
            self.plot.removeItem(self._final_item)
        self._series.clear()
        self._items.clear()
        self._references.clear()
        self._reference_items.clear()
        self._final = Series()
        self._final_item = None
        self._last_step = 0.0
        self._drawn_to = 1.0
        self._show_legend()

    def _ingest(self, records: list[dict]) -> None:
        # only the items whose data changed are set again: each setData costs ~0.2-1 ms of the
        # GUI thread (a symbol curve more), and most batches hold steps only
        curves: set[str] = set()
        final = evaluated = False
        for record in records:
            if not isinstance(record, dict) or record.get("kind") not in ("evaluation", "step"):
                continue
            step = number(record.get("step"))
            if step is None:
                continue
            self._last_step = max(self._last_step, step)
            if record["kind"] != "evaluation" or not isinstance(record.get("metrics"), dict):
                continue
            metrics, evaluated = record["metrics"], True
            for key, _name, _index in PROBE_CURVES:
                v = number(metrics.get(key))
                if v is not None:
                    self._series.setdefault(key, Series()).append(step, v)
                    curves.add(key)
            for key, *_ in PROBE_REFERENCES:
                v = number(metrics.get(key))
                if v is not None:
                    self._references[key] = v
            if record.get("final"):
                for key in ("linear_probe_acc", "knn_acc"):
                    v = number(metrics.get(key))
                    if v is not None:
                        self._final.append(step, v)
                        final = True
        self._draw(curves, final, evaluated)

    def _draw(self, curves: Iterable[str] | None = None, final: bool = True, evaluated: bool = True) -> None:
        """Set the data of the given curves (None: all), of the final stars when ``final``, and of the
        reference lines: after an evaluation up to the latest step, else only when they fall 10 %
        short of it (not at every step: each redraw repaints the plot)."""
        stretch = self._last_step > (self._drawn_to if evaluated else 1.1 * self._drawn_to)
        if not (evaluated or final or curves or (stretch and self._reference_items)):
            return
        for key, name, index in PROBE_CURVES:
            series = self._series.get(key)
            if series is None or len(series) == 0 or (curves is not None and key not in curves):
                continue
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = pg.PlotDataItem(name=name, symbol="o", symbolSize=5)
                self.plot.addItem(item)
                self._pen_curve(key)
            item.setData(series.x, series.y)
        if stretch:
            self._drawn_to = max(self._last_step, 1.0)
        for key, name, index, dash in PROBE_REFERENCES:
            if key not in self._references:
                continue
            v = self._references[key]
            item = self._reference_items.get(key)
            if item is None:
                item = self._reference_items[key] = pg.PlotDataItem(name=name)
                item.setZValue(-1)
                self.plot.addItem(item)
                self._pen_reference(key)
            elif not stretch and item.yData is not None and item.yData[0] == v and \
                    item.xData[-1] == self._drawn_to:
                continue
            item.setData([0.0, self._drawn_to], [v, v])
        if final and len(self._final):
            if self._final_item is None:
                self._final_item = pg.ScatterPlotItem(symbol="star", size=13, name="final (full protocol)")
                self.plot.addItem(self._final_item)
                self._pen_final()
            self._final_item.setData(self._final.x, self._final.y)
        self._show_legend()

    def _show_legend(self) -> None:
        dark = self.dark
        entries = [(name, color(i, dark), Qt.PenStyle.SolidLine) for k, name, i in PROBE_CURVES if k in self._items]
        entries += [(name, color(i, dark), dash) for k, name, i, dash in PROBE_REFERENCES
                    if k in self._reference_items]
        if self._final_item is not None:
            entries.append(("final (full protocol)", QColor(FOREGROUND[dark]), "\u2605"))
        self.legend.set_entries(entries)

    def _pen_curve(self, key: str) -> None:
        index = next(i for k, _n, i in PROBE_CURVES if k == key)
        c = color(index, self.dark)
        self._items[key].setPen(pg.mkPen(c, width=2))
        self._items[key].setSymbolBrush(pg.mkBrush(c))
        self._items[key].setSymbolPen(pg.mkPen(c))

    def _pen_reference(self, key: str) -> None:
        index, dash = next((i, d) for k, _n, i, d in PROBE_REFERENCES if k == key)
        self._reference_items[key].setPen(pg.mkPen(color(index, self.dark), width=1.5, style=dash))

    def _pen_final(self) -> None:
        self._final_item.setBrush(pg.mkBrush(FOREGROUND[self.dark]))
        self._final_item.setPen(pg.mkPen(BACKGROUND[self.dark]))

    def _restyle(self) -> None:
        for key in self._items:
            self._pen_curve(key)
        for key in self._reference_items:
            self._pen_reference(key)
        if self._final_item is not None:
            self._pen_final()
        self._show_legend()
