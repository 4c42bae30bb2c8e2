"""Event-loop latency of the window while a CPU training job runs and the map refreshes.

A 16 ms QTimer (Qt.PreciseTimer) ticks on the GUI thread; each tick records the time since the last
one. Measured twice in the same process and window:

1. idle: the window with the curve and health docks and a map, nothing running;
2. training: ``engine.training.train`` runs in a child process (``engine.child.ChildJob``, the window's
   default; ``--job thread``: in a plain Python thread of this process) (torch limited to all cores but
   one by ``engine.device.configure_threads(leave_one_core=True)``); every event crosses to the GUI
   thread through a queued Qt signal; the GUI thread feeds the new records to one panel per 16 ms
   frame, round robin, as the window does (``--together``: all panels at once at 20 Hz), and at each snapshot refreshes the map (the snapshot's aligned 2D coordinates,
   animated over 300 ms at 60 fps, as the window does).

Printed: p50 / p99 / max of the tick interval and of the lateness (interval - 16 ms) in both phases,
the ratio training / idle of the p99 interval, and the target (p99 interval <= 30 ms). Also the time
the GUI thread spent per panel update, so a slow panel shows up by name.

    python bench/gui_latency.py                              # digits, supervised, 3 epochs
    python bench/gui_latency.py --dataset fashion-mnist --train-size 4000 --method simclr
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

TICK_MS = 16
TARGET_P99_MS = 30.0


def stats(intervals_ms: list[float]) -> dict[str, float]:
    a = np.asarray(intervals_ms, dtype=float)
    if len(a) == 0:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="supervised")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--all-visible", action="store_true",
                        help="show every panel at once instead of the window's tabbed layout")
    parser.add_argument("--eval-every", type=float, default=0.5, help="epochs between evaluations (snapshots)")
    parser.add_argument("--projection", default="pca", help="the live map of the engine: pca, umap or tsne")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--no-draw", action="store_true",
                        help="events cross to the GUI thread but no panel or map is fed: the training's own cost")
    parser.add_argument("--together", action="store_true",
                        help="feed all panels at once at 20 Hz instead of one panel per 16 ms frame (round robin, "
                             "as the window does)")
    parser.add_argument("--verbose", action="store_true", help="list the late ticks and what ran during them")
    parser.add_argument("--job", choices=("process", "thread"), default="process",
                        help="where the training runs: a child process (the window's default) or a thread here")
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="sys.setswitchinterval for the run (Python's default is 5 ms)")
    args = parser.parse_args(argv)
    stagger = not args.together

    import pyqtgraph as pg
    from PySide6.QtCore import QObject, Qt, QTimer, Signal
    from PySide6.QtWidgets import QApplication, QGridLayout, QWidget

    from engine.device import configure_threads
    from engine.runs import load_snapshot
    from engine.config import TrainConfig
    from engine.training import train
    from explorer.views.curves import LossPlot, ProbePlot
    from explorer.views.health import CollapsePanel, PropertiesPanel, TripletPanel

    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    threads = configure_threads(leave_one_core=True)
    app = QApplication.instance() or QApplication([])

    # the window: a map and the five docks ---------------------------------------------------------
    window = QWidget()
    grid = QGridLayout(window)
    map_widget = pg.PlotWidget()
    map_widget.setObjectName("projection_view")
    try:  # the window's own map item when it is there, else pyqtgraph's scatter
        from explorer.views.map_view import PointCloudItem, class_palette

        cloud = PointCloudItem()
        map_kind = "PointCloudItem (explorer.views.map_view)"

        def draw_map(xy, labels):
            cloud.set_data(xy, class_palette(int(labels.max()) + 1)[np.maximum(labels, 0)])
    except Exception:  # noqa: BLE001 - the bench must run without the shell's map
        cloud = pg.ScatterPlotItem(size=4, pen=None)
        map_kind = "pg.ScatterPlotItem (map_view not importable)"
        brushes = [pg.mkBrush(pg.intColor(i, 10)) for i in range(10)]

        def draw_map(xy, labels):
            cloud.setData(pos=xy, brush=[brushes[int(c) % 10] for c in labels])
    map_widget.addItem(cloud)
    panels = {"loss": LossPlot(), "probe": ProbePlot(), "collapse": CollapsePanel(), "triplets": TripletPanel(),
              "properties": PropertiesPanel()}
    if args.all_visible:  # every panel on screen at once: more painting than the window's layout
        grid.addWidget(map_widget, 0, 0, 2, 1)
        grid.addWidget(panels["loss"], 0, 1)
        grid.addWidget(panels["probe"], 0, 2)
        grid.addWidget(panels["collapse"], 1, 1, 1, 2)
        grid.addWidget(panels["triplets"], 2, 0, 1, 2)
        grid.addWidget(panels["properties"], 2, 2)
    else:  # the window's default layout: map above, loss | probe below, the rest tabbed behind them
        from PySide6.QtWidgets import QTabWidget

        left, right = QTabWidget(), QTabWidget()
        for tabs, names in ((left, ("loss", "properties")), (right, ("probe", "collapse", "triplets"))):
            for name in names:
                tabs.addTab(panels[name], name)
        grid.addWidget(map_widget, 0, 0, 1, 2)
        grid.addWidget(left, 1, 0)
        grid.addWidget(right, 1, 1)
    window.resize(1500, 1000)
    window.show()

    # the 16 ms timer --------------------------------------------------------------------------------
    ticks: dict[str, list[float]] = {"idle": [], "training": []}
    slow: list[tuple[float, float]] = []  # (start, end) of ticks later than 50 ms while training
    log: list[tuple[float, str]] = []  # (time, what): events received and GUI-thread work done
    phase = {"name": None, "last": None}

    def on_tick():
        now = time.perf_counter()
        if phase["name"] is not None and phase["last"] is not None:
            ticks[phase["name"]].append((now - phase["last"]) * 1000)
            if phase["name"] == "training" and now - phase["last"] > 0.05:
                slow.append((phase["last"], now))
        phase["last"] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(on_tick)
    timer.start()

    def run_for(seconds: float, name: str | None):
        phase["name"], phase["last"] = name, None
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    # the worker thread and its signal ---------------------------------------------------------------
    class Bridge(QObject):
        event_happened = Signal(object)  # emitted in the worker thread, delivered queued in the GUI thread

    bridge = Bridge()
    pending: list[dict] = []
    latest_snapshot: dict = {}
    done = threading.Event()
    update_ms: dict[str, list[float]] = {name: [] for name in panels} | {"map": []}
    counts = {"records": 0, "snapshots": 0, "failed": None}
    animation = {"from": None, "to": None, "labels": None, "t0": 0.0}

    def on_event(event):  # GUI thread: keep it cheap, the flush timer draws
        log.append((time.perf_counter(), f"event {event.kind}"))
        if event.kind == "started" and phase["name"] is None:
            # ticks count from the job's first event: a child process's start-up (imports) is quiet
            phase["name"], phase["last"] = "training", None
        if event.kind == "snapshot":
            latest_snapshot["event"] = event
            counts["snapshots"] += 1
        if event.kind == "failed":
            counts["failed"] = event.message
        pending.append(event.to_record())
        counts["records"] += 1

    bridge.event_happened.connect(on_event, Qt.ConnectionType.QueuedConnection)

    def flush():
        if args.no_draw:
            pending.clear()
            latest_snapshot.clear()
            return
        if pending:
            batch = pending[:]
            pending.clear()
            for name in panels:
                backlog[name].extend(batch)
        if stagger:
            # one panel per frame, round robin: a redraw of every plot at once (an evaluation
            # changes all of them) would be painted in one frame
            names = [n for n in panels if backlog[n]]
            if names:
                turn["i"] = (turn["i"] + 1) % len(panels)
                ordered = list(panels)[turn["i"]:] + list(panels)[:turn["i"]]
                feed(next(n for n in ordered if backlog[n]))
        else:
            for name in panels:
                if backlog[name]:
                    feed(name)
        event = latest_snapshot.pop("event", None)
        if event is not None:
            t0 = time.perf_counter()
            snap = load_snapshot(Path(event.path)) if event.path else {}
            xy = snap.get("coords")
            if xy is None:  # no 2D layout saved: the two leading principal axes
                z = np.asarray(event.embeddings, dtype=np.float32)
                z = z - z.mean(0)
                xy = z @ np.linalg.svd(z, full_matrices=False)[2][:2].T
            xy = np.asarray(xy, dtype=np.float32)
            start = animation["to"] if animation["to"] is not None and len(animation["to"]) == len(xy) else xy
            animation.update({"from": start, "to": xy, "labels": np.asarray(event.labels), "t0": time.perf_counter(),
                              "drawn_final": False})
            update_ms["map"].append((time.perf_counter() - t0) * 1000)

    backlog: dict[str, list[dict]] = {name: [] for name in panels}
    turn = {"i": 0}

    def feed(name: str) -> None:
        batch = backlog[name][:]
        backlog[name].clear()
        t0 = time.perf_counter()
        panels[name].add_records(batch)
        update_ms[name].append((time.perf_counter() - t0) * 1000)
        log.append((t0, f"{name} {update_ms[name][-1]:.0f} ms"))

    def animate():
        if animation["to"] is None:
            return
        u = min(1.0, (time.perf_counter() - animation["t0"]) / 0.3)
        if u >= 1.0 and animation.get("drawn_final"):
            return
        t0 = time.perf_counter()
        xy = animation["from"] + (animation["to"] - animation["from"]) * (u * u * (3 - 2 * u))
        draw_map(xy, animation["labels"])
        animation["drawn_final"] = u >= 1.0
        update_ms["map"].append((time.perf_counter() - t0) * 1000)

    flush_timer = QTimer()
    flush_timer.setInterval(16 if stagger else 50)  # one panel a frame, or all at 20 Hz
    flush_timer.timeout.connect(flush)
    anim_timer = QTimer()
    anim_timer.setInterval(16)
    anim_timer.timeout.connect(animate)

    out = tempfile.mkdtemp(prefix="gui-latency-")
    config = TrainConfig(method=args.method, dataset=args.dataset, epochs=args.epochs, train_size=args.train_size,
                         test_size=args.test_size, eval_every=args.eval_every, projection=args.projection,
                         device="cpu", out=out, run_name="bench")

    def work():
        from engine.child import take_child

        try:
            if args.job == "thread":
                events = train(config)
            else:
                child = take_child()  # warm: prepared before the idle phase, as the window does at start
                child.start(config)
                events = child.events()
            for event in events:
                bridge.event_happened.emit(event)
        finally:
            done.set()

    # warm-up: the first paint of every panel, and the imports the window does at start-up
    # (engine.child.warm_up) so the job does not import extension modules under the GIL
    from engine.child import warm_up

    warm_up()
    if args.job == "process":
        from engine.child import prepare_standby

        prepare_standby()  # warms up during the idle phase, which it slightly loads (as in the window)
    run_for(1.0, None)
    print(f"map item: {map_kind}; job in a {args.job}; torch threads in the job: {threads} of {os.cpu_count()} cores; "
          f"switch interval {sys.getswitchinterval() * 1000:g} ms")
    print(f"idle: {args.idle_seconds:g} s ...", flush=True)
    run_for(args.idle_seconds, "idle")

    print(f"training: {args.method} on {args.dataset}, {args.epochs} epochs, evaluation every {args.eval_every:g} "
          f"epoch, projection {args.projection}{', nothing drawn' if args.no_draw else ''}"
          f"{', panels fed one per frame' if stagger else ', panels fed together at 20 Hz'} ...", flush=True)
    flush_timer.start()
    anim_timer.start()
    worker = threading.Thread(target=work, name="training", daemon=True)
    started = time.perf_counter()
    phase["name"], phase["last"] = None, None  # set by the first event
    worker.start()
    while not done.is_set():
        app.processEvents()
        time.sleep(0.001)
    train_seconds = time.perf_counter() - started  # with a child process's start-up
    phase["name"] = None
    app.processEvents()
    flush()
    for name in panels:
        if backlog[name]:
            feed(name)
    worker.join()
    flush_timer.stop()
    anim_timer.stop()
    timer.stop()

    if counts["failed"]:
        print(f"training failed: {counts['failed']}")
        return 1
    idle, busy = stats(ticks["idle"]), stats(ticks["training"])
    print(f"\ntraining took {train_seconds:.1f} s; {counts['records']} events, {counts['snapshots']} snapshots")
    print(f"{'phase':<10} {'ticks':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   lateness p99 (interval - {TICK_MS} ms)")
    for name, s in (("idle", idle), ("training", busy)):
        print(f"{name:<10} {s['n']:>6} {s['p50']:>8.1f} {s['p99']:>8.1f} {s['max']:>8.1f}   {s['p99'] - TICK_MS:>6.1f}")
    ratio = busy["p99"] / idle["p99"] if idle["p99"] > 0 else float("nan")
    print(f"ratio training / idle (p99 interval): {ratio:.2f}")
    verdict = "MET" if busy["p99"] <= TARGET_P99_MS else "MISSED"
    print(f"target: p99 interval <= {TARGET_P99_MS:g} ms while training: {verdict} ({busy['p99']:.1f} ms)")
    print("\nGUI-thread time per update (ms): name  calls  p50  p99  max")
    for name, values in update_ms.items():
        s = stats(values)
        print(f"  {name:<11} {s['n']:>5} {s['p50']:>6.2f} {s['p99']:>6.2f} {s['max']:>6.2f}")
    if args.verbose:
        print("\nticks later than 50 ms while training, with what happened during them (GUI thread):")
        for start, end in slow:
            what = [w for t, w in log if start - 0.01 <= t <= end]
            print(f"  {(end - start) * 1000:6.0f} ms at +{start - started:5.2f} s: {', '.join(what) or '-'}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
