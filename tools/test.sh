#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest, then the
# reliability checks: the core and data suites under AddressSanitizer + UndefinedBehaviorSanitizer
# and each fuzz target for 40 seconds (tools/sanitize.sh; run it alone for longer fuzzing or all
# suites). That second part needs its own clang build (about 9 minutes cold on 2 cores), so it
# runs only when the first part took under 12 minutes (a warm compiler cache), keeping the
# whole script within CI's time; PNEUMO_SANITIZE=always|never overrides.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh" --tests
"$root/tools/build.sh"
ctest --test-dir "$root/build" --parallel "$(nproc)" --output-on-failure
mode="${PNEUMO_SANITIZE:-auto}"
if [ "$mode" = always ] || { [ "$mode" = auto ] && [ "$SECONDS" -lt 720 ]; }; then
  "$root/tools/sanitize.sh" --fuzz-seconds 40 --suites "test_core test_data"
elif [ "$mode" = auto ]; then
  echo "test: skipping tools/sanitize.sh: the build and tests took $((SECONDS / 60)) min (a cold compiler" \
       "cache); run it on its own, or set PNEUMO_SANITIZE=always"
fi
