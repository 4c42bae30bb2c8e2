"""The runs: those in the runs folder (earlier sessions', a script's, another window's), those started
in this window and those opened from elsewhere, newest first, each with its status. Select one to
see its curves, its map and its settings; "New run from these settings" fills the training form
with them. A second run of the same dataset can be shown beside the selected one (the selection is
linked: same test images)."""
from __future__ import annotations

import html
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSplitter, QTextBrowser, QWidget)

from explorer.session import Session
from explorer.state import RunStatus
from explorer.views.kit import Panel

STATUS_MARK = {RunStatus.RUNNING: "●", RunStatus.PAUSED: "❚❚", RunStatus.STOPPING: "■…", RunStatus.FINISHED: "✓",
               RunStatus.STOPPED: "■", RunStatus.FAILED: "✗", RunStatus.FOLLOWING: "⟳", RunStatus.DAMAGED: "⚠"}
# the settings shown for a run, in the training form's words, in its order
SHOWN_SETTINGS = ("method", "dataset", "encoder", "epochs", "batch_size", "lr", "embedding_dim", "train_size",
                  "test_size", "eval_every", "time_limit", "seed", "projection", "device", "init_from")


class RunsPanel(Panel):
    name = "runs_panel"
    dock_name = "runs"
    dock_title = "Runs"
    open_requested = Signal()
    rerun_requested = Signal(dict, str)  # the settings of a run, its name: fill the training form
    help_text = ("The runs folder (newest first) and every run started or opened in this window, each with "
                 "its status: ● running, ⟳ written by another process (followed), ✓ finished, ■ stopped "
                 "(by you, or its process ended without saying so: it resumes from its last checkpoint), "
                 "✗ failed (hover it for why), ⚠ damaged (its files do not say what was trained). Select a run "
                 "to show its curves, its map and, below, its settings; 'New run from these settings' fills "
                 "the training form with them, and Start trains a new run like it. 'Beside' shows a second "
                 "run of the same dataset next to it: both maps show the same test images, so a point "
                 "selected in one is selected in the other.")

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self._seen: dict[str, float] = {}  # run id -> when this panel first met a run the folder does not list
        self.list = QListWidget(objectName="runs_list")
        self.settings_view = QTextBrowser(objectName="run_settings")
        self.settings_view.setOpenLinks(False)
        self.settings_view.setPlaceholderText("Select a run to see its settings.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.list)
        splitter.addWidget(self.settings_view)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.rerun_button = QPushButton("New run from these settings", objectName="rerun_button")
        self.rerun_button.setToolTip("Fill the training form with the selected run's settings; Start then trains "
                                     "a new run like it (the selected run is left as it is)")
        self.rerun_button.setEnabled(False)
        self.compare_combo = QComboBox(objectName="compare_combo")
        self.compare_combo.setToolTip("Show another run of the same dataset beside the selected one")
        self.open_button = QPushButton("Open run…", objectName="open_run_button")
        self.open_button.setToolTip("Open a run directory from anywhere (Ctrl+O)")
        self.open_button.clicked.connect(self.open_requested)
        row = QHBoxLayout()
        row.addWidget(QLabel("Beside"))
        row.addWidget(self.compare_combo, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rerun_button, 1)
        buttons.addWidget(self.open_button)
        layout = self.body
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)
        layout.addLayout(row)

        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.rerun_button.clicked.connect(self._on_rerun_clicked)
        self.compare_combo.activated.connect(self._on_compare_activated)
        session.run_added.connect(lambda _: self._fill())
        session.runs_listed.connect(self._fill)
        session.run_changed.connect(self._on_session_run_changed)
        session.run_selected.connect(self._on_session_run_selected)
        session.compare_changed.connect(lambda _: self._fill_compare())
        self._fill()

    # the list ------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """The runs listed, top to bottom: newest first."""
        s = self.session
        ids = list(dict.fromkeys([*s.listings, *s.runs]))
        now = time.time()
        for run_id in ids:
            if run_id not in s.listings:
                self._seen.setdefault(run_id, now)

        def created(run_id: str) -> float:
            listing = s.listings.get(run_id)
            return listing.created if listing is not None else self._seen[run_id]

        return sorted(ids, key=created, reverse=True)

    def _fill(self) -> None:
        current = self.session.current_id
        self.list.blockSignals(True)
        self.list.clear()
        for run_id in self.run_ids():
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, run_id)
            self._describe(item)
            self.list.addItem(item)
            if run_id == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self._show_settings(current)
        self._fill_compare()

    def _item(self, run_id: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == run_id:
                return self.list.item(i)
        return None

    def _facts(self, run_id: str) -> tuple[dict, RunStatus, str, str, str, Any]:
        """(settings, status, name, path, message, the collapse mark's run or None) of an opened run,
        else of its listing."""
        run = self.session.runs.get(run_id)
        if run is not None:
            status = RunStatus.DAMAGED if run.damage else run.status
            return run.config, status, run.name, str(run.path or ""), run.damage or run.message, run
        listing = self.session.listings[run_id]
        return listing.config, RunStatus(listing.status), listing.name, str(listing.path), listing.message, None

    def _describe(self, item: QListWidgetItem) -> None:
        config, status, name, path, message, run = self._facts(item.data(Qt.ItemDataRole.UserRole))
        warn = (f"\n   ⚠ {run.collapse_verdict or 'collapse'} from step {run.collapse_step}"
                if run is not None and run.collapse_step is not None else "")
        item.setText(f"{STATUS_MARK.get(status, '')} {config.get('method', '?')} · {config.get('dataset', '?')} · "
                     f"{status}\n   {name}{warn}")
        item.setToolTip(f"{path}\n{message}" if message else path)

    def _on_session_run_changed(self, run_id: str) -> None:
        item = self._item(run_id)
        if item is not None:
            self._describe(item)
        if run_id == self.session.current_id:
            self._show_settings(run_id)

    def _on_session_run_selected(self, run_id: str) -> None:
        item = self._item(run_id)
        if item is None:
            self._fill()
        elif self.list.currentItem() is not item:
            self.list.blockSignals(True)
            self.list.setCurrentItem(item)
            self.list.blockSignals(False)
        self._show_settings(run_id)
        self._fill_compare()

    def _on_list_current_changed(self, current, _previous) -> None:
        if current is None:
            return
        run_id = current.data(Qt.ItemDataRole.UserRole)
        if run_id in self.session.runs:
            self.session.select_run(run_id)
            return
        listing = self.session.listings.get(run_id)
        try:  # a run of the folder is read when it is first selected
            self.session.open_run(listing.path)
        except (ValueError, OSError) as error:
            self.session.message_posted.emit("error", f"run {listing.name} cannot be opened: {error}")
            self._show_settings(run_id)

    # the selected run's settings ----------------------------------------------------------------------
    def _show_settings(self, run_id: str) -> None:
        if not run_id or (run_id not in self.session.runs and run_id not in self.session.listings):
            self.settings_view.clear()
            self.rerun_button.setEnabled(False)
            return
        config, status, name, path, message, _ = self._facts(run_id)
        self.settings_view.setHtml(settings_html(config, status, name, path, message))
        self.rerun_button.setEnabled(bool(config.get("method")) and status != RunStatus.DAMAGED)

    def _on_rerun_clicked(self) -> None:
        run_id = self.session.current_id
        item = self.list.currentItem()
        if item is not None:
            run_id = item.data(Qt.ItemDataRole.UserRole)
        if run_id in self.session.runs or run_id in self.session.listings:
            config, _, name, *_ = self._facts(run_id)
            self.rerun_requested.emit(dict(config), name)

    # beside ------------------------------------------------------------------------------------------
    def _fill_compare(self) -> None:
        s = self.session
        self.compare_combo.blockSignals(True)
        self.compare_combo.clear()
        self.compare_combo.addItem("(nothing)", "")
        cur = s.current
        for run_id, run in s.runs.items():
            if cur is not None and run_id != cur.id and run.config.get("dataset") == cur.config.get("dataset"):
                self.compare_combo.addItem(f"{run.config.get('method')} · {run.name}", run_id)
        self.compare_combo.setCurrentIndex(max(0, self.compare_combo.findData(s.compare_id)))
        self.compare_combo.setEnabled(self.compare_combo.count() > 1)
        self.compare_combo.blockSignals(False)

    def _on_compare_activated(self, index: int) -> None:
        self.session.set_compare(self.compare_combo.itemData(index) or "")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def settings_html(config: dict, status: RunStatus, name: str, path: str, message: str) -> str:
    """A run's settings in the training form's words, as one paragraph that wraps in a narrow dock:
    the run settings, then its method's and its encoder's parameters."""
    pairs = [(key.replace("_", " "), _shown(config[key])) for key in SHOWN_SETTINGS if config.get(key) is not None]
    for group in ("method_params", "encoder_params"):
        pairs += [(k.replace("_", " "), _shown(v)) for k, v in sorted((config.get(group) or {}).items())]
    head = f"<b>{html.escape(name)}</b> · {html.escape(str(status))}"
    if message:
        head += f" — <i>{html.escape(message)}</i>"
    body = " · ".join(f"<span style='color:gray'>{html.escape(k)}</span>&nbsp;{html.escape(v)}" for k, v in pairs)
    return f"{head}<br>{body}" + (f"<br><span style='color:gray'>{html.escape(path)}</span>" if path else "")
