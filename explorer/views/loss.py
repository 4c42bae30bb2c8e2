"""The loss panel (``loss_plot``): every loss term of the run against the step, smoothed."""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QLabel, QSlider, QWidget

from explorer.views import wrapped_tooltip
from explorer.views.palette import color
from explorer.views.plots import new_plot
from explorer.views.records import RecordPanel
from explorer.views.series import Series, decimate, ema, number


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


class LossPlot(RecordPanel):
    """Every loss term of the method against the step, smoothed (EMA slider) and optionally on a
    log scale; the raw values stay visible, faint, behind the smoothed line."""

    name = "loss_plot"
    dock_title = "Loss"
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

    max_points = 4000  # drawn points per curve (peak decimation: series.decimate)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
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

    def _ingest(self, records: list[dict]) -> None:
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
