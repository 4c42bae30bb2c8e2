"""The small widgets the inspectors are made of: an image with its caption, a matrix of coloured cells,
a strip of coloured cells."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from explorer.views.kit import thumbnail_pixmap
from explorer.views.palette import viridis


class ImageTile(QWidget):
    """One image with a caption above it and a note below."""

    def __init__(self, name: str, size: int = 96, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.size_px = size
        self.caption = QLabel(objectName=f"{name}_caption", alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture = QLabel(objectName=f"{name}_image", alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setFixedSize(size + 4, size + 4)
        self.picture.setStyleSheet("border: 1px solid palette(mid);")
        self.note = QLabel(objectName=f"{name}_note", alignment=Qt.AlignmentFlag.AlignCenter)
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)
        # a tile is as wide as its image and a little more: long captions wrap instead of widening the dock
        self.setMaximumWidth(size + 40)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        layout.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.note)
        self.image: np.ndarray | None = None

    def set_size(self, size: int, margin: int = 40) -> None:
        """Draw the image ``size`` px wide, the tile at most ``margin`` px wider (captions wrap)."""
        if (size, margin) == (self.size_px, self.maximumWidth() - self.size_px):
            return
        self.size_px = size
        self.picture.setFixedSize(size + 4, size + 4)
        self.setMaximumWidth(size + margin)
        if self.image is not None:
            self.picture.setPixmap(thumbnail_pixmap(self.image, size))

    def set_image(self, image: np.ndarray | None, caption: str = "", note: str = "",
                  box: np.ndarray | None = None) -> None:
        """``box``: a bool (H, W) mask whose bounding box is outlined in red (the inpainted patch)."""
        self.image = None if image is None else np.asarray(image)
        self.caption.setText(caption)
        self.note.setText(note)
        if image is None:
            self.picture.clear()
            return
        pixmap = thumbnail_pixmap(image, self.size_px)
        if box is not None and box.any():
            ys, xs = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
            scale = pixmap.width() / image.shape[1]
            p = QPainter(pixmap)
            p.setPen(QPen(QColor("#e41a1c"), 2))
            p.drawRect(QRectF(xs[0] * scale + 1, ys[0] * scale + 1, (xs[-1] - xs[0] + 1) * scale - 2,
                              (ys[-1] - ys[0] + 1) * scale - 2))
            p.end()
        self.picture.setPixmap(pixmap)


class MatrixView(QWidget):
    """A small square matrix as coloured cells with their values written in (class angles)."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.values = np.zeros((0, 0))
        self.labels: list[str] = []
        self.range = (0.0, 1.0)
        self.fmt = "{:.0f}"
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_matrix(self, values: np.ndarray, labels: list[str], value_range: tuple[float, float],
                   fmt: str = "{:.0f}") -> None:
        self.values, self.labels, self.range, self.fmt = np.asarray(values, float), list(labels), value_range, fmt
        self.update()

    def paintEvent(self, event) -> None:
        n = len(self.values)
        if n == 0:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        margin = 8 + 7 * max((len(s) for s in self.labels), default=1)
        cell = max(4.0, min((self.width() - margin - 4) / n, (self.height() - margin - 4) / n))
        lo, hi = self.range
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, min(10.0, cell / 3.2)))
        p.setFont(font)
        for i in range(n):
            p.setPen(self.palette().windowText().color())
            short = self.labels[i][:10] if i < len(self.labels) else str(i)
            p.drawText(QRectF(0, margin + i * cell, margin - 4, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, short)
            p.drawText(QRectF(margin + i * cell, 0, cell, margin - 2),
                       Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, short[:4])
            for j in range(n):
                v = self.values[i, j]
                rect = QRectF(margin + j * cell, margin + i * cell, cell, cell)
                if i == j or not np.isfinite(v):
                    p.fillRect(rect, QColor("#dddddd"))
                    continue
                t = (v - lo) / (hi - lo) if hi > lo else 0.5
                c = viridis(t)
                p.fillRect(rect, c)
                if cell >= 18:
                    p.setPen(QColor("black") if t > 0.55 else QColor("white"))
                    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.fmt.format(v))
        p.end()


class HeatStrip(QWidget):
    """One row of values as a strip of coloured cells; the ``marked`` cell is outlined in red and the
    ``blank`` cell (an anchor against itself) drawn grey."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.values = np.zeros(0)
        self.marked: int | None = None
        self.blank: int | None = None
        self.setMinimumHeight(44)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(400, 44)

    def set_values(self, values: np.ndarray, marked: int | None, blank: int | None = None) -> None:
        self.values, self.marked, self.blank = np.asarray(values, float), marked, blank
        self.update()

    def paintEvent(self, event) -> None:
        n = len(self.values)
        if n == 0:
            return
        p = QPainter(self)
        w = (self.width() - 2) / n
        h = self.height() - 14
        finite = self.values[np.isfinite(self.values)]
        hi = float(finite.max()) if finite.size else 1.0
        for i, v in enumerate(self.values):
            rect = QRectF(1 + i * w, 1, w, h)
            p.fillRect(rect, QColor("#bbbbbb") if i == self.blank or not np.isfinite(v)
                       else viridis(v / hi if hi > 0 else 0))
        if self.marked is not None:
            x = 1 + self.marked * w
            p.setPen(QPen(QColor("#e41a1c"), 2))
            p.drawRect(QRectF(x, 1, max(w, 2), h))
            p.drawText(QRectF(x - 30, h + 1, w + 60, 13), Qt.AlignmentFlag.AlignHCenter, "positive")
        p.end()
