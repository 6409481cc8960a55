#!/usr/bin/env bash
# Makes or brings up to date the project's Python environment, .venv at the repository root
# (git-ignored), from tools/python/requirements.txt:
#   make_env.sh          torch (pneumo builds against its LibTorch) and what it needs
#   make_env.sh --tests  every pinned package: the references tests and benchmarks compare with
# The environment uses Debian's /usr/bin/python3 (python3-venv). A stamp in .venv remembers what
# was installed, so a re-run with nothing new to install costs nothing and needs no network.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
requirements="$root/tools/python/requirements.txt"
venv="$root/.venv"
mode=build
case "${1:-}" in
  "") ;;
  --tests) mode=tests ;;
  *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

hash=$(sha256sum "$requirements" | cut -d' ' -f1)
stamp="$venv/pneumo-requirements"
installed=$(cat "$stamp" 2>/dev/null || true)
# A tests environment holds everything a build one does.
if [ "$installed" = "$mode $hash" ] || [ "$installed" = "tests $hash" ]; then
  echo "python env: $venv is up to date"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "python env: making $venv with /usr/bin/python3"
  /usr/bin/python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
before=$(du -sm "$venv" | cut -f1)
if [ "$mode" = build ]; then
  echo "python env: installing torch (and the CUDA libraries it brings) into $venv"
  "${pip[@]}" install -c "$requirements" torch
else
  echo "python env: installing every package of $requirements into $venv"
  "${pip[@]}" install -r <(grep -v '# no-deps' "$requirements")
  # The two marked no-deps ask for packages that clash with the pinned set (see the file).
  "${pip[@]}" install --no-deps --no-build-isolation -r <(grep '# no-deps' "$requirements" | sed 's/#.*//')
fi
echo "$mode $hash" > "$stamp"
echo "python env: done; $venv grew by $(( $(du -sm "$venv" | cut -f1) - before )) MiB"
