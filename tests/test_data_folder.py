"""A folder of the user's images is input from elsewhere: special files are never opened, bad images are
skipped and listed, a small folder trains (or is refused before training, saying what it needs), and a
huge image is decoded at the size training needs."""
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import events as ev
from engine.data import load_dataset
from engine.runs import RunDir
from engine.training import TrainConfig, train

COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def _write_images(folder: Path, n: int, color=(200, 30, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.zeros((20, 30, 3), np.uint8)
        img[5:15, i % 20: i % 20 + 8] = color
        Image.fromarray(img).save(folder / f"img{i}.png")


def _load_within(seconds: float, name: str, fifos=()):
    """load_dataset in a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(ds=load_dataset(name)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:  # unblock the reader so the test process can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"loading {name} blocked for {seconds} s")
    return result["ds"]


def test_only_regular_files_are_opened(tmp_path):
    _write_images(tmp_path / "cats", 6, COLOURS[0])
    _write_images(tmp_path / "dogs", 6, COLOURS[2])
    fifo = tmp_path / "cats" / "pipe.png"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "dogs" / "sock.png"))
    (tmp_path / "dogs" / "link.png").symlink_to(tmp_path / "cats" / "img0.png")  # a link to an image: read
    (tmp_path / "dogs" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "cats" / "looks-like.png").mkdir()  # a folder with an image's name: just a folder
    try:
        ds = _load_within(60, f"folder:{tmp_path}", fifos=[fifo])
    finally:
        sock.close()
    assert len(ds.train) + len(ds.test) == 13
    skipped = "\n".join(ds.skipped_files)
    assert len(ds.skipped_files) == 3
    assert "pipe.png: a FIFO" in skipped and "sock.png: a socket" in skipped
    assert "dangling.png: a broken link" in skipped
    assert any("3 unreadable or corrupt file(s) skipped" in note and "pipe.png" in note for note in ds.notes)


def test_an_empty_or_wrong_path_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path used to read the current folder
    _write_images(tmp_path / "a", 6)
    _write_images(tmp_path / "b", 6)
    for name in ("folder:", "folder:  "):
        with pytest.raises(ValueError, match="needs a path after 'folder:'"):
            load_dataset(name)
        with pytest.raises(ValueError, match="needs a path"):
            TrainConfig(dataset=name).resolved()  # the settings' check refuses it too: before a job starts
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(dataset=f"folder:{tmp_path / 'missing'}").resolved()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_dataset(f"folder:{tmp_path / 'notes.txt'}")


def test_corrupt_truncated_and_non_image_files_are_skipped_and_named(tmp_path):
    _write_images(tmp_path / "a", 6)
    _write_images(tmp_path / "b", 6, COLOURS[1])
    (tmp_path / "a" / "text.jpg").write_text("hello")
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    whole = (tmp_path / "a" / "img0.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])
    ds = load_dataset(f"folder:{tmp_path}")
    assert len(ds.train) + len(ds.test) == 12
    reasons = {Path(line.split(": ")[0]).name: line for line in ds.skipped_files}
    assert "not an image PIL can read" in reasons["text.jpg"] and "not an image" in reasons["empty.png"]
    assert "truncated" in reasons["cut.png"]


def test_a_decompression_bomb_is_skipped_with_the_limit_named(tmp_path, monkeypatch):
    _write_images(tmp_path / "a", 6)
    _write_images(tmp_path / "b", 6, COLOURS[1])
    Image.new("RGB", (80, 80)).save(tmp_path / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses above twice this: 80 x 80 = 6400
    ds = load_dataset(f"folder:{tmp_path}")
    assert len(ds.train) + len(ds.test) == 12
    (line,) = ds.skipped_files
    assert "bomb.png" in line and "2000 pixels" in line and "decompression bombs" in line and "downscale" in line


def _job(tmp_path, dataset, **kw):
    config = TrainConfig(dataset=dataset, out=str(tmp_path / "runs"), epochs=2, **kw)
    events = list(train(config))
    assert isinstance(events[-1], ev.Finished), events[-1]
    return events


def test_a_labelled_folder_of_four_images_per_class_trains_and_evaluates(tmp_path):
    for name, colour in zip(("red", "green", "blue"), COLOURS):
        _write_images(tmp_path / "pics" / name, 4, colour)
    events = _job(tmp_path, f"folder:{tmp_path / 'pics'}")  # every indicator, the default map
    notes = " | ".join(e.text for e in events if isinstance(e, ev.Message))
    assert "9 images to train on, 3 held out" in notes
    assert "batch size 9 instead of the default 128" in notes and "k = 3 instead of 10" in notes
    summary = events[-1].summary
    assert summary["linear_probe_acc"] is not None and summary["knn_acc"] is not None
    assert summary["precision_at_1"] is None  # one test image per class: nothing to retrieve, not 0
    run = RunDir(events[0].run_dir)
    assert run.config()["batch_size"] == 9 and run.config()["knn_k"] == 3  # what was used is recorded
    assert len(run.snapshot_paths()) == 3  # step 0, after epoch 1, the end: each with the map


def test_a_flat_folder_of_ten_trains_and_maps_every_image(tmp_path):
    _write_images(tmp_path / "pics", 10)
    events = _job(tmp_path, f"folder:{tmp_path / 'pics'}", method="simclr")
    snapshot = [e for e in events if isinstance(e, ev.Snapshot)][-1]
    assert len(snapshot.embeddings) == 10  # unlabelled: nothing is held out, the map shows all of them
    assert events[-1].summary["effective_rank"] is not None


@pytest.mark.parametrize("layout, message", [
    ({"a": 2, "b": 2}, "has 4 images: too few to train and test on; with 2 classes it needs 5"),
    ({"a": 20, "b": 1}, "too few images in class folder(s) b (1): each class needs 2 at least"),
    ({"": 2}, "has 2 readable image(s); an unlabelled folder needs 3 at least"),
])
def test_a_folder_too_small_is_refused_before_training_saying_what_it_needs(tmp_path, layout, message):
    for name, n in layout.items():
        _write_images(tmp_path / "pics" / name, n)
    config = TrainConfig(dataset=f"folder:{tmp_path / 'pics'}", out=str(tmp_path / "runs"),
                         method="simclr" if "" in layout else "supervised")
    (failed,) = list(train(config))
    assert isinstance(failed, ev.Failed) and failed.bad_input and message in failed.message
    assert not (tmp_path / "runs").exists()  # refused before any run directory was made


_PEAK_RSS = r"""
import sys
from pathlib import Path
from engine.data.folder import _read

def peak_kib():  # this process's own peak resident memory (ru_maxrss would start from the parent's)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])

before = peak_kib()
image = _read(Path(sys.argv[1]), 64)
assert image.shape == (3, 64, 64), image.shape
print((peak_kib() - before) / 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("mode, suffix, bound_mib", [
    ("RGB", ".jpg", 16),  # decoded at 1/8 scale: 750 x 750, 2 MiB; in full it is 137 MiB (RGBX)
    ("L", ".png", 50),  # decoded once in its own mode, 34 MiB; the old path made RGB copies: 137 MiB each
])
def test_a_huge_image_is_decoded_at_the_size_training_needs(tmp_path, mode, suffix, bound_mib):
    path = tmp_path / f"huge{suffix}"
    Image.new(mode, (6000, 6000), 128).save(path)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < bound_mib
