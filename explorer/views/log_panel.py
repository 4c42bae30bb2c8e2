"""The log: every message of the window and of its runs, newest last."""
from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit, QWidget

from explorer.views.kit import Panel


class LogPanel(Panel):
    name = "log_panel"
    dock_name = "log"
    dock_title = "Log"
    margins = (0, 0, 0, 0)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.log_view = QPlainTextEdit(objectName="log_view", readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.body.addWidget(self.log_view, 1)

    def append(self, level: str, text: str) -> None:
        self.log_view.appendPlainText(f"[{level}] {text}")
