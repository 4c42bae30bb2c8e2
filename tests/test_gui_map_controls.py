"""The map's controls without training: the time-lapse's Play, the hover card, the linear probe's
colouring, the help. Real data: the digits test split, its raw pixels as the embeddings."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from engine.projection import layout  # noqa: E402
from explorer import jobs  # noqa: E402
from explorer.session import RunState, Session  # noqa: E402
from explorer.state import MapSnapshot  # noqa: E402
from explorer.views.map_view import MapPanel  # noqa: E402
from explorer.views.palette import RIGHT, WRONG, argb  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from engine.data import load_dataset

    return load_dataset("digits", test_size=300, seed=0)


def pixels_run(digits, snapshots: int = 3) -> RunState:
    test = digits.test
    x = test.images.reshape(len(test), -1).astype(np.float32) / 16
    rng = np.random.default_rng(0)
    run = RunState("r", "r", config={"dataset": "digits", "class_names": digits.class_names, "projection": "pca",
                                     "test_size": 300})
    run.dataset = digits
    for i in range(snapshots):
        emb = x + 0.05 * i * rng.normal(size=x.shape).astype(np.float32)
        run.snapshots.append(MapSnapshot(step=10 * i, epoch=float(i), embeddings=emb, indices=np.arange(len(test)),
                                         labels=test.labels))
        run.coords[(i, "pca")] = layout("pca", emb)
    return run


@pytest.fixture
def panel(qtbot, digits):
    s = Session()
    s.projection = "pca"
    p = MapPanel(s)
    qtbot.addWidget(p)
    p.primary.animate = False
    p.resize(700, 560)
    p.show()
    run = pixels_run(digits)
    s.runs[run.id] = run
    s.run_added.emit(run.id)
    s.select_run(run.id)
    s.snapshot_added.emit(run.id, len(run.snapshots) - 1)
    qtbot.waitUntil(lambda: p.primary.point_count == 300)
    yield p
    s.shutdown()
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)


def test_play_runs_the_time_lapse_from_the_first_snapshot_to_the_newest(qtbot, panel):
    s = panel.session
    assert panel.play_button.isEnabled() and s.frame < 0  # following the newest
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert panel.play_button.isChecked() and panel.slider.value() == 0 and s.frame == 0
    shown = set()
    qtbot.waitUntil(lambda: shown.add(panel.primary.shown_frame) or not panel.play_button.isChecked(), timeout=10_000)
    assert {0, 1, 2} <= shown | {panel.primary.shown_frame}
    assert s.frame < 0 and panel.slider.value() == 2 and "Play" in panel.play_button.text()  # follows again

    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)  # pause in the middle
    qtbot.waitUntil(lambda: panel.slider.value() == 1, timeout=10_000)
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert not panel.play_button.isChecked()
    qtbot.wait(900)  # longer than a Play tick: nothing moves while paused
    assert panel.slider.value() == 1 and s.frame == 1


def test_the_hover_card_hides_when_the_points_move(qtbot, panel):
    view = panel.primary
    xy = view.cloud.positions[17]
    view._on_scene_mouse_moved(view.vb.mapViewToScene(QPointF(*xy)))  # the mouse over point 17
    assert view.hover.isVisible() and "test image" in view.hover.text.text()
    panel.slider.setValue(0)  # scrubbing: the point under the mouse moved away
    qtbot.waitUntil(lambda: view.shown_frame == 0)
    assert not view.hover.isVisible()


def test_the_map_colours_the_linear_probes_errors(qtbot, panel, digits):
    """Each point green where a linear probe fitted on the other folds names its class, red where not:
    scikit-learn's cross-validated logistic regression on the standardised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    view, s = panel.primary, panel.session
    panel.colour_combo.setCurrentIndex(panel.colour_combo.findData("probe"))
    assert s.colour_by == "probe"
    qtbot.waitUntil(lambda: bool(view._legend_entries) and view._legend_entries[0][0].startswith("probe right"),
                    timeout=60_000)
    snap = s.current.snapshots[-1]
    peer = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)),
                             snap.embeddings.astype(np.float64), snap.labels,
                             cv=StratifiedKFold(5, shuffle=True, random_state=0)) == snap.labels
    expected = np.where(peer, argb(RIGHT), argb(WRONG))
    assert np.array_equal(view._colours, expected)
    assert 0.8 < peer.mean() < 1.0 and f"probe right ({peer.mean():.0%})" == view._legend_entries[0][0]


def test_the_map_has_its_help(qtbot, panel):
    assert not panel.help_label.isVisible()
    panel.show_help()
    assert panel.help_label.isVisible() and "linear probe" in panel.help_label.text()


def test_zoomed_in_far_enough_each_point_is_drawn_as_its_image(qtbot, panel, digits, monkeypatch):
    """Level of detail: dots while many points are in view, each point's own image (framed in its
    colour) once few are (here at most 100 of the 300)."""
    from explorer.views import map_view

    monkeypatch.setattr(map_view, "THUMBNAILS_AT", 100)
    view = panel.primary
    view.plot.grab()
    assert view.cloud.thumbnails_drawn == 0  # the whole map: 300 dots
    xy = view.cloud.positions
    centre = xy[42].astype(np.float64)
    half = float(np.sort(np.abs(xy - centre).max(1))[40])  # a square around point 42 holding ~40 points
    view.vb.setRange(xRange=(centre[0] - half, centre[0] + half), yRange=(centre[1] - half, centre[1] + half),
                     padding=0)
    image = view.plot.grab().toImage()
    assert 20 < view.cloud.thumbnails_drawn <= 100
    # where point 42 is, the pixels of a digit (8 x 8, dark and light), not one dot's flat colour
    p = view.plot.mapFromScene(view.vb.mapViewToScene(QPointF(*xy[42])))
    patch = np.array([[QColor(image.pixel(p.x() + dx, p.y() + dy)).lightness() for dx in range(-5, 6)]
                      for dy in range(-5, 6)])
    assert patch.max() - patch.min() > 100
    panel.fit()
    view.plot.grab()
    assert view.cloud.thumbnails_drawn == 0


def test_a_run_set_beside_gets_half_the_map(qtbot, digits):
    """A map shown beside one that had the whole width got the splitter's hinted width (70 px in the
    window), and its title and collapse badge one word a line."""
    s = Session()
    s.projection = "pca"
    p = MapPanel(s)
    qtbot.addWidget(p)
    for name in ("a", "b"):
        run = pixels_run(digits, snapshots=1)
        run.id = run.name = name
        s.runs[name] = run
        s.run_added.emit(name)
    s.select_run("a")
    p.resize(900, 560)
    p.show()
    qtbot.waitUntil(lambda: p.primary.point_count == 300)
    s.set_compare("b")
    qtbot.waitUntil(lambda: p.secondary.point_count == 300)
    left, right = p.splitter.sizes()
    assert abs(left - right) <= 0.1 * (left + right), (left, right)
    s.shutdown()
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)


def test_opening_a_collapsed_run_announces_it_once_it_is_listed(qtbot, tmp_path):
    """Reading a run's records before it is added noted its collapse with run_changed, whose
    listeners then looked it up in session.runs: KeyError (the window's handler raised)."""
    from engine.cli import main

    assert main(["train", "--method", "invariance-only", "--dataset", "digits", "--train-size", "300", "--test-size", "200",
                 "--epochs", "2", "--eval-every", "1", "--projection", "pca", "--out", str(tmp_path), "--run-name", "c",
                 "--quiet"]) == 0
    s = Session()
    verdicts = []
    s.run_changed.connect(lambda run_id: verdicts.append(s.runs[run_id].collapse_verdict))
    run = s.open_run(tmp_path / "c")
    assert run.collapse_verdict.endswith("collapse") and run.id in s.runs
    s.shutdown()
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)
