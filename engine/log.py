"""Log from your own training loop: a run directory the window opens and follows, like its own runs.

    from engine import log

    run = log.start("runs", name="my-simclr", settings={"lr": 0.3, "temperature": 0.5},
                    images=probe_images, labels=probe_labels, class_names=names, train=is_train)
    for step in ...:
        ...
        run.log_losses(step, loss=float(loss), epoch=epoch)
        if step % 100 == 0:
            run.log_embeddings(step, encoder(probe_batch))   # (N, D) for the N probe images
    run.finish()

or ``with log.start(...) as run:``, which finishes the run (and records a failure) on the way out.

The probe set is fixed at ``start``: its images (uint8 or float in [0, 1], (N, H, W), (N, C, H, W) or
(N, H, W, C)), their labels (-1 for none) and class names, and optionally which rows fit the linear
probe and the kNN (``train``: a bool mask); without it every row is on the map and the probe is fitted
on a fixed stratified half and scored on the other. Each ``log_embeddings`` writes a snapshot of the
map's rows and an evaluation: kNN, linear probe and retrieval against the labels, the collapse verdict
and its indicators, triplet categories, clusters, neighbour drift and the live 2D map, computed by the
same code as the trainer's (``engine.metrics``). What needs the encoder itself (smoothness,
invariance, the inspectors that rebuild the model) is not available, and the window says so.

The evaluation runs in a background thread, so the loop goes on while it is computed; ``finish``
waits for it. Files: the run directory of README "Run directory" (config.json with
``"method": "logged"``, metrics.jsonl, snapshots/, summary.json) plus ``probe_images.npy`` and
``probe.npz`` (labels, train mask, class names), read by the dataset ``logged:RUN_DIR``.
"""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine import events as ev
from engine.runs import RunDir

METHOD = "logged"  # config.json's method for a run written by this module
PROBE_IMAGES, PROBE_META = "probe_images.npy", "probe.npz"
from engine.data import LOGGED_PREFIX  # noqa: E402  (one definition)

__all__ = ["start", "LoggedRun", "METHOD"]


def start(root: str | Path = "runs", name: str = "logged", *, images, labels=None, class_names=None,
          train=None, settings: Mapping[str, Any] | None = None, projection: str = "umap",
          knn_k: int = 10, seed: int = 0) -> "LoggedRun":
    """Open a new run directory under ``root`` (``name``, or ``name-2`` ... if taken) for a loop that
    logs the embeddings of the fixed probe set ``images`` (see the module docstring for the shapes).
    ``settings``: anything JSON can hold, recorded in config.json as the run's own settings."""
    return LoggedRun(root, name, images=images, labels=labels, class_names=class_names, train=train,
                     settings=settings, projection=projection, knn_k=knn_k, seed=seed)


def _images_uint8(images) -> np.ndarray:
    """(N, C, H, W) uint8 from uint8 or [0, 1] floats in (N, H, W), (N, C, H, W) or (N, H, W, C)."""
    import torch

    if torch.is_tensor(images):
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images: shape {x.shape} is not valid; allowed: (N, H, W), (N, C, H, W) or (N, H, W, C)")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 1)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images: {x.shape[1]} channels is not valid; allowed: 1 (grey) or 3 (RGB)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("images: allowed: uint8, or floats in [0, 1] (undo any normalisation first)")
    return np.ascontiguousarray(np.round(x * 255).astype(np.uint8))


class LoggedRun:
    """A run directory written by a training loop of your own (see the module docstring)."""

    def __init__(self, root, name, *, images, labels, class_names, train, settings, projection, knn_k, seed):
        from engine.projection import PROJECTIONS

        PROJECTIONS.get(projection)  # an unknown name fails here, not at the first log
        self._images = _images_uint8(images)
        n = len(self._images)
        self._labels = self._check_labels(labels, n)
        self._class_names = self._check_class_names(class_names, self._labels)
        self._train = self._check_train(train, n, self._labels, seed)
        if int((~self._train).sum()) < 3:
            raise ValueError(f"train: {int((~self._train).sum())} rows left for the map; allowed: 3 at least")
        self._knn_k, self._seed, self._projection = int(knn_k), int(seed), projection
        self.dir = RunDir.create(root, name)
        self.path = self.dir.path
        self.dir.lock()
        np.save(self.dir.file(PROBE_IMAGES), self._images)
        np.savez(self.dir.file(PROBE_META), labels=self._labels, train=self._train,
                 class_names=np.asarray(self._class_names, dtype=str))
        self._map_rows = np.flatnonzero(~self._train)
        self.config = self._config(settings)
        self.dir.write_config(self.config)
        self._last_step, self._last_epoch, self._last_metrics = 0, 0.0, None
        self._started = time.perf_counter()
        self._work: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._finished = False
        self._diagnostics = None
        # CPU seconds the evaluation thread has spent on the snapshots so far (its own thread's clock):
        # what logging embeddings costs beside the loop, on a shared machine too (bench/logging_overhead.py)
        self.evaluation_cpu_seconds = 0.0
        self.dir.append(ev.Started(str(self.path), self.config, "external", "your training loop", 0, 0).to_record())
        self._thread = threading.Thread(target=self._evaluate_in_order, name="engine.log evaluation", daemon=True)
        self._thread.start()

    # -- the public calls ----------------------------------------------------------------------------
    def log_losses(self, step: int, epoch: float | None = None, lr: float | None = None,
                   **losses: float) -> None:
        """The loss terms at ``step`` (e.g. ``loss=0.42, align=0.1``): the Loss panel's curves."""
        self._check_open()
        step = self._check_step(step)
        clean = {}
        for key, value in losses.items():
            v = float(value.item() if hasattr(value, "item") else value)
            if not math.isfinite(v):
                raise ValueError(f"{key}: {v} at step {step} is not a finite loss; the loop has diverged "
                                 "(try a lower learning rate)")
            clean[key] = v
        if not clean:
            raise ValueError("log_losses: no loss given; allowed: keyword arguments such as loss=0.42")
        epoch = float(epoch) if epoch is not None else self._last_epoch
        self._last_step, self._last_epoch = max(self._last_step, step), epoch
        self.dir.append(ev.StepReport(step, epoch, clean, float(lr) if lr is not None else 0.0, 0.0).to_record())

    def log_embeddings(self, step: int, embeddings, epoch: float | None = None) -> None:
        """The embeddings (N, D) of the probe set's N images at ``step``, in the order of ``images``.
        Returns at once: the snapshot and its evaluation are written by a background thread."""
        self._check_open()
        step = self._check_step(step)
        import torch

        if torch.is_tensor(embeddings):
            embeddings = embeddings.detach().float().cpu().numpy()
        z = np.array(embeddings, dtype=np.float32, copy=True)
        if z.ndim != 2 or len(z) != len(self._images):
            raise ValueError(f"embeddings: shape {z.shape} is not valid; allowed: ({len(self._images)}, D), "
                             "one row per probe image, in the order given to start()")
        bad = ~np.isfinite(z).all(1)
        if bad.any():
            raise ValueError(f"embeddings at step {step}: {int(bad.sum())} of {len(z)} rows are not finite (first "
                             f"at row {int(np.argmax(bad))}): the model has diverged; try a lower learning rate")
        epoch = float(epoch) if epoch is not None else self._last_epoch
        self._last_step, self._last_epoch = max(self._last_step, step), epoch
        self._work.put((step, epoch, z))

    def finish(self, stopped: bool = False) -> dict:
        """Wait for the evaluations, write summary.json and the end of the log; returns the summary."""
        if self._finished:
            return self._summary
        self._work.put(None)
        self._thread.join()
        self._finished = True
        try:
            if self._error is not None:
                message = f"the evaluation failed: {type(self._error).__name__}: {self._error}"
                self.dir.append(ev.Failed(message, self._last_step, type(self._error).__name__).to_record())
                raise RuntimeError(message) from self._error
            metrics = self._last_metrics or {}
            # the last evaluation's figures, as the trainer's summary holds its final one's
            self._summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
            self._summary.update(method=METHOD, dataset=self.config["dataset"], encoder="external",
                                 device="external", steps=self._last_step, epochs=self._last_epoch,
                                 stopped=bool(stopped), job_seconds=round(time.perf_counter() - self._started, 1))
            self.dir.write_summary(self._summary)
            self.dir.append(ev.Finished(self._summary, bool(stopped)).to_record())
            return self._summary
        finally:
            self.dir.unlock()

    def __enter__(self) -> "LoggedRun":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None:
            self.finish()
        elif not self._finished:  # the loop raised: record it, keep what was logged, let it propagate
            self._work.put(None)
            self._thread.join()
            self._finished = True
            self.dir.append(ev.Failed(f"the training loop raised {kind.__name__}: {error}", self._last_step,
                                      kind.__name__).to_record())
            self.dir.unlock()

    # -- checks ---------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._finished:
            raise ValueError(f"run {self.path.name} is finished; start a new one to log more")
        if self._error is not None:
            raise RuntimeError(f"the evaluation of an earlier step failed: {self._error}") from self._error

    def _check_step(self, step) -> int:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step: {step!r} is not valid; allowed: a whole number >= 0")
        return int(step)

    @staticmethod
    def _check_labels(labels, n: int) -> np.ndarray:
        if labels is None:
            return np.full(n, -1, dtype=np.int64)
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels: shape {y.shape}, {y.dtype} is not valid; allowed: {n} whole numbers, "
                             "one per image (-1: unlabelled)")
        if (y < -1).any():
            raise ValueError("labels: allowed: -1 (unlabelled) or a class number >= 0")
        return y.astype(np.int64)

    @staticmethod
    def _check_class_names(names, labels: np.ndarray) -> list[str]:
        count = int(labels.max()) + 1 if (labels >= 0).any() else 0
        if names is None:
            return [str(i) for i in range(count)]
        names = [str(x) for x in names]
        if len(names) < count:
            raise ValueError(f"class_names: {len(names)} names for labels up to {count - 1}; allowed: one name "
                             "per class")
        return names

    @staticmethod
    def _check_train(train, n: int, labels: np.ndarray, seed: int) -> np.ndarray:
        if train is None:  # a fixed stratified half fits the probe, the other half is the map
            from engine.data import stratified_subset

            mask = np.zeros(n, dtype=bool)
            if (labels >= 0).any():
                mask[stratified_subset(labels, n // 2, np.random.default_rng(seed))] = True
            return mask
        mask = np.asarray(train)
        if mask.shape != (n,) or mask.dtype != bool:
            raise ValueError(f"train: shape {mask.shape}, {mask.dtype} is not valid; allowed: {n} booleans, "
                             "True for the rows that fit the probe")
        return mask.copy()

    def _config(self, settings) -> dict:
        from dataclasses import asdict

        from engine.config import TrainConfig

        settings = dict(settings or {})
        try:
            json.dumps(settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"settings: {error}; allowed: what JSON can hold (numbers, text, lists, dicts)") from None
        c, h, w = self._images.shape[1:]
        train_rows = np.flatnonzero(self._train)
        config = asdict(TrainConfig(method=METHOD, dataset=LOGGED_PREFIX + str(self.path.resolve()),
                                    encoder="external", embedding_dim=1, out=str(self.path.parent),
                                    run_name=self.path.name, eval_size=len(self._map_rows),
                                    probe_train_size=len(train_rows), knn_k=self._knn_k, seed=self._seed,
                                    projection=self._projection, method_params=settings))
        config.update(device_resolved="external", train_images=len(train_rows), test_images=len(self._map_rows),
                      class_names=self._class_names, image_size=[int(h), int(w)], channels=int(c),
                      eval_rows=list(range(len(self._map_rows))))
        return config

    # -- the background evaluation ------------------------------------------------------------------
    def _evaluate_in_order(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            if self._error is not None:
                continue
            cpu = time.thread_time()
            try:
                self._evaluate(*item)
            except BaseException as error:  # reported by the next call and by finish()
                self._error = error
            finally:
                self.evaluation_cpu_seconds += time.thread_time() - cpu

    def _evaluate(self, step: int, epoch: float, z: np.ndarray) -> None:
        import torch

        from engine.evaluation import label_scores, snapshot_arrays

        if self.config["embedding_dim"] != z.shape[1]:
            self.config.update(embedding_dim=int(z.shape[1]), embedding_dim_actual=int(z.shape[1]))
            self.dir.write_config(self.config)
        rows, y = self._map_rows, self._labels
        map_z, map_y = z[rows], y[rows]
        metrics: dict[str, Any] = {}
        fit = self._train & (y >= 0)
        scored = (~self._train) & (y >= 0)
        if fit.any() and scored.any() and len(np.unique(y[fit])) >= 2:
            metrics.update(label_scores(z[fit], y[fit], z[scored], y[scored], k=min(self._knn_k, int(fit.sum()))))
        if self._diagnostics is None:
            from engine.augment import dataset_views
            from engine.metrics.diagnostics import Diagnostics

            labelled = bool((y >= 0).any())
            self._diagnostics = Diagnostics(num_classes=max(1, len(self._class_names)), labelled=labelled,
                                            projection=self._projection, seed=self._seed,
                                            augment=dataset_views(int(self._images.shape[1]),
                                                                  tuple(self._images.shape[2:]), METHOD))
        images = torch.from_numpy(self._images[rows])
        extra, coords = self._diagnostics.evaluate(None, images, map_y, map_z, None, step)
        metrics.update(extra)
        arrays = snapshot_arrays(map_z, np.arange(len(rows)), map_y, coords, self._diagnostics)
        path = self.dir.save_snapshot(step, **arrays)
        self.dir.append(ev.Evaluation(step, epoch, metrics).to_record())
        self.dir.append(ev.Snapshot(step, epoch, map_z, arrays["indices"], map_y, path=str(path)).to_record())
        self._last_metrics = metrics


def load_logged(path: str | Path, seed: int = 0):
    """The probe set of a logged run as an ImageDataset: the probe's train rows, then the map's rows
    (snapshot indices are rows of the test split). Files from elsewhere: checked, ValueError if unusable."""
    from engine.data import ImageDataset, Split

    path = Path(path).expanduser()
    try:
        images = np.load(path / PROBE_IMAGES, allow_pickle=False, mmap_mode="r")
        with np.load(path / PROBE_META, allow_pickle=False) as meta:
            labels, train, names = meta["labels"], meta["train"], [str(x) for x in meta["class_names"]]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: not a logged run ({Path(error.filename).name} missing); its probe images "
                                "are written by engine.log.start") from None
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: the probe set cannot be read ({type(error).__name__}: {error})") from None
    n = len(images)
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3)
            or labels.shape != (n,) or train.shape != (n,) or train.dtype != bool
            or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{path}: {PROBE_IMAGES} and {PROBE_META} do not fit each other (images {images.shape} "
                         f"{images.dtype}, labels {labels.shape}, train {train.shape}); the run cannot show images")
    labels = labels.astype(np.int64)
    images = np.asarray(images)
    return ImageDataset(LOGGED_PREFIX + str(path), Split(images[train], labels[train]),
                        Split(images[~train], labels[~train]), names)
