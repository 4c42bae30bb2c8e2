"""The pretext debugger: a rotation, colourisation or inpainting model's input, target and prediction."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from explorer.views.flow import FlowLayout
from explorer.views.inspectors.base import Inspector
from explorer.views.inspectors.widgets import ImageTile
from explorer.views.palette import RIGHT, WRONG


class PretextDebugger(Inspector):
    """For a clicked image: what the pretext task's input, target and prediction look like."""

    name = "pretext_debugger"
    dock_title = "Pretext task"
    methods = point_methods = ("rotation", "colorization", "inpainting")
    needs_method = True
    uses_snapshot = False  # input, target and prediction come from the model, not from the snapshot
    help_text = (
        "A pretext task invents labels from the images themselves, and the representation is whatever the "
        "encoder had to learn to solve it. Rotation (Gidaris et al. 2018): the image is turned by 0, 90, 180 "
        "or 270 degrees and the model must say by how much; shown: the four turns with the true and the "
        "predicted angle. Colourisation (Zhang et al. 2016): the model sees only the lightness and predicts "
        "the colours; shown: the grey input, the predicted colours, the true colours. Inpainting (Pathak et "
        "al. 2016): a square patch is removed and the model paints it back; shown: the masked input, the "
        "inpainted image, the original. A prediction that looks right means the encoder captured what the "
        "task needs; the probe and the map tell whether that also separates the classes.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.seed = 0
        self.output: dict[str, Any] = {}
        self.tiles: list[ImageTile] = []
        self.tile_row = FlowLayout()
        self.resample_button = QPushButton("new patch", objectName="pretext_resample")
        self.resample_button.clicked.connect(self._on_resample_clicked)
        self.heading = QLabel(objectName="pretext_title")
        self.controls.addWidget(self.heading)
        self.controls.addWidget(self.resample_button)
        layout = self.body
        layout.addLayout(self.tile_row)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _on_resample_clicked(self) -> None:
        self.seed += 1
        self.refresh()

    def _set_tiles(self, count: int) -> list[ImageTile]:
        while len(self.tiles) > count:
            tile = self.tiles.pop()
            self.tile_row.removeWidget(tile)
            tile.deleteLater()
        while len(self.tiles) < count:
            tile = ImageTile(f"pretext_tile_{len(self.tiles)}", 80)
            self.tile_row.addWidget(tile)
            self.tiles.append(tile)
        return self.tiles

    def shown_images(self) -> list[np.ndarray]:
        return [t.image for t in self.tiles if t.image is not None]

    def _clear(self, message: str) -> None:
        self.output = {}
        for tile in self.tiles:
            tile.set_image(None)
        super()._clear(message)

    def _draw(self) -> None:
        if self.row < 0:
            self._clear("Click an image on the map.")
            return
        method = self._get_method()
        name = self.config["method"]
        x = self._images(np.array([self.row]))
        self.resample_button.setVisible(name == "inpainting")
        label = self._class_name(int(self._get_dataset().test.labels[self.row]))
        if name == "inpainting":
            out = method.debug(x, seed=self.seed)
        else:
            out = method.debug(x)
        self.output = out
        if name == "rotation":
            self.heading.setText(f"rotation · image #{self.row} ({label}) in its four turns")
            tiles = self._set_tiles(4)
            for k, tile in enumerate(tiles):
                true, pred, prob = int(out["target"][k]), int(out["prediction"][k]), out["probabilities"][k]
                ok = RIGHT if true == pred else WRONG
                tile.set_image(out["input"][k], f"input: turned {true}°",
                               f"target {true}°<br><b style='color:{ok}'>predicted {pred}°</b><br>"
                               f"p = {prob.max():.2f}")
            right = int((out["target"] == out["prediction"]).sum())
            self.status.setText(f"{right} of 4 rotations recognised; the head's probabilities for the upright image: "
                                + ", ".join(f"{d}°: {100 * p:.0f}%" for d, p in zip((0, 90, 180, 270),
                                                                                     out["probabilities"][0])))
            return
        titles = {"colorization": ("input: lightness only", "prediction: colours", "target: true colours"),
                  "inpainting": ("input: patch removed", "prediction: inpainted", "target: original")}[name]
        self.heading.setText(f"{name} · image #{self.row} ({label})")
        tiles = self._set_tiles(3)
        box = out["mask"][0] if name == "inpainting" else None
        for tile, key, caption in zip(tiles, ("input", "prediction", "target"), titles):
            tile.set_image(out[key][0], caption, box=box if key == "prediction" else None)
        if name == "inpainting":
            mask = out["mask"][0]
            err = np.abs(out["prediction"][0].astype(float) - out["target"][0].astype(float))
            err = err if err.ndim == 2 else err.mean(-1)
            self.status.setText(f"patch of {method.patch}x{method.patch} px; mean absolute error inside it: "
                                f"{err[mask].mean():.1f} of 255 (the encoder saw only the rest)")
        else:
            err = np.abs(out["prediction"][0].astype(float) - out["target"][0].astype(float)).mean()
            self.status.setText(f"mean absolute colour error: {err:.1f} of 255 (same lightness: only a, b differ)")

