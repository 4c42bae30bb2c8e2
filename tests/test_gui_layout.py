"""The window at a laptop's size and a larger one, in both themes: it fits the screen, and every
default panel's text, titles and axes are readable without moving a dock (geometry facts measured
on the widgets: each text has the room its font needs, nothing is elided).

pytest-qt, offscreen; the window is given the free screen area it must fit (``screen_area``).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QItemSelectionModel, QRect, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from explorer import jobs  # noqa: E402
from explorer.main_window import MainWindow, clamped, first_geometry  # noqa: E402

LAPTOP, DESKTOP = QRect(0, 0, 1280, 800), QRect(0, 0, 1600, 1000)


def make_window(qtbot, tmp_path, area: QRect, dark: bool = False, name: str = "settings.ini") -> MainWindow:
    settings = QSettings(str(tmp_path / name), QSettings.Format.IniFormat)
    settings.setValue("view/theme", "dark" if dark else "light")  # the theme is applied once, as it is built
    w = MainWindow(settings=settings, runs_root=tmp_path / "runs", confirm_close=lambda: True, screen_area=area)
    qtbot.addWidget(w)
    return w


@pytest.fixture(autouse=True)
def _no_jobs_left(qtbot):
    yield
    assert jobs.wait_all(60_000)


def test_first_geometry_fills_a_laptop_and_centres_on_a_large_screen():
    assert first_geometry(LAPTOP) == LAPTOP
    assert first_geometry(QRect(0, 27, 1280, 773)) == QRect(0, 27, 1280, 773)  # under a top bar
    big = first_geometry(QRect(0, 0, 2560, 1440))
    assert (big.width(), big.height()) == (2048, 1152) and big.center() == QRect(0, 0, 2560, 1440).center()
    assert first_geometry(QRect(0, 0, 1920, 1080)).size().toTuple() == (1600, 1000)
    # a window saved on a larger screen: moved and shrunk into the smaller one
    assert clamped(QRect(300, 200, 1500, 950), LAPTOP) == LAPTOP
    assert clamped(QRect(100, 50, 800, 600), LAPTOP) == QRect(100, 50, 800, 600)
    assert clamped(QRect(900, 500, 800, 600), LAPTOP) == QRect(480, 200, 800, 600)
    assert clamped(QRect(-2000, -40, 800, 600), QRect(1920, 0, 1280, 800)) == QRect(1920, 0, 800, 600)


def test_first_launch_fills_a_laptop_screen(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, LAPTOP)
    w.show()
    # the frame included (offscreen draws a 2 px one): once shown, the window shrinks into the screen
    qtbot.waitUntil(lambda: w.frameGeometry() == LAPTOP)
    assert w.minimumSizeHint().width() <= 1024 and w.minimumSizeHint().height() <= 700
    assert w.compact  # one tab group under the map
    w.close()


def test_a_geometry_saved_on_a_larger_screen_is_brought_into_a_smaller_one(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, QRect(0, 0, 2560, 1440))
    w.show()
    w.setGeometry(QRect(700, 300, 1500, 950))
    qtbot.waitUntil(lambda: w.geometry() == QRect(700, 300, 1500, 950))
    w.close()  # saves the geometry
    w2 = make_window(qtbot, tmp_path, LAPTOP)
    assert LAPTOP.contains(w2.frameGeometry()), w2.frameGeometry()
    w2.show()
    qtbot.waitUntil(lambda: LAPTOP.contains(w2.frameGeometry()))
    w2.close()


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_highlighted_item_of_a_drop_down_is_readable(qtbot, tmp_path, dark):
    """The light theme drew the highlighted item of every drop-down white on white."""
    w = make_window(qtbot, tmp_path, LAPTOP, dark=dark)
    w.show()
    qtbot.waitExposed(w)
    combo = w.map_panel.colour_combo
    combo.showPopup()
    view = combo.view()
    qtbot.waitExposed(view.window())
    row = 2
    view.selectionModel().setCurrentIndex(view.model().index(row, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    image = view.grab().toImage()
    rect = view.visualRect(view.model().index(row, 0))
    other = view.visualRect(view.model().index(0, 0))

    def colours(r: QRect) -> np.ndarray:
        return np.array([[QColor(image.pixel(x, y)).lightness() for x in range(r.left() + 2, r.right() - 2)]
                         for y in range(r.top() + 2, r.bottom() - 2)])

    highlighted, plain = colours(rect), colours(other)
    background = np.median(highlighted)
    assert abs(background - np.median(plain)) >= 12, "the highlighted item looks like the others"
    # its text stands out of its background (dark on light or light on dark)
    assert np.abs(highlighted - background).max() >= 100, "the highlighted item's text is not readable"
    combo.hidePopup()
    w.close()
