"""Every setting of a training run (``TrainConfig``) and its checks.

``TrainConfig()`` is what a person asked for (``None``: the method's preference, else the global
default); ``resolved()`` fills those in and checks every value, raising ``ValueError`` that names the
flag, the value and what is allowed. The resolved settings are what ``config.json`` records.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULTS = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "encoder": "convnet", "eval_every": 1.0}
# what may change when a run is resumed: its length, its time, how often it evaluates, where and how it runs
RESUMABLE = ("epochs", "time_limit", "eval_every", "device", "compile")
# how the processes of a run on several of them connect (engine/distributed.py): flags of the launch, not
# settings of the run, so they are never recorded and a resumed run takes them freely (on any number of
# processes whose count divides the batch)
LAUNCH_FLAGS = ("dist_backend", "dist_timeout")
FIXED_EVAL_SIZE = 2000  # points on the map: the fixed evaluation subset of the test split


def method_encoder_defaults(method, encoder: str) -> dict[str, Any]:
    """The encoder settings a method prefers (``defaults["encoder_params"]``), those the encoder has;
    none for an encoder you bring (``timm:NAME``, ``onnx:PATH``...): its model says its own input."""
    from engine.encoders import ENCODERS

    cls = ENCODERS.get(encoder)
    if cls.argument:
        return {}
    known = {p.name for p in cls.params}
    return {k: v for k, v in method.defaults.get("encoder_params", {}).items() if k in known}


@dataclass
class TrainConfig:
    """Every setting of a run. ``None`` means: the method's default, else the global default."""

    method: str = "supervised"
    dataset: str = "digits"
    encoder: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 5e-4
    embedding_dim: int = 128
    device: str = "auto"
    seed: int = 0
    out: str = "runs"
    run_name: str | None = None
    data_root: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    imbalance: float | None = None
    eval_every: float | None = None  # in epochs (0.5: twice an epoch); 0 turns evaluation off until the end
    eval_size: int = FIXED_EVAL_SIZE
    probe_train_size: int = 5000  # train images the probe fits on at intermediate evaluations
    knn_k: int = 10
    checkpoint_every: int = 5  # epochs; a checkpoint is also written at the end and on stop
    time_limit: float | None = None  # minutes for the whole job: the run is shortened to fit (see engine/budget.py)
    resume: str | None = None  # a run directory to continue
    init_from: str | None = None  # a run directory whose encoder weights start this run
    amp: bool = True  # mixed precision on CUDA
    compile: bool = False  # the encoder through torch.compile (falls back, with a note, where it cannot)
    projection: str = "umap"
    final_eval: bool = True  # the full-protocol evaluation at the end (train split vs test split)
    diagnostics: bool = True  # collapse, triplets, clusters, properties, map at each evaluation
    method_params: dict[str, Any] = field(default_factory=dict)
    encoder_params: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """A copy with the method's preferred defaults filled in, every value checked."""
        from engine.methods import METHODS

        method = METHODS.get(self.method)
        values = asdict(self)
        for key in ("encoder", "epochs", "batch_size", "lr", "eval_every"):
            if values[key] is None:
                values[key] = method.defaults.get(key, DEFAULTS[key])
        if values["train_size"] is None and values["dataset"] == method.defaults.get("dataset"):
            values["train_size"] = method.defaults.get("train_size")  # e.g. rotation: 2 minutes of CPU
        values["encoder_params"] = method_encoder_defaults(method, values["encoder"]) | values["encoder_params"]
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        from engine.data import check_dataset_name
        from engine.device import DEVICES
        from engine.encoders import ENCODERS, check_encoder_name
        from engine.methods import METHODS
        from engine.params import resolve

        method = METHODS.get(self.method)
        check_dataset_name(self.dataset)
        if self.encoder is not None:
            check_encoder_name(self.encoder)
            resolve(ENCODERS.get(self.encoder).params, self.encoder_params)
        resolve(method.params, self.method_params)

        def positive(name: str, value, kind=int):
            if value is not None and (not isinstance(value, (int, float)) or not value > 0
                                      or (kind is float and not math.isfinite(value))):
                allowed = "a whole number >= 1" if kind is int else "a number > 0"
                raise ValueError(f"--{name.replace('_', '-')}: {value!r} is not valid; allowed: {allowed}")

        for name in ("epochs", "batch_size", "embedding_dim", "eval_size", "probe_train_size", "knn_k",
                     "checkpoint_every"):
            positive(name, getattr(self, name))
        positive("lr", self.lr, float)
        positive("time_limit", self.time_limit, float)
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise ValueError(f"--weight-decay: {self.weight_decay!r} is not valid; allowed: a number >= 0")
        if not (isinstance(self.eval_every, (int, float)) and 0 <= self.eval_every < math.inf):
            raise ValueError(f"--eval-every: {self.eval_every!r} is not valid; allowed: epochs >= 0 "
                             "(0: evaluate only at the end)")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"--device: {self.device!r} is not valid; allowed: {', '.join(DEVICES)}")
        from engine.projection import PROJECTIONS

        if self.projection not in PROJECTIONS:  # checked even without diagnostics: never silently ignored
            raise ValueError(f"--projection: {self.projection!r} is not valid; "
                             f"allowed: {', '.join(PROJECTIONS.names())}")
        if not (type(self.seed) is int and 0 <= self.seed < 2**32):  # numpy's, torch's and scikit-learn's range
            raise ValueError(f"--seed: {self.seed!r} is not valid; allowed: a whole number from 0 to {2**32 - 1}")
        if self.run_name is not None and (self.run_name in ("", ".", "..")
                                          or any(c in self.run_name for c in "/\\\0")):
            raise ValueError(f"--run-name: {self.run_name!r} is not valid; allowed: a folder name (no '/'), "
                             "created inside --out")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"--out: {self.out} is a file; allowed: a folder (created if missing) that "
                             "receives the run directory")
        if not isinstance(self.compile, bool):
            raise ValueError(f"--compile: {self.compile!r} is not valid; allowed: true or false")
        if self.resume and self.init_from:
            raise ValueError("--resume and --init-from cannot be used together: resume continues a run, "
                             "init-from starts a new one from a run's encoder")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def resume_settings(requested: TrainConfig) -> tuple[TrainConfig, dict[str, list]]:
    """(the settings a resumed run continues with, what changed as {name: [before, after]}).

    ``requested.resume`` names the run. The run keeps its saved settings; of the request, only what
    RESUMABLE names is applied, when given (not None; a device other than "auto"). Any other setting
    that the request gives (one that differs from TrainConfig's default and from the saved value) is
    refused by name: ValueError (or FileNotFoundError for a folder that is no run), with what to do
    instead. Whether the run may go on at all (a finished one) is ``check_not_finished``'s to say."""
    from engine.restore import read_run_config

    source, saved_config = read_run_config(requested.resume, "--resume")  # every field checked (engine/schema.py)
    saved = TrainConfig.from_dict(saved_config)
    defaults = TrainConfig()
    refused = [f.name for f in fields(TrainConfig) if f.name not in RESUMABLE + ("resume",)
               and getattr(requested, f.name) != getattr(defaults, f.name)
               and getattr(requested, f.name) != getattr(saved, f.name)]
    if refused:
        raise ValueError(refused_on_resume([f"--{n.replace('_', '-')}" for n in refused], source.path))
    changes: dict[str, list] = {}
    for name in RESUMABLE:
        value = getattr(requested, name)
        if value is not None and not (name == "device" and value == "auto") and value != getattr(saved, name):
            changes[name] = [getattr(saved, name), value]
            setattr(saved, name, value)
    saved.resume = str(source.path)
    try:
        return saved.resolved(), changes
    except ValueError as error:  # e.g. settings an earlier version of the method took
        raise ValueError(f"--resume {source.path.name}: {error}. If the run comes from an earlier "
                         f"version, start a new run with --init-from {source.path} to keep its "
                         f"encoder's weights") from error


def refused_on_resume(flags: list[str], run: Any) -> str:
    allowed = ", ".join(f"--{n.replace('_', '-')}" for n in RESUMABLE)
    return (f"--resume continues a run with its own settings: {', '.join(flags)} cannot change on resume "
            f"(allowed: {allowed}); to train with other settings, start a new run (--init-from {run} "
            "starts it from this run's encoder)")


def check_not_finished(requested: TrainConfig, resumed: TrainConfig) -> None:
    """A run that ended (not stopped) continues only with more epochs than it trained: ValueError
    saying how to extend it otherwise. ``resumed``: what resume_settings made of ``requested``."""
    from engine.runs import RunDir

    source, saved, more_epochs = RunDir(resumed.resume), resumed, requested.epochs is not None
    ends = [r for r in source.records() if r["kind"] in ("started", "finished", "failed")]
    if not ends or ends[-1]["kind"] != "finished" or ends[-1].get("stopped"):
        return  # stopped, failed or cut off: it continues towards its epochs
    trained = ends[-1]["summary"].get("epochs")
    trained = trained if isinstance(trained, (int, float)) and not isinstance(trained, bool) else None
    if more_epochs and saved.epochs is not None and (trained is None or saved.epochs > trained + 1e-9):
        return
    done = f"{trained:g} epoch{'' if trained == 1 else 's'}" if trained is not None else "its epochs"
    raise ValueError(f"--resume: run {source.path.name} is finished ({done}); to train it further, give more "
                     f"epochs, e.g. --resume {source.path} --epochs {_more_epochs(trained, saved.epochs)}")


def _more_epochs(trained: float | None, planned: int | None) -> int:
    return max(int(math.ceil(trained or 0)), planned or 0) * 2 or 10
