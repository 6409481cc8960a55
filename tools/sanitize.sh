#!/usr/bin/env bash
# The reliability checks: builds pneumo with clang-14, AddressSanitizer + UndefinedBehaviorSanitizer
# and libFuzzer instrumentation into build-sanitize/, runs test suites under the sanitizers,
# then each fuzz target for a bounded time on its seed corpus.
#
#   tools/sanitize.sh [--fuzz-seconds N] [--fuzz-runs N] [--fuzz-timeout S] [--targets "fuzz_dicom ..."]
#                     [--suites "test_core ..."] [--no-tests]
#
# Fuzzing to depth (the README's reliability table): `tools/sanitize.sh --no-tests
# --fuzz-runs 1000000 --fuzz-seconds 14400` runs each target until a million executions (or the
# time) one after another, and writes each one's executions, time and result to
# build-sanitize/fuzz-depth.md.
#
# Seeds: tests/fuzz/corpus/<target>/ (small files made by pneumo), plus, when present, the
# real SIIM DICOMs in ../shared/data/siim and pydicom's test files. New inputs the fuzzers
# find go to build-sanitize/corpus/<target>/; crashes to build-sanitize/findings/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_seconds=60
fuzz_runs=""
fuzz_timeout=10  # seconds one input may take (libFuzzer measures wall time: a busy machine needs more)
targets_given=""
suites="test_core test_data test_augment test_models test_train test_infer"
run_tests=1
while [ $# -gt 0 ]; do
  case "$1" in
    --fuzz-seconds) fuzz_seconds="$2"; shift 2 ;;
    --fuzz-runs) fuzz_runs="$2"; shift 2 ;;
    --fuzz-timeout) fuzz_timeout="$2"; shift 2 ;;
    --targets) targets_given="$2"; shift 2 ;;
    --suites) suites="$2"; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    *) echo "usage: $0 [--fuzz-seconds N] [--fuzz-runs N] [--fuzz-timeout S] [--targets \"fuzz_dicom ...\"] [--suites \"test_core ...\"] [--no-tests]" >&2; exit 2 ;;
  esac
done

"$root/tools/setup.sh" --tests --sanitizers
build="$root/build-sanitize"
# Debug information records the source folder; these let ccache reuse objects across clones.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
torch_args=$("$root/tools/torch_cmake_args.sh") || { echo "sanitize: cannot configure LibTorch (above)" >&2; exit 1; }
mapfile -t torch_args <<< "$torch_args"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DPNEUMO_FUZZ=ON "${torch_args[@]}"
targets=(fuzz_dicom fuzz_upload fuzz_labels fuzz_config fuzz_checkpoint)
# shellcheck disable=SC2206
[ -n "$targets_given" ] && targets=($targets_given)
# shellcheck disable=SC2086
cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}" $([ "$run_tests" = 1 ] && echo $suites)

# LibTorch, OpenCV and GDCM are not instrumented; these options keep ASan from reporting
# their allocator pairings and globals, and make every finding fatal.
export ASAN_OPTIONS="detect_odr_violation=0:alloc_dealloc_mismatch=0:detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0"

status=0
if [ "$run_tests" = 1 ]; then
  echo "== test suites under ASan + UBSan: $suites"
  for suite in $suites; do
    if ! (cd "$root" && "$build/bin/$suite"); then
      echo "sanitize: $suite failed" >&2
      status=1
    fi
  done
fi

echo "== fuzzing, ${fuzz_seconds}s${fuzz_runs:+ or $fuzz_runs executions} per target"
mkdir -p "$build/findings"
depth="$build/fuzz-depth.md"
if [ ! -f "$depth" ]; then  # one row per target and run, kept across runs
  echo "| target | date | CPU | executions | seconds | executions/s | result |" > "$depth"
  echo "| --- | --- | --- | ---: | ---: | ---: | --- |" >> "$depth"
fi
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
isa=$(grep -o -w -E 'avx512_bf16|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  seeds=("$root/tests/fuzz/corpus/${target#fuzz_}")
  case "$target" in
    fuzz_dicom)
      patterns=(-name '*.dcm')
      [ -d "$root/../shared/data/siim" ] && seeds+=("$root/../shared/data/siim")
      pydicom_files=$("$root/.venv/bin/python" -c 'import os, pydicom.data; print(os.path.dirname(pydicom.data.__file__) + "/test_files")' 2>/dev/null || true)
      [ -n "$pydicom_files" ] && [ -d "$pydicom_files" ] && seeds+=("$pydicom_files") ;;
    fuzz_upload)  # what pneumo serve is sent: PNG, JPEG, DICOM
      patterns=(-name '*.png' -o -name '*.jpg' -o -name '*.dcm')
      seeds+=("$root/tests/fuzz/corpus/dicom") ;;
    fuzz_labels)
      patterns=(-name '*.csv' -o -name '*.rle')
      [ -d "$root/../shared/data/siim" ] && seeds+=("$root/../shared/data/siim") ;;
    fuzz_config) patterns=(-name '*.yaml'); seeds+=("$root/configs") ;;
    fuzz_checkpoint) patterns=(-name '*.ckpt' -o -name '*.pth' -o -name '*.safetensors') ;;
  esac
  # Up to 60 files under 300 KB from each source seed the run: small inputs keep executions fast.
  seed_dir="$build/seeds/$target"
  rm -rf "$seed_dir" && mkdir -p "$seed_dir"
  for s in "${seeds[@]}"; do
    find "$s" -type f -size -300k \( "${patterns[@]}" \) | sort | head -n 60 | xargs -r cp -t "$seed_dir" 2>/dev/null || true
  done
  if [ "$target" = fuzz_dicom ] && [ -x "$root/.venv/bin/python" ]; then
    # Element-aware mutations reach past the header into fragments and codestreams, where
    # byte-level mutation of whole files rarely gets.
    find "$seed_dir" -name '*.dcm' -size -300k | sort | head -n 40 |
      xargs -r "$root/.venv/bin/python" "$root/tools/fuzz/dicom_mutations.py" --out "$seed_dir" --count 400 --seed 1 \
        > /dev/null || true
  fi
  echo "-- $target: $(find "$seed_dir" -type f | wc -l) seed files"
  # Inputs earlier runs found problems with, kept as regression tests: each must now pass.
  regressions="$root/tests/fuzz/regressions/${target#fuzz_}"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    if ! (cd "$build/findings" && "$build/bin/$target" "$regressions"/* > "$build/findings/$target-regressions.log" 2>&1); then
      echo "sanitize: $target fails on a kept regression input; see $build/findings/$target-regressions.log" >&2
      status=1
    fi
  fi
  log="$build/findings/$target.log"
  started=$SECONDS
  result="clean"
  if (cd "$build/findings" && "$build/bin/$target" "$corpus" "$seed_dir" -max_total_time="$fuzz_seconds" \
        ${fuzz_runs:+-runs="$fuzz_runs"} -timeout="$fuzz_timeout" -rss_limit_mb=4096 -max_len=307200 -print_final_stats=1 \
        > "$log" 2>&1); then
    grep -E "stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb" "$log" | sed "s/^/   /"
  elif grep -q "Assertion .* failed" "$log" && grep -q "gdcm" "$log"; then
    # A known, still open class of finding: Debian's GDCM (built with assertions) aborts on
    # some malformed data sets that pneumo's structure check does not refuse yet; see
    # tests/fuzz/open/README.md. Reported, kept, not counted as a failure.
    echo "sanitize: $target: a GDCM assertion abort (known open class, tests/fuzz/open/README.md):" >&2
    grep -m1 "Assertion .* failed" "$log" | sed "s/^/   /" >&2
    grep -E "stat::number_of_executed_units" "$log" | sed "s/^/   /"
    result="GDCM assertion abort (see $log)"
  else
    echo "sanitize: $target found a problem; see $log and the crash-* file in $build/findings" >&2
    tail -40 "$log" >&2
    status=1
    result="finding (see $log)"
  fi
  seconds=$((SECONDS - started))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  executions=${executions:-$(grep -o -E '^#[0-9]+' "$log" | tail -1 | tr -d '#')}
  echo "| $target | $(date -u +%F) | $cpu ($isa) | ${executions:-0} | $seconds | $(( ${executions:-0} / (seconds > 0 ? seconds : 1) )) | $result |" >> "$depth"
done
echo "== fuzzing depth ($depth)"
cat "$depth"
exit $status
