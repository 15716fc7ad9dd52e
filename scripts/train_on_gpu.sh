#!/usr/bin/env bash
# One borrowed GPU, one command: train the DINO default, check the CUDA paths nobody runs here, bring back the results.
#
# Here, before the call:
#   scripts/train_on_gpu.sh pack      gpu_pack/ (git-ignored): train.zip (the training photos, <= 112 px), probe/ (the
#                                     development photos with masks, for the probes), frames/ (the demo clip, for bench
#                                     live), wheels/ (timm at our version, imported from the wheel); says what travels
#   DEVICE=cpu scripts/train_on_gpu.sh all 1
#                                     the same command on the CPU: the rehearsal (tests/train/test_gpu_script.py)
#   scripts/train_on_gpu.sh lean      switch to a temporary branch without docs/ and the large models, so that the
#                                     tree and gpu_pack/ fit in the 64 MiB that travel; `restore` switches back
# There (the device tool: command "bash scripts/train_on_gpu.sh all 8", carry ["gpu_pack"]):
#   all MINUTES     versions; a 20-second throughput probe; DINO training sized to the minutes left for it (bf16,
#                   photos decoded once onto the GPU and augmented there), the teacher kept at 25/50/75/100%; each kept
#                   teacher probed per head; the CUDA checks (train mae with fp16 autocast + GradScaler, torchrun with
#                   NCCL, bench live in torch fp32/bf16 for ViT-S/16 at 224 and the default); at most 8 files in $OUT
#   train MINUTES   the training and probes alone          checks   the CUDA checks alone
#
# Environment: DEVICE (cuda), OUT (./gpu_out), RECIPE (the training flags; default the laptop preset at batch 512,
# lr by square-root scaling), CHECK_MINUTES (kept for the checks in `all`, default 2), PYTHON, SHARED (../shared/data),
# GPU_PACK (gpu_pack), TIMM_WHEEL (1: pack downloads timm's wheel from the registry; 0: not), BENCH_MODELS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
GPU_PACK=${GPU_PACK:-gpu_pack}
WHEELS=$(ls "$GPU_PACK"/wheels/*.whl 2>/dev/null | tr '\n' ':' || true)
export PYTHONPATH="$PWD:${WHEELS}${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PACK=${PACK:-$GPU_PACK/train.zip}
SHARED=${SHARED:-../shared/data}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-gpu_out}
# batch 512: 5e-4 at 64 by square-root scaling is 1.41e-3 at 512, which the linear rule (x 512/256) reaches from 7.07e-4
RECIPE=${RECIPE:---preset laptop --batch-size 512 --lr 0.000707}
REPORT="$PY scripts/gpu_report.py"
hl() { "$PY" -m highlighter "$@"; }

pack() {
  mkdir -p "$(dirname "$PACK")"
  hl pack "$SHARED/train/tinyimagenet/train" "$SHARED/train/imagenet-sample" "$SHARED/train/davis-train-frames" \
      --out "$PACK" --max-side "${MAX_SIDE:-112}" --format webp --quality "${QUALITY:-80}"
  $REPORT pack-extras "$GPU_PACK" "$SHARED/eval/horses" "$SHARED/eval/davis-stills" assets/cockatoo_320x180_5s.mp4
  version=$("$PY" -c "import timm; print(timm.__version__)")
  mkdir -p "$GPU_PACK/wheels"
  if [ "${TIMM_WHEEL:-1}" = 1 ] && ! ls "$GPU_PACK/wheels/timm-$version"-*.whl >/dev/null 2>&1; then
    rm -f "$GPU_PACK"/wheels/timm-*.whl
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check "timm==$version" -d "$GPU_PACK/wheels" \
      || echo "warning: could not download timm $version; the GPU machine's own timm will be used" >&2
  fi
  # the device tool carries at most 64 MiB: gpu_pack/ and every tracked file together
  $REPORT size "$GPU_PACK" || echo "(the lean branch drops about 26 MiB of the tracked files)"
}

lean() {
  [ -z "$(git status --porcelain --untracked-files=no)" ] || { echo "error: commit or stash your changes first" >&2; exit 1; }
  git rev-parse --abbrev-ref HEAD > "$GPU_PACK/.branch"
  git switch -q -c "gpu-lean-$(date +%s)"
  git rm -rq --ignore-unmatch docs models/mae_default.safetensors models/dino_default_224x400.onnx
  git commit -qm "lean tree for a GPU call (temporary)"
  $REPORT size "$GPU_PACK"
}

restore() {
  lean_branch=$(git rev-parse --abbrev-ref HEAD)
  case "$lean_branch" in gpu-lean-*) ;; *) echo "error: not on a gpu-lean branch" >&2; exit 1;; esac
  git switch -q "$(cat "$GPU_PACK/.branch" 2>/dev/null || echo main)"
  git branch -q -D "$lean_branch"
  echo "back on $(git rev-parse --abbrev-ref HEAD)"
}

# train MINUTES WORK: throughput probe, the run sized to the minutes left, kept teachers and their probes into $OUT
train() {
  local minutes=$1 work=$2 end
  end=$("$PY" -c "import time; print(time.time() + float('$minutes') * 60)")
  [ -f "$PACK" ] || { echo "error: no $PACK: run 'scripts/train_on_gpu.sh pack' first and carry $GPU_PACK" >&2; exit 1; }
  # 1. throughput: 20 seconds of the same run
  # shellcheck disable=SC2086
  hl train dino --data "$PACK" --out "$work/timing" --device "$DEVICE" --augment tensor $RECIPE --epochs 1000 \
      --preview-every 0 --log-every 5 --max-minutes "${TIMING_MINUTES:-0.33}" --save-every-minutes 100 >/dev/null
  read -r epochs left < <($REPORT plan "$work/timing/log.jsonl" "$end")
  # 2. the run, sized to the time left; --max-minutes stops it with a checkpoint if the estimate was too high
  # shellcheck disable=SC2086
  hl train dino --data "$PACK" --out "$work/run" --device "$DEVICE" --augment tensor $RECIPE --epochs "$epochs" \
      --warmup-epochs 10% --preview-every 0 --log-every 20 --keep-teachers 4 --max-minutes "$left" \
      --save-every-minutes 2 || echo "warning: the training run failed (see $OUT/train_log.jsonl)" >&2
  cp "$work/run/log.jsonl" "$OUT/train_log.jsonl" 2>/dev/null || true
  cp "$work"/run/teacher_*.safetensors "$OUT/" 2>/dev/null || true
  if [ ! -f "$OUT/teacher_100.safetensors" ] && [ -f "$work/run/checkpoint.pth" ]; then  # cut short: its last teacher
    hl export --checkpoint "$work/run/checkpoint.pth" --half --out "$OUT/teacher_end.safetensors" || true
  fi
  # 3. each kept teacher, per head, on the carried development photos
  for t in "$OUT"/teacher_*.safetensors; do
    [ -f "$t" ] || continue
    hl probe --checkpoint "$t" --data "$GPU_PACK"/probe/* --split all --sizes 64 96 --device "$DEVICE" \
        --json "$work/probe_$(basename "$t" .safetensors).json" || true
  done
}

# checks WORK: the CUDA paths, each under a time limit, each result as JSON in WORK
checks() {
  local work=$1 limit=${CHECK_SECONDS:-150}
  # MAE: 20 steps with fp16 autocast and a GradScaler on CUDA (bf16 on the CPU, which has no fp16 training)
  local precision=fp16; [ "$DEVICE" = cpu ] && precision=bf16
  timeout "$limit" "$PY" -m highlighter train mae --data "$PACK" --out "$work/mae" --device "$DEVICE" \
      --precision "$precision" --arch vit_tiny --patch-size 8 --input-size 64 --batch-size "${MAE_BATCH:-256}" \
      --epochs 1000 --max-steps 20 --log-every 1 --preview-every 0 --num-workers 4 >/dev/null 2>"$work/mae.err" || true
  $REPORT run-check mae "$work/mae" "$work/mae.err" > "$work/check_mae.json"
  # torchrun: one process, its process group (NCCL on CUDA, gloo on the CPU) and DDP
  # shellcheck disable=SC2086
  timeout "$limit" "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m highlighter train dino \
      --data "$PACK" --out "$work/torchrun" --device "$DEVICE" --augment tensor $RECIPE --epochs 1000 \
      --max-steps 10 --log-every 1 --preview-every 0 >/dev/null 2>"$work/torchrun.err" || true
  $REPORT run-check torchrun "$work/torchrun" "$work/torchrun.err" > "$work/check_torchrun.json"
  # bench live on the device: ViT-S/16 (random weights) at 224 and the shipped default, torch fp32 and bf16
  for model in ${BENCH_MODELS:-vit_small default}; do
    for backend in torch-fp32 torch-bf16; do
      args=(--arch vit_small --patch-size 16); [ "$model" = default ] && args=(--checkpoint default)
      timeout "$limit" "$PY" -m highlighter bench live --source "$GPU_PACK/frames" "${args[@]}" --image-size 224 224 \
          --backend "$backend" --frames "${BENCH_FRAMES:-100}" --json "$work/bench_${model}_${backend}.json" \
          >/dev/null 2>"$work/bench_${model}_${backend}.err" || true
    done
  done
}

case "${1:-}" in
pack) pack ;;
lean) lean ;;
restore) restore ;;
all|train|checks)
  mkdir -p "$OUT"
  work=$(mktemp -d)
  $REPORT versions "$DEVICE" > "$work/versions.json"
  cat "$work/versions.json"
  if [ "$1" != checks ]; then
    minutes=${2:?usage: $1 MINUTES}
    [ "$1" = all ] && minutes=$("$PY" -c "print(max(0.5, $minutes - ${CHECK_MINUTES:-2}))")
    train "$minutes" "$work"
    $REPORT collect "$work" "$OUT/report.json"
  fi
  if [ "$1" != train ]; then
    checks "$work"
  fi
  $REPORT collect "$work" "$OUT/report.json"
  ls -l "$OUT"
  ;;
*)
  sed -n 2,22p "$0"
  exit 2
  ;;
esac
