"""The headless command line: ``embedding-explorer train ...`` or ``python -m engine train ...``,
``embedding-explorer export RUN_DIR`` (the encoder as safetensors + settings, TorchScript, ONNX) and
``embedding-explorer embed --dataset folder:PATH`` (every image through an encoder, no training).

Exit status: 0 on success, 2 on a bad argument (the message names the argument, the value and what
is allowed), 1 when training or an export fails (the message names the cause and the fix), 130 after
Ctrl-C: the first stops the run as Stop does (its checkpoint, summary and end record are saved), a
second aborts it.
"""
from __future__ import annotations

import argparse
import copy
import signal
import sys
import threading
from typing import Any, Sequence

from engine.params import Param

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENT, EXIT_ABORTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: same exit code, one clear line
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_ARGUMENT)


def _component_params(kinds: Sequence[str] = ("method", "encoder")) -> dict[str, list[tuple[str, str, Param]]]:
    """Every method and encoder parameter by name: where it comes from, for routing and --help."""
    from engine.encoders import ENCODERS
    from engine.methods import METHODS

    found: dict[str, list[tuple[str, str, Param]]] = {}
    for kind, registry in (("method", METHODS), ("encoder", ENCODERS)):
        if kind not in kinds:
            continue
        for name, cls in registry.items():
            for p in cls.params:
                found.setdefault(p.name, []).append((kind, name, p))
    return found


def _add_component_flags(parser: argparse.ArgumentParser, title: str, kinds: Sequence[str]) -> None:
    """One flag per parameter name; where encoders share a name with different meanings (--input-size of
    the ImageNet backbones and of your own models), each meaning is listed with the encoders it has."""
    group = parser.add_argument_group(title)
    for name, owners in sorted(_component_params(kinds).items()):
        meanings: dict[tuple, list[str]] = {}
        for _, owner, p in owners:
            meanings.setdefault((p.help, str(p.default), p.allowed()), []).append(owner)
        text = " | ".join(f"[{', '.join(sorted(set(who)))}] {h} (default {d}; {a})"
                          for (h, d, a), who in meanings.items())
        p = owners[0][2]
        kw: dict[str, Any] = {"nargs": "?", "const": "true"} if p.type is bool else {}
        group.add_argument(p.flag, dest=f"param__{name}", metavar=name.upper() if p.type is not bool else None,
                           help=text.replace("%", "%%"), **kw)


def build_parser() -> argparse.ArgumentParser:
    from engine.data import dataset_names
    from engine.distributed import BACKENDS, DEFAULT_TIMEOUT
    from engine.encoders import ENCODERS
    from engine.methods import METHODS
    from engine.config import DEFAULTS, TrainConfig
    from engine.presets import PRESETS

    d = TrainConfig()
    methods = "\n".join(f"  {n:<16} [{c.family}] {c.summary}" for n, c in METHODS.items())
    encoders = "\n".join(f"  {u:<26} {c.summary}" for u, (_, c) in zip(ENCODERS.usages(), ENCODERS.items()))
    parser = _Parser(prog="embedding-explorer", description="Embedding Explorer, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train a representation and write a run directory",
        description="Train a representation, stream its progress, and write a run directory.",
        epilog=f"methods:\n{methods}\n\ndatasets:\n  {', '.join(dataset_names())}\n\n"
               f"encoders:\n{encoders}\n\npresets:\n"
               + "\n".join(f"  {n:<18} {p['help']}" for n, p in PRESETS.items()))
    t.add_argument("--preset", help="start from a named preset (its settings; flags override them)")
    t.add_argument("--method", help=f"the method (default {d.method}); see the list below")
    t.add_argument("--dataset", help=f"the dataset (default: the method's, {d.dataset} for most; colorization: "
                                     "painted-shapes), or folder:PATH for your images")
    t.add_argument("--encoder", help="the encoder (default: the method's choice, usually convnet), or one of "
                                     "yours: timm:NAME, torchscript:PATH, onnx:PATH, python:package.module:function; "
                                     "see the list below")
    t.add_argument("--epochs", type=int, help="passes over the training set (default: the method's)")
    t.add_argument("--batch-size", type=int, help="images per step (default: the method's)")
    t.add_argument("--lr", type=float, help="learning rate of AdamW (default: the method's)")
    t.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {d.weight_decay})")
    t.add_argument("--embedding-dim", type=int, help=f"dimension D of the embedding (default {d.embedding_dim})")
    t.add_argument("--device", help="auto (cuda, then mps, then cpu), cuda or cpu (default auto)")
    t.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    t.add_argument("--out", help=f"folder that receives the run directory (default {d.out})")
    t.add_argument("--run-name", help="name of the run directory (default: time-method-dataset)")
    t.add_argument("--data-root", help="where datasets are found or downloaded")
    t.add_argument("--train-size", type=int, help="stratified subset of the train split (keeps CPU runs short)")
    t.add_argument("--test-size", type=int, help="stratified subset of the test split")
    t.add_argument("--imbalance", type=float, help="long-tailed train split: rarest class / largest, in (0, 1]")
    t.add_argument("--eval-every", type=float, help=f"epochs between evaluations (default {DEFAULTS['eval_every']}; 0: end only)")
    t.add_argument("--eval-size", type=int, help=f"test images on the map and in the indicators (default {d.eval_size})")
    t.add_argument("--probe-train-size", type=int,
                   help=f"train images the probe fits on during training (default {d.probe_train_size})")
    t.add_argument("--knn-k", type=int, help=f"neighbours in the kNN accuracy (default {d.knn_k})")
    t.add_argument("--checkpoint-every", type=int, help=f"epochs between checkpoints (default {d.checkpoint_every})")
    t.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="minutes for the whole run, evaluations included: it trains as many steps as fit "
                        "(up to --epochs), evaluates less often than --eval-every if evaluating would take "
                        "over a fifth of the time, and ends with the usual final evaluation")
    t.add_argument("--no-time-limit", action="store_true",
                   help="train the epochs in full even where a preset sets a time limit (a run that "
                        "measures the references on the whole splits for the cache: see the README)")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its checkpoint, with its own settings; --epochs, --time-limit, "
                        "--eval-every, --device and --compile may change, and so may the number of processes "
                        "and the --dist-* flags (a finished run continues with more --epochs)")
    t.add_argument("--init-from", metavar="RUN_DIR", help="start the encoder from an earlier run's weights")
    t.add_argument("--projection", help=f"2D map: pca, umap or tsne (default {d.projection})")
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    t.add_argument("--compile", action="store_true",
                   help="compile the encoder with torch.compile (faster steps on a GPU after a minute of compiling; "
                        "where the platform cannot compile, the run says why and trains without it)")
    t.add_argument("--no-diagnostics", action="store_true", help="probe and kNN only at each evaluation")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    d_group = t.add_argument_group(
        "several processes", "torchrun --nproc_per_node N -m engine train ... (or srun ... python -m engine "
        "train ...) trains one run on N processes with DistributedDataParallel: each trains on an equal share "
        "of every --batch-size batch, rank 0 evaluates and writes the run directory")
    d_group.add_argument("--dist-backend", choices=BACKENDS,
                         help="how the processes talk: nccl between GPUs, gloo between CPUs (default auto: "
                              "nccl on GPUs, else gloo)")
    d_group.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                         help=f"how long a process waits for the others before it stops with a message (default "
                              f"{DEFAULT_TIMEOUT:g}; an evaluation, which rank 0 runs while the others wait, must "
                              "fit in it)")
    _add_component_flags(t, "method and encoder parameters (each applies where named)", ("method", "encoder"))
    _add_export_parser(sub, encoders)
    _add_embed_parser(sub, encoders)
    return parser


def _add_embed_parser(sub, encoders: str) -> None:
    from engine.embed import DEFAULT_ENCODER, LAYOUTS, THUMBNAIL_SIZE

    e = sub.add_parser(
        "embed", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="embed every image of a folder with an encoder (no training) and write a run directory",
        description="Embed every image of a folder with an encoder, no training, into a run directory the "
                    "window opens (embedding-explorer open RUN_DIR): the map shows every image, the neighbours "
                    "and the selection show their thumbnails. Sub-folders are classes; a flat folder is "
                    "unlabelled. Files that cannot be read are skipped and listed (skipped.csv).",
        epilog="examples:\n  embedding-explorer embed --dataset folder:~/Pictures/pets\n"
               "  embedding-explorer embed --encoder timm:vit_small_patch14_dinov2 --dataset folder:photos\n"
               "  embedding-explorer embed --encoder run:runs/20260101-120000-simclr-digits --dataset folder:scans\n"
               "  embedding-explorer embed --from embeddings.npy --labels metadata.csv\n"
               "  embedding-explorer embed --from exports/run/projector\n\n"
               f"encoders:\n{encoders}")
    e.add_argument("--dataset", help="folder:PATH, the images to embed")
    e.add_argument("--from", dest="from_file", metavar="FILE",
                   help="instead of a folder: embeddings made elsewhere, opened as a run: a .npy (N, D), a .parquet "
                        "(a column of vectors; needs the parquet extra) or TensorBoard projector files "
                        "(projector_config.pbtxt, or its folder: tensors.tsv, metadata.tsv, sprite)")
    e.add_argument("--labels", metavar="TABLE", help="with --from: a CSV/TSV table with a header, one row per embedding "
                                                     "(labels, image paths, any metadata), or a .npy of labels")
    e.add_argument("--label-column", help="with --from: the table's column of labels (default: class_name, class, "
                                          "label, labels, category, target or y, the first there)")
    e.add_argument("--path-column", help="with --from: the table's column of image files, for thumbnails (default: "
                                         "path, image, file, filename, filepath or image_path)")
    e.add_argument("--image-root", help="with --from: the folder the image paths are relative to (default: the table's)")
    e.add_argument("--tensor", help="with --from projector files: which embeddings of the config (default: the first)")
    e.add_argument("--embedding-column", help="with --from FILE.parquet: the column of vectors")
    e.add_argument("--encoder", help=f"the encoder (default {DEFAULT_ENCODER}, ImageNet weights offline); see below")
    e.add_argument("--device", help="auto (cuda, then mps, then cpu), cuda or cpu (default auto)")
    e.add_argument("--batch-size", type=int, help="images per batch (default 16 on a CPU, 256 on a GPU)")
    e.add_argument("--workers", type=int, help="processes decoding images (default: from the cores; 0: none)")
    e.add_argument("--out", help="folder that receives the run directory (default runs)")
    e.add_argument("--run-name", help="name of the run directory (default: time-embed-folder)")
    e.add_argument("--thumbnail-size", type=int, help=f"largest side of the stored thumbnails (default {THUMBNAIL_SIZE}; "
                                                      "smaller images keep their size)")
    e.add_argument("--projection", help=f"the 2D map computed once at the end: {', '.join(LAYOUTS)} "
                                        "(default umap; none: the window computes it when it opens the run)")
    e.add_argument("--limit", type=int, metavar="N", help="only N images, spread evenly over the folder (to try an "
                                                         "encoder on a big folder; default: every image)")
    e.add_argument("--seed", type=int, help="seed of the 2D map and the evaluation's subsets (default 0)")
    e.add_argument("--no-evaluation", action="store_true",
                   help="skip the trainer's figures at the end (probe, kNN, collapse, triplets, clusters on subsets)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_component_flags(e, "encoder parameters (each applies where named)", ("encoder",))


def embed_config_from_args(args: argparse.Namespace):
    """The EmbedConfig these arguments ask for (ValueError for anything not allowed)."""
    from engine.embed import EmbedConfig
    from engine.encoders import ENCODERS

    values = {k: getattr(args, k) for k in ("dataset", "encoder", "device", "batch_size", "workers", "out",
                                             "run_name", "thumbnail_size", "projection", "limit", "seed", "from_file",
                                             "labels", "label_column", "path_column", "image_root", "tensor",
                                             "embedding_column")
              if getattr(args, k) is not None}
    if not values.get("dataset") and not values.get("from_file"):
        raise ValueError("--dataset: give the images to embed, folder:PATH (or --from FILE: embeddings made elsewhere)")
    if values.get("from_file"):
        given = [f"--{k.replace('_', '-')}" for k in ("encoder", "device", "batch_size", "limit") if k in values]
        given += [f"--{k[len('param__'):].replace('_', '-')}" for k, v in vars(args).items()
                  if k.startswith("param__") and v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: not with --from FILE: the embeddings are made already")
    config = EmbedConfig(**values, evaluate=not args.no_evaluation)
    known = {p.name for p in ENCODERS.get(config.encoder).params}
    for key, value in vars(args).items():
        if key.startswith("param__") and value is not None:
            name = key[len("param__"):]
            if name not in known:
                raise ValueError(f"--{name.replace('_', '-')} does not apply to encoder '{config.encoder}'")
            config.encoder_params[name] = value
    config.validate()
    return config


def run_embed(config, quiet: bool = False) -> int:
    """``embedding-explorer embed``: a progress bar with the ETA, the run directory, or the error."""
    from engine.embed import embed
    from engine.training import Control

    control = Control()
    with _CtrlCStops(control) as ctrl_c:
        ctrl_c.message = ("Ctrl-C: stopping after this batch; what was embedded is kept and mapped "
                          "(Ctrl-C again aborts)")
        events = embed(config, control)
        try:
            code = _print_embed_events(events, quiet, ctrl_c)
            return EXIT_ABORTED if ctrl_c.count and code == EXIT_OK else code
        except KeyboardInterrupt:
            try:
                events.throw(KeyboardInterrupt())
            except (KeyboardInterrupt, StopIteration):
                pass
            print("aborted by a second Ctrl-C: what was embedded is kept, without its map", file=sys.stderr)
            return EXIT_ABORTED


def _print_embed_events(events, quiet: bool, ctrl_c) -> int:
    from tqdm import tqdm

    from engine import events as ev

    bar = None
    say = print
    for event in events:
        if isinstance(event, ev.Started):
            print(f"run directory: {event.run_dir}\ndevice: {event.device_name}")
        elif isinstance(event, ev.Message):
            say(f"[{event.level}] {event.text}")
        elif isinstance(event, ev.Progress) and event.stage == "embedding" and not quiet:
            if bar is None:
                bar = tqdm(total=event.total, unit="img", dynamic_ncols=True, smoothing=0.1)
                ctrl_c.say = say = bar.write
            bar.update(event.done - bar.n)
            if event.skipped:
                bar.set_postfix({"skipped": event.skipped}, refresh=False)
        elif isinstance(event, ev.Progress) and event.stage == "layout" and bar is not None:
            bar.close()
            ctrl_c.say = say = print
            bar = None
        elif isinstance(event, ev.Failed):
            if bar is not None:
                bar.close()
            print(f"error: {event.message}", file=sys.stderr)
            return EXIT_BAD_ARGUMENT if event.bad_input else EXIT_FAILED
        elif isinstance(event, ev.Finished):
            if bar is not None:
                bar.close()
            s = event.summary
            print(f"embedded {s['images']} images ({s['skipped']} skipped) at {s['images_per_second']:.1f} img/s"
                  + (f"; map in {s['layout_seconds']:.1f} s" if s.get("layout_seconds") else "")
                  + (" (stopped: the rest was not embedded)" if event.stopped else ""))
    return EXIT_OK


def _add_export_parser(sub, encoders: str) -> None:
    from engine.export import FILES, ONNX_TOLERANCE

    e = sub.add_parser(
        "export", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="export a run's encoder (safetensors + settings, TorchScript, ONNX)",
        description="Export a trained encoder from a run directory, or any encoder by its name, as "
                    f"{FILES['safetensors']} + encoder.json (reload it with engine.export.load_encoder), "
                    f"{FILES['torchscript']} (torch.jit.load) and {FILES['onnx']} (onnxruntime, dynamic batch, "
                    "checked against torch). Every file takes float32 images in [0, 1], (N, C, H, W), C, H and W "
                    "as encoder.json says.",
        epilog="examples:\n  embedding-explorer export runs/20260101-120000-simclr-digits\n"
               "  embedding-explorer export RUN_DIR --format onnx --out my-encoder\n"
               "  embedding-explorer export --encoder timm:resnet18 --weights resnet18.safetensors --out resnet18\n\n"
               f"encoders:\n{encoders}")
    e.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="the run whose encoder to export")
    e.add_argument("--encoder", help="instead of a run: an encoder by its name, as --encoder of train takes it")
    e.add_argument("--format", help=f"formats, separated by commas: {', '.join(FILES)} (default: all three; "
                                    "onnx needs the onnx extra: pip install 'embedding-explorer[onnx]')")
    e.add_argument("--out", help="folder to write (default: RUN_DIR/encoder, or ./exported-encoder)")
    e.add_argument("--channels", type=int, help="with --encoder: channels of the images it takes (default: "
                                                "the model's own)")
    e.add_argument("--image-size", help="with --encoder: size of the images it takes, N or HxW (default: the "
                                        "model's own)")
    e.add_argument("--embedding-dim", type=int, default=128, help="with --encoder convnet or resnet18: the "
                                                                  "embedding size (default 128)")
    e.add_argument("--onnx-tolerance", type=float, default=ONNX_TOLERANCE,
                   help=f"largest max abs difference allowed between onnxruntime and torch (default {ONNX_TOLERANCE:g})")
    _add_component_flags(e, "encoder parameters, with --encoder (each applies where named)", ("encoder",))


def run_export(args: argparse.Namespace) -> int:
    """``embedding-explorer export``: what was written and each file's check, or the error."""
    from engine.encoders import ENCODERS
    from engine.encoders.external import parse_size
    from engine.export import ExportError, default_formats, export_named, export_run, parse_formats

    try:
        formats, note = (parse_formats(args.format), "") if args.format else default_formats()
        if note:
            print(f"[info] {note}")
        if bool(args.run_dir) == bool(args.encoder):
            raise ValueError("give a run directory (embedding-explorer export RUN_DIR) or --encoder NAME, one of them")
        params = {k[len("param__"):]: v for k, v in vars(args).items() if k.startswith("param__") and v is not None}
        if args.run_dir:
            if params:
                raise ValueError(f"--{next(iter(params)).replace('_', '-')} applies with --encoder only: a run's "
                                 "encoder keeps the settings it was trained with")
            print(f"exporting the encoder of {args.run_dir} …", flush=True)
            result = export_run(args.run_dir, args.out, formats, args.onnx_tolerance)
        else:
            known = {p.name for p in ENCODERS.get(args.encoder).params}
            for name in params:
                if name not in known:
                    raise ValueError(f"--{name.replace('_', '-')} does not apply to encoder '{args.encoder}'")
            size = parse_size(args.image_size) if args.image_size else None
            print(f"exporting {args.encoder} …", flush=True)
            result = export_named(args.encoder, args.out or "exported-encoder", formats, args.channels, size,
                                  args.embedding_dim, args.onnx_tolerance, **params)
    except ExportError as error:
        for line in error.result.lines():
            print(f"  {line}")
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    except Exception as error:  # a failure while exporting: the cause in one line, no traceback
        print(f"error: export failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"exported to {result.folder}:")
    for line in result.lines():
        print(f"  {line}")
    print(f"  encoder.json, README.md\nload it with: from engine.export import load_encoder; "
          f"encoder = load_encoder({str(result.folder)!r})")
    return EXIT_OK


def config_from_args(args: argparse.Namespace):
    """The TrainConfig these arguments ask for (ValueError for anything not allowed)."""
    from engine.encoders import ENCODERS
    from engine.methods import METHODS
    from engine.config import TrainConfig
    from engine.presets import PRESETS

    if args.resume:
        _refuse_on_resume(args)
    values: dict[str, Any] = {}
    if args.preset:
        if args.preset not in PRESETS:
            raise ValueError(f"--preset: {args.preset!r} is not valid; allowed: {', '.join(PRESETS)}")
        # a deep copy: the flags below write into method_params, which must not change the preset itself
        values.update(copy.deepcopy({k: v for k, v in PRESETS[args.preset].items() if k != "help"}))
    for key in ("method", "dataset", "encoder", "epochs", "batch_size", "lr", "weight_decay", "embedding_dim",
                "device", "seed", "out", "run_name", "data_root", "train_size", "test_size", "imbalance",
                "eval_every", "eval_size", "probe_train_size", "knn_k", "checkpoint_every", "time_limit", "resume",
                "init_from", "projection"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.no_time_limit:
        if args.time_limit is not None:
            raise ValueError("--no-time-limit and --time-limit: give one of them")
        values["time_limit"] = None
    if args.no_amp:
        values["amp"] = False
    if args.no_diagnostics:
        values["diagnostics"] = False
    if "dataset" not in values and not args.resume:  # the dataset the method is offered first, as in the window
        values["dataset"] = METHODS.get(values.get("method", TrainConfig.method)).defaults.get(
            "dataset", TrainConfig.dataset)
    if args.compile:
        values["compile"] = True
    config = TrainConfig(**values)
    method = METHODS.get(config.method)
    encoder_name = config.encoder or method.defaults.get("encoder", "convnet")
    encoder = ENCODERS.get(encoder_name)
    if args.preset and args.encoder:  # the preset's encoder settings were meant for its encoder: keep what applies
        config.encoder_params = {k: v for k, v in config.encoder_params.items() if k in {p.name for p in encoder.params}}
    for key, value in vars(args).items():
        if not key.startswith("param__") or value is None:
            continue
        name = key[len("param__"):]
        if name in {p.name for p in method.params}:
            config.method_params[name] = value
        elif name in {p.name for p in encoder.params}:
            config.encoder_params[name] = value
        else:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to method '{config.method}' "
                             f"with encoder '{encoder_name}'")
    # a run to resume is checked by the job, before it starts: what it refuses exits 2 (Failed.bad_input)
    return config.resolved() if not config.resume else config


def _refuse_on_resume(args: argparse.Namespace) -> None:
    """--resume takes only the flags of what may change on resume; name every other one given."""
    from engine.config import LAUNCH_FLAGS, RESUMABLE, refused_on_resume

    given = [f"--{key.replace('_', '-')}" for key, value in vars(args).items()
             if value is not None and not key.startswith("param__") and value is not False
             and key not in RESUMABLE + LAUNCH_FLAGS + ("resume", "command", "quiet")]
    given += [f"--{key[len('param__'):].replace('_', '-')}" for key, value in vars(args).items()
              if key.startswith("param__") and value is not None]
    if given:
        raise ValueError(refused_on_resume(given, args.resume))


def main(argv: Sequence[str] | None = None) -> int:
    from engine.device import configure_threads

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        configure_threads(leave_one_core=False)
        return run_export(args)
    if args.command == "embed":
        try:
            config = embed_config_from_args(args)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_ARGUMENT
        configure_threads(leave_one_core=False)
        return run_embed(config, quiet=args.quiet)
    if args.command != "train":
        parser.error(f"unknown command {args.command}")
    try:
        config = config_from_args(args)
        launch = launch_from_args(args)
        if launch is not None and launch.world_size > 1 and not config.resume:
            _check_divides(config, launch.world_size)  # before any process waits for the others
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    configure_threads(leave_one_core=False)
    return run_headless(config, quiet=args.quiet, launch=launch)


def launch_from_args(args: argparse.Namespace):
    """This process's place in a run on several processes (what torchrun or srun set), or None; the
    --dist-* flags without such a launcher are refused by name."""
    from engine.distributed import DEFAULT_TIMEOUT, launch_from_environment

    launch = launch_from_environment(backend=args.dist_backend or "auto",
                                     timeout=DEFAULT_TIMEOUT if args.dist_timeout is None else args.dist_timeout)
    flags = [f for f, v in (("--dist-backend", args.dist_backend), ("--dist-timeout", args.dist_timeout)) if v is not None]
    if launch is None and flags:
        raise ValueError(f"{', '.join(flags)} applies to a run on several processes, and this one was started "
                         "alone (no RANK / WORLD_SIZE from torchrun, no SLURM_PROCID from srun): start it with "
                         "torchrun --nproc_per_node N -m engine train ..., or drop the flag")
    return launch if launch is not None and launch.world_size > 1 else None


def _check_divides(config, world_size: int) -> None:
    """The global batch must split into equal shares: said once, before the processes connect."""
    from engine.distributed import check_batch_divides, check_k_by_m_divides
    from engine.methods import METHODS
    from engine.methods.metric import K_M_PARAMS
    from engine.params import resolve

    method = METHODS.get(config.method)
    if all(p in method.params for p in K_M_PARAMS):
        values = resolve(method.params, config.method_params)
        check_k_by_m_divides(values["classes_per_batch"], values["samples_per_class"], world_size)
    else:
        check_batch_divides(config.batch_size, world_size)


def run_headless(config, quiet: bool = False, launch=None) -> int:
    from engine.training import Control

    control = Control()
    if launch is not None:
        return _run_rank(config, control, quiet, launch)
    with _CtrlCStops(control) as ctrl_c:
        try:
            code = _follow(config, control, quiet, ctrl_c)
            return EXIT_ABORTED if ctrl_c.count and code == EXIT_OK else code
        except KeyboardInterrupt:
            print("aborted by a second Ctrl-C: the run keeps its last checkpoint, without a summary",
                  file=sys.stderr)
            return EXIT_ABORTED


def _run_rank(config, control, quiet: bool, launch) -> int:
    """One rank of a run on several processes. Rank 0 prints as a lone run does; the others print only
    a failure of their own. Ctrl-C (which the terminal sends to every rank, and torchrun sends again)
    and SIGTERM (torchrun stopping the others when a rank failed, or a cancelled job) stop every rank
    at the same step: the checkpoint and the summary are saved; the launcher kills what stays."""
    from engine import events as ev
    from engine.training import train

    def on_signal(signum, frame) -> None:
        if not control.stopped and launch.rank == 0:
            name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            print(f"{name}: stopping every process after the current step, saving the checkpoint and the summary",
                  file=sys.stderr, flush=True)
        control.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        events = train(config, control, launch)
        if launch.rank == 0:
            code = _print_events(events, quiet, _CtrlCStops(control))
            return EXIT_ABORTED if control.stopped and code == EXIT_OK else code
        for event in events:
            if isinstance(event, ev.Failed):
                # rank 0 says what was asked wrong, and that another rank is gone
                if not event.bad_input and event.cause != "PeerLost":
                    print(f"error: [rank {launch.rank}] {event.message}", file=sys.stderr)
                return EXIT_BAD_ARGUMENT if event.bad_input else EXIT_FAILED
        return EXIT_ABORTED if control.stopped else EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _CtrlCStops:
    """The first Ctrl-C stops the job as Stop does (it saves a checkpoint, the summary and the end
    record); a second one aborts it (KeyboardInterrupt). Only in the main thread, where signals go."""

    def __init__(self, control):
        self.control, self.count, self.previous = control, 0, None
        self.say = lambda text: print(text, file=sys.stderr)
        self.message = ("Ctrl-C: stopping after the current step or evaluation, saving the checkpoint and the "
                        "summary (Ctrl-C again aborts without them)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _on_sigint(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.control.stop()
        self.say(self.message)


def _follow(config, control, quiet: bool, ctrl_c: _CtrlCStops) -> int:
    from engine.training import train

    events = train(config, control)
    try:
        return _print_events(events, quiet, ctrl_c)
    except KeyboardInterrupt:  # raised here, between two events: the job records its end where it stands
        try:
            events.throw(KeyboardInterrupt())
        except (KeyboardInterrupt, StopIteration):
            pass
        raise


def _print_events(events, quiet: bool, ctrl_c: _CtrlCStops) -> int:
    from tqdm import tqdm

    from engine import events as ev

    bar = None
    last_probe = None
    for event in events:
        if isinstance(event, ev.Started):
            print(f"run directory: {event.run_dir}\ndevice: {event.device_name}")
            if not quiet:
                bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True)
                ctrl_c.say = bar.write  # above the bar, not through it
        elif isinstance(event, ev.Message):
            (bar.write if bar else print)(f"[{event.level}] {event.text}")
        elif isinstance(event, ev.Planned):
            (bar.write if bar else print)(f"[info] {event.reason}")
            if bar:
                bar.total = event.total_steps
                bar.refresh()
        elif isinstance(event, ev.StepReport) and bar:
            bar.update(1)
            post = {"loss": f"{event.losses['loss']:.4f}"}
            if last_probe is not None:
                post["probe"] = f"{last_probe:.3f}"
            bar.set_postfix(post, refresh=False)
        elif isinstance(event, ev.Evaluation):
            last_probe = event.metrics.get("linear_probe_acc", last_probe)
        elif isinstance(event, ev.Failed):
            if bar:
                bar.close()
            print(f"error: {event.message}", file=sys.stderr)
            return EXIT_BAD_ARGUMENT if event.bad_input else EXIT_FAILED
        elif isinstance(event, ev.Finished):
            if bar:
                bar.close()
            print(format_summary(event.summary))
    return EXIT_OK


def format_summary(summary: dict) -> str:
    keys = ["method", "dataset", "encoder", "device", "epochs", "train_seconds", "images_per_second",
            "linear_probe_acc", "knn_acc", "baseline_linear_probe_acc", "baseline_knn_acc",
            "pixels_linear_probe_acc", "precision_at_1", "map_at_r", "effective_rank", "collapse", "stopped"]
    rows = [(k, summary[k]) for k in keys if k in summary]
    width = max(len(k) for k, _ in rows)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["summary", "-" * (width + 12)] + [f"{k:<{width}}  {fmt(v)}" for k, v in rows])
