#!/usr/bin/env bash
# The serving load and fault test for longer than ctest runs it: 32 clients keep sending to
# `pneumo serve` (a model repository) for SECONDS (default 120) split over a warm-up with a
# reload and a measured phase in which a new version arrives with SIGHUP and a decoder worker is
# killed; it checks that every request is answered exactly once (200, 503 with Retry-After, or
# 422 for the upload the killed decoder held) and that the server's resident memory grows by at
# most 10% over the measured phase. ctest runs the same test for 8 seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-120}"
log="$root/build/load-test-build.log"
mkdir -p "$root/build"
"$root/tools/build.sh" > "$log" 2>&1 || { cat "$log"; echo "load test: the build failed (above)" >&2; exit 1; }
# (a wildcard: Catch2 reads the commas of the test's name as "or")
PNEUMO_LOAD_SECONDS="$seconds" "$root/build/bin/test_cli" "a model repository: versions*" -s \
  | grep -E "RSS after|statuses|test cases|assertions|FAILED" | sort -u
