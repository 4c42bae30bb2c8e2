"""The main window: the map in the middle, docks around it, menus, shortcuts, status bar, settings.

Wiring (all in the GUI thread): every dock holds an ``explorer.views.kit.Panel`` that follows the
session itself; the training panel asks the session to start, pause or stop a job; the window only
places the docks, answers the menus and shows the session's messages. Nothing here computes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QRect, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QToolButton, QVBoxLayout, QWidget)

from explorer import export
from explorer.session import Session
from explorer.state import RunStatus, TrainingState
from explorer.views.collapse import CollapsePanel
from explorer.views.inspectors import (POINT_INSPECTOR, AngleView, AugmentationPreview, ContrastiveInspector,
                                       PairHistogram, PretextDebugger, TripletInspector)
from explorer.views.kit import FRAMES, Panel, in_scroll_area
from explorer.views.log_panel import LogPanel
from explorer.views.loss import LossPlot
from explorer.views.map_view import MapPanel
from explorer.views.neighbours import NeighboursPanel, SelectionGrid
from explorer.views.probe import ProbePlot
from explorer.views.properties import PropertiesPanel
from explorer.views.runs_panel import RunsPanel
from explorer.views.training_panel import FOLDER_ITEM, TrainingPanel, in_form_words
from explorer.views.triplets import TripletPanel

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
RECORD_PANELS = (LossPlot, ProbePlot, CollapsePanel, TripletPanel, PropertiesPanel)
# the first launch: a screen up to this size is filled; a larger one gets this size at least, 80 % of it at most
FIRST_SIZE = QSize(1600, 1000)
# a window narrower than this gets the compact layout (one tab group under the map)
WIDE_LAYOUT_WIDTH = 1500
# closing while a job stops: the window waits this long for it to save its checkpoint and summary
CLOSE_GRACE_MS = 5000


def first_geometry(available: QRect) -> QRect:
    """Where the window opens on a first launch on a screen whose free area is ``available``: the
    whole of it up to FIRST_SIZE (a laptop's 1280 x 800 needs every pixel for the docks), on a larger
    screen FIRST_SIZE or 80 % of it, whichever is larger, centred."""
    width = min(available.width(), max(FIRST_SIZE.width(), int(available.width() * 0.8)))
    height = min(available.height(), max(FIRST_SIZE.height(), int(available.height() * 0.8)))
    rect = QRect(0, 0, width, height)
    rect.moveCenter(available.center())
    return rect


def clamped(frame: QRect, available: QRect) -> QRect:
    """``frame`` (a window's frame) moved, and shrunk where it must be, to lie within ``available``."""
    rect = QRect(frame.topLeft(), frame.size().boundedTo(available.size()))
    rect.moveLeft(min(max(rect.left(), available.left()), available.right() - rect.width() + 1))
    rect.moveTop(min(max(rect.top(), available.top()), available.bottom() - rect.height() + 1))
    return rect


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
                 confirm_close: Callable[[], bool] | None = None, screen_area: QRect | None = None):
        """``screen_area``: the free screen area the window must fit, by default that of the screen it
        opens on (a test gives a laptop's)."""
        super().__init__()
        self.screen_area = screen_area
        self.setWindowTitle("Embedding Explorer")
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("EmbeddingExplorer", "Embedding Explorer")
        self.runs_root = Path(runs_root or self.settings.value("runs/root", str(Path.cwd() / "runs")))
        self.confirm_close = confirm_close or self._ask_close
        self._closing = False  # a close waits for the stopped job to save
        self._close_now = False  # ... or no longer (its grace is over, or a second close)
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

        # the docks: each panel follows the session itself
        s = self.session
        self.training_panel = TrainingPanel()
        self.runs_panel = RunsPanel(s)
        self.neighbours_panel = NeighboursPanel(s)
        self.selection_grid = SelectionGrid(s)
        self.log_panel = LogPanel()
        self.log_view = self.log_panel.log_view
        self.panels: dict[str, Panel] = {cls.name: cls() for cls in RECORD_PANELS}  # the record panels
        for panel in self.panels.values():
            panel.attach(s)
        self.inspectors: dict[str, Panel] = {cls.name: cls() for cls in (
            TripletInspector, ContrastiveInspector, PretextDebugger, AngleView, PairHistogram, AugmentationPreview)}
        for inspector in self.inspectors.values():
            inspector.attach(s)
        self.docks: dict[str, QDockWidget] = {}
        self.dock_panels: dict[str, Panel] = {}  # the panel in each dock
        for panel in (self.training_panel, self.runs_panel, self.neighbours_panel, self.selection_grid,
                      *self.panels.values(), self.log_panel, *self.inspectors.values()):
            self._add_dock(panel)
        self._sized_docks = False

        self._build_menus()
        self._build_status_bar()
        self._connect()
        geometry = self.settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.setGeometry(first_geometry(self.available_geometry()))
        self.keep_on_screen()
        # a laptop's screen gets one tab group under the map, a larger one two side by side
        self.compact = self.width() < WIDE_LAYOUT_WIDTH
        self._place_docks()
        self.apply_theme(self.settings.value("view/theme", "light") == "dark")
        self._restore_settings()

    # construction --------------------------------------------------------------------------------
    def _place_docks(self) -> None:
        d = self.docks
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        # left: training over runs (augmentations behind them); right: neighbours (selection behind)
        # over the point inspectors; under the map only (the side columns keep the full height): the
        # record panels, in one tab group on a laptop's screen (each then gets the map's width: side
        # by side, the triplet plots, the properties table and the probe's legend had a third of the
        # room they need at 1280 x 800), else loss | probe side by side, properties and log behind the
        # loss, collapse, triplets, angles and pairs behind the probe. Each dock is placed once:
        # moving a placed dock leaves stray tab bars.
        self.setCorner(Qt.Corner.BottomLeftCorner, left)
        self.setCorner(Qt.Corner.BottomRightCorner, right)
        self.addDockWidget(left, d["training"])
        self.addDockWidget(left, d["runs"])
        self.addDockWidget(right, d["neighbours"])
        self.addDockWidget(right, d["triplet_inspector"], Qt.Orientation.Vertical)
        self.addDockWidget(bottom, d["loss_plot"])
        if self.compact:
            bottom_groups = (("loss_plot", ("probe_plot", "collapse_panel", "triplet_panel", "properties_panel",
                                            "angle_view", "pair_histogram", "log")),)
        else:
            self.splitDockWidget(d["loss_plot"], d["probe_plot"], Qt.Orientation.Horizontal)
            bottom_groups = (("loss_plot", ("properties_panel", "log")),
                             ("probe_plot", ("collapse_panel", "triplet_panel", "angle_view", "pair_histogram")))
        for first, others in (("runs", ("augmentation_preview",)), ("neighbours", ("selection",)),
                              ("triplet_inspector", ("contrastive_inspector", "pretext_debugger")),
                              *bottom_groups):
            for other in others:
                self.tabifyDockWidget(d[first], d[other])
        for front in ("runs", "neighbours", "triplet_inspector", "loss_plot", "probe_plot"):
            if not (self.compact and front == "probe_plot"):
                d[front].raise_()  # tabbing raises the newcomer: keep the usual panel in front

    def _add_dock(self, panel: Panel) -> QDockWidget:
        dock = QDockWidget(panel.dock_title, self)
        dock.setObjectName(f"{panel.dock_key()}_dock")
        dock.toggleViewAction().setText(panel.menu_title())  # the View menu gives the full name of a short tab
        dock.setWidget(in_scroll_area(panel) if panel.scrolls else panel)
        self.docks[panel.dock_key()] = dock
        self.dock_panels[panel.dock_key()] = panel
        return dock

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.keep_on_screen)  # once the window manager has framed it
        if not self._sized_docks and self.settings.value("window/state") is None:
            self._sized_docks = True  # first start: sizes that suit the content (later: the saved layout)
            QTimer.singleShot(0, self._default_dock_sizes)
        QTimer.singleShot(0, self._hide_stray_tab_bars)

    def _hide_stray_tab_bars(self) -> None:
        """Hide the tab bars Qt has left behind. Tabbing a third dock into a group that is not the first
        of its dock area gives the group a new tab bar and leaves the old one on screen, where it
        stays, showing the first tabs only (PySide6 6.11: 'Loss | Properties' over the training form,
        'Runs | Augmentations' twice). The bar in use sits under the front dock of its group, where the
        layout puts it at every pass; any other bar is one of those (were it in use after all, the next
        layout pass would show it again)."""
        from PySide6.QtWidgets import QTabBar

        by_title = {dock.windowTitle(): dock for dock in self.docks.values()}
        for bar in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if not bar.isVisible() or bar.count() == 0:
                continue
            front = by_title.get(bar.tabText(bar.currentIndex()))
            under = front is not None and front.isVisible() and abs(bar.y() - front.geometry().bottom()) <= 8 \
                and abs(bar.x() - front.x()) <= 8
            if not under:
                bar.hide()

    def _default_dock_sizes(self) -> None:
        """First start: the side columns as wide as their content reads (the training form's fields
        show their placeholders, the tabs of the right column their whole titles), the map keeps the
        rest; the record panels under it get two fifths of the height on a laptop's screen."""
        d, h = self.docks, self.height()
        left, right = (310, 300) if self.compact else (370, 360)
        right = max(right, self._tabs_width(("neighbours", "selection")),
                    self._tabs_width(("triplet_inspector", "contrastive_inspector", "pretext_debugger")))
        left = max(left, self._tabs_width(("runs", "augmentation_preview")))
        self.resizeDocks([d["training"], d["neighbours"]], [left, right], Qt.Orientation.Horizontal)
        self.resizeDocks([d["training"], d["runs"]], [int(h * 0.68), int(h * 0.24)], Qt.Orientation.Vertical)
        self.resizeDocks([d["neighbours"], d["triplet_inspector"]], [int(h * 0.5), int(h * 0.5)],
                         Qt.Orientation.Vertical)
        self.resizeDocks([d["loss_plot"]], [int(h * (0.4 if self.compact else 0.33))], Qt.Orientation.Vertical)
        if not self.compact:
            # the loss column a little wider than the probe's: its tabs hold the properties table and the log
            bottom = d["loss_plot"].width() + d["probe_plot"].width()
            self.resizeDocks([d["loss_plot"], d["probe_plot"]], [int(bottom * 0.543), bottom - int(bottom * 0.543)],
                             Qt.Orientation.Horizontal)

    def _tabs_width(self, names: tuple[str, ...]) -> int:
        """The width a tab bar needs to show the tabs of these docks with their whole titles."""
        from PySide6.QtWidgets import QTabBar

        bar = QTabBar(self)  # an unshown bar under the application's style sheet, as the dock tabs are
        bar.hide()
        for name in names:
            bar.addTab(self.docks[name].windowTitle())
        bar.ensurePolished()
        width = sum(bar.tabSizeHint(i).width() for i in range(bar.count())) + 8
        bar.deleteLater()
        return width

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(file_menu, "&Open run…", QKeySequence.StandardKey.Open, self.open_run_dialog)
        self.embed_action = self._action(file_menu, "E&mbed a folder…", "Ctrl+Shift+E", self.embed_folder_dialog)
        self.open_embeddings_action = self._action(file_menu, "Open em&beddings…", None, self.open_embeddings_dialog)
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
        self.theme_action = self._action(view_menu, "&Dark theme", "Ctrl+Shift+D", self._on_theme_action_triggered)
        self.theme_action.setCheckable(True)
        self._action(view_menu, "&Fit map", "Ctrl+0", self.map_panel.fit)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "What am I looking at: Map", None, lambda: self.show_help("map"))
        for name, panel in self.dock_panels.items():
            if panel.help_text:
                self._action(help_menu, f"What am I looking at: {panel.menu_title()}", None,
                             lambda _=False, n=name: self.show_help(n))
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
        # a folder being embedded (File > Embed a folder…): its progress and a stop button, while it runs
        self.embed_progress = QProgressBar(objectName="embed_progress")
        self.embed_progress.setMaximumWidth(320)
        self.embed_progress.setTextVisible(True)
        self.embed_stop = QToolButton(text="Stop", objectName="embed_stop")
        self.embed_stop.setToolTip("Stop embedding after this batch: what was embedded is kept and opened")
        self.embed_stop.clicked.connect(self.session.stop_embedding)
        for w in (self.embed_progress, self.embed_stop):
            bar.addPermanentWidget(w)
            w.hide()
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
        self.runs_panel.rerun_requested.connect(self.new_run_from)
        s.watch_runs_folder(self.runs_root)
        s.training_state_changed.connect(self._on_session_training_state_changed)
        s.progress_changed.connect(self._on_session_progress_changed)
        s.run_selected.connect(self._on_session_run_selected)
        s.run_changed.connect(self._on_session_run_changed)
        s.message_posted.connect(self._on_session_message_posted)
        s.embedding_progressed.connect(self._on_session_embedding_progressed)
        s.embedding_ended.connect(self._on_session_embedding_ended)
        s.rows_selected.connect(lambda rows: len(rows) and self.docks["selection"].raise_())
        s.point_selected.connect(self._on_session_point_selected)
        s.bar_triplets_changed.connect(lambda bar: bar is not None and self.docks["triplet_inspector"].raise_())
        preview = self.inspectors["augmentation_preview"]
        tp.method_combo.currentIndexChanged.connect(lambda *_: preview.follow_form(tp.method_fields))
        preview.follow_form(tp.method_fields)
        tp.dataset_combo.currentIndexChanged.connect(self._preview_form_dataset)
        QTimer.singleShot(0, self._preview_form_dataset)
        self._dataset_check: tuple = ()
        tp.dataset_combo.currentIndexChanged.connect(self._check_form_dataset)
        tp.method_combo.currentIndexChanged.connect(self._check_form_dataset)
        QTimer.singleShot(0, self._check_form_dataset)

    def _preview_form_dataset(self, *_) -> None:
        """Before any run, the augmentation preview shows the training form's dataset."""
        name = self.training_panel.dataset_combo.currentData()
        if name and name != FOLDER_ITEM:
            self.inspectors["augmentation_preview"].preview_dataset(name)

    def _check_form_dataset(self, *_) -> None:
        """Mark the form's dataset field when its method cannot train on it (grey images for
        colorization, an unlabelled folder for a supervised method) or it cannot be loaded (an empty
        folder): the session loads the images once, in a worker, as for the augmentation preview."""
        tp = self.training_panel
        name, method = tp.dataset_combo.currentData(), tp.method
        if not name or name == FOLDER_ITEM:
            tp.set_dataset_problem("")
            return
        asked = self._dataset_check = (name, method)

        def ready(dataset) -> None:
            if self._dataset_check == asked:
                tp.set_dataset_problem(tp.data_problem(dataset))

        def failed(message: str) -> None:
            if self._dataset_check == asked:
                tp.set_dataset_problem(f"dataset {name}: {message}")

        self.session.request_dataset({"dataset": name}, ready, failed)

    # training ------------------------------------------------------------------------------------
    def _on_session_point_selected(self, row: int) -> None:
        """A clicked point shows its neighbours, and the inspector of the run's method beside them."""
        if row < 0:
            return
        self.docks["neighbours"].raise_()
        run = self.session.current
        inspector = POINT_INSPECTOR.get(run.config.get("method")) if run is not None else None
        if inspector in self.docks:
            self.docks[inspector].raise_()

    def start_training(self) -> None:
        if self.session.training_state != TrainingState.IDLE:
            return
        try:
            config = self.training_panel.build_config(out=str(self.runs_root))
        except ValueError as error:
            self.statusBar().showMessage(f"not started: {in_form_words(str(error))}", 10_000)
            return
        self.banner.hide()
        self.session.start_training(config)
        self.training_panel.show_starting()

    def toggle_pause(self) -> None:
        if self.session.training_state == TrainingState.RUNNING:
            self.session.pause_training()
        elif self.session.training_state in (TrainingState.PAUSING, TrainingState.PAUSED):
            self.session.resume_training()

    def _on_session_training_state_changed(self, state: str) -> None:
        state = TrainingState(state)
        self.training_panel.set_state(state)
        self.start_action.setEnabled(state == TrainingState.IDLE)
        self.stop_action.setEnabled(state.active)
        if state == TrainingState.IDLE:
            run = self.session.runs.get(self.session.current_run_live_id())
            if run is not None:
                self.training_panel.show_finished(run.status)
            elif self.training_panel.progress_bar.format().startswith("starting"):
                self.training_panel.show_finished(RunStatus.FAILED)
            if self._closing:
                QTimer.singleShot(0, self.close)

    def _on_session_progress_changed(self, run_id: str, p: dict) -> None:
        if run_id == self.session.current_run_live_id():
            self.training_panel.show_progress(p)
            self.throughput_label.setText(f"{p.get('images_per_second', 0):,.0f} img/s")

    def _on_session_run_selected(self, run_id: str) -> None:
        run = self.session.runs[run_id]
        self.device_label.setText(f"device: {run.device or self._auto_device()}")

    def _on_session_run_changed(self, run_id: str) -> None:
        run = self.session.runs[run_id]
        if run.status == RunStatus.FAILED and run.message:
            # a run started from the form: its settings named as the form names them, not as flags
            started_here = run.live or run_id == self.session.current_run_live_id()
            self.show_error(f"Training failed: {in_form_words(run.message) if started_here else run.message}")

    def plot_widgets(self) -> dict[str, QWidget]:
        """The record panels, up to date (for export)."""
        FRAMES.flush()
        return dict(self.panels)

    # messages ------------------------------------------------------------------------------------
    def _on_session_message_posted(self, level: str, text: str) -> None:
        if text.startswith("training failed:"):  # a job of the form's: its settings in the form's words
            text = in_form_words(text)
        self.log_panel.append(level, text)
        if level == "error":
            self.show_error(text[0].upper() + text[1:])
        else:
            self.statusBar().showMessage(text, 8000)

    def show_error(self, text: str) -> None:
        self.banner_text.setText(text)
        self.banner.show()
        self.statusBar().showMessage(text, 15_000)

    def show_help(self, name: str) -> None:
        """Bring the dock ``name`` ("map": the map) to the front with its help paragraph open (the
        Help menu)."""
        if name == "map":
            self.map_panel.show_help()
            return
        self.docks[name].show()
        self.docks[name].raise_()
        self.dock_panels[name].show_help()

    # runs ----------------------------------------------------------------------------------------
    def open_run(self, path: str | Path) -> None:
        try:
            self.session.open_run(path)
        except (ValueError, OSError) as error:
            self.show_error(str(error))
            return
        self.settings.setValue("runs/last_opened", str(path))

    def new_run_from(self, config: dict, name: str = "") -> None:
        """Fill the training form with a run's settings (the Runs panel's button): Start trains a new
        run like it."""
        try:
            notes = self.training_panel.apply_config(config, name)
        except ValueError as error:
            self.show_error(str(error))
            return
        self.docks["training"].show()
        self.docks["training"].raise_()
        extra = f" ({'; '.join(notes)})" if notes else ""
        self.statusBar().showMessage(f"the training form holds the settings of run {name}{extra}: Start (Ctrl+R) "
                                     "trains a new run with them", 15_000)

    def open_run_dialog(self) -> None:
        start = self.settings.value("runs/last_opened", str(self.runs_root))
        path = QFileDialog.getExistingDirectory(self, "Open a run directory", str(Path(start).parent))
        if path:
            self.open_run(path)

    # embedding a folder -------------------------------------------------------------------------------
    def embed_folder_dialog(self) -> None:
        """Ask which folder and encoder (EmbedDialog); the job starts when the dialog is accepted."""
        from explorer.views.embed_dialog import EmbedDialog

        if self.session.embedding:
            self.show_error("A folder is being embedded already: wait for it, or stop it (status bar)")
            return
        self.embed_window = EmbedDialog(self.settings.value("embed/folder", ""), str(self.runs_root), self)
        dialog = self.embed_window
        dialog.accepted.connect(lambda: self.embed_folder(dialog.accepted_config()))
        dialog.open()

    def open_embeddings_dialog(self) -> None:
        """Embeddings made elsewhere (OpenEmbeddingsDialog), made into a run in the background, then opened."""
        from explorer.views.embed_dialog import OpenEmbeddingsDialog

        if self.session.embedding:
            self.show_error("A folder is being embedded already: wait for it, or stop it (status bar)")
            return
        self.embeddings_window = OpenEmbeddingsDialog(str(self.runs_root), self)
        dialog = self.embeddings_window
        dialog.accepted.connect(lambda: self.embed_folder(dialog.accepted_config()))
        dialog.open()

    def embed_folder(self, config) -> None:
        """Embed in the background (the session's job); the progress shows in the status bar."""
        try:
            self.session.start_embedding(config)
        except ValueError as error:
            self.show_error(str(error))
            return
        if config.dataset:
            self.settings.setValue("embed/folder", config.dataset.partition(":")[2])
        self.embed_progress.setRange(0, 0)
        self.embed_progress.setFormat("embedding: starting…")
        self.embed_progress.show()
        self.embed_stop.show()
        self.embed_action.setEnabled(False)
        self.open_embeddings_action.setEnabled(False)

    def _on_session_embedding_progressed(self, p: dict) -> None:
        bar = self.embed_progress
        if p["stage"] == "layout":
            bar.setRange(0, 0)
            bar.setFormat(f"embedded {p['done']:,}: computing the map…")
            return
        bar.setRange(0, max(1, p["total"]))
        bar.setValue(p["done"])
        eta = p.get("eta_s")
        eta_text = f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}" if eta is not None else ""
        skipped = f" · {p['skipped']} skipped" if p.get("skipped") else ""
        bar.setFormat(f"embedding {p['done']:,}/{p['total']:,} · {p['images_per_second']:.0f} img/s{eta_text}{skipped}")
        self.throughput_label.setText(f"{p['images_per_second']:,.0f} img/s")

    def _on_session_embedding_ended(self, run_dir: str, failure: str) -> None:
        self.embed_progress.hide()
        self.embed_stop.hide()
        self.embed_action.setEnabled(True)
        self.open_embeddings_action.setEnabled(True)
        if not failure:
            self.statusBar().showMessage(f"embedded: {run_dir}", 10_000)

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

        def on_done(result) -> None:
            message = f"{done}; the encoder to {result.folder}: " + "; ".join(result.lines())
            self.statusBar().showMessage(message, 20_000)
            self.export_finished.emit(message)

        def on_failed(error: str) -> None:
            self.show_error(f"Export of the encoder failed: {error}")
            self.export_finished.emit(f"failed: {error}")

        self.session.export_encoder(run, folder / "encoder", list(encoder_formats), on_done, on_failed)

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
    def _on_theme_action_triggered(self) -> None:
        """Ctrl+Shift+D or View > Dark theme: say so at once, then restyle. Restyling re-polishes every
        widget of the window (about 0.5 s, several seconds on a busy machine), during which the key
        seemed to do nothing."""
        dark = self.theme_action.isChecked()
        self.statusBar().showMessage(f"switching to the {'dark' if dark else 'light'} theme…")
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)

        def switch() -> None:
            try:
                self.apply_theme(dark)
            finally:
                QApplication.restoreOverrideCursor()
            self.statusBar().showMessage(f"{'dark' if dark else 'light'} theme (Ctrl+Shift+D to switch back)", 5000)

        QTimer.singleShot(40, switch)  # the message is painted before the window is restyled

    def apply_theme(self, dark: bool) -> None:
        self.dark = dark
        qss = RESOURCES / ("dark.qss" if dark else "light.qss")
        app = QApplication.instance()
        if app is not None and qss.exists():
            app.setStyleSheet(qss.read_text())
        for view in self.map_panel.views:
            view.set_theme(dark)
        for panel in self.dock_panels.values():
            if panel.dark != dark:  # most follow the new palette by themselves (Panel.changeEvent)
                panel.set_theme(dark)
        if hasattr(self, "theme_action"):
            self.theme_action.setChecked(dark)
        self.settings.setValue("view/theme", "dark" if dark else "light")

    def available_geometry(self) -> QRect:
        """The free area (without task bars) of the screen that holds the window's centre."""
        if self.screen_area is not None:
            return QRect(self.screen_area)
        screen = QGuiApplication.screenAt(self.frameGeometry().center()) or self.screen() \
            or QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def keep_on_screen(self, available: QRect | None = None) -> None:
        """Move and shrink the window, frame included, into ``available`` (default: its screen's free
        area): a geometry saved on a larger screen, or a window manager's frame, never leaves the
        status bar or the right dock off screen. Maximised and full-screen windows are the window
        manager's to place."""
        if self.windowState() & (Qt.WindowState.WindowMaximized | Qt.WindowState.WindowFullScreen):
            return
        available = available or self.available_geometry()
        frame, inner = self.frameGeometry(), self.geometry()
        target = clamped(frame, available)
        if target != frame:
            extra = frame.size() - inner.size()  # the frame's borders and title bar
            self.setGeometry(QRect(target.topLeft() + (inner.topLeft() - frame.topLeft()), target.size() - extra))

    def _restore_settings(self) -> None:
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
        """Closing asks only while a job trains (a finished run and the warm training process are never
        waited for); Yes stops the job, and the window closes once the job has saved its checkpoint and
        summary, after CLOSE_GRACE_MS at most (what it saved before stays saved); a second close does
        not wait at all."""
        s = self.session
        if s.training_state.active:
            if not self.confirm_close():
                event.ignore()
                return
            s.stop_training()
        if s.training_state == TrainingState.STOPPING and not self._close_now:
            if self._closing:  # closed again while waiting: now
                self._close_now = True
            else:
                self._closing = True
                QTimer.singleShot(CLOSE_GRACE_MS, self._close_without_waiting)
                self.statusBar().showMessage(
                    f"stopping the training job: the window closes once its run is saved (at most "
                    f"{CLOSE_GRACE_MS // 1000} s; close again to close now)…")
                event.ignore()
                return
        self.save_settings()
        s.shutdown()
        event.accept()

    def _close_without_waiting(self) -> None:
        if self.isVisible():
            self._close_now = True
            self.close()
