"""Embeddings made elsewhere, read as a collection (``embedding-explorer embed --from FILE``).

    FILE                             what is read
    embeddings.npy                   a 2-D array of numbers (memory-mapped, never unpickled)
    embeddings.parquet               a column of vectors (``--embedding-column``, else the one list column),
                                     the other columns a metadata table (needs pyarrow: the parquet extra)
    projector_config.pbtxt, or the   TensorBoard's projector files: tensors.tsv, metadata.tsv and the
    folder holding it                sprite image, as SummaryWriter.add_embedding or File > Export write them

A table beside the embeddings (``--labels TABLE``: CSV, TSV, or a 1-D ``.npy`` of labels; the
projector's metadata.tsv; a parquet file's other columns) has one row per embedding, in order. Its
labels come from ``--label-column`` (else the first of class_name, class, label, labels, category,
target, y), its image files from ``--path-column`` (else the first of path, image, file, filename,
filepath, image_path: relative to ``--image-root``, else to the table's folder); every column is kept
in ``items.csv``. A table whose rows do not match the embeddings' is refused, saying both counts.

Everything read is input from elsewhere: what cannot be used is refused with a message naming the
file and the fix (ValueError), or, for what the collection can do without (an image that cannot be
read, a sprite too small for the rows), left out with a note.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABEL_COLUMNS = ("class_name", "class", "label", "labels", "category", "target", "y")
PATH_COLUMNS = ("path", "image", "file", "filename", "filepath", "image_path")
EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "features")
SPRITE_THUMBNAIL_MAX = 64


@dataclass
class Source:
    """What was read: the embeddings (N, D), and beside them, all optional, a table (columns of text,
    one value per row), labels (text per row, "" for none), image paths, thumbnails (N, C, h, w)."""

    name: str  # "npy:FILE", "parquet:FILE", "projector:FILE"
    embeddings: Any
    columns: dict[str, list[str]] = field(default_factory=dict)
    label_column: str | None = None
    path_column: str | None = None
    image_root: Path | None = None
    thumbnails: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.embeddings.shape[0])


def read_source(path: str | Path, labels: str | None = None, label_column: str | None = None,
                path_column: str | None = None, image_root: str | None = None, tensor: str | None = None,
                embedding_column: str | None = None) -> Source:
    """Read embeddings made elsewhere and their table; ValueError naming the file and the fix."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"--from {path}: the file does not exist; give a .npy, a .parquet, or TensorBoard "
                         "projector files (projector_config.pbtxt or the folder holding it)")
    if path.is_dir() or path.suffix == ".pbtxt":
        source = _read_projector(path if path.suffix == ".pbtxt" else path / "projector_config.pbtxt", tensor)
    elif path.suffix == ".npy":
        source = Source(f"npy:{path}", _read_npy(path, "--from"))
    elif path.suffix == ".parquet":
        source = _read_parquet(path, embedding_column)
    elif path.suffix in (".tsv", ".txt"):
        source = Source(f"tsv:{path}", _read_tensors_tsv(path))
    else:
        raise ValueError(f"--from {path}: {path.suffix or 'no suffix'} is not a format embed reads; allowed: .npy, "
                         ".parquet, .tsv (the projector's tensors), projector_config.pbtxt or its folder")
    if labels:
        table_path = Path(labels).expanduser()
        source.columns = _read_table(table_path)
        source.image_root = table_path.parent
        table_name = table_path.name
    else:
        table_name = source.name.partition(":")[2] or "the table"
    if image_root:
        source.image_root = Path(image_root).expanduser()
        if not source.image_root.is_dir():
            raise ValueError(f"--image-root {image_root}: not a folder; give the folder the image paths are relative to")
    if source.columns:
        rows = len(next(iter(source.columns.values())))
        if rows != source.n:
            raise ValueError(f"{table_name} has {rows} rows but the embeddings ({source.name.partition(':')[2]}) have "
                             f"{source.n}: a labels or metadata table needs one row per embedding, in the same "
                             "order (and a header line, unless it is a one-column projector metadata.tsv); give "
                             "the table that belongs to these embeddings")
        source.label_column = _pick(source.columns, label_column, LABEL_COLUMNS, "--label-column", table_name)
        source.path_column = _pick(source.columns, path_column, PATH_COLUMNS, "--path-column", table_name)
    elif label_column or path_column:
        raise ValueError(f"--{'label' if label_column else 'path'}-column needs a table: give it with --labels TABLE")
    return source


def _pick(columns: dict[str, list[str]], asked: str | None, names: tuple[str, ...], flag: str, table: str) -> str | None:
    if asked is not None:
        if asked not in columns:
            raise ValueError(f"{flag} {asked!r}: {table} has no such column; its columns: {', '.join(columns)}")
        return asked
    lower = {c.lower(): c for c in columns}
    found = next((lower[n] for n in names if n in lower), None)
    if found is None and len(columns) == 1 and names is LABEL_COLUMNS:
        found = next(iter(columns))  # a table of one column is the labels
    return found


def _read_npy(path: Path, flag: str) -> np.ndarray:
    from engine.schema import open_npy

    arr, notes = open_npy(path, f"{flag} {path}")  # memory-mapped; Python objects never unpickled
    if arr is None or notes:
        why = "; ".join(notes).replace(": left out", "")
        raise ValueError(why + ("; save the embeddings as a numeric array: np.save(path, np.asarray(embeddings, "
                                "dtype=np.float32))" if "Python objects" in why else "; save it again"))
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.floating)
                                                                or np.issubdtype(arr.dtype, np.integer)):
        shape = getattr(arr, "shape", None)
        raise ValueError(f"{flag} {path}: an array of shape {shape} and type {getattr(arr, 'dtype', '?')}; embeddings "
                         "are a 2-D array of numbers, one row per image (N, D)")
    if len(arr) < 3:
        raise ValueError(f"{flag} {path}: {len(arr)} rows; a map needs 3 embeddings at least")
    return arr


def _read_tensors_tsv(path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(path, delimiter="\t", dtype=np.float32, ndmin=2)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: not a table of numbers separated by tabs, one embedding per line ({error})") from None
    if len(arr) < 3:
        raise ValueError(f"{path}: {len(arr)} rows; a map needs 3 embeddings at least")
    return arr


def _read_table(path: Path) -> dict[str, list[str]]:
    """A CSV/TSV with a header line (a projector metadata.tsv of one column has none), or a 1-D .npy of
    labels: {column: [value per row]}."""
    if not path.is_file():
        raise ValueError(f"--labels {path}: the file does not exist; give a CSV or TSV table with a header, one "
                         "row per embedding, or a .npy of labels")
    if path.suffix == ".npy":
        arr = _read_labels_npy(path)
        return {"label": [str(v) for v in arr.tolist()]}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read as text ({type(error).__name__}: {error})") from None
    delimiter = "\t" if path.suffix in (".tsv", ".tab") or ("\t" in text.split("\n", 1)[0]) else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise ValueError(f"{path}: empty; a table has a header line, then one row per embedding")
    if len(rows[0]) == 1 and path.suffix == ".tsv":  # TensorBoard: one column, no header
        return {"label": [r[0] if r else "" for r in rows]}
    header = [h.strip() or f"column{i}" for i, h in enumerate(rows[0])]
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: its header names a column twice ({', '.join(header)}); give each column its own name")
    bad = next((i for i, r in enumerate(rows[1:], start=2) if len(r) != len(header)), None)
    if bad is not None:
        raise ValueError(f"{path}: line {bad} has {len(rows[bad - 1])} values, the header {len(header)}; each line "
                         "needs one value per column (quote values that hold the separator)")
    return {h: [r[i] for r in rows[1:]] for i, h in enumerate(header)}


def _read_labels_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError:
        raise ValueError(f"--labels {path}: holds Python objects, which are never unpickled; save the labels "
                         "as numbers or text (np.save(path, np.asarray(labels)))") from None
    if arr.ndim != 1:
        raise ValueError(f"--labels {path}: shape {arr.shape}; labels are one value per embedding (N,)")
    return arr


def _read_parquet(path: Path, embedding_column: str | None) -> Source:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--from .parquet needs pyarrow: pip install 'embedding-explorer[parquet]'") from None
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except Exception as error:  # not parquet, cut short
        raise ValueError(f"--from {path}: cannot be read as parquet ({type(error).__name__}: {error})") from None
    lists = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
             or pa.types.is_large_list(f.type)]
    if embedding_column is None:
        lower = {c.lower(): c for c in lists}
        embedding_column = next((lower[n] for n in EMBEDDING_COLUMNS if n in lower), None)
        if embedding_column is None and len(lists) == 1:
            embedding_column = lists[0]
        if embedding_column is None:
            raise ValueError(f"--from {path}: {'no column holds vectors' if not lists else 'several columns hold vectors: ' + ', '.join(lists)}"
                             "; name the embeddings' column with --embedding-column (a column of lists of numbers)")
    elif embedding_column not in table.column_names:
        raise ValueError(f"--embedding-column {embedding_column!r}: {path.name} has no such column; its columns: "
                         f"{', '.join(table.column_names)}")
    column = table.column(embedding_column).combine_chunks()
    lengths = np.asarray(column.value_lengths()) if hasattr(column, "value_lengths") else None
    if lengths is not None and (len(lengths) == 0 or (lengths != lengths[0]).any()):
        raise ValueError(f"{path}: the vectors of column {embedding_column!r} differ in length; embeddings all have "
                         "the same dimension")
    try:
        values = np.asarray(column.flatten(), dtype=np.float32)
    except (TypeError, ValueError, pa.ArrowInvalid) as error:
        raise ValueError(f"{path}: column {embedding_column!r} does not hold numbers ({error})") from None
    n = len(column)
    if n < 3:
        raise ValueError(f"--from {path}: {n} rows; a map needs 3 embeddings at least")
    embeddings = values.reshape(n, -1)
    columns = {}
    for name in table.column_names:
        if name == embedding_column:
            continue
        col = table.column(name).to_pylist()
        columns[name] = ["" if v is None else str(v) for v in col]
    return Source(f"parquet:{path}", embeddings, columns, image_root=path.parent)


# --------------------------------------------------------------------------- TensorBoard projector

def _blocks(text: str, name: str) -> list[str]:
    """The bodies of the top-level ``name { ... }`` blocks of a protobuf text file."""
    out, pos = [], 0
    pattern = re.compile(rf"\b{name}\s*\{{")
    while True:
        m = pattern.search(text, pos)
        if not m:
            return out
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
        pos = i


def _fields(body: str, name: str) -> list[str]:
    return [m.group(1) if m.group(1) is not None else m.group(2)
            for m in re.finditer(rf'\b{name}\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([-\w.]+))', body)]


def _read_projector(config_path: Path, tensor: str | None) -> Source:
    if not config_path.is_file():
        raise ValueError(f"--from {config_path.parent}: no projector_config.pbtxt there; give the folder TensorBoard's "
                         "projector files are in (tensorboard --logdir), or the .pbtxt itself")
    text = config_path.read_text(encoding="utf-8", errors="replace")
    embeddings = _blocks(text, "embeddings")
    if not embeddings:
        raise ValueError(f"{config_path}: no 'embeddings {{ ... }}' entry; it is not a projector config")
    names = [(_fields(b, "tensor_name") or [f"#{i}"])[0] for i, b in enumerate(embeddings)]
    notes = []
    if tensor is not None:
        if tensor not in names:
            raise ValueError(f"--tensor {tensor!r}: {config_path.name} has {', '.join(names)}")
        body = embeddings[names.index(tensor)]
    else:
        body = embeddings[0]
        if len(embeddings) > 1:
            notes.append(f"{config_path.name} lists {len(embeddings)} embeddings ({', '.join(names)}): the first is "
                         "shown; --tensor NAME picks another")
    root = config_path.parent
    tensor_path = (_fields(body, "tensor_path") or [None])[0]
    if not tensor_path:
        raise ValueError(f"{config_path}: the embeddings entry has no tensor_path (tensors stored in a checkpoint "
                         "are not read: export them as tensors.tsv)")
    source = Source(f"projector:{config_path}", _read_tensors_tsv(root / tensor_path), image_root=root, notes=notes)
    shape = [int(v) for v in _fields(body, "tensor_shape") if v.isdigit()]
    if len(shape) == 2 and tuple(shape) != source.embeddings.shape:
        raise ValueError(f"{config_path}: tensor_shape says {shape[0]} x {shape[1]}, but {tensor_path} holds "
                         f"{source.embeddings.shape[0]} x {source.embeddings.shape[1]}; the files do not belong together")
    metadata = (_fields(body, "metadata_path") or [None])[0]
    if metadata:
        source.columns = _read_table(root / metadata)
    sprites = _blocks(body, "sprite")
    if sprites:
        image = (_fields(sprites[0], "image_path") or [None])[0]
        dims = [int(v) for v in _fields(sprites[0], "single_image_dim") if v.isdigit()]
        if image and len(dims) == 2:
            source.thumbnails = _read_sprite(root / image, dims[0], dims[1], source.n, notes)
    return source


def _read_sprite(path: Path, width: int, height: int, n: int, notes: list[str]) -> np.ndarray | None:
    """The projector's sprite, tiles of width x height in rows (image i at row i // columns), as
    thumbnails (n, C, h, w) at most SPRITE_THUMBNAIL_MAX a side; None (with a note) when unusable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            sprite = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except Exception as error:
        notes.append(f"{path}: the sprite cannot be read ({type(error).__name__}: {error}): the points show without images")
        return None
    columns, rows = sprite.width // max(1, width), sprite.height // max(1, height)
    if columns * rows < n or width < 1 or height < 1:
        notes.append(f"{path}: a sprite of {columns} x {rows} tiles of {width} x {height} holds fewer images than the "
                     f"{n} embeddings: the points show without images")
        return None
    arr = np.asarray(sprite)
    if arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        arr = arr[..., 0]  # a grey sprite saved as RGB
    scale = min(1.0, SPRITE_THUMBNAIL_MAX / max(width, height))
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    channels = 1 if arr.ndim == 2 else 3
    out = np.empty((n, channels, th, tw), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        tile = arr[r * height:(r + 1) * height, c * width:(c + 1) * width]
        if (tw, th) != (width, height):
            tile = np.asarray(Image.fromarray(tile).resize((tw, th), Image.BILINEAR))
        out[i] = tile[None] if tile.ndim == 2 else tile.transpose(2, 0, 1)
    return out


def labels_of(source: Source) -> tuple[np.ndarray, list[str]]:
    """The rows' labels as ints (-1: none) and the class names, from the table's label column: whole
    numbers keep their value, text becomes classes in sorted order. Where the table also names each
    number's class (a ``class`` or ``class_name`` column beside a numeric ``label``, as File > Export
    writes), those are the class names."""
    columns = source.columns
    if not source.label_column:
        return np.full(source.n, -1, dtype=np.int64), []
    values = [v.strip() for v in columns[source.label_column]]
    known = [v for v in values if v and v != "-1"]
    if not known or not all(re.fullmatch(r"\d+", v) for v in known):
        lower = {c.lower(): c for c in columns}
        numeric = next((lower[c] for c in ("label", "labels", "target", "y") if c in lower
                        and lower[c] != source.label_column), None)
        if numeric is not None and _numeric(columns[numeric]):
            pairs = {(a.strip(), b) for a, b in zip(columns[numeric], values) if a.strip() not in ("", "-1")}
            if len({a for a, _ in pairs}) == len(pairs):  # each number one name: the table's own classes
                ints = np.array([int(v) if v.strip() not in ("", "-1") else -1 for v in columns[numeric]], np.int64)
                names = dict((int(a), b) for a, b in pairs)
                return ints, [names.get(i, str(i)) for i in range(int(ints.max()) + 1)]
        names = sorted(set(known))
        index = {n: i for i, n in enumerate(names)}
        return np.array([index.get(v, -1) for v in values], dtype=np.int64), names
    ints = np.array([int(v) if v and v != "-1" else -1 for v in values], dtype=np.int64)
    return ints, [str(i) for i in range(int(ints.max()) + 1)]


def _numeric(values: list[str]) -> bool:
    known = [v.strip() for v in values if v.strip() not in ("", "-1")]
    return bool(known) and all(re.fullmatch(r"\d+", v) for v in known)
