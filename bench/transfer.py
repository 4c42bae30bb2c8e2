"""Transfer from ImageNet: frozen features against fine-tuning, both on the method's defaults.

Fashion-MNIST, 1000 training / 2000 test images, EfficientNet-Lite0 at the method's default input
size (96 px), the engine's own training job (step-0 and final evaluations, diagnostics off). Prints
each run's final linear probe and kNN accuracy (the full protocol: probe fitted on the 1000, scored on
the 2000), the raw pixels' probe, and each run's wall-clock and process CPU time, then whether
fine-tuning beat frozen features. Pass extra runs as JSON method parameters to compare recipes:

    python bench/transfer.py '{"head_warmup": 0, "batch_norm": "train"}'   # the recipe before this one
"""
import json
import sys
import tempfile
import time

import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)
from engine import events as ev  # noqa: E402
from engine.config import TrainConfig  # noqa: E402
from engine.training import train  # noqa: E402

SLICE = {"method": "transfer", "dataset": "fashion-mnist", "train_size": 1000, "test_size": 2000,
         "eval_every": 0, "diagnostics": False}


def run(method_params: dict, out: str) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    summary = None
    for event in train(TrainConfig(**SLICE, method_params=method_params, out=out)):
        if isinstance(event, ev.Failed):
            sys.exit(event.message)
        if isinstance(event, ev.Finished):
            summary = event.summary
    return summary | {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    recipes = [("frozen", {"freeze": True}), ("fine-tuned (defaults)", {})]
    recipes += [(arg, json.loads(arg)) for arg in sys.argv[1:]]
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for name, params in recipes:
            r = results[name] = run(params, out)
            print(f"{name:24s} probe {r['linear_probe_acc']:.4f}  kNN {r['knn_acc']:.4f}  "
                  f"({r['epochs']:g} epochs; job {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU; "
                  f"training {r['train_seconds']:.0f} s)", flush=True)
    pixels = results["frozen"]["pixels_linear_probe_acc"]
    gain = results["fine-tuned (defaults)"]["linear_probe_acc"] - results["frozen"]["linear_probe_acc"]
    print(f"raw pixels probe {pixels:.4f}; fine-tuning minus frozen: {gain:+.4f} "
          f"({'beats' if gain > 0 else 'does not beat'} frozen features)")


if __name__ == "__main__":
    main()
