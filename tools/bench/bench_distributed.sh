#!/usr/bin/env bash
# Data-parallel training speed on this machine: training steps per second of one epoch with 1
# process and with N processes (pneumo launch, Gloo over loopback, the same global batch; with
# synchronised and with per-process BatchNorm), and the time per step the processes waited for
# gradient all-reduces the backward pass did not hide. Not a test. Usage: tools/bench/bench_distributed.sh [PROCESSES] [IMAGE_SIZE] [BATCH]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pneumo="$root/build/bin/pneumo"
processes="${1:-2}"; size="${2:-128}"; batch="${3:-8}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$pneumo" -q make-demo --out "$work/set" --count 96 --size "$size" >/dev/null
cat > "$work/bench.yaml" <<YAML
experiment: {name: bench, output_dir: $work/runs, seed: 1}
runtime: {device: cpu}
data: {labels: $work/set/train-rle.csv, images: $work/set/dicom, size: $size, folds: 4, cache: $work/cache, workers: 1}
model: {name: unet, encoder: {name: resnet34, in_channels: 1}}
train: {epochs: 2, batch_size: $batch, optimizer: {name: adam, lr: 0.0003}}
YAML
# Epoch 1 warms the cache; epoch 2 is measured. Prints: steps/s, seconds waiting per step.
measure() {
  local log="$work/$1.log"; shift
  "$@" > "$log" 2>&1
  local line; line="$(grep -E '^epoch 2/2 [0-9]+ done' "$log" | tail -1)"
  local steps rate wait
  steps="$(sed -E 's/^epoch 2\/2 ([0-9]+) done.*/\1/' <<<"$line")"
  rate="$(sed -E 's/.*\(([0-9.]+) it\/s\).*/\1/' <<<"$line")"
  wait="$(grep -E 'gradient averaging' "$log" | tail -1 | sed -E 's/.* ([0-9.]+) s waiting.*/\1/' || true)"
  echo "$rate ${wait:-0} $steps"
}
read -r one_rate _ steps < <(measure one "$pneumo" -v train "$work/bench.yaml" --set experiment.run_name=one)
read -r many_rate many_wait _ < <(measure many "$pneumo" -v launch --nproc-per-node "$processes" -- train \
  "$work/bench.yaml" --set experiment.run_name=many)
read -r own_rate own_wait _ < <(measure own "$pneumo" -v launch --nproc-per-node "$processes" -- train \
  "$work/bench.yaml" --set experiment.run_name=own --set train.distributed.sync_batchnorm=false)
echo "U-Net/ResNet34 ${size}x${size}, global batch $batch, $steps steps per epoch, $(nproc) CPU cores"
printf '%-22s %10s %22s\n' "processes" "steps/s" "all-reduce wait/step"
printf '%-22s %10s %22s\n' "1" "$one_rate" "-"
printf '%-22s %10s %20.1f ms\n' "$processes, SyncBN" "$many_rate" "$(awk -v w="$many_wait" -v s="$steps" 'BEGIN { print w * 1000 / s }')"
printf '%-22s %10s %20.1f ms\n' "$processes, own BN" "$own_rate" "$(awk -v w="$own_wait" -v s="$steps" 'BEGIN { print w * 1000 / s }')"
printf 'ratio (N / 1): %.2f with SyncBN, %.2f with per-process BatchNorm\n' \
  "$(awk -v a="$many_rate" -v b="$one_rate" 'BEGIN { print a / b }')" "$(awk -v a="$own_rate" -v b="$one_rate" 'BEGIN { print a / b }')"
