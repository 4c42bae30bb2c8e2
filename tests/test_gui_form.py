"""The training form speaks the form's words and refuses, on the field, a dataset its method cannot
use (pytest-qt, offscreen; nothing trains)."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QRect, QSettings, Qt  # noqa: E402

from explorer import jobs  # noqa: E402
from explorer.main_window import MainWindow  # noqa: E402
from explorer.views.training_panel import in_form_words  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runs_root=tmp_path / "runs", confirm_close=lambda: True,
                   screen_area=QRect(0, 0, 1280, 800))  # a laptop's: the form scrolls
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    assert jobs.wait_all(60_000)


def test_engine_messages_name_the_forms_labels():
    assert in_form_words("--batch-size: 700 is larger than the training set (600 images); allowed: 1 to 600") \
        == "'batch size': 700 is larger than the training set (600 images); allowed: 1 to 600"
    assert in_form_words("--dataset folder:x: the folder does not exist") == "'Dataset' folder:x: the folder does not exist"
    assert in_form_words("--eval-every: -1 is not valid") == "'eval every': -1 is not valid"
    assert in_form_words("a range 1--3 and a minus -2 stay") == "a range 1--3 and a minus -2 stay"


def test_a_dataset_the_method_cannot_use_is_refused_on_the_field(qtbot, window, tmp_path):
    tp, s = window.training_panel, window.session
    tp.select_method("colorization")  # picks its own dataset (painted-shapes), which it can use
    tp.select_dataset("digits")  # digits are grey: nothing to colour
    qtbot.waitUntil(lambda: tp.dataset_problem.isVisibleTo(window), timeout=60_000)
    assert "colour images" in tp.dataset_problem.text() and "digits" in tp.dataset_problem.text()
    assert tp.dataset_combo.property("invalid") is True and "--" not in tp.dataset_problem.text()
    # in view: the form scrolls to the field (colorization's long help had pushed it below the fold)
    viewport = tp.form_scroll.viewport()
    qtbot.waitUntil(lambda: viewport.rect().contains(
        QRect(tp.dataset_problem.mapTo(viewport, QPoint(0, 0)), tp.dataset_problem.size())))
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    assert s.job is None and s.training_state == "idle"
    assert "colour images" in tp.error_label.text()

    tp.select_method("rotation")  # any image will do (on digits: the test needs no Fashion-MNIST files)
    tp.select_dataset("digits")
    qtbot.waitUntil(lambda: not tp.dataset_problem.isVisibleTo(window), timeout=60_000)
    assert tp.dataset_combo.property("invalid") is False and not tp.error_label.isVisibleTo(window)

    empty = tmp_path / "empty"
    empty.mkdir()
    tp.use_folder(empty)  # an empty folder cannot be loaded at all
    qtbot.waitUntil(lambda: tp.dataset_problem.isVisibleTo(window), timeout=60_000)
    assert "no readable image" in tp.dataset_problem.text()
    with pytest.raises(ValueError, match="no readable image"):
        tp.build_config()
