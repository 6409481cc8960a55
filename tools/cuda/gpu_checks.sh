#!/usr/bin/env bash
# The GPU checks of one device session, in one call (see README, "Against a CUDA LibTorch"):
# builds with tools/cuda/build_on_gpu.sh, runs the suites whose cases use CUDA when they see
# it, then the training-step, inference (eager and CUDA graphs) and augmentation benchmarks on
# the GPU against PyTorch eager (and torch.compile) in the machine's Python. Logs go to build-cuda/gpu-checks; where the device
# tool's OUT is set, the summary table and one archive of the logs are copied there (it brings
# back at most 8 files).
#
#   tools/cuda/gpu_checks.sh [--quick]     # --quick: U-Net only, fewer steps
#
# Needs .gpu/deps.tar.xz (tools/cuda/bundle.sh) carried with the tree.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/build-cuda/gpu-checks"
quick=0
[ "${1:-}" = --quick ] && quick=1
mkdir -p "$out"
python="$(command -v python3)"
status=0
step() {  # step NAME COMMAND...: runs, logs to OUT/NAME.log, remembers a failure
  local name="$1"; shift
  echo "== $name: $*"
  local started=$SECONDS
  if "$@" >"$out/$name.log" 2>&1; then echo "   ok ($((SECONDS - started)) s)"; else echo "   FAILED ($((SECONDS - started)) s)"; status=1; fi
  tail -n 25 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
step build "$root/tools/cuda/build_on_gpu.sh" --python "$python" pneumo test_augment test_train test_infer bench_train bench_augment bench_infer ||
  true
bin="$root/build-cuda/bin"
[ -x "$bin/pneumo" ] || { echo "gpu_checks: the build failed; see $out/build.log"; exit 1; }
step version "$bin/pneumo" version
step test_augment "$bin/test_augment"
step test_train_gpu "$bin/test_train" "*GPU*,*mixed precision*,*device augmentation*,*on the device*,*bfloat16*"
step test_infer_graphs "$bin/test_infer" "CUDA graphs*"
models=unet,unet++,attention_unet,double_unet,classifier steps=10
[ "$quick" = 1 ] && models=unet steps=5
common=(--device cuda --size 256 --batch 16 --steps "$steps" --models "$models" --python "$python" --threads 8)
step bench_train_fp32 "$bin/bench_train" "${common[@]}" --summary "$out/summary.jsonl"
step bench_train_amp "$bin/bench_train" "${common[@]}" --amp --summary "$out/summary.jsonl"
step bench_train_bf16 "$bin/bench_train" "${common[@]}" --amp --amp-dtype bfloat16 --summary "$out/summary.jsonl"
step bench_train_amp_nhwc "$bin/bench_train" "${common[@]}" --amp --channels-last --summary "$out/summary.jsonl"
step bench_train_compile "$bin/bench_train" "${common[@]}" --amp --compile --summary "$out/summary.jsonl"
# bench_infer's Python side reads DICOMs with pydicom, which the bundle brings (deps/python).
infer=(env PYTHONPATH="/tmp/pneumo-deps/deps/python${PYTHONPATH:+:$PYTHONPATH}" "$bin/bench_infer" --device cuda
       --python "$python" --threads 8 --repeats 20 --batch 8 --workers 4 --summary "$out/summary.jsonl")
step bench_infer "${infer[@]}"
step bench_infer_graphs "${infer[@]}" --cuda-graphs
step bench_augment "$bin/bench_augment" --size 512 --seconds 3 --device cuda --batch 32
"$python" "$root/tools/bench/summary_table.py" "$out/summary.jsonl" >"$out/summary.md" 2>&1 && cat "$out/summary.md"
if [ -n "${OUT:-}" ]; then
  cp "$out/summary.md" "$OUT/" 2>/dev/null
  tar -C "$out" -czf "$OUT/gpu-checks-logs.tar.gz" .
fi
exit "$status"
