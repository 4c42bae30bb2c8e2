"""The session: what the window shows, in one QObject that every view reads and listens to.

It holds the runs (live ones, driven by a ``TrainingJob``, and opened ones, read from their run
directory and followed while another process writes them), which run is selected (and which is
compared beside it), the selected point and the selected points (as rows of the dataset's test
split, so two runs on the same data share a selection), the projection, the colouring and the
time-lapse frame. Views never call each other: they change the session and redraw on its signals.

The session also owns the window's background work (Orange's t-SNE widget's way: a view asks, the
session starts the job and hands the result on): the training job (``start_training``), the images of a
run (``request_dataset``), the 2D maps in other projections than the engine's (``coords``, then
``coords_ready``), the cluster ids of each snapshot, numbered after the snapshot before (``clusters``,
then ``clusters_ready``), the neighbour index of a snapshot (``neighbour_index``, built in a worker for
a large one, then ``neighbour_index_ready``), the trained method rebuilt from a checkpoint (``request_trained_method``), the warm training
process (``warm_up``) and a folder being embedded (``start_embedding``, then the run it wrote opens).
Views never start work.

Threads: everything here runs in the GUI thread; the work runs in ``explorer.jobs`` workers, whose
results arrive through queued signals. Training events are buffered; a 50 ms timer hands them on in
batches (records to the panels, the latest snapshot to the map), so a fast job cannot flood the event
loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from engine.metrics.clusters import ALGORITHMS as CLUSTERINGS
from explorer import jobs
from explorer.state import BarTriplets, MapSnapshot, RunStatus, TrainingState

FLUSH_MS = 50
FOLLOW_MS = 500
SCAN_MS = 5000  # the runs folder is listed again this often (runs a script or another window started)
INLINE_INDEX_VALUES = 1 << 21  # a neighbour index of at most this many values (rows x dims) is built at once
INDEXES_KEPT = 2  # neighbour indexes kept (a million 64-d rows: 256 MB each)
NOTES_SHOWN = 20  # notes on a run file's unreadable parts posted at once; the rest are counted
COLOURINGS = {"class": "class", "cluster": "cluster", "correct": "kNN correct / wrong",
              "probe": "linear probe correct / wrong",
              "overlap": "neighbour overlap (map honesty)", "triplet": "triplet category (anchor = selected)"}


def dataset_key(config: dict) -> tuple:
    """What decides the images of a run (or of any config): configs with one key share one loaded dataset."""
    return (config.get("dataset"), config.get("data_root"), config.get("train_size"), config.get("test_size"),
            config.get("imbalance"), config.get("seed", 0))


@dataclass
class RunState:
    """One run as the window knows it."""

    id: str
    name: str
    path: Path | None = None
    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    snapshots: list[MapSnapshot] = field(default_factory=list)
    coords: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # (snapshot, projection) -> (n, 2)
    # algorithm -> the cluster ids of snapshots 0, 1, ... (a prefix), each numbered after the one before
    clusters: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # snapshot -> whether a linear probe fitted without each point names its class (None: no probe)
    probe_correct: dict[int, np.ndarray | None] = field(default_factory=dict)
    live: bool = False  # trained by this window now
    following: bool = False  # another process writes it; polled
    status: RunStatus = RunStatus.RUNNING
    message: str = ""
    damage: str = ""  # why its files do not say what was trained (engine.runs.read_listing), if so
    collapse_step: int | None = None  # the first evaluation with the worst verdict so far, if not "healthy"
    collapse_verdict: str = ""  # that verdict ("dimensional collapse", "near collapse", "complete collapse")
    dataset: Any = None  # engine.data.ImageDataset once loaded (thumbnails)
    collection: Any = None  # engine.schema.Collection of an embed run, once read (its arrays memory-mapped)
    collection_loading: bool = False
    follower: Any = None
    known_snapshots: set[str] = field(default_factory=set)
    # snapshots that did not fit their schema, by name: (size, mtime) when read, so each is noted once
    bad_snapshots: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what of its files could not be read (engine/schema.py)
    started: float = field(default_factory=time.monotonic)
    total_steps: int = 0
    steps_per_epoch: int = 1
    start_step: int = 0
    device: str = ""

    @property
    def dataset_key(self) -> tuple:
        return dataset_key(self.config)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names") or [])

    @property
    def is_collection(self) -> bool:
        """A run of ``embed``: a whole collection's embeddings (engine/schema.py), no training."""
        return self.config.get("method") == "embed"

    def point_name(self, row: int) -> str:
        """How a person reads a point: its image file in a collection, else its row of the test split."""
        items = self.collection.items if self.collection is not None else None
        if items is not None and 0 <= row < len(items) and items[row].get("path"):
            return items[row]["path"]
        return f"{'image' if self.is_collection else 'test image'} {row}"


class Session(QObject):
    run_added = Signal(str)
    runs_listed = Signal()  # ``listings`` holds the runs folder as read now
    run_changed = Signal(str)  # status, message, collapse mark
    run_selected = Signal(str)
    compare_changed = Signal(str)  # "" when nothing is compared
    records_added = Signal(str, list)
    snapshot_added = Signal(str, int)  # run, index of the newest snapshot
    dataset_ready = Signal(str)
    coords_ready = Signal(str, int, str)  # run, snapshot index, projection: run.coords has that map now
    clusters_ready = Signal(str, str)  # run, algorithm: run.clusters has more snapshots' ids now
    neighbour_index_ready = Signal(str)  # run: neighbour_index() has its snapshot's index now (or a failure)
    probe_ready = Signal(str, int)  # run, snapshot index: run.probe_correct has it now (or a failure)
    progress_changed = Signal(str, dict)  # run, {step, epoch, total_steps, images_per_second, eta_s}
    point_selected = Signal(int)  # test-split row, -1 for none
    rows_selected = Signal(object)  # np.ndarray of test-split rows
    neighbours_changed = Signal(object)  # test-split rows of the selected point's neighbours
    bar_triplets_changed = Signal(object)  # the BarTriplets of a clicked histogram bar (None: none)
    view_changed = Signal()  # projection, colouring or frame
    training_state_changed = Signal(str)  # a TrainingState
    embedding_progressed = Signal(dict)  # {stage, done, total, skipped, images_per_second, eta_s, run_dir}
    embedding_ended = Signal(str, str)  # the run directory ("" if none), and why it failed ("" when it did not)
    message_posted = Signal(str, str)  # level (info, warning, error), text

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.runs: dict[str, RunState] = {}
        self.runs_root: Path | None = None
        self.listings: dict[str, Any] = {}  # run id -> engine.runs.RunListing of the runs folder, newest first
        self._scanning = False
        self.current_id = ""
        self.compare_id = ""
        self.selected_row = -1
        self.selected_rows = np.zeros(0, dtype=np.int64)
        self.neighbour_rows = np.zeros(0, dtype=np.int64)
        self.bar_triplets: BarTriplets | None = None
        self._bar_request: tuple | None = None
        self.projection = "umap"
        self.colour_by = "class"
        self.cluster_algorithm = "kmeans"  # one of CLUSTERINGS: the map's cluster colouring
        self.hulls = True  # outline each cluster on the map (when colouring by cluster)
        self.frame = -1  # index into the run's snapshots; -1 follows the newest
        self.trails = False
        self.centroids = False
        self.job: jobs.TrainingJob | None = None
        self.embed_job: jobs.EmbedJob | None = None  # File > Embed a folder…: one at a time
        self._embed_run_dir = ""
        self.training_state = TrainingState.IDLE
        self._job_run: dict[int, str] = {}
        self._pending_records: dict[str, list[dict]] = {}
        self._pending_snapshot: set[str] = set()
        self._pending_progress: dict[str, dict] = {}
        self._datasets: dict[tuple, Any] = {}
        self._dataset_waiters: dict[tuple, list[tuple[Callable, Callable | None]]] = {}  # while loading
        self._projections: dict[tuple[str, int, str], Any] = {}  # (run, snapshot, projection) being computed
        self._clusterings: dict[tuple[str, str], Any] = {}  # (run, algorithm) being computed
        self.cluster_failures: dict[tuple[str, str], str] = {}  # (run, algorithm) -> why none could be found
        # (run, id of the snapshot, metric) -> (the snapshot, its engine.neighbours.NeighbourIndex), newest last
        self._neighbour_indexes: dict[tuple[str, int, str], tuple[MapSnapshot, Any]] = {}
        self._index_jobs: dict[tuple[str, int, str], Any] = {}  # the same keys, being built in a worker
        self.index_failures: dict[tuple[str, int, str], str] = {}
        self._probes: dict[tuple[str, int], Any] = {}  # (run, snapshot) whose probe is being fitted
        self.probe_failures: dict[tuple[str, int], str] = {}  # (run, snapshot) -> why no probe was fitted
        self._methods: dict[tuple, Any] = {}  # (run dir, checkpoint key) -> the rebuilt method
        self._method_waiters: dict[tuple, list[tuple[Callable, Callable]]] = {}
        self._closed = False
        self._flush = QTimer(self, interval=FLUSH_MS)
        self._flush.timeout.connect(self._on_flush_timeout)
        self._flush.start()
        self._follow = QTimer(self, interval=FOLLOW_MS)
        self._follow.timeout.connect(self.poll_followed)
        self._follow.start()
        self._scan = QTimer(self, interval=SCAN_MS)
        self._scan.timeout.connect(self.scan_runs)

    # runs ----------------------------------------------------------------------------------------
    @property
    def current(self) -> RunState | None:
        return self.runs.get(self.current_id)

    @property
    def compared(self) -> RunState | None:
        return self.runs.get(self.compare_id)

    def select_run(self, run_id: str) -> None:
        if run_id not in self.runs or run_id == self.current_id:
            return
        self.current_id = run_id
        self.frame = -1
        if self.compare_id == run_id:
            self.compare_id = ""
            self.compare_changed.emit("")
        self.run_selected.emit(run_id)
        self.view_changed.emit()

    def set_compare(self, run_id: str) -> None:
        """Show ``run_id`` beside the current run ("" to stop). Both must be of the same dataset."""
        if run_id and run_id in self.runs and self.current is not None:
            if self.runs[run_id].dataset_key[:1] != self.current.dataset_key[:1]:
                raise ValueError(f"run {self.runs[run_id].name} is on {self.runs[run_id].config.get('dataset')}, "
                                 f"not {self.current.config.get('dataset')}: side by side needs the same dataset")
        self.compare_id = run_id if run_id in self.runs and run_id != self.current_id else ""
        self.compare_changed.emit(self.compare_id)

    def add_run(self, run: RunState, select: bool = True) -> None:
        """Show ``run`` (made by a script or a test) as if it had been opened."""
        self.runs[run.id] = run
        self.run_added.emit(run.id)
        self._request_run_dataset(run)
        if select or not self.current_id:
            self.select_run(run.id)

    def watch_runs_folder(self, root: str | Path) -> None:
        """List the run directories in ``root`` now and every SCAN_MS (``listings``, ``runs_listed``):
        the runs of earlier sessions, of scripts, of another window, with their status."""
        self.runs_root = Path(root).expanduser()
        self.scan_runs()
        self._scan.start()

    def scan_runs(self) -> None:
        """Read the runs folder again, in a worker (engine.runs.list_runs: config.json and the end of
        metrics.jsonl of each run, through the run files' schema)."""
        if self.runs_root is None or self._scanning or self._closed:
            return
        from engine.runs import list_runs

        self._scanning = True
        jobs.run(list_runs, self.runs_root, owner=self, on_done=self._on_scan_done,
                 on_failed=self._on_scan_failed)

    def _on_scan_done(self, listings: list) -> None:
        self._scanning = False
        fresh = {str(r.path.resolve()): r for r in listings}
        if [(k, r.status, r.step) for k, r in fresh.items()] != [(k, r.status, r.step) for k, r in self.listings.items()]:
            self.listings = fresh
            self.runs_listed.emit()

    def _on_scan_failed(self, message: str) -> None:
        self._scanning = False
        self.message_posted.emit("warning", f"the runs folder {self.runs_root} could not be listed: {message}")

    def open_run(self, path: str | Path, select: bool = True) -> RunState:
        """Open a run directory; keep following it while it has no ``finished``/``failed`` line.

        Its files are read as input from elsewhere (engine/schema.py): what does not fit is left out
        and noted (``message_posted``), and the run shows what is readable."""
        from engine.runs import CONFIG, METRICS, MetricsFollower, RunDir

        path = Path(path).expanduser().resolve()
        if not (path / CONFIG).exists():
            raise ValueError(f"{path} is not a run directory: it has no {CONFIG}")
        run_id = str(path)
        if run_id in self.runs:
            if select:
                self.select_run(run_id)
            return self.runs[run_id]
        config = RunDir(path).read_config()
        run = RunState(run_id, path.name, path, config.value or {}, status=RunStatus.RUNNING)
        run.follower = MetricsFollower(path / METRICS)
        run.following = True
        self._ingest_records(run, run.follower.poll())
        self._load_new_snapshots(run)
        from engine.runs import read_listing

        listing = read_listing(path)  # as the runs folder's list reads it
        run.damage = listing.message if listing.status == "damaged" else ""
        if run.status == RunStatus.RUNNING:
            # without an end record it is followed while a writer is at it; one that died left it stopped
            if listing.status == "stopped":
                run.status, run.message = RunStatus.STOPPED, listing.message
            else:
                run.status = RunStatus.FOLLOWING
        run.following = not run.status.ended  # an ended run has nothing more to follow
        self.add_run(run, select)
        self._post_notes(run, config.notes + run.follower.take_notes())
        return run

    def poll_followed(self) -> None:
        """Read what followed runs' writers appended since the last poll (timer, every 500 ms)."""
        for run in list(self.runs.values()):
            if not run.following or run.follower is None:
                continue
            records = run.follower.poll()
            self._post_notes(run, run.follower.take_notes())
            n_before = len(run.snapshots)
            self._load_new_snapshots(run)
            if records:
                self._ingest_records(run, records)
                self._pending_records.setdefault(run.id, []).extend(records)
            if len(run.snapshots) > n_before:
                self._pending_snapshot.add(run.id)
            if run.status.ended:
                run.following = False
                self.run_changed.emit(run.id)
        self._on_flush_timeout()

    def _ingest_records(self, run: RunState, records: list[dict]) -> None:
        for r in records:
            run.records.append(r)
            self._note_collapse(run, r)
            kind = r.get("kind")  # records fit their kind's schema (MetricsFollower, engine/schema.py)
            if kind == "started":  # also a resumed run starting again after its earlier end
                run.total_steps = r["total_steps"]
                run.steps_per_epoch = max(1, r["steps_per_epoch"])
                run.device = r["device_name"]
                if run.status.ended:
                    run.status = RunStatus.RUNNING
            elif kind == "plan":  # a time limit changed the run's length
                run.total_steps = r["total_steps"]
            elif kind == "finished":
                run.status = RunStatus.STOPPED if r.get("stopped") else RunStatus.FINISHED
            elif kind == "failed":
                run.status, run.message = RunStatus.FAILED, r.get("message", "")

    def _load_new_snapshots(self, run: RunState) -> None:
        from engine.schema import load_snapshot

        if run.path is None:
            return
        if run.is_collection:
            self._request_collection(run)
            return
        notes = []
        for p in sorted((run.path / "snapshots").glob("step_*.npz")):
            if p.name in run.known_snapshots:
                continue
            try:
                stat = p.stat()
            except OSError:
                continue
            version = (stat.st_size, stat.st_mtime_ns)
            if run.bad_snapshots.get(p.name) == version:
                continue  # noted already; read again once the file changes (a writer that does not rename)
            config = run.config
            if run.dataset is not None and config.get("test_images") is None:
                config = config | {"test_images": len(run.dataset.test)}
            loaded = load_snapshot(p, config)
            snap = MapSnapshot.from_arrays(loaded.value, run.steps_per_epoch, p) if loaded.value is not None else None
            first = run.snapshots[0] if run.snapshots else None
            if snap is not None and first is not None and not np.array_equal(snap.indices, first.indices):
                loaded.notes.append(f"snapshots/{p.name}: its points are not the run's other snapshots' "
                                    "(indices differ), so it cannot join the time-lapse: skipped")
                snap = None
            if snap is not None and first is not None and snap.embeddings.shape[1] != first.embeddings.shape[1]:
                loaded.notes.append(f"snapshots/{p.name}: embedding dimension {snap.embeddings.shape[1]}, "
                                    f"not the run's {first.embeddings.shape[1]}: skipped")
                snap = None
            notes += loaded.notes
            if snap is None:
                run.bad_snapshots[p.name] = version
                continue
            run.bad_snapshots.pop(p.name, None)
            run.known_snapshots.add(p.name)
            run.snapshots.append(snap)
        run.snapshots.sort(key=lambda s: s.step)
        self._post_notes(run, notes)

    def _post_notes(self, run: RunState, notes: list[str]) -> None:
        """Say what of a run's files could not be read: each note (up to NOTES_SHOWN) into the log, and
        where there are several, how many, last (the status bar shows the last message)."""
        if not notes:
            return
        run.notes += notes
        for note in notes[:NOTES_SHOWN]:
            self.message_posted.emit("warning", f"run {run.name}: {note}")
        if len(notes) > 1:
            listed = "listed in the Log tab" if len(notes) <= NOTES_SHOWN else f"the first {NOTES_SHOWN} in the Log tab"
            self.message_posted.emit("warning", f"run {run.name}: {len(notes)} parts of its files could not be read "
                                                f"and are left out ({listed}); the rest is shown")

    # datasets (thumbnails) -----------------------------------------------------------------------
    def request_dataset(self, config: dict, on_ready: Callable[[Any], None],
                        on_failed: Callable[[str], None] | None = None) -> None:
        """``on_ready(dataset)`` with the images ``config`` names (dataset, subsets, seed): at once when
        they were loaded before, else from a worker thread; one load however many ask."""
        key = dataset_key(config)
        if key in self._datasets:
            on_ready(self._datasets[key])
            return
        waiting = self._dataset_waiters.setdefault(key, [])
        waiting.append((on_ready, on_failed))
        if len(waiting) == 1:
            from engine.restore import load_run_dataset

            jobs.run(load_run_dataset, dict(config), owner=self,
                     on_done=lambda dataset: self._on_dataset_done(key, dataset),
                     on_failed=lambda message: self._on_dataset_failed(key, message))

    def _on_dataset_done(self, key: tuple, dataset) -> None:
        self._datasets[key] = dataset
        for on_ready, _ in self._dataset_waiters.pop(key, []):
            on_ready(dataset)

    def _on_dataset_failed(self, key: tuple, message: str) -> None:
        for _, on_failed in self._dataset_waiters.pop(key, []):
            if on_failed is not None:
                on_failed(message)

    # a collection (embed): its arrays read memory-mapped in a worker, its thumbnails the images ---------
    def _request_collection(self, run: RunState) -> None:
        """Read an embed run's collection (engine.schema.load_collection) in a worker, once its
        ``embeddings.json`` is there (written last: a run still being embedded is followed until then)."""
        from engine.schema import MANIFEST, load_collection

        if run.collection is not None or run.collection_loading or not (run.path / MANIFEST).exists():
            return
        run.collection_loading = True
        jobs.run(load_collection, run.path, owner=self,
                 on_done=lambda loaded: self._on_collection_loaded(run.id, loaded),
                 on_failed=lambda message: self._on_collection_loaded(run.id, None, message))

    def _on_collection_loaded(self, run_id: str, loaded, message: str = "") -> None:
        from engine.data import ImageDataset, Split

        run = self.runs.get(run_id)
        if run is None:
            return
        run.collection_loading = False
        if loaded is None or loaded.value is None:
            notes = loaded.notes if loaded is not None else [message]
            self._post_notes(run, notes)
            self.message_posted.emit("warning", f"run {run.name}: its embeddings cannot be shown: {notes[-1]}")
            return
        self._post_notes(run, loaded.notes)
        c = run.collection = loaded.value
        if c.manifest.get("layout"):  # the 2D map computed when the run was made is the run's own
            run.config["projection"] = c.manifest["layout"]
            if run_id == self.current_id:  # shown at once: another map of a million points takes minutes
                self.set_projection(c.manifest["layout"])
        run.config.setdefault("class_names", c.class_names)
        rows = np.arange(len(c.embeddings))
        run.snapshots = [MapSnapshot(step=0, epoch=0.0, embeddings=c.embeddings, indices=rows, labels=c.labels,
                                     path=str(c.path), coords=c.coords)]
        if c.thumbnails is not None:
            images = Split(c.thumbnails, c.labels)
            run.dataset = ImageDataset(c.manifest.get("source") or run.name, images, images, c.class_names)
            self.dataset_ready.emit(run_id)
        self.snapshot_added.emit(run_id, 0)

    def _request_run_dataset(self, run: RunState) -> None:
        if run.is_collection:
            return  # its thumbnails come with its collection
        if run.config.get("dataset"):
            self.request_dataset(run.config, lambda dataset: self._on_run_dataset(run.id, dataset),
                                 lambda message: self.message_posted.emit(
                                     "warning", f"images of the run could not be loaded: {message}"))

    def _on_run_dataset(self, run_id: str, dataset) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        rows = max((int(snap.indices.max()) for snap in run.snapshots if len(snap.indices)), default=-1)
        if rows >= len(dataset.test):  # a config.json without test_images could not say so before
            self._post_notes(run, [f"its snapshots show test rows up to {rows}, but {dataset.name} as configured "
                                   f"has {len(dataset.test)} test images: the images are not shown"])
            return
        run.dataset = dataset
        self.dataset_ready.emit(run_id)

    # maps ----------------------------------------------------------------------------------------
    def coords(self, run: RunState, frame: int, projection: str) -> np.ndarray | None:
        """The 2D map of a run's snapshot in ``projection``: kept from before, the engine's own (when the
        run was trained with that projection), or None while a worker computes it (started here, once
        however often it is asked; ``coords_ready`` says when it is there). Each map starts from the
        previous snapshot's and is aligned to it, so the map can animate between snapshots."""
        key = (frame, projection)
        if key in run.coords:
            return run.coords[key]
        snap = run.snapshots[frame]
        if snap.coords is not None and projection == run.config.get("projection", "umap"):
            run.coords[key] = np.asarray(snap.coords, dtype=np.float32)
            return run.coords[key]
        request = (run.id, frame, projection)
        if request not in self._projections:
            from engine.collection import compute_layout
            from engine.projection import layout

            # a collection's map as the embed job draws it: its principal components, read chunk by chunk
            fn, args = ((compute_layout, (snap.embeddings, projection)) if run.is_collection
                        else (layout, (projection, snap.embeddings, run.coords.get((frame - 1, projection)))))
            self._projections[request] = jobs.run(
                fn, *args, owner=self, on_done=lambda xy: self._on_projection_done(request, xy),
                on_failed=lambda message: self._on_projection_failed(request, message))
        return None

    def projections_computing(self) -> list[tuple[str, int, str]]:
        """(run, snapshot, projection) of the maps being computed, oldest first."""
        return list(self._projections)

    def _on_projection_done(self, request: tuple[str, int, str], xy: np.ndarray) -> None:
        self._projections.pop(request, None)
        run_id, frame, projection = request
        run = self.runs.get(run_id)
        if run is not None and frame < len(run.snapshots):
            run.coords[(frame, projection)] = np.asarray(xy, dtype=np.float32)  # kept for scrubbing
            self.coords_ready.emit(run_id, frame, projection)

    def _on_projection_failed(self, request: tuple[str, int, str], message: str) -> None:
        self._projections.pop(request, None)
        run = self.runs.get(request[0])
        self.message_posted.emit("warning", f"the {request[2]} map of {run.name if run else 'a run'} could not "
                                            f"be drawn: {message}")

    # clusters ------------------------------------------------------------------------------------
    def clusters(self, run: RunState, frame: int, algorithm: str | None = None) -> np.ndarray | None:
        """The cluster ids of a run's snapshot (``algorithm``: one of CLUSTERINGS, else the session's),
        numbered after the snapshot before, so a cluster keeps its id and colour through the time-lapse
        (engine.metrics.clusters.follow). The ids the engine saved with a snapshot are used (renamed
        only); the others are computed in a worker: None meanwhile, then ``clusters_ready``. The newest
        snapshot of a live run, whose earlier ones are known, is numbered at once."""
        from engine.metrics.clusters import default_k, follow

        algorithm = algorithm or self.cluster_algorithm
        if algorithm not in CLUSTERINGS:
            raise ValueError(f"clustering {algorithm!r} is not valid; allowed: {', '.join(CLUSTERINGS)}")
        track = run.clusters.setdefault(algorithm, [])
        if frame < len(track):
            return track[frame]
        key = (run.id, algorithm)
        if key in self._clusterings or key in self.cluster_failures:
            return None
        pending = [(snap.embeddings, _saved_clusters(snap, algorithm)) for snap in run.snapshots[len(track):frame + 1]]
        previous = track[-1] if track else None
        k = default_k(run.snapshots[frame].labels, len(run.class_names))
        if len(pending) == 1 and pending[0][1] is not None:  # renaming only: a contingency table
            track.extend(follow(pending, algorithm, k, previous))
            return track[frame]
        start = len(track)
        self._clusterings[key] = jobs.run(
            follow, pending, algorithm, k, previous, owner=self,
            on_done=lambda ids: self._on_clusters_done(key, start, ids),
            on_failed=lambda message: self._on_clusters_failed(key, message))
        return None

    def _on_clusters_done(self, key: tuple[str, str], start: int, ids: list[np.ndarray]) -> None:
        self._clusterings.pop(key, None)
        run = self.runs.get(key[0])
        if run is None:
            return
        track = run.clusters.setdefault(key[1], [])
        if len(track) == start:
            track.extend(ids)
        self.clusters_ready.emit(*key)

    def _on_clusters_failed(self, key: tuple[str, str], message: str) -> None:
        self._clusterings.pop(key, None)
        run = self.runs.get(key[0])
        self.cluster_failures[key] = message
        self.message_posted.emit("warning", f"no {CLUSTERINGS[key[1]]} clusters for {run.name if run else 'a run'}: "
                                            f"{message}")
        self.clusters_ready.emit(*key)

    # the triplets of a histogram bar ---------------------------------------------------------------
    def request_bar_triplets(self, step: float, low: float, high: float, closed: bool = False,
                             from_evaluation: bool = True) -> bool:
        """List the triplets behind a bar of the Triplets panel's histogram: those of the snapshot of
        the evaluation at ``step`` whose D_an - D_ap lies in [low, high) ([low, high] when ``closed``),
        drawn with the run's triplet definition and seed as the evaluation drew them, found in a worker;
        then ``bar_triplets`` and ``bar_triplets_changed``. A training batch's triplets are not kept:
        for a batch's bar (``from_evaluation`` False) the map's snapshot's triplets in the same range
        are listed, and said to be. False when the run has no snapshot to take them from."""
        from engine.methods import run_triplet_definition
        from engine.metrics.triplets import TripletDefinition, triplets_between

        run = self.current
        if run is None or not run.snapshots:
            return False
        snap = next((sn for sn in run.snapshots if sn.step == int(step)), None) if from_evaluation else None
        note = ""
        if snap is None:
            snap = self.snapshot(run)
            note = (f"the triplets of the batch at step {int(step)} are not kept: these are the map's points' "
                    f"triplets in the same range, at step {snap.step}" if not from_evaluation else
                    f"step {int(step)} has no snapshot: these are the triplets at step {snap.step}")
        try:  # the run's own distance and margin, as its evaluations counted with
            definition = run_triplet_definition(run.config)
        except ValueError:
            definition = TripletDefinition()
        seed = run.config.get("seed", 0)
        seed = seed if isinstance(seed, int) else 0
        key = (run.id, snap.step, float(low), float(high), bool(closed), note)

        def ready(found) -> None:
            if found is None:
                rows = np.zeros(0, dtype=np.int64)
                found_rows, labels, d_ap, d_an = (rows, rows, rows), np.zeros((0, 3), np.int64), rows, rows
            else:
                found_rows = tuple(snap.indices[x] for x in (found.anchor, found.positive, found.negative))
                labels = np.stack([snap.labels[x] for x in (found.anchor, found.positive, found.negative)], axis=1)
                d_ap, d_an = found.d_ap, found.d_an
            self.bar_triplets = BarTriplets(run.id, snap.step, float(low), float(high), definition.margin,
                                            *found_rows, labels, d_ap, d_an, bool(closed), note)
            self.bar_triplets_changed.emit(self.bar_triplets)

        self._bar_request = key  # the newest click wins: an older bar's result is dropped

        def done(found) -> None:
            if self._bar_request == key:
                ready(found)

        def failed(message: str) -> None:
            if self._bar_request == key:
                self.message_posted.emit("warning", f"the triplets of that bar could not be listed: {message}")

        jobs.run(triplets_between, snap.embeddings, snap.labels, definition, float(low), float(high), bool(closed),
                 20_000, seed, owner=self, on_done=done, on_failed=failed)
        return True

    # neighbour indexes (the neighbours panel): built once per snapshot and metric ----------------------
    def neighbour_index(self, run: RunState, snap: MapSnapshot, metric: str, build_small: bool = True):
        """The ``engine.neighbours.NeighbourIndex`` of a snapshot's embeddings: kept from before, built
        here at once when small (``INLINE_INDEX_VALUES``; unless ``build_small`` is False: asked ahead,
        when nobody waits for it), or None while a worker builds it (started here, once however often
        it is asked; ``neighbour_index_ready`` says when it is there). A million rows take ~1 s of CPU
        to build: asked when the run opens, the first click does not wait for it."""
        key = (run.id, id(snap), metric)
        kept = self._neighbour_indexes.get(key)
        if kept is not None and kept[0] is snap:
            self._neighbour_indexes[key] = self._neighbour_indexes.pop(key)  # the newest used
            return kept[1]
        if key in self._index_jobs or key in self.index_failures:
            return None
        from engine.neighbours import NeighbourIndex

        if snap.embeddings.size <= INLINE_INDEX_VALUES:
            if not build_small:
                return None
            index = NeighbourIndex(snap.embeddings, metric=metric)
            self._keep_index(key, snap, index)
            return index
        self._index_jobs[key] = jobs.run(
            _click_ready_index, snap.embeddings, metric, _triplet_definition(run, snap), owner=self,
            on_done=lambda index: self._on_index_done(key, snap, index),
            on_failed=lambda message: self._on_index_failed(key, message))
        return None

    def _keep_index(self, key: tuple[str, int, str], snap: MapSnapshot, index) -> None:
        self._neighbour_indexes.pop(key, None)
        self._neighbour_indexes[key] = (snap, index)
        while len(self._neighbour_indexes) > INDEXES_KEPT:
            del self._neighbour_indexes[next(iter(self._neighbour_indexes))]

    def _on_index_done(self, key: tuple[str, int, str], snap: MapSnapshot, index) -> None:
        self._index_jobs.pop(key, None)
        if key[0] in self.runs:
            self._keep_index(key, snap, index)
            self.neighbour_index_ready.emit(key[0])

    def _on_index_failed(self, key: tuple[str, int, str], message: str) -> None:
        self._index_jobs.pop(key, None)
        self.index_failures[key] = message
        self.message_posted.emit("warning", f"no neighbour index: {message}")
        self.neighbour_index_ready.emit(key[0])

    # the linear probe's errors (the map's "linear probe correct / wrong") ------------------------------
    def probe_correct(self, run: RunState, frame: int) -> np.ndarray | None:
        """Per point of a snapshot, whether a linear probe fitted on the other folds names its class
        (engine.metrics.properties.probe_cv_correct, in a worker: a few seconds for thousands of
        points). None until it is in (then ``probe_ready``), when it failed (``probe_failures``), or
        when there is no probe to fit (``frame in run.probe_correct``, its value None)."""
        from engine.metrics.properties import probe_cv_correct

        if frame in run.probe_correct:
            return run.probe_correct[frame]
        key = (run.id, frame)
        if key not in self._probes and key not in self.probe_failures:
            snap = run.snapshots[frame]
            self._probes[key] = jobs.run(
                probe_cv_correct, snap.embeddings, snap.labels, owner=self,
                on_done=lambda correct: self._on_probe_done(key, correct),
                on_failed=lambda message: self._on_probe_failed(key, message))
        return None

    def _on_probe_done(self, key: tuple[str, int], correct: np.ndarray | None) -> None:
        self._probes.pop(key, None)
        run = self.runs.get(key[0])
        if run is not None:
            run.probe_correct[key[1]] = correct
            self.probe_ready.emit(*key)

    def _on_probe_failed(self, key: tuple[str, int], message: str) -> None:
        self._probes.pop(key, None)
        self.probe_failures[key] = message
        run = self.runs.get(key[0])
        self.message_posted.emit("warning", f"no linear probe colouring for {run.name if run else 'a run'}: {message}")
        self.probe_ready.emit(*key)

    def set_cluster_algorithm(self, algorithm: str) -> None:
        if algorithm not in CLUSTERINGS:
            raise ValueError(f"clustering {algorithm!r} is not valid; allowed: {', '.join(CLUSTERINGS)}")
        if algorithm != self.cluster_algorithm:
            self.cluster_algorithm = algorithm
            self.view_changed.emit()

    def set_hulls(self, on: bool) -> None:
        self.hulls = bool(on)
        self.view_changed.emit()

    # the trained method (inspectors) ------------------------------------------------------------------
    def request_trained_method(self, run_dir: Path, checkpoint_key: tuple, dataset,
                               on_ready: Callable[[Any], None], on_failed: Callable[[str], None]) -> None:
        """``on_ready(method)``: the run's method rebuilt from its checkpoint (``engine.restore``), in a
        worker thread; once per checkpoint version however many inspectors ask."""
        key = (str(run_dir), checkpoint_key)
        if key in self._methods:
            on_ready(self._methods[key])
            return
        waiting = self._method_waiters.setdefault(key, [])
        waiting.append((on_ready, on_failed))
        if len(waiting) == 1:
            from engine.restore import load_trained_method

            jobs.run(load_trained_method, run_dir, dataset, owner=self,
                     on_done=lambda result: self._on_method_done(key, result),
                     on_failed=lambda message: self._on_method_failed(key, message))

    def _on_method_done(self, key: tuple, result) -> None:
        method, _dataset = result
        self._methods = {k: v for k, v in self._methods.items() if k[0] != key[0]}  # older checkpoints go
        self._methods[key] = method
        for on_ready, _ in self._method_waiters.pop(key, []):
            on_ready(method)

    def _on_method_failed(self, key: tuple, message: str) -> None:
        for _, on_failed in self._method_waiters.pop(key, []):
            on_failed(message)

    def measure(self, fn: Callable[..., Any], *args, on_done: Callable[[Any], None],
                on_failed: Callable[[str], None]) -> None:
        """``fn(*args)`` for a panel, in a worker thread: a measurement over a snapshot's points that
        would take a frame or more of the GUI thread; ``on_done(result)`` in the GUI thread."""
        jobs.run(fn, *args, owner=self, on_done=on_done, on_failed=on_failed)

    # the encoder taken out (File > Export) ------------------------------------------------------------
    def export_encoder(self, run: RunState, folder: Path, formats: list[str], on_done: Callable[[Any], None],
                       on_failed: Callable[[str], None]) -> None:
        """``engine.export.export_run`` in a worker (exporting ONNX and checking it takes seconds); the
        run's images (already loaded, read-only) are the ones the files are checked on."""
        from engine.export import ONNX_TOLERANCE, export_run

        jobs.run(export_run, run.path, folder, formats, ONNX_TOLERANCE, run.dataset, owner=self,
                 on_done=on_done, on_failed=on_failed)

    # embedding a folder (engine.embed), then opening its run ---------------------------------------
    @property
    def embedding(self) -> bool:
        return self.embed_job is not None

    def start_embedding(self, config) -> int:
        """Embed a folder (an ``engine.embed.EmbedConfig``) in the background; its progress comes as
        ``embedding_progressed``, its end as ``embedding_ended``, and the run opens once it is written."""
        if self.embed_job is not None:
            raise ValueError("a folder is being embedded already: wait for it or stop it first")
        job = jobs.EmbedJob(config, self)
        job.emitted.connect(self._on_embed_job_emitted)
        job.ended.connect(self._on_embed_job_ended)
        self.embed_job, self._embed_run_dir = job, ""
        job.start()
        return job.id

    def stop_embedding(self) -> None:
        """Stop after the current batch: what was embedded is kept, mapped and opened."""
        if self.embed_job is not None:
            self.embed_job.stop()

    def _on_embed_job_emitted(self, job_id: int, event) -> None:
        from engine import events as ev

        if self.embed_job is None or job_id != self.embed_job.id:
            return
        if isinstance(event, ev.Started):
            self._embed_run_dir = event.run_dir
            self.message_posted.emit("info", f"embedding into {event.run_dir} on {event.device_name}")
        elif isinstance(event, ev.Progress):
            self.embedding_progressed.emit({"stage": event.stage, "done": event.done, "total": event.total,
                                            "skipped": event.skipped, "images_per_second": event.images_per_second,
                                            "eta_s": event.eta_s, "run_dir": self._embed_run_dir})
        elif isinstance(event, ev.Message):
            self.message_posted.emit(event.level, event.text)
        elif isinstance(event, ev.Failed):
            self.message_posted.emit("error", f"embedding failed: {event.message}")
            self._end_embedding(event.message)
        elif isinstance(event, ev.Finished):
            run_dir = self._embed_run_dir
            self._end_embedding("")
            try:
                self.open_run(run_dir)
            except (ValueError, OSError) as error:
                self.message_posted.emit("error", f"the embedded run could not be opened: {error}")

    def _end_embedding(self, failure: str) -> None:
        if self.embed_job is not None:
            self.embed_job = None
            self.embedding_ended.emit(self._embed_run_dir, failure)

    def _on_embed_job_ended(self, job_id: int) -> None:
        if self.embed_job is not None and job_id == self.embed_job.id:  # ended without its last event
            self._end_embedding("the embedding job ended without a result")

    # training ------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Imports and data a job needs, loaded ahead in a worker; with jobs in a child process, a
        child started ahead that waits warm (the first step then comes 0.4 s after Start, not 3 s)."""
        from engine.child import warm_up

        jobs.run(warm_up)
        self._prepare_standby()

    def _prepare_standby(self) -> None:
        if not jobs.training_in_thread() and not self._closed:
            from engine.child import prepare_standby

            jobs.run(prepare_standby)

    def start_training(self, config) -> int:
        """Start a training job (engine.config.TrainConfig); returns its id."""
        if self.training_state != TrainingState.IDLE:
            raise ValueError("a training job is already running: stop it first")
        job = jobs.TrainingJob(config, self)
        job.emitted.connect(self._on_job_emitted)
        job.ended.connect(self._on_job_ended)
        self.job = job
        self._set_training_state(TrainingState.RUNNING)
        job.start()
        return job.id

    def pause_training(self) -> None:
        """Ask the job to pause: it holds before its next step, and says so (then PAUSED)."""
        if self.job is not None and self.training_state == TrainingState.RUNNING:
            self.job.pause()
            self._set_training_state(TrainingState.PAUSING)

    def resume_training(self) -> None:
        if self.job is not None and self.training_state in (TrainingState.PAUSING, TrainingState.PAUSED):
            self.job.resume()
            self._set_training_state(TrainingState.RUNNING)
            self._set_status(RunStatus.RUNNING)

    def stop_training(self) -> None:
        """Ask the job to stop after its step; it saves a checkpoint and its summary, then ends."""
        if self.job is not None and self.training_state.active:
            self.job.stop()
            self._set_training_state(TrainingState.STOPPING)
            self._set_status(RunStatus.STOPPING)

    def _set_status(self, status: RunStatus) -> None:
        run_id = self._job_run.get(self.job.id) if self.job else None
        if run_id and run_id in self.runs:
            self.runs[run_id].status = status
            self.run_changed.emit(run_id)

    def _set_training_state(self, state: TrainingState) -> None:
        if state != self.training_state:
            self.training_state = state
            self.training_state_changed.emit(str(state))

    def _on_job_emitted(self, job_id: int, item) -> None:
        from engine import events as ev

        if self.job is None or job_id != self.job.id:
            return  # an older job's late event
        if isinstance(item, MapSnapshot):
            self._on_job_snapshot(job_id, item)
            return
        event = item
        if isinstance(event, ev.Started):
            name = Path(event.run_dir).name
            run = RunState(str(Path(event.run_dir).resolve()), name, Path(event.run_dir), dict(event.config),
                           live=True, total_steps=event.total_steps, steps_per_epoch=event.steps_per_epoch,
                           start_step=event.start_step, device=event.device_name)
            run.known_snapshots = set()
            self._job_run[job_id] = run.id
            self.add_run(run, select=True)
        run_id = self._job_run.get(job_id)
        if isinstance(event, ev.Paused):  # the job holds now: paused for real, not only asked to
            if self.training_state == TrainingState.PAUSING:
                self._set_training_state(TrainingState.PAUSED)
                self._set_status(RunStatus.PAUSED)
            return
        if isinstance(event, ev.Resumed):
            return
        if isinstance(event, ev.Failed):
            self.message_posted.emit("error", f"training failed: {event.message}")
            if run_id:
                self.runs[run_id].status, self.runs[run_id].message = RunStatus.FAILED, event.message
                self.run_changed.emit(run_id)
        if run_id is None:
            if isinstance(event, ev.Failed):
                self._end_training(job_id)
            return
        run = self.runs[run_id]
        if self.training_state == TrainingState.STOPPING and isinstance(event, (ev.StepReport, ev.Snapshot)):
            return  # a stopped job's last steps are not drawn; its files are still written
        record = event.to_record()
        run.records.append(record)
        self._note_collapse(run, record)
        self._pending_records.setdefault(run_id, []).append(record)
        # a Snapshot's arrays (and the engine's 2D map) follow as a MapSnapshot
        if isinstance(event, ev.Message):
            self.message_posted.emit(event.level, event.text)
        elif isinstance(event, ev.Planned):
            run.total_steps = event.total_steps
            self.message_posted.emit("info", event.reason)
        elif isinstance(event, ev.StepReport):
            done = event.step - run.start_step
            elapsed = time.monotonic() - run.started
            eta = elapsed / done * (run.total_steps - event.step) if done > 0 else None
            self._pending_progress[run_id] = {
                "step": event.step, "epoch": event.epoch, "total_steps": run.total_steps,
                "epochs": run.total_steps / max(1, run.steps_per_epoch),
                "images_per_second": event.images_per_second, "eta_s": eta, "loss": event.losses.get("loss")}
        elif isinstance(event, ev.Finished):
            run.status = RunStatus.STOPPED if event.stopped else RunStatus.FINISHED
            self.run_changed.emit(run_id)
            self.message_posted.emit("info", f"run {run.name} {run.status}: {run.path}")
        if isinstance(event, (ev.Finished, ev.Failed)):
            self._end_training(job_id)

    def _on_job_snapshot(self, job_id: int, snap: MapSnapshot) -> None:
        run_id = self._job_run.get(job_id)
        if run_id is None or self.training_state == TrainingState.STOPPING:
            return
        run = self.runs[run_id]
        run.snapshots.append(snap)
        if snap.path:
            run.known_snapshots.add(Path(snap.path).name)
        self._pending_snapshot.add(run_id)

    def _end_training(self, job_id: int) -> None:
        """The job's last event is in: training is over for the window (its worker only tidies up now:
        the child process exits, the next one warms up), so Start and closing need not wait for it."""
        if self.job is None or job_id != self.job.id or self.training_state == TrainingState.IDLE:
            return
        self._on_flush_timeout()
        run_id = self._job_run.get(job_id)
        if run_id:
            run = self.runs[run_id]
            if not run.status.ended:
                run.status = RunStatus.STOPPED
                self.run_changed.emit(run_id)
            run.live = False
        self._set_training_state(TrainingState.IDLE)
        self.scan_runs()  # the folder's listing says how it ended
        if not self.job.in_process:
            self._prepare_standby()  # the next Start finds a warm process

    def _on_job_ended(self, job_id: int) -> None:
        """The job's worker has finished (after its last event, or without one: a job that died)."""
        self._end_training(job_id)

    def _on_flush_timeout(self) -> None:
        records, self._pending_records = self._pending_records, {}
        for run_id, batch in records.items():
            self.records_added.emit(run_id, batch)
        progress, self._pending_progress = self._pending_progress, {}
        for run_id, p in progress.items():
            self.progress_changed.emit(run_id, p)
        snaps, self._pending_snapshot = self._pending_snapshot, set()
        for run_id in snaps:
            self.snapshot_added.emit(run_id, len(self.runs[run_id].snapshots) - 1)

    def current_run_live_id(self) -> str:
        return self._job_run.get(self.job.id, "") if self.job is not None else ""

    # what is shown -------------------------------------------------------------------------------
    def select_point(self, test_row: int) -> None:
        test_row = int(test_row)
        if test_row != self.selected_row:
            self.selected_row = test_row
            self.point_selected.emit(test_row)

    def set_neighbour_rows(self, rows) -> None:
        self.neighbour_rows = np.asarray(rows, dtype=np.int64)
        self.neighbours_changed.emit(self.neighbour_rows)

    def select_rows(self, rows) -> None:
        self.selected_rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.rows_selected.emit(self.selected_rows)

    def set_projection(self, method: str) -> None:
        if method != self.projection:
            self.projection = method
            self.view_changed.emit()

    def set_colour_by(self, mode: str) -> None:
        if mode not in COLOURINGS:
            raise ValueError(f"colour by {mode!r} is not valid; allowed: {', '.join(COLOURINGS)}")
        if mode != self.colour_by:
            self.colour_by = mode
            self.view_changed.emit()

    def set_frame(self, index: int) -> None:
        if index != self.frame:
            self.frame = index
            self.view_changed.emit()

    def set_trails(self, on: bool) -> None:
        self.trails = bool(on)
        self.view_changed.emit()

    def set_centroids(self, on: bool) -> None:
        self.centroids = bool(on)
        self.view_changed.emit()

    def _note_collapse(self, run: RunState, record: dict) -> None:
        """Mark the run with the worst verdict of its evaluations so far and the first step it came
        (the map's badge): a near collapse that becomes complete is then badged as complete. Here,
        not in the collapse panel: a panel tabbed away reads its records only when shown."""
        from engine.metrics.collapse import VERDICTS

        verdict = (record.get("metrics") or {}).get("collapse") if record.get("kind") == "evaluation" else None
        if not (isinstance(verdict, str) and verdict in VERDICTS[1:]):
            return
        worst = VERDICTS.index(run.collapse_verdict) if run.collapse_verdict in VERDICTS else 0
        if VERDICTS.index(verdict) > worst:
            run.collapse_step, run.collapse_verdict = int(record.get("step") or 0), verdict
            if run.id in self.runs:  # a run being opened is read before it is added (add_run announces it)
                self.run_changed.emit(run.id)

    def snapshot(self, run: RunState | None = None, frame: int | None = None) -> MapSnapshot | None:
        """The snapshot a view shows for ``run``: the time-lapse frame, or the newest."""
        run = run or self.current
        if run is None or not run.snapshots:
            return None
        frame = self.frame if frame is None else frame
        return run.snapshots[frame if 0 <= frame < len(run.snapshots) else -1]

    def shutdown(self) -> None:
        """The window closes: stop the training job (it saves what it trained) and the warm training
        process. Waits for nothing: ``explorer.jobs.shutdown`` ends the workers when the window has gone."""
        self._closed = True
        self._flush.stop()
        self._follow.stop()
        self._scan.stop()
        if self.job is not None:
            self.job.stop()
        if self.embed_job is not None:
            self.embed_job.stop()
        from engine.child import discard_standby

        discard_standby()  # the warm training process waiting for a next job: nothing in it to keep


def _triplet_definition(run: RunState, snap: MapSnapshot):
    """The triplet definition the triplet inspector measures a run's labelled points with (None: no
    labelled point, nothing it would measure)."""
    from engine.methods import run_triplet_definition
    from engine.metrics.triplets import TripletDefinition

    if not (np.asarray(snap.labels) >= 0).any():
        return None
    try:
        return run_triplet_definition(run.config)
    except ValueError:  # a config this version cannot read: the default, as the inspector does
        return TripletDefinition()


def _click_ready_index(embeddings: np.ndarray, metric: str, definition):
    """In a worker: what a click on a large snapshot needs, made ahead: its neighbour index, and the
    normalised, centred points the triplet inspector measures (kept by engine.metrics.triplets)."""
    from engine.metrics.triplets import prepare_points
    from engine.neighbours import NeighbourIndex

    index = NeighbourIndex(embeddings, metric=metric)
    if definition is not None:
        prepare_points(embeddings, definition)
    return index


def _saved_clusters(snap: MapSnapshot, algorithm: str) -> np.ndarray | None:
    """The ids of ``algorithm`` the engine saved with a snapshot (engine/schema.py SNAPSHOT_MEMBERS)."""
    if algorithm == "kmeans":
        ids = snap.arrays.get("kmeans_clusters")
        return snap.clusters if ids is None else ids
    return snap.arrays.get(f"{algorithm}_clusters")
