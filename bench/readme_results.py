"""The command-line runs behind the README's "Results measured here" table, re-run on the current code.

Each row is one `embedding-explorer train` run exactly as the README writes it (plus `--out` into a
temporary folder); its figures are read back from the run's `summary.json`, so what this prints is what
a user running the same command gets. Beside them: the run's training seconds (`train_seconds`, the
job's own clock around the optimiser steps), the whole process's wall seconds and its CPU seconds
(user + system of the child process), so a figure measured on a loaded machine can be read as such.

    python bench/readme_results.py                  # every row (about 20 minutes of CPU)
    python bench/readme_results.py --rows digits    # the digits rows only (about 6 minutes of CPU)
    python bench/readme_results.py --only supervised,arc   # the rows whose name contains a word
    python bench/readme_results.py --list           # the rows and their commands

The long rows of the README (tens of epochs on Fashion-MNIST, the GPU presets) are not here: the
README names the commit and date they were measured at.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_KEYS = ("baseline_linear_probe_acc", "baseline_knn_acc", "pixels_linear_probe_acc")

# (row name, group, command-line arguments after `train`, figures to print)
ROWS = [
    ("supervised digits", "digits", ["--method", "supervised", "--dataset", "digits"],
     ("linear_probe_acc", "knn_acc", "precision_at_1") + REFERENCE_KEYS),
    *[(f"{m} digits", "digits", ["--method", m, "--dataset", "digits"], ("precision_at_1", "linear_probe_acc"))
      for m in ("pair", "triplet", "center", "cosine", "arc")],
    *[(f"simclr digits seed {s}", "digits", ["--method", "simclr", "--dataset", "digits", "--seed", str(s)],
       ("linear_probe_acc", "knn_acc") + REFERENCE_KEYS) for s in (0, 1, 2)],
    *[(f"invariance-only digits seed {s}", "digits",
       ["--method", "invariance-only", "--dataset", "digits", "--seed", str(s)],
       ("collapse", "dead_dims", "linear_probe_acc")) for s in range(12)],
    ("preset fashion-mnist-cpu", "fashion", ["--preset", "fashion-mnist-cpu"],
     ("epochs", "linear_probe_acc") + REFERENCE_KEYS),
    ("preset arc-fashion-cpu", "fashion", ["--preset", "arc-fashion-cpu"],
     ("epochs", "linear_probe_acc", "precision_at_1")),
    ("preset triplet-fashion-cpu", "fashion", ["--preset", "triplet-fashion-cpu"],
     ("epochs", "linear_probe_acc", "precision_at_1")),
    ("preset simclr-fashion-cpu", "fashion", ["--preset", "simclr-fashion-cpu"],
     ("epochs", "linear_probe_acc") + REFERENCE_KEYS),
]


def run_row(args: list[str], out: Path) -> tuple[dict, float, float]:
    """Run one `train` in a child process; its summary, wall seconds and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "train", *args, "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    summaries = sorted(out.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(summaries[-1].read_text()), wall, cpu


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", choices=("all", "digits", "fashion"), default="all")
    parser.add_argument("--only", default="", help="the rows whose name contains one of these words, "
                                                    "separated by commas (e.g. supervised,triplet)")
    parser.add_argument("--list", action="store_true", help="print the rows and their commands, run nothing")
    opts = parser.parse_args()
    words = [w.strip() for w in opts.only.split(",") if w.strip()]
    rows = [r for r in ROWS if opts.rows in ("all", r[1]) and (not words or any(w in r[0] for w in words))]
    if opts.list:
        for name, _, args, _ in rows:
            print(f"{name}: embedding-explorer train {' '.join(args)}")
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    print(f"commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| run | figures | train s | wall s | CPU s |\n| --- | --- | --- | --- | --- |")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, _, args, keys) in enumerate(rows):
            try:
                summary, wall, cpu = run_row(args, Path(tmp) / str(i))
            except RuntimeError as err:
                failures += 1
                print(f"| {name} | FAILED: {err} | | | |", flush=True)
                continue
            figures = ", ".join(f"{k} {fmt(summary.get(k))}" for k in keys)
            print(f"| {name} | {figures} | {summary.get('train_seconds', 0):.1f} | {wall:.1f} | {cpu:.1f} |",
                  flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
