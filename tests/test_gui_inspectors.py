"""Inspectors (explorer/views/inspectors/) and engine/restore.py, on tiny real runs written by the
training job: each widget is driven through its API (set_run, show_point, its own controls) and what
it shows is checked against a direct computation on the same run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.runs import RunDir, load_snapshot
from explorer.views.inspectors import (INSPECTORS, AngleView, AugmentationPreview, ContrastiveInspector,
                                       PairHistogram, PretextDebugger, TripletInspector)
from explorer.views.kit import distance_text, in_scroll_area

# the offscreen platform says it cannot propagate size hints whenever a window is shown: not ours
pytestmark = [pytest.mark.timeout(240), pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

RUNS = {  # name: (method, dataset, extra TrainConfig settings)
    "triplet": ("triplet", "digits", {"eval_size": 300}),
    "pair": ("pair", "digits", {}),
    "arc": ("arc", "digits", {"method_params": {"subcenters": 2}}),
    "center": ("center", "digits", {}),
    "simclr": ("simclr", "digits", {"batch_size": 64}),
    "rotation": ("rotation", "digits", {"batch_size": 64}),
    "inpainting": ("inpainting", "digits", {"batch_size": 64}),
    "colorization": ("colorization", "shapes", {"batch_size": 64, "test_size": 100, "train_size": 128}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """One short run per method (a few steps on 256 training images, 128 for colour), as run directories."""
    from engine.config import TrainConfig
    from engine.training import train

    out = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    paths = {}
    for name, (method, dataset, extra) in RUNS.items():
        settings = {"train_size": 256} | extra  # evaluations at the start and the end only
        config = TrainConfig(method=method, dataset=dataset, epochs=1, out=str(out), run_name=name, diagnostics=False,
                             eval_every=0, final_eval=False, device="cpu", seed=0, **settings)
        events = list(train(config))
        assert events[-1].kind == "finished", events[-1]
        paths[name] = str(out / name)
    return paths


def shown(qtbot, cls, run_dir=None, row=-1, **kw):
    widget = cls(**kw)
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    widget.show()
    if run_dir is not None:
        widget.set_run(run_dir)
    if row >= 0:
        widget.show_point(row)
    return widget


def last_snapshot(run_dir) -> dict:
    return load_snapshot(RunDir(run_dir).snapshot_paths()[-1])


# --- engine/restore.py ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["triplet", "simclr", "colorization"])
def test_load_trained_method_gives_back_the_runs_embeddings(runs, name):
    """The rebuilt encoder embeds the map's points as the run did at its last evaluation."""
    from engine.encoders import embed
    from engine.restore import load_trained_method

    method, data = load_trained_method(runs[name])
    assert type(method).__name__.lower() == name and not method.training
    snap = last_snapshot(runs[name])
    # representation(): the encoder behind the input it trains on (colorization's grey images), as evaluated
    again = embed(method.representation(), torch.from_numpy(data.test.images[snap["indices"]]), device="cpu")
    np.testing.assert_allclose(again.float().numpy(), snap["embeddings"], rtol=1e-4, atol=1e-4)


def test_load_trained_method_without_checkpoint_says_so(runs, tmp_path):
    import shutil

    from engine.restore import load_trained_method

    copy = tmp_path / "copy"
    shutil.copytree(runs["triplet"], copy)
    (copy / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt yet"):
        load_trained_method(copy)


def test_load_trained_method_from_an_older_version_says_so(runs, tmp_path):
    import json
    import shutil

    from engine.restore import load_trained_method

    copy = tmp_path / "old"
    shutil.copytree(runs["simclr"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["method_params"]["queue_size"] = 4096  # a setting simclr does not take (any more)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"no longer takes \(unknown parameter\(s\) queue_size.*train it again"):
        load_trained_method(copy)


# --- triplet inspector --------------------------------------------------------------------------------

def brute_force_triplet(snap: dict, row: int) -> tuple[int, int, float, float]:
    """Hardest positive and negative, and their D: the triplet loss's default squared euclidean
    distance between l2-normalised embeddings (both runs use it: triplet's defaults, simclr's none)."""
    z = snap["embeddings"] / np.linalg.norm(snap["embeddings"], axis=1, keepdims=True)
    a = int(np.flatnonzero(snap["indices"] == row)[0])
    d = ((z - z[a]) ** 2).sum(1)
    same = snap["labels"] == snap["labels"][a]
    same[a] = False
    other = snap["labels"] != snap["labels"][a]
    p = np.flatnonzero(same)[np.argmax(d[same])]
    n = np.flatnonzero(other)[np.argmin(d[other])]
    return int(snap["indices"][p]), int(snap["indices"][n]), float(d[p]), float(d[n])


@pytest.mark.parametrize("name", ["triplet", "simclr"])
def test_triplet_inspector_hardest_positive_and_negative_equal_brute_force(qtbot, runs, name):
    snap = last_snapshot(runs[name])
    w = shown(qtbot, TripletInspector, runs[name])
    data = w._get_dataset()
    for row in snap["indices"][[0, 17, 101]]:
        p, n, d_ap, d_an = brute_force_triplet(snap, int(row))
        with qtbot.waitSignal(w.triplet_shown, timeout=1000) as blocker:
            w.show_point(int(row))
        assert blocker.args == [row, p, n]
        r = w.result
        assert (r["anchor"], r["positive"], r["negative"]) == (row, p, n)
        assert r["d_ap"] == pytest.approx(d_ap, abs=1e-4) and r["d_an"] == pytest.approx(d_an, abs=1e-4)
        m = w.margin_spin.value()
        expected = "hard" if d_an < d_ap else "semi-hard" if d_an < d_ap + m else "easy"
        assert r["category"] == expected and expected in w.verdict.text()
        # the tiles show the dataset's own images of those rows
        np.testing.assert_array_equal(w.tiles["positive"].image, data.thumbnail("test", p))
        np.testing.assert_array_equal(w.tiles["negative"].image, data.thumbnail("test", n))
        # the figures as the Neighbours panel writes them (kit.distance_text)
        assert f"D_ap = {distance_text(r['d_ap'])}" in w.tiles["positive"].note.text()
        assert f"D_an = {distance_text(r['d_an'])}" in w.tiles["negative"].note.text()
        assert sum(r["counts"].values()) == int((snap["labels"] != snap["labels"][snap["indices"] == row][0]).sum())


def test_distances_are_written_with_their_digits_even_when_tiny():
    """A collapsed embedding's distances are tiny, not zero: 0.000 in one panel and 3.2e-06 in another
    for the same pair was the bug."""
    assert distance_text(3.2e-06) == "3.2e-06" and distance_text(0.0) == "0.000"
    assert distance_text(0.12345) == "0.123" and distance_text(1.5) == "1.500"
    assert distance_text(-4e-05, signed=True) == "-4.0e-05" and distance_text(0.25, signed=True) == "+0.250"


def test_triplet_inspector_margin_moves_the_category(qtbot, runs):
    snap = last_snapshot(runs["triplet"])
    w = shown(qtbot, TripletInspector, runs["triplet"], int(snap["indices"][3]))
    assert w.margin_spin.value() == pytest.approx(0.2)  # the run's margin (the default)
    gap = w.result["d_an"] - w.result["d_ap"]
    w.margin_spin.setValue(0.0)
    assert w.result["category"] == ("hard" if gap < 0 else "easy")
    w.margin_spin.setValue(4.0)
    assert w.result["category"] == ("hard" if gap < 0 else "semi-hard")


def test_triplet_inspector_takes_the_run_s_own_margin_and_distance(qtbot, runs, tmp_path):
    """A triplet run trained with --margin 0.5 on plain cosine distances: the inspector counts with
    them, as the evaluation's shares and the map do."""
    import json
    import shutil

    from engine.metrics.triplets import TripletDefinition, anchor_categories

    copy = tmp_path / "wide"
    shutil.copytree(runs["triplet"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["method_params"] |= {"margin": 0.5, "distance": "cosine", "squared": False}
    (copy / "config.json").write_text(json.dumps(config))
    snap = last_snapshot(str(copy))
    w = shown(qtbot, TripletInspector, str(copy), int(snap["indices"][3]))
    definition = TripletDefinition(margin=0.5, distance="cosine", squared=False)
    assert w.margin_spin.value() == pytest.approx(0.5) and w.definition == definition
    cats = anchor_categories(snap["embeddings"], snap["labels"], 3, definition)
    assert w.result["d_an"] == pytest.approx(float(cats.distances[cats.hardest_negative]), abs=1e-6)
    assert "cosine distance (1 - cos), margin 0.5" in w.status.text()


def test_triplet_inspector_point_off_the_map(qtbot, runs):
    snap = last_snapshot(runs["triplet"])
    off = int(np.setdiff1d(np.arange(597), snap["indices"])[0])
    w = shown(qtbot, TripletInspector, runs["triplet"], off)
    assert w.result == {} and "not among the map's points" in w.status.text()


# --- angle view and pair histogram --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["arc", "center"])
def test_angle_view_equals_the_methods_own_centre_angles(qtbot, runs, name):
    """The matrix and the per-class mean angles match the method's evaluation_stats (the engine's
    computation, with the dominant sub-centre for arc with 2 sub-centres)."""
    from engine.restore import load_trained_method

    snap = last_snapshot(runs[name])
    w = shown(qtbot, AngleView)
    with qtbot.waitSignal(w.centres_changed, timeout=5000) as blocker:
        w.set_run(runs[name])
    w.show_point(int(snap["indices"][0]))
    assert blocker.args[0].shape == (10, 128)
    method, _ = load_trained_method(runs[name])
    stats = method.evaluation_stats(torch.from_numpy(snap["embeddings"]), torch.from_numpy(snap["labels"]))
    np.testing.assert_allclose(w.centre_angles, np.array(stats["center_angles"]), atol=0.05)
    means = [np.nanmean(w.point_angles[snap["labels"] == c]) for c in range(10)]
    np.testing.assert_allclose(means, stats["point_center_angle"], atol=0.05)
    assert len(w.curves) == 10 and w.point_line.isVisible()
    # a click moves the point's line only; its angle is to its own class's centre
    key, curves = w._drawn_key, list(w.curves)
    w.show_point(int(snap["indices"][1]))
    assert w._drawn_key == key and w.curves == curves
    assert w.point_line.value() == pytest.approx(w.point_angles[1], abs=1e-4)
    assert "weight matrix" in w.source.text() if name == "arc" else "learned class centres" in w.source.text()


def test_angle_view_falls_back_to_class_means(qtbot, runs):
    w = shown(qtbot, AngleView, runs["simclr"])
    assert "class means" in w.source.text()
    assert w.centre_angles.shape == (10, 10) and np.allclose(np.diag(w.centre_angles), 0, atol=0.1)


def test_pair_histogram_equals_numpy_histograms(qtbot, runs):
    snap = last_snapshot(runs["pair"])
    w = shown(qtbot, PairHistogram, runs["pair"])
    z = torch.nn.functional.normalize(torch.from_numpy(snap["embeddings"]), dim=1).double().numpy()
    d = np.sqrt(np.maximum(((z[:, None] - z[None]) ** 2).sum(-1), 0))
    same = snap["labels"][:, None] == snap["labels"][None]
    off = ~np.eye(len(z), dtype=bool)
    edges = np.asarray(w.stats["dist_bins"])
    for key, mask in (("pos_dist_hist", same & off), ("neg_dist_hist", ~same)):
        counts, _ = np.histogram(d[mask], edges)
        # bins agree except for distances within float32 rounding of an edge
        assert np.abs(counts / mask.sum() - np.asarray(w.stats[key])).sum() < 2e-3
    assert w.margin_line.value() == pytest.approx(1.0)  # the pair method's default margin
    assert w.stats["neg_active"] == pytest.approx((d[~same] < 1.0).mean(), abs=1e-3)


# --- contrastive inspector ----------------------------------------------------------------------------

def test_contrastive_inspector_row_equals_the_methods_logits(qtbot, runs):
    """The strip is row 0 of SimCLR's own (2N, 2N) logits on the same views, softmaxed at tau."""
    from engine.restore import load_trained_method

    w = shown(qtbot, ContrastiveInspector, runs["simclr"], 42)
    n = ContrastiveInspector.batch_size
    assert w.positive == n and len(w.similarities) == 2 * n
    method, data = load_trained_method(runs["simclr"])
    tau_run = method.hparams["temperature"]  # the spin box starts at the run's own temperature
    assert w.temperature_spin.value() == pytest.approx(tau_run)
    rows = w.batch_rows(len(data.test))
    assert rows[0] == 42 and len(set(rows.tolist())) == n
    x = torch.from_numpy(data.test.images[rows]).float() / 255
    logits = method.logits(x, torch.Generator().manual_seed(w.seed))[0].numpy()
    np.testing.assert_allclose(w.similarities / tau_run, logits, atol=1e-4)
    for tau in (0.1, 1.0):
        w.temperature_spin.setValue(tau)
        scaled = logits * tau_run / tau
        scaled[0] = -np.inf
        expected = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
        p = w.probabilities()
        np.testing.assert_allclose(p[1:], expected[1:], rtol=1e-4, atol=1e-7)
        assert np.isnan(p[0]) and f"{p[n]:.3f}" in w.strip_label.text()
        np.testing.assert_allclose(w.strip.values[1:], p[1:])
    # the tau curve is p(positive) at each tau of its axis
    _, curve = w.tau_positive.getData()
    assert curve[10] == pytest.approx(w.probabilities(w.TAUS[10])[n], rel=1e-5)
    # the views are the image's augmentations, not the image itself
    assert not np.array_equal(w.tiles["view1"].image, w.tiles["view2"].image)
    with qtbot.waitSignal(w.views_embedded) as blocker:
        qtbot.mouseClick(w.resample_button, pytest.importorskip("PySide6.QtCore").Qt.MouseButton.LeftButton)
    assert blocker.args[0].shape == (2, 128) and w.seed == 1


# --- pretext debugger ---------------------------------------------------------------------------------

def test_pretext_debugger_rotation_shows_the_four_turns(qtbot, runs):
    w = shown(qtbot, PretextDebugger, runs["rotation"], 9)
    images = w.shown_images()
    assert len(images) == 4
    thumb = w._get_dataset().thumbnail("test", 9)
    for k, image in enumerate(images):
        np.testing.assert_array_equal(image, np.rot90(thumb, k))
    assert list(w.output["target"]) == [0, 90, 180, 270]
    for k, tile in enumerate(w.tiles):
        assert f"predicted {w.output['prediction'][k]}°" in tile.note.text()


def test_pretext_debugger_colorization_shows_three_images(qtbot, runs):
    w = shown(qtbot, PretextDebugger, runs["colorization"], 4)
    grey, predicted, true = w.shown_images()
    assert grey.shape == predicted.shape == true.shape == (32, 32, 3)
    np.testing.assert_array_equal(true, w._get_dataset().thumbnail("test", 4))
    assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 2  # lightness only: R = G = B
    assert "true colours" in w.tiles[2].caption.text()


def test_pretext_debugger_inpainting_shows_three_images(qtbot, runs):
    w = shown(qtbot, PretextDebugger, runs["inpainting"], 4)
    masked, inpainted, original = w.shown_images()
    mask = w.output["mask"][0]
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(original, w._get_dataset().thumbnail("test", 4))
    np.testing.assert_array_equal(inpainted[~mask], original[~mask])  # only the patch is painted
    assert len(np.unique(masked[mask])) == 1  # the patch is one flat fill
    before = mask.copy()
    w.resample_button.click()
    assert not np.array_equal(w.output["mask"][0], before) or w.seed == 1


def test_inspectors_say_when_a_run_is_not_theirs(qtbot, runs):
    assert "rotation, colorization, inpainting runs" in shown(qtbot, PretextDebugger, runs["triplet"], 3).status.text()
    assert "simclr runs" in shown(qtbot, ContrastiveInspector, runs["rotation"], 3).status.text()


# --- augmentation preview -----------------------------------------------------------------------------

def test_augmentation_preview_shows_distinct_views_and_follows_sliders(qtbot, runs):
    w = shown(qtbot, AugmentationPreview, runs["colorization"], 4, images=3, views=5)
    assert w.views.shape == (3, 5, 3, 32, 32)
    assert w.settings()["jitter"] == pytest.approx(0.4) and w.flip_box.isChecked()  # the run's settings
    flat = w.views.reshape(15, -1)
    assert len(np.unique(flat.round(4), axis=0)) == 15  # every view differs from the others
    assert w.rows()[0] == 4  # the clicked image first
    for r in range(3):
        for c in range(6):
            assert not w.cells[r][c].pixmap().isNull()
    before = w.views.copy()
    w.sliders["gray_p"].setValue(w.STEPS)  # every view grey
    assert w.settings()["gray_p"] == pytest.approx(1.0)
    after = w.views
    assert np.allclose(after[:, :, 0], after[:, :, 1], atol=1e-6) and not np.allclose(before, after)
    w.redraw_button.click()
    assert not np.allclose(after, w.views)


def test_augmentation_preview_matches_simclr_augment_for_same_seed(qtbot, runs):
    from engine.augment import augment_from_params

    w = shown(qtbot, AugmentationPreview, runs["simclr"], images=2, views=3)
    assert not w.flip_box.isChecked()  # 'auto' on digits: no flips
    data = w._get_dataset()
    aug = augment_from_params(1, (8, 8), w.settings(), "digits")
    x = torch.from_numpy(data.test.images[w.rows()]).float() / 255
    g = torch.Generator().manual_seed(0)
    expected = torch.stack([aug(x, g) for _ in range(3)], 1).numpy()
    np.testing.assert_allclose(w.views, expected)


def test_augmentation_preview_follows_the_training_panels_form(qtbot, runs):
    from explorer.views.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.select_method("simclr")
    w = shown(qtbot, AugmentationPreview, runs["colorization"])
    w.follow_form(panel.method_fields)
    before = w.views.copy()
    panel.method_fields["gray_p"].set_text("1")
    assert w.settings()["gray_p"] == pytest.approx(1.0)
    assert np.allclose(w.views[:, :, 0], w.views[:, :, 2], atol=1e-6) and not np.allclose(before, w.views)
    panel.method_fields["gray_p"].set_text("")  # empty: the default again
    assert w.settings()["gray_p"] == pytest.approx(0.2)
    w.resize(360, 500)  # a narrow dock: smaller cells, same images
    qtbot.waitUntil(lambda: w.cell_px < 64, timeout=2000)
    assert w.cells[0][3].pixmap().width() == w.cell_px


def test_in_scroll_area_scrolls_below_the_minimum_and_fills_above(qtbot, runs):
    w = ContrastiveInspector()
    area = in_scroll_area(w)
    qtbot.addWidget(area)
    area.resize(340, 160)
    area.show()
    w.set_run(runs["simclr"])
    w.show_point(3)
    # squeezed: the inspector keeps its least height at this width (tiles whole) and the area scrolls
    qtbot.waitUntil(lambda: w.height() >= w.layout().totalMinimumHeightForWidth(w.width()) > area.viewport().height())
    qtbot.waitUntil(area.verticalScrollBar().isVisible)  # shown at the next layout pass
    tile = w.tiles["image"]
    assert tile.picture.geometry().bottom() <= tile.note.geometry().top()
    area.resize(700, 900)  # roomy: the inspector fills the dock
    qtbot.waitUntil(lambda: w.height() == area.viewport().height())


@pytest.mark.parametrize("cls, name, count", [(PretextDebugger, "rotation", 4), (ContrastiveInspector, "simclr", 3)])
def test_tiles_wrap_in_a_narrow_dock_instead_of_scrolling_sideways(qtbot, runs, cls, name, count):
    w = cls()
    area = in_scroll_area(w)
    qtbot.addWidget(area)
    area.resize(900, 700)
    area.show()
    w.set_run(runs[name])
    w.show_point(3)
    tiles = list(w.tiles.values()) if isinstance(w.tiles, dict) else w.tiles
    qtbot.waitUntil(lambda: len(tiles) == count and tiles[0].image is not None)
    qtbot.waitUntil(lambda: len({t.y() for t in tiles}) == 1)  # roomy: one row
    area.resize(330, 400)  # the window's right column
    qtbot.waitUntil(lambda: len({t.y() for t in tiles}) > 1)
    assert not area.horizontalScrollBar().isVisible()
    assert all(t.geometry().right() < area.viewport().width() for t in tiles)
    assert w.height() >= max(t.geometry().bottom() for t in tiles)  # the rows below scroll into view


# --- session wiring -----------------------------------------------------------------------------------

def test_attach_follows_the_sessions_run_and_point(qtbot, runs):
    from explorer import jobs
    from explorer.session import Session

    session = Session()
    widgets = [shown(qtbot, cls) for cls in INSPECTORS]
    for w in widgets:
        w.attach(session)
        assert "No run selected" in w.status.text()
    try:
        session.open_run(runs["triplet"])
        row = int(last_snapshot(runs["triplet"])["indices"][5])
        session.select_point(row)
        triplet = widgets[0]
        qtbot.waitUntil(lambda: triplet.result.get("anchor") == row, timeout=10_000)
        assert all(w.row == row for w in widgets)
        last_step = int(session.current.snapshots[-1].step)
        assert f"(step {last_step})" in triplet.status.text() and last_step > 0
        session.set_frame(0)  # the time-lapse back to the first evaluation: redrawn in a later frame
        qtbot.waitUntil(lambda: "(step 0)" in triplet.status.text(), timeout=10_000)
        session.set_frame(-1)
        session.open_run(runs["rotation"])
        qtbot.waitUntil(lambda: len(widgets[4].shown_images()) == 4, timeout=10_000)
        assert triplet.config["method"] == "rotation" and triplet.result["anchor"] == row
    finally:
        session.shutdown()
        qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=10_000)


def test_pair_histogram_following_a_session_measures_in_a_worker_and_keeps_its_drawing(qtbot, runs):
    """In the window the pairs are measured off the GUI thread: the same statistics as standalone, and
    the last histogram stays drawn (no "Measuring" line) while the next snapshot's is measured."""
    from explorer import jobs
    from explorer.session import Session

    alone = shown(qtbot, PairHistogram, runs["pair"])
    session = Session()
    w = shown(qtbot, PairHistogram)
    w.attach(session)
    try:
        session.open_run(runs["pair"])
        assert w.busy and "Measuring" in w.status.text()  # asked of a worker, not drawn on the GUI thread
        qtbot.waitUntil(lambda: not w.busy and bool(w.stats), timeout=10_000)
        assert w.stats == alone.stats
        drawn, status = w.stats, w.status.text()
        session.set_frame(0)  # another snapshot: measured again, the last one drawn meanwhile
        qtbot.waitUntil(lambda: w.busy or w.status.text() != status, timeout=10_000)
        assert w.stats == drawn and "Measuring" not in w.status.text()
        qtbot.waitUntil(lambda: not w.busy and "step 0" in w.status.text(), timeout=10_000)
        assert w.stats != drawn
    finally:
        session.shutdown()
        qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=10_000)


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory) -> str:
    """A short triplet run with the diagnostics on: its evaluations hold the histogram of D_an - D_ap."""
    from engine.config import TrainConfig
    from engine.training import train

    out = tmp_path_factory.mktemp("diag_runs")
    torch.set_num_threads(1)
    config = TrainConfig(method="triplet", dataset="digits", epochs=1, out=str(out), run_name="t", train_size=256,
                         eval_size=300, eval_every=0, final_eval=False, device="cpu", seed=3, projection="pca",
                         method_params={"margin": 0.3})
    events = list(train(config))
    assert events[-1].kind == "finished", events[-1]
    return str(out / "t")


def test_clicking_a_histogram_bar_lists_its_triplets_and_shows_their_images(qtbot, triplet_run):
    from PySide6.QtCore import QPointF, Qt

    from engine.methods import run_triplet_definition
    from engine.metrics.triplets import _distances_rows, _prepare
    from explorer import jobs
    from explorer.session import Session
    from explorer.views.triplets import TripletPanel

    session = Session()
    panel, inspector = TripletPanel(), TripletInspector()
    for w in (panel, inspector):
        w.attach(session)
        qtbot.addWidget(w)
        w.resize(700, 420)
        w.show()
    try:
        run = session.open_run(triplet_run)
        qtbot.waitUntil(lambda: run.dataset is not None, timeout=60_000)
        evaluation = [r for r in run.records if r["kind"] == "evaluation"][-1]
        counts = np.asarray(evaluation["metrics"]["triplet_histogram"])
        low, high = evaluation["metrics"]["triplet_histogram_range"]
        edges = np.linspace(low, high, len(counts) + 1)
        qtbot.waitUntil(lambda: panel.histogram("evaluation subset") is not None, timeout=10_000)
        panel.set_source("evaluation subset")
        i = int(np.argmax(counts))
        vb = panel.hist_plot.getViewBox()
        half = panel.histogram()[0][i] / 2

        def in_view() -> bool:  # the plot has ranged itself on this histogram (at its next paint)
            (x0, x1), (y0, y1) = vb.viewRange()
            return x0 <= edges[i] < edges[i + 1] <= x1 and y0 <= half <= y1

        qtbot.waitUntil(in_view)
        centre = vb.mapViewToScene(QPointF((edges[i] + edges[i + 1]) / 2, half))
        with qtbot.waitSignal(session.bar_triplets_changed, timeout=60_000):
            qtbot.mouseClick(panel.hist_widget.viewport(), Qt.MouseButton.LeftButton,
                             pos=panel.hist_widget.mapFromScene(centre))
        bar = session.bar_triplets
        # the bar's own triplets: as many as the evaluation counted in it, each of them in its range
        assert len(bar) == counts[i] > 0 and bar.step == evaluation["step"]
        snap = next(s for s in run.snapshots if s.step == bar.step)
        definition = run_triplet_definition(run.config)
        assert definition.margin == bar.margin == 0.3
        pos = {int(r): k for k, r in enumerate(snap.indices)}
        a, p, n = (torch.as_tensor([pos[int(r)] for r in rows]) for rows in (bar.anchor, bar.positive, bar.negative))
        z = _prepare(torch.from_numpy(snap.embeddings), definition.distance, definition.normalize)
        diff = (_distances_rows(z[a], z[n], "euclidean", True) - _distances_rows(z[a], z[p], "euclidean", True)).numpy()
        assert ((diff >= edges[i] - 1e-6) & (diff <= edges[i + 1] + 1e-6)).all()
        labels = snap.labels
        assert (labels[a.numpy()] == labels[p.numpy()]).all() and (labels[a.numpy()] != labels[n.numpy()]).all()
        assert panel.bars.opts["pens"][i] is not panel.bars.opts["pens"][i - 1]  # the clicked bar outlined
        # the inspector lists them, hardest first, and shows the first one's three images
        from explorer.views.inspectors.triplet import LISTED

        assert inspector.bar_list.isVisibleTo(inspector) and inspector.bar_list.count() == min(len(bar), LISTED)
        assert f"<b>{len(bar)}</b> triplets" in inspector.bar_header.text()
        assert (f"the {LISTED} hardest listed" in inspector.bar_header.text()) == (len(bar) > LISTED)
        qtbot.waitUntil(lambda: inspector.tiles["negative"].image is not None, timeout=10_000)
        hardest = int(np.argmin(bar.d_an - bar.d_ap))
        assert (inspector.result["anchor"], inspector.result["positive"], inspector.result["negative"]) == (
            bar.anchor[hardest], bar.positive[hardest], bar.negative[hardest])
        for name, row in (("anchor", bar.anchor[hardest]), ("negative", bar.negative[hardest])):
            np.testing.assert_array_equal(inspector.tiles[name].image, run.dataset.thumbnail("test", int(row)))
        third = inspector.bar_list.item(2)
        qtbot.mouseClick(inspector.bar_list.viewport(), Qt.MouseButton.LeftButton,
                         pos=inspector.bar_list.visualItemRect(third).center())
        assert inspector.result["anchor"] == int(third.text().split()[0][1:])
        # a training batch's bar: its triplets are gone; the map's points' in the same range, said so
        panel.set_source("training batches")
        with qtbot.waitSignal(session.bar_triplets_changed, timeout=60_000):
            assert panel.pick_bar(3)
        assert "are not kept" in session.bar_triplets.note and "are not kept" in inspector.bar_header.text()
        # a point clicked on the map brings back its own triplet
        session.select_point(int(snap.indices[5]))
        assert inspector.bar is None and not inspector.bar_list.isVisibleTo(inspector)
    finally:
        session.shutdown()
        qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=30_000)
