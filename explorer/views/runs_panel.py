"""The runs of this window: started here or opened from disk. Select one to see its curves and map;
put a second run of the same dataset beside it (the selection is linked: same test images)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QWidget

from explorer.session import Session
from explorer.state import RunStatus
from explorer.views.kit import Panel

STATUS_MARK = {RunStatus.RUNNING: "●", RunStatus.PAUSED: "❚❚", RunStatus.STOPPING: "■…", RunStatus.FINISHED: "✓",
               RunStatus.STOPPED: "■", RunStatus.FAILED: "✗", RunStatus.FOLLOWING: "⟳"}


class RunsPanel(Panel):
    name = "runs_panel"
    dock_name = "runs"
    dock_title = "Runs"
    open_requested = Signal()
    help_text = ("Every run started in this window and every run opened from disk (File > Open run). "
                 "Select one to show its curves and its map. 'Beside' shows a second run of the same "
                 "dataset next to it: both maps show the same test images, so a point selected in one is "
                 "selected in the other. A run another process is still writing is followed (⟳).")

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.list = QListWidget(objectName="runs_list")
        self.compare_combo = QComboBox(objectName="compare_combo")
        self.compare_combo.setToolTip("Show another run of the same dataset beside the selected one")
        self.open_button = QPushButton("Open run…", objectName="open_run_button")
        self.open_button.clicked.connect(self.open_requested)
        row = QHBoxLayout()
        row.addWidget(QLabel("Beside"))
        row.addWidget(self.compare_combo, 1)
        layout = self.body
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addWidget(self.open_button)

        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.compare_combo.activated.connect(self._on_compare_activated)
        session.run_added.connect(self._on_session_run_added)
        session.run_changed.connect(self._on_session_run_changed)
        session.run_selected.connect(self._on_session_run_selected)
        session.compare_changed.connect(lambda _: self._fill_compare())

    def _item(self, run_id: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == run_id:
                return self.list.item(i)
        return None

    def _text(self, run_id: str) -> str:
        run = self.session.runs[run_id]
        c = run.config
        mark = STATUS_MARK.get(run.status, "")
        warn = (f"\n   ⚠ {run.collapse_verdict or 'collapse'} from step {run.collapse_step}"
                if run.collapse_step is not None else "")
        return f"{mark} {c.get('method', '?')} · {c.get('dataset', '?')} · {run.status}\n   {run.name}{warn}"

    def _on_session_run_added(self, run_id: str) -> None:
        item = QListWidgetItem(self._text(run_id))
        item.setData(Qt.ItemDataRole.UserRole, run_id)
        run = self.session.runs[run_id]
        item.setToolTip(f"{run.path}\n{run.message}" if run.message else str(run.path))
        self.list.addItem(item)
        self._fill_compare()

    def _on_session_run_changed(self, run_id: str) -> None:
        item = self._item(run_id)
        if item is not None:
            item.setText(self._text(run_id))
            run = self.session.runs[run_id]
            item.setToolTip(f"{run.path}\n{run.message}" if run.message else str(run.path))

    def _on_session_run_selected(self, run_id: str) -> None:
        item = self._item(run_id)
        if item is not None and self.list.currentItem() is not item:
            self.list.setCurrentItem(item)
        self._fill_compare()

    def _on_list_current_changed(self, current, _previous) -> None:
        if current is not None:
            self.session.select_run(current.data(Qt.ItemDataRole.UserRole))

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
