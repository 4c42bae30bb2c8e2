"""Map refresh + render time for 70k points: our image-stamped PointCloudItem against pyqtgraph's
ScatterPlotItem (the naive way) in the same run; pan/zoom frame rate at 100k points; and the time
from a click to the neighbours grid shown, for 70k points of 128 dimensions.

    QT_QPA_PLATFORM=offscreen python bench/map_render.py [--points 70000] [--frames 10]

A frame = new positions and colours for every point (a snapshot arriving, or a step of the
animated transition) + a full repaint of the plot into a pixmap (``grab``), at 1200 x 800 pixels.
Targets: <= 25 ms per frame at 70k (issue 14; 50 in issue 4), the zoomed-in frame that draws the points
in view as their images included; pan/zoom >= 30 fps at 100k; click -> grid <= 50 ms.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import numpy as np  # noqa: E402


SIZE = (1200, 800)


def blobs(n: int, classes: int = 10, dim: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 6, (classes, dim))
    return (centres[labels] + rng.normal(0, 1, (n, dim))).astype(np.float32), labels


def time_frames(plot, update, frames: int, cpu: list[float] | None = None) -> list[float]:
    """Wall ms of each frame after the first; with ``cpu``, the process's CPU ms of each appended."""
    from PySide6.QtWidgets import QApplication

    times = []
    for f in range(frames + 1):
        t, c = time.perf_counter(), time.process_time()
        update(f)
        plot.grab()  # one full paint of the plot, as a screen refresh does
        if f:  # the first frame builds caches on both sides
            times.append((time.perf_counter() - t) * 1000)
            if cpu is not None:
                cpu.append((time.process_time() - c) * 1000)
        QApplication.processEvents()  # outside the timing: the offscreen backing store's own repaint
    return times


def bench_render(n: int, frames: int) -> dict[str, float]:
    import pyqtgraph as pg

    from explorer.views.map_view import PointCloudItem
    from explorer.views.palette import class_palette

    xy, labels = blobs(n)
    rng = np.random.default_rng(1)
    steps = [xy + rng.normal(0, 0.3, xy.shape).astype(np.float32) for _ in range(frames + 1)]
    palette = class_palette(10)

    def make_plot():
        plot = pg.PlotWidget()
        plot.resize(*SIZE)
        plot.show()
        plot.getPlotItem().vb.setRange(xRange=(-25, 25), yRange=(-20, 20), padding=0)
        plot.getPlotItem().vb.disableAutoRange()
        return plot

    out = {}
    plot = make_plot()
    cloud = PointCloudItem()
    plot.addItem(cloud)
    cpu: list[float] = []
    out["ours"] = statistics.median(time_frames(plot, lambda f: cloud.set_data(steps[f], palette[(labels + f) % 10]),
                                                frames, cpu))
    out["ours_cpu"] = statistics.median(cpu)
    # thumbnails mode: zoomed in on a window of ~300 points, each drawn as its 28 x 28 image
    vb = plot.getPlotItem().vb
    cloud.set_thumbnails(np.arange(n), _FakeDataset(n).thumbnail_of)
    centre = xy[labels == labels[0]].mean(0)
    half = 4.0
    for _ in range(30):  # the half-width that holds ~300 points
        inside = (np.abs(steps[0] - centre) <= [half * 1.5, half]).all(1).sum()
        half *= 0.5 ** (0.5 * np.log2(max(inside, 1) / 300))
    vb.setRange(xRange=(centre[0] - half * 1.5, centre[0] + half * 1.5), yRange=(centre[1] - half, centre[1] + half),
                padding=0)
    cpu = []
    out["ours_thumbnails"] = statistics.median(time_frames(
        plot, lambda f: cloud.set_data(steps[f], palette[(labels + f) % 10]), frames, cpu))
    out["ours_thumbnails_cpu"] = statistics.median(cpu)
    out["thumbnails_drawn"] = cloud.thumbnails_drawn
    plot.close()

    plot = make_plot()
    scatter = pg.ScatterPlotItem(size=5, pen=None)
    plot.addItem(scatter)
    brushes = [pg.mkBrush(pg.mkColor(int(c) & 0xFFFFFF | 0xFF000000)) for c in palette]
    out["scatter_brush_per_point"] = statistics.median(time_frames(
        plot, lambda f: scatter.setData(pos=steps[f], brush=[brushes[c] for c in (labels + f) % 10]), frames))
    out["scatter_one_brush"] = statistics.median(time_frames(
        plot, lambda f: scatter.setData(pos=steps[f], brush=brushes[f % 10]), frames))
    plot.close()
    return out


def bench_pan_zoom(n: int, frames: int) -> float:
    import pyqtgraph as pg

    from explorer.views.map_view import PointCloudItem
    from explorer.views.palette import class_palette

    xy, labels = blobs(n, seed=2)
    plot = pg.PlotWidget()
    plot.resize(*SIZE)
    plot.show()
    cloud = PointCloudItem()
    plot.addItem(cloud)
    cloud.set_data(xy, class_palette(10)[labels])
    vb = plot.getPlotItem().vb

    def move(f):
        s = 20 * (0.6 + 0.4 * np.cos(f / 5))
        vb.setRange(xRange=(-s + f * 0.3, s + f * 0.3), yRange=(-s * 0.7, s * 0.7), padding=0)

    ms = statistics.median(time_frames(plot, move, frames))
    plot.close()
    return ms


class _FakeDataset:
    """Thumbnails for the neighbours grid (28x28 like Fashion-MNIST)."""

    def __init__(self, n: int):
        self.images = np.random.default_rng(3).integers(0, 255, (n, 28, 28), dtype=np.uint8)

    def thumbnail(self, split: str, i: int) -> np.ndarray:
        return self.images[int(i)]

    def thumbnail_of(self, i: int) -> np.ndarray:
        return self.images[int(i)]


def bench_click(n: int, dim: int = 128, clicks: int = 10) -> tuple[float, float]:
    from PySide6.QtWidgets import QApplication

    from explorer.session import RunState, Session
    from explorer.state import MapSnapshot
    from explorer.views.neighbours import NeighboursPanel

    emb, labels = blobs(n, dim=dim, seed=4)
    session = Session()
    run = RunState("bench", "bench", config={"class_names": [str(i) for i in range(10)]})
    run.snapshots.append(MapSnapshot(step=0, epoch=0.0, embeddings=emb, indices=np.arange(n), labels=labels))
    run.dataset = _FakeDataset(n)
    session.runs[run.id] = run
    session.current_id = run.id
    panel = NeighboursPanel(session)
    panel.resize(360, 700)
    panel.show()
    QApplication.processEvents()
    times = []
    rows = np.random.default_rng(5).integers(0, n, clicks + 1)
    for r in rows:
        t = time.perf_counter()
        session.select_point(int(r))  # what a click on the map does
        panel.repaint()  # the grid drawn on screen
        times.append((time.perf_counter() - t) * 1000)
    session.shutdown()
    return times[0], statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=70_000)
    parser.add_argument("--pan-points", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    from PySide6.QtWidgets import QApplication

    import torch

    from engine.device import configure_threads

    app = QApplication.instance() or QApplication([])  # noqa: F841
    configure_threads(leave_one_core=True)
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    print(f"commit {commit}, {args.points} points, {SIZE[0]}x{SIZE[1]} px, median of {args.frames} frames, "
          f"torch threads {torch.get_num_threads()}, platform {os.environ['QT_QPA_PLATFORM']}")
    r = bench_render(args.points, args.frames)
    print(f"refresh + render, ours (PointCloudItem, image stamping): {r['ours']:8.1f} ms/frame "
          f"({r['ours_cpu']:.1f} ms CPU)")
    print(f"refresh + render, ScatterPlotItem, one brush:             {r['scatter_one_brush']:8.1f} ms/frame"
          f"   ratio {r['scatter_one_brush'] / r['ours']:.1f}x")
    print(f"refresh + render, ScatterPlotItem, a brush per point:     {r['scatter_brush_per_point']:8.1f} ms/frame"
          f"   ratio {r['scatter_brush_per_point'] / r['ours']:.1f}x")
    print(f"target <= 25 ms/frame: {'met' if r['ours'] <= 25 else 'NOT met'}")
    print(f"refresh + render, zoomed in, {r['thumbnails_drawn']} points drawn as their images: "
          f"{r['ours_thumbnails']:8.1f} ms/frame ({r['ours_thumbnails_cpu']:.1f} ms CPU; target <= 25 ms: {'met' if r['ours_thumbnails'] <= 25 else 'NOT met'})")
    pz = bench_pan_zoom(args.pan_points, args.frames * 2)
    print(f"pan/zoom, {args.pan_points} points: {pz:.1f} ms/frame = {1000 / pz:.0f} fps "
          f"(target >= 30 fps: {'met' if 1000 / pz >= 30 else 'NOT met'})")
    first, later = bench_click(args.points)
    print(f"click -> neighbours grid shown, {args.points} points x 128 dims, k = 12: first click {first:.1f} ms "
          f"(builds the index), then {later:.1f} ms (target <= 50 ms: {'met' if later <= 50 else 'NOT met'})")


if __name__ == "__main__":
    main()
