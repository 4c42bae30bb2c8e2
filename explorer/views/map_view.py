"""The map: the evaluation subset in 2D, refreshed at every snapshot, animated, scrubbed in time.

Drawing 70 000 points with pyqtgraph's ScatterPlotItem costs 300-600 ms a frame (a QPainter call
per point). ``PointCloudItem`` instead stamps every point into an ARGB numpy buffer the size of the
viewport (one vectorised write per pixel of the dot's footprint) and draws that buffer as one QImage:
refresh + render stays under 50 ms for 70k points (``bench/map_render.py``). Pan and zoom re-stamp
from the data coordinates, so dots stay crisp at every zoom.

The stamped image is kept and drawn again as it is while the view, the size and the data stay the
same: a click that rings a few points repaints the map without stamping a million points again. The
rings (the clicked point, its neighbours, a selection) are ``RingMarks`` on top: one small item
each, one pixmap stamped per ring.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFrame, QGraphicsPolygonItem, QHBoxLayout,
                               QLabel, QScrollArea, QSizePolicy, QSlider, QSplitter, QToolButton, QVBoxLayout, QWidget)

from engine.projection import PROJECTIONS
from explorer.session import CLUSTERINGS, COLOURINGS, RunState, Session
from explorer.state import MapSnapshot
from explorer.views import wrapped_tooltip
from explorer.views.flow import FlowLayout
from explorer.views.kit import FRAMES, HelpButton, thumbnail_image, thumbnail_pixmap
from explorer.views.palette import (BACKGROUND, RIGHT, SELECTION, UNLABELLED, WRONG, argb, class_palette,
                                    map_triplet_colours, ramp, verdict_style)

ANIMATION_MS = 300
PLAY_MS = 700  # the time-lapse's Play: one snapshot this often (each one's move takes ANIMATION_MS)
FLASH_MS = 3000  # how long the map says what a rectangle or lasso selected
HULL_COVERAGE = 0.9  # a cluster's outline goes round this share of its points, those nearest its centre


def projection_label(name: str) -> str:
    """The name a person reads for a projection of ``engine.projection.PROJECTIONS``."""
    return PROJECTIONS.get(name).label if name in PROJECTIONS else name


THUMBNAILS_AT = 400  # at most this many points in view: each is drawn as its image (level of detail)
THUMBNAIL_PX = (18, 64)  # the drawn images' side, from crowded to sparse


class PointCloudItem(pg.GraphicsObject):
    """Many points of one size, each with its own colour, drawn as one image per paint; zoomed in far
    enough (THUMBNAILS_AT points in view at most), each point in view as its own image, framed in
    its colour, the view TensorBoard's sprites give."""

    def __init__(self, radius: float = 2.5):
        super().__init__()
        self._xy = np.zeros((0, 2), dtype=np.float32)
        self._x = self._y = np.zeros(0, dtype=np.float32)
        self._argb = np.zeros(0, dtype=np.uint32)
        self._bounds = QRectF()
        self._rows: np.ndarray | None = None  # the dataset row of each point, for its image
        self._image_of: Callable[[int], np.ndarray] | None = None
        self._images: dict[int, QImage] = {}  # row -> its image, made once (the rows in view, mostly)
        self.thumbnails_drawn = 0  # how many images the last paint drew (0: dots)
        self._version = 0  # changes with the data, the radius or the images: the kept stamp is stale
        # the last paint's image of the points (dots, or thumbnails), drawn again while nothing changed:
        # (what it shows, the image, the numpy pixels it reads or None, the thumbnails it holds)
        self._stamp: tuple[tuple, QImage, np.ndarray | None, int] | None = None
        self.stamps = 0  # how many times the points were stamped (a test counts them)
        self.set_radius(radius)

    def set_thumbnails(self, rows: np.ndarray | None, image_of: Callable[[int], np.ndarray] | None) -> None:
        """The dataset row of each point (drawing order) and ``image_of(row)``: a uint8 (H, W) or
        (H, W, 3) image; None: dots at every zoom."""
        if image_of is not self._image_of:
            self._images = {}
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._image_of = image_of
        self._version += 1
        self.update()

    def _image(self, row: int) -> QImage:
        image = self._images.get(row)
        if image is None:
            if len(self._images) > 20_000:
                self._images.clear()
            image = self._images[row] = thumbnail_image(self._image_of(row))
        return image

    def set_radius(self, radius: float) -> None:
        pad = int(np.ceil(radius))
        dy, dx = np.mgrid[-pad:pad + 1, -pad:pad + 1]
        keep = dx * dx + dy * dy <= radius * radius + 0.25
        self._dy, self._dx, self._pad = dy[keep], dx[keep], pad
        self._version += 1
        self.update()

    def set_data(self, xy: np.ndarray, colours: np.ndarray) -> None:
        """Positions (n, 2) in data coordinates and colours (n,) uint32 ARGB (opaque)."""
        xy = np.ascontiguousarray(xy, dtype=np.float32)
        self._xy = xy
        # one contiguous array per axis: reductions along a (n, 2) array's rows are 10x slower
        self._x, self._y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
        self._argb = np.ascontiguousarray(colours, dtype=np.uint32)
        self._version += 1
        bounds = QRectF()
        if len(xy):
            lo = np.array([self._x.min(), self._y.min()])
            hi = np.array([self._x.max(), self._y.max()])
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                with np.errstate(invalid="ignore"):
                    lo = np.array([np.nanmin(np.where(np.isfinite(v), v, np.nan)) for v in (self._x, self._y)])
                    hi = np.array([np.nanmax(np.where(np.isfinite(v), v, np.nan)) for v in (self._x, self._y)])
            if np.isfinite(lo).all() and np.isfinite(hi).all():
                span = np.maximum(hi - lo, 1e-6)
                lo, hi = lo - 0.02 * span, hi + 0.02 * span
                bounds = QRectF(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
        if bounds != self._bounds:
            self.prepareGeometryChange()
            self._bounds = bounds
            self.informViewBoundsChanged()
        self.update()

    @property
    def positions(self) -> np.ndarray:
        return self._xy

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange=None):
        if not len(self._xy):
            return None, None
        v = self._x if ax == 0 else self._y
        v = v[np.isfinite(v)]
        return (float(v.min()), float(v.max())) if len(v) else (None, None)

    def pixelPadding(self) -> float:
        return float(self._pad + 1)

    def paint(self, painter, option, widget=None) -> None:
        n = len(self._xy)
        if n == 0:
            return
        device = painter.device()
        w, h = int(device.width()), int(device.height())
        if w <= 0 or h <= 0:
            return
        t = painter.transform()  # item coordinates -> device pixels
        m11, m12, m21, m22, m31, m32 = t.m11(), t.m12(), t.m21(), t.m22(), t.m31(), t.m32()
        # THUMBNAILS_AT decides dots or images: a stamp made under another one is stale too
        key = (self._version, w, h, m11, m12, m21, m22, m31, m32, THUMBNAILS_AT)
        if self._stamp is not None and self._stamp[0] == key:
            self._draw_stamp(painter, self._stamp[1])
            self.thumbnails_drawn = self._stamp[3]
            return
        x, y = self._x, self._y
        if m21 == 0 and m12 == 0:  # no rotation (always, in a ViewBox): half the arithmetic
            px = x * np.float32(m11) + np.float32(m31)
            py = y * np.float32(m22) + np.float32(m32)
        else:
            px = m11 * x + m21 * y + m31
            py = m12 * x + m22 * y + m32
        # A dot reaches ``pad`` pixels from its centre: keep the centres within ``pad`` of the view
        # and stamp into a buffer with a margin of 2 * pad, so every write lands inside the buffer.
        pad = self._pad
        margin = 2 * pad
        with np.errstate(invalid="ignore"):
            ok = (px >= -pad) & (px < w + pad) & (py >= -pad) & (py < h + pad)
        colours = self._argb
        if not ok.all():  # zoomed in: only the points in view
            px, py, colours = px[ok], py[ok], colours[ok]
        self.thumbnails_drawn = 0
        if self._image_of is not None and self._rows is not None and len(self._rows) == n \
                and 0 < len(px) <= THUMBNAILS_AT:
            image = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
            image.fill(Qt.GlobalColor.transparent)
            on_image = QPainter(image)
            self._paint_thumbnails(on_image, px, py, colours, np.flatnonzero(ok), w, h)
            on_image.end()
            self._stamp = (key, image, None, self.thumbnails_drawn)
            self.stamps += 1
            self._draw_stamp(painter, image)
            return
        ix = np.floor(px).astype(np.int64) + margin
        iy = np.floor(py).astype(np.int64) + margin
        stride = w + 2 * margin
        buf = np.zeros((h + 2 * margin) * stride, dtype=np.uint32)
        flat = iy * stride + ix
        for dy, dx in zip(self._dy, self._dx):
            buf[flat + (dy * stride + dx)] = colours
        image_data = np.ascontiguousarray(buf.reshape(h + 2 * margin, stride)[margin:margin + h, margin:margin + w])
        image = QImage(image_data.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
        self._stamp = (key, image, image_data, 0)  # the image reads image_data's pixels: both kept
        self.stamps += 1
        self._draw_stamp(painter, image)

    @staticmethod
    def _draw_stamp(painter, image: QImage) -> None:
        painter.save()
        painter.resetTransform()
        painter.drawImage(0, 0, image)
        painter.restore()


    def _paint_thumbnails(self, painter, px, py, colours, shown, w: int, h: int) -> None:
        """Each point in view as its image, centred on it, as large as the crowd allows (the side of
        the square each point would have if they tiled the view, within THUMBNAIL_PX), framed in its
        colour; images drawn in order, so a later point covers an earlier one as its dot would."""
        low, high = THUMBNAIL_PX
        side = int(np.clip(0.8 * np.sqrt(w * h / len(px)), low, high))
        half = side / 2
        rows = self._rows[shown]
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # pixels stay crisp
        pens: dict[int, QPen] = {}
        for x, y, colour, row in zip(px.tolist(), py.tolist(), colours.tolist(), rows.tolist()):
            target = QRectF(x - half, y - half, side, side)
            painter.drawImage(target, self._image(row))
            pen = pens.get(colour)
            if pen is None:
                pen = pens[colour] = QPen(QColor.fromRgba(colour), 2)
            painter.setPen(pen)
            painter.drawRect(target)
        painter.restore()
        self.thumbnails_drawn = len(px)


DRAG_PIXELS = 3  # a press and release farther apart than this select a region, never a point


class MapViewBox(pg.ViewBox):
    """A ViewBox that pans and zooms, or selects with a rectangle or a lasso.

    The rectangle and the lasso follow the mouse's own events (``track_press``, ``track_move``,
    ``track_release``, fed by the map's event filter), not pyqtgraph's drag events: pyqtgraph drops
    mouse moves that come closer together than its rate limit (10 ms), and a drag whose moves were all
    dropped (a fast flick, or events that queued while the window was busy) reached the view as a
    click, so a rectangle selected nothing. Here a press and a release more than DRAG_PIXELS apart
    always select the region between them."""

    clicked = Signal(object)  # QPointF in data coordinates
    region_selected = Signal(object, str)  # (m, 2) polygon in data coordinates, the mode that drew it

    def __init__(self):
        super().__init__()
        self.select_mode = "pan"  # pan, rect, lasso
        self._path: list[QPointF] = []
        self._press_pixel: QPointF | None = None
        self._dragged = False
        self._swallow_click = False  # the release ended a region: pyqtgraph's click that follows is not one
        self._outline = pg.QtWidgets.QGraphicsPathItem()
        self._outline.setPen(pg.mkPen(SELECTION, width=1.5, style=Qt.PenStyle.DashLine))
        self._outline.setBrush(pg.mkBrush(255, 159, 28, 40))
        self._outline.setZValue(1e6)
        self._outline.hide()
        self.addItem(self._outline, ignoreBounds=True)

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if self._swallow_click:
                self._swallow_click = False
                return
            self.clicked.emit(self.mapToView(ev.pos()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:
        if self.select_mode == "pan" or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()  # the region follows the mouse's own events (track_*): no panning meanwhile

    # the region, from the mouse's events (scene coordinates) ------------------------------------------
    def track_press(self, pixel: QPointF, scene: QPointF) -> None:
        self._swallow_click = False
        if self.select_mode == "pan":
            return
        self._press_pixel, self._dragged = QPointF(pixel), False
        self._path = [self.mapSceneToView(scene)]

    def track_move(self, pixel: QPointF, scene: QPointF) -> None:
        if self._press_pixel is None:
            return
        if not self._dragged and (pixel - self._press_pixel).manhattanLength() <= DRAG_PIXELS:
            return
        self._dragged = True
        self._path.append(self.mapSceneToView(scene))
        self._draw_outline()

    def track_release(self, pixel: QPointF, scene: QPointF) -> None:
        if self._press_pixel is None:
            return
        far = (pixel - self._press_pixel).manhattanLength() > DRAG_PIXELS
        self._press_pixel = None
        self._outline.hide()
        if not (self._dragged or far):
            self._path = []
            return  # a click: pyqtgraph delivers it (mouseClickEvent)
        self._path.append(self.mapSceneToView(scene))
        polygon = self._polygon()
        self._path = []
        self._swallow_click = True
        self.region_selected.emit(polygon, self.select_mode)

    def _draw_outline(self) -> None:
        polygon = self._polygon()
        path = QPainterPath()
        path.moveTo(*polygon[0])
        for px, py in polygon[1:]:
            path.lineTo(px, py)
        path.closeSubpath()
        self._outline.setPath(path)
        self._outline.show()

    def _polygon(self) -> np.ndarray:
        pts = np.array([(p.x(), p.y()) for p in self._path], dtype=np.float64)
        if self.select_mode == "rect":
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        return pts


class _PassiveMarks(pg.ScatterPlotItem):
    """Symbols drawn over points (the class centroids) that let the mouse through: a ScatterPlotItem
    takes the click on its own points, so a marked point could not be clicked."""

    def mouseClickEvent(self, ev) -> None:
        ev.ignore()

    def hoverEvent(self, ev) -> None:
        pass


class RingMarks(pg.GraphicsObject):
    """Rings of one look over some points (the clicked one, its neighbours, a selection), each a
    stamp of one ring pixmap made once, all in one ``drawPixmapFragments`` call. A ScatterPlotItem
    spent ~5 ms of Python per paint (bounds, pixel vectors, masks) even for one point, and a click
    repainted four of them. ``pens`` are drawn in turn (a dark ring under a thin white one). The mouse
    goes through (a marked point stays clickable); the rings do not count in the view's range."""

    def __init__(self, size: float, pens: list):
        super().__init__()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._size = float(size)
        self._pens = [pg.mkPen(pen) for pen in pens]
        self._xy = np.zeros((0, 2), dtype=np.float64)
        self._ring: QPixmap | None = None
        self._bounds: QRectF | None = None
        from pyqtgraph.Qt.internals import PrimitiveArray

        self._fragments = PrimitiveArray(QPainter.PixmapFragment, 10)

    @property
    def data(self) -> np.ndarray:
        """The marked positions as a record array with fields x and y (a ScatterPlotItem's names)."""
        out = np.zeros(len(self._xy), dtype=[("x", float), ("y", float)])
        out["x"], out["y"] = self._xy[:, 0], self._xy[:, 1]
        return out

    def setData(self, pos) -> None:
        self.prepareGeometryChange()
        self._xy = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        self._bounds = None
        self.update()

    def clear(self) -> None:
        self.setData(np.zeros((0, 2)))

    def setPen(self, *pens) -> None:
        self._pens = [pg.mkPen(pen) for pen in pens]
        self._ring = None
        self.update()

    def viewTransformChanged(self) -> None:  # zoomed: the rings' padding in data units changes
        self.prepareGeometryChange()
        self._bounds = None
        super().viewTransformChanged()

    def _ring_pixmap(self, dpr: float) -> QPixmap:
        if self._ring is None or self._ring.devicePixelRatio() != dpr:
            side = int(np.ceil(self._size + max(p.widthF() for p in self._pens) + 2))
            ring = QPixmap(int(np.ceil(side * dpr)), int(np.ceil(side * dpr)))
            ring.setDevicePixelRatio(dpr)
            ring.fill(Qt.GlobalColor.transparent)
            painter = QPainter(ring)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for pen in self._pens:
                painter.setPen(pen)
                painter.drawEllipse(QPointF(side / 2, side / 2), self._size / 2, self._size / 2)
            painter.end()
            self._ring = ring
        return self._ring

    def boundingRect(self) -> QRectF:
        if self._bounds is None:
            finite = self._xy[np.isfinite(self._xy).all(1)]
            if not len(finite):
                self._bounds = QRectF()
            else:
                (x0, y0), (x1, y1) = finite.min(0), finite.max(0)
                px, py = self.pixelVectors()  # one device pixel in item coordinates
                reach = self._size / 2 + max(p.widthF() for p in self._pens) + 2
                rx = reach * (px.length() if px is not None else 0)
                ry = reach * (py.length() if py is not None else 0)
                self._bounds = QRectF(x0 - rx, y0 - ry, x1 - x0 + 2 * rx, y1 - y0 + 2 * ry)
        return QRectF(self._bounds)

    def paint(self, painter, option, widget=None) -> None:
        xy = self._xy[np.isfinite(self._xy).all(1)]
        if not len(xy):
            return
        t = painter.transform()
        px = t.m11() * xy[:, 0] + t.m21() * xy[:, 1] + t.m31()
        py = t.m12() * xy[:, 0] + t.m22() * xy[:, 1] + t.m32()
        dpr = widget.devicePixelRatioF() if widget is not None else 1.0
        ring = self._ring_pixmap(dpr)
        self._fragments.resize(len(xy))
        frags = self._fragments.ndarray()
        frags[:, 0], frags[:, 1] = np.clip(px, -2 ** 30, 2 ** 30), np.clip(py, -2 ** 30, 2 ** 30)
        frags[:, 2:6] = [0, 0, ring.width(), ring.height()]  # source rect, in the pixmap's pixels
        frags[:, 6:10] = [1 / dpr, 1 / dpr, 0.0, 1.0]  # scale x, scale y, rotation, opacity
        painter.save()
        painter.resetTransform()
        painter.drawPixmapFragments(*self._fragments.drawargs(), ring)
        painter.restore()


class _PassiveSample(pg.ItemSample):
    def mouseClickEvent(self, ev) -> None:  # pyqtgraph's hides the item the entry stands for
        ev.ignore()


class MapLegend(pg.LegendItem):
    """The map's legend, which the mouse goes through: pyqtgraph's takes drags (to move it) and clicks
    (to hide an entry's item), so over it, which on a half-width side-by-side map is much of the map,
    no point could be clicked nor a rectangle drawn."""

    def __init__(self, **kwargs):
        super().__init__(sampleType=_PassiveSample, **kwargs)

    def hoverEvent(self, ev) -> None:
        pass

    def mouseDragEvent(self, ev) -> None:
        ev.ignore()


def points_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside ``polygon`` (even-odd rule, one pass per edge)."""
    x, y = xy[:, 0], xy[:, 1]
    inside = np.zeros(len(xy), dtype=bool)
    if len(polygon) < 3:
        return inside
    px, py = polygon[:, 0], polygon[:, 1]
    qx, qy = np.roll(px, 1), np.roll(py, 1)
    for ax, ay, bx, by in zip(px, py, qx, qy):
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < xcross)
    return inside


class HoverCard(QFrame):
    """The thumbnail and label of the point under the mouse."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("hover_card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        layout.addWidget(self.image)
        layout.addWidget(self.text)
        self.hide()


class MapView(QWidget):
    """One map bound to a run of the session: the current run ("primary") or the compared one."""

    def __init__(self, session: Session, slot: str = "primary", parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.slot = session, slot
        self.vb = MapViewBox()
        self.plot = pg.PlotWidget(viewBox=self.vb)
        self.plot.setObjectName("projection_view" if slot == "primary" else "projection_view_compare")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.vb.setAspectLocked(True)
        self.cloud = PointCloudItem()
        self.plot.addItem(self.cloud)
        self.trails = pg.PlotCurveItem(pen=pg.mkPen(120, 120, 120, 60, width=1), connect="finite")
        self.trails.setZValue(-1)
        self.plot.addItem(self.trails, ignoreBounds=True)
        self.selection_marks = RingMarks(9, [pg.mkPen(SELECTION, width=1.5)])
        self.neighbour_marks = RingMarks(11, [pg.mkPen("#222222", width=1.5)])
        # the clicked point: a dark ring inside a white one, visible on every colouring and theme
        self.point_mark = RingMarks(22, [pg.mkPen("#111111", width=3.5), pg.mkPen("#ffffff", width=1.2)])
        self.centroid_marks = _PassiveMarks(size=14, symbol="x", pen=pg.mkPen("#000000", width=1),
                                            brush=pg.mkBrush("#ffffff"))
        for item in (self.selection_marks, self.neighbour_marks, self.point_mark, self.centroid_marks):
            self.plot.addItem(item, ignoreBounds=True)
        self.centroid_labels: list[pg.TextItem] = []
        # one outline per cluster id, made when an id first needs one and reused (hidden when unused)
        self.hull_items: list[QGraphicsPolygonItem] = []
        self._hulls: dict[int, np.ndarray] = {}  # cluster id -> rows (drawing order) at its outline
        self._cluster_ids: np.ndarray | None = None  # the shown snapshot's, when colouring by cluster
        # the legend in a column right of the points, never over them (in the view box it covered a
        # corner of the map, much of a half-width side-by-side one)
        self.legend = MapLegend(labelTextSize="8pt", verSpacing=-4)
        self.legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)  # its rows packed
        layout = self.plot.getPlotItem().layout
        layout.addItem(self.legend, 2, 3)
        layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)
        self.title = QLabel(self)
        self.title.setObjectName("map_title")
        self.badge = QLabel(self)
        self.badge.setObjectName("collapse_badge")
        self.badge.hide()
        self.note = QLabel(self)
        self.note.setObjectName("map_note")
        self.note.hide()
        self.hover = HoverCard(self)
        # what a region selection found, for a few seconds: a drag that selects nothing says so
        self.flash = QLabel(self, objectName="selection_flash")
        self.flash.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.flash.setStyleSheet("background: rgba(30, 30, 30, 200); color: white; padding: 3px 8px; "
                                 "border-radius: 4px;")
        self.flash.hide()
        self._flash_timer = QTimer(self, singleShot=True, interval=FLASH_MS)
        self._flash_timer.timeout.connect(self.flash.hide)
        self.vb.sigResized.connect(lambda _vb: self._place_overlays())  # the legend's column took room
        self.plot.viewport().installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)

        self._run_id = ""
        self._frame = -1
        self._indices = np.zeros(0, dtype=np.int64)
        self._order = np.zeros(0, dtype=np.int64)  # argsort of _indices: a click finds its rows without sorting 70k
        self._labels = np.zeros(0, dtype=np.int64)
        self._target = np.zeros((0, 2), dtype=np.float32)
        self._start = np.zeros((0, 2), dtype=np.float32)
        self._colours = np.zeros(0, dtype=np.uint32)
        self._cache: dict[tuple, np.ndarray] = {}  # colourings: (run, frame, method, mode, anchor)
        self._anim = QTimer(self, interval=16)
        self._anim.timeout.connect(self._on_anim_timeout)
        self._anim_t = 1.0
        self.animate = True
        self.dark = False

        self.vb.clicked.connect(self._on_vb_clicked)
        self.vb.region_selected.connect(self._on_vb_region_selected)
        self.plot.scene().sigMouseMoved.connect(self._on_scene_mouse_moved)
        session.view_changed.connect(self.refresh)
        session.snapshot_added.connect(self._on_session_snapshot_added)
        session.run_selected.connect(lambda _: self.refresh())
        session.compare_changed.connect(lambda _: self.refresh())
        session.run_changed.connect(self._on_session_run_changed)
        session.coords_ready.connect(self._on_session_coords_ready)
        session.dataset_ready.connect(self._on_session_dataset_ready)
        session.clusters_ready.connect(self._on_session_clusters_ready)
        session.probe_ready.connect(self._on_session_probe_ready)
        session.point_selected.connect(self._on_session_point_selected)
        session.rows_selected.connect(lambda _: self._update_marks())
        session.neighbours_changed.connect(lambda _: self._update_marks())

    # which run, which snapshot -------------------------------------------------------------------
    def run(self) -> RunState | None:
        return self.session.current if self.slot == "primary" else self.session.compared

    def frame_index(self, run: RunState) -> int:
        f = self.session.frame
        return f if 0 <= f < len(run.snapshots) else len(run.snapshots) - 1

    @property
    def point_count(self) -> int:
        return len(self.cloud.positions)

    @property
    def shown_frame(self) -> int:
        """The index of the snapshot drawn now (the map redraws a frame after a snapshot arrives)."""
        return self._frame

    def shown_rows(self) -> np.ndarray:
        """Test-split rows of the points now on the map (in drawing order)."""
        return self._indices

    def set_theme(self, dark: bool) -> None:
        self.dark = dark
        self.plot.setBackground(BACKGROUND[dark])
        self.neighbour_marks.setPen(pg.mkPen("#f0f0f0" if dark else "#222222", width=1.5))
        self.refresh()

    # refresh -------------------------------------------------------------------------------------
    def _on_session_snapshot_added(self, run_id: str, index: int) -> None:
        run = self.run()
        if run is not None and run.id == run_id and self.session.frame < 0:
            FRAMES.add(self, self.refresh)  # in turn with the panels the snapshot changes: one a frame

    def _on_session_run_changed(self, run_id: str) -> None:
        run = self.run()
        if run is not None and run.id == run_id:
            self._update_badge(run)

    def _on_session_coords_ready(self, run_id: str, frame: int, projection: str) -> None:
        run = self.run()
        if run is not None and run.id == run_id and run.snapshots and self.frame_index(run) == frame \
                and projection == self.session.projection:
            self.refresh()  # the map this view waits for; others (older frames) are only kept

    def _on_session_clusters_ready(self, run_id: str, algorithm: str) -> None:
        run = self.run()
        if run is not None and run.id == run_id and self.session.colour_by == "cluster" \
                and algorithm == self.session.cluster_algorithm:
            self.refresh()

    def _on_session_probe_ready(self, run_id: str, frame: int) -> None:
        run = self.run()
        if run is not None and run.id == run_id and self.session.colour_by == "probe" \
                and self.frame_index(run) == frame:
            self.refresh()

    def refresh(self) -> None:
        """Show the run's snapshot of the current frame in the current projection and colouring."""
        run = self.run()
        if run is None or not run.snapshots:
            if run is None or run.id != self._run_id:
                self._show(np.zeros((0, 2), np.float32), np.zeros(0, np.uint32), np.zeros(0, np.int64),
                           np.zeros(0, np.int64), animate=False)
            self._run_id = run.id if run else ""
            self.title.setText(f"{run.name}: waiting for the first snapshot" if run else "no run yet")
            self._place_overlays()
            if self.slot == "primary":
                self._set_note("Press Start (Ctrl+R) to train, or open a run directory (Ctrl+O):\n"
                               "the map of the representation appears here at every evaluation."
                               if run is None else "The map appears at the first evaluation…")
            self._update_badge(run)
            return
        frame = self.frame_index(run)
        snap = run.snapshots[frame]
        method = self.session.projection
        coords = self.session.coords(run, frame, method)
        self._update_badge(run)
        label = projection_label(method)
        from engine.projection import all_equal

        one_point = len(snap.embeddings) > 1 and all_equal(snap.embeddings)
        self.title.setText(f"{run.name} — step {snap.step} (epoch {snap.epoch:.2f}) — {label}"
                           + (" — every image has the same embedding: one point" if one_point else ""))
        self._place_overlays()
        if coords is None:
            self._set_note(f"computing the {label} map…")
            return
        self._set_note("")
        colours = self.colours_for(run, frame, snap, coords)
        same_points = run.id == self._run_id and len(coords) == len(self._target)
        self._run_id, self._frame = run.id, frame
        self._hulls = self._hull_rows(run, frame, coords)
        self._follow_thumbnails(run, snap)
        self._show(coords, colours, snap.indices, snap.labels, animate=same_points and self.animate)
        self._update_trails(run, frame, method)

    def _follow_thumbnails(self, run: RunState, snap: MapSnapshot) -> None:
        """The points' images, for the zoomed-in view (PointCloudItem), once the run's dataset is in."""
        dataset = run.dataset
        if dataset is None:
            self.cloud.set_thumbnails(None, None)
            return
        if getattr(self, "_thumbnail_dataset", None) is not dataset:
            self._thumbnail_dataset = dataset
            self._thumbnail_source = lambda row: dataset.thumbnail("test", row)  # one per dataset: its cache stays
        self.cloud.set_thumbnails(snap.indices, self._thumbnail_source)

    def _on_session_dataset_ready(self, run_id: str) -> None:
        run = self.run()
        if run is not None and run.id == run_id and run.snapshots:
            self._follow_thumbnails(run, run.snapshots[self.frame_index(run)])

    def _set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))
        self.note.adjustSize()
        self._place_overlays()

    def _show(self, coords, colours, indices, labels, animate: bool) -> None:
        self.hover.hide()  # it named the point under the mouse before the points moved (a scrub, a snapshot)
        self._start = self.cloud.positions.copy() if animate else coords
        self._target = np.asarray(coords, dtype=np.float32)
        if indices is not self._indices:
            self._order = np.argsort(indices)
        self._colours, self._indices, self._labels = colours, indices, labels
        if animate and len(self._start) == len(self._target) and not np.array_equal(self._start, self._target):
            self._anim_t = 0.0
            self._anim_clock = time.perf_counter()
            self._anim.start()
        else:
            self._anim.stop()
            self._anim_t = 1.0
            self.cloud.set_data(self._target, colours)
            self._sync_range()
        self._update_marks()
        self._update_centroids()
        self._update_hulls()
        self._update_legend()

    def _sync_range(self) -> None:
        """Fit the view to the new points now. pyqtgraph defers the auto-range to the next paint, and
        until that paint the data <-> pixel mapping that hover, clicks and the point marks use still
        fits the previous points (a busy GUI thread, or an event handled first, made a hover land on
        nothing: the cursor's pixel mapped into the old, much smaller range)."""
        self.vb.prepareForPaint()  # auto-range if pending (only when auto-range is on), then the matrix

    def _on_anim_timeout(self) -> None:
        t = min(1.0, (time.perf_counter() - self._anim_clock) * 1000 / ANIMATION_MS)
        self._anim_t = t
        e = t * t * (3 - 2 * t)  # smoothstep: starts and ends at rest
        xy = self._target if t >= 1.0 else self._start + (self._target - self._start) * e
        self.cloud.set_data(xy, self._colours)
        self._sync_range()
        self._update_marks()
        self._update_centroids()
        self._update_hulls()
        if t >= 1.0:
            self._anim.stop()

    # colourings ----------------------------------------------------------------------------------
    def colours_for(self, run: RunState, frame: int, snap: MapSnapshot, coords: np.ndarray) -> np.ndarray:
        mode = self.session.colour_by
        labels = snap.labels
        anchor = snap.row_of(self.session.selected_row) if mode == "triplet" else None
        algorithm = self.session.cluster_algorithm if mode == "cluster" else ""
        key = (run.id, frame, self.session.projection if mode == "overlap" else "", mode, anchor, algorithm, self.dark)
        self._cluster_ids = None
        if key in self._cache:
            colours, self._legend_entries = self._cache[key]
            if mode == "cluster":
                self._cluster_ids = self.session.clusters(run, frame)
            return colours
        names = run.class_names
        entries: list[tuple[str, int]] = []
        if mode == "class":
            pal = class_palette(max(1, len(names) or int(labels.max(initial=0)) + 1))
            colours = np.where(labels >= 0, pal[np.clip(labels, 0, len(pal) - 1)], argb(UNLABELLED))
            entries = [(n, int(pal[i])) for i, n in enumerate(names)]
            if (labels < 0).any():
                entries.append(("unlabelled", argb(UNLABELLED)))
        elif mode == "cluster":
            ids = self.session.clusters(run, frame)
            if ids is None:  # being found in the background (or it failed: said in the note)
                why = self.session.cluster_failures.get((run.id, algorithm))
                self._set_note(f"no {CLUSTERINGS[algorithm]} clusters: {why}" if why
                               else f"finding the {CLUSTERINGS[algorithm]} clusters…")
                self._legend_entries = []
                return np.full(len(labels), argb(UNLABELLED), dtype=np.uint32)
            self._cluster_ids = ids
            colours, entries = self._cluster_colours(run, ids, labels, algorithm)
        elif mode == "correct":
            from engine.metrics.properties import knn_loo_correct

            # the Properties panel's leave-one-out 10-NN vote, point by point
            correct = knn_loo_correct(snap.embeddings, labels, k=min(10, len(labels) - 1))
            if correct is None:
                colours = np.full(len(labels), argb(UNLABELLED), dtype=np.uint32)
                entries = [("no kNN vote: fewer than two classes are labelled", argb(UNLABELLED))]
            else:
                colours = np.where(labels < 0, argb(UNLABELLED), np.where(correct, argb(RIGHT), argb(WRONG)))
                entries = [(f"kNN right ({correct[labels >= 0].mean():.0%})", argb(RIGHT)), ("kNN wrong", argb(WRONG))]
        elif mode == "probe":
            if frame not in run.probe_correct:  # fitted in the background (or it failed: said in the note)
                self.session.probe_correct(run, frame)
                why = self.session.probe_failures.get((run.id, frame))
                self._set_note(f"no linear probe colouring: {why}" if why
                               else "fitting the linear probe on the map's points (5 folds)…")
                self._legend_entries = []
                return np.full(len(labels), argb(UNLABELLED), dtype=np.uint32)
            correct = run.probe_correct[frame]
            if correct is None:
                colours = np.full(len(labels), argb(UNLABELLED), dtype=np.uint32)
                entries = [("no probe: fewer than two classes of two labelled points", argb(UNLABELLED))]
            else:
                colours = np.where(labels < 0, argb(UNLABELLED), np.where(correct, argb(RIGHT), argb(WRONG)))
                entries = [(f"probe right ({correct[labels >= 0].mean():.0%})", argb(RIGHT)),
                           ("probe wrong", argb(WRONG))]
        elif mode == "overlap":
            engine_map = snap.coords is not None and self.session.projection == run.config.get("projection", "umap")
            overlap = (snap.neighbour_overlap if engine_map and snap.neighbour_overlap is not None
                       else neighbour_overlap(snap.embeddings, coords))
            colours = ramp(overlap)
            entries = [(f"10-NN kept in 2D: 100% (mean {overlap.mean():.0%})", int(ramp(np.array([1.0]))[0])),
                       ("50%", int(ramp(np.array([0.5]))[0])), ("0%", int(ramp(np.array([0.0]))[0]))]
        else:  # triplet categories relative to the selected point
            colours, entries = self._triplet_colours(run, snap, labels, anchor)
        colours = np.asarray(colours, dtype=np.uint32)
        self._legend_entries = entries
        self._cache[key] = (colours, entries)
        return colours

    @staticmethod
    def _cluster_colours(run: RunState, ids: np.ndarray, labels: np.ndarray, algorithm: str):
        """A cluster's colour follows its id (the palette's i-th colour whatever the number of
        clusters), so a cluster that keeps its id keeps its colour; noise is grey. The legend gives
        each cluster's majority class and its share (purity), and the purity of the whole."""
        from engine.metrics.clusters import cluster_makeup, purity

        top = int(ids.max(initial=-1))
        pal = class_palette(max(1, top + 1))
        colours = np.where(ids >= 0, pal[np.clip(ids, 0, len(pal) - 1)], argb(UNLABELLED))
        names = run.class_names
        overall = purity(labels, ids)
        noise = int((ids < 0).sum())
        head = f"{CLUSTERINGS[algorithm]}: {len(np.unique(ids[ids >= 0]))} clusters"
        if overall is not None:
            head += f", purity {overall:.1%}"
        entries: list[tuple[str, int | None]] = [(head, None)]
        for c, (size, major, count) in cluster_makeup(labels, ids).items():
            if major < 0:
                entries.append((f"{c}: {size} points", int(pal[c])))
            else:
                name = names[major] if major < len(names) else str(major)
                share = count / max(1, (labels[ids == c] >= 0).sum())
                entries.append((f"{c}: {share:.0%} \u201c{name}\u201d of {size}", int(pal[c])))
        if noise:
            entries.append((f"noise ({noise})", argb(UNLABELLED)))
        return colours, entries

    def _hull_rows(self, run: RunState, frame: int, coords: np.ndarray) -> dict[int, np.ndarray]:
        """The outlines of the shown clusters on this map (cached per snapshot, projection, algorithm)."""
        if self.session.colour_by != "cluster" or not self.session.hulls or self._cluster_ids is None:
            return {}
        key = ("hulls", run.id, frame, self.session.projection, self.session.cluster_algorithm)
        if key not in self._cache:
            from engine.metrics.clusters import hulls

            self._cache[key] = hulls(coords, self._cluster_ids, HULL_COVERAGE)
        return self._cache[key]

    def _update_hulls(self) -> None:
        """Each outline through its points where they are now (they move while the map animates)."""
        xy = self.cloud.positions
        shown = {c: rows for c, rows in self._hulls.items() if len(xy) and rows.max() < len(xy)}
        top = max(shown, default=-1)
        while len(self.hull_items) <= top:
            item = QGraphicsPolygonItem()
            item.setZValue(-0.5)  # under the points, over the trails
            self.plot.addItem(item, ignoreBounds=True)
            self.hull_items.append(item)
        pal = class_palette(max(1, top + 1))
        for c, item in enumerate(self.hull_items):
            rows = shown.get(c)
            if rows is None:
                item.hide()
                continue
            colour = QColor.fromRgba(int(pal[c]))
            pen = pg.mkPen(colour, width=1.6)
            pen.setCosmetic(True)
            fill = QColor(colour)
            fill.setAlpha(28)
            item.setPen(pen)
            item.setBrush(pg.mkBrush(fill))
            item.setPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in xy[rows]]))
            item.show()

    def _triplet_colours(self, run: RunState, snap: MapSnapshot, labels: np.ndarray, anchor: int | None):
        from engine.methods import run_triplet_definition
        from engine.metrics.triplets import CATEGORY_NAMES, TripletDefinition, anchor_categories

        palette = map_triplet_colours(self.dark)
        entries = [(name, palette[name]) for name in CATEGORY_NAMES if name != "unlabelled"]
        if anchor is None:
            self._set_note("click a point: it becomes the anchor")
            return np.full(len(labels), argb("#c8c8c8"), dtype=np.uint32), entries
        try:  # the run's own definition (a triplet run's margin and distance), as in its evaluations
            definition = run_triplet_definition(run.config)
        except ValueError:
            definition = TripletDefinition()
        cats = anchor_categories(snap.embeddings, labels, int(anchor), definition)
        lut = np.array([palette[n] for n in CATEGORY_NAMES], dtype=np.uint32)
        counts = np.bincount(cats.codes, minlength=len(CATEGORY_NAMES))
        entries = [(f"{n} ({counts[i]})", int(lut[i])) for i, n in enumerate(CATEGORY_NAMES) if counts[i]]
        return lut[cats.codes], entries

    def _update_legend(self) -> None:
        entries = getattr(self, "_legend_entries", [])
        if len(entries) > 24:
            entries = entries[:23] + [(f"… {len(entries) - 23} more", argb(UNLABELLED))]
        entries = [(name, None if colour is None else int(colour)) for name, colour in entries]
        if entries == getattr(self, "_legend_drawn", None):
            return  # rebuilding an unchanged legend took up to 20 ms of the GUI thread at every snapshot
        self._legend_drawn = entries
        self.legend.clear()
        # a second column where one would run past the map's height (24 entries at most)
        self.legend.setColumnCount(2 if len(entries) * 17 > max(120, self.vb.height()) else 1)
        for name, colour in entries:
            if colour is None:  # a heading: no sample
                sample = pg.ScatterPlotItem(size=0, pen=None, brush=None)
            else:
                sample = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(QColor.fromRgba(colour)), pen=None)
            self.legend.addItem(sample, name)

    # marks: clicked point, neighbours, selection, centroids, trails ------------------------------
    def _positions_of(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows) or not len(self._indices):
            return np.zeros((0, 2), np.float32)
        order = self._order
        pos = np.searchsorted(self._indices, rows, sorter=order)
        pos = np.clip(pos, 0, len(order) - 1)
        hit = self._indices[order[pos]] == rows
        return self.cloud.positions[order[pos[hit]]]

    def _update_marks(self) -> None:
        s = self.session
        point = np.array([s.selected_row]) if s.selected_row >= 0 else np.zeros(0)
        for item, rows in ((self.point_mark, point), (self.neighbour_marks, s.neighbour_rows),
                           (self.selection_marks, s.selected_rows)):
            xy = self._positions_of(np.asarray(rows, dtype=np.int64))
            item.setData(pos=xy) if len(xy) else item.clear()

    def _on_session_point_selected(self, row: int) -> None:
        if self.session.colour_by == "triplet":
            self.refresh()
        self._update_marks()

    def _update_centroids(self) -> None:
        run = self.run()
        if not self.session.centroids or run is None or not len(self._labels):
            self.centroid_marks.clear()
            for t in self.centroid_labels:
                t.hide()
            return
        xy = self.cloud.positions
        classes = [c for c in np.unique(self._labels) if c >= 0]
        cents = np.array([xy[self._labels == c].mean(0) for c in classes]) if classes else np.zeros((0, 2))
        self.centroid_marks.setData(pos=cents)
        while len(self.centroid_labels) < len(classes):
            t = pg.TextItem(anchor=(0, 1), color="#000000", fill=pg.mkBrush(255, 255, 255, 180))
            self.plot.addItem(t, ignoreBounds=True)
            self.centroid_labels.append(t)
        names = run.class_names
        for i, t in enumerate(self.centroid_labels):
            if i < len(classes):
                c = int(classes[i])
                t.setText(names[c] if c < len(names) else str(c))
                t.setPos(*cents[i])
                t.show()
            else:
                t.hide()

    def _update_trails(self, run: RunState, frame: int, method: str) -> None:
        if not self.session.trails:
            self.trails.setData([], [])
            return
        frames = [run.coords[(f, method)] for f in range(frame + 1)
                  if (f, method) in run.coords and len(run.coords[(f, method)]) == len(self._target)]
        if len(frames) < 2:
            self.trails.setData([], [])
            return
        stack = np.stack(frames, axis=1)  # (n, f, 2)
        gap = np.full((len(stack), 1, 2), np.nan, dtype=np.float32)
        path = np.concatenate([stack, gap], axis=1).reshape(-1, 2)
        self.trails.setData(path[:, 0], path[:, 1])

    def _update_badge(self, run: RunState | None) -> None:
        step = run.collapse_step if run is not None else None
        if step is None:
            self.badge.hide()
            self.plot.setStyleSheet("")
        else:
            _, fg, bg = verdict_style(run.collapse_verdict or "complete collapse", self.dark)
            self.badge.setText(f"⚠ {run.collapse_verdict or 'collapse'} from step {step}")
            self.badge.setStyleSheet(f"color: {fg}; background: {bg};")  # amber or red, as the Collapse panel
            self.badge.show()
            self.plot.setStyleSheet(f"border: 3px solid {bg};")
        self._place_overlays()

    def _fit_overlay(self, label: QLabel) -> None:
        """An overlay label on one line where it fits over the points, else wrapped to their width (on
        one line, the collapse message ran past the edge of a narrow map, and a long title ran over
        the legend of a side-by-side one)."""
        top_right = self.plot.mapFromScene(self.vb.sceneBoundingRect().topRight())
        room = max(80, min(self.width(), self.plot.mapTo(self, top_right).x()) - 16)
        label.setWordWrap(False)
        hint = label.sizeHint()
        if hint.width() <= room:
            label.resize(hint)
        else:
            label.setWordWrap(True)
            label.resize(room, label.heightForWidth(room))

    def _place_overlays(self) -> None:
        for label in (self.title, self.badge):
            self._fit_overlay(label)
        self.title.move(8, 6)
        self.badge.move(8, 6 + self.title.height() + 4)
        self.note.move(max(8, (self.width() - self.note.width()) // 2), self.height() // 2 - 10)
        self.flash.move(max(8, (self.width() - self.flash.width()) // 2), self.height() - self.flash.height() - 12)
        self.title.raise_()
        self.badge.raise_()
        self.note.raise_()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place_overlays()

    # mouse ---------------------------------------------------------------------------------------
    def nearest(self, point: QPointF, max_pixels: float = 10.0) -> int | None:
        """Index (in drawing order) of the point nearest ``point`` within ``max_pixels``."""
        xy = self.cloud.positions
        if not len(xy):
            return None
        pw, ph = self.vb.viewPixelSize()
        d = ((xy[:, 0] - point.x()) / pw) ** 2 + ((xy[:, 1] - point.y()) / ph) ** 2
        i = int(np.nanargmin(d))
        return i if d[i] <= max_pixels ** 2 else None

    def _on_vb_clicked(self, point: QPointF) -> None:
        i = self.nearest(point)
        if i is not None:
            self.session.select_point(int(self._indices[i]))

    def click_row(self, test_row: int) -> None:
        """Select a test-split row as a click on its point would (automation, tests)."""
        self.session.select_point(int(test_row))

    def eventFilter(self, watched, event) -> bool:  # Qt override: the mouse's own events, for the region
        from PySide6.QtCore import QEvent

        kind = event.type()
        if watched is self.plot.viewport() and kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove,
                                                         QEvent.Type.MouseButtonRelease):
            left = Qt.MouseButton.LeftButton
            pixel = event.position()
            scene = self.plot.mapToScene(pixel.toPoint())
            if kind == QEvent.Type.MouseButtonPress and event.button() == left:
                self.vb.track_press(pixel, scene)
            elif kind == QEvent.Type.MouseMove and event.buttons() & left:
                self.vb.track_move(pixel, scene)
            elif kind == QEvent.Type.MouseButtonRelease and event.button() == left:
                self.vb.track_release(pixel, scene)
        return super().eventFilter(watched, event)

    def _on_vb_region_selected(self, polygon: np.ndarray, mode: str = "rect") -> None:
        inside = points_in_polygon(self.cloud.positions, polygon)
        rows = self._indices[inside]
        shape = "rectangle" if mode == "rect" else "lasso"
        if len(rows):
            self.show_flash(f"{len(rows)} point{'s' * (len(rows) > 1)} selected")
        elif not len(self._indices):
            self.show_flash("nothing to select: the map has no points yet")
        else:
            self.show_flash(f"no point inside the {shape}: "
                            + ("drag across some points" if mode == "rect" else "draw around some points"))
        self.session.select_rows(rows)

    def show_flash(self, text: str) -> None:
        """Say ``text`` over the bottom of the map for FLASH_MS."""
        self.flash.setText(text)
        self.flash.adjustSize()
        self._place_overlays()
        self.flash.show()
        self.flash.raise_()
        self._flash_timer.start()

    def set_select_mode(self, mode: str) -> None:
        self.vb.select_mode = mode

    def _on_scene_mouse_moved(self, scene_pos) -> None:
        if not self.vb.sceneBoundingRect().contains(scene_pos):
            self.hover.hide()
            return
        i = self.nearest(self.vb.mapSceneToView(scene_pos), 8)
        run = self.run()
        if i is None or run is None:
            self.hover.hide()
            return
        row = int(self._indices[i])
        label = int(self._labels[i])
        names = run.class_names
        name = names[label] if 0 <= label < len(names) else ("unlabelled" if label < 0 else str(label))
        self.hover.text.setText(f"{name}\n{run.point_name(row)}")
        if run.dataset is not None:
            self.hover.image.setPixmap(thumbnail_pixmap(run.dataset.thumbnail("test", row), 72))
            self.hover.image.show()
        else:
            self.hover.image.hide()
        self.hover.adjustSize()
        pos = self.plot.mapFromScene(scene_pos)
        x = pos.x() + 14 if pos.x() + 14 + self.hover.width() < self.width() else pos.x() - 14 - self.hover.width()
        y = min(max(0, pos.y() + 14), self.height() - self.hover.height())
        self.hover.move(int(x), int(y))
        self.hover.show()
        self.hover.raise_()


def neighbour_overlap(embeddings: np.ndarray, coords: np.ndarray, k: int = 10) -> np.ndarray:
    """Per point, the share of its k nearest neighbours in embedding space (cosine) that are also
    among its k nearest on the map (``engine.metrics.honesty``): 1 where the map keeps the
    neighbourhood, near 0 where it invents one."""
    from engine.metrics.honesty import neighbour_overlap as overlap

    return np.asarray(overlap(np.asarray(embeddings), np.asarray(coords), k=min(k, len(embeddings) - 1),
                              metric="cosine"))


MAP_HELP = (
    "Each point is one test image, placed by flattening its embedding (the representation, D numbers) "
    "to 2D: points that lie close here lie close in embedding space, mostly; the reverse can fail, and "
    "'neighbour overlap' colours each point by how many of its 10 nearest neighbours in embedding space "
    "the map keeps. Map: the projection (PCA keeps the directions of largest variance and the distances "
    "along them; t-SNE and UMAP keep neighbourhoods and bend distances; the engine's own map comes with "
    "each snapshot, the others are computed here). Colour: the class; a cluster found in embedding space "
    "(k-means or HDBSCAN, its outline optional); whether the point's neighbours' vote (kNN, leave-one-out) "
    "or a linear probe fitted on the other points (5 folds) names its class, green when right, red when "
    "wrong; or the triplet category of each point for the clicked anchor. Click a point for its image "
    "and its nearest neighbours; Rectangle and Lasso select many. Zoom in (the wheel) until a few "
    "hundred points are in view and each is drawn as its image, framed in its colour. The time-lapse replays the snapshots "
    "(Play, or drag): a good representation pulls the classes apart as training goes. A second run "
    "chosen under Runs ('Beside') is drawn on the right, on the same projection.")


class MapPanel(QWidget):
    """The central area: a toolbar, one map (two side by side when comparing) and the time-lapse."""

    help_text = MAP_HELP

    def sizeHint(self):  # the map is the point of the window: ask for most of it
        from PySide6.QtCore import QSize

        return QSize(900, 720)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.primary = MapView(session, "primary")
        self.secondary = MapView(session, "secondary")
        self.secondary.hide()
        self.projection_combo = QComboBox(objectName="projection_combo")
        for name in PROJECTIONS.names():
            self.projection_combo.addItem(projection_label(name), name)
        self.projection_combo.setToolTip(wrapped_tooltip(
            "How the embeddings are flattened to 2D. The engine's own map (its projection setting) comes "
            "with each snapshot; the others are computed here, in the background."))
        self.colour_combo = QComboBox(objectName="colour_combo")
        for key, text in COLOURINGS.items():
            self.colour_combo.addItem(text, key)
        self.colour_combo.setToolTip(wrapped_tooltip(
            "What the colour of a point says: its class, its cluster, whether its neighbours' vote (kNN, "
            "leave-one-out) or a linear probe fitted without it (5-fold) gives its class, how many of its "
            "neighbours the 2D map keeps, or its triplet category for the selected anchor."))
        self.cluster_combo = QComboBox(objectName="cluster_combo")
        for key, text in CLUSTERINGS.items():
            self.cluster_combo.addItem(text, key)
        self.cluster_combo.setToolTip(wrapped_tooltip(
            "How the clusters are found in the embedding space: k-means with k = the number of classes, or "
            "HDBSCAN, which finds its own number of dense clusters and leaves the rest as noise (grey). A "
            "cluster keeps its number and colour from one snapshot to the next (the clusters of each "
            "snapshot are matched to the previous one's by the points they share). The legend gives each "
            "cluster's majority class and its share, and the purity: the share of points whose cluster's "
            "majority class is their own."))
        self.hulls_check = QCheckBox("Hulls", objectName="hulls_check")
        self.hulls_check.setChecked(session.hulls)
        self.hulls_check.setToolTip("Outline each cluster on the map: the convex hull of the 90 % of its points "
                                    "nearest its centre (a few strays do not stretch it)")
        self.mode_group = QButtonGroup(self)
        mode_box = QHBoxLayout()
        mode_box.setSpacing(0)
        for mode, text, tip in (("pan", "Pan", "drag to pan, wheel to zoom, click a point to select it"),
                                ("rect", "Rectangle", "drag a rectangle to select the points inside"),
                                ("lasso", "Lasso", "draw around the points to select")):
            b = QToolButton(text=text, checkable=True, objectName=f"select_{mode}")
            b.setToolTip(tip)
            b.setChecked(mode == "pan")
            self.mode_group.addButton(b)
            b.toggled.connect(lambda on, m=mode: on and self._set_select_mode(m))
            mode_box.addWidget(b)
        self.centroids_check = QCheckBox("Centroids", objectName="centroids_check")
        self.trails_check = QCheckBox("Trails", objectName="trails_check")
        self.trails_check.setToolTip("Each point's path through the snapshots up to this one")
        self.help_button = HelpButton(MAP_HELP)
        self.help_button.set_compact(True)  # "?": the toolbar is crowded on a laptop's screen
        self.help_button.setToolTip("What am I looking at? " + self.help_button.toolTip())
        self.help_label = QLabel(MAP_HELP, objectName="help_label", wordWrap=True)
        self.help_label.setTextFormat(Qt.TextFormat.PlainText)
        self.help_label.setContentsMargins(8, 4, 8, 4)
        # at most a few lines high, scrolled: in full it left a laptop's map 70 px of height
        self.help_scroll = QScrollArea(objectName="map_help", widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.help_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.help_scroll.setWidget(self.help_label)
        self.help_scroll.setMaximumHeight(6 * self.help_label.fontMetrics().lineSpacing() + 10)
        self.help_scroll.hide()
        self.help_button.toggled.connect(self.help_scroll.setVisible)
        self.reset_button = QToolButton(text="Fit", objectName="fit_button")
        self.reset_button.setToolTip("Zoom to show every point")
        self.reset_button.clicked.connect(self.fit)
        # the toolbar wraps onto a second row in a narrow centre (a laptop's screen with both side
        # columns): on one row it set the window's least width to 1277 px
        bar = FlowLayout()
        bar.setContentsMargins(6, 4, 6, 0)
        bar.setSpacing(8)
        for group in ((QLabel("Map"), self.projection_combo),
                      (QLabel("Colour"), self.colour_combo, self.cluster_combo, self.hulls_check),
                      (mode_box,), (self.centroids_check, self.trails_check, self.reset_button, self.help_button)):
            box = QWidget()
            row = QHBoxLayout(box)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(4)
            for part in group:
                row.addLayout(part) if isinstance(part, QHBoxLayout) else row.addWidget(part)
            bar.addWidget(box)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.primary)
        self.splitter.addWidget(self.secondary)

        time_row = QHBoxLayout()
        time_row.setContentsMargins(6, 0, 6, 4)
        self.slider = QSlider(Qt.Orientation.Horizontal, objectName="timelapse_slider")
        self.slider.setToolTip("Time-lapse: scrub back through the snapshots (right end: follow the newest)")
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.time_label = QLabel("no snapshot", objectName="timelapse_label")
        self.time_label.setMinimumWidth(180)
        # Play: one snapshot after the other (each animates to the next), from the first one when at the end
        self.play_button = QToolButton(text="\u25b6 Play", checkable=True, objectName="play_button")
        self.play_button.setToolTip("Play the time-lapse: each snapshot in turn, up to the newest")
        self.play_button.setEnabled(False)
        self.play_button.toggled.connect(self._on_play_button_toggled)
        self._play_timer = QTimer(self, interval=PLAY_MS)
        self._play_timer.timeout.connect(self._on_play_timer_timeout)
        time_row.addWidget(QLabel("Time-lapse"))
        time_row.addWidget(self.play_button)
        time_row.addWidget(self.slider, 1)
        time_row.addWidget(self.time_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addWidget(self.help_scroll)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(time_row)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(380)

        self.projection_combo.currentIndexChanged.connect(
            lambda: session.set_projection(self.projection_combo.currentData()))
        self.colour_combo.currentIndexChanged.connect(lambda: session.set_colour_by(self.colour_combo.currentData()))
        self.cluster_combo.currentIndexChanged.connect(
            lambda: session.set_cluster_algorithm(self.cluster_combo.currentData()))
        self.hulls_check.toggled.connect(session.set_hulls)
        session.view_changed.connect(self._sync_cluster_controls)
        self.centroids_check.toggled.connect(session.set_centroids)
        self.trails_check.toggled.connect(session.set_trails)
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        session.snapshot_added.connect(self._on_session_snapshot_added)
        session.run_selected.connect(lambda _: self._sync_slider())
        session.compare_changed.connect(self._on_session_compare_changed)
        self.sync_from_session()

    def show_help(self) -> None:
        """Open the help paragraph (the Help menu)."""
        self.help_button.setChecked(True)

    @property
    def views(self) -> list[MapView]:
        return [self.primary, self.secondary]

    def sync_from_session(self) -> None:
        self.projection_combo.setCurrentIndex(max(0, self.projection_combo.findData(self.session.projection)))
        self.colour_combo.setCurrentIndex(max(0, self.colour_combo.findData(self.session.colour_by)))
        self.cluster_combo.setCurrentIndex(max(0, self.cluster_combo.findData(self.session.cluster_algorithm)))
        self._sync_cluster_controls()

    def _sync_cluster_controls(self) -> None:
        """The clustering choice and the hulls box only while the map is coloured by cluster."""
        on = self.session.colour_by == "cluster"
        self.cluster_combo.setVisible(on)
        self.hulls_check.setVisible(on)

    def _set_select_mode(self, mode: str) -> None:
        for v in self.views:
            v.set_select_mode(mode)

    def fit(self) -> None:
        for v in self.views:
            v.vb.enableAutoRange()
            v.vb.autoRange()

    def _on_session_compare_changed(self, run_id: str) -> None:
        shown = self.secondary.isVisibleTo(self)
        self.secondary.setVisible(bool(run_id))
        if run_id and not shown:  # half each: the splitter gave a map shown again its old or hinted width (70 px)
            half = max(1, (self.splitter.width() - self.splitter.handleWidth()) // 2)
            self.splitter.setSizes([half, half])
        self.secondary.refresh()

    def _on_session_snapshot_added(self, run_id: str, index: int) -> None:
        if self.session.current is not None and run_id == self.session.current_id:
            self._sync_slider()

    def _sync_slider(self) -> None:
        run = self.session.current
        n = len(run.snapshots) if run else 0
        follow = self.session.frame < 0
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setEnabled(n > 1)
        self.play_button.setEnabled(n > 1)
        if n <= 1:
            self.play_button.setChecked(False)
        self.slider.setValue(n - 1 if follow else min(self.session.frame, n - 1))
        self.slider.blockSignals(False)
        self._update_time_label()

    def _on_play_button_toggled(self, playing: bool) -> None:
        self.play_button.setText("\u23f8 Pause" if playing else "\u25b6 Play")
        if not playing:
            self._play_timer.stop()
            return
        if self.slider.value() >= self.slider.maximum():
            self.slider.setValue(0)  # played to the end before: from the start again
        self._play_timer.start()

    def _on_play_timer_timeout(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)  # the newest snapshot: the map follows the run again
            return
        self.slider.setValue(self.slider.value() + 1)

    def _on_slider_value_changed(self, value: int) -> None:
        run = self.session.current
        if run is None:
            return
        self.session.set_frame(-1 if value >= len(run.snapshots) - 1 else value)
        self._update_time_label()

    def _update_time_label(self) -> None:
        run = self.session.current
        if run is None or not run.snapshots:
            self.time_label.setText("no snapshot")
            return
        snap = self.session.snapshot(run)
        i = self.slider.value()
        live = " (newest)" if self.session.frame < 0 else ""
        self.time_label.setText(f"{i + 1}/{len(run.snapshots)} · step {snap.step} · epoch {snap.epoch:.2f}{live}")
