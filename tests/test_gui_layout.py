"""The window at a laptop's size and a larger one, in both themes: it fits the screen, and every
default panel's text, titles and axes are readable without moving a dock (geometry facts measured
on the widgets: each text has the room its font needs, nothing is elided).

pytest-qt, offscreen; the window is given the free screen area it must fit (``screen_area``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QItemSelectionModel, QPointF, QRect, QRectF, QSettings, Qt  # noqa: E402
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


def test_ctrl_shift_d_switches_the_theme_and_says_so(qtbot, tmp_path):
    """Restyling the window takes seconds on a busy machine: the key says what it does at once."""
    from PySide6.QtWidgets import QApplication

    w = make_window(qtbot, tmp_path, LAPTOP)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert "switching to the dark theme" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: w.dark and "dark theme" in w.statusBar().currentMessage()
                    and QApplication.overrideCursor() is None, timeout=60_000)
    assert all(panel.dark for panel in w.dock_panels.values())
    qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: not w.dark and QApplication.overrideCursor() is None, timeout=60_000)
    assert not any(panel.dark for panel in w.dock_panels.values())
    w.close()


# readability: geometry facts measured on the widgets -----------------------------------------------
def _shown(widget) -> bool:
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


def _text_width(widget, text: str) -> int:
    return widget.fontMetrics().horizontalAdvance(text)


def _plain(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text).replace("&nbsp;", " ").replace("&amp;", "&")


def readability_problems(w: MainWindow, keys=None) -> list[str]:
    """What a person could not read on the window as it is now: the window off its screen, elided
    tabs, and in the docks ``keys`` (default: all) that are on screen (the front tab of each group)
    their titles and the text, plots and tables inside them; the maps' titles and legends."""
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QLineEdit, QScrollBar, QTabBar, QTableWidget
    import pyqtgraph as pg

    problems: list[str] = []
    area = w.available_geometry()
    if not area.contains(w.frameGeometry()):
        problems.append(f"window {w.frameGeometry()} is not within the screen {area}")
    for bar in w.findChildren(QTabBar):
        if not _shown(bar):
            continue
        for i in range(bar.count()):
            text, rect = bar.tabText(i), bar.tabRect(i)
            if rect.width() < _text_width(bar, text) + 8 or rect.right() > bar.width() + 1:
                problems.append(f"tab {text!r}: {rect.width()} px, its text needs {_text_width(bar, text) + 8}")
    for key, dock in w.docks.items():
        if keys is not None and key not in keys or not _shown(dock):
            continue
        need = _text_width(dock, dock.windowTitle()) + 50  # the float and close buttons
        if dock.width() < need:
            problems.append(f"{key}: dock {dock.width()} px wide, its title needs {need}")
        for bar in dock.findChildren(QScrollBar):
            if _shown(bar) and bar.orientation() == Qt.Orientation.Horizontal and bar.maximum() > 0:
                problems.append(f"{key}: scrolls sideways ({bar.maximum()} px hidden): narrower than its content")
        for widget in dock.findChildren(QLabel):
            if not widget.isVisible() or not widget.text() or widget.objectName() == "help_label":
                continue
            text = _plain(widget.text())
            if widget.wordWrap():
                if widget.height() < widget.heightForWidth(widget.width()) - 2:
                    problems.append(f"{key}: label {text[:40]!r} cut: {widget.height()} px high, needs "
                                    f"{widget.heightForWidth(widget.width())}")
            elif widget.pixmap().isNull() and widget.width() < widget.sizeHint().width() - 1:
                problems.append(f"{key}: label {text[:40]!r} cut: {widget.width()} of {widget.sizeHint().width()} px")
        for widget in dock.findChildren(QAbstractButton):
            if widget.isVisible() and widget.text() and widget.width() < widget.sizeHint().width() - 1:
                problems.append(f"{key}: button {widget.text()!r} cut: {widget.width()} of {widget.sizeHint().width()} px")
        for widget in dock.findChildren(QComboBox):
            if widget.isVisible() and widget.width() < _text_width(widget, widget.currentText()) + 30:
                problems.append(f"{key}: drop-down {widget.currentText()!r} cut at {widget.width()} px")
        for widget in dock.findChildren(QLineEdit):
            text = widget.text() or widget.placeholderText()
            if widget.isVisible() and widget.width() < _text_width(widget, text) + 14:
                problems.append(f"{key}: field {text!r} cut at {widget.width()} px")
        for table in dock.findChildren(QTableWidget):
            if not _shown(table):
                continue
            for c in range(table.columnCount()):
                head = table.horizontalHeaderItem(c).text() if table.horizontalHeaderItem(c) else ""
                need = max(_text_width(table, head) + 16, 0)
                if table.columnWidth(c) < need:
                    problems.append(f"{key}: column {head!r} {table.columnWidth(c)} px, its header needs {need}")
            last = table.columnCount() - 1
            chars = table.columnWidth(last) / max(1, table.fontMetrics().averageCharWidth())
            if chars < 25:
                problems.append(f"{key}: column {table.horizontalHeaderItem(last).text()!r} holds {chars:.0f} "
                                "characters a line (25 at least: a phrase, not a word)")
        for view in dock.findChildren(pg.PlotWidget):
            if view.isVisible():
                problems += [f"{key}: {p}" for p in _plot_problems(view)]
    for view in w.map_panel.views:
        if _shown(view):
            problems += [f"map {view.slot}: {p}" for p in _map_problems(view)]
    return problems


def _plot_problems(view) -> list[str]:
    """A plot lies whole on its widget, with its title and axis labels (a long title widens the plot
    past the widget's edge, which then cuts it), its data area is large enough to read, its legend
    fits in it and covers few of its data points."""
    import pyqtgraph as pg

    problems = []
    plot = view.getPlotItem()
    vb = plot.getViewBox()
    width, height = vb.width(), vb.height()
    frame = view.mapToScene(view.viewport().rect()).boundingRect().adjusted(-6, -6, 6, 6)

    def whole(item) -> bool:
        return frame.contains(item.mapRectToScene(item.boundingRect()))

    if not whole(vb):
        problems.append(f"plot {_plain(plot.titleLabel.text or '')!r} runs past its widget's edge "
                        f"({plot.width():.0f} px wide in {view.width()})")

    title = plot.titleLabel
    if title.isVisible() and title.text and not whole(title.item):
        problems.append(f"plot title {_plain(title.text)!r} is cut ({title.item.boundingRect().width():.0f} px, "
                        f"the plot is {plot.width():.0f})")
    if width < 120 or height < 60:
        problems.append(f"plot {_plain(title.text or '')!r}: {width:.0f} x {height:.0f} px of data area "
                        "(120 x 60 at least)")
    for name, length in (("bottom", width), ("left", height)):
        axis = plot.getAxis(name)
        if axis.isVisible() and axis.label.isVisible() and axis.labelText:
            need = axis.label.boundingRect().width()
            if need > length + 1 or not whole(axis.label):
                problems.append(f"axis label {axis.labelText!r} needs {need:.0f} px, the axis is {length:.0f}")
    legend = plot.legend
    if legend is not None and legend.isVisible() and legend.items and legend.parentItem() is vb:
        box = legend.mapRectToItem(vb, legend.boundingRect())
        if not vb.boundingRect().adjusted(-1, -1, 1, 1).contains(box):
            problems.append(f"legend {box.width():.0f} x {box.height():.0f} px does not fit its plot "
                            f"({width:.0f} x {height:.0f})")
        scene_box = legend.mapRectToScene(legend.boundingRect())
        points = hidden = 0
        for item in vb.addedItems:
            if isinstance(item, pg.PlotDataItem) and item.isVisible() and item.getData()[0] is not None:
                for x, y in zip(*item.getData()):
                    if np.isfinite(x) and np.isfinite(y):
                        points += 1
                        hidden += scene_box.contains(vb.mapViewToScene(QPointF(float(x), float(y))))
        if hidden > max(1, 0.05 * points):
            problems.append(f"the legend of {_plain(plot.titleLabel.text or '')!r} covers {hidden} of its "
                            f"{points} data points")
    return problems


def _map_problems(view) -> list[str]:
    problems = []
    for label in (view.title, view.badge):
        if not label.isVisible() or not label.text():
            continue
        if label.geometry().right() > view.width() - 4:
            problems.append(f"{label.objectName()} {label.text()!r} runs past the map's edge")
        if label.wordWrap() and label.height() < label.heightForWidth(label.width()) - 2 or \
                not label.wordWrap() and label.width() < label.sizeHint().width() - 1:
            problems.append(f"{label.objectName()} {label.text()!r} is cut")
    legend, vb = view.legend, view.vb
    if legend.isVisible() and legend.items:
        legend_box = legend.mapRectToScene(legend.boundingRect())
        for label in (view.title, view.badge):
            if label.isVisible() and label.text():
                corners = [view.plot.mapToScene(view.plot.mapFrom(view, p)) for p in
                           (label.geometry().topLeft(), label.geometry().bottomRight())]
                if QRectF(corners[0], corners[1]).intersects(legend_box):
                    problems.append(f"{label.objectName()} {label.text()!r} runs over the legend")
    xy = view.cloud.positions
    if legend.isVisible() and legend.items and len(xy):
        scene = legend.mapRectToScene(legend.boundingRect())
        shown = view.plot.mapToScene(view.plot.viewport().rect()).boundingRect().adjusted(-2, -2, 2, 2)
        if not shown.contains(scene):
            problems.append(f"the legend ({scene.width():.0f} x {scene.height():.0f} px) is cut by the map's edge")
        box = vb.mapSceneToView(scene).boundingRect()
        inside = ((xy[:, 0] >= box.left()) & (xy[:, 0] <= box.right())
                  & (xy[:, 1] >= box.top()) & (xy[:, 1] <= box.bottom()))
        if inside.any():
            problems.append(f"the legend covers {int(inside.sum())} of the {len(xy)} points")
    return problems


@pytest.fixture(scope="module")
def triplet_runs(tmp_path_factory):
    """A finished triplet run with every diagnostic (triplet categories and histogram, collapse, the
    map) written by the command line, and a copy of it to set beside it."""
    import shutil

    from engine.cli import main

    out = tmp_path_factory.mktemp("layout_runs")
    assert main(["train", "--method", "triplet", "--dataset", "digits", "--train-size", "200", "--epochs", "2",
                 "--batch-size", "40", "--eval-every", "1", "--projection", "pca", "--out", str(out),
                 "--run-name", "triplet", "--quiet"]) == 0
    shutil.copytree(out / "triplet", out / "triplet-copy")
    return out / "triplet", out / "triplet-copy"


def show_each_panel(qtbot, w: MainWindow, shots: str | None = None, name: str = ""):
    """Bring each dock to the front in turn (as clicking its tab does) and measure it; with ``shots``,
    save a picture of the window for each group of docks brought to the front together."""
    from explorer.views.kit import FRAMES

    problems: list[str] = []
    # one dock of each tab group per picture: the n-th tab of every group
    tabbed = {key: [key] + [k for k, d in w.docks.items() if d in w.tabifiedDockWidgets(dock)]
              for key, dock in w.docks.items()}
    seen, rounds = set(), []
    for key in w.docks:
        group = tuple(sorted(tabbed[key], key=list(w.docks).index))
        if group not in seen:
            seen.add(group)
            for i, k in enumerate(group):
                while len(rounds) <= i:
                    rounds.append([])
                rounds[i].append(k)
    for i, keys in enumerate(rounds):
        for key in keys:
            w.docks[key].raise_()
        qtbot.waitUntil(lambda: all(_shown(w.docks[k]) for k in keys), timeout=5000)
        qtbot.wait(50)  # a layout pass and the panels' first draws (they redraw when shown)
        FRAMES.flush()
        qtbot.wait(20)
        problems += readability_problems(w, keys)
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            w.grab().save(str(Path(shots) / f"{name}-{i}.png"))
    return problems


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("area", [LAPTOP, DESKTOP], ids=["1280x800", "1600x1000"])
def test_every_default_panel_is_readable(qtbot, tmp_path, triplet_runs, area, dark):
    """At 1280 x 800 and 1600 x 1000, light and dark: each dock in its default place, brought to the
    front by its tab, shows its text, titles, axes and tables whole, and the side-by-side maps keep
    their points clear of their legends. A picture of each round is saved (into LAYOUT_SHOTS=FOLDER when
    given, else the test's temporary folder) and must not be blank."""
    import os

    w = make_window(qtbot, tmp_path, area, dark=dark)
    w.map_panel.projection_combo.setCurrentIndex(w.map_panel.projection_combo.findData("pca"))  # the run's own map
    run = w.session.open_run(triplet_runs[0])
    w.show()
    qtbot.waitUntil(lambda: w.frameGeometry() == area)
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count > 0 and run.dataset is not None, timeout=60_000)
    w.session.select_point(int(run.snapshots[-1].indices[3]))
    name = f"{area.width()}x{area.height()}-{'dark' if dark else 'light'}"
    shots = os.environ.get("LAYOUT_SHOTS") or str(tmp_path / "shots")
    problems = show_each_panel(qtbot, w, shots, name)
    beside = w.session.open_run(triplet_runs[1], select=False)
    w.session.set_compare(beside.id)
    qtbot.waitUntil(lambda: w.map_panel.secondary.point_count > 0, timeout=60_000)
    qtbot.wait(50)
    problems += readability_problems(w, keys=())
    w.grab().save(os.path.join(shots, f"{name}-beside.png"))
    from PySide6.QtGui import QImage

    for path in sorted(Path(shots).glob(f"{name}-*.png")):
        image = QImage(str(path))
        assert (image.width(), image.height()) == (w.width(), w.height()), path
        grey = np.array([[QColor(image.pixel(x, y)).lightness() for x in range(0, image.width(), 16)]
                         for y in range(0, image.height(), 16)])
        assert grey.std() > 10, f"{path} is blank"
    assert not problems, "\n".join(problems)
    w.close()
