"""Training curves: every loss term (``loss_plot``), and probe / kNN accuracy beside the figures every
result is read against (``probe_plot``).

Each panel is fed ``metrics.jsonl``-style records (``event.to_record()`` of engine/events.py) through
``add_records(records)`` and emptied by ``clear()``; kinds a panel does not draw are ignored, and a
missing, null or non-finite value is skipped. Plot items are created once (per run) and updated with
``setData``; long curves are decimated before drawing so a batch of hundreds of records costs a few
milliseconds whatever the length of the run. Only the GUI thread may call these methods.

The small pieces shared with explorer/views/health.py (the panel frame with its "what am I looking
at?" help, the light/dark colours, the growing numeric series, decimation) live here too.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QHBoxLayout, QLabel, QSizePolicy, QSlider, QToolButton,
                               QVBoxLayout, QWidget)

from engine.metrics import collapse
from explorer.views import wrapped_tooltip

# --- colours -------------------------------------------------------------------------------------
# Two versions of one qualitative palette: darker hues on a white background, lighter ones on a dark
# background, so every line keeps its contrast (>= 3:1) in both themes.
_LIGHT = ("#1f5fbf", "#d9590b", "#16834a", "#c0262d", "#7a3fb8", "#8a5a2b", "#c2378a", "#0f7f86",
          "#5c6670", "#9a8a00")
_DARK = ("#6aa7ff", "#ff9a4d", "#4fd08a", "#ff6b6b", "#c39bff", "#d9a46a", "#ff7fc8", "#4fd6dc",
         "#b8c2cc", "#e6d84a")
BACKGROUND = {False: "#ffffff", True: "#1e1f22"}
FOREGROUND = {False: "#202124", True: "#dcdfe4"}
MUTED = {False: "#70757a", True: "#8f959e"}
# the verdict colours: healthy / warning / collapse
GOOD = {False: "#16834a", True: "#4fd08a"}
WARN = {False: "#e0a21b", True: "#e0a21b"}
BAD = {False: "#c0262d", True: "#ff6b6b"}


def verdict_style(verdict: str | None, dark: bool) -> tuple[str, str, str | None]:
    """(state, text colour, background or None) of a collapse badge: "none" before any verdict (no
    alarm: neutral), "healthy" (green), "warning" for dimensional or near collapse (amber),
    "collapse" for complete collapse (red)."""
    if not verdict:
        return "none", FOREGROUND[dark], None
    if verdict == collapse.HEALTHY:
        return "healthy", "#ffffff", "#1f7a46" if dark else GOOD[False]
    if verdict in collapse.VERDICTS and verdict != collapse.COMPLETE:
        return "warning", "#1b1f24", WARN[dark]
    return "collapse", "#ffffff", BAD[False]


def color(index: int, dark: bool) -> QColor:
    """The ``index``-th colour of the palette for the theme."""
    palette = _DARK if dark else _LIGHT
    return QColor(palette[index % len(palette)])


def palette_is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def number(value: Any) -> float | None:
    """A finite float, or None for a missing, null, boolean, non-numeric or non-finite value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --- data ----------------------------------------------------------------------------------------

class Series:
    """A growing (x, y) pair in numpy buffers: appending is amortised O(1), reading is a view."""

    def __init__(self) -> None:
        self._x = np.empty(64)
        self._y = np.empty(64)
        self.n = 0

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        k = len(xs)
        if self.n + k > len(self._x):
            size = max(2 * len(self._x), self.n + k)
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)
        self._x[self.n:self.n + k] = xs
        self._y[self.n:self.n + k] = ys
        self.n += k

    def append(self, x: float, y: float) -> None:
        self.extend((x,), (y,))

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.n]

    def clear(self) -> None:
        self.n = 0

    def __len__(self) -> int:
        return self.n


def decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` points for drawing: the curve is cut into max_points / 2 bins and each
    bin keeps its lowest and highest point, in step order ("peak" decimation, so a spike or a dip of
    one step stays visible). Shorter curves come back unchanged."""
    n = len(x)
    if n <= max_points or max_points < 4:
        return x, y
    k = int(math.ceil(n / (max_points // 2)))
    m = n // k * k
    yb = y[:m].reshape(-1, k)
    base = np.arange(len(yb)) * k
    i_min, i_max = yb.argmin(1) + base, yb.argmax(1) + base
    idx = np.stack([np.minimum(i_min, i_max), np.maximum(i_min, i_max)], 1).ravel()
    idx = np.concatenate([idx, np.arange(m, n)])
    return x[idx], y[idx]


def bin_mean(x: np.ndarray, ys: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``x`` and of each column of ``ys`` (n, c) over consecutive bins, so that at most
    ``max_points`` rows remain (for areas, where an average is the honest summary of a bin)."""
    n = len(x)
    if n <= max_points:
        return x, ys
    k = int(math.ceil(n / max_points))
    m = n // k * k
    xm = x[:m].reshape(-1, k).mean(1)
    ym = ys[:m].reshape(-1, k, ys.shape[1]).mean(1)
    if m < n:
        xm = np.append(xm, x[m:].mean())
        ym = np.vstack([ym, ys[m:].mean(0)])
    return xm, ym


def ema(values: np.ndarray, alpha: float, start: float = 0.0, count: int = 0) -> tuple[np.ndarray, float]:
    """Debiased exponential moving average (as in TensorBoard and Adam):
    s_t = alpha s_{t-1} + (1 - alpha) y_t, shown as s_t / (1 - alpha^t). ``start`` is the biased state
    s and ``count`` the number of points before ``values``, so a curve can be smoothed piece by piece.
    Returns the smoothed values and the new biased state.

    Vectorised by chunks: inside a chunk s_j = alpha^(j+1) s + (1 - alpha) alpha^j sum_{i<=j} alpha^-i y_i,
    with chunks short enough that alpha^-i stays far from overflow (no scipy: importing scipy.signal
    would freeze the window for seconds on the first batch)."""
    y = np.asarray(values, dtype=float)
    if len(y) == 0:
        return y.copy(), start
    if alpha <= 0:
        return y.copy(), float(y[-1])
    size = int(min(4096, max(1, 150 // -math.log10(alpha))))
    biased = np.empty_like(y)
    s = float(start)
    for lo in range(0, len(y), size):
        chunk = y[lo:lo + size]
        j = np.arange(len(chunk))
        power = alpha ** j
        part = alpha * power * s + (1 - alpha) * power * np.cumsum(chunk * alpha ** -j)
        biased[lo:lo + len(chunk)] = part
        s = float(part[-1])
    t = count + np.arange(1, len(y) + 1)
    return biased / (1 - alpha ** t), s


# --- the panel frame -----------------------------------------------------------------------------

class HelpButton(QToolButton):
    """The "What am I looking at?" button; its panel makes it a plain "?" when the title row is
    narrow, so the long label never sets the minimum width of a dock (the docks share a 1366-1600 px
    wide window)."""

    FULL, SHORT = "What am I looking at?", "?"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setText(self.FULL)

    def full_width(self) -> int:
        return self.fontMetrics().horizontalAdvance(self.FULL) + self.short_width() - \
            self.fontMetrics().horizontalAdvance(self.SHORT)

    def short_width(self) -> int:
        return self.minimumSizeHint().width()

    def minimumSizeHint(self) -> QSize:  # Qt override: "?" is enough
        hint = super().minimumSizeHint()
        if self.text() != self.SHORT:
            hint.setWidth(hint.width() - self.fontMetrics().horizontalAdvance(self.text())
                          + self.fontMetrics().horizontalAdvance(self.SHORT))
        return hint

    def set_compact(self, compact: bool) -> None:
        text = self.SHORT if compact else self.FULL
        if text != self.text():
            self.setText(text)


class Panel(QWidget):
    """A dock panel: a title row (with room for controls) and a "What am I looking at?" button that
    shows ``help_text``; plots registered with ``_theme_plot`` follow the light or dark theme."""

    title: ClassVar[str] = ""
    help_text: ClassVar[str] = ""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._pending: list[dict] = []  # records kept while the panel is tabbed away
        self._dark = palette_is_dark(self.palette())
        self._themed: list[pg.PlotItem] = []
        self._titles: dict[int, str] = {}
        self._backgrounds: list[pg.GraphicsView] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        header = QHBoxLayout()
        header.setSpacing(6)
        self.title_label = QLabel(f"<b>{self.title}</b>")
        header.addWidget(self.title_label)
        self.controls = QHBoxLayout()
        self.controls.setSpacing(6)
        header.addLayout(self.controls)
        header.addStretch(1)
        self.help_button = HelpButton()
        self.help_button.setCheckable(True)
        self.help_button.setToolTip(wrapped_tooltip(self.help_text))
        self.help_button.setObjectName("help_button")
        header.addWidget(self.help_button)
        layout.addLayout(header)
        self._header = header
        self.help_label = QLabel(self.help_text)
        self.help_label.setWordWrap(True)
        self.help_label.setObjectName("help_label")
        self.help_label.setTextFormat(Qt.TextFormat.PlainText)
        self.help_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.help_label.setContentsMargins(6, 4, 6, 4)
        self.help_label.setAutoFillBackground(True)
        self.help_label.setFrameShape(QLabel.Shape.StyledPanel)
        self.help_label.hide()
        self.help_button.toggled.connect(self.help_label.setVisible)
        layout.addWidget(self.help_label)
        self.body = QVBoxLayout()
        self.body.setSpacing(3)
        layout.addLayout(self.body, 1)

    def resizeEvent(self, event) -> None:  # Qt override
        super().resizeEvent(event)
        self._fit_help_button()

    def _fit_help_button(self) -> None:
        """The full "What am I looking at?" label where the title row has room for it, else "?"."""
        b = self.help_button
        others = self._header.sizeHint().width() - b.sizeHint().width()
        margins = self.layout().contentsMargins()
        b.set_compact(others + b.full_width() > self.width() - margins.left() - margins.right())

    # theme --------------------------------------------------------------------------------------
    @property
    def dark(self) -> bool:
        return self._dark

    def _theme_view(self, view: pg.GraphicsView) -> None:
        self._backgrounds.append(view)
        view.setBackground(BACKGROUND[self._dark])

    def _theme_plot(self, plot: pg.PlotItem, title: str = "") -> None:
        self._themed.append(plot)
        self._titles[id(plot)] = title
        self._style_plot(plot)

    def _set_plot_title(self, plot: pg.PlotItem, title: str) -> None:
        if self._titles.get(id(plot)) == title:
            return  # setTitle re-lays out the plot: ~1-2 ms, too much for every batch
        self._titles[id(plot)] = title
        plot.setTitle(title, color=FOREGROUND[self._dark], size="9pt")

    def _style_plot(self, plot: pg.PlotItem) -> None:
        fg, muted = FOREGROUND[self._dark], MUTED[self._dark]
        for name in ("left", "bottom", "right", "top"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen(muted))
            axis.setTextPen(pg.mkPen(fg))
            if axis.label is not None:
                axis.label.setDefaultTextColor(QColor(fg))
        # no grid: pyqtgraph draws grid lines as part of the axes, so every curve update would
        # repaint both axes with their text (3x the paint time of a step here)
        if plot.legend is not None:
            plot.legend.setLabelTextColor(fg)
            plot.legend.setBrush(pg.mkBrush(QColor(BACKGROUND[self._dark]).lighter(110) if self._dark
                                            else QColor(255, 255, 255, 220)))
            plot.legend.setPen(pg.mkPen(muted))
            for _sample, label in plot.legend.items:  # labels already shown keep their own colour
                label.setText(label.text, color=fg)
        title = self._titles.get(id(plot))
        if title:
            plot.setTitle(title, color=fg, size="9pt")

    def set_theme(self, dark: bool) -> None:
        """Colours for a light (False) or dark (True) window. Follows the palette by itself too."""
        self._dark = bool(dark)
        for view in self._backgrounds:
            view.setBackground(BACKGROUND[self._dark])
        for plot in self._themed:
            self._style_plot(plot)
        self._restyle()

    def _restyle(self) -> None:
        """Re-pen the panel's own items after a theme change."""

    def changeEvent(self, event: QEvent) -> None:  # Qt override
        if event.type() == QEvent.Type.PaletteChange and palette_is_dark(self.palette()) != self._dark:
            self.set_theme(palette_is_dark(self.palette()))
        super().changeEvent(event)

    # the contract ------------------------------------------------------------------------------
    def clear(self) -> None:
        self._pending: list[dict] = []
        self._reset()

    def add_records(self, records: Iterable[dict]) -> None:
        """Take new records. A panel tabbed behind another one only keeps them, and takes them in
        when its tab comes to the front: the GUI thread does no work for what nobody sees."""
        if self.tabbed_away():
            self._pending.extend(records)
            self._watch_dock()
            return
        if self._pending:
            records, self._pending = self._pending + list(records), []
        self._ingest(records)

    def tabbed_away(self) -> bool:
        # the window is on screen but this panel is not: a hidden tab, or a dock tabbed behind
        # another (Qt leaves such a dock visible and moves it off the window: empty visible region)
        return self.window().isVisible() and (not self.isVisible() or self.visibleRegion().isEmpty())

    def _take_pending(self) -> None:
        if self._pending and not self.tabbed_away():
            records, self._pending = self._pending, []
            self._ingest(records)

    def showEvent(self, event) -> None:  # Qt override
        super().showEvent(event)
        QTimer.singleShot(0, self._take_pending)

    def _watch_dock(self) -> None:
        """A dock brought to the front by its tab gets no show event: follow its visibility."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and not getattr(self, "_watched_dock", None) is dock:
            self._watched_dock = dock
            dock.visibilityChanged.connect(lambda visible: visible and QTimer.singleShot(0, self._take_pending))

    def _reset(self) -> None:
        raise NotImplementedError

    def _ingest(self, records: Iterable[dict]) -> None:
        raise NotImplementedError


def new_plot(panel: Panel, left: str, bottom: str = "step", title: str = "",
             legend: bool = True) -> tuple[pg.PlotWidget, pg.PlotItem]:
    """A PlotWidget themed by ``panel``, with axis labels and (optionally) a legend."""
    widget = pg.PlotWidget()
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


def legend_swatch(pen: Any = None, brush: Any = None, symbol: str | None = None) -> pg.PlotDataItem:
    """An item that is never drawn, only shown in a legend (a filled square for an area)."""
    if brush is not None:
        return pg.PlotDataItem([0, 1], [0, 0], pen=pen, fillLevel=0, fillBrush=brush)
    return pg.PlotDataItem([0, 1], [0, 0], pen=pen, symbol=symbol)


# --- loss ----------------------------------------------------------------------------------------

class _Term:
    """One loss term: its raw and smoothed series and the two items that draw them."""

    def __init__(self, index: int, raw: pg.PlotDataItem, smooth: pg.PlotDataItem):
        self.index = index
        self.raw = Series()
        self.smooth = Series()
        self.state = 0.0  # the biased EMA state after the last point
        self.raw_item = raw
        self.smooth_item = smooth
        self.is_total = False  # the total is drawn thicker: the terms add up to it


class LossPlot(Panel):
    """Every loss term of the method against the step, smoothed (EMA slider) and optionally on a
    log scale; the raw values stay visible, faint, behind the smoothed line."""

    title = "Loss"
    help_text = (
        "The training objective, one line per term, against the optimisation step. The loss is what "
        "gradient descent minimises, not what we want: a falling loss says the network is learning the "
        "task it was given (cross-entropy, a triplet or contrastive margin, InfoNCE, a pretext task), "
        "not that the representation is good; read it beside the probe accuracy and the collapse "
        "indicators. Methods with several terms (a metric-learning loss plus a regulariser, a "
        "contrastive loss with its parts) show each term, so you can see which one drives training. "
        "Each step sees one mini-batch, so the raw curve (faint) is noisy; the solid line is an "
        "exponential moving average (the smoothing slider sets its weight, 0 = raw). A loss that "
        "suddenly drops to a constant, or to zero, is a warning sign of collapse or of a trivial "
        "solution (all triplets easy); log scale helps when a loss spans several orders of magnitude.")

    max_points = 4000  # drawn points per curve (peak decimation above)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("loss_plot")
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setObjectName("loss_smoothing")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setValue(60)
        # narrow docks shrink the slider before anything else is cut
        self.smoothing_slider.setMinimumWidth(40)
        self.smoothing_slider.setMaximumWidth(110)
        self.smoothing_slider.setToolTip(wrapped_tooltip(
            "Weight of the exponential moving average: 0 shows the raw loss, 0.99 averages over about 100 steps"))
        self.smoothing_value = QLabel()
        self.smoothing_value.setMinimumWidth(28)
        self.log_check = QCheckBox("log scale")
        self.log_check.setObjectName("loss_log")
        self.log_check.setToolTip("Logarithmic loss axis (values <= 0 are not drawn on it)")
        self.controls.addWidget(QLabel("smoothing"))
        self.controls.addWidget(self.smoothing_slider)
        self.controls.addWidget(self.smoothing_value)
        self.controls.addWidget(self.log_check)
        self.widget, self.plot = new_plot(self, "loss")
        self.body.addWidget(self.widget, 1)
        self._terms: dict[str, _Term] = {}
        self._show_smoothing_value()
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.log_check.toggled.connect(self._on_log_toggled)

    # public -------------------------------------------------------------------------------------
    @property
    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100

    def set_smoothing(self, alpha: float) -> None:
        self.smoothing_slider.setValue(int(round(min(max(alpha, 0.0), 0.99) * 100)))

    def set_log_scale(self, on: bool) -> None:
        self.log_check.setChecked(on)

    def terms(self) -> list[str]:
        return list(self._terms)

    def curve_data(self, name: str, smoothed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """All (step, value) points of a loss term (raw, or the moving average), before decimation."""
        term = self._terms[name]
        series = term.smooth if smoothed else term.raw
        return series.x.copy(), series.y.copy()

    def _reset(self) -> None:
        for term in self._terms.values():
            for item in (term.raw_item, term.smooth_item):
                self.plot.removeItem(item)
        if self.plot.legend is not None:
            self.plot.legend.clear()
        self._terms.clear()

    def _ingest(self, records: Iterable[dict]) -> None:
        new: dict[str, tuple[list[float], list[float]]] = {}
        for record in records:
            if not isinstance(record, dict) or record.get("kind") != "step":
                continue
            step, losses = number(record.get("step")), record.get("losses")
            if step is None or not isinstance(losses, dict):
                continue
            for name, value in losses.items():
                v = number(value)
                if v is None:
                    continue
                xs, ys = new.setdefault(str(name), ([], []))
                xs.append(step)
                ys.append(v)
        alpha = self.smoothing
        for name, (xs, ys) in new.items():
            term = self._terms.get(name) or self._add_term(name)
            count = len(term.raw)
            term.raw.extend(xs, ys)
            smooth, term.state = ema(np.asarray(ys, dtype=float), alpha, term.state, count)
            term.smooth.extend(xs, smooth)
            self._draw(term)

    # internals ----------------------------------------------------------------------------------
    def _add_term(self, name: str) -> _Term:
        index = len(self._terms)
        raw = pg.PlotDataItem()
        smooth = pg.PlotDataItem(name=name)
        term = _Term(index, raw, smooth)
        term.is_total = name in ("loss", "total")
        raw.setZValue(-1)
        self.plot.addItem(raw)
        self.plot.addItem(smooth)
        self._terms[name] = term
        self._pen(term)
        return term

    def _pen(self, term: _Term) -> None:
        c = color(term.index, self.dark)
        faint = QColor(c)
        faint.setAlpha(70)
        term.raw_item.setPen(pg.mkPen(faint, width=1))
        term.smooth_item.setPen(pg.mkPen(c, width=2.4 if term.is_total else 1.6))

    def _restyle(self) -> None:
        for term in self._terms.values():
            self._pen(term)

    def _draw(self, term: _Term) -> None:
        smoothing = self.smoothing > 0
        log = self.log_check.isChecked()
        for series, item, visible in ((term.raw, term.raw_item, smoothing), (term.smooth, term.smooth_item, True)):
            item.setVisible(visible)
            if not visible:
                continue
            x, y = decimate(series.x, series.y, self.max_points)
            if log:
                # values <= 0 have no logarithm: leave a gap instead of a warning
                y = np.where(y > 0, y, np.nan)
            # linear axis: the values are finite (``number``), so pyqtgraph's NaN handling is skipped
            item.setData(x, y, connect="finite" if log else "all", skipFiniteCheck=not log)

    def _redraw(self) -> None:
        for term in self._terms.values():
            self._draw(term)

    def _show_smoothing_value(self) -> None:
        self.smoothing_value.setText(f"{self.smoothing:.2f}")

    def _on_smoothing_changed(self, _value: int) -> None:
        self._show_smoothing_value()
        alpha = self.smoothing
        for term in self._terms.values():
            smooth, term.state = ema(term.raw.y, alpha)
            term.smooth.clear()
            term.smooth.extend(term.raw.x, smooth)
        self._redraw()

    def _on_log_toggled(self, on: bool) -> None:
        self.plot.setLogMode(y=on)
        self._redraw()
        self.plot.enableAutoRange()


# --- probe ---------------------------------------------------------------------------------------

# evaluation key, legend name, palette index
PROBE_CURVES = (("linear_probe_acc", "linear probe", 0), ("knn_acc", "kNN", 1),
                ("precision_at_1", "precision@1", 2), ("map_at_r", "MAP@R", 4))
# evaluation key, legend name, palette index (of the curve it is read against), dash style
PROBE_REFERENCES = (
    ("baseline_linear_probe_acc", "random init, linear probe", 0, Qt.PenStyle.DashLine),
    ("baseline_knn_acc", "random init, kNN", 1, Qt.PenStyle.DashLine),
    ("pixels_linear_probe_acc", "raw pixels, linear probe", 8, Qt.PenStyle.DotLine),
)


class ProbePlot(Panel):
    """Linear-probe and kNN accuracy at each evaluation, with the random-initialisation and raw-pixel
    figures as horizontal reference lines; precision@1 and MAP@R when the engine reports them. Points
    of the final evaluation (the full protocol: whole train split against whole test split) are
    marked with a star."""

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
        self.setObjectName("probe_plot")
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

    def _ingest(self, records: Iterable[dict]) -> None:
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
