"""engine.log, the logging API for a training loop of one's own: used as a user's script uses it, on
digits; the run directory it writes is read by the engine's loaders and shown by the window."""
import json

import numpy as np
import pytest
import torch

from engine import log
from engine.data import load_dataset
from engine.runs import RunDir


@pytest.fixture(scope="module")
def probe():
    d = load_dataset("digits")
    return d.test.images[:300], d.test.labels[:300], d.class_names


def _encoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16))


def test_a_logged_loop_writes_a_run_the_engine_reads(tmp_path, probe):
    images, labels, names = probe
    net = _encoder()
    x = torch.from_numpy(images).float() / 255
    with log.start(tmp_path, name="mine", images=images, labels=labels, class_names=names,
                   settings={"lr": 0.1, "note": "a plain loop"}, projection="pca") as run:
        for step in range(3):
            run.log_losses(step, epoch=step / 3, loss=torch.tensor(1.0 / (step + 1)), align=0.5)
            run.log_embeddings(step, net(x))
    rd = RunDir(run.path)
    config = rd.read_config(strict=True).value
    assert config["method"] == "logged" and config["method_params"] == {"lr": 0.1, "note": "a plain loop"}
    assert config["embedding_dim"] == 16 and config["class_names"] == names
    kinds = [r["kind"] for r in rd.records()]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("step") == 3 and kinds.count("evaluation") == 3 and kinds.count("snapshot") == 3
    assert run.evaluation_cpu_seconds > 0  # the evaluation thread's CPU, counted for each snapshot
    evaluation = rd.records("evaluation")[-1]["metrics"]
    for key in ("linear_probe_acc", "knn_acc", "precision_at_1", "collapse", "effective_rank", "triplet_hard",
                "nmi", "trustworthiness"):
        assert key in evaluation, key
    assert 0.5 < evaluation["knn_acc"] <= 1 and evaluation["collapse"] == "healthy"
    # the probe is the engine's own, on the fixed stratified half the API chose
    from engine.metrics.probe import knn_accuracy

    meta = np.load(run.path / "probe.npz")
    train = meta["train"]
    z = net(x).detach().numpy()
    assert evaluation["knn_acc"] == pytest.approx(knn_accuracy(z[train], labels[train], z[~train], labels[~train]))
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["knn_acc"] == evaluation["knn_acc"]
    from engine.runs import load_snapshot

    snap = load_snapshot(rd.snapshot_paths()[-1], config)
    assert snap["embeddings"].shape == (int((~train).sum()), 16) and snap["coords"].shape[1] == 2
    # the images the window shows: the dataset the config names
    from engine.restore import load_run_dataset

    data = load_run_dataset(config)
    assert len(data.test) == len(snap["indices"]) and data.test.images.dtype == np.uint8
    np.testing.assert_array_equal(data.test.labels, labels[~train])


def test_a_collapsed_loop_is_judged_collapsed(tmp_path, probe):
    images, labels, names = probe
    run = log.start(tmp_path, images=images, labels=labels, projection="pca")
    run.log_embeddings(0, np.ones((len(images), 8), np.float32) + 1e-9 * np.random.default_rng(0).normal(size=(len(images), 8)))
    run.finish()
    assert RunDir(run.path).records("evaluation")[-1]["metrics"]["collapse"] == "complete collapse"


@pytest.mark.parametrize("call, message", [
    (lambda run, n: run.log_embeddings(1, np.zeros((n - 1, 4))), "one row per probe image"),
    (lambda run, n: run.log_embeddings(1, np.full((n, 4), np.nan)), "not finite"),
    (lambda run, n: run.log_losses(1, loss=float("nan")), "not a finite loss"),
    (lambda run, n: run.log_losses(-1, loss=1.0), "step"),
    (lambda run, n: run.log_losses(1), "no loss given"),
])
def test_bad_calls_name_the_argument(tmp_path, probe, call, message):
    images, labels, _ = probe
    run = log.start(tmp_path, images=images, labels=labels, projection="pca")
    with pytest.raises(ValueError, match=message):
        call(run, len(images))
    run.finish()  # what was logged before stays, and the run ends cleanly
    assert RunDir(run.path).records()[-1]["kind"] == "finished"


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": np.zeros(5, int)}, "labels"),
    ({"images": np.zeros((10, 5, 8, 8), np.uint8)}, "channels"),
    ({"images": np.full((10, 8, 8), 2.0)}, "uint8, or floats in"),
    ({"class_names": ["a"]}, "class_names"),
    ({"train": np.ones(300, bool)}, "rows left for the map"),
    ({"settings": {"f": object()}}, "settings"),
    ({"projection": "nope"}, "nope"),
])
def test_bad_start_arguments_are_refused(tmp_path, probe, kwargs, message):
    images, labels, names = probe
    args = dict(images=images, labels=labels, class_names=names) | kwargs
    with pytest.raises(ValueError, match=message):
        log.start(tmp_path, **args)


def test_an_exception_in_the_loop_is_recorded_and_what_was_logged_stays(tmp_path, probe):
    images, labels, _ = probe
    with pytest.raises(ZeroDivisionError):
        with log.start(tmp_path, images=images, labels=labels, projection="pca") as run:
            run.log_embeddings(0, np.random.default_rng(0).normal(size=(len(images), 8)))
            1 / 0
    records = RunDir(run.path).records()
    assert records[-1]["kind"] == "failed" and "ZeroDivisionError" in records[-1]["message"]
    assert [r["kind"] for r in records].count("snapshot") == 1


def test_the_plain_pytorch_example_runs_and_its_run_opens(tmp_path):
    """examples/simclr_loop.py, as a user runs it (one epoch): a finished run the engine reads."""
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "simclr_loop.py"))
    path = Path(example["main"](["--epochs", "1", "--out", str(tmp_path)]))
    records = RunDir(path).records()
    assert records[-1]["kind"] == "finished" and any(r["kind"] == "evaluation" for r in records)
    assert sum(r["kind"] == "step" for r in records) == 8  # 1797 images in batches of 256
