"""The properties panel (``properties_panel``): the five properties of a good representation, as the
latest evaluation measured them."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QWidget

from explorer.views import wrapped_tooltip
from explorer.views.records import RecordPanel
from explorer.views.series import number


# property, then (metric key, short label, format) in the order they are shown; the first present
# value is the headline, the others follow
PROPERTIES: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("smoothness", (("smoothness", "", "{:.3f}"),)),
    ("invariance", (("invariance", "", "{:.3f}"),)),
    # kNN: leave-one-out on the evaluation subset; the probe's kNN accuracy when that is absent
    ("clustering", (("silhouette", "silhouette", "{:.3f}"), ("knn_loo_acc", "kNN", "{:.3f}"),
                    ("knn_acc", "kNN", "{:.3f}"), ("nmi", "NMI", "{:.3f}"), ("ari", "ARI", "{:.3f}"))),
    ("sparsity", (("sparsity", "Hoyer", "{:.3f}"), ("participation_ratio", "dims in use", "{:.1f}"))),
    ("disentanglement", (("disentanglement", "DCI", "{:.3f}"), ("mig", "MIG", "{:.3f}"))),
)

OWN_HELP = {
    "smoothness": "A small change of the input (pixel noise) should move the embedding only a little, "
                  "compared with how far different images lie apart: lower is smoother.",
    "invariance": "Changes that do not matter for the task (augmentations) should leave the embedding "
                  "in place: 1 = two views of an image coincide, 0 = no closer than two strangers.",
    "clustering": "Similar images should lie close together and dissimilar ones far apart: silhouette "
                  "of the classes in [-1, 1] and the accuracy of each point's nearest neighbours.",
    "sparsity": "A representation should use as few dimensions as it needs: Hoyer sparsity of each "
                "embedding in [0, 1], and how many dimensions carry the variance.",
    "disentanglement": "Independent factors of variation (shape, size, position, colour) should sit on "
                       "separate axes; measured only where the data's factors are known.",
}


def metric_help() -> dict[str, str]:
    """engine.metrics.diagnostics.PROPERTY_HELP (one line per metric key), or {} without it."""
    table = _engine_table("PROPERTY_HELP")
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def property_help() -> dict[str, str]:
    """One line per property: the engine's explanation of the key that measures it
    (diagnostics.PROPERTIES maps a property to its key) where it exists, else our own words."""
    helps, keys = metric_help(), _engine_table("PROPERTIES")
    out = {}
    for name in OWN_HELP:
        key = keys.get(name, name) if isinstance(keys, dict) else name
        out[name] = helps.get(key) or helps.get(name) or OWN_HELP[name]
    return out


def _engine_table(name: str) -> Any:
    """A module-level constant of engine.metrics.diagnostics, None if absent.

    That module imports torch; while torch is not loaded, the constant is read from the source as a
    literal, so that opening the window or a saved run does not pay torch's start-up."""
    import sys

    module = sys.modules.get("engine.metrics.diagnostics")
    if module is not None:
        return getattr(module, name, None)
    try:
        spec = importlib.util.find_spec("engine.metrics.diagnostics")
        tree = ast.parse(Path(spec.origin).read_text()) if spec is not None and spec.origin else None
    except (ImportError, ValueError, OSError, SyntaxError):
        return None
    for node in tree.body if tree is not None else ():
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            try:
                return ast.literal_eval(node.value)
            except ValueError:  # built at import time: import the module after all
                return getattr(importlib.import_module("engine.metrics.diagnostics"), name, None)
    return None


class PropertiesPanel(RecordPanel):
    """The five properties of a good representation, as the latest evaluation measured them."""

    name = "properties_panel"
    dock_title = "Properties"
    title = "Properties"
    help_text = (
        "The course lists five properties a good representation should have: smoothness (nearby inputs "
        "get nearby embeddings), invariance (transformations irrelevant to the task leave the embedding "
        "unchanged), clustering (similar data close together, dissimilar data far apart), sparsity (few "
        "dimensions in use) and disentanglement (independent factors of variation on separate axes). "
        "Each row shows the latest measurement of one of them on the fixed evaluation subset, and what "
        "the number means; hover a value for the exact metric names. They pull in different directions "
        "(a perfectly invariant encoder maps everything to one point, which is collapse), so read them "
        "together and over time rather than maximising one. A dash means the property could not be "
        "measured here: disentanglement needs known factors of variation (the shapes dataset), "
        "clustering needs labels.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.step_label = QLabel("")
        self.controls.addWidget(self.step_label)
        self.table = QTableWidget(len(PROPERTIES), 3)
        self.table.setObjectName("properties_table")
        self.table.setHorizontalHeaderLabels(["property", "latest", "what it means"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        helps = property_help()
        for row, (name, _keys) in enumerate(PROPERTIES):
            name_item = QTableWidgetItem(name)
            font = name_item.font()
            font.setBold(True)
            name_item.setFont(font)
            self.table.setItem(row, 0, name_item)
            self.table.setItem(row, 1, QTableWidgetItem("\u2014"))
            explanation = QTableWidgetItem(helps[name])
            explanation.setToolTip(wrapped_tooltip(helps[name]))
            self.table.setItem(row, 2, explanation)
        self.body.addWidget(self.table, 1)
        self.values: dict[str, float] = {}
        self.step: float | None = None
        self._help = metric_help()

    def value_text(self, name: str) -> str:
        """What the "latest" cell of a property shows."""
        row = [p for p, _ in PROPERTIES].index(name)
        return self.table.item(row, 1).text()

    def _reset(self) -> None:
        self.values = {}
        self.step = None
        self._draw()

    def _ingest(self, records: list[dict]) -> None:
        changed = False
        keys = {k for _name, entries in PROPERTIES for k, _l, _f in entries}
        for record in records:
            if not isinstance(record, dict) or record.get("kind") != "evaluation":
                continue
            metrics = record.get("metrics")
            if not isinstance(metrics, dict):
                continue
            found = {k: number(metrics.get(k)) for k in keys if number(metrics.get(k)) is not None}
            if found:
                self.values.update(found)
                self.step = number(record.get("step"))
                changed = True
        if changed:
            self._draw()

    def _draw(self) -> None:
        for row, (name, entries) in enumerate(PROPERTIES):
            parts, tips = [], []
            seen_labels = set()
            for key, label, fmt in entries:
                v = self.values.get(key)
                if v is None or (label and label in seen_labels):
                    continue
                seen_labels.add(label)
                text = fmt.format(v)
                parts.append(f"{label} {text}" if label else text)
                tips.append(f"{key} = {v:.4g}" + (f": {self._help[key]}" if key in self._help else ""))
            item = self.table.item(row, 1)
            item.setText("\n".join(parts) if parts else "\u2014")
            item.setToolTip(wrapped_tooltip("\n".join(tips) if tips else "not measured for this run"))
        self.step_label.setText(f"at step {int(self.step)}" if self.step is not None else "")
