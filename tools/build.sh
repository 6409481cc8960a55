#!/usr/bin/env bash
# Configures (once) and builds pneumo into build/ at the repository root; the CLI ends up at
# build/bin/pneumo. LibTorch is the one in the project environment's torch wheel, with CUDA
# code compiled and linked by the machine's CUDA toolkit (tools/torch_cmake_args.sh); the same
# binary runs on the CPU. Extra CMake arguments can be passed in PNEUMO_CMAKE_ARGS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
torch_args=$("$root/tools/torch_cmake_args.sh") || { echo "build: cannot configure LibTorch (above)" >&2; exit 1; }
mapfile -t args <<< "$torch_args"
# A build folder configured against another LibTorch (e.g. Debian's libtorch-dev, which pneumo
# used before) keeps that one's library paths in its CMake cache: configure it afresh.
cache="$root/build/CMakeCache.txt"
torch_dir_arg=$(printf '%s\n' "${args[@]}" | grep '^-DTorch_DIR=')
if [ -f "$cache" ] && ! grep -qxF "Torch_DIR:PATH=${torch_dir_arg#-DTorch_DIR=}" "$cache"; then
  echo "build: build/ was configured against another LibTorch; configuring it afresh"
  rm -f "$cache"
fi
# Debug information and include paths record the source folder; these are meant to let ccache
# reuse objects across clones (on 2026-12-03 a fresh clone still missed almost every object:
# its precompiled header is built anew, and every object depends on it).
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
# shellcheck disable=SC2086
cmake -S "$root" -B "$root/build" -G Ninja "${args[@]}" ${PNEUMO_CMAKE_ARGS:-}
cmake --build "$root/build" --parallel "$(nproc)"
