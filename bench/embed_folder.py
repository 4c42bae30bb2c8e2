"""Benchmark: ``embed`` on Fashion-MNIST's 70 000 images as PNG files in class folders.

    python bench/embed_folder.py [--limit N] [--encoder efficientnet-lite0] [--input-size 224]

Prints, all measured in this one run (the machine may be shared: the ratios are what to read):

- throughput: the embed job (``python -m engine embed``: listing, DataLoader workers decoding the PNG
  files at the encoder's input size, the encoder, thumbnails and writing the rows) against a bare torch
  loop over the same encoder on the same images already decoded into one uint8 tensor, with the
  job's batch size, threads and heap setting (``engine.device.freed_memory_kept``): the loop is timed
  before and after the job, on up to ``--bare`` of the images, and the faster taken. Target: the job
  at >= 0.8 x the loop. Beside it, CPU seconds per image of each (the job's: its process during the
  embedding loop plus its decoding workers), which a shared machine's load moves less than wall
  time, and the same loop once without the heap setting (plain torch).
- peak resident memory of the job (its process and its decoding workers together, sampled every
  0.1 s: the sum of their RSS, which counts twice the pages a forked worker shares with the job,
  and, read at each new peak of that sum, the sum of their PSS, which does not) and of a window
  holding the run (its own peak, VmHWM). Target: <= 2.5 GB each.
- open-to-first-map: the window opening the run until the map shows every point (the job stored its
  map, coords.npy), beside umap-learn's cold fit on the same embeddings' 50 principal components
  (the input the job's own UMAP had). Target: <= 6 s.
- click to neighbours: the window selects a point until every panel has answered and painted (12
  neighbours with thumbnails, the triplet inspector, the map's rings), once the neighbour index is
  ready (a large run's is built in a worker as the run opens: the time to that is printed); wall time
  and the GUI thread's own CPU time (``time.thread_time``: on a shared machine the wall time reads the
  load). Target: <= 50 ms.

``--window RUN_DIR`` measures only the window (open and click) on a run made before, e.g. by
``embedding-explorer embed --dataset folder:/tmp/fashion-mnist-png --encoder efficientnet-lite0
--input-size 32`` (its 1280 dimensions, at a fiftieth of the 224 px compute): the click costs depend on
the points and their dimension, not on the encoder. ``--open-npy N``: N synthetic embeddings, view-only.

The folder is made once, under /tmp/fashion-mnist-png (``--folder``): 70 000 PNG files, 60 000 from
the training split and 10 000 from the test split, in one folder per class. ``--limit N`` embeds N of
them spread evenly over the folder (the full run takes long on a small CPU); the window and
umap-learn figures are then for N points.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")


def make_folder(folder: Path) -> int:
    """Fashion-MNIST's 70 000 images as PNG files in class folders (once: a marker file says it is done)."""
    marker = folder / ".complete"
    if marker.exists():
        return int(marker.read_text())
    from PIL import Image

    from engine.data import load_dataset

    data = load_dataset("fashion-mnist")
    n = 0
    for split_name, split in (("train", data.train), ("test", data.test)):
        for i, (image, label) in enumerate(zip(split.images, split.labels)):
            where = folder / data.class_names[int(label)].replace("/", "-")
            where.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(where / f"{split_name}_{i:05d}.png")
            n += 1
    marker.write_text(str(n))
    return n


def _tree_sample(pid: int) -> dict[int, tuple[float, int]]:
    """{pid: (CPU seconds so far, RSS KiB)} of a process and all its descendants (/proc, Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    found, todo, tick = {}, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            rss = int(open(f"/proc/{p}/status").read().split("VmRSS:")[1].split()[0])
            found[p] = ((int(fields[11]) + int(fields[12])) / tick, rss)
        except (OSError, IndexError, ValueError):
            pass
    return found


def _pss_kib(pids) -> int:
    """Proportional set size of the processes together (a page shared by k of them counts 1/k in each).
    Costly: the kernel walks every page table (50 ms of CPU for a 2 GB process here), so read it only
    at a new peak of RSS, not at every sample."""
    total = 0
    for p in pids:
        try:
            total += int(open(f"/proc/{p}/smaps_rollup").read().split("Pss:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def folder_command(folder: Path, out: Path, args) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "embed", "--dataset", f"folder:{folder}", "--encoder", args.encoder,
           "--out", str(out), "--run-name", "bench", "--quiet"]
    if args.input_size:
        cmd += ["--input-size", str(args.input_size)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    return cmd


def run_job(cmd: list[str], out: Path, details: dict | None = None) -> tuple[dict, float, float]:
    """An embed job as a user runs it, in its own process, writing ``out``/bench: (its summary, the
    tree's peak RSS in MiB, the CPU seconds of the job and its decoding workers). ``details``, when
    given, receives ``pss_mib`` (the tree's PSS at its RSS peaks, the largest), ``job_rss_mib`` (the job process's own peak)
    and ``workers_cpu`` (the CPU seconds of its descendants, the decoding workers, as last seen)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    job = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = peak_pss = peak_job = 0
    last_cpu: dict[int, float] = {}
    done = threading.Event()
    output: list[str] = []
    reader = threading.Thread(target=lambda: (output.extend(job.stdout), done.set()), daemon=True)
    reader.start()
    while job.poll() is None:
        sample = _tree_sample(job.pid)
        rss = sum(rss for _, rss in sample.values())
        if rss > peak:
            peak, peak_pss = rss, max(peak_pss, _pss_kib(sample))
        peak_job = max(peak_job, sample.get(job.pid, (0, 0))[1])
        last_cpu |= {p: cpu for p, (cpu, _) in sample.items() if p != job.pid}
        time.sleep(0.1)
    reader.join()
    if job.returncode != 0:
        raise SystemExit(f"the embed job failed ({job.returncode}):\n{''.join(output)}")
    print("".join(f"  job: {line}" for line in output), end="")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if details is not None:
        details.update(pss_mib=peak_pss / 1024, job_rss_mib=peak_job / 1024, workers_cpu=sum(last_cpu.values()))
    return json.loads((out / "bench" / "summary.json").read_text()), peak / 1024, cpu


def bare_loop(folder: Path, args, n_images: int, kept_heap: bool = True) -> tuple[float, float]:
    """(images per second, CPU seconds per image) of a bare torch loop: the same encoder, the same images decoded beforehand at
    the same size into one uint8 tensor, batch by batch to numpy, with the job's batch size on a CPU and, unless
    ``kept_heap`` is False, the job's heap setting (``freed_memory_kept``). In this process."""
    import contextlib

    import torch

    from engine.data.folder import FOLDER_IMAGE_SIZE, decode, list_folder
    from engine.device import configure_threads, freed_memory_kept
    from engine.embed import CPU_BATCH_SIZE, encoder_input_size
    from engine.encoders import build_encoder

    configure_threads(leave_one_core=False)  # as the command line does
    files = [f for f, _ in list_folder(folder)[0]]
    pick = np.unique(np.linspace(0, len(files) - 1, n_images).round().astype(int))
    params = {"input_size": args.input_size} if args.input_size else {}
    encoder = build_encoder(args.encoder, 1, (FOLDER_IMAGE_SIZE, FOLDER_IMAGE_SIZE), **params).eval()
    size = max(encoder_input_size(encoder) or (FOLDER_IMAGE_SIZE,))
    images = torch.from_numpy(np.stack([decode(files[i], (size,), "L")[0] for i in pick]))
    batch = args.batch_size or CPU_BATCH_SIZE
    with torch.inference_mode(), freed_memory_kept() if kept_heap else contextlib.nullcontext():
        encoder(images[:batch].float().div_(255))  # warm-up: the first batch's one-time costs
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(images), batch):
            encoder(images[i:i + batch].float().div_(255)).float().cpu().numpy()
    return len(images) / (time.perf_counter() - start), (time.process_time() - cpu) / len(images)


WINDOW = r"""
import sys, time
import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
from engine.device import configure_threads
configure_threads(leave_one_core=True)
from explorer.main_window import MainWindow
from explorer.session import INLINE_INDEX_VALUES
import tempfile
w = MainWindow(settings=QSettings(tempfile.mktemp(suffix=".ini"), QSettings.Format.IniFormat))
w.resize(1280, 800)
w.show()
app.processEvents()
n = int(sys.argv[2])
start = time.perf_counter()
w.open_run(sys.argv[1])
view = w.map_panel.primary
while view.point_count != n:
    app.processEvents()
    if time.perf_counter() - start > 600:
        raise SystemExit("no map after 600 s")
first_map = time.perf_counter() - start
s = w.session
metric = w.neighbours_panel.metric_combo.currentText()
while s.neighbour_index(s.current, s.snapshot(), metric, build_small=False) is None \
        and s.snapshot().embeddings.size > INLINE_INDEX_VALUES:  # a large run's: built in a worker as it opens
    app.processEvents()
    if time.perf_counter() - start > 900:
        raise SystemExit("no neighbour index after 900 s")
index_ready = time.perf_counter() - start
clicks, cpu = [], []
for row in [n // 2] + [int(r) for r in np.random.default_rng(0).integers(0, n, 10)]:
    t, c = time.perf_counter(), time.thread_time()  # wall, and the GUI thread's own CPU
    s.select_point(row)
    app.processEvents()  # every panel's answer to the click, and the repaint
    clicks.append(time.perf_counter() - t)
    cpu.append(time.thread_time() - c)
listed = sum(b.isVisible() for b in w.neighbours_panel.grid.buttons)
shown = sum(b.isVisible() and not b.icon().isNull() for b in w.neighbours_panel.grid.buttons)
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(f"{first_map} {index_ready} {clicks[0]} {cpu[0]} {np.median(clicks[1:])} {max(clicks[1:])} {np.median(cpu[1:])} "
      f"{listed} {shown} {peak}")
"""


def window_figures(run_dir: Path, n: int) -> dict:
    """The window holding a run, in a process of its own: open to first map (s), to the neighbour
    index ready (s: a large run's is built in a worker as it opens), the first click (wall s, GUI-thread
    CPU s), the median and slowest of 10 more clicks (wall s) and their median GUI-thread CPU (s),
    the neighbours shown with a thumbnail, the window's peak RSS (MiB). A click is the session's
    selection of a point until every panel has answered and painted."""
    done = subprocess.run([sys.executable, "-c", WINDOW, str(run_dir), str(n)], cwd=ROOT, capture_output=True,
                          text=True, env=dict(ENV, QT_QPA_PLATFORM="offscreen"))
    if done.returncode != 0:
        raise SystemExit(f"the window failed:\n{done.stdout}\n{done.stderr}")
    names = ("first_map", "index_ready", "first", "first_cpu", "median", "slowest", "cpu", "listed", "shown", "peak")
    return {name: float(v) for name, v in zip(names, done.stdout.split()[-len(names):])}


def click_line(n: int, f: dict) -> str:
    return (f"window: open to first map of {n} points {f['first_map']:.2f} s, neighbour index ready "
            f"{f['index_ready']:.2f} s; click -> {f['listed']:.0f} neighbours, {f['shown']:.0f} with thumbnails: first {f['first'] * 1000:.0f} ms "
            f"({f['first_cpu'] * 1000:.0f} ms GUI-thread CPU), then median {f['median'] * 1000:.0f} ms "
            f"({f['cpu'] * 1000:.0f} ms GUI-thread CPU), slowest {f['slowest'] * 1000:.0f} ms of 10 (target <= 50 ms); "
            f"peak RSS {f['peak']:,.0f} MiB (target <= 2500 MB)")


def open_run_only(run_dir: Path) -> None:
    """``--window RUN_DIR``: only the window's figures, on a run made before (``embed`` with any
    encoder: the click costs depend on the number of points and their dimension, not on the encoder)."""
    import json as _json

    manifest = _json.loads((run_dir / "embeddings.json").read_text())
    emb = np.load(run_dir / "embeddings.npy", mmap_mode="r")
    config = _json.loads((run_dir / "config.json").read_text())
    print(f"commit {_commit()}; run {run_dir}: {emb.shape[0]} x {emb.shape[1]} embeddings by "
          f"{config.get('encoder')} (input size {config.get('encoder_params', {}).get('input_size', 'default')}), "
          f"thumbnails {'yes' if (run_dir / 'thumbnails.npy').exists() else 'no'}; {manifest.get('source', '')}")
    print(click_line(emb.shape[0], window_figures(run_dir, emb.shape[0])))


def umap_learn_cold(run_dir: Path) -> float:
    from engine.collection import reduce_pca
    from engine.schema import load_collection

    x = reduce_pca(load_collection(run_dir).value.embeddings)
    import umap

    start, cpu = time.perf_counter(), time.process_time()
    umap.UMAP(n_neighbors=15, random_state=0).fit_transform(x)
    return time.perf_counter() - start, time.process_time() - cpu


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return done.stdout.strip() + (" + uncommitted changes" if dirty else "")


def open_npy(n: int, dim: int, cache: Path) -> None:
    """N synthetic embeddings (10 Gaussian blobs in ``dim`` dimensions, float32) and their labels as
    .npy files (made once, under ``cache``), opened through ``embed --from`` (the window's Open
    embeddings…) with a PCA map and no images, then held by a window: the view-only case."""
    emb, lab = cache / f"synthetic-{n}x{dim}.npy", cache / f"synthetic-{n}-labels.npy"
    if not (emb.exists() and lab.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n)
        centres = rng.normal(size=(10, dim)).astype(np.float32) * 3
        out = np.lib.format.open_memmap(emb, mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 100_000):
            y = labels[start:start + 100_000]
            out[start:start + len(y)] = centres[y] + rng.normal(size=(len(y), dim)).astype(np.float32)
        out.flush()
        del out
        np.save(lab, labels)
    out = Path(tempfile.mkdtemp(prefix="embed-bench-npy-"))
    cmd = [sys.executable, "-m", "engine", "embed", "--from", str(emb), "--labels", str(lab), "--projection", "pca",
           "--out", str(out), "--run-name", "bench", "--quiet"]
    summary, peak, cpu = run_job(cmd, out)
    print(f"embed --from: {summary['images']} x {dim} embeddings written and mapped (PCA) in "
          f"{summary['job_seconds']:.1f} s wall, {cpu:.1f} s CPU; peak RSS {peak:,.0f} MiB")
    print(click_line(summary["images"], window_figures(out / "bench", summary["images"])))
    print(f"run directory kept: {out / 'bench'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="/tmp/fashion-mnist-png")
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--input-size", type=int, help="the encoder's input size (default: its own, 224)")
    parser.add_argument("--limit", type=int, help="embed only N images, spread over the folder (default: all)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--bare", type=int, default=2000, help="images of the bare loop (default 2000)")
    parser.add_argument("--no-umap-learn", action="store_true")
    parser.add_argument("--open-npy", type=int, metavar="N", help="instead: N synthetic embeddings opened view-only "
                                                                  "through embed --from (e.g. 1000000)")
    parser.add_argument("--dim", type=int, default=64, help="their dimension (default 64)")
    parser.add_argument("--window", metavar="RUN_DIR", help="instead: only the window's figures (open, click) on "
                                                            "a run made before by embed")
    args = parser.parse_args()
    if args.window:
        return open_run_only(Path(args.window))
    if args.open_npy:
        return open_npy(args.open_npy, args.dim, Path(tempfile.gettempdir()) / "embed-bench-cache")
    folder = Path(args.folder)
    t = time.perf_counter()
    n_files = make_folder(folder)
    print(f"folder: {folder}, {n_files} PNG files ({time.perf_counter() - t:.0f} s to find or make)")
    n = min(args.limit or n_files, n_files)
    import torch

    print(f"torch threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
          f"{os.cpu_count()} cores; commit {_commit()}")
    m = min(n, args.bare)
    bare_before, cpu_before = bare_loop(folder, args, m)
    print(f"bare torch loop, {m} images decoded beforehand: {bare_before:.1f} img/s "
          f"({cpu_before * 1000:.1f} ms CPU per image)")
    out = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    details: dict = {}
    summary, job_peak, job_cpu = run_job(folder_command(folder, out, args), out, details)
    bare_after, cpu_after = bare_loop(folder, args, m)
    bare = max(bare_before, bare_after)
    print(f"bare torch loop again: {bare_after:.1f} img/s ({cpu_after * 1000:.1f} ms CPU per image)")
    plain, cpu_plain = bare_loop(folder, args, m, kept_heap=False)
    print(f"the same loop without the heap setting (plain torch): {plain:.1f} img/s ({cpu_plain * 1000:.1f} ms CPU "
          "per image)")
    job = summary["images_per_second"]
    embed_cpu = (summary.get("embed_cpu_seconds", 0.0) + details["workers_cpu"]) / summary["images"]
    print(f"embed job: {summary['images']} images in {summary['embed_seconds']:.1f} s = {job:.1f} img/s "
          f"(decoding, thumbnails and writing included); {embed_cpu * 1000:.1f} ms CPU per image (its process during "
          f"the loop, {summary.get('embed_cpu_seconds', 0.0):.1f} s, and its decoding workers, "
          f"{details['workers_cpu']:.1f} s); map {summary['layout_seconds']:.1f} s; "
          f"evaluation {summary.get('evaluation_seconds') or 0:.1f} s; whole job {summary['job_seconds']:.1f} s wall, "
          f"{job_cpu:.1f} s CPU (job and workers)")
    print(f"throughput ratio job / bare loop: {job / bare:.3f} against the faster bare run, "
          f"{job / ((bare_before + bare_after) / 2):.3f} against their mean (target >= 0.8); per CPU second: "
          f"{min(cpu_before, cpu_after) / embed_cpu:.3f}")
    print(f"peak RSS of the job (process and workers): {job_peak:,.0f} MiB (target <= 2.5 GB = 2384 MiB); "
          f"the job process alone {details['job_rss_mib']:,.0f} MiB; PSS of the tree at its RSS peaks "
          f"{details['pss_mib']:,.0f} MiB (the pages a worker shares with the job counted once)")
    window = window_figures(out / "bench", summary["images"])
    first_map = window["first_map"]
    print(click_line(summary["images"], window) + " (first map: target <= 6 s)")
    if not args.no_umap_learn:
        cold, cold_cpu = umap_learn_cold(out / "bench")
        print(f"umap-learn cold fit of the same {summary['images']} points (50 principal components): {cold:.1f} s "
              f"wall, {cold_cpu:.1f} s CPU; "
              f"the window's first map: {first_map:.2f} s ({cold / first_map:.0f}x sooner)")
    print(f"run directory kept: {out / 'bench'}")


if __name__ == "__main__":
    main()
