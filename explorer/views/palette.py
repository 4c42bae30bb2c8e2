"""Every colour the window draws with, in one place: the theme's, the classes', the curves', the
verdicts' and the triplet categories'. A view asks here instead of writing a hex code, so the same
thing has the same colour in every view (a hard triplet is the same red on the map, in the triplet
inspector and in the Triplets panel).

Qt types only (QColor and ARGB integers for the map's image buffer); no widget.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor, QPalette

from engine.metrics import collapse

# --- the theme -------------------------------------------------------------------------------------
BACKGROUND = {False: "#ffffff", True: "#1e1f22"}
FOREGROUND = {False: "#202124", True: "#dcdfe4"}
MUTED = {False: "#70757a", True: "#8f959e"}
# the verdict colours (the collapse badges): healthy / warning / collapse, readable on the theme
GOOD = {False: "#16834a", True: "#4fd08a"}
WARN = {False: "#e0a21b", True: "#e0a21b"}
BAD = {False: "#c0262d", True: "#ff6b6b"}
# right and wrong answers drawn on data (kNN votes on the map, pretext predictions, pair labels)
RIGHT, WRONG = "#2ca02c", "#d62728"
SELECTION = "#ff9f1c"  # the rectangle / lasso and the selected points' rings


def verdict_style(verdict: str | None, dark: bool) -> tuple[str, str, str | None]:
    """(state, text colour, background or None) of a collapse badge: "none" before any verdict (no
    alarm: neutral), "healthy" (green), "warning" for dimensional or near collapse (amber),
    "collapse" for complete collapse (red)."""
    if not verdict:
        return "none", FOREGROUND[dark], None
    if verdict == collapse.HEALTHY:
        return "healthy", "#ffffff", "#1f7a46" if dark else GOOD[False]
    if verdict in collapse.VERDICTS and verdict != collapse.COMPLETE:
        return "warning", "#1b1f24", WARN[dark]
    return "collapse", "#ffffff", BAD[False]


def palette_is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


# --- classes -----------------------------------------------------------------------------------------
# tab20: the first ten (tab10) are the classic class colours, the next ten their lighter partners
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                 "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
UNLABELLED = "#b0b0b0"


def argb(colour: str | QColor) -> int:
    """An opaque colour as the 0xAARRGGBB integer of the map's image buffer."""
    c = QColor(colour)
    return (0xFF << 24) | (c.red() << 16) | (c.green() << 8) | c.blue()


def class_colour(index: int) -> QColor:
    """The colour of class ``index`` (the map's, the angle histograms', any per-class line)."""
    return QColor.fromRgba(int(class_palette(index + 1)[index]))


def class_palette(n: int) -> np.ndarray:
    """``n`` distinct opaque ARGB colours (tab20, then evenly spaced hues)."""
    colours = [argb(c) for c in CLASS_COLOURS[:n]]
    for i in range(len(colours), n):
        colours.append(argb(QColor.fromHsvF((i * 0.618034) % 1.0, 0.65, 0.85)))
    return np.asarray(colours, dtype=np.uint32)


# --- curves ------------------------------------------------------------------------------------------
# Two versions of one qualitative palette: darker hues on a white background, lighter ones on a dark
# background, so every line keeps its contrast (>= 3:1) in both themes.
_LIGHT = ("#1f5fbf", "#d9590b", "#16834a", "#c0262d", "#7a3fb8", "#8a5a2b", "#c2378a", "#0f7f86",
          "#5c6670", "#9a8a00")
_DARK = ("#6aa7ff", "#ff9a4d", "#4fd08a", "#ff6b6b", "#c39bff", "#d9a46a", "#ff7fc8", "#4fd6dc",
         "#b8c2cc", "#e6d84a")


def color(index: int, dark: bool) -> QColor:
    """The ``index``-th curve colour for the theme."""
    palette = _DARK if dark else _LIGHT
    return QColor(palette[index % len(palette)])


# --- triplet categories ------------------------------------------------------------------------------
TRIPLET_CATEGORIES = ("hard", "semi-hard", "easy")


def triplet_colours(dark: bool) -> dict[str, QColor]:
    """hard, semi-hard, easy: red, amber, green (a traffic light: how much a triplet still teaches)."""
    return {"hard": color(3, dark), "semi-hard": QColor("#e0a21b" if dark else "#d08a00"), "easy": color(2, dark)}


def faded(colour: QColor, dark: bool, amount: float = 0.7) -> QColor:
    """``colour`` mixed ``amount`` of the way toward the theme's background (opaque: the map's buffer
    has no alpha): for the many points a view draws but does not point at."""
    bg = QColor(BACKGROUND[dark])
    mix = lambda a, b: int(round(a + (b - a) * amount))  # noqa: E731
    return QColor(mix(colour.red(), bg.red()), mix(colour.green(), bg.green()), mix(colour.blue(), bg.blue()))


def map_triplet_colours(dark: bool) -> dict[str, int]:
    """ARGB colours of ``engine.metrics.triplets.CATEGORY_NAMES`` for the map's triplet colouring: the
    anchor in the foreground colour, its positives in the first class colour, the negatives in their
    category's colour (easy ones faded: most negatives are easy, the others are the point)."""
    t = triplet_colours(dark)
    return {"anchor": argb("#ffffff" if dark else "#000000"), "positive": argb(CLASS_COLOURS[0]),
            "easy negative": argb(faded(t["easy"], dark)), "semi-hard negative": argb(t["semi-hard"]),
            "hard negative": argb(t["hard"]), "unlabelled": argb("#e0e0e0"), "negative": argb("#9a9a9a")}


# --- scales ------------------------------------------------------------------------------------------
# viridis, a few stops: perceptually even, readable in grey
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                     [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], dtype=float)


def viridis(value: float) -> QColor:
    """Viridis colour of a value in [0, 1] (matrices and heat strips)."""
    t = float(np.clip(value, 0, 1)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    rgb = _VIRIDIS[i] + (t - i) * (_VIRIDIS[i + 1] - _VIRIDIS[i])
    return QColor(*(int(round(c)) for c in rgb))


def ramp(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as a red (0) - amber - green (1) ramp, ARGB."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0, 1)
    r = np.where(v < 0.5, 215, (1 - (v - 0.5) * 2) * 215 + (v - 0.5) * 2 * 40)
    g = np.where(v < 0.5, 40 + v * 2 * 150, 190 - (v - 0.5) * 2 * 30)
    b = np.full_like(v, 50.0)
    return (0xFF000000 | (r.astype(np.uint32) << 16) | (g.astype(np.uint32) << 8) | b.astype(np.uint32)
            ).astype(np.uint32)
