#!/usr/bin/env bash
# Every benchmark in one run: data (decode + resize, augmentation), a training step per model
# family, inference from DICOM, serving; each against the Python way (pydicom, OpenCV-Python,
# numpy/scipy, PyTorch eager from Debian's python3 packages) on the same machine, model, weights
# and data, then one Markdown table of pneumo's figure, Python's and the speed-up.
#
#   tools/bench.sh [--quick] [--out FILE.md] [--skip serve,train,...] [--isa avx2]
#
# --isa avx2: both sides (the same LibTorch) limited to AVX2 on a CPU that has AVX-512:
# ATen's kernels (ATEN_CPU_CAPABILITY=avx2), oneDNN's convolutions (ONEDNN_MAX_CPU_ISA=AVX2) and
# OpenCV's dispatched code (OPENCV_CPU_DISABLE=AVX512F,...; both OpenCVs, pneumo's and Python's),
# the figures of an AVX2-only machine of the same kind, measured on this one.
#
# --quick: short runs and small sizes (about 3 minutes; a smoke test of the suite, not figures
# to quote). Without it, the sizes the README's Performance section quotes (about 10 minutes
# on 2 cores). Needs a built tree (tools/build.sh); serving needs Debian's wrk
# (tools/setup.sh --tests). Each benchmark's own output goes to the terminal and to
# <out>.logs/ next to the table when --out is given.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PNEUMO_BUILD_DIR:-$root/build}/bin"
quick=0
out=""
skip=""
isa=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --skip) skip=",$2,"; shift 2 ;;
    --isa) isa="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument '$1' (expected --quick, --out FILE, --skip LIST, --isa avx2)" >&2; exit 2 ;;
  esac
done
case "$isa" in
  "") isa_used="$(grep -q -w avx512f /proc/cpuinfo && echo "AVX-512$(grep -q -w avx512_bf16 /proc/cpuinfo && echo ' with AVX512-BF16')" || echo "AVX2 (no AVX-512)")" ;;
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OPENCV_CPU_DISABLE=AVX512F,AVX512BW,AVX512CD,AVX512DQ,AVX512VL
        isa_used="AVX2 (limited to it: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, OPENCV_CPU_DISABLE=AVX512F,...)" ;;
  *) echo "bench: --isa takes avx2" >&2; exit 2 ;;
esac
echo "bench: instruction set in use: $isa_used"
for b in bench_decode bench_augment bench_train bench_infer bench_serve pneumo; do
  [ -x "$bin/$b" ] || { echo "bench: $bin/$b is missing; build first (tools/build.sh)" >&2; exit 2; }
done
python="$root/.venv/bin/python"
"$python" -c 'import torch, cv2, pydicom' 2>/dev/null || { echo "bench: the Python references are not in $root/.venv; run tools/setup.sh --tests" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
summary="$work/summary.jsonl"
logs="$work/logs"
[ -n "$out" ] && logs="$out.logs"
mkdir -p "$logs"
rm -f "$logs"/bench_*.log  # a benchmark that runs twice appends to its log

if [ "$quick" = 1 ]; then
  decode_args=(--seconds 1); augment_args=(--seconds 1 --size 256)
  train_args=(--size 128 --batch 2 --steps 2); infer_args=(--images 4 --repeats 3 --size 256)
  serve_args=(--seconds 4 --connections 1,8)
else
  decode_args=(--seconds 3); augment_args=(--seconds 5)
  train_args=(--size 256 --batch 4 --steps 5); infer_args=(--images 16 --repeats 9)
  serve_args=(--seconds 20 --connections 1,4,16,64)
fi
siim="$root/../shared/data/siim/dicom"
if [ ! -d "$siim" ]; then  # no shared data: the demo set's DICOMs (smaller, 256²)
  "$bin/pneumo" make-demo --out "$work/demo" > /dev/null
  decode_args+=("$work/demo/dicom")
fi

failed=()
run() {
  local name="$1"; shift
  if [[ "$skip" == *",${name#bench_},"* ]]; then echo "== $name: skipped"; return; fi
  echo "== $name $*"
  if ! "$bin/$name" "$@" --summary "$summary" 2>&1 | tee -a "$logs/$name.log"; then
    failed+=("$name")
  fi
}
run bench_decode "${decode_args[@]}"
run bench_augment "${augment_args[@]}"
run bench_train "${train_args[@]}"
# bfloat16 autocast on both sides, where the CPU has bfloat16 instructions (else both emulate it).
if grep -q -w avx512_bf16 /proc/cpuinfo && [ -z "$isa" ]; then
  run bench_train "${train_args[@]}" --models unet,classifier --amp --amp-dtype bfloat16
fi
# PyTorch 2.x's torch.compile on the Python side (U-Net/ResNet34; compiling happens in the
# warm-up steps, left out of the timing).
run bench_train "${train_args[@]}" --models unet --compile
# bench_infer's Python side also times torch.compile, ONNX Runtime and OpenVINO (anchors).
run bench_infer "${infer_args[@]}"
if command -v wrk > /dev/null; then
  run bench_serve "${serve_args[@]}"
else
  echo "== bench_serve: skipped (no wrk; tools/setup.sh --tests installs it)"
fi

{
  echo "## pneumo vs Python, $(date -u '+%Y-%m-%d %H:%M UTC')"
  [ "$quick" = 1 ] && echo "(--quick: short runs at small sizes; not figures to quote)"
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
       "instruction set in use: $isa_used"
  echo "- pneumo: $("$bin/pneumo" version | sed -n 2p | sed "s/, [0-9]* CPU threads//")"
  echo "- Python: $("$python" -c 'import sys, torch, cv2, pydicom; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, OpenCV {cv2.__version__}, pydicom {pydicom.__version__}")')"
  echo
  "$python" "$root/tools/bench/summary_table.py" "$summary"
} > "$work/table.md"
echo
cat "$work/table.md"
[ -n "$out" ] && cp "$work/table.md" "$out" && echo "(written to $out; each benchmark's output in $logs/)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: failed: ${failed[*]} (see their output above)" >&2
  exit 1
fi
