"""The augmentation preview: a grid of SimCLR views of a few images at settings moved with sliders."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QPushButton, QSlider, QWidget

from explorer.views import wrapped_tooltip
from explorer.views.inspectors.base import Inspector
from explorer.views.kit import thumbnail_pixmap


class AugmentationPreview(Inspector):
    """A grid of SimCLR views of a few images: one row per image (the original first), redrawn when a
    setting changes. The draws are seeded, so moving one slider changes one thing. Before any run is
    selected it shows a dataset of its own (``preview_dataset``: the training form's)."""

    name = "augmentation_preview"
    dock_title = "Augmentations"
    help_text = (
        "Two-view methods (SimCLR, BYOL, VICReg, SwAV, ...) learn what stays the same when an image is "
        "distorted, so the distortions decide what the representation ignores. Each row is one image: the "
        "original, then random views drawn with the current settings: a random crop of at least 'crop min' "
        "of the area resized back, a horizontal flip, colour jitter of strength s with probability p, a "
        "drop to grey, a Gaussian blur. Too weak, and the task is trivial (the views are almost the same "
        "image); too strong, and the two views no longer show the same thing. Chen et al. 2020 found crop "
        "plus colour distortion the pair that matters most. Colour settings do nothing on grey images.")

    STEPS = 1000
    MIN_CELL = 28  # pixels of the smallest preview image
    uses_snapshot = False  # images and settings only: a new snapshot changes nothing here

    def __init__(self, parent: QWidget | None = None, images: int = 4, views: int = 6):
        super().__init__(parent)
        from engine.augment import AUGMENT_PARAMS

        self.n_images, self.n_views = images, views
        self.seed = 0
        self.dataset_rows: np.ndarray | None = None
        self.views = np.zeros(0)
        self.params = {p.name: p for p in AUGMENT_PARAMS}
        # a slider for every numeric setting the engine declares (a new one appears by itself)
        self.slider_names = [p.name for p in AUGMENT_PARAMS
                             if p.type is not bool and p.low is not None and p.high is not None]
        self.sliders: dict[str, QSlider] = {}
        self.value_labels: dict[str, QLabel] = {}
        # name, slider and value of each setting: two settings to a row where the dock is wide enough,
        # else one (two columns made a 330 px minimum, wider than the window's left column)
        self.form = QGridLayout()
        self._form_rows: list[tuple[QLabel, QSlider, QLabel]] = []
        self._form_columns = 0
        for name in self.slider_names:
            p = self.params[name]
            slider = QSlider(Qt.Orientation.Horizontal, objectName=f"{name}_slider")
            slider.setRange(0, self.STEPS)
            slider.setToolTip(wrapped_tooltip(p.help))
            slider.setValue(self._to_slider(name, p.default))
            slider.valueChanged.connect(self._on_slider_value_changed)
            slider.setMinimumWidth(50)
            value = QLabel(objectName=f"{name}_value")
            value.setMinimumWidth(36)
            self.sliders[name], self.value_labels[name] = slider, value
            self._form_rows.append((QLabel(name.replace("_", " ")), slider, value))
        self._arrange_form(2)
        self.flip_box = QCheckBox("flip", objectName="flip_check")
        self.flip_box.setToolTip(wrapped_tooltip(self.params["flip"].help))
        self.flip_box.toggled.connect(lambda _: self.refresh())
        self.redraw_button = QPushButton("new draw", objectName="augmentation_redraw")
        self.redraw_button.clicked.connect(self._on_redraw_clicked)
        self.controls.addWidget(self.flip_box)
        self.controls.addWidget(self.redraw_button)
        self.grid_host = QWidget(objectName="augmentation_grid")
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(3)
        self.cells: list[list[QLabel]] = []
        self.cell_px = 64  # follows the width: the grid fits a narrow dock without a horizontal scroll
        self._cell_images: dict[tuple[int, int], np.ndarray] = {}
        self._form: dict[str, Any] = {}
        self._previewed = ""  # the dataset asked for by preview_dataset
        for r in range(images):
            row = []
            for c in range(views + 1):
                cell = QLabel(objectName=f"augment_cell_{r}_{c}")
                # only the height is fixed: a fixed width would hold the preview wider than a narrow dock
                cell.setMinimumWidth(self.MIN_CELL + 4)
                cell.setFixedHeight(self.cell_px + 4)
                cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == 0:
                    cell.setStyleSheet("border: 2px solid palette(highlight);")
                self.grid.addWidget(cell, r, c)
                row.append(cell)
            self.cells.append(row)
        layout = self.body
        layout.addLayout(self.form)
        caption = QLabel("original (outlined), then views drawn at these settings:", wordWrap=True)
        layout.addWidget(caption)
        # no scroll area of its own: the dock's scrolls the whole preview, so the grid is never squeezed
        # to a sliver under the sliders in a short dock
        layout.addWidget(self.grid_host)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._update_value_labels()

    def _arrange_form(self, columns: int) -> None:
        if columns == self._form_columns:
            return
        self._form_columns = columns
        for i, row in enumerate(self._form_rows):
            for j, widget in enumerate(row):
                self.form.addWidget(widget, i // columns, 3 * (i % columns) + j)  # moves a placed widget

    def fit_width(self, width: int) -> None:  # kit.Panel: the width of its dock
        spacing = max(0, self.form.spacing())
        one = max(sum(max(w.minimumWidth(), w.minimumSizeHint().width()) for w in row)
                  for row in self._form_rows) + 2 * spacing
        margins = self.layout().contentsMargins()
        self._arrange_form(2 if width - margins.left() - margins.right() >= 2 * one + 3 * spacing else 1)

    # settings ---------------------------------------------------------------------------------
    def _to_slider(self, name: str, value: float) -> int:
        p = self.params[name]
        return int(round((float(value) - p.low) / (p.high - p.low) * self.STEPS))

    def value(self, name: str) -> float:
        p = self.params[name]
        v = p.low + (p.high - p.low) * self.sliders[name].value() / self.STEPS
        if p.low_exclusive and v <= p.low:
            v = p.low + (p.high - p.low) / self.STEPS / 2  # the slider's left end: the smallest allowed
        return int(round(v)) if p.type is int else v

    def settings(self) -> dict[str, Any]:
        """The current values as AUGMENT_PARAMS keys."""
        defaults = {name: p.default for name, p in self.params.items()}
        return defaults | {name: self.value(name) for name in self.slider_names} | {"flip": self.flip_box.isChecked()}

    def set_settings(self, values: dict[str, Any]) -> None:
        """Move the sliders to ``values`` (AUGMENT_PARAMS keys; others ignored), redraw once."""
        from engine.augment import flips_make_sense

        for w in list(self.sliders.values()) + [self.flip_box]:
            w.blockSignals(True)
        for name in self.slider_names:
            if name in values:
                self.sliders[name].setValue(self._to_slider(name, values[name]))
        flip = values.get("flip", "auto")
        self.flip_box.setChecked(flips_make_sense(self.config.get("dataset", "")) if flip == "auto" else bool(flip))
        for w in list(self.sliders.values()) + [self.flip_box]:
            w.blockSignals(False)
        self._update_value_labels()
        self.refresh()

    def _update_value_labels(self) -> None:
        for name, label in self.value_labels.items():
            label.setText(f"{self.value(name):.0f}" if self.params[name].high > 20 else f"{self.value(name):.2f}")

    def _on_slider_value_changed(self, _value: int) -> None:
        self._update_value_labels()
        self.refresh()

    def _on_redraw_clicked(self) -> None:
        self.seed += 1
        self.refresh()

    # data ------------------------------------------------------------------------------------
    def not_drawn_because(self) -> str | None:
        # before any run: the dataset given by set_dataset (the window: the one chosen in the training form)
        return None if not self.config and self.dataset is not None else super().not_drawn_because()

    def set_dataset(self, dataset, rows: np.ndarray | None = None) -> None:
        """Preview on ``dataset``'s test images ``rows`` (default: a few of different classes)."""
        self.dataset = dataset
        self.dataset_rows = None if rows is None else np.asarray(rows)[: self.n_images]
        self.refresh()

    def set_run(self, run_dir, dataset=None, snapshot=None) -> None:
        previous = self.run_dir
        Inspector.set_run(self, run_dir, dataset, snapshot)
        if self.run_dir != previous and self.config:
            defaults = {p.name: p.default for p in self.params.values()}
            self.set_settings(defaults | dict(self.config.get("method_params") or {}))

    def preview_dataset(self, name: str) -> None:
        """Until a run is selected, show the dataset ``name`` (the training form's), which the session
        loads once, in a worker thread, so the views can be tuned before the first run."""
        session = self._session
        if session is None or session.current is not None or not name:
            return

        def ready(dataset) -> None:
            if session.current is None and self._previewed == name:
                self.set_dataset(dataset)

        def failed(message: str) -> None:
            if session.current is None and self._previewed == name:
                self.status.setText(f"The images of {name} could not be loaded for the preview: {message}")

        self._previewed = name
        self.status.setText(f"Loading {name} for the preview…")
        session.request_dataset({"dataset": name}, ready, failed)

    def rows(self) -> np.ndarray:
        """The images shown: the clicked one first, then one per class."""
        data = self._get_dataset()
        if self.dataset_rows is not None:
            base = list(self.dataset_rows)
        else:
            labels = data.test.labels
            base = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels[labels >= 0])]
            base = base or list(range(len(labels)))
        if self.row >= 0:
            base = [self.row] + [r for r in base if r != self.row]
        return np.asarray(base[: self.n_images])

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        margins = self.layout().contentsMargins()
        width = self.width() - margins.left() - margins.right()
        size = int(np.clip(width / (self.n_views + 1) - 7, self.MIN_CELL, 72))
        if size != self.cell_px:
            self.cell_px = size
            for (r, c), image in self._cell_images.items():
                self.cells[r][c].setPixmap(thumbnail_pixmap(image, size))
            for row in self.cells:
                for cell in row:
                    cell.setFixedHeight(size + 4)

    def follow_form(self, fields: dict[str, Any]) -> None:
        """Mirror a parameter form: ``fields`` maps names to editors with ``value()`` (None: the default)
        and a ``changed`` signal, e.g. ``TrainingPanel.method_fields`` of a two-view method. Call it
        again whenever the form is rebuilt; names that are not augmentation settings are ignored."""
        self._form = {k: f for k, f in fields.items() if k in self.params}
        for f in self._form.values():
            f.changed.connect(self._on_form_changed)
        self._on_form_changed()

    def _on_form_changed(self) -> None:
        values = {}
        for name, f in self._form.items():
            try:
                v = f.value()
            except (ValueError, RuntimeError):  # a half-typed value, or a field already deleted
                continue
            values[name] = self.params[name].default if v is None else v
        if values:
            self.set_settings(values)

    def _clear(self, message: str) -> None:
        self._cell_images = {}
        self.views = np.zeros(0)
        for row in self.cells:
            for cell in row:
                cell.clear()
        super()._clear(message)

    def _draw(self) -> None:
        import torch

        from engine.augment import augment_from_params
        from engine.methods.pretext import to_uint8

        data = self._get_dataset()
        rows = self.rows()
        augment = augment_from_params(data.channels, data.image_size, self.settings(), data.name)
        x = torch.from_numpy(np.asarray(data.test.images[rows])).float() / 255
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            views = torch.stack([augment(x, g) for _ in range(self.n_views)], 1)  # (B, V, C, H, W)
        self.views = views.numpy()
        for r in range(self.n_images):
            for c in range(self.n_views + 1):
                cell = self.cells[r][c]
                if r >= len(rows):
                    self._cell_images.pop((r, c), None)
                    cell.clear()
                    continue
                image = data.thumbnail("test", int(rows[r])) if c == 0 else to_uint8(views[r, c - 1:c])[0]
                self._cell_images[(r, c)] = image
                cell.setPixmap(thumbnail_pixmap(image, self.cell_px))
        grey = ("" if data.channels == 3 else
                " Grey images: jitter changes brightness and contrast; saturation, hue and grey need colour.")
        self.status.setText(f"{len(rows)} test images of {data.name} × {self.n_views} views, seed {self.seed}.{grey}")

