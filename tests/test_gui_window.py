"""The window end to end (pytest-qt, offscreen): training in a worker thread, the map, the neighbours
panel, invalid fields, failed jobs, opened and followed runs, export, closing during training.

Runs are tiny digits runs on the CPU. Nothing waits with time.sleep: qtbot.waitSignal/waitUntil (the
one fixed wait checks that nothing arrives while paused).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QRect, QSettings, Qt  # noqa: E402

from explorer import jobs  # noqa: E402
from explorer.main_window import MainWindow  # noqa: E402

TIMEOUT = 180_000  # generous: the 2 shared cores are often busy with other runs


@pytest.fixture
def window(qtbot, tmp_path):
    threads_before = set(threading.enumerate())
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    # the size these tests were written at (the offscreen screen is 800 x 800)
    w = MainWindow(settings=settings, runs_root=tmp_path / "runs", confirm_close=lambda: True,
                   screen_area=QRect(0, 0, 1600, 1000))
    w.map_panel.primary.animate = False
    w.map_panel.secondary.animate = False
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.session.training_state != "idle":
        w.session.stop_training()
        qtbot.waitUntil(lambda: w.session.training_state == "idle", timeout=TIMEOUT)
    w.close()
    assert jobs.wait_all(TIMEOUT)
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=TIMEOUT)
    left = [t for t in set(threading.enumerate()) - threads_before
            if t.is_alive() and not isinstance(t, threading._DummyThread)]
    assert not left, f"threads left running: {left}"


def small_run(w: MainWindow, epochs: int = 1, train_size: int = 300, batch_size: int = 30,
              eval_every: float = 1.0, lr: str = "") -> None:
    """Fill the training panel for a tiny digits run (no diagnostics, PCA map)."""
    tp = w.training_panel
    tp.apply_preset("digits")
    g = tp.general
    g["epochs"].set_text(str(epochs))
    g["train_size"].set_text(str(train_size))
    g["batch_size"].set_text(str(batch_size))
    g["eval_every"].set_text(str(eval_every))
    g["lr"].set_text(lr)
    g["projection"].set_text("pca")
    g["diagnostics"].set_text("false")
    w.map_panel.projection_combo.setCurrentIndex(w.map_panel.projection_combo.findData("pca"))


def steps(run) -> int:
    return sum(r["kind"] == "step" for r in run.records)


def has_kind(kind):
    return lambda run_id, records: any(r.get("kind") == kind for r in records)


def run_to_end(qtbot, w: MainWindow, **kw):
    small_run(w, **kw)
    qtbot.mouseClick(w.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.training_state == "idle", timeout=TIMEOUT)
    run = w.session.current
    view = w.map_panel.primary
    qtbot.waitUntil(lambda: view.point_count == len(run.snapshots[-1].indices)
                    and view.shown_frame == len(run.snapshots) - 1, timeout=TIMEOUT)  # the newest snapshot
    return run


def test_start_pause_resume_stop(qtbot, window):
    w, s = window, window.session
    small_run(w, epochs=100)
    assert w.training_panel.progress_bar.value() == 0
    with qtbot.waitSignal(s.records_added, timeout=TIMEOUT, check_params_cb=has_kind("step")):
        qtbot.mouseClick(w.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(s.current.snapshots) > 0, timeout=TIMEOUT)  # the step-0 evaluation's
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count > 0, timeout=TIMEOUT)
    run = s.current
    assert w.map_panel.primary.point_count == len(run.snapshots[-1].indices) == 597  # the digits test split
    qtbot.waitUntil(lambda: w.training_panel.progress_bar.value() > 0, timeout=TIMEOUT)
    assert "img/s" in w.training_panel.progress_bar.format()
    assert w.findChild(type(w.map_panel.primary.plot), "projection_view") is not None

    qtbot.mouseClick(w.training_panel.pause_button, Qt.MouseButton.LeftButton)
    # "paused" once the job holds (engine.events.Paused, after its last step's event), not at the click
    qtbot.waitUntil(lambda: s.training_state == "paused", timeout=TIMEOUT)
    assert s.training_state == "paused" and w.training_panel.pause_button.text() == "Resume"
    paused_at = steps(run)
    qtbot.wait(800)
    assert steps(run) == paused_at, "steps arrived while paused"

    with qtbot.waitSignal(s.records_added, timeout=TIMEOUT, check_params_cb=has_kind("step")):
        qtbot.mouseClick(w.training_panel.pause_button, Qt.MouseButton.LeftButton)
    assert steps(run) > paused_at

    qtbot.mouseClick(w.training_panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.training_state == "idle", timeout=TIMEOUT)
    assert run.status == "stopped"
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["stopped"] is True and summary["steps"] < 1000
    assert w.training_panel.start_button.isEnabled() and w.training_panel.pause_button.text() == "Pause"


def test_each_tab_group_shows_one_tab_bar(qtbot, window):
    """Qt leaves a stale tab bar on screen when a dock is tabbed into a group that is not the first of
    its area (it covered the training form); the window hides them."""
    from PySide6.QtWidgets import QTabBar

    def groups():
        bars = [b for b in window.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
                if b.isVisible()]
        return sorted(sorted(b.tabText(i) for i in range(b.count())) for b in bars)

    expected = [["Angles", "Collapse", "Pairs", "Probe", "Triplets"], ["Augmentations", "Runs"],
                ["Log", "Loss", "Properties"], ["Neighbours", "Selection"], ["Pretext task", "SimCLR views", "Triplet"]]
    qtbot.waitUntil(lambda: groups() == expected, timeout=5000)


def test_training_falls_back_to_a_thread_when_no_process_can_start(qtbot, window, monkeypatch):
    import engine.child

    def no_process():
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(engine.child, "take_child", no_process)
    w, s = window, window.session
    messages = []
    s.message_posted.connect(lambda level, text: messages.append((level, text)))
    run = run_to_end(qtbot, w)
    assert run.status == "finished" and s.job.in_process
    assert any(level == "warning" and "could not start (OSError" in text for level, text in messages)


def hover_over(widget, pos) -> None:
    """A mouse move without buttons (QTest.mouseMove moves the cursor only, offscreen it sends nothing)."""
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    event = QMouseEvent(QMouseEvent.Type.MouseMove, QPointF(pos), QPointF(widget.mapToGlobal(pos)),
                        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_click_point_shows_its_embedding_neighbours(qtbot, window):
    from engine.neighbours import knn

    w, s = window, window.session
    run = run_to_end(qtbot, w)
    qtbot.waitUntil(lambda: run.dataset is not None, timeout=TIMEOUT)
    view = w.map_panel.primary
    snap = run.snapshots[-1]
    i = 123
    x, y = view.cloud.positions[i]
    scene = view.vb.mapViewToScene(QPointF(float(x), float(y)))
    pos = view.plot.mapFromScene(scene)
    hover_over(view.plot.viewport(), pos)  # hover: the thumbnail and the label
    qtbot.waitUntil(lambda: view.hover.isVisible(), timeout=5000)
    assert view.hover.image.pixmap() is not None and not view.hover.image.pixmap().isNull()
    hovered = snap.row_of(int(view.hover.text.text().split("test image ")[1]))
    assert run.class_names[snap.labels[hovered]] in view.hover.text.text()
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert s.selected_row >= 0
    clicked = snap.row_of(s.selected_row)
    assert np.hypot(*(view.cloud.positions[clicked] - view.cloud.positions[i])) < 1e-3 + \
        10 * max(view.vb.viewPixelSize())  # the point under the cursor (or one drawn on top of it)

    panel = w.neighbours_panel
    assert panel.objectName() == "neighbours_panel"
    k = panel.k_spin.value()
    d, idx = knn(snap.embeddings[clicked:clicked + 1], snap.embeddings, k + 1, metric="cosine")
    keep = idx[0] != clicked
    np.testing.assert_array_equal(panel.neighbour_rows, snap.indices[idx[0][keep][:k]])
    np.testing.assert_allclose(panel.neighbour_distances, d[0][keep][:k], atol=1e-5)
    shown = [b for b in panel.grid.buttons if b.isVisible()]
    assert len(shown) == k and not shown[0].icon().isNull()
    assert view.point_mark.data is not None and len(view.point_mark.data) == 1  # highlighted on the map

    panel.metric_combo.setCurrentText("euclidean")
    d, idx = knn(snap.embeddings[clicked:clicked + 1], snap.embeddings, k + 1, metric="euclidean")
    keep = idx[0] != clicked
    np.testing.assert_array_equal(panel.neighbour_rows, snap.indices[idx[0][keep][:k]])

    first = int(panel.neighbour_rows[0])
    qtbot.mouseClick(shown[0], Qt.MouseButton.LeftButton)  # walk to the nearest neighbour
    assert s.selected_row == first


def test_invalid_parameter_is_refused_at_the_field(qtbot, window):
    w = window
    small_run(w)
    field = w.training_panel.general["lr"]
    qtbot.keyClicks(field.editor, "nan")
    assert field.editor.property("invalid") is True
    # the form's words: the field's label, not the command-line flag
    assert "'lr'" in field.error and "--" not in field.error and "nan" in field.error.lower()
    assert "⚠" in field.editor.toolTip()
    qtbot.mouseClick(w.training_panel.start_button, Qt.MouseButton.LeftButton)
    assert w.session.job is None and w.session.training_state == "idle"
    assert w.training_panel.error_label.isVisibleTo(w) and "'lr'" in w.training_panel.error_label.text()
    field.set_text("0.002")
    assert field.editor.property("invalid") is False

    # a method parameter, built from its Param spec with its range
    w.training_panel.select_method("simclr")
    temperature = w.training_panel.method_fields["temperature"]
    temperature.set_text("-1")
    assert temperature.error and "'temperature'" in temperature.error and "--" not in temperature.error
    assert temperature.param.help in temperature.editor.toolTip()


def test_preset_fills_the_form_with_its_method_and_encoder_parameters(qtbot, window):
    from engine.presets import PRESETS

    tp = window.training_panel
    tp.apply_preset("triplet-fashion-cpu")
    preset = PRESETS["triplet-fashion-cpu"]
    assert tp.method == "triplet" and tp.dataset_combo.currentData() == "fashion-mnist"
    assert tp.general["time_limit"].value() == preset["time_limit"]
    for key, value in preset["method_params"].items():
        assert tp.method_fields[key].value() == value
    assert tp.encoder_fields["convs_per_block"].value() == 1
    config = tp.build_config()
    assert config.time_limit == 3.0 and config.method_params["squared"] is False
    assert config.method_params["classes_per_batch"] == 10
    # another preset puts back what it does not set: no time limit, default parameters
    tp.apply_preset("digits")
    assert tp.general["time_limit"].value() is None
    assert tp.encoder_fields["convs_per_block"].value() == 2


def test_a_method_fills_the_encoder_settings_it_prefers(qtbot, window):
    tp = window.training_panel
    tp.select_method("invariance-only")  # its collapse needs a ReLU output: neck none
    assert tp.encoder_fields["neck"].value() == "none"
    assert tp.build_config().encoder_params["neck"] == "none"
    tp.select_encoder("resnet18")
    assert tp.encoder_fields["neck"].value() == "none"
    tp.select_encoder("convnet")
    tp.select_method("simclr")  # no preference: the parameter's default
    assert tp.encoder_fields["neck"].value() == "dense"


def test_a_method_offers_the_dataset_it_is_meant_for(qtbot, window):
    tp = window.training_panel
    tp.select_dataset("digits")
    tp.select_method("colorization")  # grey digits have no colours to predict
    assert tp.dataset_combo.currentData() == "painted-shapes"
    assert tp.build_config().dataset == "painted-shapes"
    tp.select_method("supervised")  # no preference: the dataset stays as chosen
    assert tp.dataset_combo.currentData() == "painted-shapes"
    tp.select_dataset("digits")


def test_method_help_is_as_high_as_its_text(qtbot, window):
    """A long help is shown whole, and a shorter one after it gives the height back (no gap)."""
    tp = window.training_panel
    tp.select_method("invariance-only")
    long_height = tp.method_help.height()
    assert long_height >= tp.method_help.heightForWidth(tp.method_help.width())  # no line cut off
    tp.select_method("supervised")
    assert tp.method_help.height() < long_height / 2
    tp.select_method("invariance-only")
    assert tp.method_help.height() == long_height


def test_augmentation_preview_shows_the_forms_dataset_before_any_run(qtbot, window):
    preview = window.inspectors["augmentation_preview"]
    window.training_panel.select_method("simclr")
    window.docks["augmentation_preview"].raise_()
    qtbot.waitUntil(lambda: preview.views.shape[:2] == (4, 6), timeout=TIMEOUT)  # digits: 4 images x 6 views
    assert preview.views.shape[2:] == (1, 8, 8) and preview.cells[0][1].pixmap() is not None
    assert "digits" in preview.status.text()
    window.training_panel.select_dataset("shapes")  # another dataset chosen: its images, in colour
    qtbot.waitUntil(lambda: preview.views.shape[2:3] == (3,), timeout=TIMEOUT)
    assert "shapes" in preview.status.text()


def test_the_collapse_control_marks_the_map_with_one_point(qtbot, window):
    """invariance-only on digits: the map becomes one point, badged, though the Collapse tab is hidden."""
    w = window
    tp = w.training_panel
    small_run(w, epochs=1, train_size=1200, batch_size=32)
    tp.select_method("invariance-only")
    tp.general["batch_size"].set_text("")  # the method's defaults
    tp.general["diagnostics"].set_text("true")
    assert w.panels["collapse_panel"].tabbed_away()  # behind the probe plot: it reads records only when shown
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.training_state == "idle", timeout=TIMEOUT)
    run = w.session.current
    assert run.status == "finished" and run.collapse_verdict == "complete collapse"
    view = w.map_panel.primary
    qtbot.waitUntil(lambda: view.point_count == len(run.snapshots[-1].indices)
                    and view.shown_frame == len(run.snapshots) - 1, timeout=TIMEOUT)  # the newest snapshot
    assert view.badge.isVisibleTo(view) and "complete collapse from step" in view.badge.text()
    assert "one point" in view.title.text()
    assert not np.ptp(view.cloud.positions, axis=0).any()  # every point drawn at the same place


def test_failed_job_shows_its_message_and_window_still_works(qtbot, window):
    w, s = window, window.session
    small_run(w, train_size=50, batch_size=500)  # a batch larger than the training set
    qtbot.mouseClick(w.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.training_state == "idle", timeout=TIMEOUT)
    assert w.banner.isVisibleTo(w)
    # in the form's words: the field's label, not the command-line flag
    assert "'batch size'" in w.banner_text.text() and "larger than the training set" in w.banner_text.text()
    assert "--batch-size" not in w.banner_text.text() and "'batch size'" in w.log_view.toPlainText()
    assert w.training_panel.start_button.isEnabled()
    run = run_to_end(qtbot, w, train_size=200, batch_size=50)  # the next run trains normally
    assert run.status == "finished" and not w.banner.isVisibleTo(w)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A finished run written by the command line (in-process: the same code as python -m engine)."""
    from engine.cli import main

    out = tmp_path_factory.mktemp("cli_runs")
    assert main(["train", "--dataset", "digits", "--train-size", "200", "--epochs", "2", "--batch-size", "40",
                 "--eval-every", "1", "--no-diagnostics", "--projection", "pca", "--out", str(out),
                 "--run-name", "cli", "--quiet"]) == 0
    return out / "cli"


def _record_calls(panel):
    calls = []
    original = panel.add_records

    def spy(records):
        calls.append(list(records))
        return original(records)

    panel.add_records = spy
    return calls


def test_open_cli_run_shows_curves_and_map(qtbot, window, cli_run):
    w = window
    loss_plot = w.panels.get("loss_plot")
    calls = _record_calls(loss_plot) if loss_plot is not None else None
    w.open_run(cli_run)
    run = w.session.current
    assert run.path == cli_run.resolve() and run.status == "finished"
    written = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert len(run.records) == len(written)
    assert len(run.snapshots) == len(list((cli_run / "snapshots").glob("step_*.npz"))) == 3
    if calls is not None:
        delivered = [r for batch in calls for r in batch]
        assert sum(r["kind"] == "step" for r in delivered) == sum(r["kind"] == "step" for r in written) == 10
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count == 597, timeout=TIMEOUT)
    slider = w.map_panel.slider
    assert slider.objectName() == "timelapse_slider" and slider.maximum() == 2
    view = w.map_panel.primary
    view.animate = True
    newest = view.cloud.positions.copy()
    slider.setValue(0)  # scrub back to the first snapshot: an animated transition
    qtbot.waitUntil(lambda: view._frame == 0, timeout=TIMEOUT)
    assert "step 0" in view.title.text()
    qtbot.waitUntil(lambda: view._anim_t >= 1.0, timeout=TIMEOUT)
    np.testing.assert_allclose(view.cloud.positions, run.coords[(0, w.session.projection)])
    assert not np.allclose(view.cloud.positions, newest)


def test_following_a_run_picks_up_appended_lines(qtbot, window, cli_run, tmp_path):
    w, s = window, window.session
    lines = (cli_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    snaps = sorted((cli_run / "snapshots").glob("step_*.npz"))
    live = tmp_path / "live"
    (live / "snapshots").mkdir(parents=True)
    shutil.copy(cli_run / "config.json", live)
    half = len(lines) // 2
    (live / "metrics.jsonl").write_text("".join(lines[:half]))
    shutil.copy(snaps[0], live / "snapshots")
    w.open_run(live)
    run = s.current
    assert run.following and len(run.records) == half and len(run.snapshots) == 1
    with qtbot.waitSignal(s.records_added, timeout=TIMEOUT):
        with open(live / "metrics.jsonl", "a") as f:
            f.write("".join(lines[half:]))
        for p in snaps[1:]:
            shutil.copy(p, live / "snapshots")
    qtbot.waitUntil(lambda: len(run.records) == len(lines) and len(run.snapshots) == len(snaps), timeout=TIMEOUT)
    assert run.status == "finished" and not run.following


def _damaged_copy(cli_run, tmp_path, name, config_text=None, extra_lines=(), snapshot_change=None):
    run = tmp_path / name
    shutil.copytree(cli_run, run)
    if config_text is not None:
        (run / "config.json").write_text(config_text)
    with open(run / "metrics.jsonl", "a") as f:
        f.writelines(line + "\n" for line in extra_lines)
    if snapshot_change is not None:
        path = sorted((run / "snapshots").glob("step_*.npz"))[-1]
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        snapshot_change(arrays)
        np.savez(path, **arrays)
    return run


def _config_with(cli_run, **changes) -> str:
    return json.dumps(json.loads((cli_run / "config.json").read_text()) | changes)


@pytest.mark.parametrize("damage, note", [
    ({"config_text": "[1, 2]"}, "config.json: a list, not a JSON object"),
    ({"config_text": "{\"method\": "}, "not JSON"),
    ({"config_text": "dataset"}, "not JSON"),
    ({"config_text": "class_names"}, "'class_names' is 5, not a list of texts"),
    ({"extra_lines": ["[1]", '{"kind": "plan", "total_steps": "many", "epochs": 1}', "{cut"]},
     "metrics.jsonl line {first_appended}: a list, not a JSON object"),
    ({"snapshot_change": lambda a: a.update(labels=a["labels"][:5])}, "'labels' has shape (5,), not (597,)"),
    ({"snapshot_change": lambda a: a.update(coords=np.zeros((3, 7)))}, "'coords' has shape (3, 7)"),
    ({"snapshot_change": lambda a: a.update(embeddings=np.array([{}] * 3, dtype=object))}, "Python objects"),
])
def test_a_damaged_run_opens_with_what_is_readable_and_says_what_is_not(qtbot, window, cli_run, tmp_path, damage,
                                                                          note):
    if damage.get("config_text") == "dataset":
        damage = {"config_text": _config_with(cli_run, dataset=["x"])}
        note = "'dataset' is [\"x\"], not text"
    elif damage.get("config_text") == "class_names":
        damage = {"config_text": _config_with(cli_run, class_names=5)}
    written = (cli_run / "metrics.jsonl").read_text().splitlines()
    note = note.format(first_appended=len(written) + 1)
    run_dir = _damaged_copy(cli_run, tmp_path, "damaged", **damage)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    w = window
    w.open_run(run_dir)
    run = w.session.current
    assert run is not None and run.path == run_dir.resolve() and run.status == "finished"
    assert any(note in n for n in run.notes), run.notes
    assert note in w.log_view.toPlainText()
    assert len(run.records) == len(written)  # every readable record, whatever was appended
    snapshots = 3 if "snapshot_change" not in damage or "coords" in note else 2
    assert len(run.snapshots) == snapshots
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count == 597, timeout=TIMEOUT)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # reading changes nothing


def test_following_a_run_skips_a_bad_line_and_keeps_the_rest_of_the_poll(qtbot, window, cli_run, tmp_path):
    w, s = window, window.session
    lines = (cli_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    live = tmp_path / "live"
    (live / "snapshots").mkdir(parents=True)
    shutil.copy(cli_run / "config.json", live)
    half = len(lines) // 2
    (live / "metrics.jsonl").write_text("".join(lines[:half]))
    w.open_run(live)
    run = s.current
    with qtbot.waitSignal(s.records_added, timeout=TIMEOUT):
        with open(live / "metrics.jsonl", "a") as f:
            f.write('{"kind": "step", "step": "x"}\n' + "".join(lines[half:]))
    qtbot.waitUntil(lambda: len(run.records) == len(lines), timeout=TIMEOUT)
    assert run.status == "finished" and not run.following
    assert f"metrics.jsonl line {half + 1} (step): 'step' is \"x\"" in w.log_view.toPlainText()


def test_export_writes_files_that_load_back(qtbot, window, cli_run, tmp_path):
    from PIL import Image
    from PySide6.QtGui import QImage

    from explorer.export import export_all

    w = window
    w.open_run(cli_run)
    run = w.session.current
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count == 597 and run.dataset is not None, timeout=TIMEOUT)
    out = tmp_path / "export"
    written = export_all(w, out)
    assert all(p.exists() for p in written)
    snap = run.snapshots[-1]
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), snap.embeddings)
    np.testing.assert_array_equal(np.load(out / "indices.npy"), snap.indices)
    table = np.loadtxt(out / "embeddings.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 2:], snap.embeddings, rtol=1e-5, atol=1e-6)
    coords = np.load(out / "coords.npy")
    assert coords.shape == (597, 2)
    np.testing.assert_allclose(np.loadtxt(out / "coords.csv", delimiter=",", skiprows=1, usecols=(3, 4)),
                               coords, rtol=1e-5, atol=1e-6)
    proj = out / "projector"
    np.testing.assert_allclose(np.loadtxt(proj / "tensors.tsv", delimiter="\t"), snap.embeddings,
                               rtol=1e-5, atol=1e-6)
    meta = (proj / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "index\tlabel\tclass" and len(meta) == 598
    sprite = Image.open(proj / "sprite.png")
    config = (proj / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "tensors.tsv"' in config and "single_image_dim: 8" in config
    assert sprite.size == (25 * 8, 25 * 8)  # ceil(sqrt(597)) = 25 tiles of 8x8 digits
    assert not QImage(str(out / "map.png")).isNull()
    assert (out / "map.svg").read_text().lstrip().startswith("<?xml")


def test_closing_during_training_keeps_a_complete_run(qtbot, window):
    w, s = window, window.session
    small_run(w, epochs=100)
    with qtbot.waitSignal(s.records_added, timeout=TIMEOUT, check_params_cb=has_kind("step")):
        qtbot.mouseClick(w.training_panel.start_button, Qt.MouseButton.LeftButton)
    run = s.current
    w.close()
    assert w.isVisible() or s.training_state == "idle"  # it waits for the job to stop first
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=TIMEOUT)
    assert s.training_state == "idle"
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=TIMEOUT)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"):
        assert (run.path / name).exists(), name
    last = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "finished" and last["stopped"] is True


def _drop(widget, path: Path) -> None:
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    widget.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))


def test_dropping_folders_opens_runs_and_picks_image_folders(qtbot, window, cli_run, tmp_path):
    from PIL import Image

    w = window
    folder = tmp_path / "my images"
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / cls / f"{i}.png")
    _drop(w, folder)
    assert w.training_panel.dataset_combo.currentData() == f"folder:{folder.resolve()}"
    _drop(w, cli_run)  # a run directory opens the run
    assert w.session.current is not None and w.session.current.path == cli_run.resolve()


def test_settings_are_remembered(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runs_root=tmp_path)
    qtbot.addWidget(w)
    assert w.training_panel.preset_combo.currentData() == "digits"  # first start: the digits preset
    assert w.findChild(type(w.training_panel.method_combo), "method_combo").currentText().strip() == "supervised"
    shortcuts = {a.text(): a.shortcut().toString() for a in (w.open_action, w.start_action, w.pause_action,
                                                             w.export_action)}
    assert list(shortcuts.values()) == ["Ctrl+O", "Ctrl+R", "Space", "Ctrl+E"]
    w.training_panel.select_method("simclr")
    w.training_panel.general["epochs"].set_text("3")
    w.apply_theme(True)
    w.close()
    w2 = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), runs_root=tmp_path)
    qtbot.addWidget(w2)
    assert w2.training_panel.method == "simclr"
    assert w2.training_panel.general["epochs"].text() == "3"
    assert w2.dark
    w2.apply_theme(False)
    w2.close()


def test_open_subcommand_opens_the_run(qtbot, cli_run, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QApplication

    from explorer import app
    from explorer.main_window import MainWindow as Window

    monkeypatch.setattr(Window, "__init__", _with_test_settings(Window.__init__, tmp_path))
    seen = {}

    def fake_exec(self=None):  # instead of the event loop: look at the window the command built
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, Window) and w.isVisible())
        seen["run"] = window.session.current.path
        seen["preset"] = window.training_panel.preset_combo.currentData()
        window.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert app.main(["open", str(cli_run)]) == 0
    assert seen == {"run": cli_run.resolve(), "preset": "digits"}


def _with_test_settings(init, tmp_path):
    def patched(self, settings=None, runs_root=None, confirm_close=None):
        init(self, QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat), tmp_path / "runs",
             confirm_close)
    return patched


def test_train_subcommand_never_imports_qt(tmp_path):
    code = ("import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None\n"
            "from explorer.app import main\n"
            f"rc = main(['train', '--dataset', 'digits', '--train-size', '100', '--epochs', '1', "
            f"'--batch-size', '50', '--no-diagnostics', '--projection', 'pca', '--out', {str(tmp_path)!r}, '--quiet'])\n"
            "assert rc == 0, rc\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.glob("*/summary.json"))) == 1


def test_a_relaunch_lists_the_runs_folder_and_a_run_refills_the_form(qtbot, cli_run, tmp_path):
    """The runs of the folder are listed after a relaunch, newest first with their status, damaged
    ones too; a selected run shows its settings and one click puts them in the training form, so Start
    trains a run like it (its settings without a field of their own carried along)."""
    import os

    from engine.config import TrainConfig

    root = tmp_path / "runs"
    root.mkdir()
    triplet = dict(json.loads((cli_run / "config.json").read_text()), method="triplet", test_size=500,
                   weight_decay=0.001, knn_k=5, method_params={
                       "margin": 0.35, "mining": "semi-hard", "distance": "euclidean", "normalize": True,
                       "squared": True, "classes_per_batch": 5, "samples_per_class": 8})
    names = ("old", "failed", "damaged", "triplet")  # oldest first
    for age, name in zip((400, 300, 200, 100), names):
        shutil.copytree(cli_run, root / name)
    (root / "triplet" / "config.json").write_text(json.dumps(triplet))
    (root / "damaged" / "config.json").write_text("[1, 2]")
    lines = [line for line in (root / "failed" / "metrics.jsonl").read_text().splitlines(keepends=True)
             if json.loads(line)["kind"] != "finished"]
    lines.append(json.dumps({"kind": "failed", "message": "out of memory: lower the batch size", "step": 3}) + "\n")
    (root / "failed" / "metrics.jsonl").write_text("".join(lines))
    for age, name in zip((400, 300, 200, 100), names):
        stamp = (root / name / "config.json").stat().st_mtime - age
        os.utime(root / name / "config.json", (stamp, stamp))

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runs_root=root, confirm_close=lambda: True)
    qtbot.addWidget(w)
    w.show()
    try:
        panel, tp = w.runs_panel, w.training_panel
        qtbot.waitUntil(lambda: panel.list.count() == 4, timeout=TIMEOUT)
        texts = [panel.list.item(i).text() for i in range(4)]
        assert [t.split("\n")[1].strip() for t in texts] == ["triplet", "damaged", "failed", "old"]
        assert [t.split("\n")[0].split(" · ")[-1] for t in texts] == ["finished", "damaged", "failed", "finished"]
        assert "out of memory" in panel.list.item(2).toolTip()
        tp.select_method("simclr")  # the form holds the last method, not the run's

        def click(row):
            rect = panel.list.visualItemRect(panel.list.item(row))
            qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

        click(0)
        assert w.session.current.path == (root / "triplet").resolve()
        shown = panel.settings_view.toPlainText()
        assert "method triplet" in shown and "margin 0.35" in shown and "mining semi-hard" in shown
        qtbot.mouseClick(panel.rerun_button, Qt.MouseButton.LeftButton)
        assert tp.method == "triplet" and tp.method_fields["margin"].text() == "0.35"
        assert "test size 500" in tp.carried_label.text() and tp.carried_label.isVisibleTo(tp)
        made = tp.build_config(out=str(root)).to_dict()
        wanted = TrainConfig.from_dict(triplet).to_dict()
        for key in ("out", "run_name", "resume"):
            made.pop(key), wanted.pop(key)
        assert made == wanted
        tp.apply_preset("digits")  # a preset forgets the carried settings
        assert tp.carried == {} and not tp.carried_label.isVisibleTo(tp)

        click(1)  # damaged: listed, opened with what is readable, not offered as settings
        assert "damaged" in panel.list.item(1).text() and not panel.rerun_button.isEnabled()
        click(2)
        assert w.session.current.status == "failed" and panel.rerun_button.isEnabled()
        assert "out of memory: lower the batch size" in panel.settings_view.toPlainText()
    finally:
        w.close()
        assert jobs.wait_all(TIMEOUT)
        qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=TIMEOUT)


def test_a_run_logged_from_ones_own_loop_is_followed_live(qtbot, window, tmp_path):
    """engine.log writes while the window follows: a new evaluation shows up in the map, a clicked
    point shows its neighbours with images, and a view that needs the encoder says why it cannot."""
    from engine import log
    from engine.data import load_dataset

    w, s = window, window.session
    d = load_dataset("digits")
    images, labels = d.test.images[:300], d.test.labels[:300]
    rng = np.random.default_rng(0)
    z = rng.normal(size=(len(images), 16)).astype(np.float32)
    run_log = log.start(tmp_path / "mine", images=images, labels=labels, class_names=d.class_names,
                        projection="pca")
    try:
        run_log.log_losses(0, loss=2.0)
        run_log.log_embeddings(0, z)
        qtbot.waitUntil(lambda: (run_log.path / "snapshots" / "step_00000000.npz").exists(), timeout=TIMEOUT)
        w.open_run(run_log.path)
        run = s.current
        assert run.following and run.config["method"] == "logged"
        with qtbot.waitSignal(s.records_added, timeout=TIMEOUT):
            run_log.log_losses(5, loss=1.0)
            run_log.log_embeddings(5, z + np.eye(16, dtype=np.float32)[labels % 16] * 3)
        qtbot.waitUntil(lambda: len(run.snapshots) == 2, timeout=TIMEOUT)
    finally:
        run_log.finish()
    qtbot.waitUntil(lambda: run.status == "finished" and not run.following, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: run.dataset is not None, timeout=TIMEOUT)
    map_rows = int((~np.load(run_log.path / "probe.npz")["train"]).sum())
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count == map_rows, timeout=TIMEOUT)
    s.select_point(int(run.snapshots[-1].indices[3]))
    panel = w.neighbours_panel
    qtbot.waitUntil(lambda: len(panel.neighbour_rows) > 0, timeout=TIMEOUT)
    shown = [b for b in panel.grid.buttons if b.isVisible()]
    assert shown and not shown[0].icon().isNull()  # the logged probe images are the thumbnails
    needs_model = [i for i in w.inspectors.values() if i.needs_method]
    assert needs_model and all("logged from a training loop" in (i.not_drawn_because() or "") for i in needs_model)
