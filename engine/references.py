"""The references on disk: the figures a run is read against, at step 0 on fixed subsets and at its end
on the whole splits (a random initialisation of the same encoder, the raw pixels), do not depend on the
training, only on the data (and the subsets' rows), the encoder's architecture and seed, the input view
and the probe. Measured once, they are kept in the user's cache folder and read back by every later run
with the same inputs.

Why: the probe runs to convergence (engine/metrics/probe.py), and on the 60 000 + 10 000 images of
Fashion-MNIST the pixels' probe alone takes about 5 minutes of CPU (1269 L-BFGS iterations on 784
features), which a 3-minute run cannot afford at its end.

The folder is ``$EMBEDDING_EXPLORER_CACHE/references`` when that is set, else
``$XDG_CACHE_HOME/embedding-explorer/references`` (``~/.cache/...``). Each entry is one small JSON file
named by the SHA-256 of its key; a file that is not a JSON object of accuracies is untrusted input and
is ignored (and measured again), and a cache that cannot be written (read-only, disk full) is skipped:
neither ever fails a run.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1  # part of every key: raise it when the probe or the references change what they compute


def cache_folder() -> Path:
    root = os.environ.get("EMBEDDING_EXPLORER_CACHE")
    if root:
        return Path(root).expanduser() / "references"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "embedding-explorer" / "references"


def data_digest(*arrays: np.ndarray) -> str:
    """A digest of the images and labels themselves (not the dataset's name: a folder can change)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def entry_key(**parts: Any) -> str:
    """The file name of an entry: the SHA-256 of its parts (JSON, sorted keys) and VERSION."""
    text = json.dumps({"version": VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read(key: str, names: tuple[str, ...]) -> dict[str, float] | None:
    """The figures ``names`` stored under ``key``, or None when there are none or the file is not one
    this module writes (it is read as untrusted input: exactly those names, numbers in [0, 1])."""
    path = cache_folder() / f"{key}.json"
    try:
        if not path.is_file():
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or set(value) != set(names):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
               for v in value.values()):
        return None
    return {name: float(value[name]) for name in names}


def write(key: str, values: dict[str, float]) -> bool:
    """Stores ``values`` under ``key`` (atomically: a reader never sees half a file); False, and
    nothing else happens, when the folder cannot be written."""
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({name: float(value) for name, value in values.items()}, f)
            os.replace(tmp, folder / f"{key}.json")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return False
    return True
