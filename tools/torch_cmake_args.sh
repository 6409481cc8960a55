#!/usr/bin/env bash
# Prints, one per line, the CMake arguments that point a build at LibTorch: the one inside the
# torch wheel of the project environment (.venv, made by tools/setup.sh), with the machine's
# CUDA toolkit (nvcc on PATH or under /usr/local/cuda), which that CUDA build's CMake config
# needs whether or not a GPU is present. Used by tools/build.sh and tools/sanitize.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! torch_dir=$("$root/.venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null); then
  echo "no torch in $root/.venv; run tools/setup.sh first" >&2
  exit 1
fi
nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  echo "the torch wheel is a CUDA build and its CMake config needs the CUDA toolkit (nvcc);" \
       "none on PATH or in /usr/local/cuda" >&2
  exit 1
fi
nvcc=$(readlink -f "$nvcc")
# The torch directory itself comes second in the prefix path so that CMake finds its
# libtorch.so before any other on the system. pneumo has no .cu files: TORCH_CUDA_ARCH_LIST
# only spares CMake probing for a GPU that is not there (9.0: Hopper, the device we test on).
echo "-DCMAKE_PREFIX_PATH=$torch_dir/share/cmake;$torch_dir"
echo "-DCUDAToolkit_ROOT=$(dirname "$(dirname "$nvcc")")"
echo "-DCMAKE_CUDA_COMPILER=$nvcc"
echo "-DTORCH_CUDA_ARCH_LIST=9.0"
echo "-DTorch_DIR=$torch_dir/share/cmake/Torch"
