"""The collapse panel (``collapse_panel``): effective rank, relative spread and the singular spectrum of
each evaluation, and the engine's verdict as a badge."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from engine.metrics import collapse
from explorer.views.palette import MUTED, WARN, color, verdict_style
from explorer.views.plots import LegendRow, PlotGroup, new_plot, set_log_ticks
from explorer.views.records import RecordPanel
from explorer.views.series import Series, number

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



class CollapsePanel(RecordPanel):
    """Effective rank against the embedding dimension D, the relative spread against the near-collapse
    threshold, the singular spectrum of the latest evaluation and the verdict of the engine (key
    ``collapse``) as a badge; every figure is the engine's (engine.metrics.collapse), from the latest
    evaluation. (The map's collapse mark comes from the session, which sees every record even while
    this panel is tabbed away.)"""

    name = "collapse_panel"
    dock_title = "Collapse"
    long_title = "Collapse indicators"
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
        self.badge = QLabel("no evaluation yet")
        self.badge.setObjectName("collapse_badge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setWordWrap(True)
        self.body.addWidget(self.badge)  # a banner over the plots: it must be seen, and it may be long
        views, pages = [], []
        for left, bottom, title in (("rank", "step", "effective rank vs D"),
                                    ("relative spread", "step", "spread vs near collapse"),
                                    ("\u03c3\u2096 / \u03c3\u2081", "k", "singular spectrum")):
            # the legend in a row under its plot: in the plot, three entries covered the curves of a
            # 90 px high plot in every corner (a laptop's bottom dock)
            widget, plot = new_plot(self, left, bottom, title, legend=False)
            # log axes: ranks and spreads shrink by factors when a representation collapses
            plot.setLogMode(y=True)
            set_log_ticks(plot.getAxis("left"))
            legend = LegendRow()
            page = QWidget()
            column = QVBoxLayout(page)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(0)
            column.addWidget(widget, 1)
            column.addWidget(legend)
            views.append((widget, plot, legend))
            pages.append(page)
        (self.rank_widget, self.rank_plot, self.rank_legend), \
            (self.spread_widget, self.spread_plot, self.spread_legend), \
            (self.spectrum_widget, self.spectrum_plot, self.spectrum_legend) = views
        # three plots side by side in a wide dock, stacked in a tall narrow one, one tab each in a small one
        self.plots = PlotGroup([(pages[0], "effective rank"), (pages[1], "spread"), (pages[2], "singular spectrum")],
                               (self.PLOT_WIDTH, self.PLOT_HEIGHT), object_name="collapse_plot",
                               tips=["", "The relative spread of the embeddings against the near-collapse threshold", ""])
        self.plot_tabs = self.plots.tabs
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

    # below this a plot's title, tick labels and legend run into each other or off its edge
    PLOT_WIDTH, PLOT_HEIGHT = 260, 120

    @property
    def plot_mode(self) -> str:
        return self.plots.mode

    def set_plot_mode(self, mode: str) -> None:
        """'row' (side by side), 'column' (stacked) or 'tabs' (one plot at a time, each at full size)."""
        self.plots.set_mode(mode)

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

    def _ingest(self, records: list[dict]) -> None:
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
        for legend, items in ((self.rank_legend, (self.rank_item, self.rank_reference, self.rank_threshold)),
                              (self.spread_legend, (self.spread_item, self.spread_threshold)),
                              (self.spectrum_legend, (self.spectrum_item,))):
            legend.set_entries([(item.name(), item.opts["pen"].color(), item.opts["pen"].style()) for item in items])
        self._show_badge()
