"""Health of the representation: collapse indicators (``collapse_panel``), triplet categories
(``triplet_panel``) and the five properties of a good representation (``properties_panel``).

Same contract as explorer/views/curves.py: ``add_records(records)`` with ``metrics.jsonl``-style
records, ``clear()``, ``help_text``, ``set_theme(dark)``; plot items are created once and updated with
``setData``; missing or null values are skipped. GUI thread only.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QBoxLayout, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from engine.metrics import collapse
from explorer.views import wrapped_tooltip
from explorer.views.curves import (BACKGROUND, FOREGROUND, MUTED, WARN, LegendRow, Panel, Series, bin_mean, color,
                                   new_plot, number, set_log_ticks, verdict_style)

HEALTHY = collapse.HEALTHY
# floors of the log axes: an effective rank of 0 and a relative spread of 0 (complete collapse) have
# no logarithm; they are drawn at the floor, and the badge says what happened
RANK_FLOOR, SPREAD_FLOOR = 1.0, 1e-7
# the figures of the details line, all from the latest evaluation (never mixed across evaluations)
DETAIL_KEYS = ("relative_spread", "alignment", "uniformity", "mean_cosine", "dead_dims", "effective_rank")


def embedding_dim_of(record: dict) -> int | None:
    """The embedding dimension D announced by a "started" record (or a snapshot's "dim")."""
    if record.get("kind") == "started":
        config = record.get("config") or {}
        for key in ("embedding_dim_actual", "embedding_dim"):
            d = number(config.get(key))
            if d is not None and d >= 1:
                return int(d)
    if record.get("kind") == "snapshot":
        d = number(record.get("dim"))
        if d is not None and d >= 1:
            return int(d)
    return None


# --- collapse ------------------------------------------------------------------------------------

class CollapsePanel(Panel):
    """Effective rank against the embedding dimension D, the relative spread against the near-collapse
    threshold, the singular spectrum of the latest evaluation and the verdict of the engine (key
    ``collapse``) as a badge; every figure is the engine's (engine.metrics.collapse), from the latest
    evaluation. (The map's collapse mark comes from the session, which sees every record even while
    this panel is tabbed away.)"""

    title = "Collapse"
    help_text = (
        "Is the encoder still using its embedding space? A representation collapses when it maps "
        "different images to the same point (complete collapse: every output identical, a trivial way "
        "to be perfectly invariant) or onto a thin subspace (dimensional collapse: only a few of the D "
        "dimensions vary). Self-supervised methods without negatives are most at risk. Effective rank: "
        "RankMe, exp of the entropy of the normalised singular values of the centred embeddings, between "
        "1 and D; a healthy representation uses many dimensions, a supervised one may settle near the "
        "number of classes; under the dotted line (5 % of D) the verdict is dimensional collapse. "
        "Spread: how far the embeddings lie from their mean, relative to their norm; 0 when they "
        "coincide, under the dashed line (0.0005) near collapse, though a fresh network, whose outputs "
        "share a large offset, reads about 0.005. Singular spectrum: the latest evaluation's, largest "
        "first, relative to the largest: a cliff of near-zero values is dimensional collapse. The line "
        "of figures is the latest evaluation's: alignment (two views of an image, 0 = identical), "
        "uniformity (0 = all together, about -4 = spread out) and the mean cosine between images, all "
        "three on the centred embeddings, so a shared offset does not count. The badge gives the "
        "engine's verdict: amber for dimensional or near collapse, red for complete collapse.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("collapse_panel")
        self.badge = QLabel("no evaluation yet")
        self.badge.setObjectName("collapse_badge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setWordWrap(True)
        self.body.addWidget(self.badge)  # a banner over the plots: it must be seen, and it may be long
        # three plots side by side in a wide dock, stacked in a tall narrow one, one tab each in a small
        # one (see resizeEvent)
        self.plots = QWidget()
        plots_layout = QVBoxLayout(self.plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        self.plot_row = QWidget()
        self.plots_box = QBoxLayout(QBoxLayout.Direction.LeftToRight, self.plot_row)
        self.plots_box.setContentsMargins(0, 0, 0, 0)
        self.plots_box.setSpacing(3)
        self.plot_tabs = QTabWidget(objectName="collapse_plot_tabs", documentMode=True)
        self.plot_tabs.hide()
        plots_layout.addWidget(self.plot_row)
        plots_layout.addWidget(self.plot_tabs)
        self.plot_mode = "row"
        views = []
        for left, bottom, title in (("effective rank", "step", "effective rank vs D"),
                                    ("relative spread", "step", "spread vs near collapse"),
                                    ("\u03c3\u2096 / \u03c3\u2081", "k", "singular spectrum")):
            widget, plot = new_plot(self, left, bottom, title)
            # log axes: ranks and spreads shrink by factors when a representation collapses
            plot.setLogMode(y=True)
            set_log_ticks(plot.getAxis("left"))
            self.plots_box.addWidget(widget, 1)
            views.append((widget, plot))
        (self.rank_widget, self.rank_plot), (self.spread_widget, self.spread_plot), \
            (self.spectrum_widget, self.spectrum_plot) = views
        self.body.addWidget(self.plots, 1)
        self.empty_label = QLabel("No collapse indicators yet: they come with each evaluation of a run "
                                  "trained with diagnostics on.")
        self.empty_label.setObjectName("collapse_empty")
        self.empty_label.setWordWrap(True)
        self.body.addWidget(self.empty_label)
        self.details = QLabel("")
        self.details.setObjectName("collapse_details")
        self.details.setWordWrap(True)
        self.body.addWidget(self.details)

        self.rank_item = pg.PlotDataItem(name="effective rank", symbol="o", symbolSize=5)
        self.rank_reference = pg.PlotDataItem(name="D")
        self.rank_threshold = pg.PlotDataItem(name="dimensional collapse below")
        self.spread_item = pg.PlotDataItem(name="relative spread", symbol="o", symbolSize=5)
        self.spread_threshold = pg.PlotDataItem(name="near collapse below")
        self.spectrum_item = pg.PlotDataItem(name="latest")
        self.rank_marker = pg.InfiniteLine(angle=90, movable=False)
        self.rank_marker.setVisible(False)
        self.rank_plot.addItem(self.rank_reference)
        self.rank_plot.addItem(self.rank_threshold)
        self.rank_plot.addItem(self.rank_item)
        self.spread_plot.addItem(self.spread_threshold)
        self.spread_plot.addItem(self.spread_item)
        self.spectrum_plot.addItem(self.spectrum_item)
        self.spectrum_plot.addItem(self.rank_marker)
        self._state()
        self._restyle()
        self._show_empty()

    def _state(self) -> None:
        self.rank = Series()
        self.spread = Series()
        self.embedding_dim: int | None = None
        self.spectrum: np.ndarray | None = None
        self.spectrum_step: float | None = None
        self.verdict: str | None = None
        self.verdict_step: float | None = None  # the evaluation that began the latest verdict's streak
        self.collapse_step: int | None = None  # first non-healthy evaluation of this run
        self.latest: dict[str, Any] = {}
        self._last_step = 0.0

    PLOT_WIDTH, PLOT_HEIGHT = 180, 110  # below this a plot's titles and tick labels run into each other

    def resizeEvent(self, event) -> None:  # Qt override
        super().resizeEvent(event)
        w, h = self.width(), self.height()
        fits_row = w >= 3 * self.PLOT_WIDTH
        fits_column = h >= 3 * self.PLOT_HEIGHT + 90  # the badge and the line of figures take ~90 px
        if fits_column and (not fits_row or w < 1.2 * h):
            self.set_plot_mode("column")
        else:
            self.set_plot_mode("row" if fits_row else "tabs")

    def set_plot_mode(self, mode: str) -> None:
        """'row' (side by side), 'column' (stacked) or 'tabs' (one plot at a time, each at full size)."""
        if mode == self.plot_mode:
            return
        plots = ((self.rank_widget, "effective rank"), (self.spread_widget, "spread"),
                 (self.spectrum_widget, "singular spectrum"))
        if mode == "tabs":
            for widget, title in plots:
                self.plot_tabs.addTab(widget, title)
            self.plot_tabs.setTabToolTip(1, "The relative spread of the embeddings against the near-collapse threshold")
        else:
            self.plot_tabs.clear()  # takes the pages out without deleting them
            for widget, _ in plots:
                self.plots_box.addWidget(widget, 1)
                widget.show()
            self.plots_box.setDirection(QBoxLayout.Direction.TopToBottom if mode == "column"
                                        else QBoxLayout.Direction.LeftToRight)
        self.plot_row.setVisible(mode != "tabs")
        self.plot_tabs.setVisible(mode == "tabs")
        self.plot_mode = mode

    # public -------------------------------------------------------------------------------------
    @property
    def badge_state(self) -> str:
        """"none" (no verdict yet), "healthy", "warning" (dimensional or near collapse, amber) or
        "collapse" (complete collapse, red)."""
        return verdict_style(self.verdict, self.dark)[0]

    def set_embedding_dim(self, d: int | None) -> None:
        self.embedding_dim = int(d) if d else None
        self._draw_references()

    def _reset(self) -> None:
        self._state()
        for item in (self.rank_item, self.rank_reference, self.rank_threshold, self.spread_item,
                     self.spread_threshold, self.spectrum_item):
            item.setData([], [])
        self.rank_marker.setVisible(False)
        self.details.setText("")
        self._set_plot_title(self.spectrum_plot, "singular spectrum")
        self._show_badge()
        self._show_empty()

    def _ingest(self, records: Iterable[dict]) -> None:
        changed = False
        for record in records:
            if not isinstance(record, dict):
                continue
            d = embedding_dim_of(record)
            if d is not None and (record.get("kind") == "started" or self.embedding_dim is None):
                self.embedding_dim = d
                changed = True
            if record.get("kind") == "started" and not number(record.get("start_step")):
                self.collapse_step = None  # a new run from step 0: it may warn again
            step = number(record.get("step"))
            if step is not None:
                self._last_step = max(self._last_step, step)
            if record.get("kind") != "evaluation" or step is None or not isinstance(record.get("metrics"), dict):
                continue
            changed = True
            m = record["metrics"]
            v = number(m.get("effective_rank"))
            if v is not None:
                self.rank.append(step, v)
            v = number(m.get("relative_spread"))
            if v is not None:
                self.spread.append(step, v)
            sv = m.get("singular_values")
            if isinstance(sv, (list, tuple)) and sv:
                values = np.array([number(s) if number(s) is not None else np.nan for s in sv], dtype=float)
                self.spectrum, self.spectrum_step = values, step
            # the figures beside the verdict: the same evaluation's, all of them
            self.latest = {key: m.get(key) for key in DETAIL_KEYS}
            verdict = m.get("collapse")
            if isinstance(verdict, str) and verdict:
                if verdict != self.verdict:
                    self.verdict_step = step
                self.verdict = verdict
                if verdict != HEALTHY and self.collapse_step is None:
                    self.collapse_step = int(step)
        if changed:
            self._draw()

    # drawing ------------------------------------------------------------------------------------
    def _show_empty(self) -> None:
        empty = not (len(self.rank) or len(self.spread) or self.spectrum is not None)
        self.plots.setVisible(not empty)
        self.empty_label.setVisible(empty)

    def _draw(self) -> None:
        self._show_empty()
        self.rank_item.setData(self.rank.x, np.maximum(self.rank.y, RANK_FLOOR))
        self.spread_item.setData(self.spread.x, np.maximum(self.spread.y, SPREAD_FLOOR))
        self._draw_references()
        if self.spectrum is not None:
            top = self.spectrum[0] if len(self.spectrum) and self.spectrum[0] > 0 else np.nan
            rel = self.spectrum / top
            rel = np.where(rel > 0, rel, np.nan)  # exact zeros have no logarithm: a gap
            k = np.arange(1, len(rel) + 1)
            self.spectrum_item.setData(k, rel, connect="finite")
            flat = "" if np.isfinite(rel).any() else ": all zero, no variation left"
            self._set_plot_title(self.spectrum_plot, f"singular spectrum, step {int(self.spectrum_step)}{flat}")
        rank = number(self.latest.get("effective_rank"))
        self.rank_marker.setVisible(rank is not None and rank >= 1 and self.spectrum is not None)
        if rank is not None:
            self.rank_marker.setPos(rank)
        self._show_details()
        self._show_badge()

    def _draw_references(self) -> None:
        d = self.embedding_dim
        x = [0.0, max(self._last_step, 1.0)]
        self.spread_threshold.setData(x, [collapse.NEAR_SPREAD] * 2)
        if d:
            self.rank_reference.setData(x, [d, d])
            self.rank_threshold.setData(x, [collapse.rank_threshold(d)] * 2)
        else:
            self.rank_reference.setData([], [])
            self.rank_threshold.setData([], [])

    def _show_details(self) -> None:
        parts = []
        spread = number(self.latest.get("relative_spread"))
        if spread is not None:
            parts.append(f"spread {spread:.3g}")
        fmt = {"alignment": ("alignment", "{:.3f}"), "uniformity": ("uniformity", "{:.3f}"),
               "mean_cosine": ("mean cosine", "{:.3f}")}
        for key, (label, f) in fmt.items():
            v = number(self.latest.get(key))
            if v is not None:
                parts.append(f"{label} {f.format(v)}")
        dead = number(self.latest.get("dead_dims"))
        if dead is not None:
            parts.append(f"dead dims {int(dead)}" + (f"/{self.embedding_dim}" if self.embedding_dim else ""))
        rank = number(self.latest.get("effective_rank"))
        if rank is not None:
            parts.append(f"effective rank {rank:.1f}" + (f" of {self.embedding_dim}" if self.embedding_dim else ""))
        self.details.setText("  \u00b7  ".join(parts))

    def _show_badge(self) -> None:
        dark = self.dark
        _, fg, bg = verdict_style(self.verdict, dark)
        if self.verdict is None:
            text = "no verdict yet"
        elif self.verdict == HEALTHY:
            text = "\u2713 healthy"
        else:
            text = f"\u26a0 {self.verdict}"
        if self.collapse_step is not None and self.verdict == HEALTHY:
            text += f" (collapsed at step {self.collapse_step})"
        elif self.verdict and self.verdict != HEALTHY and self.verdict_step is not None:
            text += f" from step {int(self.verdict_step)}"  # as the map's badge says it
        self.badge.setText(text)
        border = MUTED[dark]
        # the background is always set: the style sheets' red for the map's collapse badge must not
        # show through before any verdict
        style = (f"color: {fg}; border: 1px solid {border if bg is None else bg}; border-radius: 4px; "
                 f"padding: 2px 8px; background: {bg or 'transparent'};")
        self.badge.setStyleSheet(style + (" font-weight: bold;" if bg else " font-weight: normal;"))

    def _restyle(self) -> None:
        dark = self.dark
        main, ref = color(0, dark), QColor(MUTED[dark])
        for item in (self.rank_item, self.spread_item):
            item.setPen(pg.mkPen(main, width=2))
            item.setSymbolBrush(pg.mkBrush(main))
            item.setSymbolPen(pg.mkPen(main))
        self.rank_reference.setPen(pg.mkPen(ref, width=1.5, style=Qt.PenStyle.DashLine))
        warn = QColor(WARN[dark])
        self.rank_threshold.setPen(pg.mkPen(warn, width=1.5, style=Qt.PenStyle.DotLine))
        self.spread_threshold.setPen(pg.mkPen(warn, width=1.5, style=Qt.PenStyle.DashLine))
        self.spectrum_item.setPen(pg.mkPen(color(1, dark), width=2))
        self.rank_marker.setPen(pg.mkPen(color(0, dark), width=1, style=Qt.PenStyle.DotLine))
        self._show_badge()


# --- triplets ------------------------------------------------------------------------------------

TRIPLET_KEYS = ("triplet_hard", "triplet_semi_hard", "triplet_easy")  # bottom to top of the stack
TRIPLET_NAMES = ("hard", "semi-hard", "easy")
SOURCES = ("evaluation subset", "training batches")


def triplet_colors(dark: bool) -> tuple[QColor, QColor, QColor]:
    """hard, semi-hard, easy: red, amber, green (traffic light: how much a triplet still teaches)."""
    return color(3, dark), QColor("#e0a21b" if dark else "#d08a00"), color(2, dark)


class TripletPanel(Panel):
    """Shares of easy / semi-hard / hard triplets over time as a stacked area, from the evaluation
    subset (keys triplet_easy, triplet_semi_hard, triplet_hard of an evaluation) or from the training
    batches (the same keys in a step's stats, for metric-learning methods); and, when the method
    reports it, the histogram of D_an - D_ap of the latest batch with the margin band."""

    title = "Triplets"
    help_text = (
        "A triplet is an anchor image, a positive (same class) and a negative (another class), with "
        "distances D_ap and D_an in embedding space and a margin m. It is easy when D_an >= D_ap + m "
        "(the triplet loss max(0, D_ap - D_an + m) is already zero, nothing left to learn), semi-hard "
        "when the negative is farther than the positive but inside the margin, and hard when the "
        "negative is closer than the positive (the order is wrong). D and m are the triplet loss's: a "
        "triplet run's own, otherwise its defaults (squared euclidean distance between l2-normalised "
        "embeddings, D in [0, 4]), in both sources alike. Left: the share of each kind among all valid "
        "triplets, over time, on the fixed evaluation subset or (metric-learning methods) in the training "
        "batches. As training succeeds easy triplets take over, which is why online mining (Hermans et "
        "al. 2017: batch-hard, semi-hard) looks for the few informative ones. Right: the histogram of "
        "D_an - D_ap in the latest batch or evaluation; bars left of 0 are hard, the shaded band [0, m) "
        "is semi-hard, bars right of the band are easy.")

    max_points = 1500  # drawn points of the stacked area (means over bins above)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("triplet_panel")
        self.source_combo = QComboBox()
        self.source_combo.setObjectName("triplet_source")
        self.source_combo.addItems(SOURCES)
        self.source_combo.setToolTip(wrapped_tooltip(
            "Triplets of the fixed evaluation subset (at each evaluation), or of the training batches "
            "(every step; metric-learning methods only)"))
        self.controls.addWidget(self.source_combo)
        row = QHBoxLayout()
        row.setSpacing(3)
        # the stack fills the whole plot: its legend goes below it
        self.area_widget, self.area_plot = new_plot(self, "share of triplets", title="triplet categories",
                                                    legend=False)
        self.area_plot.setYRange(0, 1, padding=0.02)
        self.area_plot.getViewBox().setLimits(yMin=-0.05, yMax=1.05)
        self.hist_widget, self.hist_plot = new_plot(self, "share of triplets", bottom="D_an \u2212 D_ap",
                                                    title="D_an \u2212 D_ap", legend=False)
        row.addWidget(self.area_widget, 3)
        row.addWidget(self.hist_widget, 2)
        self.body.addLayout(row, 1)
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

    def _ingest(self, records: Iterable[dict]) -> None:
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
        hist_source = self.source if self.source in self.histograms else next(iter(self.histograms), None)
        self.area_widget.setVisible(has_area)
        self.hist_widget.setVisible(hist_source is not None)
        self.legend.setVisible(has_area or hist_source is not None)
        self.empty_label.setVisible(not has_area and hist_source is None)
        if hist_source is not None:
            shares, bins, margin, step = self.histograms[hist_source]
            hard, semi, easy = self._brushes
            centres = (bins[:-1] + bins[1:]) / 2
            m = margin if margin is not None else 0.0
            brushes = [hard if c < 0 else semi if c < m else easy for c in centres]
            self.bars.setOpts(x0=bins[:-1], x1=bins[1:], height=shares, brushes=brushes)
            self.margin_band.setVisible(margin is not None)
            if margin is not None:
                self.margin_band.setRegion((0.0, margin))
            where = "evaluation" if hist_source == SOURCES[0] else "batch"
            self._set_plot_title(self.hist_plot, f"D_an \u2212 D_ap, {where} at step {int(step)}"
                                 + (f", margin {margin:g}" if margin is not None else ""))
        self._set_plot_title(self.area_plot, "triplet categories, " + self.source)

    def _restyle(self) -> None:
        colors = triplet_colors(self.dark)
        fills = []
        for c in colors:
            f = QColor(c)
            f.setAlpha(170)
            fills.append(pg.mkBrush(f))
        self._brushes = [pg.mkBrush(c) for c in colors]
        for fill, brush in zip(self._fills, fills):
            fill.setBrush(brush)
            fill.setPen(pg.mkPen(None))
        self.legend.set_entries([(name, c, "\u25a0") for name, c in zip(reversed(TRIPLET_NAMES), reversed(colors))]
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


# --- the five properties -------------------------------------------------------------------------

# property, then (metric key, short label, format) in the order they are shown; the first present
# value is the headline, the others follow
PROPERTIES: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("smoothness", (("smoothness", "", "{:.3f}"),)),
    ("invariance", (("invariance", "", "{:.3f}"),)),
    # kNN: leave-one-out on the evaluation subset; the probe's kNN accuracy when that is absent
    ("clustering", (("silhouette", "silhouette", "{:.3f}"), ("knn_loo_acc", "kNN", "{:.3f}"),
                    ("knn_acc", "kNN", "{:.3f}"), ("nmi", "NMI", "{:.3f}"), ("ari", "ARI", "{:.3f}"))),
    ("sparsity", (("sparsity", "Hoyer", "{:.3f}"), ("participation_ratio", "dims in use", "{:.1f}"))),
    ("disentanglement", (("disentanglement", "DCI", "{:.3f}"), ("mig", "MIG", "{:.3f}"))),
)

OWN_HELP = {
    "smoothness": "A small change of the input (pixel noise) should move the embedding only a little, "
                  "compared with how far different images lie apart: lower is smoother.",
    "invariance": "Changes that do not matter for the task (augmentations) should leave the embedding "
                  "in place: 1 = two views of an image coincide, 0 = no closer than two strangers.",
    "clustering": "Similar images should lie close together and dissimilar ones far apart: silhouette "
                  "of the classes in [-1, 1] and the accuracy of each point's nearest neighbours.",
    "sparsity": "A representation should use as few dimensions as it needs: Hoyer sparsity of each "
                "embedding in [0, 1], and how many dimensions carry the variance.",
    "disentanglement": "Independent factors of variation (shape, size, position, colour) should sit on "
                       "separate axes; measured only where the data's factors are known.",
}


def metric_help() -> dict[str, str]:
    """engine.metrics.diagnostics.PROPERTY_HELP (one line per metric key), or {} without it."""
    table = _engine_table("PROPERTY_HELP")
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def property_help() -> dict[str, str]:
    """One line per property: the engine's explanation of the key that measures it
    (diagnostics.PROPERTIES maps a property to its key) where it exists, else our own words."""
    helps, keys = metric_help(), _engine_table("PROPERTIES")
    out = {}
    for name in OWN_HELP:
        key = keys.get(name, name) if isinstance(keys, dict) else name
        out[name] = helps.get(key) or helps.get(name) or OWN_HELP[name]
    return out


def _engine_table(name: str) -> Any:
    """A module-level constant of engine.metrics.diagnostics, None if absent.

    That module imports torch; while torch is not loaded, the constant is read from the source as a
    literal, so that opening the window or a saved run does not pay torch's start-up."""
    import sys

    module = sys.modules.get("engine.metrics.diagnostics")
    if module is not None:
        return getattr(module, name, None)
    try:
        spec = importlib.util.find_spec("engine.metrics.diagnostics")
        tree = ast.parse(Path(spec.origin).read_text()) if spec is not None and spec.origin else None
    except (ImportError, ValueError, OSError, SyntaxError):
        return None
    for node in tree.body if tree is not None else ():
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            try:
                return ast.literal_eval(node.value)
            except ValueError:  # built at import time: import the module after all
                return getattr(importlib.import_module("engine.metrics.diagnostics"), name, None)
    return None


class PropertiesPanel(Panel):
    """The five properties of a good representation, as the latest evaluation measured them."""

    title = "Properties"
    help_text = (
        "The course lists five properties a good representation should have: smoothness (nearby inputs "
        "get nearby embeddings), invariance (transformations irrelevant to the task leave the embedding "
        "unchanged), clustering (similar data close together, dissimilar data far apart), sparsity (few "
        "dimensions in use) and disentanglement (independent factors of variation on separate axes). "
        "Each row shows the latest measurement of one of them on the fixed evaluation subset, and what "
        "the number means; hover a value for the exact metric names. They pull in different directions "
        "(a perfectly invariant encoder maps everything to one point, which is collapse), so read them "
        "together and over time rather than maximising one. A dash means the property could not be "
        "measured here: disentanglement needs known factors of variation (the shapes dataset), "
        "clustering needs labels.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("properties_panel")
        self.step_label = QLabel("")
        self.controls.addWidget(self.step_label)
        self.table = QTableWidget(len(PROPERTIES), 3)
        self.table.setObjectName("properties_table")
        self.table.setHorizontalHeaderLabels(["property", "latest", "what it means"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        helps = property_help()
        for row, (name, _keys) in enumerate(PROPERTIES):
            name_item = QTableWidgetItem(name)
            font = name_item.font()
            font.setBold(True)
            name_item.setFont(font)
            self.table.setItem(row, 0, name_item)
            self.table.setItem(row, 1, QTableWidgetItem("\u2014"))
            explanation = QTableWidgetItem(helps[name])
            explanation.setToolTip(wrapped_tooltip(helps[name]))
            self.table.setItem(row, 2, explanation)
        self.body.addWidget(self.table, 1)
        self.values: dict[str, float] = {}
        self.step: float | None = None
        self._help = metric_help()

    def value_text(self, name: str) -> str:
        """What the "latest" cell of a property shows."""
        row = [p for p, _ in PROPERTIES].index(name)
        return self.table.item(row, 1).text()

    def _reset(self) -> None:
        self.values = {}
        self.step = None
        self._draw()

    def _ingest(self, records: Iterable[dict]) -> None:
        changed = False
        keys = {k for _name, entries in PROPERTIES for k, _l, _f in entries}
        for record in records:
            if not isinstance(record, dict) or record.get("kind") != "evaluation":
                continue
            metrics = record.get("metrics")
            if not isinstance(metrics, dict):
                continue
            found = {k: number(metrics.get(k)) for k in keys if number(metrics.get(k)) is not None}
            if found:
                self.values.update(found)
                self.step = number(record.get("step"))
                changed = True
        if changed:
            self._draw()

    def _draw(self) -> None:
        for row, (name, entries) in enumerate(PROPERTIES):
            parts, tips = [], []
            seen_labels = set()
            for key, label, fmt in entries:
                v = self.values.get(key)
                if v is None or (label and label in seen_labels):
                    continue
                seen_labels.add(label)
                text = fmt.format(v)
                parts.append(f"{label} {text}" if label else text)
                tips.append(f"{key} = {v:.4g}" + (f": {self._help[key]}" if key in self._help else ""))
            item = self.table.item(row, 1)
            item.setText("\n".join(parts) if parts else "\u2014")
            item.setToolTip(wrapped_tooltip("\n".join(tips) if tips else "not measured for this run"))
        self.step_label.setText(f"at step {int(self.step)}" if self.step is not None else "")
