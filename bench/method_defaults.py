"""Every registered method on its own defaults, against the two references every result is read
against: does it beat raw pixels' linear probe and a random initialisation's kNN, within 2 minutes of
training?

Each method trains on the dataset the window and the command line offer it first (``digits`` unless
the method's ``defaults`` name another), with nothing but its defaults (seed 0): the same run as
``embedding-explorer train --method NAME``, except that evaluations on the way and the diagnostics are
off (they are not training, and they do not change what is trained). The figures are the final
full-protocol evaluation's (probe fitted on the whole train split, scored on the whole test split) and
the references the same run measures on the same splits.

Training time is measured around each optimiser step (evaluations and checkpoints left out), in wall
seconds and in the process's CPU seconds, with one torch thread by default (``--threads``): the window
trains with one thread on a 2-core machine (it leaves a core to the GUI), and with one thread the CPU
seconds are what the training takes alone on one core, whatever else the machine runs, while the wall
seconds grow with the load. The 2-minute limit is checked on the smaller of the two.

    python bench/method_defaults.py                       # every method
    python bench/method_defaults.py --methods rotation,byol
    python bench/method_defaults.py --methods byol --set lr=3e-4 --set ema=0.996   # try another setting
    python bench/method_defaults.py --before              # and each changed method on its old defaults

``--set NAME=VALUE`` overrides a run setting (epochs, lr, batch_size, ...) or a method or encoder
parameter, for every method run: how the defaults were searched for.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, fields

import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

LIMIT_SECONDS = 120.0
# main's defaults before issue 13 (commit fd668c7), as settings over today's: what --before trains beside
# each method's own defaults, so the table before and after comes out of one run. Colorization's
# before also differs in what is measured: its encoder was then evaluated on the colour images
BEFORE: dict[str, dict[str, str]] = {
    "rotation": {"dataset": "digits", "head_hidden_dim": "0", "crop_min": "0.3", "epochs": "30", "lr": "1e-3",
                 "batch_size": "128"},
    "byol": {"predictor_lr_scale": "1", "epochs": "40", "batch_size": "256", "lr": "1e-3"},
    "simclr": {"blur_p": "0"},
    "colorization": {"dataset": "shapes", "epochs": "10", "targets": "hard"},
}
# methods whose defaults are not meant to beat the references
NOT_JUDGED = {"invariance-only": "the collapse control: its defaults are meant to collapse"}


@dataclass
class Row:
    method: str
    dataset: str
    label: str = "defaults"
    probe: float | None = None
    knn: float | None = None
    random_knn: float | None = None
    pixels_probe: float | None = None
    wall: float = 0.0
    cpu: float = 0.0
    steps: int = 0
    job_wall: float = 0.0
    error: str = ""

    @property
    def seconds(self) -> float:
        return min(self.wall, self.cpu)

    def verdict(self) -> str:
        if self.error:
            return "FAIL (" + self.error + ")"
        if self.method in NOT_JUDGED:
            return "not judged: " + NOT_JUDGED[self.method]
        failed = []
        if not (self.probe is not None and self.pixels_probe is not None and self.probe > self.pixels_probe):
            failed.append("probe <= pixels")
        if not (self.knn is not None and self.random_knn is not None and self.knn > self.random_knn):
            failed.append("kNN <= random init")
        if self.seconds > LIMIT_SECONDS:
            failed.append(f"over {LIMIT_SECONDS:.0f} s")
        return "pass" if not failed else "FAIL (" + ", ".join(failed) + ")"


def default_dataset(method_cls) -> str:
    from engine.config import TrainConfig

    return method_cls.defaults.get("dataset", TrainConfig().dataset)


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set: {item!r} is not valid; allowed: NAME=VALUE, e.g. lr=3e-4")
        out[name.replace("-", "_")] = value
    return out


def make_config(name: str, dataset: str, out: str, sets: dict[str, str]):
    from engine.config import TrainConfig
    from engine.encoders import ENCODERS
    from engine.methods import METHODS

    cls = METHODS.get(name)
    kwargs: dict = {"method": name, "dataset": dataset, "out": out, "eval_every": 0, "diagnostics": False,
                    "checkpoint_every": 10_000, "seed": 0}
    method_params, encoder_params = {}, {}
    run_fields = {f.name: f for f in fields(TrainConfig)}
    method_names = {p.name for p in cls.params}
    encoder = sets.get("encoder") or cls.defaults.get("encoder", "convnet")
    encoder_names = {p.name for p in ENCODERS.get(encoder.partition(":")[0]).params}
    for key, value in sets.items():
        if key in method_names:
            method_params[key] = value
        elif key in encoder_names:
            encoder_params[key] = value
        elif key in run_fields and key not in ("method_params", "encoder_params"):
            kind = {"epochs": int, "batch_size": int, "embedding_dim": int, "train_size": int, "test_size": int,
                    "lr": float, "weight_decay": float, "seed": int}.get(key, str)
            kwargs[key] = kind(value)
        else:
            print(f"note: --set {key} is not a setting of {name}; ignored for it", file=sys.stderr)
    return TrainConfig(**kwargs, method_params=method_params, encoder_params=encoder_params)


def run_one(name: str, sets: dict[str, str], label: str = "defaults") -> Row:
    from engine import events as ev
    from engine.methods import METHODS
    from engine.training import train

    cls = METHODS.get(name)
    dataset = sets.get("dataset") or default_dataset(cls)
    row = Row(name, dataset, label)
    with tempfile.TemporaryDirectory(prefix="method-defaults-") as out:
        config = make_config(name, dataset, out, {k: v for k, v in sets.items() if k != "dataset"})
        job_start = time.perf_counter()
        last_wall, last_cpu = time.perf_counter(), time.process_time()
        for event in train(config):
            wall, cpu = time.perf_counter(), time.process_time()
            if isinstance(event, ev.StepReport):  # the step since the last event: training time
                row.wall += wall - last_wall
                row.cpu += cpu - last_cpu
                row.steps += 1
            elif isinstance(event, ev.Finished):
                s = event.summary
                row.probe, row.knn = s.get("linear_probe_acc"), s.get("knn_acc")
                row.random_knn, row.pixels_probe = s.get("baseline_knn_acc"), s.get("pixels_linear_probe_acc")
            elif isinstance(event, ev.Failed):
                row.error = event.message
            last_wall, last_cpu = time.perf_counter(), time.process_time()
        row.job_wall = time.perf_counter() - job_start
    return row


def fmt(x: float | None) -> str:
    return "  -   " if x is None else f"{x:.4f}"


def print_table(rows: list[Row]) -> None:
    print(f"{'method':<16} {'settings':<8} {'dataset':<14} {'probe':>6} {'kNN':>6} {'rnd kNN':>7} {'px probe':>8} "
          f"{'steps':>5} {'train wall':>10} {'train CPU':>9} {'job wall':>8}  verdict")
    for r in rows:
        print(f"{r.method:<16} {r.label:<8} {r.dataset:<14} {fmt(r.probe):>6} {fmt(r.knn):>6} {fmt(r.random_knn):>7} "
              f"{fmt(r.pixels_probe):>8} {r.steps:>5} {r.wall:>9.1f}s {r.cpu:>8.1f}s {r.job_wall:>7.1f}s  "
              f"{r.verdict()}")


def main(argv: list[str] | None = None) -> int:
    from engine.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="", help="comma-separated method names (default: every method)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the window's on a 2-core machine)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a run setting or a method or encoder parameter (repeatable)")
    parser.add_argument("--before", action="store_true",
                        help="also train each method whose defaults issue 13 changed on the defaults it had "
                             "before (BEFORE), and print the two side by side")
    args = parser.parse_args(argv)
    names = [n for n in args.methods.split(",") if n] or list(METHODS.names())
    unknown = [n for n in names if n not in METHODS.names()]
    if unknown:
        parser.error(f"--methods: {', '.join(unknown)} not registered; allowed: {', '.join(METHODS.names())}")
    if args.threads < 1:
        parser.error(f"--threads: {args.threads} is not valid; allowed: a whole number >= 1")
    sets = parse_sets(args.set)
    import os

    import torch

    torch.set_num_threads(args.threads)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s){load}"
          + (f"; settings: {' '.join(args.set)}" if args.set else "; every method on its defaults"), flush=True)
    rows = []
    runs = [(name, sets, "defaults") for name in names]
    if args.before:
        runs = [run for name in names for run in ([(name, BEFORE[name] | sets, "before")] if name in BEFORE else [])
                + [(name, sets, "defaults")]]
    for name, settings, label in runs:
        rows.append(run_one(name, settings, label))
        r = rows[-1]
        print(f"  {name} ({label}, {r.dataset}): probe {fmt(r.probe)}, kNN {fmt(r.knn)}, {r.steps} steps, train "
              f"{r.wall:.1f} s wall / {r.cpu:.1f} s CPU  {r.verdict()}", flush=True)
    print()
    print_table(rows)
    judged = [r for r in rows if r.method not in NOT_JUDGED and r.label == "defaults"]
    return 0 if all(r.verdict() == "pass" for r in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
