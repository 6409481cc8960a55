#!/usr/bin/env bash
# Configures (once) and builds pneumo into build/ at the repository root; the CLI ends up at
# build/bin/pneumo. Extra CMake arguments can be passed in PNEUMO_CMAKE_ARGS, e.g. the prefix
# of a CUDA LibTorch (see README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2086
cmake -S "$root" -B "$root/build" -G Ninja ${PNEUMO_CMAKE_ARGS:-}
cmake --build "$root/build" --parallel "$(nproc)"
