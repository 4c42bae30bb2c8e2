"""The training job: a plain generator of small typed events (engine/events.py).

    for event in train(TrainConfig(method="supervised", dataset="digits")):
        ...

The same generator serves the command line (which prints) and the window (which draws); nothing in
here knows who listens. The job writes the run directory itself, so a run is complete on disk
whoever drives it. A ``Control`` pauses, resumes and stops it between two steps, from any thread.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine import events as ev
from engine.runs import RunDir, load_checkpoint

DEFAULTS = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "encoder": "convnet"}
FIXED_EVAL_SIZE = 2000  # points on the map: the fixed evaluation subset of the test split


def method_encoder_defaults(method, encoder: str) -> dict[str, Any]:
    """The encoder settings a method prefers (``defaults["encoder_params"]``), those the encoder has."""
    from engine.encoders import ENCODERS

    known = {p.name for p in ENCODERS.get(encoder).params}
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
    eval_every: float = 1.0  # in epochs (0.5: twice an epoch); 0 turns evaluation off until the end
    eval_size: int = FIXED_EVAL_SIZE
    probe_train_size: int = 5000  # train images the probe fits on at intermediate evaluations
    knn_k: int = 10
    checkpoint_every: int = 5  # epochs; a checkpoint is also written at the end and on stop
    time_limit: float | None = None  # minutes for the whole job: the run is shortened to fit (see _Budget)
    resume: str | None = None  # a run directory to continue
    init_from: str | None = None  # a run directory whose encoder weights start this run
    amp: bool = True  # mixed precision on CUDA
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
        for key in ("encoder", "epochs", "batch_size", "lr"):
            if values[key] is None:
                values[key] = method.defaults.get(key, DEFAULTS[key])
        values["encoder_params"] = method_encoder_defaults(method, values["encoder"]) | values["encoder_params"]
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        from engine.data import check_dataset_name
        from engine.device import DEVICES
        from engine.encoders import ENCODERS
        from engine.methods import METHODS
        from engine.params import resolve

        method = METHODS.get(self.method)
        check_dataset_name(self.dataset)
        if self.encoder is not None:
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
        if self.resume and self.init_from:
            raise ValueError("--resume and --init-from cannot be used together: resume continues a run, "
                             "init-from starts a new one from a run's encoder")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Control:
    """Pause, resume and stop a running job from another thread; the job obeys between two steps.

    ``running`` and ``stop`` may be ``multiprocessing`` events (same interface) to control a job
    that runs in another process (engine/child.py); given, they keep their state (a pause set before
    the child took them holds)."""

    def __init__(self, running=None, stop=None):
        if running is None:
            running = threading.Event()
            running.set()
        self._running = running
        self._stop = stop if stop is not None else threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused job must wake up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_while_paused(self) -> None:
        while not self._running.wait(0.05):
            pass


class TrainingError(Exception):
    """A failure with a message a person can act on (the cause and the fix)."""


def train(config: TrainConfig, control: Control | None = None) -> Iterator[ev.Event]:
    """Run one training job, yielding events. Never raises for a bad setting or a failed run: the
    last event is then ``Failed`` with the cause and the fix, and what was saved stays saved."""
    job = _Job(config, control or Control())
    try:
        yield from job.run()
    except GeneratorExit:
        raise
    except Exception as error:  # every failure becomes an event a person can read
        message = _explain(error, job)
        if job.run_dir is not None:
            job.log(ev.Failed(message, job.step, type(error).__name__))
            (job.run_dir.path / "error.log").write_text(traceback.format_exc())
        yield ev.Failed(message, job.step, type(error).__name__)


def _explain(error: Exception, job: "_Job") -> str:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return (f"out of GPU memory at batch size {job.config.batch_size}: try a smaller batch, e.g. "
                f"--batch-size {max(1, (job.config.batch_size or 2) // 2)}"
                + ("; the last checkpoint is kept" if job.saved_checkpoint else ""))
    if isinstance(error, (TrainingError, ValueError, FileNotFoundError)):
        return str(error)
    return f"training failed at step {job.step}: {type(error).__name__}: {error}"


class _Job:
    def __init__(self, config: TrainConfig, control: Control):
        self.requested = config
        self.config = config
        self.control = control
        self.run_dir: RunDir | None = None
        self.step = 0
        self.saved_checkpoint = False

    def log(self, event: ev.Event) -> ev.Event:
        if self.run_dir is not None:
            self.run_dir.append(event.to_record())
        return event

    # set-up ------------------------------------------------------------------------------------
    def _setup(self) -> Iterator[ev.Event]:
        import torch

        from engine.data import load_dataset
        from engine.device import device_name, resolve_device
        from engine.encoders import ENCODERS, build_encoder
        from engine.methods import METHODS, DataInfo, Method
        from engine.params import resolve

        resume_state = None
        if self.requested.resume:
            source = RunDir(self.requested.resume)
            if not source.file("config.json").exists():
                raise FileNotFoundError(f"--resume: {self.requested.resume} is not a run directory "
                                        "(no config.json)")
            resume_state = load_checkpoint(source.path)
            saved = TrainConfig.from_dict(source.config())
            saved.epochs = self.requested.epochs or saved.epochs  # resuming may extend the run
            saved.device = self.requested.device
            saved.resume = str(source.path)
            try:
                self.config = saved.resolved()
            except ValueError as error:  # e.g. settings an earlier version of the method took
                raise ValueError(f"--resume {source.path.name}: {error}. If the run comes from an earlier "
                                 f"version, start a new run with --init-from {source.path} to keep its "
                                 f"encoder's weights") from error
            self.run_dir = source
        else:
            self.config = self.requested.resolved()
        cfg = self.config
        init_state = None
        notes: list[str] = []
        if cfg.init_from:
            init_state = load_checkpoint(cfg.init_from)
            src_cfg = RunDir(cfg.init_from).config()
            cfg.encoder, cfg.embedding_dim = src_cfg["encoder"], src_cfg["embedding_dim"]
            cfg.encoder_params = src_cfg.get("encoder_params", {})
            notes.append(f"encoder initialised from run {cfg.init_from} ({cfg.encoder}, trained with "
                         f"{src_cfg['method']} on {src_cfg['dataset']})")

        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.device = resolve_device(cfg.device)
        data = load_dataset(cfg.dataset, data_root=cfg.data_root, train_size=cfg.train_size,
                            test_size=cfg.test_size, imbalance=cfg.imbalance, seed=cfg.seed)
        self.data = data
        notes += data.notes
        method_cls = METHODS.get(cfg.method)
        if method_cls.needs_labels and not data.labelled:
            raise ValueError(f"method '{cfg.method}' needs class labels but {cfg.dataset} is unlabelled: "
                             "choose a self-supervised method, or sort the images into class sub-folders")
        has_own_sampler = method_cls.batches is not Method.batches  # K x M samplers draw with replacement
        if cfg.batch_size > len(data.train) and not has_own_sampler:
            raise ValueError(f"--batch-size: {cfg.batch_size} is larger than the training set "
                             f"({len(data.train)} images); allowed: 1 to {len(data.train)}")
        info = DataInfo(data.num_classes, tuple(int(c) for c in data.class_counts()), data.channels,
                        data.image_size, data.labelled, data.name)
        self.info = info
        self.encoder_params = resolve(ENCODERS.get(cfg.encoder).params, cfg.encoder_params)
        encoder = build_encoder(cfg.encoder, data.channels, data.image_size, cfg.embedding_dim,
                                **self.encoder_params)
        if init_state is not None:
            _load_encoder(encoder, init_state, cfg.init_from)
        self.trainable = type(encoder).trainable
        self.method = method_cls(encoder, info, **resolve(method_cls.params, cfg.method_params))
        self.method.to(self.device)
        self.steps_per_epoch = self.method.steps_per_epoch(len(data.train), cfg.batch_size)
        notes += getattr(self.method, "notes", [])  # after steps_per_epoch, which may add one
        if not self.trainable:
            notes.append(f"{cfg.encoder} is a fixed, hand-made representation: nothing to train, "
                         "it is evaluated as it is")

        # the whole dataset lives on the device as uint8: a batch is one indexing away
        self.train_images = torch.from_numpy(data.train.images).to(self.device)
        self.train_labels = torch.from_numpy(data.train.labels).to(self.device)
        self.test_images = torch.from_numpy(data.test.images)
        eval_rows = _fixed_subset(data.test.labels, cfg.eval_size, cfg.seed)
        probe_rows = _fixed_subset(data.train.labels, cfg.probe_train_size, cfg.seed + 1)
        self.eval_rows, self.probe_rows = eval_rows, probe_rows

        groups = self.method.parameter_groups(cfg.lr)
        self.optimizer = (torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
                          if any(g["params"] for g in groups) and self.trainable else None)
        self.total_steps = self.steps_per_epoch * cfg.epochs if self.optimizer else 0
        self.amp = cfg.amp and self.device.type == "cuda"
        # a function, not a number: a time limit may still change the run's length
        self.scheduler = _cosine_schedule(self.optimizer, lambda: self.total_steps) if self.optimizer else None
        self.start_step = 0
        if resume_state is not None:
            self.method.load_state_dict(resume_state["model"])
            if self.optimizer and resume_state.get("optimizer"):
                self.optimizer.load_state_dict(resume_state["optimizer"])
                # the schedule continues where it was; its length follows the (maybe extended) run
                self.scheduler.last_epoch = int(resume_state["step"])
            self.start_step = int(resume_state["step"])
            self.rng = np.random.default_rng(cfg.seed + self.start_step)
            notes.append(f"resumed at step {self.start_step} (epoch {self.start_step / self.steps_per_epoch:g})")
        self.step = self.start_step

        if self.run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            name = cfg.run_name or f"{stamp}-{cfg.method}-{cfg.dataset.replace('/', '_').replace(':', '-')}"
            self.run_dir = RunDir.create(cfg.out, name)
        record = cfg.to_dict() | {"encoder_params": self.encoder_params,
                                  "method_params": dict(self.method.hparams),
                                  "device_resolved": str(self.device),
                                  "train_images": len(data.train), "test_images": len(data.test),
                                  "class_names": data.class_names, "image_size": list(data.image_size),
                                  "channels": data.channels, "eval_rows": eval_rows.tolist(),
                                  "embedding_dim_actual": self.method.encoder.embedding_dim}
        if resume_state is None:
            self.run_dir.write_config(record)
        self.diagnostics = None
        if cfg.diagnostics:
            self.diagnostics = _make_diagnostics(cfg, info, self.device, self.method)
        yield self.log(ev.Started(str(self.run_dir.path), record, str(self.device), device_name(self.device),
                                  self.steps_per_epoch, self.total_steps, self.start_step, tuple(notes)))
        for note in notes:
            yield self.log(ev.Message(note, "warning" if "skipped" in note else "info"))

    # the loop ----------------------------------------------------------------------------------
    def run(self) -> Iterator[ev.Event]:
        import torch

        started = time.perf_counter()
        yield from self._setup()
        cfg = self.config
        self.train_seconds, self.images_seen = 0.0, 0
        self.last_eval: dict[str, Any] = {}
        self.planned_steps = self.total_steps
        self.budget = _Budget(cfg.time_limit, started) if cfg.time_limit and self.optimizer else None
        if self.start_step == 0:
            yield from self._evaluate(final=False)
        # in steps; under a time limit _plan may space the evaluations out (see _Budget.eval_interval)
        self.eval_asked = self.eval_every = (max(1, round(cfg.eval_every * self.steps_per_epoch))
                                             if cfg.eval_every > 0 else 0)
        ckpt_every = cfg.checkpoint_every * self.steps_per_epoch
        stopped = False
        scheduler = self.scheduler
        self.method.train()
        self.loop_started, self.eval_seconds_in_loop = time.perf_counter(), 0.0
        while self.step < self.total_steps and not stopped:
            epoch_index = self.step // self.steps_per_epoch
            epoch_rng = np.random.default_rng([cfg.seed, epoch_index])
            batches = self.method.batches(self.data.train.labels, cfg.batch_size, epoch_rng)
            skip = self.step - epoch_index * self.steps_per_epoch  # a resumed run re-enters mid-epoch
            epoch_end = (epoch_index + 1) * self.steps_per_epoch
            for i, rows in enumerate(batches):
                if i < skip:
                    continue
                self.control.wait_while_paused()
                if self.control.stopped:
                    stopped = True
                    break
                yield self.log(self._train_step(rows, scheduler))
                if self.budget and self.budget.due(self.step - self.start_step, self.eval_seconds_in_loop):
                    yield from self._plan()
                if self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps:
                    eval_start = time.perf_counter()
                    yield from self._evaluate(final=False)
                    self.eval_seconds_in_loop += time.perf_counter() - eval_start
                    if self.budget:
                        yield from self._plan()
                if self.step % ckpt_every == 0:
                    yield self.log(self._checkpoint())
                if self.step >= min(epoch_end, self.total_steps):
                    break
            if not stopped and self.step < min(epoch_end, self.total_steps):
                raise TrainingError(f"method '{cfg.method}' gave fewer batches than the "
                                    f"{self.steps_per_epoch} steps of an epoch it announced")
        if self.optimizer is not None:
            yield self.log(self._checkpoint())
        if stopped:
            summary = self._summary(self.last_eval, stopped=True)
        else:
            summary = self._summary((yield from self._evaluate(final=cfg.final_eval)), stopped=False)
        summary["job_seconds"] = round(time.perf_counter() - started, 1)
        summary["final_evaluation_seconds"] = round(getattr(self, "final_evaluation_seconds", 0.0), 1)
        if self.budget:
            summary["time_limit_minutes"] = cfg.time_limit
        self.run_dir.write_summary(summary)
        yield self.log(ev.Finished(summary, stopped))

    def _plan(self) -> Iterator[ev.Event]:
        """Set the run's length, and how often it evaluates, from the time limit and what the steps and
        evaluations cost so far."""
        now = time.perf_counter()
        self.budget.last_plan = now
        steps_done = self.step - self.start_step
        first_step, first_time, eval_before = self.budget.timing_from or (0, self.loop_started, 0.0)
        evaluations = self.eval_seconds_in_loop - eval_before
        per_step = (now - first_time - evaluations) / max(1, steps_done - first_step)
        if self.eval_asked:
            interval = self.budget.eval_interval(self.eval_asked, self.eval_every, per_step)
            if interval != self.eval_every:
                self.eval_every = interval
                every = interval / self.steps_per_epoch
                yield self.log(ev.Message(
                    f"time limit {self.config.time_limit:g} min: evaluating every {every:.3g} epochs "
                    f"(asked: {self.config.eval_every:g}); an evaluation takes {self.budget.eval_seconds:.1f} s "
                    f"and evaluations get at most {100 * self.budget.MAX_EVAL_SHARE:.0f} % of the time",
                    "info"))
        total = self.budget.total_steps(now, self.step, per_step, self.eval_every, self.planned_steps)
        total = max(total, self.step)
        if abs(total - self.total_steps) <= 0.05 * self.total_steps:
            return  # not worth a change of schedule
        self.total_steps = total
        epochs = total / self.steps_per_epoch
        final = self.budget.final_seconds
        yield self.log(ev.Planned(total, epochs, (
            f"time limit {self.config.time_limit:g} min: {total} steps ({epochs:.1f} epochs of the "
            f"{self.config.epochs} asked for) fit, at {1000 * per_step:.0f} ms a step, with the evaluations"
            + (f" and about {final:.0f} s for the final one" if final is not None else ""))))

    def _train_step(self, rows: np.ndarray, scheduler) -> ev.StepReport:
        import torch

        start = time.perf_counter()
        idx = torch.as_tensor(rows, device=self.device)
        images = self.train_images[idx].float().div_(255)
        labels = self.train_labels[idx]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.method.training_step(images, labels)
        loss = out.loss.float()
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self.optimizer.step()
            scheduler.step()
        # read the loss only now: on a GPU, reading it before backward would make the host wait for the
        # forward pass instead of queueing the rest of the step. A non-finite loss still stops the job
        # before anything is saved from these weights.
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the loss became {'NaN' if loss_value != loss_value else 'infinite'} at step {self.step + 1}: "
                f"training diverged; try a lower learning rate (e.g. --lr {self.config.lr / 10:g})"
                + (f"; the last good checkpoint ({self.run_dir.file('checkpoint.pt')}) is kept"
                   if self.saved_checkpoint else ""))
        self.step += 1
        self.method.after_step(self.step, self.total_steps)
        elapsed = time.perf_counter() - start
        self.train_seconds += elapsed
        self.images_seen += len(rows)
        terms = {"loss": loss_value} | {k: float(v) for k, v in out.terms.items()}
        stats = {k: (float(v) if torch.is_tensor(v) and v.numel() == 1 else v) for k, v in out.stats.items()}
        return ev.StepReport(self.step, self.step / self.steps_per_epoch, terms,
                             float(self.optimizer.param_groups[-1]["lr"]), len(rows) / max(elapsed, 1e-9),
                             stats)

    def _checkpoint(self) -> ev.Checkpointed:
        state = {"model": self.method.state_dict(),
                 "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                 "step": self.step, "epoch": self.step / self.steps_per_epoch,
                 "method": self.config.method, "encoder": self.config.encoder}
        path = self.run_dir.save_checkpoint(state)
        self.saved_checkpoint = True
        return ev.Checkpointed(self.step, self.step / self.steps_per_epoch, str(path))

    # evaluation --------------------------------------------------------------------------------
    def _evaluate(self, final: bool) -> Iterator[ev.Event]:
        """Probe and kNN accuracy, snapshot of the fixed subset, and the diagnostics. At the end
        (``final``) the probe is fitted on the whole train split and scored on the whole test split,
        beside the same figures for a random initialisation and for the raw pixels."""
        from engine.encoders import embed
        from engine.metrics.probe import knn_accuracy, linear_probe
        from engine.metrics.retrieval import retrieval_metrics

        cfg, data, dev = self.config, self.data, self.device
        encoder = self.method.encoder
        epoch = self.step / self.steps_per_epoch
        eval_start, diagnostics_seconds, references_seconds = time.perf_counter(), 0.0, 0.0
        eval_x = embed(encoder, self.test_images[self.eval_rows], device=dev)
        metrics: dict[str, Any] = {}
        _check_finite(eval_x, self.step)
        if data.labelled:
            train_imgs, train_y, test_imgs, test_y = self._probe_data(final)
            train_x = embed(encoder, train_imgs, device=dev)
            # the quick protocol scores on the map's points, already embedded
            test_x = embed(encoder, test_imgs, device=dev) if final else eval_x
            _check_finite(train_x, self.step)
            metrics["linear_probe_acc"] = linear_probe(train_x, train_y, test_x, test_y, device=dev)
            metrics["knn_acc"] = knn_accuracy(train_x, train_y, test_x, test_y, k=cfg.knn_k, device=dev)
            retrieval = retrieval_metrics(test_x.float().cpu().numpy(), np.asarray(test_y),
                                          metric=getattr(self.method, "retrieval_metric", "euclidean"))
            # "nmi" is the diagnostics' k-means NMI on the map's points; retrieval's is on the test split
            retrieval["retrieval_nmi"] = retrieval.pop("nmi", None)
            metrics.update(retrieval)
            if hasattr(self.method, "evaluation_stats"):  # e.g. triplet shares, class-centre angles
                import torch

                metrics.update(self.method.evaluation_stats(
                    eval_x, torch.as_tensor(data.test.labels[self.eval_rows], device=eval_x.device)))
            if self.step == 0 or final:
                references_start = time.perf_counter()
                metrics.update(self._references(final))
                references_seconds = time.perf_counter() - references_start
        eval_np = eval_x.float().cpu().numpy()
        coords = None
        if self.diagnostics is not None:
            diagnostics_start = time.perf_counter()
            factors = None
            if data.test.factors is not None:
                factors = {k: v[self.eval_rows] for k, v in data.test.factors.items()}
            extra, coords = self.diagnostics.evaluate(encoder, self.test_images[self.eval_rows],
                                                      data.test.labels[self.eval_rows], eval_np, factors,
                                                      self.step)
            metrics.update(extra)
            diagnostics_seconds = time.perf_counter() - diagnostics_start
        arrays = {"embeddings": eval_np, "indices": self.eval_rows, "labels": data.test.labels[self.eval_rows]}
        if coords is not None:
            arrays["coords"] = coords
        if self.diagnostics is not None:  # per-point results the map colours with
            arrays.update(self.diagnostics.arrays)
            if "kmeans_clusters" in arrays:
                arrays["clusters"] = arrays["kmeans_clusters"]
        path = self.run_dir.save_snapshot(self.step, **arrays)
        if getattr(self, "budget", None) and not final:
            # the final evaluation runs the step-0 probes on the whole splits instead of subsets
            scale = (len(data.train) + len(data.test)) / (len(self.probe_rows) + len(self.eval_rows))
            self.budget.measured_evaluation(time.perf_counter() - eval_start, diagnostics_seconds,
                                            references_seconds, scale)
        if final:
            self.final_evaluation_seconds = time.perf_counter() - eval_start
        yield self.log(ev.Snapshot(self.step, epoch, eval_np, self.eval_rows, arrays["labels"], str(path)))
        self.last_eval = metrics
        yield self.log(ev.Evaluation(self.step, epoch, metrics, final))
        return metrics

    def _probe_data(self, final: bool):
        """(train images, train labels, test images, test labels) the probe uses: the whole splits at
        the end, the fixed probe and map subsets during training (quick enough for every evaluation)."""
        import torch

        data = self.data
        if final:
            return self.train_images, data.train.labels, self.test_images, data.test.labels
        probe_rows = torch.as_tensor(self.probe_rows, device=self.device)
        return (self.train_images[probe_rows], data.train.labels[self.probe_rows],
                self.test_images[self.eval_rows], data.test.labels[self.eval_rows])

    def _references(self, final: bool) -> dict[str, float]:
        """The figures every result is read against: a random initialisation of the same encoder and
        the raw pixels. At step 0 they use the quick protocol, at the end the full one."""
        import torch

        from engine.encoders import build_encoder, embed
        from engine.metrics.probe import knn_accuracy, linear_probe

        cfg, data, dev = self.config, self.data, self.device
        train_imgs, train_y, test_imgs, test_y = self._probe_data(final)
        out = {}
        params = dict(self.encoder_params)
        if "random_init" in params:  # a pretrained backbone: its baseline is the same net, untrained
            params["random_init"] = True
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            random_encoder = build_encoder(cfg.encoder, data.channels, data.image_size, cfg.embedding_dim,
                                           **params).to(dev)
        tr, te = embed(random_encoder, train_imgs, device=dev), embed(random_encoder, test_imgs, device=dev)
        out["baseline_linear_probe_acc"] = linear_probe(tr, train_y, te, test_y, device=dev)
        out["baseline_knn_acc"] = knn_accuracy(tr, train_y, te, test_y, k=cfg.knn_k, device=dev)
        pixels = lambda imgs: torch.nn.functional.adaptive_avg_pool2d(  # noqa: E731
            imgs.float().div(255), _pixel_grid(data.image_size)).flatten(1)
        out["pixels_linear_probe_acc"] = linear_probe(pixels(train_imgs.cpu()), train_y,
                                                      pixels(test_imgs.cpu()), test_y, device=dev)
        return out

    def _summary(self, metrics: dict[str, Any], stopped: bool) -> dict[str, Any]:
        cfg = self.config
        keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, type(None)))}
        return {"method": cfg.method, "dataset": cfg.dataset, "encoder": cfg.encoder,
                "device": str(self.device), "epochs": self.step / self.steps_per_epoch,
                "epochs_planned": cfg.epochs, "steps": self.step, "stopped": stopped,
                "train_seconds": round(self.train_seconds, 3),
                "images_per_second": round(self.images_seen / self.train_seconds, 1) if self.train_seconds else None,
                "linear_probe_acc": None, "knn_acc": None} | keep


def _pixel_grid(size: tuple[int, int]) -> tuple[int, int]:
    """Raw pixels for the reference probe, pooled to at most 32x32 so large images stay tractable."""
    return min(size[0], 32), min(size[1], 32)


def _fixed_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    from engine.data import stratified_subset

    return stratified_subset(labels, size, np.random.default_rng(seed))


def _check_finite(x, step: int) -> None:
    import torch

    if not torch.isfinite(x).all():
        raise TrainingError(f"the embeddings contain NaN or infinite values at step {step}: the model "
                            "diverged; try a lower learning rate")


def _make_diagnostics(cfg: TrainConfig, info, device, method):
    from engine.metrics.diagnostics import Diagnostics

    # triplet categories at the method's own margin, invariance under the method's own views
    return Diagnostics(num_classes=info.num_classes, labelled=info.labelled, projection=cfg.projection,
                       device=device, seed=cfg.seed, margin=getattr(method, "margin", 0.2),
                       augment=getattr(method, "augment", None))


def _load_encoder(encoder, state: dict, source: str) -> None:
    weights = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"--init-from {source}: its encoder does not fit this dataset's images "
                         f"({str(error).splitlines()[0]}); pretrain on data with the same number of "
                         "channels") from error


def _cosine_schedule(optimizer, total_steps):
    """Linear warm-up over the first 3% of steps, then cosine decay to zero. ``total_steps`` is a
    number, or a function giving it, for a run whose length a time limit may still change."""
    import torch

    total = total_steps if callable(total_steps) else (lambda: total_steps)

    def factor(step: int) -> float:
        warmup = max(1, int(0.03 * total()))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total() - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Budget:
    """Fits a run into ``--time-limit``: the whole job, from set-up to the final evaluation.

    After a few steps it knows the seconds per step; the step-0 evaluation tells what an evaluation
    costs, split into the part that grows with the number of images (embedding and probes) and the
    part that does not (map and indicators). From those it sets the number of steps so that the
    training, the evaluations on the way and the final evaluation on the whole splits end in time.
    It plans again at every evaluation and every ``REPLAN_SECONDS``, with what it measured since; the
    learning-rate schedule follows the new length.
    """

    WARM_UP_STEPS = 5  # not timed: the first steps pay for cuDNN's search and the allocator
    FIRST_PLAN_STEP = 25  # the first plan, after 20 timed steps
    REPLAN_SECONDS = 15.0  # plan again this often (and at every evaluation), with what was measured since
    PROBE_GROWTH = 1.3  # see measured_evaluation
    SAFETY = 0.95  # aim a little short: the final evaluation's estimate is a scaling, not a measurement
    MAX_EVAL_SHARE = 0.2  # the evaluations on the way take at most this share of the time (eval_interval)

    def __init__(self, minutes: float, started: float):
        self.limit = 60.0 * minutes
        self.started = started
        self.eval_seconds: float | None = None  # the latest evaluation, without the references
        self.references_seconds = 0.0  # the step-0 probes of a random init and of the pixels
        self.final_seconds: float | None = None  # estimate for the final evaluation
        # (steps done, time, seconds of evaluation so far) where the step timer starts
        self.timing_from: tuple[int, float, float] | None = None
        self.last_plan = 0.0

    def due(self, steps_done: int, eval_seconds: float) -> bool:
        """Called after every step: starts the step timer after the warm-up, says when to plan."""
        now = time.perf_counter()
        if steps_done == self.WARM_UP_STEPS:
            self.timing_from = (steps_done, now, eval_seconds)
        return steps_done == self.FIRST_PLAN_STEP or (steps_done > self.FIRST_PLAN_STEP
                                                       and now - self.last_plan > self.REPLAN_SECONDS)

    def measured_evaluation(self, seconds: float, fixed_seconds: float, references_seconds: float, scale: float):
        """One evaluation took ``seconds``: ``fixed_seconds`` for the map and indicators (the same at the
        end), ``references_seconds`` for the random-init and pixel probes (step 0 only), the rest for
        embedding and probing subsets, which the end does on ``scale`` times as many images."""
        if references_seconds:
            self.references_seconds = references_seconds
        self.eval_seconds = seconds - references_seconds  # the evaluations on the way have no references
        # the latest evaluation is the best guide: the first one also pays for warming up (cuDNN, kernels)
        probes = seconds - fixed_seconds - references_seconds + self.references_seconds
        # x1.3: on the whole splits the probes need more iterations than on subsets (a 3-minute CPU run:
        # 30 s estimated without it, 36.5 s taken; another run overran its limit by 7 s)
        self.final_seconds = fixed_seconds + probes * scale * self.PROBE_GROWTH

    def eval_interval(self, asked: int, current: int, seconds_per_step: float) -> int:
        """Steps between the evaluations on the way: the interval asked for, or a whole multiple of it
        long enough that evaluating takes at most MAX_EVAL_SHARE of the time. The map and the indicators
        run on the CPU, so a faster device shrinks the steps but not the evaluations (on a shared H200
        the SimCLR preset trained 134 of its 219 s, evaluating every 2 epochs). ``current`` is
        kept while its share stays within a factor 1.5 of the target, so timing noise does not make
        the rhythm of the map's updates jump back and forth."""
        if not self.eval_seconds or seconds_per_step <= 0:
            return current
        target = self.MAX_EVAL_SHARE
        share = self.eval_seconds / (self.eval_seconds + current * seconds_per_step)
        if target / 1.5 <= share <= target * 1.5 or (current == asked and share <= target * 1.5):
            return current
        needed = self.eval_seconds * (1 - target) / (target * seconds_per_step)
        return asked * max(1, math.ceil(needed / asked - 1e-9))

    def total_steps(self, now: float, step: int, seconds_per_step: float, eval_every: int, planned: int) -> int:
        left = self.limit * self.SAFETY - (now - self.started)
        left -= self.final_seconds if self.final_seconds is not None else 0.15 * self.limit
        per_step = seconds_per_step + ((self.eval_seconds or 0.0) / eval_every if eval_every else 0.0)
        return int(min(planned, step + max(0.0, left) // max(per_step, 1e-9)))
