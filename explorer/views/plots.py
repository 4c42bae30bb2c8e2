"""pyqtgraph helpers shared by the panels that plot: a themed plot, a legend that draws nothing while
empty, plain tick numbers, a legend row outside the plot. GUI thread only."""
from __future__ import annotations

import math
from typing import Any, Sequence

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
    return widget, plot


class QuietLegend(pg.LegendItem):
    """pyqtgraph's legend draws its frame even when empty: an idle plot showed a stray small box."""

    def paint(self, painter, *args):
        if self.items:
            super().paint(painter, *args)


def no_si_prefix(plot: pg.PlotItem) -> None:
    """Plain tick numbers: pyqtgraph would otherwise show accuracies as "940 (x0.001)"."""
    for name in ("left", "bottom"):
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
