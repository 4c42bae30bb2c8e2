"""The ``embedding-explorer`` command.

    embedding-explorer                 the window, with the digits preset ready
    embedding-explorer open RUN_DIR    the window with a saved run (followed while it is written)
    embedding-explorer train ...       headless training (engine.cli; Qt is never imported)
    embedding-explorer export RUN_DIR  the run's encoder as safetensors + settings, TorchScript, ONNX
    embedding-explorer embed ...       every image of a folder through an encoder, no training (engine.cli)
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "export", "embed"):
        from engine.cli import main as cli_main  # the headless path: no Qt, works on a GPU box

        return cli_main(argv)
    parser = argparse.ArgumentParser(prog="embedding-explorer",
                                     description="Train representations with a few clicks and watch them form. "
                                                 "'embedding-explorer train --help' for the headless trainer.")
    sub = parser.add_subparsers(dest="command")
    op = sub.add_parser("open", help="open a run directory (followed live while another process writes it)")
    op.add_argument("run_dir")
    sub.add_parser("train", help="headless training: see 'embedding-explorer train --help'")
    sub.add_parser("export", help="export a run's encoder: see 'embedding-explorer export --help'")
    sub.add_parser("embed", help="embed every image of a folder, no training: see 'embedding-explorer embed --help'")
    parser.add_argument("--runs", help="folder that receives the runs started in the window (default ./runs)")
    parser.add_argument("--theme", choices=("light", "dark"), help="colour theme")
    args = parser.parse_args(argv)
    refusal = _started_as_ranks()
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    if args.command == "open":  # a mistyped path is an argument error (exit 2), not a window with a dialog
        problem = _not_a_run(args.run_dir)
        if problem:
            parser.print_usage(sys.stderr)
            print(f"error: open {args.run_dir}: {problem}", file=sys.stderr)
            return 2
    return run_window(open_dir=args.run_dir if args.command == "open" else None, runs_root=args.runs,
                      theme=args.theme)


def _started_as_ranks() -> str | None:
    """Why the window does not start when a launcher started it as one of several processes (torchrun,
    srun), or None: it trains in one process, and a distributed run is the command line's."""
    if "WORLD_SIZE" not in os.environ and "SLURM_STEP_NUM_TASKS" not in os.environ:
        return None  # started alone (torch is imported only when a launcher may have started it)
    from engine.distributed import launch_from_environment

    try:
        launch = launch_from_environment()
    except ValueError as error:
        return str(error)
    if launch is None or launch.world_size == 1:
        return None
    return (f"the window was started by {launch.launcher} as process {launch.rank} of {launch.world_size}, and it "
            "trains in one process: a run on several GPUs or machines is the command line's, 'torchrun "
            "--nproc_per_node N -m engine train ...' (or srun ... python -m engine train ...; README, Scale); "
            "start the window alone and open that run while it trains: embedding-explorer open RUN_DIR")


def _not_a_run(path: str) -> str | None:
    """Why ``path`` cannot be opened as a run directory, or None when it can."""
    from pathlib import Path

    folder = Path(path).expanduser()
    if not folder.exists():
        return "the folder does not exist; give a run directory (a folder holding config.json)"
    if not folder.is_dir():
        return "this is a file, not a run directory (a folder holding config.json)"
    if not (folder / "config.json").is_file():
        return "not a run directory: it has no config.json"
    return None


def run_window(open_dir: str | None = None, runs_root: str | None = None, theme: str | None = None) -> int:
    import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from explorer import jobs

    with jobs.garbage_collected_in_gui_thread():  # from the first worker to the last (see explorer.jobs)
        window = _show_window(app, open_dir, runs_root, theme)
        code = app.exec()
        if not jobs.shutdown(timeout_ms=3000):
            # a computation nobody will see (a projection in C) cannot be interrupted, and the
            # interpreter would wait for it at exit: everything is saved, leave without it
            os._exit(code)
        window.deleteLater()  # tear the widgets down before the interpreter does (PySide6 exits cleanly)
        app.processEvents()
        del window
    return code


def _show_window(app, open_dir: str | None, runs_root: str | None, theme: str | None):
    """The main window, made and shown, its run opened, its warm-up started."""
    import pyqtgraph as pg

    app.setApplicationName("Embedding Explorer")
    app.setOrganizationName("EmbeddingExplorer")
    pg.setConfigOptions(antialias=True)
    splash = _splash("Embedding Explorer — loading the engine (torch)…")
    from engine.device import configure_threads

    configure_threads(leave_one_core=True)  # the GUI thread keeps a core while torch trains
    from explorer.main_window import MainWindow

    window = MainWindow(runs_root=runs_root)
    splash.finish(window)
    if theme:
        window.apply_theme(theme == "dark")
    if open_dir:
        window.open_run(open_dir)
    window.show()
    _close_on_ctrl_c(window)
    window.session.warm_up()  # imports and a warm training process: Start then finds them ready
    return window


def _close_on_ctrl_c(window) -> None:
    """Ctrl-C in the terminal closes the window as Ctrl+Q does: a training job stops as with Stop
    (checkpoint, summary and end record saved). Python runs its signal handlers only between
    bytecodes, so a timer gives it a moment every 200 ms while Qt's event loop waits."""
    import signal

    from PySide6.QtCore import QTimer

    def close(*_) -> None:
        window.confirm_close = lambda: True  # the person asked already, in the terminal
        window.close()

    signal.signal(signal.SIGINT, close)
    timer = QTimer(window, interval=200)
    timer.timeout.connect(lambda: None)
    timer.start()


def _splash(text: str):
    """A small window shown at once: importing torch takes seconds before the main window exists."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPainter, QPixmap
    from PySide6.QtWidgets import QApplication, QSplashScreen

    pixmap = QPixmap(460, 120)
    pixmap.fill(QColor("#1f77b4"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("white"))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    splash = QSplashScreen(pixmap)
    splash.show()
    QApplication.processEvents()
    return splash


if __name__ == "__main__":
    sys.exit(main())
