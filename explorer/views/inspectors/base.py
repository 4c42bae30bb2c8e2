"""The base of every inspector: the run, its dataset and snapshot, the selected point, the trained
method rebuilt from its checkpoint, and the session wiring."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from explorer.state import MapSnapshot
from explorer.views.kit import Panel


class Pending(Exception):
    """What a drawing waits for (the dataset, the rebuilt model); the panel redraws when it is there."""


class Inspector(Panel):
    """An inspector declares the runs it is for, and what it needs:

    - ``methods``: the methods whose runs it draws; () = any run. A run of another method gets the line
      "This view is for …" (``applies``).
    - ``point_methods``: the methods whose clicked point it explains: the window brings it to the front
      when a point of such a run is clicked (``explorer.views.inspectors.POINT_INSPECTOR``).
    - ``needs_method``: it rebuilds the trained method from ``checkpoint.pt``.
    - ``needs_labels``: it measures classes; a run whose points are all unlabelled gets a line saying so.
    - ``uses_snapshot``: it redraws at every new snapshot (else only when the checkpoint changes).

    A run it is not drawn for (``not_drawn_because``: no run, another method, no trained method, no
    labels) shows that one line (``notice``) in place of the inspector's content and header controls,
    never their empty frames.
    """

    methods: ClassVar[tuple[str, ...]] = ()
    point_methods: ClassVar[tuple[str, ...]] = ()
    needs_method: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    uses_snapshot: ClassVar[bool] = True
    margins = None  # the style's: the inspectors hold images and text, not edge-to-edge plots
    scrolls = True

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.config: dict = {}
        self.dataset = None
        self.snapshot: MapSnapshot | None = None
        self.row = -1
        self._method = None
        self._method_key: tuple | None = None
        self._method_request: tuple[Path, tuple] | None = None  # (run dir, checkpoint key) asked of the session
        self._measurement: tuple[tuple, Any] | None = None  # (key, result) of the last ``_measured``
        self._measure_request: tuple | None = None  # its key while a worker measures
        self._session = None
        self.status = QLabel(objectName=f"{type(self).__name__.lower()}_status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(dark);")
        # what subclasses add to ``self.body`` goes into ``content``, which the notice replaces
        self.notice = QLabel(objectName=f"{type(self).__name__.lower()}_notice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: palette(dark);")
        self.notice.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.notice.hide()
        self.content = QWidget(objectName=f"{type(self).__name__.lower()}_content")
        outer = self.body
        outer.addWidget(self.notice)
        outer.addWidget(self.content, 1)
        outer.addStretch(0)  # takes the height only while the content is hidden: the notice stays on top
        self.body = QVBoxLayout(self.content)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(outer.spacing())
        self._hidden_controls: list[QWidget] = []  # header controls hidden with the content

    # the API ----------------------------------------------------------------------------------
    def set_run(self, run_dir: str | Path | None, dataset=None, snapshot: MapSnapshot | None = None) -> None:
        """Show ``run_dir`` (None: nothing). ``dataset``: its ImageDataset if already loaded;
        ``snapshot``: the snapshot to read embeddings from (default: the newest on disk)."""
        from engine.runs import RunDir

        new_dir = Path(run_dir) if run_dir else None
        if new_dir != self.run_dir:
            self._method, self._method_key = None, None
            self.dataset = None
            self._measurement = None  # another run's: not drawn while this one's is measured
        self.run_dir = new_dir
        # what of config.json fits its schema (engine/schema.py); the session has noted the rest. The
        # session's copy of a run it follows: six inspectors reading and checking the file again took
        # 160 ms of the GUI thread when a run started
        followed = self._followed_run()
        self.config = followed.config if followed is not None else \
            (RunDir(new_dir).read_config().value or {}) if new_dir else {}
        if dataset is not None:
            self.dataset = dataset
        self.snapshot = snapshot
        self.refresh()

    def set_snapshot(self, snapshot: MapSnapshot | None, later: bool = False) -> None:
        self.snapshot = snapshot
        if self.uses_snapshot or (self.needs_method and self._checkpoint_key() != self._method_key):
            self.refresh_later() if later else self.refresh()

    def show_point(self, test_row: int) -> None:
        self.row = int(test_row)
        self.refresh()

    def applies(self) -> bool:
        """Whether the run's method is one this view is for (``methods``; () = any)."""
        return not self.methods or self.config.get("method") in self.methods

    def _unlabelled(self) -> bool:
        """The run's points are known, and none is labelled."""
        snap = self.snapshot
        return snap is not None and len(snap.labels) > 0 and not (np.asarray(snap.labels) >= 0).any()

    def not_drawn_because(self) -> str | None:
        """Why there is nothing to draw for the run (None: draw)."""
        if not self.config:
            return "No run selected."
        from engine.log import METHOD as LOGGED

        if self.needs_method and self.config.get("method") == LOGGED:
            return ("This run was logged from a training loop of its own (engine.log): it holds the "
                    "embeddings, not the encoder that this view runs. The map, neighbours, probe, collapse, "
                    "triplet and cluster panels show it.")
        if self.needs_method and self.config.get("method") == "embed":
            return (f"This view needs a trained method, and this run has none: it holds the embeddings of "
                    f"{self.config.get('dataset') or 'a collection'} by {self.config.get('encoder') or 'an encoder'}, "
                    "made without training. The map, the neighbours and the selection work on it.")
        if not self.applies():
            return (f"This view is for {', '.join(self.methods)} runs; the selected run uses "
                    f"{self.config.get('method')}.")
        if self.needs_labels and self._unlabelled():
            return ("This view compares classes, and the selected run's points are unlabelled. The map, the "
                    "neighbours and the clusters work on it.")
        return None

    @property
    def busy(self) -> bool:
        """A rebuild of the trained model or a measurement is under way in a worker thread."""
        return self._method_request is not None or self._measure_request is not None

    def redraw(self) -> None:
        message = self.not_drawn_because()
        self._show_content(message)
        if message:
            self._clear(message)
            return
        try:
            self._draw()
        except Pending as waiting:  # keep what is drawn; it redraws when that arrives
            if str(waiting):
                self.status.setText(str(waiting))
        except (FileNotFoundError, ValueError) as error:  # no checkpoint or snapshot yet, a bad file
            self._clear(str(error))
        except (KeyError, RuntimeError) as error:  # a run directory from another version of the program
            self._clear(f"This run cannot be inspected: {type(error).__name__}: {error}")

    def _show_content(self, notice: str | None) -> None:
        """The content and header controls (``notice`` None), or only the notice line."""
        self.notice.setText(notice or "")
        self.notice.setVisible(notice is not None)
        self.content.setVisible(notice is None)
        if notice is None:
            for widget in self._hidden_controls:
                widget.show()
            self._hidden_controls = []
            return
        for i in range(self.controls.count()):
            widget = self.controls.itemAt(i).widget()
            if widget is not None and not widget.isHidden():
                widget.hide()
                self._hidden_controls.append(widget)

    # helpers for subclasses --------------------------------------------------------------------
    def _draw(self) -> None:
        raise NotImplementedError

    def _clear(self, message: str) -> None:
        self.status.setText(message)

    def _followed_run(self):
        """The session's run this inspector shows, or None (standalone, or another run)."""
        run = self._session.current if self._session is not None else None
        return run if run is not None and self.run_dir is not None and run.path == self.run_dir else None

    def _get_dataset(self):
        """The run's dataset. Following a session: the session's copy, loaded in a worker thread
        (raises Pending until ``dataset_ready``); standalone: loaded here."""
        if self.dataset is None:
            run = self._followed_run()
            if run is not None:
                if run.dataset is None:
                    raise Pending(f"Loading the {self.config.get('dataset', 'run')} dataset…")
                self.dataset = run.dataset
            else:
                from engine.restore import load_run_dataset

                self.dataset = load_run_dataset(self.config)
        return self.dataset

    def _get_snapshot(self) -> MapSnapshot:
        if self.snapshot is None:
            from engine.runs import RunDir

            paths = RunDir(self.run_dir).snapshot_paths()
            if not paths:
                raise FileNotFoundError("The run has no snapshot yet: one is written at every evaluation.")
            self.snapshot = MapSnapshot.load(paths[-1])
        return self.snapshot

    def _checkpoint_key(self) -> tuple | None:
        ckpt = self.run_dir / "checkpoint.pt" if self.run_dir is not None else None
        return (str(ckpt), ckpt.stat().st_mtime_ns) if ckpt is not None and ckpt.exists() else None

    def _get_method(self):
        """The trained method, rebuilt once per checkpoint file version. Following a session (the
        window, where a run may be training): the session rebuilds it in a worker thread, as reading
        the checkpoint and building the model would freeze the window; raises Pending until it is
        there, then the panel redraws. Standalone (a script, a test): at once."""
        from engine.restore import load_trained_method

        key = self._checkpoint_key()
        if key is None:  # no checkpoint yet: load_trained_method says so, at once
            load_trained_method(self.run_dir, dataset=self.dataset)
        if self._method is not None and key == self._method_key:
            return self._method
        if self._session is None:
            self._method, self.dataset = load_trained_method(self.run_dir, dataset=self.dataset)
            self._method_key = key
            return self._method
        waiting = Pending("Rebuilding the trained model from its checkpoint…")
        if self._method_request == (self.run_dir, key):
            raise waiting
        dataset = self._get_dataset()  # the session's copy (Pending until it is loaded)
        request = self._method_request = (self.run_dir, key)
        self._session.request_trained_method(
            self.run_dir, key, dataset, lambda method: self._on_method_ready(request, method),
            lambda message: self._on_method_failed(request, message))
        raise waiting

    def _on_method_ready(self, request: tuple, method) -> None:
        if self._method_request != request:
            return  # overtaken: another run or a newer checkpoint
        self._method_request = None
        self._method, self._method_key = method, request[1]
        self.refresh()

    def _on_method_failed(self, request: tuple, message: str) -> None:
        if self._method_request != request:
            return
        self._method_request = None
        self._clear(f"The trained model could not be rebuilt: {message}")

    def _measured(self, key: tuple, fn, *args):
        """``fn(*args)``, once per ``key``. Following a session (the window, while a run trains): in a
        worker thread, as the pair statistics of a snapshot took 10-30 ms of the GUI thread, 50-75 ms
        the first time (frozen frames); raises Pending until the result is there, then the panel
        redraws, the last result staying drawn meanwhile. Standalone (a script, a test): at once."""
        if self._measurement is not None and self._measurement[0] == key:
            return self._measurement[1]
        if self._session is None:
            self._measurement = (key, fn(*args))
            return self._measurement[1]
        if self._measure_request != key:
            self._measure_request = key
            self._session.measure(fn, *args, on_done=lambda result: self._on_measured(key, result),
                                  on_failed=lambda message: self._on_measure_failed(key, message))
        raise Pending("" if self._measurement is not None else "Measuring…")

    def _on_measured(self, key: tuple, result) -> None:
        if self._measure_request != key:
            return  # overtaken: a newer snapshot or another run
        self._measure_request = None
        self._measurement = (key, result)
        self.refresh()

    def _on_measure_failed(self, key: tuple, message: str) -> None:
        if self._measure_request != key:
            return
        self._measure_request = None
        self._clear(f"This view could not be measured: {message}")

    def _snapshot_position(self, snap: MapSnapshot) -> int | None:
        return snap.row_of(self.row) if self.row >= 0 else None

    def _class_name(self, label: int) -> str:
        names = self.config.get("class_names") or []
        return names[label] if 0 <= label < len(names) else ("unlabelled" if label < 0 else str(label))

    def _images(self, rows: np.ndarray):
        """Float test images in [0, 1] (B, C, H, W) of the given test rows."""
        import torch

        data = self._get_dataset()
        return torch.from_numpy(np.asarray(data.test.images[np.asarray(rows)])).float() / 255

    # session wiring ----------------------------------------------------------------------------
    def attach(self, session) -> None:
        """Follow an ``explorer.session.Session``: its selected run, time-lapse frame and point."""
        self._session = session
        session.run_selected.connect(self._on_session_run_selected)
        session.dataset_ready.connect(self._on_session_dataset_ready)
        session.snapshot_added.connect(self._on_session_snapshot_added)
        session.view_changed.connect(self._on_session_view_changed)
        session.point_selected.connect(self.show_point)
        if session.current is not None:
            self._on_session_run_selected(session.current_id)

    def _on_session_run_selected(self, run_id: str) -> None:
        run = self._session.runs.get(run_id)
        if run is None:
            return
        self.row = self._session.selected_row
        self.set_run(run.path, dataset=run.dataset, snapshot=self._session.snapshot(run))

    def _on_session_dataset_ready(self, run_id: str) -> None:
        run = self._followed_run()
        if run is not None and run.id == run_id and self.dataset is None:
            self.dataset = run.dataset
            self.refresh_later()

    def _on_session_snapshot_added(self, run_id: str, index: int) -> None:
        if run_id == self._session.current_id:
            self._on_session_view_changed()

    def _on_session_view_changed(self) -> None:
        snap = self._session.snapshot()
        if snap is not None and snap is not self.snapshot:
            self.set_snapshot(snap, later=True)
