"""The run directory: one folder per run, readable without the program.

    config.json      every resolved setting
    metrics.jsonl    one JSON object per event, with a "kind" field
    snapshots/       step_<n>.npz per evaluation: embeddings, indices, labels (and 2D coords)
    checkpoint.pt    the last good state (always loaded with weights_only=True)
    summary.json     the final figures
    .lock            held by the one process that writes the run (its pid and host inside)

Each file's schema, and the loaders that read it as untrusted input, are in engine/schema.py; what
is written here is checked against the same schema. Whole files are written to a temporary name and
renamed, so a crash or a full disk never leaves a half-written file in place of a good one.
``metrics.jsonl`` is append-only: each line goes out in one ``write`` call of a complete line (a write
cut short is taken back), and readers skip a torn last line. Every file is created with the
permissions of any new file (0666 less the umask), so a shared folder's other users read them as they
read the rest of it. One process writes a run at a time: ``lock()`` refuses a second writer by name.
"""
from __future__ import annotations

import errno
import json
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from engine import schema

CONFIG, METRICS, SUMMARY, CHECKPOINT, SNAPSHOTS, LOCK = (
    "config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "snapshots", ".lock")
NEW_FILE_MODE = 0o666  # the umask applies, as for any file a program creates


class RunWriteError(OSError):
    """A run file could not be written (a full disk, no permission): one line naming the folder,
    the cause and what to do."""


class RunInUseError(Exception):
    """Another process writes the run directory."""


def _write_failure(error: OSError, path: Path) -> RunWriteError:
    folder = path.parent
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        failure = RunWriteError(f"{what}: cannot write {path.name} in {folder} ({error.strerror}); free some "
                                "space there or choose another --out folder")
    else:
        failure = RunWriteError(f"cannot write {path.name} in {folder}: {error.strerror or error}")
    failure.errno = error.errno  # the cause stays readable (str() keeps the sentence: no strerror set)
    return failure


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and readers must not choke."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(obj: Any, **kw) -> str:
    return json.dumps(_clean(obj), default=_json_default, **kw)


class _Recorded:
    """A file that remembers the OSError its ``write`` raised: torch.save reports a failed write as
    'enforce fail at inline_container.cc', and the cause (a full disk) would be lost."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):  # seek, tell, ...: numpy's zip writer needs a whole file
        return getattr(self.f, name)


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over: the
    old file stays whole until the new one is complete. RunWriteError when the disk refuses."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
        try:
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
                recorded = _Recorded(f)
                try:
                    write(recorded)
                except Exception:
                    if recorded.error is not None:
                        raise recorded.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as error:
        if isinstance(error, RunWriteError):
            raise
        raise _write_failure(error, path) from error


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(to_json(obj, indent=2, sort_keys=False)), binary=False)


class RunDir:
    """Writes and reads one run's folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    @classmethod
    def create(cls, root: str | Path, name: str) -> "RunDir":
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            path, n = root / name, 1
            while path.exists():
                n += 1
                path = root / f"{name}-{n}"
            path.mkdir()
            (path / SNAPSHOTS).mkdir()
        except OSError as error:
            raise _write_failure(error, root / name) from error
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # one writer at a time ----------------------------------------------------------------------
    def lock(self) -> None:
        """Take the run for this process, or RunInUseError naming the process that holds it. The lock
        is the kernel's (``flock``), so a process that died holds nothing: its lock file is stale and
        taken over. Readers (the window opening or following a run) take no lock."""
        path = self.file(LOCK)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
        except OSError as error:
            raise _write_failure(error, path) from error
        try:
            _try_lock(fd, path)
        except RunInUseError:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            os.ftruncate(fd, 0)  # nobody holds it now
        except OSError:
            pass
        _unlock(fd, self.file(LOCK))
        os.close(fd)

    # writing -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        schema.check_config(config)
        write_json(self.file(CONFIG), config)

    def write_summary(self, summary: dict) -> None:
        schema.check_summary(summary)
        write_json(self.file(SUMMARY), summary)

    def append(self, record: dict) -> None:
        schema.check_written_record(record)
        line = (to_json(record) + "\n").encode()
        path = self.file(METRICS)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, NEW_FILE_MODE)
        except OSError as error:
            raise _write_failure(error, path) from error
        try:
            end = os.fstat(fd).st_size
            written = 0
            while written < len(line):  # a full disk may take part of the line before it refuses
                written += os.write(fd, line[written:])
        except OSError as error:
            try:
                os.ftruncate(fd, end)  # take back a part-line, so the next record starts a line
            except OSError:
                pass
            raise _write_failure(error, path) from error
        finally:
            os.close(fd)

    def save_snapshot(self, step: int, **arrays: np.ndarray) -> Path:
        arrays = {"step": np.int64(step)} | arrays
        schema.check_written_snapshot(arrays)
        path = self.path / SNAPSHOTS / f"step_{step:08d}.npz"
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    def save_checkpoint(self, state: dict) -> Path:
        import torch

        atomic_write(self.file(CHECKPOINT), lambda f: torch.save(state, f))
        return self.file(CHECKPOINT)

    # reading (engine/schema.py: what does not fit is left out, with notes) ----------------------
    def read_config(self, strict: bool = False) -> schema.Loaded:
        return schema.load_config(self.file(CONFIG), strict=strict)

    def config(self) -> dict:
        """The settings, every field checked; ValueError naming the file and field otherwise."""
        return self.read_config(strict=True).value

    def summary(self) -> dict | None:
        return schema.load_summary(self.file(SUMMARY)).value if self.file(SUMMARY).exists() else None

    def records(self, kind: str | None = None) -> list[dict]:
        return [r for r in read_records(self.file(METRICS)) if kind is None or r.get("kind") == kind]

    def snapshot_paths(self) -> list[Path]:
        return sorted((self.path / SNAPSHOTS).glob("step_*.npz"))

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        return load_checkpoint(self.file(CHECKPOINT), map_location)


def _try_lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the lock file's holder, if that process still lives
        holder = _holder(path)
        if holder and holder.get("host") == socket.gethostname() and _alive(holder.get("pid")) \
                and holder.get("pid") != os.getpid():
            raise RunInUseError(_in_use(path, holder)) from None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunInUseError(_in_use(path, _holder(path))) from None


def _unlock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def _in_use(path: Path, holder: dict) -> str:
    who = (f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})" if holder.get("pid")
           else "another process")
    return (f"run {path.parent} is being written by {who}: a run takes one writer at a time; wait until it "
            "ends or stop it, or start a new run (opening the run in the window is fine meanwhile)")


def load_snapshot(path: Path, config: dict | None = None) -> dict[str, np.ndarray]:
    """A snapshot's arrays (engine/schema.py SNAPSHOT_MEMBERS), or ValueError saying why it cannot be used."""
    loaded = schema.load_snapshot(path, config)
    if loaded.value is None:
        raise ValueError("; ".join(loaded.notes))
    return loaded.value


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Load a checkpoint safely (weights_only), or raise ValueError naming the file and the fix."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run directory, or its {CHECKPOINT}")
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}: the run never saved one (it stopped before "
                                    "its first checkpoint); start a new run instead")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        if _cut_short(path, error):
            raise ValueError(f"checkpoint {path} is incomplete (corrupt or truncated: cut short while it was "
                             "written or copied, e.g. on a full disk) and cannot be loaded; if the run was "
                             "copied, copy its checkpoint.pt again, else start a new run (the run's curves "
                             "and maps still open in the window)") from error
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}): "
                         "it cannot be loaded; start a new run, or resume from a copy of the run "
                         "made before the damage") from error
    schema.check_checkpoint(state, f"checkpoint {path}")
    return state


def _cut_short(path: Path, error: Exception) -> bool:
    """Whether a checkpoint that failed to load is a zip archive that stops early (torch.save writes
    one; its directory comes last, so a file cut short has none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"", b"PK\x03\x04") and (isinstance(error, EOFError) or "central directory" in str(error))


def read_records(path: Path) -> Iterator[dict]:
    if not Path(path).exists():
        return iter(())
    return iter(MetricsFollower(path).poll())


class MetricsFollower:
    """Reads the lines appended to a ``metrics.jsonl`` since the last call (another process may still
    be writing it: a run on a remote GPU box into a synced folder). A line is returned only once it
    is complete (ends with a newline), and only if it fits its kind's schema (engine/schema.py);
    ``take_notes()`` gives the notes on the lines skipped since it was last called."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.lines = 0  # complete lines read so far
        self._notes: list[str] = []

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as error:
            self._notes.append(f"{self.path.name}: cannot be read ({error.strerror or error})")
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        complete = data[:end + 1]
        records, notes = schema.parse_metrics_lines(complete, self.lines + 1, self.path.name)
        self.lines += complete.count(b"\n")
        self._notes += notes
        return records

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes


# --- the runs of a folder, at a glance ------------------------------------------------------------

RUN_STATUSES = ("running", "finished", "failed", "stopped", "damaged")
TAIL_BYTES = 256 * 1024  # of metrics.jsonl read for a listing: its end records are its last lines
RECENT_S = 600.0  # a run without a writer this machine can see counts as running this long after a write


@dataclass(frozen=True)
class RunListing:
    """One run directory as a list of runs shows it, read without loading its snapshots or checkpoint.

    status: ``running`` (a writer holds it: a live process on this machine, or on another machine a
    write in the last RECENT_S), ``finished``, ``failed`` (its failed record says why), ``stopped``
    (stopped by a person, or its process ended without an end record: killed, the machine shut down;
    it resumes from its last checkpoint either way) or ``damaged`` (its config.json does not say what
    was trained, or its metrics.jsonl holds nothing readable)."""

    path: Path
    status: str
    config: dict[str, Any] = field(default_factory=dict)  # the settings that fit the schema
    created: float = 0.0  # when it was made: config.json's modification time (the folder's without one)
    step: int | None = None  # the last step it reported
    total_steps: int | None = None
    message: str = ""  # why it failed, why it is damaged, or how it stopped
    notes: tuple[str, ...] = ()  # what of its files could not be read

    @property
    def name(self) -> str:
        return self.path.name


def read_listing(path: str | Path) -> RunListing:
    """The listing of one run directory (see RunListing); never raises for what its files hold."""
    path = Path(path)
    loaded = schema.load_config(path / CONFIG)
    config, notes = loaded.value or {}, list(loaded.notes)
    try:
        created = (path / CONFIG).stat().st_mtime
    except OSError:
        try:
            created = path.stat().st_mtime
        except OSError:
            created = 0.0
    missing = [k for k in schema.CONFIG_REQUIRED if config.get(k) is None]
    if loaded.value is None or missing:
        why = notes[0] if notes else f"{CONFIG}: {', '.join(missing)} missing"
        return RunListing(path, "damaged", config, created, message=f"{why}: what was trained is unknown",
                          notes=tuple(notes))
    records, size, modified = _tail_records(path / METRICS)
    step = total = None
    end: dict | None = None
    for r in records:
        if "step" in r:
            step = r["step"]
        if r["kind"] in ("started", "plan"):
            total = r.get("total_steps", total)
        if r["kind"] in ("started", "finished", "failed"):
            end = r
    if size and not records:
        return RunListing(path, "damaged", config, created, message=f"{METRICS}: no line of it can be read",
                          notes=tuple(notes))
    if end is not None and end["kind"] == "finished":
        status = "stopped" if end.get("stopped") else "finished"
        message = f"stopped at step {step}" if end.get("stopped") else ""
    elif end is not None and end["kind"] == "failed":
        status, message = "failed", str(end.get("message", ""))
    elif _written_now(path, modified):
        status, message = "running", ""
    else:
        status = "stopped"
        message = (f"ended without an end record at step {step}: its process was stopped from outside "
                   "(killed, or the machine went down); it resumes from its last checkpoint")
    return RunListing(path, status, config, created, step, total, message, tuple(notes))


def list_runs(root: str | Path) -> list[RunListing]:
    """The run directories directly inside ``root`` (the folders holding a config.json), newest first;
    [] when ``root`` does not exist. A run's files are read as input (engine/schema.py): a damaged run
    is listed as damaged, never raised."""
    root = Path(root)
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and (p / CONFIG).exists()]
    except OSError:
        return []
    listings = [read_listing(p) for p in folders]
    return sorted(listings, key=lambda r: (r.created, r.name), reverse=True)


def _tail_records(path: Path) -> tuple[list[dict], int, float]:
    """(the readable records among the last TAIL_BYTES of ``metrics.jsonl``, its size, its mtime)."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            start = max(0, stat.st_size - TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return [], 0, 0.0
    if start > 0:  # the first line read is cut: it starts before the tail
        data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
    records, _ = schema.parse_metrics_lines(data, 1, path.name)
    return records, stat.st_size, stat.st_mtime


def _written_now(path: Path, modified: float) -> bool:
    """Whether a process writes the run now: its lock's holder lives (on this machine), or the run
    was written to within RECENT_S (a holder on another machine, or none that can be checked)."""
    holder = _holder(path / LOCK)
    if holder.get("pid") and holder.get("host") == socket.gethostname():
        return _alive(holder["pid"])
    return modified > 0 and time.time() - modified < RECENT_S
