"""The log: every message of the window and of its runs, newest last."""
from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit, QWidget

from explorer.views.kit import Panel


class LogPanel(Panel):
    name = "log_panel"
    dock_name = "log"
    dock_title = "Log"
    margins = (0, 0, 0, 0)
    help_text = (
        "Every message of the window and of its runs, newest last, with its level: info (what a run "
        "decided: a batch size that shrank to fit, a time budget, where it was saved), warning (something "
        "worth knowing that did not stop it) and error (what failed, with the cause and what to change). "
        "A run opened from disk adds what of its files could not be read, naming the file and line. The "
        "text can be selected and copied.")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.log_view = QPlainTextEdit(objectName="log_view", readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.body.addWidget(self.log_view, 1)

    def append(self, level: str, text: str) -> None:
        self.log_view.appendPlainText(f"[{level}] {text}")
