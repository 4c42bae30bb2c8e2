"""The window and a collection (embed): File > Embed a folder… runs the job in the background with its
progress in the status bar, then opens the run; an embed run's map shows every image, the neighbours
and the selection show thumbnails, and the views that need a trained method say so."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine import events as ev  # noqa: E402
from engine import schema  # noqa: E402
from engine.embed import EmbedConfig, embed  # noqa: E402
from explorer import jobs  # noqa: E402
from explorer.main_window import MainWindow  # noqa: E402
from tests.test_embed import _corrupt, _folder  # noqa: E402

TIMEOUT = 180_000


@pytest.fixture
def window(qtbot, tmp_path):
    threads_before = set(threading.enumerate())
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runs_root=tmp_path / "runs", confirm_close=lambda: True)
    w.map_panel.primary.animate = False
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    assert jobs.wait_all(TIMEOUT)
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=TIMEOUT)
    left = [t for t in set(threading.enumerate()) - threads_before
            if t.is_alive() and not isinstance(t, threading._DummyThread)]
    assert not left, f"threads left running: {left}"


def _opened(qtbot, w: MainWindow, n: int):
    s = w.session
    w.map_panel.projection_combo.setCurrentIndex(w.map_panel.projection_combo.findData("pca"))  # as embedded
    qtbot.waitUntil(lambda: s.current is not None and s.current.collection is not None, timeout=TIMEOUT)
    view = w.map_panel.primary
    qtbot.waitUntil(lambda: view.point_count == n, timeout=TIMEOUT)
    return s.current, view


def test_embed_a_folder_from_the_window(qtbot, window, tmp_path):
    """The dialog, a job in its own process (DataLoader worker included), progress, then the run opens."""
    paths = _folder(tmp_path / "images", per_class=4)
    _corrupt(tmp_path / "images")
    w = window
    w.embed_action.trigger()
    dialog = w.embed_window
    dialog.folder_edit.setText(str(tmp_path / "nowhere"))
    dialog.encoder_combo.setEditText("color")  # a colour histogram: few dimensions, a quick evaluation
    qtbot.mouseClick(dialog.embed_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "does not exist" in dialog.error.text()  # refused at the dialog
    dialog.folder_edit.setText(str(tmp_path / "images"))
    dialog.map_combo.setCurrentText("pca")
    progress = []
    w.session.embedding_progressed.connect(progress.append)
    with qtbot.waitSignal(w.session.embedding_ended, timeout=TIMEOUT) as ended:
        qtbot.mouseClick(dialog.embed_button, Qt.MouseButton.LeftButton)
        assert w.embed_progress.isVisible() and w.embed_stop.isVisible() and not w.embed_action.isEnabled()
    run_dir, failure = ended.args
    assert failure == "" and progress and progress[-1]["done"] == len(paths) + 2
    run, view = _opened(qtbot, w, len(paths))
    assert str(run.path) == run_dir and not w.embed_progress.isVisible() and w.embed_action.isEnabled()
    assert run.dataset is not None and len(run.dataset.test) == len(paths)
    log = w.log_panel.log_view.toPlainText()
    assert "zz_not_an_image.png" in log and "zz_cut.png" in log  # the skipped files, named


@pytest.fixture
def embedded(tmp_path):
    paths = _folder(tmp_path / "images", per_class=5)
    config = EmbedConfig(dataset=f"folder:{tmp_path / 'images'}", encoder="color", out=str(tmp_path / "made"),
                         run_name="e", workers=0, projection="pca")
    assert isinstance(list(embed(config))[-1], ev.Finished)
    return tmp_path / "made" / "e", len(paths)


def test_an_embed_run_shows_every_point_neighbours_and_selection_with_thumbnails(qtbot, window, embedded):
    run_dir, n = embedded
    w, s = window, window.session
    w.open_run(run_dir)
    run, view = _opened(qtbot, w, n)
    c = run.collection
    np.testing.assert_array_equal(view.cloud.positions, c.coords)  # the map computed at embed time, at once
    i = 3
    x, y = view.cloud.positions[i]
    pos = view.plot.mapFromScene(view.vb.mapViewToScene(QPointF(float(x), float(y))))
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert s.selected_row >= 0
    panel = w.neighbours_panel
    shown = [b for b in panel.grid.buttons if b.isVisible()]
    assert len(shown) == min(panel.k_spin.value(), n - 1) and not shown[0].icon().isNull()
    assert c.items[s.selected_row]["path"] in panel.info.text()  # the image's file, not a row number
    assert not panel.image.pixmap().isNull()
    s.select_rows([0, 1, 2])
    grid = w.selection_grid.grid
    assert sum(b.isVisible() for b in grid.buttons) == 3 and not grid.buttons[0].icon().isNull()
    w.docks["collapse_panel"].raise_()  # the trainer's figures, computed at the end of the job
    qtbot.waitUntil(lambda: not w.panels["collapse_panel"].empty_label.isVisible(), timeout=10_000)
    w.docks["contrastive_inspector"].raise_()
    contrastive = w.inspectors["contrastive_inspector"]
    qtbot.waitUntil(lambda: "needs a trained method" in contrastive.status.text(), timeout=10_000)


def test_a_large_runs_neighbour_index_is_built_in_a_worker_when_it_opens(qtbot, window, embedded, monkeypatch):
    """A run too large to index on the GUI thread (here: any, with the limit at 0) has its index built
    in a worker as soon as it opens, so the first click finds it; a click rings the points without
    stamping the map's points again."""
    from engine.neighbours import knn
    from explorer import session as session_module

    monkeypatch.setattr(session_module, "INLINE_INDEX_VALUES", 0)
    run_dir, n = embedded
    w, s = window, window.session
    with qtbot.waitSignal(s.neighbour_index_ready, timeout=TIMEOUT):
        w.open_run(run_dir)
    run, view = _opened(qtbot, w, n)
    snap = run.snapshots[-1]
    panel = w.neighbours_panel
    assert s.neighbour_index(run, snap, panel.metric_combo.currentText()) is not None  # there before any click
    viewport = view.plot.viewport()

    def settled_stamps() -> int:  # the first paints move the view to the points' range: paint till it stays
        stamps = -1
        while stamps != view.cloud.stamps:
            stamps = view.cloud.stamps
            QApplication.processEvents()
            viewport.repaint()
        return stamps

    stamps = settled_stamps()
    assert stamps > 0
    s.select_point(int(snap.indices[4]))
    k = min(panel.k_spin.value(), n - 1)
    _, idx = knn(snap.embeddings[4:5], snap.embeddings, k + 1, metric="cosine")
    np.testing.assert_array_equal(panel.neighbour_rows, snap.indices[idx[0][idx[0] != 4][:k]])
    assert len(view.neighbour_marks.data) == k and len(view.point_mark.data) == 1
    QApplication.processEvents()
    viewport.repaint()
    assert view.cloud.stamps == stamps  # the same view: the kept stamp, drawn again
    panel.metric_combo.setCurrentText("euclidean")  # another index: built in a worker, then shown
    assert not len(panel.neighbour_rows) and "Preparing the neighbours" in panel.info.text()
    qtbot.waitUntil(lambda: len(panel.neighbour_rows) == k, timeout=TIMEOUT)
    _, idx = knn(snap.embeddings[4:5], snap.embeddings, k + 1, metric="euclidean")
    np.testing.assert_array_equal(panel.neighbour_rows, snap.indices[idx[0][idx[0] != 4][:k]])


def test_an_inspector_that_does_not_apply_shows_its_line_not_empty_frames(qtbot, window, embedded):
    """Each inspector, brought to the front on an embed run: one that needs a trained method shows only
    the line saying so (no empty image frames, no controls); one that applies shows its content."""
    from explorer.views.inspectors import INSPECTORS
    from explorer.views.kit import FRAMES

    run_dir, n = embedded
    w = window
    w.open_run(run_dir)
    _opened(qtbot, w, n)
    for cls in INSPECTORS:
        inspector = w.inspectors[cls.name]
        w.docks[cls.name].raise_()
        qtbot.waitUntil(lambda: inspector.isVisible(), timeout=5000)
        FRAMES.flush()
        if cls.needs_method:
            qtbot.waitUntil(lambda: inspector.notice.isVisible(), timeout=10_000)
            assert "needs a trained method" in inspector.notice.text()
            assert not inspector.content.isVisible(), cls.name
            assert not any(inspector.controls.itemAt(i).widget().isVisible()
                           for i in range(inspector.controls.count()) if inspector.controls.itemAt(i).widget())
        else:
            qtbot.waitUntil(lambda: inspector.content.isVisible(), timeout=10_000)
            assert not inspector.notice.isVisible(), cls.name


def test_an_inspector_of_classes_says_so_on_unlabelled_points(qtbot):
    from explorer.state import MapSnapshot
    from explorer.views.inspectors import INSPECTORS

    snap = MapSnapshot(step=0, epoch=0.0, embeddings=np.zeros((3, 2), np.float32), indices=np.arange(3),
                       labels=np.full(3, -1))
    for cls in INSPECTORS:
        inspector = cls()
        qtbot.addWidget(inspector)
        inspector.config, inspector.snapshot = {"method": "embed"}, snap
        inspector.redraw()
        if cls.needs_labels:
            assert "unlabelled" in inspector.not_drawn_because()
            assert not inspector.notice.isHidden() and inspector.content.isHidden()
        elif not cls.needs_method:
            assert inspector.not_drawn_because() is None and inspector.notice.isHidden()


def test_a_damaged_embed_run_opens_with_its_complete_rows(qtbot, window, embedded):
    run_dir, n = embedded
    path = run_dir / schema.EMBEDDINGS_NPY
    os.truncate(path, path.stat().st_size - 3 * schema.load_collection(run_dir).value.embeddings.shape[1] * 4)
    window.open_run(run_dir)
    run, view = _opened(qtbot, window, n - 3)
    assert any("cut short" in note for note in run.notes)
    assert "cut short" in window.log_panel.log_view.toPlainText()


def test_open_embeddings_made_elsewhere_from_the_window(qtbot, window, tmp_path, monkeypatch):
    """File > Open embeddings… on a projector export of the explorer's own File > Export."""
    from explorer.export import export_projector

    monkeypatch.setenv("EMBEDDING_EXPLORER_JOB", "thread")  # the import is quick: no process needed
    rng = np.random.default_rng(1)
    n = 24
    export_projector(tmp_path / "proj", rng.normal(size=(n, 6)).astype(np.float32), np.arange(n) % 4,
                     ["a", "b", "c", "d"], np.arange(n), rng.integers(0, 255, size=(n, 16, 16, 3), dtype=np.uint8))
    w = window
    w.open_embeddings_action.trigger()
    dialog = w.embeddings_window
    dialog.file_edit.setText(str(tmp_path / "proj" / "projector_config.pbtxt"))
    dialog.map_combo.setCurrentText("pca")
    with qtbot.waitSignal(w.session.embedding_ended, timeout=TIMEOUT) as ended:
        qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)
    assert ended.args[1] == ""
    run, view = _opened(qtbot, w, n)
    assert run.class_names == ["a", "b", "c", "d"] and run.dataset is not None
    assert run.dataset.thumbnail("test", 0).shape == (16, 16, 3)
