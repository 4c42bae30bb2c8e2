"""The map's pieces without training: the image-stamped point cloud, lasso/rectangle selection,
the colourings against their peers, linked side-by-side maps. Real data: the digits test split, with
its raw pixels as the "embeddings" (a representation like any other)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QPolygonF  # noqa: E402

from engine.projection import layout  # noqa: E402
from explorer import jobs  # noqa: E402
from explorer.session import RunState, Session  # noqa: E402
from explorer.state import MapSnapshot  # noqa: E402
from explorer.views.map_view import MapPanel, MapView, PointCloudItem, points_in_polygon  # noqa: E402
from explorer.views.neighbours import SelectionGrid, ThumbnailGrid  # noqa: E402
from explorer.views.palette import argb  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from engine.data import load_dataset

    return load_dataset("digits", test_size=300, seed=0)


def fake_run(digits, name: str, noise: float = 0.0) -> RunState:
    """A run with two snapshots of the digits' pixels (the second slightly perturbed) and PCA maps."""
    test = digits.test
    x = test.images.reshape(len(test), -1).astype(np.float32) / 16
    rng = np.random.default_rng(0)
    run = RunState(name, name, config={"dataset": "digits", "class_names": digits.class_names,
                                       "projection": "pca", "test_size": 300})
    run.dataset = digits
    for step, eps in ((0, 0.0), (10, 0.05 + noise)):
        emb = x + eps * rng.normal(size=x.shape).astype(np.float32)
        run.snapshots.append(MapSnapshot(step=step, epoch=step / 10, embeddings=emb, indices=np.arange(len(test)),
                                         labels=test.labels))
        run.coords[(len(run.snapshots) - 1, "pca")] = layout("pca", emb)
    return run


@pytest.fixture
def session(qtbot):
    s = Session()
    s.projection = "pca"
    yield s
    s.shutdown()
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=10_000)


def add(session: Session, run: RunState) -> None:
    session.runs[run.id] = run
    session.run_added.emit(run.id)
    if not session.current_id:
        session.select_run(run.id)


def test_point_cloud_draws_each_point_at_its_pixel_in_its_colour(qtbot):
    import pyqtgraph as pg

    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    plot.hideAxis("left")
    plot.hideAxis("bottom")
    plot.setBackground("#ffffff")
    cloud = PointCloudItem(radius=2.5)
    plot.addItem(cloud)
    xy = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5], [-50, 5], [np.nan, 1]], dtype=np.float32)
    colours = np.array([argb(c) for c in ("#ff0000", "#00ff00", "#0000ff", "#ff00ff", "#00ffff", "#000000",
                                          "#000000")], dtype=np.uint32)
    cloud.set_data(xy, colours)
    vb = plot.getPlotItem().vb
    vb.setRange(xRange=(-1, 11), yRange=(-1, 11), padding=0)  # (-50, 5) is out of view, NaN is skipped
    image = plot.grab().toImage()
    for (x, y), c in zip(xy[:5], colours[:5]):
        p = plot.mapFromScene(vb.mapViewToScene(QPointF(float(x), float(y))))
        px = [QColor(image.pixel(p.x() + dx, p.y() + dy)).rgb() & 0xFFFFFF for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        assert int(c) & 0xFFFFFF in px, (x, y)
    # zoomed in so that dots sit on the edges of the view: drawn clipped, no write outside the buffer
    for r in ((-0.01, 0.01), (9.99, 10.01), (4.9, 5.0)):
        vb.setRange(xRange=r, yRange=r, padding=0)
        assert not plot.grab().toImage().isNull()
    assert cloud.dataBounds(0) == (-50.0, 10.0)


def test_points_in_polygon_matches_qt(qtbot):
    rng = np.random.default_rng(1)
    xy = rng.uniform(-1, 1, (3000, 2))
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = rng.uniform(0.3, 1.0, 12)
    polygon = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])  # a star-shaped lasso
    qpoly = QPolygonF([QPointF(*p) for p in polygon])
    expected = np.array([qpoly.containsPoint(QPointF(*p), pg_odd_even()) for p in xy])
    np.testing.assert_array_equal(points_in_polygon(xy, polygon), expected)
    assert 0 < expected.sum() < len(xy)


def pg_odd_even():
    from PySide6.QtCore import Qt

    return Qt.FillRule.OddEvenFill


def test_thumbnail_grid_fits_a_narrow_column_with_long_labels(qtbot, digits):
    from PySide6.QtWidgets import QScrollArea

    grid = ThumbnailGrid()
    area = QScrollArea(widgetResizable=True)
    area.setWidget(grid)
    qtbot.addWidget(area)
    area.resize(340, 300)  # the window's right column
    area.show()
    labels = ["Ankle boot ✗\n0.123", "T-shirt/top ✗\n0.2", "Bag\n0.05", "Pullover\n1.0e-04", "Sneaker ✗\n0.3"]
    grid.show_items([(i, digits.thumbnail("test", i), text, f"test image {i}") for i, text in enumerate(labels)])
    qtbot.waitUntil(lambda: len({b.y() for b in grid.buttons}) == 2)  # 4 to a row, then the fifth
    assert not area.horizontalScrollBar().isVisible()
    assert len({b.width() for b in grid.buttons}) == 1
    assert all(b.geometry().right() < area.viewport().width() for b in grid.buttons)
    names = [b.text().split("\n")[0] for b in grid.buttons]
    assert names[2] == "Bag" and "…" in names[0] and names[0].endswith("✗")  # shortened, the mark kept


def test_region_selection_fills_the_grid(qtbot, session, digits):
    run = fake_run(digits, "a")
    view = MapView(session)
    view.animate = False
    grid = SelectionGrid(session)
    qtbot.addWidget(view)
    qtbot.addWidget(grid)
    add(session, run)
    view.refresh()
    xy = view.cloud.positions
    x0, x1 = np.quantile(xy[:, 0], [0.2, 0.5])
    y0, y1 = np.quantile(xy[:, 1], [0.2, 0.6])
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    view.vb.autoRange()
    view.vb.select_mode = "rect"
    to_pixel = lambda x, y: view.plot.mapFromScene(view.vb.mapViewToScene(QPointF(x, y)))  # noqa: E731
    drag(view.plot.viewport(), to_pixel(x0, y0), to_pixel(x1, y1))
    # the rectangle drawn by the mouse, in data coordinates (pixel-rounded corners)
    a, b = (view.vb.mapSceneToView(view.plot.mapToScene(to_pixel(*p))) for p in ((x0, y0), (x1, y1)))
    x0, x1 = sorted((a.x(), b.x()))
    y0, y1 = sorted((a.y(), b.y()))
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    np.testing.assert_array_equal(session.selected_rows, np.sort(view.shown_rows()[inside]))
    assert sum(b.isVisibleTo(grid) for b in grid.grid.buttons) == inside.sum()
    assert f"{inside.sum()} points selected" in grid.summary.text()
    assert len(view.selection_marks.data) == inside.sum()


def drag(widget, start, end, steps: int = 8) -> None:
    """A left-button drag from ``start`` to ``end`` (widget pixels), as real mouse events."""
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    def send(kind, pos, buttons):
        button = Qt.MouseButton.LeftButton if kind != QMouseEvent.Type.MouseMove else Qt.MouseButton.NoButton
        QApplication.sendEvent(widget, QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button,
                                                   buttons, Qt.KeyboardModifier.NoModifier))

    left = Qt.MouseButton.LeftButton
    send(QMouseEvent.Type.MouseButtonPress, start, left)
    for t in np.linspace(0, 1, steps):
        QTest.qWait(25)  # pyqtgraph drops mouse moves closer together than its rate limit (~16 ms)
        p = start + (end - start) * float(t)
        send(QMouseEvent.Type.MouseMove, p, left)
    send(QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def test_colourings_agree_with_their_peers(qtbot, session, digits):
    from sklearn.neighbors import NearestNeighbors

    from engine.metrics.triplets import CATEGORY_NAMES, anchor_categories

    run = fake_run(digits, "a")
    view = MapView(session)
    view.animate = False
    qtbot.addWidget(view)
    add(session, run)
    snap = run.snapshots[-1]
    emb, labels = snap.embeddings, snap.labels

    session.set_colour_by("class")
    assert [name for name, _ in view._legend_entries] == digits.class_names
    assert len(np.unique(view.cloud._argb)) == 10

    # kNN correct / wrong: the leave-one-out vote of the 10 nearest (cosine), as scikit-learn finds them
    session.set_colour_by("correct")
    nn = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(emb.astype(np.float64))
    idx = nn.kneighbors(return_distance=False)[:, :10]
    votes = np.array([np.bincount(labels[i], minlength=10).argmax() for i in idx])
    expected = np.where(votes == labels, argb("#2ca02c"), argb("#d62728"))
    assert (view.cloud._argb == expected).mean() > 0.98  # ties in distance may order differently

    session.set_colour_by("overlap")
    assert len(view._legend_entries) == 3

    session.set_colour_by("cluster")  # k-means found in a worker (nothing saved with these snapshots)
    qtbot.waitUntil(lambda: len(np.unique(view.cloud._argb)) == 10, timeout=20_000)

    session.set_colour_by("triplet")
    anchor = 17
    session.select_point(int(snap.indices[anchor]))
    cats = anchor_categories(emb, labels, anchor)  # the triplet loss's default definition
    counts = np.bincount(cats.codes, minlength=len(CATEGORY_NAMES))
    legend = dict(view._legend_entries)
    for i, n in enumerate(CATEGORY_NAMES):
        if counts[i]:
            assert f"{n} ({counts[i]})" in legend


def test_side_by_side_maps_share_the_selection(qtbot, session, digits):
    panel = MapPanel(session)
    for v in panel.views:
        v.animate = False
    qtbot.addWidget(panel)
    a, b = fake_run(digits, "a"), fake_run(digits, "b", noise=0.2)
    add(session, a)
    add(session, b)
    session.set_compare("b")
    assert panel.secondary.isVisibleTo(panel) and panel.secondary.run() is b
    assert panel.primary.point_count == panel.secondary.point_count == 300
    row = int(a.snapshots[-1].indices[42])
    session.select_point(row)
    for view, run in ((panel.primary, a), (panel.secondary, b)):
        np.testing.assert_allclose(view.point_mark.data["x"], [run.coords[(1, "pca")][42, 0]], rtol=1e-6)
    other = RunState("c", "c", config={"dataset": "shapes"})
    session.runs["c"] = other
    with pytest.raises(ValueError, match="same dataset"):
        session.set_compare("c")
    # the time-lapse scrubs both maps
    panel.slider.setValue(0)
    assert panel.primary._frame == 0 and panel.secondary._frame == 0
    np.testing.assert_allclose(panel.secondary.cloud.positions, b.coords[(0, "pca")])


def test_projection_is_computed_in_the_background_and_stale_results_are_not_drawn(qtbot, session, digits):
    run = fake_run(digits, "a")
    run.coords.clear()  # nothing cached: the map must ask for it
    view = MapView(session)
    view.animate = False
    qtbot.addWidget(view)
    add(session, run)
    assert view.point_count == 0 and "computing" in view.note.text()
    assert session.projections_computing() == [("a", 1, "pca")]
    session.set_frame(0)  # a newer request overtakes the first
    assert session.projections_computing()[-1] == ("a", 0, "pca")
    qtbot.waitUntil(lambda: view.point_count == 300 and view._frame == 0, timeout=60_000)
    qtbot.waitUntil(lambda: not jobs.live_jobs(), timeout=60_000)
    assert view._frame == 0  # the older request's result (frame 1) was cached, not drawn
    assert (1, "pca") in run.coords
    np.testing.assert_allclose(view.cloud.positions, run.coords[(0, "pca")])


def test_trails_and_centroids(qtbot, session, digits):
    run = fake_run(digits, "a")
    view = MapView(session)
    view.animate = False
    qtbot.addWidget(view)
    add(session, run)
    session.set_trails(True)
    x, y = view.trails.getData()
    assert len(x) == 300 * 3  # per point: its position at each of the 2 snapshots, then a gap
    np.testing.assert_allclose(np.column_stack([x, y])[1::3], run.coords[(1, "pca")])
    assert np.isnan(x[2::3]).all()
    session.set_centroids(True)
    labels = run.snapshots[-1].labels
    means = np.array([run.coords[(1, "pca")][labels == c].mean(0) for c in range(10)])
    np.testing.assert_allclose(np.column_stack([view.centroid_marks.data["x"], view.centroid_marks.data["y"]]),
                               means, rtol=1e-5)
    assert [t.textItem.toPlainText() for t in view.centroid_labels[:10]] == digits.class_names


def test_triplet_colouring_uses_the_run_s_own_margin(qtbot, session, digits):
    """A triplet run's --margin (here 0.05 against the default 0.2) decides the colours, as in its
    evaluations' shares."""
    from engine.metrics.triplets import CATEGORY_NAMES, TripletDefinition, anchor_categories

    run = fake_run(digits, "wide")
    run.config |= {"method": "triplet", "method_params": {"margin": 0.05}}
    view = MapView(session)
    view.animate = False
    qtbot.addWidget(view)
    add(session, run)
    session.set_colour_by("triplet")
    snap = run.snapshots[-1]
    session.select_point(int(snap.indices[17]))
    legend = dict(view._legend_entries)
    mine = anchor_categories(snap.embeddings, snap.labels, 17, TripletDefinition(margin=0.05))
    default = anchor_categories(snap.embeddings, snap.labels, 17)
    assert (mine.codes != default.codes).any()  # the margin matters on this anchor
    counts = np.bincount(mine.codes, minlength=len(CATEGORY_NAMES))
    for i, n in enumerate(CATEGORY_NAMES):
        if counts[i]:
            assert f"{n} ({counts[i]})" in legend


def test_the_map_badge_names_the_worst_verdict_so_far_in_its_colour(qtbot, session, digits):
    """A near collapse that becomes complete is badged as complete, from the step it became so, in
    the Collapse panel's red (amber before)."""
    from explorer.views.palette import verdict_style

    run = fake_run(digits, "c")
    view = MapView(session)
    qtbot.addWidget(view)
    add(session, run)

    def evaluate(step, verdict):
        session._note_collapse(run, {"kind": "evaluation", "step": step, "metrics": {"collapse": verdict}})
        view._update_badge(run)

    evaluate(0, "healthy")
    assert run.collapse_step is None and view.badge.isHidden()
    evaluate(5, "near collapse")
    assert (run.collapse_step, run.collapse_verdict) == (5, "near collapse")
    assert "near collapse from step 5" in view.badge.text()
    assert verdict_style("near collapse", False)[2] in view.badge.styleSheet()
    evaluate(10, "complete collapse")
    evaluate(15, "dimensional collapse")
    assert (run.collapse_step, run.collapse_verdict) == (10, "complete collapse")
    assert "complete collapse from step 10" in view.badge.text()
    assert verdict_style("complete collapse", False)[2] in view.badge.styleSheet()


def test_cluster_ids_colours_and_hulls_follow_the_previous_snapshot(qtbot, session, digits):
    """The time-lapse no longer flickers: the second snapshot's saved k-means ids (numbered another way,
    as an older run saved them) are renamed after the first's; the legend gives each cluster's majority
    class and the purity; each cluster is outlined by its hull, made once and moved with the points."""
    from sklearn.metrics import adjusted_rand_score

    from engine.metrics.clusters import hulls, kmeans, purity

    run = fake_run(digits, "a")
    first = kmeans(run.snapshots[0].embeddings, 10, seed=0)
    second = kmeans(run.snapshots[1].embeddings, 10, seed=0)
    shuffled = (second + 3) % 10  # the same clusters, other numbers
    snap = run.snapshots[1]
    run.snapshots[1] = MapSnapshot(snap.step, snap.epoch, snap.embeddings, snap.indices, snap.labels,
                                   arrays={"kmeans_clusters": shuffled})
    panel = MapPanel(session)
    for v in panel.views:
        v.animate = False
    qtbot.addWidget(panel)
    view = panel.primary
    add(session, run)
    assert panel.cluster_combo.isHidden() and panel.hulls_check.isHidden()
    panel.colour_combo.setCurrentIndex(panel.colour_combo.findData("cluster"))
    assert not panel.cluster_combo.isHidden() and not panel.hulls_check.isHidden()
    qtbot.waitUntil(lambda: len(run.clusters.get("kmeans", [])) == 2, timeout=20_000)
    ids0, ids1 = run.clusters["kmeans"]
    np.testing.assert_array_equal(ids0, first)
    # the grouping saved, under the numbers that keep the most points where they were: k-means' own
    # numbering of the second snapshot kept 35 % of the points' ids (the clusters of raw pixels shift)
    assert adjusted_rand_score(ids1, shuffled) == pytest.approx(1.0)
    assert (ids1 == first).mean() > max((second == first).mean(), (shuffled == first).mean()) + 0.2
    colours_newest = view.cloud._argb.copy()
    panel.slider.setValue(0)
    assert (view.cloud._argb == colours_newest).mean() == pytest.approx((ids1 == first).mean())
    head = view._legend_entries[0][0]
    assert head.startswith("k-means: 10 clusters") and f"purity {purity(snap.labels, ids0):.1%}" in head
    # hulls: one item per cluster id, through the engine's hull rows, re-used from frame to frame
    outlines = hulls(run.coords[(0, "pca")], ids0, 0.9)
    items = list(view.hull_items)
    assert len(items) == 10 and sum(i.isVisible() for i in items) == len(outlines)
    for c, rows in outlines.items():
        poly = items[c].polygon()
        np.testing.assert_allclose([(poly.at(i).x(), poly.at(i).y()) for i in range(poly.size())],
                                   run.coords[(0, "pca")][rows], rtol=1e-5)
    panel.slider.setValue(1)
    assert view.hull_items == items
    panel.hulls_check.setChecked(False)
    assert not any(i.isVisible() for i in view.hull_items)
    # HDBSCAN: its own number of clusters, noise grey and counted in the legend
    panel.hulls_check.setChecked(True)
    panel.cluster_combo.setCurrentIndex(panel.cluster_combo.findData("hdbscan"))
    qtbot.waitUntil(lambda: bool(view._legend_entries) and view._legend_entries[0][0].startswith("HDBSCAN"),
                    timeout=30_000)
    found = run.clusters["hdbscan"][1]
    assert view._legend_entries[0][0].startswith(f"HDBSCAN: {len(np.unique(found[found >= 0]))} clusters")
    if (found < 0).any():
        assert view._legend_entries[-1][0] == f"noise ({(found < 0).sum()})"
    panel.colour_combo.setCurrentIndex(panel.colour_combo.findData("class"))
    assert not any(i.isVisible() for i in view.hull_items) and panel.cluster_combo.isHidden()


def _send(widget, kind, pos, button, buttons) -> None:
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    QApplication.sendEvent(widget, QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                                               Qt.KeyboardModifier.NoModifier))


def fast_drag(widget, start, end) -> None:
    """A flick: press, two moves, release, with nothing in between (no event loop turn)."""
    from PySide6.QtGui import QMouseEvent

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    _send(widget, QMouseEvent.Type.MouseMove, start, none, none)
    _send(widget, QMouseEvent.Type.MouseButtonPress, start, left, left)
    _send(widget, QMouseEvent.Type.MouseMove, (start + end) / 2, none, left)
    _send(widget, QMouseEvent.Type.MouseMove, end, none, left)
    _send(widget, QMouseEvent.Type.MouseButtonRelease, end, left, none)


@pytest.fixture
def dropped_moves():
    """Every mouse move after the first within a second is dropped by pyqtgraph's rate limit, as moves
    that queued while the window was busy are (it measures when it handles them)."""
    import pyqtgraph as pg

    before = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", 1)
    yield
    pg.setConfigOption("mouseRateLimit", before)


def _pixel(view, x, y):
    return view.plot.mapFromScene(view.vb.mapViewToScene(QPointF(float(x), float(y))))


def test_a_fast_rectangle_selects_what_it_covers_and_says_so(qtbot, session, digits, dropped_moves):
    run = fake_run(digits, "a")
    view = MapView(session)
    view.animate = False
    qtbot.addWidget(view)
    add(session, run)
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    view.vb.autoRange()
    view.set_select_mode("rect")
    xy = view.cloud.positions
    x0, x1 = np.quantile(xy[:, 0], [0.3, 0.7])
    y0, y1 = np.quantile(xy[:, 1], [0.3, 0.7])
    a, b = _pixel(view, x0, y0), _pixel(view, x1, y1)
    fast_drag(view.plot.viewport(), a, b)
    p, q = (view.vb.mapSceneToView(view.plot.mapToScene(c)) for c in (a, b))
    inside = ((xy[:, 0] >= min(p.x(), q.x())) & (xy[:, 0] <= max(p.x(), q.x()))
              & (xy[:, 1] >= min(p.y(), q.y())) & (xy[:, 1] <= max(p.y(), q.y())))
    assert inside.sum() > 10
    np.testing.assert_array_equal(session.selected_rows, np.sort(view.shown_rows()[inside]))
    assert view.flash.isVisible() and view.flash.text() == f"{inside.sum()} points selected"
    assert session.selected_row == -1  # the release was not taken for a click on a point
    # a rectangle over nothing says so, and clears the selection
    corner = _pixel(view, xy[:, 0].min(), xy[:, 1].max())
    fast_drag(view.plot.viewport(), corner - QPoint(12, 12), corner - QPoint(4, 4))
    assert len(session.selected_rows) == 0
    assert view.flash.text() == "no point inside the rectangle: drag across some points"
    qtbot.waitUntil(lambda: not view.flash.isVisible(), timeout=10_000)


def test_the_side_by_side_map_selects_through_its_legend_and_marks_and_links(qtbot, session, digits):
    panel = MapPanel(session)
    for v in panel.views:
        v.animate = False
    qtbot.addWidget(panel)
    a, b = fake_run(digits, "a"), fake_run(digits, "b", noise=0.2)
    add(session, a)
    add(session, b)
    session.set_compare("b")
    panel.resize(1000, 560)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.secondary
    view.vb.autoRange()
    xy = view.cloud.positions
    # the legend over point 42: a click there selects the point (the legend took it)
    target = _pixel(view, *xy[42])
    legend = view.legend
    at = view.vb.mapFromScene(view.plot.mapToScene(target))
    legend.anchor(itemPos=(0, 0), parentPos=(0, 0), offset=(at.x() - 20, at.y() - 20))
    assert legend.sceneBoundingRect().contains(view.plot.mapToScene(target))
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=target)
    assert session.selected_row == int(view.shown_rows()[42])
    # a point under the rings of the neighbours is clicked too
    session.set_neighbour_rows(view.shown_rows()[[7, 8]])
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=_pixel(view, *xy[7]))
    assert session.selected_row == int(view.shown_rows()[7])
    # a rectangle drawn on the side-by-side map from over the legend selects, in both maps
    panel.mode_group.buttons()[1].click()
    start = legend.mapToScene(legend.boundingRect().center())
    start = view.plot.mapFromScene(start)
    end = _pixel(view, *np.median(xy, axis=0))
    drag(view.plot.viewport(), start, end)
    assert len(session.selected_rows) > 0
    assert len(panel.primary.selection_marks.data) == len(session.selected_rows)
    assert len(view.selection_marks.data) == len(session.selected_rows)
    assert view.flash.text().endswith("selected")
