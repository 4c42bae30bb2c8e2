"""Writing a collection's files (engine/schema.py declares them, ``load_collection`` reads them).

A collection is every image of a folder embedded (``engine.embed``), or embeddings made elsewhere
(``engine.imports``): one row per image in ``embeddings.npy``, ``labels.npy``, ``thumbnails.npy``,
``coords.npy`` (its 2D map), ``items.csv`` (the image files and any metadata), ``skipped.csv`` and,
last, ``embeddings.json``. The rows are written as they come (``NpyRows``): nothing holds the whole
collection in memory, and 100k images cost their batch, not their total.
"""
from __future__ import annotations

import csv
import io
import os
import secrets
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine import schema
from engine.runs import NEW_FILE_MODE, RunDir, _write_failure, atomic_write, write_json


class NpyRows:
    """A ``.npy`` file written row block by row block, its final number of rows known at the end.

    The header is written first for ``max_rows`` (its size is then fixed); ``close(rows)`` rewrites it
    for the rows written, padded with spaces to the same length (the format allows any padding), and
    renames the file into place. Until then it is a hidden ``.NAME.partial`` beside it, so a reader
    never takes a half-written file for a whole one."""

    def __init__(self, path: Path, dtype: Any, row_shape: tuple[int, ...], max_rows: int):
        self.path = Path(path)
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.rows = 0
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.partial")
        self.header = self._header(max(1, int(max_rows)))
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
            self.f = os.fdopen(fd, "wb")
            self.f.write(self.header)
        except OSError as error:
            raise _write_failure(error, self.path) from error

    def _header(self, rows: int, length: int | None = None) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": (rows, *self.row_shape)})
        header = buf.getvalue()
        if length is not None and len(header) != length:
            # version 1.0: magic (6 bytes), version (2), header length (uint16), then the header text ending
            # in a newline; more spaces before the newline keep it valid and the data where it was written
            pad = length - len(header)
            if pad < 0:
                raise ValueError("the .npy header grew")  # cannot happen: fewer rows never need more digits
            text = header[10:-1] + b" " * pad + b"\n"
            header = header[:8] + len(text).to_bytes(2, "little") + text
        return header

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {block.shape[1:]}, not {self.row_shape}")
        try:
            self.f.write(memoryview(block).cast("B"))
        except OSError as error:
            raise _write_failure(error, self.path) from error
        self.rows += len(block)

    def close(self) -> Path:
        try:
            self.f.flush()
            self.f.seek(0)
            self.f.write(self._header(self.rows, len(self.header)))
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.path)
        except OSError as error:
            self.discard()
            raise _write_failure(error, self.path) from error
        return self.path

    def discard(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


class CollectionWriter:
    """The rows of a collection, block by block (``add``), then ``finish``: labels, items, skipped
    files, the 2D map and, last, ``embeddings.json``."""

    def __init__(self, run: RunDir, dim: int, max_rows: int, thumbnail_shape: tuple[int, int, int] | None,
                 item_columns: Sequence[str] = ("path",)):
        self.run = run
        self.dim = int(dim)
        self.embeddings = NpyRows(run.file(schema.EMBEDDINGS_NPY), np.float32, (self.dim,), max_rows)
        self.thumbnails = (NpyRows(run.file(schema.THUMBNAILS_NPY), np.uint8, thumbnail_shape, max_rows)
                           if thumbnail_shape is not None else None)
        self.labels: list[np.ndarray] = []
        self.items: list[Sequence[str]] = []
        self.item_columns = list(item_columns)
        self.skipped: list[tuple[str, str]] = []

    @property
    def rows(self) -> int:
        return self.embeddings.rows

    def add(self, embeddings: np.ndarray, labels: np.ndarray, thumbnails: np.ndarray | None = None,
            items: Sequence[Sequence[str]] | None = None) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings of shape {embeddings.shape}, not (rows, {self.dim})")
        self.embeddings.append(embeddings)
        if self.thumbnails is not None:
            self.thumbnails.append(thumbnails)
        self.labels.append(np.asarray(labels, dtype=np.int64))
        if items is not None:
            self.items.extend(items)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((str(path), str(reason)))

    def close_arrays(self) -> None:
        """The row files complete and in place (before the map is computed from them)."""
        self.embeddings.close()
        if self.thumbnails is not None:
            self.thumbnails.close()

    def discard(self) -> None:
        self.embeddings.discard()
        if self.thumbnails is not None:
            self.thumbnails.discard()

    def finish(self, manifest: dict, coords: np.ndarray | None = None) -> dict:
        """Write the rest; returns the manifest as written (checked against its schema first)."""
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        save_npy(self.run.file(schema.LABELS_NPY), labels)
        if coords is not None:
            save_npy(self.run.file(schema.COORDS_NPY), np.asarray(coords, dtype=np.float32))
        if self.items:
            _write_csv(self.run.file(schema.ITEMS_CSV), self.item_columns, self.items)
        if self.skipped:
            _write_csv(self.run.file(schema.SKIPPED_CSV), ["path", "reason"], self.skipped)
        manifest = {"format": schema.EMBEDDINGS_FORMAT, "format_version": schema.EMBEDDINGS_VERSION,
                    "n": self.rows, "dim": self.dim, "skipped": len(self.skipped),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")} | manifest
        schema.check_written_manifest(manifest)
        write_json(self.run.file(schema.MANIFEST), manifest)
        return manifest


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    def write(f) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()

    atomic_write(path, write)


# --------------------------------------------------------------------------- the 2D map, computed once

LAYOUT_PCA_DIMS = 50  # the embeddings are reduced to this many principal components before UMAP
PCA_SAMPLE = 5000  # rows the principal components are found from


def reduce_pca(embeddings: np.ndarray, dims: int = LAYOUT_PCA_DIMS, chunk: int = 8192, seed: int = 0) -> np.ndarray:
    """The top ``dims`` principal components (n, dims) float32: found from PCA_SAMPLE rows drawn at
    random (the SVD of those rows, centred), then every row projected onto them chunk by chunk, so a
    memory-mapped (n, D) array is never copied whole."""
    n, d = embeddings.shape
    if d <= dims:
        return np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, PCA_SAMPLE, replace=False)) if n > PCA_SAMPLE else slice(None)
    sample = np.asarray(embeddings[rows], dtype=np.float64)
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    comps = np.ascontiguousarray(vt[:dims].T, dtype=np.float32)
    out = np.empty((n, comps.shape[1]), dtype=np.float32)
    mean32 = mean.astype(np.float32)
    for start in range(0, n, chunk):
        out[start:start + chunk] = (np.asarray(embeddings[start:start + chunk], dtype=np.float32) - mean32) @ comps
    return out


def compute_layout(embeddings: np.ndarray, projection: str = "umap", seed: int = 0, device: Any = None) -> np.ndarray:
    """The collection's 2D map: PCA to LAYOUT_PCA_DIMS components, then ``projection`` (the engine's
    torch UMAP, or PCA) of those. All-equal embeddings give one point."""
    from engine.projection import project

    return project(projection, reduce_pca(embeddings), seed=seed, device=device)
