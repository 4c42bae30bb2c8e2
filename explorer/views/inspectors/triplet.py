"""The triplet inspector: the clicked point as an anchor, its hardest positive and negative on the map."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QWidget

from explorer.views.flow import FlowLayout
from explorer.views.inspectors.base import Inspector
from explorer.views.inspectors.widgets import ImageTile
from explorer.views.palette import triplet_colours


class TripletInspector(Inspector):
    """Anchor (the clicked point), its hardest positive and hardest negative within the evaluation
    subset, their distances and the triplet's category at a margin (spin box). For any labelled run; the
    window brings it forward for a clicked point of a metric-learning run."""

    name = "triplet_inspector"
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
        "l2-normalised embeddings, D in [0, 4]).")

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
        self.tiles = {k: ImageTile(f"triplet_{k}", 96) for k in ("anchor", "positive", "negative")}
        row = FlowLayout()
        for tile in self.tiles.values():
            row.addWidget(tile)
        self.verdict = QLabel(objectName="triplet_verdict", alignment=Qt.AlignmentFlag.AlignCenter)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.verdict.setWordWrap(True)
        layout = self.body
        layout.addLayout(row)
        layout.addWidget(self.verdict)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._margin_run: Path | None = None

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
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

    def _draw(self) -> None:
        from engine.metrics.triplets import EASY, HARD, SEMI_HARD, anchor_categories

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
        category = "hard" if d_an < d_ap else "semi-hard" if d_an < d_ap + margin else "easy"
        data = self._get_dataset()  # first: ``result`` is set only once the tiles can show it
        self.result = {"anchor": self.row, "positive": int(rows[p]), "negative": int(rows[n]),
                       "d_ap": d_ap, "d_an": d_an, "margin": margin, "category": category,
                       "counts": {name: int((cats.codes == code).sum())
                                  for name, code in (("easy", EASY), ("semi-hard", SEMI_HARD), ("hard", HARD))}}
        self.tiles["anchor"].set_image(data.thumbnail("test", self.row), "anchor",
                                       f"#{self.row} · {self._class_name(int(labels[pos]))}")
        self.tiles["positive"].set_image(data.thumbnail("test", int(rows[p])), "hardest positive",
                                         f"#{rows[p]} · {self._class_name(int(labels[p]))}<br>D_ap = {d_ap:.3f}")
        self.tiles["negative"].set_image(data.thumbnail("test", int(rows[n])), "hardest negative",
                                         f"#{rows[n]} · {self._class_name(int(labels[n]))}<br>D_an = {d_an:.3f}")
        colour = triplet_colours(self.dark)[category].name()
        c = self.result["counts"]
        self.verdict.setText(
            f"D_an − D_ap = {d_an - d_ap:+.3f}, margin m = {margin:g}: "
            f"<b style='color:{colour}'>{category}</b><br>"
            f"this anchor's negatives against its hardest positive: {c['easy']} easy, {c['semi-hard']} "
            f"semi-hard, {c['hard']} hard")
        self.status.setText(f"D: {definition.describe()}, over the {len(labels)} points of the map "
                            f"(step {snap.step})")
        self.triplet_shown.emit(self.row, int(rows[p]), int(rows[n]))
