"""A view box whose automatic range holds still while the data stay inside it.

pyqtgraph's auto-range fits the view to the data at every paint after new data: a curve that grows by
one step moves the x range, and every range change regenerates both axes (tick values, tick texts,
the axis label's HTML), about a third of a plot's paint and 10-40 ms of the GUI thread while training.
Here the automatic range keeps its value while the data fit in it and fill at least ``FILL`` of it;
when they leave it, the range grows with ``HEADROOM`` beyond the data on the side they left by, so
the next few records fit without another change. Zooming, panning and the "A" button behave as in
pyqtgraph: this only changes which range the automatic one picks. GUI thread only.
"""
from __future__ import annotations

import pyqtgraph as pg

FILL = 0.6  # the data may shrink to this share of the range before it tightens
HEADROOM = 0.25  # a share of the data's span added on the side the data grew by
# the headroom stops at 0 and 1 (+-5 %) when the data do not cross them: losses, shares and accuracies
# keep an axis that ends where their values must end
BOUNDS = (0.0, 1.0)


def steady_range(current: tuple[float, float], target: tuple[float, float],
                 slack: float = 0.0) -> tuple[float, float] | None:
    """The range to show for data that want ``target`` (padded as pyqtgraph pads) while ``current``
    is shown: None to keep ``current``. ``target`` may stick out of ``current`` by ``slack`` (less
    than its padding: the data stay in view), else the padding that grows with the data would move
    the range at every record."""
    c0, c1 = current
    t0, t1 = target
    span = t1 - t0
    if c0 - slack <= t0 and t1 <= c1 + slack and span >= FILL * (c1 - c0):
        return None
    grow = HEADROOM * span
    low = t0 - grow if t0 < c0 - slack else t0
    high = t1 + grow if t1 > c1 + slack else t1
    for bound in BOUNDS:
        edge = 0.05 * max(abs(bound), 1.0)
        if t1 <= bound + edge < high:
            high = max(t1, bound + edge)
        if low < bound - edge <= t0:
            low = min(t0, bound - edge)
    return low, high


class SteadyViewBox(pg.ViewBox):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._auto_ranging = False

    def updateAutoRange(self):  # pyqtgraph override: the ranges it picks go through steady_range
        self._auto_ranging = True
        try:
            super().updateAutoRange()
        finally:
            self._auto_ranging = False

    def setRange(self, rect=None, xRange=None, yRange=None, padding=None, update=True,
                 disableAutoRange=True):  # pyqtgraph override
        if self._auto_ranging and rect is None:
            current = self.viewRange()
            if xRange is not None:
                xRange = steady_range(tuple(current[0]), tuple(xRange), self._slack(0, xRange))
            if yRange is not None:
                yRange = steady_range(tuple(current[1]), tuple(yRange), self._slack(1, yRange))
            if xRange is None and yRange is None:
                return
        super().setRange(rect, xRange, yRange, padding, update, disableAutoRange)

    def _slack(self, axis: int, padded: tuple[float, float]) -> float:
        """Nine tenths of the padding updateAutoRange put on each side of the data."""
        pad = self.suggestPadding(axis)
        return 0.9 * pad / (1 + 2 * pad) * (padded[1] - padded[0])
