"""The base of the panels that draw a run's records (loss, probe, collapse, triplets, properties).

Such a panel reads ``metrics.jsonl``-style records (``event.to_record()`` of engine/events.py): kinds it
does not draw are ignored, and a missing, null or non-finite value is skipped. ``attach(session)``
follows the session: the selected run's whole record list when a run is selected, the new records as
the session hands them on. ``add_records(records)`` and ``clear()`` feed it directly (a script, a test).
Records that arrive while the panel is tabbed away are only kept: it takes them in when it comes to
the front, so the GUI thread does no work for what nobody sees. GUI thread only.
"""
from __future__ import annotations

from typing import Iterable

from PySide6.QtWidgets import QWidget

from explorer.views.kit import FRAMES, Panel


class RecordPanel(Panel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._pending: list[dict] = []  # records not drawn yet
        self._session = None

    def attach(self, session) -> None:
        """Follow an ``explorer.session.Session``: its selected run's records."""
        self._session = session
        session.run_selected.connect(self._on_session_run_selected)
        session.records_added.connect(self._on_session_records_added)
        if session.current is not None:
            self._on_session_run_selected(session.current_id)

    def _on_session_run_selected(self, run_id: str) -> None:
        self.clear()
        self.add_records(list(self._session.runs[run_id].records))

    def _on_session_records_added(self, run_id: str, records: list) -> None:
        if run_id == self._session.current_id:
            self._pending.extend(records)
            self.refresh_later()  # in turn with the other panels: one a frame

    # the contract ------------------------------------------------------------------------------
    def clear(self) -> None:
        self._pending = []
        FRAMES.discard(self)
        self._reset()

    def add_records(self, records: Iterable[dict]) -> None:
        """Take new records: drawn now if the panel is on screen, else when it is shown."""
        self._pending.extend(records)
        self.refresh()

    def redraw(self) -> None:
        if self._pending:
            records, self._pending = self._pending, []
            self._ingest(records)

    def _reset(self) -> None:
        raise NotImplementedError

    def _ingest(self, records: list[dict]) -> None:
        raise NotImplementedError
