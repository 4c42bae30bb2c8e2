"""A layout that wraps: rows of tiles or thumbnails that fit a narrow dock column."""
from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget


class FlowLayout(QLayout):
    """Items left to right, each at its preferred size, wrapping onto a new row where the width runs
    out: a row of image tiles fits a narrow dock column instead of scrolling sideways. Each row's items
    are aligned at its top (a tile with a longer note only makes its own row taller)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), place=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, place=True)

    def sizeHint(self) -> QSize:  # everything on one row
        return self._with_margins(sum(i.sizeHint().width() for i in self._items)
                                  + self.spacing() * max(len(self._items) - 1, 0),
                                  max((i.sizeHint().height() for i in self._items), default=0))

    def minimumSize(self) -> QSize:  # one item per row
        return self._with_margins(max((i.minimumSize().width() for i in self._items), default=0),
                                  max((i.minimumSize().height() for i in self._items), default=0))

    def _with_margins(self, width: int, height: int) -> QSize:
        m = self.contentsMargins()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def _arrange(self, rect: QRect, place: bool) -> int:
        """Lay the items out in ``rect`` (moving them when ``place``); returns the height used."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, row_height, gap = area.x(), area.y(), 0, self.spacing()
        for item in self._items:
            if item.isEmpty():  # a hidden widget takes no place
                continue
            # an item wider than the whole row shrinks to it, as far as its minimum allows
            size = item.sizeHint()
            size.setWidth(max(min(size.width(), area.width()), item.minimumSize().width()))
            if x > area.x() and x + size.width() > area.right() + 1:
                x, y, row_height = area.x(), y + row_height + gap, 0
            if place:
                item.setGeometry(QRect(x, y, size.width(), size.height()))
            x += size.width() + gap
            row_height = max(row_height, size.height())
        return y + row_height - rect.y() + m.bottom()
