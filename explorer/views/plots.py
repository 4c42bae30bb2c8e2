"""pyqtgraph helpers shared by the panels that plot: a themed plot, a legend that draws nothing while
empty, plain tick numbers, a legend row outside the plot. GUI thread only."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QWidget

from explorer.views.kit import Panel
from explorer.views.steady import SteadyViewBox


def new_plot(panel: Panel, left: str, bottom: str = "step", title: str = "",
             legend: bool = True) -> tuple[pg.PlotWidget, pg.PlotItem]:
    """A PlotWidget themed by ``panel``, with axis labels and (optionally) a legend; its automatic
    range holds still while the data stay inside it (``steady.SteadyViewBox``)."""
    widget = pg.PlotWidget(viewBox=SteadyViewBox())
    widget.setMinimumHeight(80)  # a 768 px high screen leaves the bottom docks ~200 px
    plot = widget.getPlotItem()
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    plot.setMenuEnabled(True)
    no_si_prefix(plot)
    if legend:  # plot.addLegend, with a legend that draws nothing until it has an entry
        plot.legend = QuietLegend(offset=(-6, 6), labelTextSize="8pt", verSpacing=-6)
        plot.legend.setParentItem(plot.vb)
    panel._theme_view(widget)
    panel._theme_plot(plot, title)
    if not title:  # room above the data for the top tick's label (at the widget's edge it was cut in half)
        left, _top, right, bottom = plot.getContentsMargins()
        plot.setContentsMargins(left, max(_top, 8), right, bottom)
    return widget, plot


class QuietLegend(pg.LegendItem):
    """pyqtgraph's legend, drawing nothing while empty (an idle plot showed a stray small box), in
    the corner of its plot that covers the fewest of the curves' points (top right by default; in a
    fixed corner it hid the end of the effective-rank curve in a laptop's bottom dock). The corner is
    chosen again when the plot's range or size changes, which a redraw with new data does."""

    CORNERS = ((1, 0), (0, 0), (1, 1), (0, 1))  # (x, y) anchors: top right first, then the others
    MARGIN = 6

    def paint(self, painter, *args):
        if self.items:
            super().paint(painter, *args)

    def setParentItem(self, parent):  # Qt override: follow the view box the legend sits in
        result = super().setParentItem(parent)
        if isinstance(parent, pg.ViewBox):
            parent.sigRangeChanged.connect(self.keep_clear)
            parent.sigResized.connect(self.keep_clear)
        return result

    def covered(self, corner: tuple[int, int]) -> int:
        """How many of the curves' points (sampled along x, so a line between two far points counts)
        the legend would cover in ``corner``."""
        vb = self.parentItem()
        rect, w, h = vb.viewRect(), vb.width(), vb.height()
        if not self.items or w <= 0 or h <= 0 or rect.width() == 0 or rect.height() == 0:
            return 0
        size = self.boundingRect()
        x0 = self.MARGIN if corner[0] == 0 else w - self.MARGIN - size.width()
        y0 = self.MARGIN if corner[1] == 0 else h - self.MARGIN - size.height()
        total = 0
        for item in vb.addedItems:
            if not isinstance(item, pg.PlotDataItem) or not item.isVisible():
                continue
            x, y = item.getData()
            if x is None or len(x) == 0:
                continue
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            if len(x) > 1 and np.all(np.diff(x) >= 0):  # a curve along x: sample its segments too
                grid = np.linspace(x[0], x[-1], 400)
                x, y = np.concatenate([x, grid]), np.concatenate([y, np.interp(grid, x, y)])
            px = (x - rect.left()) / rect.width() * w
            py = (rect.bottom() - y) / rect.height() * h  # view y grows upwards, pixels downwards
            if vb.yInverted():
                py = h - py
            total += int(((px >= x0) & (px <= x0 + size.width()) & (py >= y0) & (py <= y0 + size.height())).sum())
        return total

    def keep_clear(self, *_) -> None:
        if not self.items or not isinstance(self.parentItem(), pg.ViewBox):
            return
        counts = [self.covered(corner) for corner in self.CORNERS]
        here = self.CORNERS.index(getattr(self, "_corner", (1, 0)))
        if counts[here] == min(counts):
            return  # a legend that covers no more than elsewhere stays where the eye found it
        corner = self.CORNERS[int(np.argmin(counts))]
        offset = (self.MARGIN if corner[0] == 0 else -self.MARGIN, self.MARGIN if corner[1] == 0 else -self.MARGIN)
        self._corner = corner
        self.anchor(itemPos=corner, parentPos=corner, offset=offset)


def no_si_prefix(plot: pg.PlotItem) -> None:
    """Plain tick numbers: pyqtgraph would otherwise show accuracies as "940 (x0.001)". The hidden top
    and right axes too: with the prefix on, each range change set their label's HTML again (0.07 ms
    of the GUI thread against 0.004 ms, measured on one axis; more the first time)."""
    for name in ("left", "bottom", "right", "top"):
        plot.getAxis(name).enableAutoSIPrefix(False)


def set_log_ticks(axis: pg.AxisItem, low: int = -9, high: int = 6) -> None:
    """Ticks of a log axis as plain numbers: 0.001, 0.01, ... labelled, and 2x / 5x between them
    (labelled only where there is room: pyqtgraph drops the text of a crowded tick level)."""
    major = [(float(k), f"{10.0 ** k:g}") for k in range(low, high + 1)]
    minor = [(math.log10(m * 10.0 ** k), f"{m * 10.0 ** k:g}") for k in range(low, high) for m in (2, 5)]
    axis.setTicks([major, minor])


class LegendRow(QLabel):
    """A legend outside the plot (one line of coloured samples), for plots whose data fill the corners."""

    STYLES = {Qt.PenStyle.SolidLine: "\u2501\u2501", Qt.PenStyle.DashLine: "\u254d\u254d",
              Qt.PenStyle.DotLine: "\u2505\u2505"}

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.entries: list[tuple[str, str]] = []  # (name, html of the sample)

    def set_entries(self, entries: Sequence[tuple[str, QColor, Any]]) -> None:
        """(name, colour, a Qt.PenStyle or a one-character symbol such as "\u25a0" or "\u2605")."""
        self.entries = []
        for name, c, style in entries:
            sample = self.STYLES.get(style, style) if isinstance(style, Qt.PenStyle) else str(style)
            self.entries.append((name, f'<span style="color:{QColor(c).name()}; font-weight:bold">'
                                       f'{sample}</span>&nbsp;{name}'))
        text = "&nbsp;&nbsp;&nbsp; ".join(html for _n, html in self.entries)
        if text != self.text():  # a new text re-lays out the panel: not for every evaluation
            self.setText(text)

    def names(self) -> list[str]:
        return [n for n, _h in self.entries]


class PlotGroup(QWidget):
    """Plots side by side where the group is wide, stacked where it is tall and narrow, one tab each
    where it is small: each plot keeps ``min_size`` at least, the room its title, tick labels and
    legend need (squeezed, their titles were cut and a histogram read as a few stripes). The mode
    follows the group's own size; ``set_shown`` hides a plot that has nothing to draw (its tab too)."""

    def __init__(self, plots: list[tuple[QWidget, str]], min_size: tuple[int, int] = (260, 120),
                 object_name: str = "", stretch: list[int] | None = None, tips: list[str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        from PySide6.QtWidgets import QBoxLayout, QTabWidget, QVBoxLayout

        self.plots = list(plots)
        self.min_width, self.min_height = min_size
        self.stretch = stretch or [1] * len(plots)
        self.tips = tips or [""] * len(plots)  # the tabs' tooltips
        self._hidden: set[int] = set()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.row = QWidget()
        self.box = QBoxLayout(QBoxLayout.Direction.LeftToRight, self.row)
        self.box.setContentsMargins(0, 0, 0, 0)
        self.box.setSpacing(3)
        self.tabs = QTabWidget(objectName=f"{object_name}_tabs" if object_name else "", documentMode=True)
        self.tabs.hide()
        layout.addWidget(self.row)
        layout.addWidget(self.tabs)
        for (widget, _title), stretch in zip(self.plots, self.stretch):
            self.box.addWidget(widget, stretch)
        self.mode = "row"

    def resizeEvent(self, event) -> None:  # Qt override
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        n = max(1, len(self.plots) - len(self._hidden))
        w, h = self.width(), self.height()
        fits_row = w >= n * self.min_width
        fits_column = h >= n * self.min_height and w >= self.min_width
        if n == 1:
            self.set_mode("row")
        elif fits_column and (not fits_row or w < 1.2 * h):
            self.set_mode("column")
        else:
            self.set_mode("row" if fits_row else "tabs")

    def set_shown(self, widget: QWidget, shown: bool) -> None:
        i = [p for p, _ in self.plots].index(widget)
        if shown == (i not in self._hidden):
            return
        (self._hidden.discard if shown else self._hidden.add)(i)
        if self.mode == "tabs":
            self.tabs.setTabVisible(i, shown)
        else:
            widget.setVisible(shown)
        self._fit()

    def set_mode(self, mode: str) -> None:
        """'row' (side by side), 'column' (stacked) or 'tabs' (one plot at a time, each at full size)."""
        from PySide6.QtWidgets import QBoxLayout

        if mode == self.mode:
            return
        if mode == "tabs":
            for i, (widget, title) in enumerate(self.plots):
                self.tabs.addTab(widget, title)  # the tab widget shows its current page only
                self.tabs.setTabToolTip(i, self.tips[i])
                self.tabs.setTabVisible(i, i not in self._hidden)
        else:
            self.tabs.clear()  # takes the pages out without deleting them
            for i, ((widget, _title), stretch) in enumerate(zip(self.plots, self.stretch)):
                self.box.addWidget(widget, stretch if mode == "row" else 1)  # stacked: equal heights
                widget.setVisible(i not in self._hidden)
            self.box.setDirection(QBoxLayout.Direction.TopToBottom if mode == "column"
                                  else QBoxLayout.Direction.LeftToRight)
        self.row.setVisible(mode != "tabs")
        self.tabs.setVisible(mode == "tabs")
        self.mode = mode
