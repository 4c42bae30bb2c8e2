"""The training job: a plain generator of small typed events (engine/events.py).

    for event in train(TrainConfig(method="supervised", dataset="digits")):
        ...

The same generator serves the command line (which prints) and the window (which draws); nothing in
here knows who listens. The job writes the run directory itself, so a run is complete on disk
whoever drives it. A ``Control`` pauses, resumes and stops it between two steps, from any thread.
"""
from __future__ import annotations

import errno
import math
import re
import threading
import time
import traceback
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from engine import events as ev
from engine.budget import TimeBudget
from engine.config import DEFAULTS, TrainConfig, check_not_finished, resume_settings
from engine.evaluation import EvaluationResult, Evaluator, TrainingError
from engine.runs import RunDir, RunInUseError, RunWriteError
from engine.schema import RunFacts

if TYPE_CHECKING:
    from engine.distributed import Launch

__all__ = ["Control", "TrainConfig", "TrainingError", "train"]


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


def train(config: TrainConfig, control: Control | None = None, launch: "Launch | None" = None
          ) -> Iterator[ev.Event]:
    """Run one training job, yielding events. Never raises for a bad setting or a failed run: the
    last event is then ``Failed`` with the cause and the fix, and what was saved stays saved.

    ``launch``: this process's place in a run on several processes (engine.distributed, read from
    what torchrun or srun set); the job then joins the others, trains its share of every batch, and
    only rank 0 evaluates, writes the run directory and yields more than a Failed or Finished."""
    job = _Job(config, control or Control(), launch)
    try:
        yield from job.run()
    except GeneratorExit:
        raise
    except KeyboardInterrupt:  # a second Ctrl-C (the first stops, engine/cli.py): the run ends on the spot
        job.record_failure(ev.Failed("aborted by a second Ctrl-C: no final checkpoint or summary"
                                     + ("; the last checkpoint is kept" if job.saved_checkpoint else ""),
                                     job.step, "KeyboardInterrupt"), None)
        raise
    except Exception as error:  # every failure becomes an event a person can read
        if job.shard.distributed and _peer_failure(error):
            from engine.distributed import peer_lost_message

            failed = ev.Failed(peer_lost_message(error, job.shard, job.step, job.run_dir and job.run_dir.path,
                                                 job.saved_checkpoint), job.step, "PeerLost")
            job.record_failure(failed, traceback.format_exc())
            yield failed
            return
        trace = traceback.format_exc()
        message = _explain(error, job)
        # a ValueError or missing file before the job started comes from what was asked for: a setting,
        # a folder, a run to resume (a failure after that is the training's)
        bad_input = not job.started and isinstance(error, (ValueError, FileNotFoundError))
        failed = ev.Failed(message, job.step, type(error).__name__, bad_input)
        job.record_failure(failed, trace)
        yield failed
    finally:
        job.release()


def _peer_failure(error: Exception) -> bool:
    from engine.distributed import is_peer_failure

    return is_peer_failure(error)


def _explain(error: Exception, job: "_Job") -> str:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return _gpu_memory_advice(error, job)
    if isinstance(error, RunWriteError):  # a full disk: the message names the folder
        kept = job.run_dir.file("checkpoint.pt") if job.run_dir is not None else None
        return str(error) + (f"; the last good checkpoint ({kept}) is kept" if kept and kept.exists() else "")
    if isinstance(error, (TrainingError, ValueError, FileNotFoundError, RunInUseError)):
        return str(error)
    memory = _memory_advice(error, job)
    if memory:
        return memory
    return f"training failed at step {job.step}: {type(error).__name__}: {error}"


def _gpu_memory_advice(error: Exception, job: "_Job") -> str:
    """Out of GPU memory: the batch that fits, found by trying training steps at half the batch, then
    a quarter... (single process; on several the halving is said, not tried: a probe would need the
    others)."""
    import gc

    cfg = job.config
    kept = "; the last checkpoint is kept" if job.saved_checkpoint else ""
    # the failed step's tensors live on in the traceback's frames: free them before trying smaller batches
    traceback.clear_frames(error.__traceback__)
    gc.collect()
    if not job.started or job.method is None or job.optimizer is None:
        return (f"out of GPU memory while loading the data and building the model: the dataset ({cfg.dataset}) "
                "and the model must fit on the GPU; try fewer training images (--train-size), or --device cpu" + kept)
    batch = job.method.images_per_batch(cfg.batch_size)
    flag = "--batch-size"
    if batch != cfg.batch_size:  # K x M
        flag = "--samples-per-class"
    if job.shard.distributed:
        share = batch // job.shard.world_size
        return (f"out of GPU memory at step {job.step} with {share} images a process (a batch of {batch} on "
                f"{job.shard.world_size}): try half, {flag} {_flag_value(job, batch // 2)}, or more processes" + kept)
    whole = job.step_fits(batch)
    if whole:  # the step fits now, at its size: the memory went to something else
        return (f"out of GPU memory at step {job.step}, outside a training step of {batch} images, which fits "
                "(an evaluation, or another program on the GPU): lower --eval-size and --probe-train-size, or "
                "free the GPU" + kept)
    tried, fits, size = [], None, batch // 2
    while size >= 2 and whole is not None:
        whole = job.step_fits(size)
        if whole:
            fits = size
            break
        tried.append(size)
        size //= 2
    if whole is None:  # a step on a random batch could not tell (e.g. a loss that needs its classes)
        return (f"out of GPU memory at batch size {batch}: try a smaller batch, e.g. {flag} "
                f"{_flag_value(job, batch // 2)}" + kept)
    if fits is None:
        return (f"out of GPU memory at batch size {batch}: not even a batch of 2 fits (the model is too large for "
                "this GPU, or another program holds its memory); try a smaller encoder, or --device cpu" + kept)
    halves = f" ({', '.join(map(str, tried))} did not)" if tried else ""
    return (f"out of GPU memory at batch size {batch}: a batch of {fits} fits, found by halving{halves}; "
            f"rerun with {flag} {_flag_value(job, fits)}" + kept)


def _flag_value(job: "_Job", images: int) -> int:
    """The value of the batch's flag for a batch of ``images``: --batch-size itself, or M of K x M."""
    batch = job.method.images_per_batch(job.config.batch_size)
    if batch == job.config.batch_size:
        return max(1, images)
    return max(2, images // max(1, batch // job.method.hparams["samples_per_class"]))


def _memory_advice(error: Exception, job: "_Job") -> str | None:
    """The message for running out of CPU (or Apple MPS) memory, None for any other error: the
    allocator's own words ("DefaultCPUAllocator: can't allocate memory: you tried to allocate
    5120000000 bytes") say neither what to change nor how."""
    text = str(error)
    if not (isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text):
        return None
    asked = ""
    if found := re.search(r"allocate (\d+) bytes", text):  # torch's allocator
        asked = f" ({int(found[1]) / 2**30:.1f} GiB asked for at once)"
    elif found := re.search(r"allocate ([\d.]+ [KMGTP]iB)", text):  # numpy's
        asked = f" ({found[1]} asked for at once)"
    cfg = job.config
    fixes = [f"a smaller batch (--batch-size {max(1, (cfg.batch_size or 2) // 2)})"]
    if "input_size" in (cfg.encoder_params or {}):
        fixes.append("smaller images (--input-size)")
    fixes += ["fewer training images (--train-size)", "a smaller --embedding-dim or --eval-size"]
    return (f"out of {'MPS' if 'MPS' in text else 'CPU'} memory "
            f"{f'at step {job.step}' if job.started else 'while loading the data and building the model'}"
            f"{asked}: try {', '.join(fixes)}, or close other programs"
            + ("; the last checkpoint is kept" if job.saved_checkpoint else ""))


class _Job:
    """One run: ``_setup`` builds the data, the method and the optimiser, ``run`` trains and evaluates."""

    def __init__(self, config: TrainConfig, control: Control, launch=None):
        from engine.distributed import Shard

        self.requested = config  # as asked; ``config`` is the resolved one (or the resumed run's)
        self.config = config
        self.control = control
        # several processes: this one's rank; only rank 0 (``main``) evaluates and writes the run
        self.launch = launch
        self.shard = launch.shard if launch is not None else Shard()
        self.joined = False  # in the process group (engine.distributed.start)
        self.step_fn = None  # the training step: the method's, or DistributedDataParallel's around it
        self.stop_agreed = False  # on several ranks: a stop every rank agreed on, at the last step
        self.run_dir: RunDir | None = None
        self._locked: RunDir | None = None  # the run this job writes, locked against a second writer
        self.step = 0
        self.start_step = 0  # > 0 when resumed
        self.saved_checkpoint = False
        # set up by _setup
        self.device = None
        self.data = None
        self.method = None
        self.trainable = True
        self.steps_per_epoch = 1
        self.train_images = self.train_labels = None  # the training split on the device, uint8 / int64
        self.evaluator: Evaluator | None = None
        self.optimizer = self.scheduler = None
        self.amp = False
        self.channels_last = False
        # the run's length in steps: the epochs asked for, or as many as fit a time limit (``budget``)
        self.planned_steps = self.total_steps = 0
        self.budget: TimeBudget | None = None
        # steps between the evaluations on the way: asked for, and what a time limit made of it
        self.eval_asked = self.eval_every = 0
        # timing and throughput
        self.loop_started = 0.0
        self.eval_seconds_in_loop = 0.0
        self.train_seconds = 0.0
        self.images_seen = 0
        self.final_evaluation_seconds = 0.0
        self.last_eval: dict[str, Any] = {}
        self.started = False  # set once the run directory is written and Started is out

    def log(self, event: ev.Event) -> ev.Event:
        if self.run_dir is not None and self.shard.main:
            self.run_dir.append(event.to_record())
        return event

    def record_failure(self, failed: ev.Failed, trace: str | None) -> None:
        """Write the failure into the run once it has started (a run given to --resume that fails to
        set up keeps its files as they were), if the run can take it: after a full disk it cannot, and
        the failure still reaches whoever listens."""
        if not self.started or not self.shard.main:
            return
        try:
            self.log(failed)
            if trace:
                (self.run_dir.path / "error.log").write_text(trace)
        except OSError:
            pass

    def release(self) -> None:
        """Let another process write the run (the lock taken in _setup); leave the process group."""
        if self._locked is not None:
            self._locked.unlock()
            self._locked = None
        if self.joined:
            from engine.distributed import stop

            stop()
            self.joined = False

    # set-up ------------------------------------------------------------------------------------
    def _setup(self) -> Iterator[ev.Event]:
        import torch

        from engine.data import load_dataset
        from engine.device import device_name, resolve_device
        from engine.encoders import ENCODERS, build_encoder
        from engine.methods import METHODS, DataInfo, Method
        from engine.params import resolve
        from engine.restore import read_run, read_run_config

        resume_state = None
        changes: dict[str, list] = {}
        if self.requested.resume:
            source, _ = read_run_config(self.requested.resume, "--resume")
            if self.shard.main:
                self._take(source)  # before reading it: nobody writes it meanwhile
            _, _, resume_state = read_run(source.path, "--resume")
            self.config, changes = resume_settings(self.requested)  # refuses what cannot change
            self.run_dir = source
        else:
            self.config = self.requested.resolved()
        cfg = self.config
        init_state = None
        notes: list[str] = []
        if cfg.init_from:
            _, src_cfg, init_state = read_run(cfg.init_from, "--init-from")
            cfg.encoder, cfg.embedding_dim = src_cfg["encoder"], src_cfg["embedding_dim"]
            cfg.encoder_params = src_cfg.get("encoder_params", {})
            notes.append(f"encoder initialised from run {cfg.init_from} ({cfg.encoder}, trained with "
                         f"{src_cfg['method']} on {src_cfg['dataset']})")

        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.shard.distributed:
            from engine.distributed import rank_device

            self.device = rank_device(self.device, self.launch)
        data = load_dataset(cfg.dataset, data_root=cfg.data_root, train_size=cfg.train_size,
                            test_size=cfg.test_size, imbalance=cfg.imbalance, seed=cfg.seed)
        self.data = data
        notes += data.notes
        method_cls = METHODS.get(cfg.method)
        info = DataInfo(data.num_classes, tuple(int(c) for c in data.class_counts()), data.channels,
                        data.image_size, data.labelled, data.name)
        try:
            method_cls.check_data(info)
        except ValueError as error:
            raise ValueError(f"method '{cfg.method}' {error}") from None
        has_own_sampler = method_cls.batches is not Method.batches  # K x M samplers draw with replacement
        default_batch = method_cls.defaults.get("batch_size", DEFAULTS["batch_size"])
        if cfg.batch_size > len(data.train) and not has_own_sampler and cfg.batch_size == default_batch:
            # the default shrinks to fit a small training set (a folder of a few images); a size chosen
            # by hand is refused below instead
            notes.append(f"batch size {len(data.train)} instead of the default {cfg.batch_size}: the "
                         f"training set has {len(data.train)} images")
            cfg.batch_size = len(data.train)
        if cfg.batch_size > len(data.train) and not has_own_sampler:
            raise ValueError(f"--batch-size: {cfg.batch_size} is larger than the training set "
                             f"({len(data.train)} images); allowed: 1 to {len(data.train)}")
        encoder_params = resolve(ENCODERS.get(cfg.encoder).params, cfg.encoder_params)
        encoder = build_encoder(cfg.encoder, data.channels, data.image_size, cfg.embedding_dim, **encoder_params)
        if init_state is not None:
            _load_encoder(encoder, init_state, cfg.init_from)
        self.trainable = encoder.trainable
        notes += encoder.notes  # what building it decided: resized, pooled, weights left out
        self.method = method_cls(encoder, info, **resolve(method_cls.params, cfg.method_params))
        self.method.shard = self.shard
        batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.method.modules())
        if self.trainable and batch_norm and cfg.batch_size < 2 and not has_own_sampler:
            # torch would stop at the first step with "Expected more than 1 value per channel"
            if len(data.train) < 2:
                raise ValueError(f"the training set has {len(data.train)} image: {cfg.encoder}'s batch norm needs 2 "
                                 "a batch at least; give more images (a larger --train-size or folder)")
            raise ValueError(f"--batch-size: {cfg.batch_size} is not valid with {cfg.encoder}: its batch norm "
                             f"needs 2 images a batch at least; allowed: 2 to {len(data.train)}")
        self.steps_per_epoch = self.method.steps_per_epoch(len(data.train), cfg.batch_size)
        notes += self.method.notes  # after steps_per_epoch, which may add one
        if self.shard.distributed:
            notes += self._join()
        self.method.to(self.device)
        self.step_fn = self.method.training_step
        if self.shard.distributed and self.trainable and any(p.requires_grad for p in self.method.parameters()):
            from engine.distributed import TrainingSteps, wrap

            # a method that changes what trains on the way (before_step: transfer's head warm-up freezes the
            # backbone) leaves parameters without gradient in some steps, which DDP must look for
            phases = type(self.method).before_step is not Method.before_step
            self.step_fn = wrap(TrainingSteps(self.method), self.device, find_unused_parameters=phases)
        # the step's random draws (the two-view augmentations) from a generator seeded by the step: the
        # same in every rank, and the same again when a run resumes
        self.method.generator = torch.Generator(self.device)
        if not self.trainable:
            notes.append(f"{cfg.encoder} is a fixed, hand-made representation: nothing to train, "
                         "it is evaluated as it is")

        # the whole dataset lives on the device as uint8: a batch is one indexing away
        self.train_images = torch.from_numpy(data.train.images).to(self.device)
        self.train_labels = torch.from_numpy(data.train.labels).to(self.device)
        if cfg.compile and self.trainable:
            notes += self._compile()
        per_class = min(cfg.probe_train_size, len(data.train)) // max(1, data.num_classes)
        if data.labelled and cfg.knn_k > per_class:
            notes.append(f"kNN accuracy with k = {max(1, per_class)} instead of {cfg.knn_k}: the probe's training "
                         f"images have {per_class} per class on average, and a vote among more neighbours "
                         "than a class has is won by the other classes")
            cfg.knn_k = max(1, per_class)
        if self.shard.main:  # the other ranks train only
            self.evaluator = Evaluator(cfg, data, self.method, self.device, encoder_params, self.train_images)

        groups = self.method.parameter_groups(cfg.lr)
        self.optimizer = (torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
                          if any(g["params"] for g in groups) and self.trainable else None)
        self.total_steps = self.steps_per_epoch * cfg.epochs if self.optimizer else 0
        notes += self._device_settings()
        # a function, not a number: a time limit may still change the run's length
        self.scheduler = _cosine_schedule(self.optimizer, lambda: self.total_steps) if self.optimizer else None
        self.start_step = 0
        if resume_state is not None:
            try:
                self.method.load_state_dict(resume_state["model"])
                if self.optimizer and resume_state.get("optimizer"):
                    self.optimizer.load_state_dict(resume_state["optimizer"])
                    # the schedule continues where it was; its length follows the (maybe extended) run
                    self.scheduler.last_epoch = int(resume_state["step"])
            except (RuntimeError, ValueError, KeyError) as error:
                raise ValueError(f"--resume {source.path}: its checkpoint does not fit its config.json "
                                 f"({str(error).splitlines()[0]}): the run directory is damaged or mixed "
                                 "from two runs; start a new run") from error
            self.start_step = resume_state["step"]
            check_not_finished(self.requested, cfg)  # last: a damaged run says what is damaged first
            changed = "".join(f"; {name.replace('_', ' ')} {before} -> {after}" for name, (before, after) in changes.items())
            notes.append(f"resumed at step {self.start_step} (epoch {self.start_step / self.steps_per_epoch:g}){changed}")
        self.step = self.start_step
        if not self.shard.main:
            self.run_dir = None  # rank 0 writes it
            self.started = True
            return

        if self.run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            name = cfg.run_name or f"{stamp}-{cfg.method}-{cfg.dataset.replace('/', '_').replace(':', '-')}"
            try:
                self.run_dir = RunDir.create(cfg.out, name)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
                                       errno.ENOENT):
                    raise  # a full disk, say: not the argument's fault
                raise ValueError(f"--out: cannot create the run directory {Path(cfg.out) / name} "
                                 f"({error.strerror or error}); choose a folder you can write to") from error
            self._take(self.run_dir)
        facts = RunFacts(device_resolved=str(self.device), train_images=len(data.train), test_images=len(data.test),
                         class_names=list(data.class_names), image_size=list(data.image_size),
                         channels=data.channels, eval_rows=self.evaluator.eval_rows.tolist(),
                         embedding_dim_actual=self.method.encoder.embedding_dim)
        record = (cfg.to_dict() | {"encoder_params": encoder_params, "method_params": dict(self.method.hparams)}
                  | asdict(facts))
        self.run_dir.write_config(record)  # on resume too: what changed is recorded
        self.started = True
        yield self.log(ev.Started(str(self.run_dir.path), record, str(self.device), device_name(self.device),
                                  self.steps_per_epoch, self.total_steps, self.start_step, tuple(notes)))
        if resume_state is not None:
            yield self.log(ev.Continued(self.start_step, self.start_step / self.steps_per_epoch, changes))
        for note in notes:
            yield self.log(ev.Message(note, "warning" if "skipped" in note else "info"))

    def _join(self) -> list[str]:
        """Join the other ranks (several processes): check that the batch divides among them, connect,
        synchronise batch norm where the method needs it. Returns what it did, for the run log."""
        import torch

        from engine import distributed

        cfg, world = self.config, self.shard.world_size
        self.method.check_world_size(cfg.batch_size, world)
        share = self.method.images_per_batch(cfg.batch_size) // world
        batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.method.modules())
        if share < 2 and batch_norm and self.trainable and not self.method.sync_batch_norm:
            raise ValueError(f"--batch-size: {cfg.batch_size} among {world} processes leaves {share} image to each, "
                             f"and {cfg.encoder}'s batch norm needs 2 a process at least; give --batch-size "
                             f"{2 * world} or more")
        backend = distributed.start(self.launch, self.device)
        self.joined = True
        if self.method.sync_batch_norm:
            self.method = distributed.sync_batch_norm(self.method, self.device)
        if self.shard.rank:  # per-image random draws (pretext tasks) differ between ranks
            torch.manual_seed(cfg.seed + 7919 * self.shard.rank)
        batch = self.method.images_per_batch(cfg.batch_size)
        return [f"distributed: {world} processes ({backend}, {self.launch.launcher}), each training on "
                f"{batch // world} images of every batch of {batch}"
                + ("; batch norm synchronised across them" if self.method.sync_batch_norm else "")
                + "; rank 0 evaluates and writes the run"]

    def _device_settings(self) -> list[str]:
        """What keeps a GPU busy, none of which changes a CPU run: bfloat16 autocast where the GPU has
        it, channels-last tensors (the layout tensor cores read), cuDNN's choice of the fastest
        convolutions for the run's fixed shapes."""
        import torch

        if self.device.type != "cuda":
            return []
        torch.backends.cudnn.benchmark = True
        self.channels_last = True
        self.method.to(memory_format=torch.channels_last)
        bf16 = torch.cuda.is_bf16_supported()
        self.amp = self.config.amp and bf16
        if self.config.amp and not bf16:
            return ["mixed precision off: this GPU has no bfloat16 (it trains in float32)"]
        return []

    def _compile(self) -> list[str]:
        """``--compile``: the encoder's forward through torch.compile, tried at once on two images; where
        the platform cannot compile (no compiler, an unsupported Python or GPU), training goes on without
        it, and says why."""
        import torch

        encoder = self.method.encoder
        try:
            # an instance attribute over the class's forward: the weights and the state dict stay as they are
            encoder.forward = torch.compile(encoder.forward)
            was = encoder.training
            encoder.eval()
            try:
                with torch.no_grad():
                    encoder(self.train_images[:2].float().div(255))
            finally:
                encoder.train(was)
        except Exception as error:  # noqa: BLE001 (whatever the compiler raises, training goes on without it)
            encoder.__dict__.pop("forward", None)
            cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            return [f"--compile: torch.compile cannot compile {self.config.encoder} here ({type(error).__name__}: "
                    f"{cause}); training without it"]
        return [f"--compile: {self.config.encoder} is compiled (torch.compile); the first steps take longer while "
                "it compiles"]

    def _take(self, run_dir: RunDir) -> None:
        run_dir.lock()  # RunInUseError naming the process that writes it
        self._locked = run_dir

    # the loop ----------------------------------------------------------------------------------
    def run(self) -> Iterator[ev.Event]:
        import torch

        started = time.perf_counter()
        yield from self._setup()
        cfg = self.config
        self.planned_steps = self.total_steps
        # rank 0 plans a time limit and tells the others (_agree_length)
        self.budget = (TimeBudget(cfg.time_limit, started) if cfg.time_limit and self.optimizer and self.shard.main
                       else None)
        if self.start_step == 0 and not self.control.stopped and self.shard.main:
            yield from self._evaluate(final=False)
        # in steps; under a time limit _plan may space the evaluations out (see TimeBudget.eval_interval)
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
                if self.control.paused and not self.shard.distributed:
                    yield ev.Paused(self.step)  # the listener knows the job holds, after its last step
                    self.control.wait_while_paused()
                    if not self.control.stopped:
                        yield ev.Resumed(self.step)
                # several ranks stop together, at the step where one of them was asked to (_train_step)
                if self.stop_agreed if self.shard.distributed else self.control.stopped:
                    stopped = True
                    break
                yield self.log(self._train_step(rows, scheduler))
                if self.budget and self.budget.due(self.step - self.start_step, self.eval_seconds_in_loop):
                    yield from self._plan()
                if (self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps
                        and self.shard.main):
                    eval_start = time.perf_counter()
                    yield from self._evaluate(final=False)
                    self.eval_seconds_in_loop += time.perf_counter() - eval_start
                    if self.budget:
                        yield from self._plan()
                if self.step % ckpt_every == 0 and self.shard.main:
                    yield self.log(self._checkpoint())
                if cfg.time_limit and self.shard.distributed:
                    self._agree_length()
                if self.step >= min(epoch_end, self.total_steps):
                    break
            if not stopped and self.step < min(epoch_end, self.total_steps):
                raise TrainingError(f"method '{cfg.method}' gave fewer batches than the "
                                    f"{self.steps_per_epoch} steps of an epoch it announced")
        if not self.shard.main:
            yield ev.Finished(self._summary({}, stopped), stopped)  # rank 0 writes the run's
            return
        if self.optimizer is not None:
            yield self.log(self._checkpoint())
        if stopped:
            summary = self._summary(self.last_eval, stopped=True)
        else:
            summary = self._summary((yield from self._evaluate(final=cfg.final_eval)), stopped=False)
        summary["job_seconds"] = round(time.perf_counter() - started, 1)
        summary["final_evaluation_seconds"] = round(self.final_evaluation_seconds, 1)
        if self.budget:
            summary["time_limit_minutes"] = cfg.time_limit
        self.run_dir.write_summary(summary)
        if summary.get("references_note"):  # the window's log and the command line's show why they are missing
            yield self.log(ev.Message(summary["references_note"], "info"))
        yield self.log(ev.Finished(summary, stopped))

    def _agree_length(self) -> None:
        """Every rank takes rank 0's length of the run (a time limit changes it on rank 0 alone)."""
        from engine.distributed import all_sum

        total, = all_sum([self.total_steps if self.shard.main else 0], self._sync_device())
        self.total_steps = int(round(total))

    def _sync_device(self):
        import torch
        import torch.distributed as dist

        # NCCL reduces tensors on the GPU, gloo on the CPU
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

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
        # rows: the global batch; this rank trains on its share (all of it alone)
        idx = torch.as_tensor(self.shard.rows(rows), device=self.device)
        images = self.train_images[idx].float().div_(255)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = self.train_labels[idx]
        self.method.before_step(self.step, self.total_steps)
        self.method.generator.manual_seed(_step_seed(self.config.seed, self.step))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.step_fn(images, labels)
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
        terms = {k: float(v) for k, v in out.terms.items()}
        stats = {k: (float(v) if torch.is_tensor(v) and v.numel() == 1 else v) for k, v in out.stats.items()}
        if self.shard.distributed:
            # the global batch's figures (the mean of the ranks': their shares are equal), and whether any
            # rank was asked to stop, in one collective
            loss_value, terms, stats, self.stop_agreed = self._agree(loss_value, terms, stats)
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
        terms = {"loss": loss_value} | terms
        return ev.StepReport(self.step, self.step / self.steps_per_epoch, terms,
                             float(self.optimizer.param_groups[-1]["lr"]), len(rows) / max(elapsed, 1e-9),
                             stats)

    def step_fits(self, size: int) -> bool | None:
        """Whether a training step of ``size`` images (forward and backward, no optimiser step) fits in
        the GPU's memory now, None when such a step fails otherwise. For the message after running out
        of memory."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        try:
            rows = torch.randint(0, len(self.train_images), (size,), device=self.device)
            images = self.train_images[rows].float().div_(255)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss = self.method.training_step(images, self.train_labels[rows]).loss.float()
            if loss.requires_grad:
                loss.backward()
            return True
        except torch.cuda.OutOfMemoryError as error:
            traceback.clear_frames(error.__traceback__)
            return False
        except Exception:  # noqa: BLE001 (the message falls back to halving without a probe)
            return None
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    def _agree(self, loss: float, terms: dict, stats: dict) -> tuple[float, dict, dict, bool]:
        from engine.distributed import all_sum

        numbers = sorted(k for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        local = [loss, *terms.values(), *(stats[k] for k in numbers), float(self.control.stopped)]
        total = all_sum(local, self._sync_device())
        world = self.shard.world_size
        mean = [v / world for v in total[:-1]]
        terms = dict(zip(terms, mean[1:1 + len(terms)]))
        stats = stats | dict(zip(numbers, mean[1 + len(terms):]))
        return mean[0], terms, stats, total[-1] > 0

    def _checkpoint(self) -> ev.Checkpointed:
        state = {"model": self.method.state_dict(),
                 "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                 "step": self.step, "epoch": self.step / self.steps_per_epoch,
                 "method": self.config.method, "encoder": self.config.encoder}
        path = self.run_dir.save_checkpoint(state)
        self.saved_checkpoint = True
        return ev.Checkpointed(self.step, self.step / self.steps_per_epoch, str(path))

    def _evaluate(self, final: bool) -> Iterator[ev.Event]:
        """Evaluate now (engine/evaluation.py), save the snapshot, tell the time budget what it cost;
        yields the snapshot and the evaluation, returns the metrics."""
        start = time.perf_counter()
        result: EvaluationResult = self.evaluator.evaluate(self.step, final)
        epoch = self.step / self.steps_per_epoch
        path = self.run_dir.save_snapshot(self.step, **result.arrays)
        seconds = time.perf_counter() - start
        if self.budget and not final:
            # the final evaluation runs the step-0 probes on the whole splits instead of subsets
            self.budget.measured_evaluation(seconds, result.diagnostics_seconds, result.references_seconds,
                                            self.evaluator.final_scale, self.evaluator.final_references_cached)
            if self.budget.skip_references:
                self.evaluator.skip_final_references = (self.budget.references_estimate, self.config.time_limit)
            else:
                self.evaluator.skip_final_references = None
        if final:
            self.final_evaluation_seconds = seconds
        yield self.log(ev.Snapshot(self.step, epoch, result.embeddings, result.arrays["indices"],
                                   result.arrays["labels"], str(path)))
        self.last_eval = result.metrics
        yield self.log(ev.Evaluation(self.step, epoch, result.metrics, final))
        return result.metrics

    def _summary(self, metrics: dict[str, Any], stopped: bool) -> dict[str, Any]:
        cfg = self.config
        keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, type(None)))}
        return {"method": cfg.method, "dataset": cfg.dataset, "encoder": cfg.encoder,
                "device": str(self.device), "epochs": self.step / self.steps_per_epoch,
                "epochs_planned": cfg.epochs, "steps": self.step, "stopped": stopped,
                "train_seconds": round(self.train_seconds, 3),
                "images_per_second": round(self.images_seen / self.train_seconds, 1) if self.train_seconds else None,
                "linear_probe_acc": None, "knn_acc": None} | keep


def _step_seed(seed: int, step: int) -> int:
    """The seed of a step's random draws: from the run's seed and the step alone, so every rank draws
    the same, and a resumed run draws what it would have."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0] >> 1)


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
