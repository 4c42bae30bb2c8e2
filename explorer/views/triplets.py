"""The triplets panel (``triplet_panel``): the shares of easy, semi-hard and hard triplets over time,
and the histogram of D_an - D_ap with the margin band."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from explorer.views import wrapped_tooltip
from explorer.views.palette import BACKGROUND, FOREGROUND, TRIPLET_CATEGORIES, triplet_colours
from explorer.views.plots import LegendRow, PlotGroup, new_plot
from explorer.views.records import RecordPanel
from explorer.views.series import bin_mean, number

TRIPLET_KEYS = ("triplet_hard", "triplet_semi_hard", "triplet_easy")  # bottom to top of the stack, as TRIPLET_CATEGORIES
SOURCES = ("evaluation subset", "training batches")


class TripletPanel(RecordPanel):
    """Shares of easy / semi-hard / hard triplets over time as a stacked area, from the evaluation
    subset (keys triplet_easy, triplet_semi_hard, triplet_hard of an evaluation) or from the training
    batches (the same keys in a step's stats, for metric-learning methods); and, when the method
    reports it, the histogram of D_an - D_ap of the latest batch with the margin band."""

    name = "triplet_panel"
    dock_title = "Triplets"
    long_title = "Triplet categories"
    title = "Triplets"
    help_text = (
        "A triplet is an anchor image, a positive (same class) and a negative (another class), with "
        "distances D_ap and D_an in embedding space and a margin m. It is easy when D_an >= D_ap + m "
        "(the triplet loss max(0, D_ap - D_an + m) is already zero, nothing left to learn), semi-hard "
        "when the negative is farther than the positive but inside the margin, and hard when the "
        "negative is closer than the positive (the order is wrong). D and m are the triplet loss's: a "
        "triplet run's own, otherwise its defaults (squared euclidean distance between l2-normalised "
        "embeddings, D in [0, 4]), in both sources alike. Over time (the first plot, or tab in a narrow dock): the share of each kind among all valid "
        "triplets, over time, on the fixed evaluation subset or (metric-learning methods) in the training "
        "batches. As training succeeds easy triplets take over, which is why online mining (Hermans et "
        "al. 2017: batch-hard, semi-hard) looks for the few informative ones. D_an \u2212 D_ap (the second): the histogram of "
        "D_an - D_ap in the latest batch or evaluation; bars left of 0 are hard, the shaded band [0, m) "
        "is semi-hard, bars right of the band are easy. Click a bar: the Triplet panel lists its triplets "
        "and shows each one's anchor, positive and negative.")

    max_points = 1500  # drawn points of the stacked area (means over bins above)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.source_combo = QComboBox()
        self.source_combo.setObjectName("triplet_source")
        self.source_combo.addItems(SOURCES)
        self.source_combo.setToolTip(wrapped_tooltip(
            "Triplets of the fixed evaluation subset (at each evaluation), or of the training batches "
            "(every step; metric-learning methods only)"))
        self.controls.addWidget(self.source_combo)
        # the stack fills the whole plot: its legend goes below it
        self.area_widget, self.area_plot = new_plot(self, "share", title="categories over time",
                                                    legend=False)
        self.area_plot.setYRange(0, 1, padding=0.02)
        self.area_plot.getViewBox().setLimits(yMin=-0.05, yMax=1.05)
        self.hist_widget, self.hist_plot = new_plot(self, "share", bottom="D_an \u2212 D_ap",
                                                    title="D_an \u2212 D_ap", legend=False)
        # side by side in a wide dock, else one tab each: the histogram read as a few stripes at 2/5 of
        # a 430 px dock, and both titles were cut
        self.plots = PlotGroup([(self.area_widget, "over time"), (self.hist_widget, "histogram")],
                               (280, 150), object_name="triplet_plot", stretch=[3, 2])
        self.body.addWidget(self.plots, 1)
        self.legend = LegendRow()
        self.body.addWidget(self.legend)
        self.empty_label = QLabel("No triplet statistics yet: they come with each evaluation on labelled "
                                  "data, and with each step of a triplet-loss method.")
        self.empty_label.setWordWrap(True)
        self.empty_label.setObjectName("triplet_empty")
        self.body.addWidget(self.empty_label)

        # the stack: four boundaries (0, hard, hard+semi, 1) and three fills between them, made once
        self._bounds = [pg.PlotDataItem() for _ in range(4)]
        for item in self._bounds:
            self.area_plot.addItem(item)
        self._fills = [pg.FillBetweenItem(self._bounds[i], self._bounds[i + 1]) for i in range(3)]
        for fill in self._fills:
            fill.setZValue(-2)
            self.area_plot.addItem(fill)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], pen=None)
        self.margin_band = pg.LinearRegionItem(movable=False)
        self.margin_band.setZValue(-5)
        self.margin_band.setVisible(False)
        self.zero_line = pg.InfiniteLine(pos=0, angle=90, movable=False)
        self.hist_plot.addItem(self.margin_band)
        self.hist_plot.addItem(self.bars)
        self.hist_plot.addItem(self.zero_line)
        self.hist_widget.setToolTip("Click a bar to list its triplets (anchor, positive, negative)")
        self.hist_widget.scene().sigMouseClicked.connect(self._on_hist_scene_clicked)
        self.picked: tuple[str, float, int] | None = None  # the clicked bar: (source, step, bin index)
        self._user_chose_source = False
        self.source_combo.activated.connect(self._on_source_activated)
        self._state()
        self._restyle()
        self._draw()

    def _state(self) -> None:
        # per source: steps and the (hard, semi-hard, easy) shares
        self._steps: dict[str, list[float]] = {s: [] for s in SOURCES}
        self._shares: dict[str, list[tuple[float, float, float]]] = {s: [] for s in SOURCES}
        # per source: the latest histogram of D_an - D_ap as (shares, bin edges, margin or None, step)
        self.histograms: dict[str, tuple[np.ndarray, np.ndarray, float | None, float]] = {}

    # public -------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.source_combo.currentText()

    def set_source(self, source: str) -> None:
        """"evaluation subset" or "training batches"."""
        if source not in SOURCES:
            raise ValueError(f"source: {source!r} is not valid; allowed: {', '.join(SOURCES)}")
        self._user_chose_source = True
        self.source_combo.setCurrentText(source)
        self._draw()

    def series(self, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Steps (n,) and shares (n, 3): hard, semi-hard, easy (each row sums to 1)."""
        s = source or self.source
        return np.asarray(self._steps[s], dtype=float), np.asarray(self._shares[s], dtype=float).reshape(-1, 3)

    def _reset(self) -> None:
        self._state()
        self._user_chose_source = False
        self._draw()

    def _ingest(self, records: list[dict]) -> None:
        changed = False
        for record in records:
            if not isinstance(record, dict):
                continue
            kind, step = record.get("kind"), number(record.get("step"))
            if step is None:
                continue
            if kind == "evaluation":
                values, source = record.get("metrics"), SOURCES[0]
            elif kind == "step":
                values, source = record.get("stats"), SOURCES[1]
            else:
                continue
            if not isinstance(values, dict):
                continue
            shares = _shares(values)
            if shares is not None:
                self._steps[source].append(step)
                self._shares[source].append(shares)
                changed = True
            if self._take_histogram(values, step, source):
                changed = True
        if changed:
            self._draw()

    # internals ----------------------------------------------------------------------------------
    def _take_histogram(self, values: dict, step: float, source: str) -> bool:
        """Training batches report ``dan_dap_hist`` (shares) over the edges ``dan_dap_bins`` and the
        loss's ``margin``; an evaluation reports ``triplet_histogram`` (counts) over
        ``triplet_histogram_range`` [low, high] (equal bins) and ``triplet_margin``."""
        if source == SOURCES[1]:
            hist, bins, margin = values.get("dan_dap_hist"), values.get("dan_dap_bins"), values.get("margin")
        else:
            hist, span, margin = (values.get("triplet_histogram"), values.get("triplet_histogram_range"),
                                  values.get("triplet_margin"))
            if not isinstance(hist, (list, tuple)) or not isinstance(span, (list, tuple)) or len(span) != 2:
                return False
            lo, hi = number(span[0]), number(span[1])
            if lo is None or hi is None or not hi > lo:
                return False
            bins = np.linspace(lo, hi, len(hist) + 1).tolist()
        if not isinstance(hist, (list, tuple)) or not isinstance(bins, (list, tuple)) or len(bins) != len(hist) + 1:
            return False
        h = np.array([number(v) or 0.0 for v in hist], dtype=float)
        b = np.array([number(v) if number(v) is not None else np.nan for v in bins], dtype=float)
        if len(h) == 0 or not np.isfinite(b).all() or h.sum() <= 0:
            return False
        m = number(margin)
        self.histograms[source] = (h / h.sum(), b, m if m is not None and m >= 0 else None, step)
        return True

    def histogram(self, source: str | None = None) -> tuple[np.ndarray, np.ndarray, float | None, float] | None:
        """The latest (shares, bin edges, margin, step) of a source, or None."""
        return self.histograms.get(source or self.source)

    def bar_at(self, x: float) -> int | None:
        """The bin of the shown histogram under ``x`` (data coordinates), or None."""
        hist = self.histograms.get(self._hist_source() or "")
        if hist is None:
            return None
        edges = hist[1]
        i = int(np.searchsorted(edges, x, side="right")) - 1
        if i == len(edges) - 1 and x == edges[-1]:
            i -= 1  # the last bin is closed on the right
        return i if 0 <= i < len(edges) - 1 else None

    def pick_bar(self, index: int) -> bool:
        """List the triplets of bar ``index`` of the shown histogram (as a click on it does): the
        session finds them, the Triplet panel shows them. False without a session or a histogram."""
        source = self._hist_source()
        if source is None or self._session is None:
            return False
        shares, edges, _margin, step = self.histograms[source]
        index = min(int(index), len(shares) - 1)
        self.picked = (source, step, index)
        self._draw()
        return self._session.request_bar_triplets(step, float(edges[index]), float(edges[index + 1]),
                                                  closed=index == len(shares) - 1,
                                                  from_evaluation=source == SOURCES[0])

    def _on_hist_scene_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or not self.hist_widget.isVisible():
            return
        vb = self.hist_plot.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        i = self.bar_at(vb.mapSceneToView(ev.scenePos()).x())
        if i is not None:
            ev.accept()
            self.pick_bar(i)

    def _hist_source(self) -> str | None:
        """The source whose histogram is drawn: the chosen one's, else the other's."""
        return self.source if self.source in self.histograms else next(iter(self.histograms), None)

    def _on_source_activated(self, _index: int) -> None:
        self._user_chose_source = True
        self._draw()

    def _draw(self) -> None:
        if not self._user_chose_source:
            # the training batches are the richer view when a metric-learning method reports them
            auto = SOURCES[1] if self._steps[SOURCES[1]] else SOURCES[0]
            if self.source != auto:
                self.source_combo.setCurrentText(auto)
        steps, shares = self.series()
        if len(steps):
            x, s = bin_mean(steps, shares, self.max_points)
            cum = np.cumsum(s, axis=1)
            self._bounds[0].setData(x, np.zeros_like(x))
            for i in range(3):
                self._bounds[i + 1].setData(x, cum[:, i])
        else:
            for item in self._bounds:
                item.setData([], [])
        has_area = len(steps) > 0
        # the histogram of the chosen source, else the other one's (titled with where it comes from)
        hist_source = self._hist_source()
        self.plots.set_shown(self.area_widget, has_area)
        self.plots.set_shown(self.hist_widget, hist_source is not None)
        self.plots.setVisible(has_area or hist_source is not None)
        self.legend.setVisible(has_area or hist_source is not None)
        self.empty_label.setVisible(not has_area and hist_source is None)
        if hist_source is not None:
            shares, bins, margin, step = self.histograms[hist_source]
            hard, semi, easy = self._brushes
            centres = (bins[:-1] + bins[1:]) / 2
            m = margin if margin is not None else 0.0
            brushes = [hard if c < 0 else semi if c < m else easy for c in centres]
            # the clicked bar outlined (while the histogram it was clicked on is shown)
            picked = self.picked[2] if self.picked is not None and self.picked[:2] == (hist_source, step) else -1
            outline, none = pg.mkPen(FOREGROUND[self.dark], width=2), pg.mkPen(None)
            pens = [outline if i == picked else none for i in range(len(shares))]
            self.bars.setOpts(x0=bins[:-1], x1=bins[1:], height=shares, brushes=brushes, pens=pens)
            self.margin_band.setVisible(margin is not None)
            if margin is not None:
                self.margin_band.setRegion((0.0, margin))
            # the source is the drop-down's; said only when the histogram comes from the other one
            where = "" if hist_source == self.source else (" (evaluation)" if hist_source == SOURCES[0] else " (batch)")
            self._set_plot_title(self.hist_plot, f"D_an \u2212 D_ap at step {int(step)}{where}"
                                 + (f", m = {margin:g}" if margin is not None else ""))
        self._set_plot_title(self.area_plot, "categories over time")

    def _restyle(self) -> None:
        colors = [triplet_colours(self.dark)[name] for name in TRIPLET_CATEGORIES]  # hard, semi-hard, easy
        fills = []
        for c in colors:
            f = QColor(c)
            f.setAlpha(170)
            fills.append(pg.mkBrush(f))
        self._brushes = [pg.mkBrush(c) for c in colors]
        for fill, brush in zip(self._fills, fills):
            fill.setBrush(brush)
            fill.setPen(pg.mkPen(None))
        self.legend.set_entries([(name, c, "\u25a0") for name, c in zip(reversed(TRIPLET_CATEGORIES), reversed(colors))]
                                + [("margin band [0, m): semi-hard zone", colors[1], Qt.PenStyle.DashLine)])
        for item in self._bounds:
            item.setPen(pg.mkPen(BACKGROUND[self.dark], width=0.8))
        band = QColor(colors[1])
        band.setAlpha(45)
        self.margin_band.setBrush(pg.mkBrush(band))
        for line in self.margin_band.lines:
            line.setPen(pg.mkPen(colors[1], width=1, style=Qt.PenStyle.DashLine))
        self.zero_line.setPen(pg.mkPen(FOREGROUND[self.dark], width=1))
        if getattr(self, "histograms", None):
            self._draw()


def _shares(values: dict) -> tuple[float, float, float] | None:
    """(hard, semi-hard, easy) as shares that sum to 1, from fractions or counts; None if absent."""
    raw = [number(values.get(k)) for k in TRIPLET_KEYS]
    if any(v is None or v < 0 for v in raw):
        return None
    total = sum(raw)
    if total <= 0:
        return None
    return tuple(v / total for v in raw)  # type: ignore[return-value]
