"""The automatic range of the record plots holds still while the data stay inside it."""
from explorer.views.steady import steady_range


def test_a_range_holds_while_the_data_fit_and_grows_with_headroom():
    assert steady_range((0, 12.5), (0, 11)) is None  # inside, filling 88 %: kept
    assert steady_range((0, 12.5), (0, 13)) == (0, 16.25)  # left by the top: 25 % of the span above
    assert steady_range((-5, 1), (-6, 0)) == (-7.5, 0)  # left by the bottom: headroom below only
    assert steady_range((0, 100), (0, 10)) == (0, 10)  # filling 10 %: tightened to the data


def test_the_headroom_stops_at_zero_and_one():
    assert steady_range((0.1, 0.5), (0.1, 0.92)) == (0.1, 1.05)  # an accuracy's axis ends near 1
    assert steady_range((0.2, 0.5), (0.02, 0.5)) == (-0.05, 0.5)  # a share's near 0
    assert steady_range((0, 1), (0, 1.5)) == (0, 1.875)  # data beyond 1: the headroom as usual


def test_the_padding_that_grows_with_the_data_does_not_move_the_range():
    # the data from 10 to 400 padded by 5 % on each side, then one more record at 410
    padded = lambda hi: (10 - 0.05 * (hi - 10), hi + 0.05 * (hi - 10))  # noqa: E731
    shown = steady_range((0, 1), padded(400))
    slack = 0.9 * 0.05 / 1.1 * (padded(410)[1] - padded(410)[0])
    assert steady_range(shown, padded(410), slack) is None


def test_a_plot_redraws_its_axes_only_when_its_range_moves(qtbot):
    """40 loss records, one at a time, each painted: pyqtgraph's own auto-range regenerated the x and y axes 41
    and 29 times here; the steady one 13 and 8 times, with every point in view."""
    import numpy as np
    from pyqtgraph.graphicsItems.AxisItem import AxisItem

    from explorer.views.loss import LossPlot

    panel = LossPlot()
    qtbot.addWidget(panel)
    panel.resize(400, 300)
    panel.show()
    regenerated = []
    original = AxisItem.generateDrawSpecs

    def counted(axis, painter):
        regenerated.append(axis.orientation)
        return original(axis, painter)

    AxisItem.generateDrawSpecs = counted
    try:
        for i in range(40):
            panel.add_records([{"kind": "step", "step": 10 * (i + 1), "losses": {"loss": 2 * np.exp(-i / 10) + 0.1}}])
            panel.grab()
    finally:
        AxisItem.generateDrawSpecs = original
    assert regenerated.count("bottom") <= 16 and regenerated.count("left") <= 10, regenerated
    (x0, x1), (y0, y1) = panel.plot.vb.viewRange()
    x, y = panel.curve_data("loss")
    assert x0 <= x.min() and x.max() <= x1 and y0 <= y.min() and y.max() <= y1
