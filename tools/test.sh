#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest, then the
# reliability checks: the core and data suites under AddressSanitizer + UndefinedBehaviorSanitizer
# and each fuzz target for 45 seconds (tools/sanitize.sh; run it alone for longer fuzzing or all
# suites). PNEUMO_SKIP_SANITIZE=1 skips that second part.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh" --tests
"$root/tools/build.sh"
ctest --test-dir "$root/build" --parallel "$(nproc)" --output-on-failure
if [ "${PNEUMO_SKIP_SANITIZE:-0}" != 1 ]; then
  "$root/tools/sanitize.sh" --fuzz-seconds 45 --suites "test_core test_data"
fi
