#!/usr/bin/env bash
# The main job on the embedded demo data: installs what is missing, builds, then runs pneumo
# end to end as far as it goes today, printing where the outputs are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh"
pneumo="$root/build/bin/pneumo"
cd "$root"

echo
"$pneumo" version
echo
echo "== resolved demo experiment (configs/demo.yaml)"
"$pneumo" config show configs/demo.yaml
