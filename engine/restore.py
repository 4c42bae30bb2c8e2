"""Rebuild a trained method from its run directory, for the window's inspectors and for scripts.

    method, dataset = load_trained_method("runs/20260101-simclr-digits")

``config.json`` holds every resolved setting (method, encoder and its parameters, embedding size,
method parameters, dataset and its slicing), ``checkpoint.pt`` the method's state dict (encoder plus
its training-only heads, decoders, projectors): the same construction as the training job's set-up,
then ``load_state_dict``. The method comes back in eval mode on the CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.runs import CHECKPOINT, CONFIG, RunDir, load_checkpoint


def read_run_config(run_dir: str | Path, flag: str = "") -> tuple[RunDir, dict[str, Any]]:
    """(run, config) of a run directory, or FileNotFoundError when the folder or its config is missing,
    ValueError when the config is not a JSON object naming the method, dataset, encoder and embedding
    size. The message starts with ``flag`` (the argument that named the folder) and says what to do."""
    who = f"{flag} {run_dir}" if flag else f"run {run_dir}"
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{who}: the folder does not exist; give a run directory (a folder holding "
                                f"{CONFIG} and {CHECKPOINT}, as train writes under --out)")
    if not path.is_dir():
        raise FileNotFoundError(f"{who}: this is a file, not a run directory (a folder holding {CONFIG} "
                                f"and {CHECKPOINT})")
    run = RunDir(path)
    if not run.file(CONFIG).is_file():
        raise FileNotFoundError(f"{who}: not a run directory: it has no {CONFIG}")
    loaded = run.read_config()  # checked against its schema (engine/schema.py)
    if loaded.value is None:  # not JSON, not UTF-8, unreadable
        raise ValueError(f"{who}: its {CONFIG} cannot be read ({'; '.join(loaded.notes)}): the run directory "
                         "is damaged; start a new run")
    cfg = loaded.value
    needed = {"method": str, "dataset": str, "encoder": str, "embedding_dim": int}
    bad = [k for k, kind in needed.items() if not isinstance(cfg.get(k), kind)]
    if bad:
        raise ValueError(f"{who}: its {CONFIG} has no valid {', '.join(bad)}: it was not written by this "
                         "program, or not completely; start a new run")
    if loaded.notes:  # a setting of the wrong type: the run cannot be rebuilt as it was
        raise ValueError(f"{who}: its {'; '.join(loaded.notes)}; the run directory is damaged or from another "
                         "program; fix the file or start a new run")
    return run, cfg


def read_run(run_dir: str | Path, flag: str = "", map_location: str = "cpu") -> tuple[RunDir, dict[str, Any], dict]:
    """(run, config, checkpoint state) of a run directory that holds a trained model: the one check
    behind ``--resume``, ``--init-from`` and the window's inspectors (read_run_config, then the
    checkpoint: FileNotFoundError when there is none yet, ValueError when it is damaged or incomplete)."""
    run, cfg = read_run_config(run_dir, flag)
    who = f"{flag} {run_dir}" if flag else f"run {run_dir}"
    if not run.file(CHECKPOINT).exists():
        every = cfg.get("checkpoint_every", 5)
        raise FileNotFoundError(f"{who}: the run has no {CHECKPOINT} yet: a checkpoint is written every "
                                f"{every} epochs and at the end, and this run stopped before its first; "
                                "start a new run")
    try:
        state = load_checkpoint(run.file(CHECKPOINT), map_location)
    except ValueError as error:
        raise ValueError(f"{who}: {error}") from error
    return run, cfg, state


def load_run_dataset(config: dict[str, Any]):
    """The dataset of a run, sliced exactly as the run saw it (same sizes, imbalance and seed)."""
    from engine.data import load_dataset

    return load_dataset(config["dataset"], data_root=config.get("data_root"), train_size=config.get("train_size"),
                        test_size=config.get("test_size"), imbalance=config.get("imbalance"),
                        seed=config.get("seed", 0))


def load_trained_method(run_dir: str | Path, dataset=None, map_location: str = "cpu"):
    """(method, dataset) of the run in ``run_dir``, with the checkpoint's weights, in eval mode.

    ``dataset``: the run's ``ImageDataset`` if the caller already holds it (loading Fashion-MNIST
    again costs a second). Raises FileNotFoundError when the run has no config or no checkpoint
    yet, ValueError when one is damaged or the checkpoint does not fit the configuration (read_run).
    """
    from engine.encoders import build_encoder
    from engine.methods import METHODS, DataInfo
    from engine.params import resolve

    run, cfg, state = read_run(run_dir, map_location=map_location)
    if dataset is None:
        dataset = load_run_dataset(cfg)
    method_cls = METHODS.get(cfg["method"])
    info = DataInfo(dataset.num_classes, tuple(int(c) for c in dataset.class_counts()), dataset.channels,
                    dataset.image_size, dataset.labelled, dataset.name)
    from engine.export import rebuild_params

    # the checkpoint holds every weight: no pretrained download or weights file is needed first
    encoder = build_encoder(cfg["encoder"], dataset.channels, dataset.image_size, cfg["embedding_dim"],
                            **rebuild_params(cfg["encoder"], cfg.get("encoder_params", {})))
    try:
        params = resolve(method_cls.params, cfg.get("method_params", {}))
    except ValueError as error:  # a run saved by an earlier version of the method
        raise ValueError(f"run {run.path.name} was trained with {cfg['method']} settings that this version "
                         f"no longer takes ({error}). Its maps and curves still open; to inspect its model, "
                         f"train it again") from error
    method = method_cls(encoder, info, **params)
    try:
        method.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"checkpoint of run {run.path.name} does not fit its configuration "
                         f"({str(error).splitlines()[0]})") from error
    method.to(map_location)
    method.eval()
    return method, dataset
