"""engine.lightning.ProbeLogger in a real Lightning fit: examples/lightning_digits.py as a user runs it
(two short epochs on digits) writes a finished run with one evaluation per validation, none for the
sanity check; a fit that raises ends the run as failed. Skipped where Lightning is not installed."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("lightning", reason="the [lightning] extra is not installed")

from engine.runs import RunDir  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "examples" / "lightning_digits.py"


def test_the_lightning_example_logs_each_validation(tmp_path):
    example = runpy.run_path(str(EXAMPLE))
    path = Path(example["main"](["--epochs", "2", "--batches", "3", "--out", str(tmp_path)]))
    run = RunDir(path)
    records = run.records()
    assert records[0]["kind"] == "started" and records[-1]["kind"] == "finished"
    assert [r["step"] for r in run.records("evaluation")] == [3, 6]  # after each epoch's validation only
    assert [r["step"] for r in run.records("step")] == list(range(1, 7))
    config = run.read_config().value
    assert config["method_params"]["lr"] == 3e-3 and config["method_params"]["module"] == "DigitsNet"
    assert config["embedding_dim"] == 64 and len(run.snapshot_paths()) == 2
    assert records[-1]["summary"]["knn_acc"] is not None


def test_a_fit_that_raises_ends_the_run_failed(tmp_path):
    import torch

    example = runpy.run_path(str(EXAMPLE))
    from engine.lightning import ProbeLogger, pl

    class Breaks(example["DigitsNet"]):
        def training_step(self, batch, batch_idx):
            if self.global_step == 2:
                raise RuntimeError("out of memory, say")
            return super().training_step(batch, batch_idx)

    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    logger = ProbeLogger(x, y.numpy(), root=tmp_path, name="breaks", projection="pca")
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[logger])
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.fit(Breaks(), data, data)
    last = RunDir(logger.path).records()[-1]
    assert last["kind"] == "failed" and "out of memory, say" in last["message"]


def test_bad_probe_inputs_are_refused():
    from engine.lightning import ProbeLogger

    with pytest.raises(ValueError, match="inputs: shape"):
        ProbeLogger([1.0, 2.0])
    with pytest.raises(ValueError, match="batch_size"):
        ProbeLogger(__import__("torch").zeros(5, 1, 8, 8), batch_size=0)
