"""The numbers behind the curves: record values read defensively, growing series, decimation for
drawing, smoothing. Plain numpy: no Qt."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def number(value: Any) -> float | None:
    """A finite float, or None for a missing, null, boolean, non-numeric or non-finite value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Series:
    """A growing (x, y) pair in numpy buffers: appending is amortised O(1), reading is a view."""

    def __init__(self) -> None:
        self._x = np.empty(64)
        self._y = np.empty(64)
        self.n = 0

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        k = len(xs)
        if self.n + k > len(self._x):
            size = max(2 * len(self._x), self.n + k)
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)
        self._x[self.n:self.n + k] = xs
        self._y[self.n:self.n + k] = ys
        self.n += k

    def append(self, x: float, y: float) -> None:
        self.extend((x,), (y,))

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.n]

    def clear(self) -> None:
        self.n = 0

    def __len__(self) -> int:
        return self.n


def decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` points for drawing: the curve is cut into max_points / 2 bins and each
    bin keeps its lowest and highest point, in step order ("peak" decimation, so a spike or a dip of
    one step stays visible). Shorter curves come back unchanged."""
    n = len(x)
    if n <= max_points or max_points < 4:
        return x, y
    k = int(math.ceil(n / (max_points // 2)))
    m = n // k * k
    yb = y[:m].reshape(-1, k)
    base = np.arange(len(yb)) * k
    i_min, i_max = yb.argmin(1) + base, yb.argmax(1) + base
    idx = np.stack([np.minimum(i_min, i_max), np.maximum(i_min, i_max)], 1).ravel()
    idx = np.concatenate([idx, np.arange(m, n)])
    return x[idx], y[idx]


def bin_mean(x: np.ndarray, ys: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``x`` and of each column of ``ys`` (n, c) over consecutive bins, so that at most
    ``max_points`` rows remain (for areas, where an average is the honest summary of a bin)."""
    n = len(x)
    if n <= max_points:
        return x, ys
    k = int(math.ceil(n / max_points))
    m = n // k * k
    xm = x[:m].reshape(-1, k).mean(1)
    ym = ys[:m].reshape(-1, k, ys.shape[1]).mean(1)
    if m < n:
        xm = np.append(xm, x[m:].mean())
        ym = np.vstack([ym, ys[m:].mean(0)])
    return xm, ym


def ema(values: np.ndarray, alpha: float, start: float = 0.0, count: int = 0) -> tuple[np.ndarray, float]:
    """Debiased exponential moving average (as in TensorBoard and Adam):
    s_t = alpha s_{t-1} + (1 - alpha) y_t, shown as s_t / (1 - alpha^t). ``start`` is the biased state
    s and ``count`` the number of points before ``values``, so a curve can be smoothed piece by piece.
    Returns the smoothed values and the new biased state.

    Vectorised by chunks: inside a chunk s_j = alpha^(j+1) s + (1 - alpha) alpha^j sum_{i<=j} alpha^-i y_i,
    with chunks short enough that alpha^-i stays far from overflow (no scipy: importing scipy.signal
    would freeze the window for seconds on the first batch)."""
    y = np.asarray(values, dtype=float)
    if len(y) == 0:
        return y.copy(), start
    if alpha <= 0:
        return y.copy(), float(y[-1])
    size = int(min(4096, max(1, 150 // -math.log10(alpha))))
    biased = np.empty_like(y)
    s = float(start)
    for lo in range(0, len(y), size):
        chunk = y[lo:lo + size]
        j = np.arange(len(chunk))
        power = alpha ** j
        part = alpha * power * s + (1 - alpha) * power * np.cumsum(chunk * alpha ** -j)
        biased[lo:lo + len(chunk)] = part
        s = float(part[-1])
    t = count + np.arange(1, len(y) + 1)
    return biased / (1 - alpha ** t), s
