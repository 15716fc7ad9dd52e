#!/usr/bin/env bash
# Train the DINO default on a borrowed GPU for a fixed number of minutes, and bring the model back.
#
#   scripts/train_on_gpu.sh pack                 here: pack the training photos into gpu_pack/train.zip (<= 60 MB,
#                                                git-ignored; carry the folder gpu_pack to the GPU machine)
#   scripts/train_on_gpu.sh train MINUTES [ARGS] there: time 30 steps, size the schedule to fill MINUTES, train on
#                                                CUDA (bf16, photos decoded once onto the GPU and augmented there),
#                                                export the teacher (fp16, < 16 MB) and the log to $OUT (or ./gpu_out)
#
# ARGS are extra `highlighter train dino` flags (a later one wins). Environment: DEVICE (default cuda),
# PACK (default gpu_pack/train.zip), RECIPE (the recipe's flags, default: the cpu-small preset at 64 px).
# With the device tool, e.g.:  command "bash scripts/train_on_gpu.sh train 8", carry ["gpu_pack"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PACK=${PACK:-gpu_pack/train.zip}
SHARED=${SHARED:-../shared/data/train}
RECIPE=${RECIPE:---preset cpu-small --arch vit_tiny --patch-size 8 --global-crop-size 64 --local-crop-size 32 --batch-size 256}

case "${1:-}" in
pack)
  mkdir -p "$(dirname "$PACK")"
  "$PY" -m highlighter pack "$SHARED/tinyimagenet/train" "$SHARED/imagenet-sample" "$SHARED/davis-train-frames" \
      --out "$PACK" --max-side "${MAX_SIDE:-112}" --format webp --quality "${QUALITY:-80}"
  # the device tool carries at most 64 MiB: the pack and every tracked file of the repository together
  size=$(stat -c %s "$PACK")
  tracked=$( (git ls-files -z 2>/dev/null || true) | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
  total=$((size + ${tracked:-0}))
  echo "$PACK: $((size / 1048576)) MiB; with the tracked files $((total / 1048576)) MiB of the 64 MiB that travel"
  if [ "$total" -gt $((62 * 1024 * 1024)) ]; then
    echo "error: too large to carry; lower MAX_SIDE or QUALITY" >&2
    exit 1
  fi
  ;;
train)
  minutes=${2:?usage: train MINUTES [ARGS]}
  shift 2
  out=${OUT:-gpu_out}
  device=${DEVICE:-cuda}
  mkdir -p "$out"
  run=$(mktemp -d)/run
  [ -f "$PACK" ] || { echo "error: no $PACK: run 'scripts/train_on_gpu.sh pack' first and carry its folder" >&2; exit 1; }
  # 1. throughput: a short run with the same settings
  # shellcheck disable=SC2086
  "$PY" -m highlighter train dino --data "$PACK" --out "$run-timing" --device "$device" --augment tensor \
      $RECIPE --epochs 1000 --preview-every 0 --log-every 5 --max-steps "${TIMING_STEPS:-30}" "$@" >/dev/null
  epochs=$("$PY" - "$run-timing/log.jsonl" "$minutes" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
start = next(e for e in ev if e["event"] == "start")
rates = [e["img_s"] for e in ev if e["event"] == "step" and e["step"] >= 10] or [e["img_s"] for e in ev if e["event"] == "step"]
rate = sorted(rates)[len(rates) // 2]
images = start["images"]
epochs = max(1, int(rate * float(sys.argv[2]) * 60 * 0.9 / images))
print(epochs)
print(f"{rate:.0f} img/s: {epochs} epochs of {images} photos fit in {sys.argv[2]} minutes", file=sys.stderr)
EOF
)
  # 2. the run, sized to the time; --max-minutes stops it with a checkpoint if the estimate was too high
  # shellcheck disable=SC2086
  "$PY" -m highlighter train dino --data "$PACK" --out "$run" --device "$device" --augment tensor $RECIPE \
      --epochs "$epochs" --warmup-epochs "$("$PY" -c "print(max(1, round($epochs / 10)))")" --preview-every 0 \
      --max-minutes "$minutes" --save-every-minutes 2 "$@"
  # 3. what comes back: the teacher in fp16 (the head and optimiser stay behind) and the log
  "$PY" -m highlighter export --checkpoint "$run/checkpoint.pth" --half --out "$out/dino_gpu.safetensors"
  cp "$run/log.jsonl" "$out/log.jsonl"
  ls -l "$out"
  ;;
*)
  sed -n 2,14p "$0"
  exit 2
  ;;
esac
