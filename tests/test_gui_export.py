"""The window's export dialog (a choice of contents, the encoder in the formats ticked, exported in a
worker thread) and the encoder list's entries for a model of the user's own. pytest-qt, offscreen."""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from explorer import jobs  # noqa: E402
from explorer.main_window import MainWindow  # noqa: E402

TIMEOUT = 180_000


@pytest.fixture
def window(qtbot, tmp_path):
    threads_before = set(threading.enumerate())
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runs_root=tmp_path / "runs", confirm_close=lambda: True)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    assert jobs.wait_all(TIMEOUT)
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=TIMEOUT)
    left = [t for t in set(threading.enumerate()) - threads_before
            if t.is_alive() and not isinstance(t, threading._DummyThread)]
    assert not left, f"threads left running: {left}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from engine.cli import main

    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--dataset", "digits", "--train-size", "200", "--epochs", "1", "--batch-size", "40",
                 "--no-diagnostics", "--projection", "pca", "--out", str(out), "--run-name", "r", "--quiet"]) == 0
    return out / "r"


def _open(qtbot, w, run_dir):
    w.open_run(run_dir)
    run = w.session.current
    qtbot.waitUntil(lambda: w.map_panel.primary.point_count > 0 and run.dataset is not None, timeout=TIMEOUT)
    return run


def test_export_dialog_writes_the_chosen_contents_and_the_encoder(qtbot, window, run_dir, tmp_path):
    from engine.export import load_encoder, read_settings

    w = window
    run = _open(qtbot, w, run_dir)
    w.export_dialog()
    dialog = w.export_window
    qtbot.waitUntil(dialog.isVisible)
    assert all(box.isChecked() for box in dialog.content_boxes.values())
    assert all(box.isEnabled() for box in dialog.format_boxes.values())  # the run has a checkpoint
    dialog.folder_edit.setText(str(tmp_path / "out"))
    dialog.content_boxes["images"].setChecked(False)
    dialog.content_boxes["projector"].setChecked(False)
    dialog.format_boxes["onnx"].setChecked(False)
    with qtbot.waitSignal(w.export_finished, timeout=TIMEOUT) as done:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert "failed" not in done.args[0] and "encoder.safetensors" in done.args[0]
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"embeddings.npy", "coords.npy", "metrics.csv", "summary.json", "config.json", "encoder"} <= names
    assert "map.png" not in names and "projector" not in names  # not chosen, not written
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "epoch", "final"] and "linear_probe_acc" in header
    assert read_settings(out / "encoder")["files"] == {"safetensors": "encoder.safetensors",
                                                      "torchscript": "encoder.torchscript.pt"}
    encoder = load_encoder(out / "encoder")
    images = run.dataset.test.images[run.snapshots[-1].indices]
    np.testing.assert_allclose(encoder.embed(images[:, 0]).numpy(), run.snapshots[-1].embeddings,
                               atol=1e-4, rtol=1e-4)


def test_export_dialog_says_why_the_encoder_cannot_go_yet(qtbot, window, run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "checkpoint.pt").unlink()
    w = window
    _open(qtbot, w, copy)
    w.export_dialog()
    dialog = w.export_window
    assert not any(box.isEnabled() for box in dialog.format_boxes.values())
    assert "no checkpoint yet" in dialog.encoder_note.text()
    dialog.folder_edit.setText("")
    assert not dialog.export_button.isEnabled()  # no folder: nothing to press
    dialog.reject()


def test_the_encoder_list_takes_a_model_of_your_own(qtbot, window, monkeypatch, tmp_path):
    tp = window.training_panel
    combo = tp.encoder_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert "timm:NAME…" in texts and "onnx:PATH…" in texts and "python:package.module:function…" in texts
    monkeypatch.setattr(tp, "_ask_encoder_argument", lambda kind, cls: "test_resnet")
    i = combo.findData("timm")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    assert combo.currentData() == "timm:test_resnet"
    assert {"weights", "random_init", "input_size", "normalize"} <= set(tp.encoder_fields)  # its form
    tp.encoder_fields["random_init"].set_text("true")
    tp.encoder_fields["input_size"].set_text("32")
    config = tp.build_config(out=str(tmp_path))
    assert config.encoder == "timm:test_resnet" and config.encoder_params["random_init"] is True
    monkeypatch.setattr(tp, "_ask_encoder_argument", lambda kind, cls: "")  # cancelled: back to the last one
    i = combo.findData("onnx")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    assert combo.currentData() == "timm:test_resnet"
    tp.select_encoder("timm")  # chosen without its name (e.g. by a script): Start says what is missing
    with pytest.raises(ValueError, match="needs NAME after the colon"):
        tp.build_config(out=str(tmp_path))
    assert "needs NAME after the colon" in tp.error_label.text()
