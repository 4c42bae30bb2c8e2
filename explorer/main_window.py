"""The main window: the map in the middle, docks around it, menus, shortcuts, status bar, settings.

Wiring (all in the GUI thread): the training panel asks the session to start/pause/stop a job; the
session turns the job's events into batched signals; the map, the neighbours panel, the runs list
and the curve/health docks redraw from the session's signals. Nothing here computes.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow,
                               QMessageBox, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget)

from explorer import export, jobs
from explorer.session import Session
from explorer.views import wrapped_tooltip
from explorer.views.map_view import MapPanel
from explorer.views.neighbours import NeighboursPanel, SelectionGrid
from explorer.views.runs_panel import RunsPanel
from explorer.views.training_panel import TrainingPanel

RESOURCES = Path(__file__).resolve().parent.parent / "resources"

# Tabbed docks share one width: five tabs behind the probe plot (~380 px) are readable only with
# one-word titles. The menus say what each one is.
LONG_TITLES = {"probe_plot": "Probe and kNN accuracy", "collapse_panel": "Collapse indicators",
               "triplet_panel": "Triplet categories", "angle_view": "Class angles",
               "pair_histogram": "Pair distances"}

# (module, class, object name, dock title, area)
PANELS = (
    ("explorer.views.curves", "LossPlot", "loss_plot", "Loss", "bottom"),
    ("explorer.views.curves", "ProbePlot", "probe_plot", "Probe", "bottom"),
    ("explorer.views.health", "CollapsePanel", "collapse_panel", "Collapse", "bottom"),
    ("explorer.views.health", "TripletPanel", "triplet_panel", "Triplets", "bottom"),
    ("explorer.views.health", "PropertiesPanel", "properties_panel", "Properties", "bottom"),
)


def load_panel_class(module: str, name: str):
    """A curves/health panel class, or None while its module is not there yet."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def process_memory_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except ImportError:
            return None


class MainWindow(QMainWindow):
    export_finished = Signal(str)  # what the export wrote (or why it failed), once the encoder part is done

    def __init__(self, settings: QSettings | None = None, runs_root: str | Path | None = None,
                 confirm_close: Callable[[], bool] | None = None):
        super().__init__()
        self.setWindowTitle("Embedding Explorer")
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("EmbeddingExplorer", "Embedding Explorer")
        self.runs_root = Path(runs_root or self.settings.value("runs/root", str(Path.cwd() / "runs")))
        self.confirm_close = confirm_close or self._ask_close
        self._closing = False
        self.dark = False
        self.session = Session(self)

        # centre: error banner + map
        self.map_panel = MapPanel(self.session)
        self.banner = QWidget(objectName="error_banner")
        self.banner_text = QLabel(objectName="error_banner_text")
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close_banner = QToolButton(text="✕")
        close_banner.clicked.connect(self.banner.hide)
        row = QHBoxLayout(self.banner)
        row.setContentsMargins(8, 4, 8, 4)
        row.addWidget(self.banner_text, 1)
        row.addWidget(close_banner)
        self.banner.hide()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        centre_layout.addWidget(self.banner)
        centre_layout.addWidget(self.map_panel, 1)
        self.setCentralWidget(centre)

        # docks
        self.training_panel = TrainingPanel()
        self.runs_panel = RunsPanel(self.session)
        self.neighbours_panel = NeighboursPanel(self.session)
        self.selection_grid = SelectionGrid(self.session)
        self.log_view = QPlainTextEdit(objectName="log_view", readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.docks: dict[str, QDockWidget] = {}
        self._add_dock("training", "Training", self.training_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("runs", "Runs", self.runs_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("neighbours", "Neighbours", self.neighbours_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("selection", "Selection", self.selection_grid, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["neighbours"], self.docks["selection"])
        self.docks["neighbours"].raise_()
        self.panels: dict[str, QWidget] = {}
        # new records reach the panels one panel a frame (see _feed_panels)
        self._panel_backlog: dict[str, list] = {}
        self._feed_turn = 0
        self._panel_feed = QTimer(self, interval=16)
        self._panel_feed.timeout.connect(self._feed_panels)
        bottom: list[QDockWidget] = []
        for module, cls_name, obj_name, title, _ in PANELS:
            cls = load_panel_class(module, cls_name)
            if cls is not None:
                widget = cls()
                if not widget.objectName():
                    widget.setObjectName(obj_name)
                self.panels[obj_name] = widget
            else:
                widget = QLabel(f"{title}: this panel is not installed yet ({module}.{cls_name})",
                                objectName=f"{obj_name}_placeholder")
                widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
            # the panels bring their own "what am I looking at?" button
            bottom.append(self._add_dock(obj_name, title, widget, None, help_row=False))
        bottom.append(self._add_dock("log", "Log", self.log_view, None))
        # under the map only (the side columns keep the full height): loss | probe side by side,
        # properties and log tabbed behind the loss, collapse and triplets behind the probe.
        # Each dock is placed once: moving a placed dock leaves stray tab bars behind.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        loss, probe, collapse, triplets, properties, log = bottom
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, loss)
        self.splitDockWidget(loss, probe, Qt.Orientation.Horizontal)
        for first, other in ((loss, properties), (loss, log), (probe, collapse), (probe, triplets)):
            self.tabifyDockWidget(first, other)
        bottom[0].raise_()
        bottom[1].raise_()
        self._add_inspectors()
        self._sized_docks = False

        self._build_menus()
        self._build_status_bar()
        self._connect()
        self.resize(1500, 950)
        self.apply_theme(self.settings.value("view/theme", "light") == "dark")
        self._restore_settings()

    # construction --------------------------------------------------------------------------------
    def _add_inspectors(self) -> None:
        """The method inspectors (triplet, class angles, pair distances, SimCLR views, pretext task,
        augmentations): docked once each, tabbed where they belong, following the session."""
        from explorer.views.inspectors import (AngleView, AugmentationPreview, ContrastiveInspector,
                                               PairHistogram, PretextDebugger, TripletInspector, in_scroll_area)

        self.inspectors: dict[str, QWidget] = {}

        def dock(name: str, title: str, cls) -> QDockWidget:
            widget = cls()
            widget.attach(self.session)
            self.inspectors[name] = widget
            return self._add_dock(name, title, in_scroll_area(widget), None, help_row=False)

        triplet = dock("triplet_inspector", "Triplet", TripletInspector)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, triplet, Qt.Orientation.Vertical)
        for name, title, cls in (("contrastive_inspector", "SimCLR views", ContrastiveInspector),
                                 ("pretext_debugger", "Pretext task", PretextDebugger)):
            self.tabifyDockWidget(triplet, dock(name, title, cls))
        triplet.raise_()
        for name, title, cls in (("angle_view", "Angles", AngleView),
                                 ("pair_histogram", "Pairs", PairHistogram)):
            self.tabifyDockWidget(self.docks["triplet_panel"], dock(name, title, cls))
        self.tabifyDockWidget(self.docks["runs"], dock("augmentation_preview", "Augmentations", AugmentationPreview))
        for front in ("runs", "probe_plot"):  # tabbing raises the newcomer: keep the usual panel in front
            self.docks[front].raise_()

        def follow_method_form(*_):
            self.inspectors["augmentation_preview"].follow_form(self.training_panel.method_fields)

        self.training_panel.method_combo.currentIndexChanged.connect(follow_method_form)
        follow_method_form()
        self.training_panel.dataset_combo.currentIndexChanged.connect(self._preview_form_dataset)
        QTimer.singleShot(0, self._preview_form_dataset)

    def _preview_form_dataset(self, *_) -> None:
        """Until a run is selected, the augmentation preview shows the dataset chosen in the training
        form (loaded once, in a worker thread, by the session), so the views can be tuned before the
        first run."""
        from explorer.views.training_panel import FOLDER_ITEM

        preview = self.inspectors["augmentation_preview"]
        name = self.training_panel.dataset_combo.currentData()
        if self.session.current is not None or not name or name == FOLDER_ITEM:
            return

        def ready(dataset) -> None:
            if self.session.current is None and self.training_panel.dataset_combo.currentData() == name:
                preview.set_dataset(dataset)

        def failed(message: str) -> None:
            if self.session.current is None:
                preview.status.setText(f"The images of {name} could not be loaded for the preview: {message}")

        preview.status.setText(f"Loading {name} for the preview…")
        self.session.request_dataset({"dataset": name}, ready, failed)

    def _add_dock(self, name: str, title: str, widget: QWidget, area, help_row: bool = True) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{name}_dock")
        if name in LONG_TITLES:  # the View and Help menus give the full name of a short tab title
            dock.toggleViewAction().setText(LONG_TITLES[name])
        help_text = getattr(widget, "help_text", None)
        if help_text and help_row:
            host = QWidget()
            layout = QVBoxLayout(host)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.setSpacing(0)
            head = QHBoxLayout()
            head.setContentsMargins(4, 0, 4, 0)
            head.addStretch(1)
            help_button = QToolButton(text="?", objectName=f"{name}_help")
            help_button.setToolTip(wrapped_tooltip(help_text))
            help_button.setAutoRaise(True)
            help_button.clicked.connect(lambda _=False, t=LONG_TITLES.get(name, title), h=help_text:
                                        self.show_help(t, h))
            head.addWidget(QLabel("what am I looking at?", objectName="help_hint"))
            head.addWidget(help_button)
            layout.addLayout(head)
            layout.addWidget(widget, 1)
            dock.setWidget(host)
        else:
            dock.setWidget(widget)
        if area is not None:
            self.addDockWidget(area, dock)
        self.docks[name] = dock
        return dock

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized_docks and self.settings.value("window/state") is None:
            self._sized_docks = True  # first start: sizes that suit the content (later: the saved layout)
            QTimer.singleShot(0, self._default_dock_sizes)

    def _default_dock_sizes(self) -> None:
        d = self.docks
        self.resizeDocks([d["training"], d["neighbours"]], [370, 360], Qt.Orientation.Horizontal)
        self.resizeDocks([d["training"], d["runs"]], [int(self.height() * 0.68), int(self.height() * 0.24)],
                         Qt.Orientation.Vertical)
        self.resizeDocks([d["loss_plot"]], [int(self.height() * 0.3)], Qt.Orientation.Vertical)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(file_menu, "&Open run…", QKeySequence.StandardKey.Open, self.open_run_dialog)
        self.export_action = self._action(file_menu, "&Export…", "Ctrl+E", self.export_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        train_menu = bar.addMenu("&Training")
        self.start_action = self._action(train_menu, "&Start", "Ctrl+R", self.start_training)
        self.pause_action = self._action(train_menu, "&Pause / Resume", "Space", self.toggle_pause)
        self.stop_action = self._action(train_menu, "S&top", "Ctrl+.", self.session.stop_training)
        view_menu = bar.addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        self.theme_action = self._action(view_menu, "&Dark theme", "Ctrl+Shift+D",
                                         lambda: self.apply_theme(self.theme_action.isChecked()))
        self.theme_action.setCheckable(True)
        self._action(view_menu, "&Fit map", "Ctrl+0", self.map_panel.fit)
        help_menu = bar.addMenu("&Help")
        for name, dock in self.docks.items():
            widget = dock.widget()
            inner = widget.layout().itemAt(1).widget() if widget.layout() and widget.layout().count() > 1 else widget
            text = getattr(inner, "help_text", None) or getattr(widget, "help_text", None)
            if text:
                title = LONG_TITLES.get(name, dock.windowTitle())
                self._action(help_menu, f"What am I looking at: {title}", None,
                             lambda _=False, t=title, h=text: self.show_help(t, h))
        help_menu.addSeparator()
        self._action(help_menu, "&About", None, lambda: QMessageBox.about(
            self, "Embedding Explorer", "Train representation-learning models with a few clicks and "
            "watch the representation form."))

    def _action(self, menu, text, shortcut, slot) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel(objectName="status_device")
        self.throughput_label = QLabel("— img/s", objectName="status_throughput")
        self.memory_label = QLabel(objectName="status_memory")
        for w in (self.device_label, self.throughput_label, self.memory_label):
            bar.addPermanentWidget(w)
        self.device_label.setText(f"device: {self._auto_device()}")
        self._memory_timer = QTimer(self, interval=2000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        self._update_memory()

    @staticmethod
    def _auto_device() -> str:
        try:
            import torch

            if torch.cuda.is_available():
                return f"auto → cuda ({torch.cuda.get_device_name(0)})"
        except Exception:
            pass
        return "auto → cpu"

    def _update_memory(self) -> None:
        mb = process_memory_mb()
        text = f"memory {mb:,.0f} MB" if mb is not None else "memory —"
        try:
            import torch

            if torch.cuda.is_available():
                text += f" · GPU {torch.cuda.memory_allocated() / 2**20:,.0f} MB"
        except Exception:
            pass
        self.memory_label.setText(text)

    def _connect(self) -> None:
        s, tp = self.session, self.training_panel
        tp.start_requested.connect(self.start_training)
        tp.pause_requested.connect(self.toggle_pause)
        tp.stop_requested.connect(s.stop_training)
        self.runs_panel.open_requested.connect(self.open_run_dialog)
        s.training_state_changed.connect(self._on_session_training_state_changed)
        s.progress_changed.connect(self._on_session_progress_changed)
        s.records_added.connect(self._on_session_records_added)
        s.run_selected.connect(self._on_session_run_selected)
        s.run_changed.connect(self._on_session_run_changed)
        s.message_posted.connect(self._on_session_message_posted)
        s.rows_selected.connect(lambda rows: len(rows) and self.docks["selection"].raise_())
        s.point_selected.connect(self._on_session_point_selected)

    # training ------------------------------------------------------------------------------------
    def _on_session_point_selected(self, row: int) -> None:
        """A clicked point shows its neighbours, and the inspector of the run's method beside them."""
        from explorer.views.inspectors import POINT_INSPECTOR

        if row < 0:
            return
        self.docks["neighbours"].raise_()
        run = self.session.current
        inspector = POINT_INSPECTOR.get(run.config.get("method")) if run is not None else None
        if inspector in self.docks:
            self.docks[inspector].raise_()

    def start_training(self) -> None:
        if self.session.training_state != "idle":
            return
        try:
            config = self.training_panel.build_config(out=str(self.runs_root))
        except ValueError as error:
            self.statusBar().showMessage(f"not started: {error}", 10_000)
            return
        self.banner.hide()
        self.session.start_training(config)
        self.training_panel.progress_bar.setValue(0)
        self.training_panel.progress_bar.setFormat("starting: loading data and model…")

    def toggle_pause(self) -> None:
        if self.session.training_state == "running":
            self.session.pause_training()
        elif self.session.training_state == "paused":
            self.session.resume_training()

    def _on_session_training_state_changed(self, state: str) -> None:
        self.training_panel.set_state(state)
        self.start_action.setEnabled(state == "idle")
        self.stop_action.setEnabled(state in ("running", "paused"))
        if state == "idle":
            run = self.session.runs.get(self.session.current_run_live_id())
            if run is not None:
                self.training_panel.show_finished(run.status)
            elif self.training_panel.progress_bar.format().startswith("starting"):
                self.training_panel.show_finished("failed")
            if self._closing:
                QTimer.singleShot(0, self.close)

    def _on_session_progress_changed(self, run_id: str, p: dict) -> None:
        if run_id == self.session.current_run_live_id():
            self.training_panel.show_progress(p)
            self.throughput_label.setText(f"{p.get('images_per_second', 0):,.0f} img/s")

    # panels --------------------------------------------------------------------------------------
    def _on_session_records_added(self, run_id: str, records: list) -> None:
        if run_id != self.session.current_id:
            return
        for name in self.panels:
            self._panel_backlog.setdefault(name, []).extend(records)
        if not self._panel_feed.isActive():
            self._panel_feed.start()
            self._feed_panels()

    def _feed_panels(self) -> None:
        """One frame's share of the new records: every panel nobody sees (it only keeps them) and
        one panel on screen. An evaluation changes every plot at once; drawn in one frame they made it
        late (p99 of a 16 ms timer 25-30 ms while training), one a frame they do not (17 ms)."""
        names = list(self.panels)
        for k in range(len(names)):
            name = names[(self._feed_turn + k) % len(names)]
            records = self._panel_backlog.get(name)
            if not records:
                continue
            panel = self._feed(name)
            if not (hasattr(panel, "tabbed_away") and panel.tabbed_away()):
                self._feed_turn = (self._feed_turn + k + 1) % len(names)
                return  # the next one in the next frame
        self._panel_feed.stop()

    def flush_panels(self) -> None:
        """Feed every panel its waiting records now (before reading a panel in a test or an export)."""
        self._panel_feed.stop()
        for name in self._panel_backlog:
            self._feed(name)

    def _feed(self, name: str) -> QWidget:
        """Hand a panel its waiting records."""
        records, self._panel_backlog[name] = self._panel_backlog[name], []
        panel = self.panels[name]
        if records:
            panel.add_records(records)
        return panel

    def _on_session_run_selected(self, run_id: str) -> None:
        run = self.session.runs[run_id]
        self._panel_feed.stop()
        self._panel_backlog.clear()  # the run's whole record list follows
        for panel in self.panels.values():
            panel.clear()
            panel.add_records(list(run.records))
        self.device_label.setText(f"device: {run.device or self._auto_device()}")
        self.neighbours_panel.update_neighbours()

    def _on_session_run_changed(self, run_id: str) -> None:
        run = self.session.runs[run_id]
        if run.status == "failed" and run.message:
            self.show_error(f"Training failed: {run.message}")

    def plot_widgets(self) -> dict[str, QWidget]:
        """The panels, up to date (for export)."""
        self.flush_panels()
        return dict(self.panels)

    # messages ------------------------------------------------------------------------------------
    def _on_session_message_posted(self, level: str, text: str) -> None:
        self.log_view.appendPlainText(f"[{level}] {text}")
        if level == "error":
            self.show_error(text[0].upper() + text[1:])
        else:
            self.statusBar().showMessage(text, 8000)

    def show_error(self, text: str) -> None:
        self.banner_text.setText(text)
        self.banner.show()
        self.statusBar().showMessage(text, 15_000)

    def show_help(self, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, f"What am I looking at? — {title}", text,
                          QMessageBox.StandardButton.Close, self)
        box.setModal(False)
        box.show()

    # runs ----------------------------------------------------------------------------------------
    def open_run(self, path: str | Path) -> None:
        try:
            self.session.open_run(path)
        except (ValueError, OSError) as error:
            self.show_error(str(error))
            return
        self.settings.setValue("runs/last_opened", str(path))

    def open_run_dialog(self) -> None:
        start = self.settings.value("runs/last_opened", str(self.runs_root))
        path = QFileDialog.getExistingDirectory(self, "Open a run directory", str(Path(start).parent))
        if path:
            self.open_run(path)

    def export_dialog(self) -> None:
        """Ask where to and what (export.ExportDialog); the export starts when the dialog is accepted."""
        run = self.session.current
        if run is None or not run.snapshots:
            self.show_error("Nothing to export yet: select a run that has a snapshot")
            return
        previous = self.settings.value("export/folder", "")  # the next run's export goes beside the last one
        folder = (Path(previous).parent if previous else Path.cwd() / "exports") / run.name
        self.export_window = export.ExportDialog(run, str(folder), self)
        dialog = self.export_window
        dialog.accepted.connect(lambda: self.export_to(dialog.folder(), dialog.contents(), dialog.encoder_formats()))
        dialog.open()

    def export_to(self, folder: str | Path, contents, encoder_formats) -> None:
        """Write the chosen contents now, and the encoder (``folder/encoder``) in a worker thread:
        exporting ONNX and checking it takes seconds, and the window must not freeze meanwhile."""
        run = self.session.current
        folder = Path(folder).expanduser()
        self.settings.setValue("export/folder", str(folder))
        written = []
        try:
            if contents:
                written = export.export_all(self, folder, contents)
        except (ValueError, OSError) as error:
            self.show_error(f"Export failed: {error}")
            self.export_finished.emit(f"failed: {error}")
            return
        done = f"exported {len(written)} files to {folder}"
        if not encoder_formats:
            self.statusBar().showMessage(done, 10_000)
            self.export_finished.emit(done)
            return
        self.statusBar().showMessage(f"{done}; exporting the encoder ({', '.join(encoder_formats)})…")
        from engine.export import ONNX_TOLERANCE, export_run

        def on_done(_, result) -> None:
            message = f"{done}; the encoder to {result.folder}: " + "; ".join(result.lines())
            self.statusBar().showMessage(message, 20_000)
            self.export_finished.emit(message)

        def on_failed(_, error: str) -> None:
            self.show_error(f"Export of the encoder failed: {error}")
            self.export_finished.emit(f"failed: {error}")

        # the run's images (already loaded, read-only) are the ones the files are checked on
        jobs.run_in_background(export_run, run.path, folder / "encoder", list(encoder_formats), ONNX_TOLERANCE,
                               run.dataset, on_done=on_done, on_failed=on_failed)

    # drag and drop: a run directory opens it, an image folder becomes the dataset -------------------
    def dragEnterEvent(self, event) -> None:
        if any(Path(u.toLocalFile()).is_dir() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for u in event.mimeData().urls():
            path = Path(u.toLocalFile())
            if (path / "config.json").exists():
                self.open_run(path)
            elif path.is_dir():
                self.training_panel.use_folder(path)
        event.acceptProposedAction()

    # theme and settings ----------------------------------------------------------------------------
    def apply_theme(self, dark: bool) -> None:
        self.dark = dark
        qss = RESOURCES / ("dark.qss" if dark else "light.qss")
        app = QApplication.instance()
        if app is not None and qss.exists():
            app.setStyleSheet(qss.read_text())
        for view in self.map_panel.views:
            view.set_theme(dark)
        for panel in self.panels.values():
            if hasattr(panel, "set_theme"):
                panel.set_theme(dark)
        if hasattr(self, "theme_action"):
            self.theme_action.setChecked(dark)
        self.settings.setValue("view/theme", "dark" if dark else "light")

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        if self.settings.value("training/method"):
            self.training_panel.restore_settings(self.settings)
        else:
            self.training_panel.apply_preset("digits")

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.training_panel.save_settings(self.settings)
        self.settings.sync()

    def _ask_close(self) -> bool:
        answer = QMessageBox.question(
            self, "Training is running",
            "A training job is running. Stop it and close? The run directory keeps what was trained "
            "(a checkpoint and the metrics so far).",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event) -> None:
        if self.session.training_state != "idle":
            if not self._closing:
                if not self.confirm_close():
                    event.ignore()
                    return
                self._closing = True
                self.session.stop_training()
                self.statusBar().showMessage("stopping the training job; the window closes once its run is saved…")
            event.ignore()  # closes again when the job has ended (training_state_changed -> idle)
            return
        self.save_settings()
        self.session.shutdown()
        event.accept()
