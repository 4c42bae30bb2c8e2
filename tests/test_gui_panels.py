"""The record panels (explorer/views/loss.py, probe.py, collapse.py, triplets.py, properties.py), fed
the records of a real short run written by the command line, and records made by the engine's own
computations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.metrics import collapse
from engine.runs import RunDir
from explorer.views.collapse import CollapsePanel
from explorer.views.loss import LossPlot
from explorer.views.palette import BAD
from explorer.views.probe import ProbePlot
from explorer.views.properties import PropertiesPanel
from explorer.views.series import bin_mean, decimate, ema
from explorer.views.triplets import SOURCES, TripletPanel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def run_records(tmp_path_factory) -> list[dict]:
    """A 2-epoch supervised run on digits through the command line, as metrics.jsonl records."""
    from engine.cli import main

    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--method", "supervised", "--dataset", "digits", "--epochs", "2", "--out", str(out),
                 "--run-name", "r", "--projection", "pca", "--quiet"])
    assert code == 0
    return RunDir(out / "r").records()


@pytest.fixture(scope="module")
def triplet_step_records() -> list[dict]:
    """Step records of a triplet-loss job (per-batch triplet categories and d_an - d_ap histogram),
    straight from the training generator: one epoch, no diagnostics."""
    import tempfile

    from engine.config import TrainConfig
    from engine.training import train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(method="triplet", dataset="digits", epochs=1, out=out, eval_every=0,
                             final_eval=False, diagnostics=False, device="cpu")
        records = [e.to_record() for e in train(config) if e.kind in ("started", "step", "failed")]
    assert not [r for r in records if r["kind"] == "failed"], records[-1]
    return records


def steps_of(records, kind):
    return [r for r in records if r["kind"] == kind]


ALL_PANELS = (LossPlot, ProbePlot, CollapsePanel, TripletPanel, PropertiesPanel)


# --- helpers -------------------------------------------------------------------------------------

def test_decimate_keeps_every_bins_extremes_in_order():
    rng = np.random.default_rng(0)
    x = np.arange(10_001, dtype=float)
    y = rng.normal(size=x.size)
    y[1234] = 50.0  # a one-step spike must survive
    dx, dy = decimate(x, y, 1000)
    assert len(dx) <= 1000 + 20
    assert np.all(np.diff(dx) > 0)
    assert dy.max() == 50.0 and dy.min() == y.min()
    short_x, short_y = x[:500], y[:500]
    assert decimate(short_x, short_y, 1000)[0] is short_x


def test_bin_mean_and_ema_match_plain_loops():
    x = np.arange(10.0)
    ys = np.stack([x, 2 * x], 1)
    bx, by = bin_mean(x, ys, 4)  # bins of 3: [0,1,2] [3,4,5] [6,7,8] [9]
    np.testing.assert_allclose(bx, [1, 4, 7, 9])
    np.testing.assert_allclose(by[:, 1], [2, 8, 14, 18])
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    a, s, expect = 0.6, 0.0, []
    for t, v in enumerate(values, 1):
        s = a * s + (1 - a) * v
        expect.append(s / (1 - a ** t))
    whole, _ = ema(values, a)
    np.testing.assert_allclose(whole, expect)
    first, state = ema(values[:2], a)  # piece by piece gives the same curve
    rest, _ = ema(values[2:], a, state, 2)
    np.testing.assert_allclose(np.concatenate([first, rest]), expect)


# --- the contract --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL_PANELS)
def test_every_panel_has_help_and_takes_none_values_and_junk(qtbot, cls):
    panel = cls()
    qtbot.addWidget(panel)
    assert len(cls.help_text.split()) > 40  # a paragraph, not a label
    assert not panel.help_label.isVisible()
    panel.show()
    qtbot.mouseClick(panel.help_button, pytest.importorskip("PySide6.QtCore").Qt.MouseButton.LeftButton)
    assert panel.help_label.isVisible() and panel.help_label.text() == cls.help_text
    keys = ("linear_probe_acc", "knn_acc", "precision_at_1", "map_at_r", "baseline_linear_probe_acc",
            "baseline_knn_acc", "pixels_linear_probe_acc", "effective_rank", "l2_std", "alignment",
            "uniformity", "collapse", "mean_cosine", "dead_dims", "triplet_easy", "triplet_semi_hard",
            "triplet_hard", "silhouette", "nmi", "ari", "smoothness", "invariance", "sparsity",
            "disentanglement", "singular_values", "triplet_histogram", "triplet_histogram_range")
    junk = [
        {"kind": "evaluation", "step": 3, "epoch": 0.5, "metrics": {k: None for k in keys}, "final": False},
        {"kind": "evaluation", "step": 4, "metrics": {"linear_probe_acc": float("nan"), "singular_values": [None],
                                                      "triplet_histogram": [1, 2], "triplet_histogram_range": [0]}},
        {"kind": "step", "step": 5, "losses": {"loss": None, "x": float("inf")}, "stats": {"triplet_easy": None,
                                                                                          "dan_dap_hist": None}},
        {"kind": "step", "losses": {"loss": 1.0}},  # no step
        {"kind": "evaluation", "step": 6, "metrics": None},
        {"kind": "snapshot", "step": 6, "path": "", "n": 10, "dim": 8},
        {"kind": "started", "config": {}},
        {"kind": "something new", "step": 7},
        {"no kind": True},
    ]
    panel.add_records(junk)
    panel.set_theme(True)
    panel.set_theme(False)
    panel.clear()


def test_loss_plot_holds_every_step_of_every_term(qtbot, run_records):
    panel = LossPlot()
    qtbot.addWidget(panel)
    steps = steps_of(run_records, "step")
    panel.add_records(run_records[:10])  # records come in batches
    panel.add_records(run_records[10:])
    assert set(panel.terms()) == {"loss", "cross_entropy"}
    for name in panel.terms():
        x, y = panel.curve_data(name)
        np.testing.assert_array_equal(x, [r["step"] for r in steps])
        np.testing.assert_allclose(y, [r["losses"][name] for r in steps])
        item = panel._terms[name].smooth_item
        assert len(item.xData) == len(steps)
    # smoothing 0 draws the raw values; the slider re-smooths what is already there
    panel.set_smoothing(0.0)
    x, y = panel.curve_data("cross_entropy", smoothed=True)
    np.testing.assert_allclose(y, [r["losses"]["cross_entropy"] for r in steps])
    assert not panel._terms["loss"].raw_item.isVisible()
    panel.set_smoothing(0.9)
    expect, _ = ema(np.array([r["losses"]["loss"] for r in steps]), 0.9)
    np.testing.assert_allclose(panel.curve_data("loss", smoothed=True)[1], expect)
    panel.set_log_scale(True)
    assert panel.plot.getAxis("left").logMode
    panel.clear()
    assert panel.terms() == [] and panel.plot.listDataItems() == []


def test_loss_plot_creates_items_once_and_decimates_long_runs(qtbot):
    panel = LossPlot()
    qtbot.addWidget(panel)
    rng = np.random.default_rng(0)
    n = 3 * panel.max_points
    values = np.abs(rng.normal(size=n)) + 0.1
    values[777] = 40.0
    records = [{"kind": "step", "step": i + 1, "losses": {"loss": float(v)}} for i, v in enumerate(values)]
    panel.add_records(records[:100])
    items = list(panel.plot.listDataItems())
    for start in range(100, n, 500):
        panel.add_records(records[start:start + 500])
    assert panel.plot.listDataItems() == items
    assert len(panel.curve_data("loss")[0]) == n
    raw = panel._terms["loss"].raw_item
    assert len(raw.xData) <= panel.max_points + 10
    assert raw.yData.max() == 40.0


def test_probe_plot_curves_and_reference_lines(qtbot, run_records):
    panel = ProbePlot()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    evaluations = steps_of(run_records, "evaluation")
    assert len(evaluations) == 3  # step 0, end of epoch 1, the final one
    for key in ("linear_probe_acc", "knn_acc"):
        x, y = panel.curve_data(key)
        np.testing.assert_array_equal(x, [e["step"] for e in evaluations])
        np.testing.assert_allclose(y, [e["metrics"][key] for e in evaluations])
        assert len(panel._items[key].yData) == 3
    final = evaluations[-1]["metrics"]
    refs = panel.references()
    for key in ("baseline_linear_probe_acc", "baseline_knn_acc", "pixels_linear_probe_acc"):
        assert refs[key] == pytest.approx(final[key])  # the latest figure: the full protocol
        item = panel._reference_items[key]
        np.testing.assert_allclose(item.yData, [final[key]] * 2)
        assert item.xData[-1] == evaluations[-1]["step"]
    assert "random init, linear probe" in panel.legend.names()
    assert len(panel._final) == 2 and set(panel._final.x) == {evaluations[-1]["step"]}
    panel.clear()
    assert panel.curves() == [] and panel.references() == {} and panel.plot.listDataItems() == []


def test_collapse_panel_on_a_healthy_run(qtbot, run_records):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    assert panel.collapse_step is None
    evaluations = [e for e in steps_of(run_records, "evaluation") if "effective_rank" in e["metrics"]]
    assert evaluations, "the engine's diagnostics did not report collapse indicators"
    assert panel.embedding_dim == 128  # from the started record
    np.testing.assert_allclose(panel.rank.y, [e["metrics"]["effective_rank"] for e in evaluations])
    np.testing.assert_allclose(panel.spread.y, [e["metrics"]["relative_spread"] for e in evaluations])
    np.testing.assert_allclose(panel.rank_reference.yData, [128, 128])
    np.testing.assert_allclose(panel.rank_threshold.yData, [collapse.rank_threshold(128)] * 2)
    np.testing.assert_allclose(panel.spread_threshold.yData, [collapse.NEAR_SPREAD] * 2)
    last = evaluations[-1]["metrics"]
    assert len(panel.spectrum_item.xData) == len(last["singular_values"])
    np.testing.assert_allclose(panel.spectrum_item.yData,
                               np.array(last["singular_values"]) / last["singular_values"][0])
    assert panel.verdict == last["collapse"] == "healthy" and panel.badge_state == "healthy"
    assert "healthy" in panel.badge.text() and BAD[False] not in panel.badge.styleSheet()
    # the figures beside the verdict are the same evaluation's, and none of them reads "collapsed"
    details = panel.details.text()
    for key, label in (("alignment", "alignment"), ("uniformity", "uniformity"), ("mean_cosine", "mean cosine")):
        assert f"{label} {last[key]:.3f}" in details
    assert f"effective rank {last['effective_rank']:.1f}" in details
    assert last["mean_cosine"] < 0.5 and last["uniformity"] < -1 and last["alignment"] > 0.001


@pytest.mark.parametrize("size, mode", [((1100, 260), "row"), ((360, 700), "column"), ((360, 270), "tabs")])
def test_collapse_plots_are_never_squeezed_below_a_readable_size(qtbot, run_records, size, mode):
    """Side by side when wide, stacked when tall, one tab each in the window's default bottom dock."""
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    panel.resize(*size)
    panel.show()
    qtbot.waitUntil(lambda: panel.plot_mode == mode)
    plots = (panel.rank_widget, panel.spread_widget, panel.spectrum_widget)
    if mode == "tabs":
        # each tab: the plot over its legend
        assert [panel.plot_tabs.widget(i) for i in range(3)] == [p.parentWidget() for p in plots]
        qtbot.waitUntil(lambda: panel.rank_widget.width() > 300)  # the whole width for one plot
    else:
        assert panel.plot_tabs.count() == 0 and panel.plot_tabs.isHidden()
        qtbot.waitUntil(lambda: all(p.isVisible() and p.width() >= CollapsePanel.PLOT_WIDTH - 10 for p in plots))
    panel.resize(1100, 260)  # back to wide: the plots come out of the tabs again
    qtbot.waitUntil(lambda: panel.plot_mode == "row" and all(p.isVisible() for p in plots))


def test_collapse_badge_turns_red_and_remembers_the_first_collapsed_step(qtbot, run_records):
    from engine.metrics.collapse import collapse_indicators

    # the engine's own verdict on embeddings that all coincide
    collapsed = collapse_indicators(np.tile(np.linspace(-1, 1, 16), (64, 1)))
    assert collapsed["collapse"] == "complete collapse"
    later = [{"kind": "evaluation", "step": 30 + i, "epoch": 3.0, "metrics": collapsed, "final": False}
             for i in range(2)]
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    assert panel.collapse_step is None
    panel.add_records(later)
    assert panel.collapse_step == 30  # the first collapsed evaluation, not the latest
    assert panel.badge_state == "collapse" and "complete collapse from step 30" in panel.badge.text()
    assert BAD[False] in panel.badge.styleSheet()
    assert "mean cosine 1.000" in panel.details.text() and "uniformity 0.000" in panel.details.text()
    panel.clear()
    assert panel.badge_state == "none" and len(panel.rank) == 0 and panel.rank_item.xData is None
    assert panel.collapse_step is None


def _badge_colour(qtbot, panel) -> tuple[int, int, int]:
    """The colour drawn at the badge's left edge, inside its border, under the app's style sheet."""
    from PySide6.QtWidgets import QApplication

    from explorer.main_window import RESOURCES

    QApplication.instance().setStyleSheet((RESOURCES / "light.qss").read_text())
    try:
        panel.resize(900, 300)
        panel.show()
        qtbot.waitExposed(panel)
        image = panel.badge.grab().toImage()
        c = image.pixelColor(3, image.height() // 2)
        return c.red(), c.green(), c.blue()
    finally:
        QApplication.instance().setStyleSheet("")


def test_no_verdict_yet_is_not_drawn_in_the_alarm_red(qtbot):
    """Before any run the badge says so in a neutral colour (the style sheet's red for the map's
    badge used to show through)."""
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    assert panel.badge_state == "none" and panel.badge.text() == "no verdict yet"
    r, g, b = _badge_colour(qtbot, panel)
    assert abs(r - g) < 20 and abs(g - b) < 20, (r, g, b)  # grey or white: no hue


@pytest.mark.parametrize("verdict, state, hue", [("dimensional collapse", "warning", "amber"),
                                                 ("near collapse", "warning", "amber"),
                                                 ("complete collapse", "collapse", "red")])
def test_graded_verdicts_are_drawn_amber_or_red(qtbot, verdict, state, hue):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    panel.add_records([{"kind": "evaluation", "step": 5, "metrics": {"collapse": verdict, "relative_spread": 1e-4}}])
    assert panel.badge_state == state and verdict in panel.badge.text()
    r, g, b = _badge_colour(qtbot, panel)
    assert r > 180 and b < 80 and ((g > 120) if hue == "amber" else (g < 80)), (r, g, b)


def test_triplet_panel_from_evaluations(qtbot, run_records):
    panel = TripletPanel()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    evaluations = [e for e in steps_of(run_records, "evaluation") if e["metrics"].get("triplet_easy") is not None]
    assert evaluations and panel.source == SOURCES[0]
    steps, shares = panel.series()
    np.testing.assert_array_equal(steps, [e["step"] for e in evaluations])
    expect = [[e["metrics"][k] for k in ("triplet_hard", "triplet_semi_hard", "triplet_easy")] for e in evaluations]
    np.testing.assert_allclose(shares, expect, atol=1e-9)
    np.testing.assert_allclose(panel._bounds[3].yData, 1.0)  # the stack reaches 1
    np.testing.assert_allclose(panel._bounds[1].yData, shares[:, 0])
    last = evaluations[-1]["metrics"]
    hist, bins, margin, step = panel.histogram()
    counts = np.array(last["triplet_histogram"], dtype=float)
    np.testing.assert_allclose(hist, counts / counts.sum())
    assert bins[0] == last["triplet_histogram_range"][0] and bins[-1] == last["triplet_histogram_range"][1]
    assert margin == last["triplet_margin"] and panel.margin_band.getRegion() == (0.0, margin)
    panel.clear()
    assert len(panel.series()[0]) == 0 and panel.histogram() is None


def test_triplet_panel_from_training_batches(qtbot, triplet_step_records):
    panel = TripletPanel()
    qtbot.addWidget(panel)
    panel.add_records(triplet_step_records)
    steps = steps_of(triplet_step_records, "step")
    assert panel.source == SOURCES[1]  # chosen by itself: the batches report triplets
    x, shares = panel.series()
    np.testing.assert_array_equal(x, [r["step"] for r in steps])
    np.testing.assert_allclose(shares[:, 2], [r["stats"]["triplet_easy"] for r in steps], rtol=1e-6)
    hist, bins, margin, step = panel.histogram()
    last = steps[-1]["stats"]
    assert step == steps[-1]["step"] and margin == last["margin"]
    np.testing.assert_allclose(bins, last["dan_dap_bins"])
    np.testing.assert_allclose(hist, np.array(last["dan_dap_hist"]) / sum(last["dan_dap_hist"]))
    # bars left of 0 are drawn in the "hard" colour, inside the margin "semi-hard", beyond it "easy"
    brushes = panel.bars.opts["brushes"]
    centres = (bins[:-1] + bins[1:]) / 2
    hard, semi, easy = panel._brushes
    assert all(b is (hard if c < 0 else semi if c < margin else easy) for b, c in zip(brushes, centres))
    panel.set_source(SOURCES[0])
    assert len(panel.series()[0]) == 0


def test_properties_panel_shows_the_latest_measurements(qtbot, run_records):
    panel = PropertiesPanel()
    qtbot.addWidget(panel)
    panel.add_records(run_records)
    last = [e for e in steps_of(run_records, "evaluation") if "smoothness" in e["metrics"]][-1]["metrics"]
    assert panel.value_text("smoothness") == f"{last['smoothness']:.3f}"
    assert panel.value_text("invariance") == f"{last['invariance']:.3f}"
    assert f"silhouette {last['silhouette']:.3f}" in panel.value_text("clustering")
    assert panel.value_text("disentanglement") == "\u2014"  # digits has no known factors
    assert panel.table.item(0, 2).text()  # an explanation on every row
    panel.clear()
    assert panel.value_text("smoothness") == "\u2014"


def test_panels_follow_the_theme(qtbot):
    from PySide6.QtGui import QColor, QPalette

    panel = LossPlot()
    qtbot.addWidget(panel)
    panel.set_theme(False)
    assert panel.widget.backgroundBrush().color().lightness() > 200
    dark = QPalette()
    dark.setColor(QPalette.ColorRole.Window, QColor("#202124"))
    panel.setPalette(dark)  # a dark palette switches the plots by itself
    assert panel.dark and panel.widget.backgroundBrush().color().lightness() < 60
