#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh" --tests
"$root/tools/build.sh"
ctest --test-dir "$root/build" --parallel "$(nproc)" --output-on-failure
