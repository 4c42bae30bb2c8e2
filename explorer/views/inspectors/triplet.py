"""The triplet inspector: the clicked point as an anchor, its hardest positive and negative on the map;
or the triplets of a clicked bar of the Triplets panel's histogram, one at a time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QListWidget, QListWidgetItem, QWidget

from explorer.views.flow import FlowLayout
from explorer.views.inspectors.base import Inspector
from explorer.views.inspectors.widgets import ImageTile
from explorer.views.kit import distance_text
from explorer.views.palette import triplet_colours

LISTED = 1000  # triplets of a bar listed at most (hardest first)
TILE, BAR_TILE = 96, 64  # image sizes: a clicked point's triplet; a bar's (list above, three in a row)


class TripletInspector(Inspector):
    """Anchor (the clicked point), its hardest positive and hardest negative within the evaluation
    subset, their distances and the triplet's category at a margin (spin box). For any labelled run; the
    window brings it forward for a clicked point of a metric-learning run."""

    name = "triplet_inspector"
    needs_labels = True
    dock_title = "Triplet"
    point_methods = ("triplet", "pair", "center", "cosine", "arc")
    help_text = (
        "A triplet is an anchor, a positive (same class) and a negative (another class). Here the anchor is "
        "the point you clicked on the map; among the map's points, the hardest positive is the one of its "
        "class that lies farthest from it, and the hardest negative the closest point of another class: "
        "the triplet batch-hard mining would train on (Hermans et al. 2017). With d_ap and d_an their "
        "distances to the anchor and m the margin, the triplet is easy when D_an >= D_ap + m (the loss "
        "max(0, D_ap - D_an + m) is already zero), semi-hard when the order is right but inside the margin, "
        "and hard when the negative is closer than the positive. The distance D and the margin are the "
        "triplet loss's, as in the evaluation's triplet shares and on the map's triplet colouring: a "
        "triplet run's own, otherwise the loss's defaults (squared euclidean distance between "
        "l2-normalised embeddings, D in [0, 4]). Clicking a bar of the Triplets panel's histogram lists "
        "the triplets behind it here (those the evaluation sampled with D_an - D_ap in the bar's range); "
        "pick one to see its anchor, positive and negative. Clicking a point on the map comes back to it.")

    triplet_shown = Signal(int, int, int)  # test rows of anchor, hardest positive, hardest negative

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.result: dict[str, Any] = {}
        from engine.metrics.triplets import TripletDefinition

        self.definition = TripletDefinition()  # the run's (see set_run); the spin box may change its margin
        self.margin_spin = QDoubleSpinBox(objectName="triplet_margin_spin", decimals=3, minimum=0.0,
                                          maximum=4.0, singleStep=0.05, value=self.definition.margin)
        self.margin_spin.setToolTip("Margin m of the categories: easy when D_an >= D_ap + m (starts at the "
                                    "run's own).")
        self.margin_spin.valueChanged.connect(lambda _: self.refresh())
        self.controls.addWidget(QLabel("margin m"))
        self.controls.addWidget(self.margin_spin)
        self.tiles = {k: ImageTile(f"triplet_{k}", TILE) for k in ("anchor", "positive", "negative")}
        row = FlowLayout()
        for tile in self.tiles.values():
            row.addWidget(tile)
        self.verdict = QLabel(objectName="triplet_verdict", alignment=Qt.AlignmentFlag.AlignCenter)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.verdict.setWordWrap(True)
        self.bar = None  # the BarTriplets shown instead of the clicked point's, if any
        self.bar_header = QLabel(objectName="bar_triplets_header")
        self.bar_header.setWordWrap(True)
        self.bar_header.setTextFormat(Qt.TextFormat.RichText)
        self.bar_list = QListWidget(objectName="bar_triplets_list")
        self.bar_list.setMaximumHeight(110)
        # a method, not a lambda: a list being destroyed says its row changed, and a lambda would call
        # into the half-destroyed panel (a segmentation fault); a method's connection is cut first
        self.bar_list.currentRowChanged.connect(self._on_bar_list_current_row_changed)
        for w in (self.bar_header, self.bar_list):
            w.hide()
        layout = self.body
        layout.addWidget(self.bar_header)
        layout.addWidget(self.bar_list)
        layout.addLayout(row)
        layout.addWidget(self.verdict)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._margin_run: Path | None = None

    def attach(self, session) -> None:
        super().attach(session)
        session.bar_triplets_changed.connect(self.show_bar)

    def show_point(self, test_row: int) -> None:
        self._leave_bar()
        super().show_point(test_row)

    def show_bar(self, bar) -> None:
        """Show the triplets of a histogram bar (an explorer.state.BarTriplets; None: back to the point)."""
        if bar is None:
            self._leave_bar()
            self.refresh()
            return
        self.bar = bar
        order = np.argsort(bar.d_an - bar.d_ap, kind="stable")[:LISTED]  # hardest first
        self._bar_order = order
        self.bar_list.blockSignals(True)
        self.bar_list.clear()
        for i in order:
            (la, lp, ln), diff = bar.labels[i], float(bar.d_an[i] - bar.d_ap[i])
            item = QListWidgetItem(f"#{bar.anchor[i]} {self._class_name(int(la))} · #{bar.positive[i]} "
                                   f"{self._class_name(int(lp))} · #{bar.negative[i]} {self._class_name(int(ln))}"
                                   f"   {distance_text(diff, signed=True)}")
            item.setToolTip("anchor · positive · negative (test images), D_an − D_ap")
            self.bar_list.addItem(item)
        self.bar_list.blockSignals(False)
        if len(order):
            self.bar_list.setCurrentRow(0)
        for w in (self.bar_header, self.bar_list):
            w.show()
        for tile in self.tiles.values():  # the three in one row of a narrow dock, under the list
            tile.set_size(BAR_TILE, 20)
        self.refresh()

    def _on_bar_list_current_row_changed(self, _row: int) -> None:
        if self.bar is not None:
            self.refresh()

    def _leave_bar(self) -> None:
        self.bar = None
        for w in (self.bar_header, self.bar_list):
            w.hide()
        for tile in self.tiles.values():
            tile.set_size(TILE)

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
        if self.bar is not None and (self._session is None or self._session.current_id != self.bar.run_id):
            self._leave_bar()  # another run: its bars are not this one's
        super().set_run(run_dir, dataset, snapshot)
        if self.run_dir != self._margin_run and self.config:
            from engine.methods import run_triplet_definition
            from engine.metrics.triplets import TripletDefinition

            self._margin_run = self.run_dir
            try:
                self.definition = run_triplet_definition(self.config)
            except ValueError:  # a config this version cannot read: the default, as the map does
                self.definition = TripletDefinition()
            self.margin_spin.setValue(self.definition.margin)  # refreshes when it changes

    def _clear(self, message: str) -> None:
        self.result = {}
        for tile in self.tiles.values():
            tile.set_image(None)
        self.verdict.clear()
        super()._clear(message)

    def _draw_bar(self) -> None:
        from engine.metrics.triplets import DIFFICULTY, difficulty

        bar = self.bar
        colour = triplet_colours(self.dark)[bar.category].name()
        closing = "]" if bar.closed else ")"
        listed = f", the {LISTED} hardest listed" if len(bar) > LISTED else ""
        self.bar_header.setText(
            f"<b>{len(bar)}</b> triplet{'s' * (len(bar) != 1)} with D_an − D_ap in [{distance_text(bar.low)}, {distance_text(bar.high)}"
            f"{closing}: <b style='color:{colour}'>{bar.category}</b> (step {bar.step}{listed})"
            + (f"<br><i>{bar.note}</i>" if bar.note else ""))
        row = self.bar_list.currentRow()
        if not len(bar) or row < 0:
            for tile in self.tiles.values():
                tile.set_image(None)
            self.result = {}
            self.verdict.setText("No triplet of the evaluation's sample falls in this bar.")
            self.status.setText("")
            return
        i = int(self._bar_order[row])
        rows = {"anchor": int(bar.anchor[i]), "positive": int(bar.positive[i]), "negative": int(bar.negative[i])}
        d_ap, d_an = float(bar.d_ap[i]), float(bar.d_an[i])
        data = self._get_dataset()
        labels = bar.labels[i]
        notes = {"anchor": "", "positive": f"<br>D_ap {distance_text(d_ap)}", "negative": f"<br>D_an {distance_text(d_an)}"}
        for (name, test_row), label in zip(rows.items(), labels):
            self.tiles[name].set_image(data.thumbnail("test", test_row), name,
                                       f"#{test_row} · {self._class_name(int(label))}{notes[name]}")
        category = DIFFICULTY[int(difficulty(d_ap, d_an, bar.margin))]
        self.result = {**rows, "d_ap": d_ap, "d_an": d_an, "margin": bar.margin, "category": category}
        self.verdict.setText(f"D_an − D_ap = {distance_text(d_an - d_ap, signed=True)}, margin m = {bar.margin:g}: "
                             f"<b style='color:{triplet_colours(self.dark)[category].name()}'>{category}</b>")
        self.status.setText("A triplet of the Triplets panel's histogram bar. Click a point on the map to see "
                            "its own hardest triplet.")
        self.triplet_shown.emit(rows["anchor"], rows["positive"], rows["negative"])

    def _draw(self) -> None:
        from engine.metrics.triplets import DIFFICULTY, anchor_categories, difficulty

        if self.bar is not None:
            self._draw_bar()
            return
        if self.row < 0:
            self._clear("Click a point on the map: it becomes the anchor.")
            return
        snap = self._get_snapshot()
        pos = self._snapshot_position(snap)
        if pos is None:
            self._clear(f"Test image {self.row} is not among the map's points (the evaluation subset).")
            return
        labels = snap.labels
        if labels[pos] < 0:
            self._clear("The anchor is unlabelled: it has no positives or negatives.")
            return
        from dataclasses import replace

        definition = replace(self.definition, margin=self.margin_spin.value())
        margin = definition.margin
        cats = anchor_categories(snap.embeddings, labels, pos, definition)
        if cats.hardest_positive is None or cats.hardest_negative is None:
            self._clear("The anchor's class has no other point on the map, or there is no other class.")
            return
        rows = snap.indices
        p, n = cats.hardest_positive, cats.hardest_negative
        d_ap, d_an = float(cats.distances[p]), float(cats.distances[n])
        category = DIFFICULTY[int(difficulty(d_ap, d_an, margin))]
        data = self._get_dataset()  # first: ``result`` is set only once the tiles can show it
        self.result = {"anchor": self.row, "positive": int(rows[p]), "negative": int(rows[n]),
                       "d_ap": d_ap, "d_an": d_an, "margin": margin, "category": category,
                       "counts": {name: int((cats.codes == code).sum()) for code, name in DIFFICULTY.items()}}
        self.tiles["anchor"].set_image(data.thumbnail("test", self.row), "anchor",
                                       f"#{self.row} · {self._class_name(int(labels[pos]))}")
        self.tiles["positive"].set_image(data.thumbnail("test", int(rows[p])), "hardest positive",
                                         f"#{rows[p]} · {self._class_name(int(labels[p]))}<br>D_ap = {distance_text(d_ap)}")
        self.tiles["negative"].set_image(data.thumbnail("test", int(rows[n])), "hardest negative",
                                         f"#{rows[n]} · {self._class_name(int(labels[n]))}<br>D_an = {distance_text(d_an)}")
        colour = triplet_colours(self.dark)[category].name()
        c = self.result["counts"]
        self.verdict.setText(
            f"D_an − D_ap = {distance_text(d_an - d_ap, signed=True)}, margin m = {margin:g}: "
            f"<b style='color:{colour}'>{category}</b><br>"
            f"this anchor's negatives against its hardest positive: {c['easy']} easy, {c['semi-hard']} "
            f"semi-hard, {c['hard']} hard")
        self.status.setText(f"D: {definition.describe()}, over the {len(labels)} points of the map "
                            f"(step {snap.step})")
        self.triplet_shown.emit(self.row, int(rows[p]), int(rows[n]))
