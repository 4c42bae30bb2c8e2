#!/usr/bin/env bash
# One prepared run for a lent GPU, at most 9 minutes, that measures the GPU targets of issue 16 and
# writes a short report under $OUT (default ./gpu-check):
#
#   bash bench/gpu_check.sh [--dry-run] [--data-root DIR] [--minutes 9]
#
#   1. the device (nvidia-smi, torch's view of it);
#   2. bench/throughput.py: SimCLR resnet18 32x32 batch 512, this data path against torchvision's
#      per-image pipeline in a DataLoader with 8 workers, and the GPU's busy fraction;
#   3. the supervised convnet on Fashion-MNIST: seconds per epoch of 60 000 images;
#   4. the self-supervised GPU presets, one at a time (never side by side), each shortened to the
#      minutes left (its --time-limit; the presets' own is 9 minutes each, more than this run has);
#   5. a 2-process DDP run on the one GPU: NCCL if it accepts two processes on one GPU, else gloo;
#      then bench/ddp_cost.py, what a step's collectives cost beside its compute.
#
# Every step has a time box; a step that no longer fits in the minutes left is skipped and the report
# says so. Fashion-MNIST must be on the machine (it has no network): --data-root DIR, or where Debian's
# dataset-fashion-mnist puts it; without it, steps 3 and 4 are skipped and the report says so.
#
# --dry-run checks that every command resolves (the Python, torchrun, the scripts and their flags, each
# training command's arguments as `engine train` would read them) and runs nothing; the test suite
# runs it on the CPU.
set -u
cd "$(dirname "$0")/.."

DRY=0
DATA_ROOT=""
MINUTES=9
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --data-root) DATA_ROOT="$2"; shift ;;
    --minutes) MINUTES="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (allowed: --dry-run, --data-root DIR, --minutes N)" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-python}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
REPORT="$OUT/report.md"
RUNS="$OUT/runs"
START=$(date +%s)
BUDGET=$(( MINUTES * 60 ))
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
DATA_FLAG=()
[ -n "$DATA_ROOT" ] && DATA_FLAG=(--data-root "$DATA_ROOT")

say() { echo "$*" | tee -a "$REPORT"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# dry run: every command is written down here, then checked together in one Python process at the end
COMMANDS="$OUT/.commands"
[ "$DRY" = 1 ] && : >"$COMMANDS"

# step NAME SECONDS KIND ARGS...: run (or, dry, write down) one command within its time box
#   KIND: py (a script: python ARGS), train (python -m engine train ARGS), ddp (torchrun ... -m engine train ARGS),
#         ddp-py (torchrun ... SCRIPT ARGS)
step() {
  local name=$1 box=$2 kind=$3
  shift 3
  local cmd
  case "$kind" in
    py) cmd=("$PY" "$@") ;;
    train) cmd=("$PY" -m engine train "$@") ;;
    ddp) cmd=("$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m engine train "$@") ;;
    ddp-py) cmd=("$PY" -m torch.distributed.run --standalone --nproc_per_node 2 "$@") ;;
  esac
  if [ "$DRY" = 1 ]; then
    "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$name" "$kind" "$@" >>"$COMMANDS"
    return 0
  fi
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt "$box" ]; then
    say "- **$name**: skipped, ${remaining} s left of ${BUDGET} (needs ${box})"
    return 0
  fi
  echo "== $name (at most ${box} s): ${cmd[*]}"
  local t0=$(date +%s)
  timeout --signal INT --kill-after 30 "$box" "${cmd[@]}" >"$OUT/$name.log" 2>&1
  local code=$?
  say "- **$name**: exit $code after $(( $(date +%s) - t0 )) s (log: $name.log)"
  return 0
}

summary_line() {  # RUN_DIR: the figures of a run's summary.json, one line
  "$PY" - "$1" <<'EOF'
import json, sys
from pathlib import Path
path = Path(sys.argv[1]) / "summary.json"
if not path.exists():
    print(f"  no summary ({path.parent.name} did not finish)"); sys.exit()
s = json.loads(path.read_text())
config = json.loads((path.parent / "config.json").read_text())
keys = ("epochs", "steps", "train_seconds", "images_per_second", "linear_probe_acc", "knn_acc", "precision_at_1",
        "baseline_linear_probe_acc", "job_seconds")
line = ", ".join(f"{k} {s[k]:.4g}" if isinstance(s.get(k), float) else f"{k} {s.get(k)}" for k in keys)
if s.get("images_per_second"):  # an epoch of the training split at the run's mean rate
    line += f"; {config['train_images'] / s['images_per_second']:.2f} s an epoch of {config['train_images']} images"
print("  " + line)
EOF
}

if [ "$DRY" = 0 ]; then
  : >"$REPORT"
  say "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), budget ${MINUTES} min)"
  say ""
  say '```'
  (nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv 2>&1 || echo "no nvidia-smi") | tee -a "$REPORT"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device', '| bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported(), '| nccl', torch.distributed.is_nccl_available())" 2>&1 | tee -a "$REPORT"
  say '```'
  say ""
else
  command -v "$PY" >/dev/null || { echo "FAIL python: $PY not found"; exit 1; }
  command -v timeout >/dev/null || { echo "FAIL timeout (coreutils) not found"; exit 1; }
  echo "ok   python: $PY"
fi

# 1. throughput (about a minute)
step throughput 120 py bench/throughput.py
[ "$DRY" = 0 ] && { say '```'; tail -n 6 "$OUT/throughput.log" | tee -a "$REPORT"; say '```'; }

# is Fashion-MNIST here? (no network on a lent GPU)
HAVE_FASHION=1
if [ "$DRY" = 0 ] && ! "$PY" -c "import sys; from engine.data import load_dataset; load_dataset('fashion-mnist', data_root=sys.argv[1] or None)" \
     "$DATA_ROOT" >/dev/null 2>&1; then
  HAVE_FASHION=0
fi
if [ "$HAVE_FASHION" = 0 ] && [ "$DRY" = 0 ]; then
  say "- Fashion-MNIST is not on this machine: the supervised epoch and the presets are skipped (give --data-root DIR)"
fi

COMMON=(--out "$RUNS" --quiet --device cuda "${DATA_FLAG[@]}")
if [ "$HAVE_FASHION" = 1 ] || [ "$DRY" = 1 ]; then
  # 2. supervised convnet, Fashion-MNIST: two epochs, the second one timed (target: one epoch <= 3 s)
  step supervised-epoch 90 train --preset fashion-mnist-gpu --epochs 2 --eval-every 0 --no-diagnostics \
    --run-name supervised-epoch "${COMMON[@]}"
  [ "$DRY" = 0 ] && summary_line "$RUNS/supervised-epoch" | tee -a "$REPORT"

  # 3. the self-supervised presets, one at a time, each with an equal share of what is left once the
  #    DDP run's time is kept (the presets' own 9 minutes each do not fit: the figures are shortened ones)
  for preset in simclr byol vicreg; do
    share=$(( ($(left) - 210) / 3 ))
    [ "$DRY" = 1 ] && share=120
    if [ "$share" -lt 60 ]; then
      [ "$DRY" = 0 ] && say "- **$preset-fashion-gpu**: skipped, $(left) s left"
      continue
    fi
    minutes=$("$PY" -c "print(round(max(0.5, ($share - 45) / 60), 2))")
    step "$preset-fashion-gpu" "$share" train --preset "$preset-fashion-gpu" --time-limit "$minutes" \
      --run-name "$preset" "${COMMON[@]}"
    [ "$DRY" = 0 ] && { say "  (--time-limit $minutes min instead of the preset's 9)"; summary_line "$RUNS/$preset" | tee -a "$REPORT"; }
  done
fi

# 4. two processes on the one GPU: NCCL if it takes them, else gloo (digits: no dataset needed)
DDP=(--method simclr --dataset digits --epochs 3 --batch-size 256 --eval-every 0 --no-diagnostics --out "$RUNS" --quiet
     --device cuda)
step ddp-nccl 100 ddp "${DDP[@]}" --run-name ddp-nccl --dist-backend nccl
BACKEND=nccl
if [ "$DRY" = 1 ] || ! grep -q "^summary" "$OUT/ddp-nccl.log" 2>/dev/null; then
  BACKEND=gloo
  [ "$DRY" = 0 ] && { say "  NCCL did not run two processes on one GPU:"; grep -m 3 -i "error" "$OUT/ddp-nccl.log" | cut -c1-300 | sed 's/^/    /' | tee -a "$REPORT"; }
  step ddp-gloo 100 ddp "${DDP[@]}" --run-name ddp-gloo --dist-backend gloo
fi
for name in ddp-nccl ddp-gloo; do
  [ "$DRY" = 0 ] && [ -d "$RUNS/$name" ] && { say "  $name:"; summary_line "$RUNS/$name" | tee -a "$REPORT"; }
done

# 5. what a step of the SimCLR preset costs in communication, collective by collective (README, Scale)
step ddp-cost 60 ddp-py bench/ddp_cost.py --backend "$BACKEND"
[ "$DRY" = 0 ] && [ -f "$OUT/ddp-cost.log" ] && { say '```'; grep -A8 "^SimCLR GPU preset" "$OUT/ddp-cost.log" | tee -a "$REPORT"; say '```'; }

if [ "$DRY" = 1 ]; then
  # each command as what runs it reads it: torchrun's own parser, a script's main(... --dry-run), engine
  # train's parser and settings (preset, flags, values); nothing is trained
  "$PY" - "$COMMANDS" <<'EOF'
import contextlib, importlib.util, io, json, sys
from torch.distributed.run import get_args_parser
from engine.cli import build_parser, config_from_args

failed = 0
print(f"ok   torchrun: {sys.executable} -m torch.distributed.run")
for line in open(sys.argv[1]):
    name, kind, *args = json.loads(line)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if kind.startswith("ddp"):
                launch = ["--standalone", "--nproc_per_node", "2"] + (["-m", "engine", "train"] if kind == "ddp" else [])
                get_args_parser().parse_args(launch + args)
            if kind in ("train", "ddp"):
                config_from_args(build_parser().parse_args(["train", *args]))
            else:
                spec = importlib.util.spec_from_file_location(f"_checked_{name.replace('-', '_')}", args[0])
                script = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(script)
                if script.main([*args[1:], "--dry-run"]) not in (0, None):
                    raise ValueError(f"{args[0]} --dry-run did not pass")
        print(f"ok   {name}: {' '.join(args)}")
    except (Exception, SystemExit) as error:  # noqa: BLE001 (every way a command can fail to resolve is named)
        said = (err.getvalue().strip().splitlines() or [""])[-1]
        print(f"FAIL {name}: {error if str(error) and not isinstance(error, SystemExit) else said}")
        failed = 1
print("every command resolves" if not failed else "some commands do not resolve")
sys.exit(failed)
EOF
  code=$?
  rm -f "$COMMANDS"
  exit $code
fi
say ""
say "total $(( $(date +%s) - START )) s of ${BUDGET}"
echo "report: $REPORT"
