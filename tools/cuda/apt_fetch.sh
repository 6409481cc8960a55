#!/usr/bin/env bash
# Downloads Debian packages and unpacks them into a folder, without installing anything and
# without touching this machine's apt configuration (apt-get runs on private lists and caches).
#
#   tools/cuda/apt_fetch.sh --suite SUITE [--components "main contrib"] [--only PATH]... DEST PACKAGE...
#
# --suite       a Debian suite: bookworm (this machine's), trixie (LibTorch 2.6, CUDA 12.4), ...
# --components  archive components to read (default: main)
# --only PATH   unpack only this path of each package (e.g. ./usr/include); repeatable
# DEST          folder the packages' files land in (DEST/usr/...); the .deb files are kept in
#               DEST/.debs, and a package already there is not downloaded again.
#
# Used by tools/cuda/check_libtorch2.sh (LibTorch 2.x CUDA headers) and tools/cuda/bundle.sh
# (the C++ libraries carried to a GPU machine). Needs network access to deb.debian.org only.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
suite="" components="main" only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite="${2:?}"; shift 2 ;;
    --components) components="${2:?}"; shift 2 ;;
    --only) only+=("${2:?}"); shift 2 ;;
    -h|--help) usage ;;
    --*) echo "apt_fetch: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ -n "$suite" ] && [ $# -ge 2 ] || usage
dest="$1"; shift
mkdir -p "$dest/.debs"
dest="$(cd "$dest" && pwd)"

state="$dest/.debs/apt-$suite"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite $components" \
  >"$state/sources.list"
apt_options=(-o "Dir::Etc::sourcelist=$state/sources.list" -o "Dir::Etc::sourceparts=-"
             -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
             -o "APT::Sandbox::User=root" -q)
# Package lists are refreshed once a day.
if [ -z "$(find "$state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  apt-get "${apt_options[@]}" update >/dev/null
fi

cd "$dest/.debs"
for package in "$@"; do
  if ! compgen -G "${package}_*.deb" >/dev/null; then
    apt-get "${apt_options[@]}" download "$package" >/dev/null
  fi
  deb="$(compgen -G "${package}_*.deb" | head -1)"
  if [ ${#only[@]} -eq 0 ]; then
    dpkg-deb -x "$deb" "$dest"
  else
    # tar fails when a requested path is not in this package; that is not an error here.
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" "${only[@]}" 2>/dev/null || true
  fi
  echo "apt_fetch: $deb"
done
