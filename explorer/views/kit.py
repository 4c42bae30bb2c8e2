"""The view kit: what every dock panel of the window shares.

- ``Panel``: the base of every dock's content. It declares what the window needs to dock it (``name``,
  ``dock_title``, ``long_title``, ``help_text``), draws the header row (an optional bold title, the
  panel's own controls, one ``HelpButton`` that opens the help paragraph under it), follows the
  light or dark theme, and redraws only when it is on screen: ``refresh()`` draws now if the panel
  is shown, else marks it and draws when its tab comes to the front.
- ``FRAMES``: redraws that the session's signals ask for (``Panel.refresh_later``) run one per
  frame (16 ms), so an evaluation that changes every plot at once never makes one frame late.
- ``thumbnail_pixmap``: a dataset image as a pixmap, crisp when enlarged, smooth when shrunk;
  ``ThumbnailPixmaps``: those of one dataset, each made once per size.
- ``in_scroll_area``: a panel in a scroll area that fits it to the dock and scrolls below its minimum.
- ``distance_text``: a distance (or a difference of two) as every panel shows it.

Only the GUI thread may call any of this.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, ClassVar

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton, QVBoxLayout, \
    QWidget

from explorer.views import wrapped_tooltip
from explorer.views.palette import BACKGROUND, FOREGROUND, MUTED, palette_is_dark

FRAME_MS = 16


def distance_text(d: float, signed: bool = False) -> str:
    """Three decimals, or two significant digits below 0.01: a collapsed embedding's distances are tiny
    but not zero, and the Neighbours panel and the Triplet inspector must show the same figure for one
    pair (one printed 0.000 where the other showed 3.2e-06)."""
    sign = "+" if signed else ""
    return f"{d:{sign}.3f}" if abs(d) >= 0.01 or d == 0 else f"{d:{sign}.1e}"


def thumbnail_image(image: np.ndarray) -> QImage:
    """A uint8 (H, W) grey or (H, W, 3) colour image as a QImage that owns its pixels (the numpy array
    may go away), at its own size."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if image.ndim == 2:
        return QImage(image.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def thumbnail_pixmap(image: np.ndarray, size: int) -> QPixmap:
    """A uint8 (H, W) grey or (H, W, 3) colour image as a pixmap whose longer side is ``size``: pixels
    kept sharp when enlarged (an 8x8 digit shows its 64 pixels, not a blur), smoothed when shrunk."""
    q = thumbnail_image(image)
    mode = Qt.TransformationMode.FastTransformation if max(q.height(), q.width()) < size \
        else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(q.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))


class ThumbnailPixmaps:
    """The pixmaps of one dataset's test thumbnails, each made once per size and kept (the most
    recently used ``limit``): scaling one costs ~1 ms, and a click shows a dozen or more, mostly
    ones shown before (a neighbour is clicked next, its neighbours overlap)."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._dataset = None
        self._pixmaps: OrderedDict[tuple[int, int], QPixmap] = OrderedDict()

    def get(self, dataset, row: int, size: int) -> QPixmap:
        """Test row ``row`` of ``dataset`` (an engine.data.ImageDataset) at ``size`` pixels."""
        if dataset is not self._dataset:  # another run's images: none of the kept ones are its
            self._dataset, self._pixmaps = dataset, OrderedDict()
        key = (int(row), int(size))
        pixmap = self._pixmaps.get(key)
        if pixmap is None:
            pixmap = self._pixmaps[key] = thumbnail_pixmap(dataset.thumbnail("test", int(row)), size)
            if len(self._pixmaps) > self.limit:
                self._pixmaps.popitem(last=False)
        else:
            self._pixmaps.move_to_end(key)
        return pixmap


class _FrameQueue(QObject):
    """Work asked for by signals, one item per frame: each ``add(owner, callback)`` runs at a later
    tick of a 16 ms timer, at most one per tick, once per owner however often it is asked. The map,
    the neighbours and every visible panel redraw at a snapshot; drawn in one frame they made it late
    (p99 of a 16 ms timer 25-30 ms while training), one a frame they do not."""

    def __init__(self):
        super().__init__()
        self._queue: dict[int, tuple[QObject, Callable[[], None]]] = {}
        self._timer = QTimer(self, interval=FRAME_MS)
        self._timer.timeout.connect(self._on_timer_timeout)

    def add(self, owner: QObject, callback: Callable[[], None]) -> None:
        self._queue.setdefault(id(owner), (owner, callback))
        if not self._timer.isActive():
            self._timer.start()

    def discard(self, owner: QObject) -> None:
        self._queue.pop(id(owner), None)

    def flush(self) -> None:
        """Run everything waiting now (before reading a panel in a test or an export)."""
        while self._queue:
            self._run_next()

    def _on_timer_timeout(self) -> None:
        if not self._queue:
            self._timer.stop()  # only after an empty tick: the next item still waits a frame
            return
        self._run_next()

    def _run_next(self) -> None:
        _owner, callback = self._queue.pop(next(iter(self._queue)))  # the oldest first
        try:
            callback()
        except RuntimeError as error:  # the owner's widget was deleted while it waited
            if "already deleted" not in str(error):
                raise


class _Frames:
    """The application's one frame queue, made when first used (a QObject needs the QApplication)."""

    _queue: _FrameQueue | None = None

    def __getattr__(self, name):
        if _Frames._queue is None:
            _Frames._queue = _FrameQueue()
        return getattr(_Frames._queue, name)


FRAMES = _Frames()


class HelpButton(QToolButton):
    """The one "What am I looking at?" button of a panel; it shows a plain "?" when the header row is
    narrow, so the long label never sets the minimum width of a dock (the docks share a 1280-1600 px
    wide window)."""

    FULL, SHORT = "What am I looking at?", "?"

    def __init__(self, help_text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setText(self.FULL)
        self.setCheckable(True)
        self.setObjectName("help_button")
        self.setToolTip(wrapped_tooltip(help_text))
        # a tool button's policy is Fixed, which makes its full label the header's least width
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

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
    """The content of a dock: a header row, the help paragraph (hidden until asked for), a body.

    Subclasses declare ``name`` (the object name), ``dock_name`` (the window's name for its dock,
    ``<dock_name>_dock``; default ``name``), ``dock_title`` (the tab), ``long_title`` (the View and Help
    menus), ``title`` (a bold title in the header, optional) and ``help_text``; they add their widgets to ``self.controls`` (the header row)
    and ``self.body``, and draw in ``redraw()``. ``refresh()`` calls ``redraw()`` now if the panel is on
    screen, else when it comes to the front; ``refresh_later()`` does the same a frame later, in turn
    with the other panels (for work the session's signals ask for). Plots registered with
    ``_theme_plot`` follow the light or dark theme.
    """

    name: ClassVar[str] = ""
    dock_name: ClassVar[str] = ""
    dock_title: ClassVar[str] = ""
    long_title: ClassVar[str] = ""
    title: ClassVar[str] = ""
    help_text: ClassVar[str] = ""
    margins: ClassVar[tuple[int, int, int, int] | None] = (4, 4, 4, 4)  # None: the style's
    scrolls: ClassVar[bool] = False  # the window puts the panel in a scroll area (in_scroll_area)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        if self.name:
            self.setObjectName(self.name)
        self._dirty = True  # the first time it is shown it draws (or says what is missing)
        self._dock: QDockWidget | None = None
        self._dark = palette_is_dark(self.palette())
        self._themed: list[pg.PlotItem] = []
        self._titles: dict[int, str] = {}
        self._backgrounds: list[pg.GraphicsView] = []
        layout = QVBoxLayout(self)
        if self.margins is not None:
            layout.setContentsMargins(*self.margins)
            layout.setSpacing(3)
        header = QHBoxLayout()
        header.setSpacing(6)
        self.title_label = QLabel(f"<b>{self.title}</b>") if self.title else None
        if self.title_label is not None:
            header.addWidget(self.title_label)
        self.controls = QHBoxLayout()
        self.controls.setSpacing(6)
        header.addLayout(self.controls)
        header.addStretch(1)
        self.help_button = HelpButton(self.help_text)
        self.help_button.setVisible(bool(self.help_text))
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
        if self.margins is not None:  # tight panels space their rows tightly too; the others as the style does
            self.body.setSpacing(3)
        layout.addLayout(self.body, 1)

    @classmethod
    def dock_key(cls) -> str:
        return cls.dock_name or cls.name

    @classmethod
    def menu_title(cls) -> str:
        return cls.long_title or cls.dock_title or cls.title or cls.name

    def fit_width(self, width: int) -> None:
        """The width the panel has on screen (its dock's, also when a scroll area holds it wider, at
        its minimum): a panel that can arrange itself in fewer columns does so here (subclasses)."""

    def show_help(self) -> None:
        """Open the help paragraph (the Help menu's entries)."""
        self.help_button.setChecked(True)

    # the header ---------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # Qt override
        super().resizeEvent(event)
        self._fit_help_button()

    def _fit_help_button(self) -> None:
        """The full "What am I looking at?" label where the header row has room for it, else "?"."""
        b = self.help_button
        others = self._header.sizeHint().width() - b.sizeHint().width()
        margins = self.layout().contentsMargins()
        b.set_compact(others + b.full_width() > self.width() - margins.left() - margins.right())

    # redraw only when visible ---------------------------------------------------------------------
    def tabbed_away(self) -> bool:
        """The window is on screen but this panel is not: a hidden tab, or a dock tabbed behind another
        (Qt leaves such a dock visible and moves it off the window: an empty visible region). A panel
        outside a window on screen (a script, a test, an export) counts as shown."""
        return self.window().isVisible() and (not self.isVisible() or self.visibleRegion().isEmpty())

    def refresh(self) -> None:
        """Redraw now if on screen, else when shown."""
        if self.tabbed_away():
            self._dirty = True
            self._follow_dock()
            return
        self._dirty = False
        FRAMES.discard(self)
        self.redraw()

    def refresh_later(self) -> None:
        """``refresh()`` in a later frame, in turn with the other panels."""
        self._dirty = True
        if self.tabbed_away():
            self._follow_dock()
        else:
            FRAMES.add(self, self._refresh_if_dirty)

    def redraw(self) -> None:
        """Draw what the panel shows (subclasses)."""

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self.refresh()

    def showEvent(self, event) -> None:  # Qt override
        super().showEvent(event)
        self._follow_dock()
        if self._dirty:
            if self.tabbed_away():  # shown, but not placed yet: once the layout has put it on screen
                QTimer.singleShot(0, self._refresh_if_dirty)
            else:
                self.refresh()

    def _follow_dock(self) -> None:
        """A dock brought to the front by its tab gets no show event: follow its visibility."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and dock is not self._dock:
            self._dock = dock
            dock.visibilityChanged.connect(self._on_dock_visibility_changed)

    def _on_dock_visibility_changed(self, visible: bool) -> None:
        if visible and self._dirty:
            QTimer.singleShot(0, self._refresh_if_dirty)  # once the dock layout has put it back

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


class _FitScrollArea(QScrollArea):
    """Gives its widget the viewport's size, never less than the widget's minimum: scroll bars appear
    only below the minimum. (``widgetResizable`` would size a widget holding word-wrapped labels by
    its preferred height, taller than the dock, and scroll a plot that should shrink.)"""

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def eventFilter(self, watched, event) -> bool:
        # new content (a longer text, another tile) changes the least height: fit again
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self._fit()
        return super().eventFilter(watched, event)

    def _fit(self) -> None:
        widget, view = self.widget(), self.viewport().size()
        if isinstance(widget, Panel):
            widget.fit_width(view.width())  # it may lay itself out narrower (fewer columns) first
        if widget is not None:
            width = max(view.width(), widget.minimumSizeHint().width())
            layout = widget.layout()
            # the least height at this width: wrapped labels need more lines when narrow
            least = (layout.totalMinimumHeightForWidth(width) if layout is not None and layout.hasHeightForWidth()
                     else widget.minimumSizeHint().height())
            widget.resize(width, max(view.height(), least))


def in_scroll_area(widget: QWidget) -> QScrollArea:
    """The widget in a frameless scroll area, for a dock: a dock squeezed below the panel's minimum
    size then scrolls instead of drawing its rows over each other."""
    area = _FitScrollArea(objectName=f"{widget.objectName()}_scroll")
    area.setWidget(widget)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area
