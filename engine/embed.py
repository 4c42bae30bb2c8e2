"""Embed and browse, no training: every image of a folder through an encoder, into a run directory.

    for event in embed(EmbedConfig(dataset="folder:~/Pictures", encoder="efficientnet-lite0")):
        ...                                   # Started, Progress, Message, Finished or Failed

Every image of the folder is embedded (sub-folders are classes, a flat folder is unlabelled). A
``torch.utils.data.DataLoader`` with worker processes decodes the images (``engine.data.folder.decode``)
straight at the encoder's input size (its own, e.g. 224 for the ImageNet backbones, else 64), and at
the thumbnail size in the same decode; batches go to the device from pinned memory on a GPU. Files
that cannot be read are skipped and listed (``skipped.csv`` and the run log); the rest are embedded.
The rows are written as they come (``engine.collection``), so 100k images cost a batch of memory,
not 100k images. When every row is in, the job computes the collection's 2D map once (PCA to 50
components, then the engine's UMAP; ``projection``), so the window opens the run with its map at
once. ``engine.imports`` makes the same run directory from embeddings made elsewhere.

The job is a generator of the engine's events, as training is: the command line prints them, the
window shows them; ``Control.stop()`` stops it between two batches, and what was embedded is kept.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine import events as ev
from engine.collection import CollectionWriter, compute_layout
from engine.runs import RunDir, RunInUseError, RunWriteError
from engine.training import Control

DEFAULT_ENCODER = "efficientnet-lite0"
THUMBNAIL_SIZE = 64  # largest side of a thumbnail; smaller images keep their size
LAYOUTS = ("umap", "pca", "none")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SAMPLE = 64  # files whose headers decide grey or colour and the thumbnail size
SKIPS_SHOWN = 20
# images per batch by default. On a CPU a batch of 64 at 224 px holds 1.1 GB of activations at once
# (efficientnet-lite0); a batch of 16 peaks 0.9 GB lower at the same CPU time per image (one thread,
# measured beside bench/embed_folder.py, README); a GPU wants large batches.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 256


@dataclass
class EmbedConfig:
    """What ``embed`` is asked for (the command line's flags)."""

    dataset: str = ""  # folder:PATH
    encoder: str = DEFAULT_ENCODER
    encoder_params: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    batch_size: int | None = None  # default: CPU_BATCH_SIZE on a CPU, GPU_BATCH_SIZE on a GPU
    workers: int | None = None  # decoding processes; default: from the cores (0: decode in this process)
    out: str = "runs"
    run_name: str | None = None
    thumbnail_size: int = THUMBNAIL_SIZE
    projection: str = "umap"  # the 2D map computed at the end: umap, pca or none
    limit: int | None = None  # only this many images, spread evenly over the folder (to try an encoder)
    seed: int = 0
    evaluate: bool = True  # the trainer's figures (probe, kNN, collapse, triplets...) on subsets, at the end
    # embeddings made elsewhere instead of a folder (engine/imports.py)
    from_file: str | None = None  # a .npy, .parquet, or TensorBoard projector files
    labels: str | None = None  # a CSV/TSV table (or .npy of labels), one row per embedding
    label_column: str | None = None
    path_column: str | None = None
    image_root: str | None = None  # the folder the table's image paths are relative to
    tensor: str | None = None  # which of a projector config's embeddings
    embedding_column: str | None = None  # a parquet file's column of vectors

    def validate(self) -> None:
        from engine.data import FOLDER_PREFIX
        from engine.data.folder import check_folder_path
        from engine.device import DEVICES
        from engine.encoders import check_encoder_name

        if self.from_file is not None:
            if self.dataset:
                raise ValueError("--from and --dataset: give one, the embeddings made elsewhere or a folder to embed")
        elif not self.dataset.startswith(FOLDER_PREFIX):
            raise ValueError(f"--dataset: {self.dataset!r} is not valid; embed takes folder:PATH (a folder of "
                             "images: sub-folders are classes, a flat folder is unlabelled), or --from FILE")
        else:
            check_folder_path(self.dataset[len(FOLDER_PREFIX):])
            check_encoder_name(self.encoder)
        for name in ("labels", "label_column", "path_column", "image_root", "tensor", "embedding_column"):
            if getattr(self, name) is not None and self.from_file is None:
                raise ValueError(f"--{name.replace('_', '-')} applies with --from FILE (embeddings made elsewhere)")
        for name in ("batch_size", "limit"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"--{name.replace('_', '-')}: {value!r} is not valid; allowed: a whole number >= 1")
        if self.workers is not None and (type(self.workers) is not int or self.workers < 0):
            raise ValueError(f"--workers: {self.workers!r} is not valid; allowed: a whole number >= 0 "
                             "(0: decode in the main process)")
        if type(self.thumbnail_size) is not int or not 8 <= self.thumbnail_size <= 256:
            raise ValueError(f"--thumbnail-size: {self.thumbnail_size!r} is not valid; allowed: 8 to 256 pixels")
        if self.projection not in LAYOUTS:
            raise ValueError(f"--projection: {self.projection!r} is not valid; allowed: {', '.join(LAYOUTS)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"--device: {self.device!r} is not valid; allowed: {', '.join(DEVICES)}")
        if self.run_name is not None and (self.run_name in ("", ".", "..") or any(c in self.run_name for c in "/\\\0")):
            raise ValueError(f"--run-name: {self.run_name!r} is not valid; allowed: a folder name (no '/'), "
                             "created inside --out")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"--out: {self.out} is a file; allowed: a folder (created if missing) that "
                             "receives the run directory")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbedConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def collate(items):
    """A batch: (rows (b,), images (b, C, S, S) uint8 tensor, thumbnails (b, C, T, T) uint8 array,
    [(row, why) of the files that could not be read]), only the readable ones in the arrays."""
    import torch

    ok = [it for it in items if it[1] is not None]
    rows = torch.tensor([it[0] for it in ok], dtype=torch.long)
    images = torch.from_numpy(np.stack([it[1][0] for it in ok])) if ok else None
    thumbs = np.stack([it[1][1] for it in ok]) if ok else None
    return rows, images, thumbs, [(it[0], it[2]) for it in items if it[1] is None]


def encoder_input_size(encoder) -> tuple[int, int] | None:
    """The image size the encoder takes as it was made (the ImageNet backbones' ``input_size``, what an
    external model says), None where any size is taken as it is."""
    from engine.encoders.external import ExternalEncoder
    from engine.encoders.pretrained import PretrainedEncoder

    if isinstance(encoder, PretrainedEncoder):
        return encoder.input_size, encoder.input_size
    if isinstance(encoder, ExternalEncoder):
        return encoder.adapter.size
    return None


def default_workers(device_type: str) -> int:
    cores = os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, min(8, cores - 1))
    return max(1, min(4, cores // 4))  # on a CPU the encoder needs the cores; decoding is a few percent


def embed(config: EmbedConfig, control: Control | None = None) -> Iterator[ev.Event]:
    """Embed every image of the folder, yielding events. Never raises for a bad setting or a failure:
    the last event is then ``Failed`` (``bad_input`` when it never started); what was embedded is kept."""
    job = (_ImportJob if config.from_file is not None else _EmbedJob)(config, control or Control())
    try:
        yield from job.run()
    except GeneratorExit:
        raise
    except KeyboardInterrupt:
        job.fail(ev.Failed("aborted by a second Ctrl-C: what was embedded is kept, without its map",
                           job.done, "KeyboardInterrupt"))
        raise
    except Exception as error:
        bad_input = not job.started and isinstance(error, (ValueError, FileNotFoundError))
        failed = ev.Failed(_explain(error), job.done, type(error).__name__, bad_input)
        job.fail(failed)
        yield failed
    finally:
        job.release()


def _explain(error: Exception) -> str:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "out of GPU memory: try a smaller --batch-size"
    if isinstance(error, (RunWriteError, RunInUseError, ValueError, FileNotFoundError)):
        return str(error)
    return f"embedding failed: {type(error).__name__}: {error}"


class _EmbedJob:
    def __init__(self, config: EmbedConfig, control: Control):
        self.config = config
        self.control = control
        self.run_dir: RunDir | None = None
        self.writer: CollectionWriter | None = None
        self.started = False
        self.done = 0
        self._locked = False
        self.class_names: list[str] = []
        self.size = self.thumb = self.channels = 0
        self.embed_seconds = self.images_per_second = self.embed_cpu_seconds = 0.0
        self.source_name = ""
        self.thumbnail_size: list[int] | None = None

    def log(self, event: ev.Event) -> ev.Event:
        if self.run_dir is not None and event.kind in {cls.kind for cls in ev.EVENTS}:
            self.run_dir.append(event.to_record())
        return event

    def fail(self, failed: ev.Failed) -> None:
        """Keep what was embedded (the rows so far, without the map), then record the failure."""
        if self.writer is not None and self.writer.rows:
            try:
                self.writer.close_arrays()
                self.writer.finish(self._manifest(complete=False))
            except Exception:
                self.writer.discard()
        elif self.writer is not None:
            self.writer.discard()
        if self.started:
            try:
                self.log(failed)
            except OSError:
                pass

    def release(self) -> None:
        if self._locked and self.run_dir is not None:
            self.run_dir.unlock()
            self._locked = False

    def _manifest(self, complete: bool, layout: str | None = None, layout_seconds: float | None = None) -> dict:
        return {"class_names": self.class_names, "source": self.config.dataset, "encoder": self.config.encoder,
                "input_size": [self.size, self.size], "channels": self.channels,
                "thumbnail_size": [self.thumb, self.thumb], "layout": layout, "layout_seconds": layout_seconds,
                "embed_seconds": self.embed_seconds, "images_per_second": self.images_per_second,
                "complete": complete}

    # ------------------------------------------------------------------------------------------
    def run(self) -> Iterator[ev.Event]:
        import torch

        from engine.data import FOLDER_PREFIX
        from engine.data.folder import (FOLDER_IMAGE_SIZE, FolderImages, check_folder_path, decoder_init, list_folder,
                                        peek)
        from engine.device import device_name, freed_memory_kept, resolve_device
        from engine.encoders import build_encoder

        cfg = self.config
        job_started = time.perf_counter()
        cfg.validate()
        root = check_folder_path(cfg.dataset[len(FOLDER_PREFIX):]).resolve()
        listed, self.class_names = list_folder(root)
        if not listed:
            raise ValueError(f"no image file in {root} (looked for .png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp; "
                             "sub-folders are classes, a flat folder is unlabelled)")
        notes = []
        if cfg.limit is not None and cfg.limit < len(listed):
            keep = np.unique(np.linspace(0, len(listed) - 1, cfg.limit).round().astype(int))
            notes.append(f"--limit {cfg.limit}: {len(keep)} of the folder's {len(listed)} images, spread evenly over it")
            listed = [listed[i] for i in keep]
        files = [f for f, _ in listed]
        labels = np.array([label for _, label in listed], dtype=np.int64)
        # grey or colour, and the thumbnail size, from a few files' headers (nothing decoded)
        sample = [peek(files[i]) for i in np.unique(np.linspace(0, len(files) - 1, min(SAMPLE, len(files))).astype(int))]
        sample = [s for s in sample if s is not None]
        grey = bool(sample) and all(mode in GREY_MODES for mode, _ in sample)
        self.channels, mode = (1, "L") if grey else (3, "RGB")
        largest = max((min(size) for _, size in sample), default=cfg.thumbnail_size)
        self.thumb = int(max(8, min(cfg.thumbnail_size, largest)))

        device = resolve_device(cfg.device)
        encoder = build_encoder(cfg.encoder, self.channels, (FOLDER_IMAGE_SIZE, FOLDER_IMAGE_SIZE), **cfg.encoder_params)
        size = encoder_input_size(encoder)
        self.size = max(size) if size is not None else FOLDER_IMAGE_SIZE
        if self.size != FOLDER_IMAGE_SIZE:  # decoded at the encoder's own size: nothing for it to resize
            encoder.notes = [n for n in encoder.notes if "images resized from" not in n]
            encoder.image_size = (self.size, self.size)
        notes += [f"images decoded at {self.size}x{self.size} ({'the encoder input size' if size else 'the default size'}), "
                  f"{'grey' if grey else 'RGB'}; thumbnails {self.thumb}x{self.thumb}"] + list(encoder.notes)
        encoder = encoder.to(device).eval()
        dim = int(encoder.embedding_dim)
        batch_size = cfg.batch_size or (GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE)
        workers = default_workers(device.type) if cfg.workers is None else cfg.workers

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self._create(cfg.run_name or f"{stamp}-embed-{root.name}")
        record = self._config_record(device, dim, batch_size, len(files))
        self.run_dir.write_config(record)
        total_batches = math.ceil(len(files) / batch_size)
        self.writer = CollectionWriter(self.run_dir, dim, len(files), (self.channels, self.thumb, self.thumb))
        self.started = True
        yield self.log(ev.Started(str(self.run_dir.path), record, str(device), device_name(device),
                                  total_batches, total_batches, 0, tuple(notes)))
        for note in notes:
            yield self.log(ev.Message(note))

        loader = torch.utils.data.DataLoader(
            FolderImages(files, (self.size, self.thumb), mode), batch_size=batch_size, shuffle=False,
            num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
            worker_init_fn=decoder_init if workers else None, prefetch_factor=4 if workers else None)
        amp = device.type == "cuda"
        t0, cpu0 = time.perf_counter(), time.process_time()
        skipped = 0
        stopped = False
        rel = [_relative(f, root) for f in files]
        # on a CPU the heap keeps each batch's freed activations for the next (freed_memory_kept: without it
        # the system time of refaulting them was twice the encoder's own)
        heap = freed_memory_kept() if device.type == "cpu" else contextlib.nullcontext()
        with torch.inference_mode(), heap:
            for rows, images, thumbs, failed in loader:
                for row, why in failed:
                    self.writer.skip(rel[row], why)
                    if skipped < SKIPS_SHOWN:
                        yield self.log(ev.Message(f"skipped {files[row]}: {why}", "warning"))
                    skipped += 1
                if images is not None:
                    x = images.to(device, non_blocking=True).float().div_(255)
                    with torch.autocast(device.type, enabled=amp):
                        z = encoder(x).float()
                    z = z.cpu().numpy()
                    index = rows.numpy()
                    self.writer.add(z, labels[index], thumbs, [(rel[i],) for i in index])
                self.done += len(failed) + (0 if images is None else len(images))
                elapsed = time.perf_counter() - t0
                rate = self.writer.rows / elapsed if elapsed > 0 else 0.0
                left = len(files) - self.done
                yield ev.Progress("embedding", self.done, len(files), skipped, rate,
                                  left * elapsed / self.done if self.done else None)
                if self.control.paused:
                    self.control.wait_while_paused()
                if self.control.stopped and self.done < len(files):
                    stopped = True
                    break
        self.embed_seconds = time.perf_counter() - t0
        self.embed_cpu_seconds = time.process_time() - cpu0
        if skipped > SKIPS_SHOWN:
            yield self.log(ev.Message(f"{skipped} files could not be read in all (the first {SKIPS_SHOWN} above); "
                                      f"every one is listed in {self.run_dir.file('skipped.csv')}", "warning"))
        if stopped:
            yield self.log(ev.Message(f"stopped: {self.writer.rows} of {len(files)} images embedded; they are kept",
                                      "warning"))
        if not self.writer.rows:
            raise ValueError(f"no readable image in {root}: all {len(files)} files were skipped "
                             f"(listed in {self.run_dir.file('skipped.csv')})")
        yield from self._finish(record, len(files), skipped, stopped, job_started, cfg.dataset, device)

    def _create(self, name: str) -> None:
        cfg = self.config
        try:
            self.run_dir = RunDir.create(cfg.out, name)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
                raise
            raise ValueError(f"--out: cannot create the run directory {Path(cfg.out) / name} "
                             f"({error.strerror or error}); choose a folder you can write to") from error
        self.run_dir.lock()
        self._locked = True

    def _finish(self, record: dict, total: int, skipped: int, stopped: bool, job_started: float, source: str,
                device=None) -> Iterator[ev.Event]:
        """The rows in place, the 2D map, the rest of the collection's files, the summary, Finished."""
        cfg = self.config
        self.images_per_second = self.writer.rows / self.embed_seconds if self.embed_seconds > 0 else 0.0
        self.writer.close_arrays()
        layout, layout_seconds, coords = None, None, None
        if cfg.projection != "none" and self.writer.rows >= 3:
            yield ev.Progress("layout", self.done, total, skipped, self.images_per_second, None)
            yield self.log(ev.Message(f"computing the 2D map of {self.writer.rows} points ({cfg.projection} of the "
                                      "embeddings' 50 principal components)…"))
            from engine.schema import EMBEDDINGS_NPY, open_npy

            written, _ = open_npy(self.run_dir.file(EMBEDDINGS_NPY), EMBEDDINGS_NPY)
            t1 = time.perf_counter()
            coords = compute_layout(written, cfg.projection, seed=cfg.seed, device=device)
            layout, layout_seconds = cfg.projection, time.perf_counter() - t1
            del written
        manifest = self.writer.finish(self._manifest(not stopped, layout, layout_seconds), coords)
        record["test_images"] = manifest["n"]
        self.run_dir.write_config(record)
        figures = {}
        if cfg.evaluate and self.writer.rows >= 3:
            figures = yield from self._evaluate(coords)
        summary = {k: v for k, v in figures.items() if isinstance(v, (int, float, str, bool)) or v is None}
        summary |= {"method": "embed", "dataset": source, "encoder": record.get("encoder"),
                    "device": str(device) if device is not None else None,
                    "stopped": stopped, "images": manifest["n"], "skipped": skipped,
                    "images_per_second": self.images_per_second, "embed_seconds": self.embed_seconds,
                    "embed_cpu_seconds": self.embed_cpu_seconds,
                    "layout_seconds": layout_seconds, "job_seconds": time.perf_counter() - job_started}
        self.run_dir.write_summary(summary)
        yield self.log(ev.Finished(summary, stopped))

    def _evaluate(self, coords: np.ndarray | None) -> Iterator[ev.Event]:
        """The trainer's figures for the whole collection (engine.evaluation.evaluate_collection), logged
        as the run's final evaluation so the record panels show them; returns them. A failure here is
        reported and leaves the collection complete without them."""
        from engine.evaluation import evaluate_collection
        from engine.schema import EMBEDDINGS_NPY, LABELS_NPY, open_npy

        yield self.log(ev.Message("evaluating the embeddings as the trainer does (probe, kNN, retrieval, collapse, "
                                  "triplets, clusters), on subsets…"))
        t0 = time.perf_counter()
        written, _ = open_npy(self.run_dir.file(EMBEDDINGS_NPY), EMBEDDINGS_NPY)
        try:
            figures = evaluate_collection(written, np.load(self.run_dir.file(LABELS_NPY)), len(self.class_names),
                                          coords=coords, seed=self.config.seed)
        except Exception as error:  # noqa: BLE001  (the collection is written; its figures are extra)
            yield self.log(ev.Message(f"the evaluation failed ({type(error).__name__}: {error}); the run is complete "
                                      "without its figures", "warning"))
            return {}
        finally:
            del written
        figures["evaluation_seconds"] = time.perf_counter() - t0
        yield self.log(ev.Evaluation(0, 0.0, figures, final=True))
        return figures

    def _config_record(self, device, dim: int, batch_size: int, n: int) -> dict:
        cfg = self.config
        return {"method": "embed", "dataset": cfg.dataset, "encoder": cfg.encoder,
                "encoder_params": dict(cfg.encoder_params), "embedding_dim": dim, "batch_size": batch_size,
                "device": cfg.device, "seed": cfg.seed, "out": cfg.out, "run_name": cfg.run_name,
                "projection": cfg.projection if cfg.projection != "none" else "umap",
                "device_resolved": str(device), "train_images": 0, "test_images": n,
                "class_names": list(self.class_names), "image_size": [self.size, self.size],
                "channels": self.channels, "embedding_dim_actual": dim}


class _ImportJob(_EmbedJob):
    """Embeddings made elsewhere (engine/imports.py) written as the same collection: the rows copied
    chunk by chunk, the thumbnails from the projector's sprite or decoded from the table's image
    paths, the table's columns in items.csv, the 2D map computed once."""

    def _manifest(self, complete: bool, layout: str | None = None, layout_seconds: float | None = None) -> dict:
        return {"class_names": self.class_names, "source": self.source_name, "encoder": None,
                "thumbnail_size": self.thumbnail_size, "channels": self.channels or None, "layout": layout,
                "layout_seconds": layout_seconds, "complete": complete}

    def run(self) -> Iterator[ev.Event]:
        from engine.imports import labels_of, read_source

        cfg = self.config
        job_started = time.perf_counter()
        cfg.validate()
        source = read_source(cfg.from_file, cfg.labels, cfg.label_column, cfg.path_column, cfg.image_root,
                             cfg.tensor, cfg.embedding_column)
        self.source_name = source.name
        labels, self.class_names = labels_of(source)
        n, dim = source.n, int(source.embeddings.shape[1])
        notes = list(source.notes)
        notes.append(f"{n} embeddings of {dim} dimensions from {source.name.partition(':')[2]}"
                     + (f"; labels from column {source.label_column!r} ({len(self.class_names)} classes)"
                        if source.label_column else "; unlabelled"))
        paths = source.columns.get(source.path_column) if source.path_column else None
        thumbs = source.thumbnails
        self.thumbnail_size = list(thumbs.shape[2:]) if thumbs is not None else None
        self.channels = int(thumbs.shape[1]) if thumbs is not None else 0
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        stem = Path(str(cfg.from_file)).expanduser()
        name = cfg.run_name or f"{stamp}-embeddings-{(stem.parent.name if stem.suffix == '.pbtxt' else stem.stem) or 'file'}"
        self._create(name)
        record = {"method": "embed", "dataset": source.name, "encoder": None, "embedding_dim": dim,
                  "seed": cfg.seed, "out": cfg.out, "run_name": cfg.run_name,
                  "projection": cfg.projection if cfg.projection != "none" else "umap", "train_images": 0,
                  "test_images": n, "class_names": list(self.class_names), "embedding_dim_actual": dim}
        self.run_dir.write_config(record)
        self.started = True
        yield self.log(ev.Started(str(self.run_dir.path), record, "cpu", "embeddings made elsewhere", 1, 1, 0,
                                  tuple(notes)))
        for note in notes:
            yield self.log(ev.Message(note, "warning" if "show without" in note else "info"))
        if paths is not None and thumbs is None:
            thumbs = yield from self._thumbnails_from(paths, source.image_root)
        columns = list(source.columns)
        self.writer = CollectionWriter(self.run_dir, dim, n, tuple(thumbs.shape[1:]) if thumbs is not None else None,
                                       item_columns=["path"] + [c for c in columns if c != "path"])
        chunk = 8192
        t0, cpu0 = time.perf_counter(), time.process_time()
        for start in range(0, n, chunk):
            block = np.asarray(source.embeddings[start:start + chunk], dtype=np.float32)
            bad = np.flatnonzero(~np.isfinite(block).all(1))
            if len(bad):
                raise ValueError(f"{source.name.partition(':')[2]}: row {start + int(bad[0])} holds NaN or infinite "
                                 "values; embeddings must be finite numbers (the model diverged, or the file is damaged)")
            rows = range(start, min(n, start + chunk))
            items = [[paths[i] if paths is not None else ""] + [source.columns[c][i] for c in columns if c != "path"]
                     for i in rows] if (paths is not None or columns) else None
            self.writer.add(block, labels[start:start + chunk], thumbs[start:start + chunk] if thumbs is not None
                            else None, items)
            self.done = min(n, start + chunk)
            elapsed = time.perf_counter() - t0
            yield ev.Progress("embedding", self.done, n, 0, self.done / elapsed if elapsed > 0 else 0.0, None)
        self.embed_seconds = time.perf_counter() - t0
        self.embed_cpu_seconds = time.process_time() - cpu0
        yield from self._finish(record, n, 0, False, job_started, cfg.from_file)

    def _thumbnails_from(self, paths: list[str], root: Path | None):
        """The table's images decoded at the thumbnail size (DataLoader workers, as embed does); a row
        whose image cannot be read gets a blank thumbnail, and its file is named."""
        import torch

        from engine.data.folder import FolderImages, decoder_init, peek

        root = root or Path.cwd()
        files = [Path(p).expanduser() if Path(p).expanduser().is_absolute() else root / p for p in paths]
        sample = [peek(files[i]) for i in np.unique(np.linspace(0, len(files) - 1, min(SAMPLE, len(files))).astype(int))]
        sample = [s for s in sample if s is not None]
        if not sample:
            yield self.log(ev.Message(f"none of the table's image files could be read (the first: {files[0]}); the "
                                      "points show without images: give --image-root, the folder the paths are "
                                      "relative to", "warning"))
            return None
        grey = all(mode in GREY_MODES for mode, _ in sample)
        self.channels, mode = (1, "L") if grey else (3, "RGB")
        side = int(max(8, min(self.config.thumbnail_size, max(min(size) for _, size in sample))))
        self.thumbnail_size = [side, side]
        out = np.zeros((len(files), self.channels, side, side), dtype=np.uint8)
        workers = default_workers("cpu") if self.config.workers is None else self.config.workers
        # the collate of embed's batches: each file at the thumbnail size, as image and as thumbnail
        loader = torch.utils.data.DataLoader(FolderImages(files, (side, side), mode), batch_size=256,
                                             num_workers=workers, collate_fn=collate,
                                             worker_init_fn=decoder_init if workers else None)
        missing = []
        for rows, _images, thumbnails, failed in loader:
            if thumbnails is not None:
                out[rows.numpy()] = thumbnails
            missing += failed
        for row, why in missing[:SKIPS_SHOWN]:
            yield self.log(ev.Message(f"no thumbnail for row {row}, {files[row]}: {why}", "warning"))
        if missing:
            yield self.log(ev.Message(f"{len(missing)} of the {len(files)} images could not be read: their points show "
                                      "without an image", "warning"))
        return out

def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def embed_job(config: dict[str, Any], control: Control | None = None) -> Iterator[ev.Event]:
    """``embed`` from a plain dict of EmbedConfig's fields (a spawned process's job, engine/child.py)."""
    yield from embed(EmbedConfig.from_dict(config), control)
