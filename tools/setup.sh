#!/usr/bin/env bash
# Installs the Debian packages pneumo builds with (Catch2 included: tests build by default) (and, with --tests, the Python references the
# tests compare against). Installs only what is missing, so it is quick and safe to re-run.
# Uses apt-get directly as root, or through sudo.
set -euo pipefail

build_packages=(
  cmake ninja-build ccache g++
  libtorch-dev libgloo-dev libyaml-cpp-dev libfmt-dev libcli11-dev
  libgdcm-dev libgdcm-tools libopencv-dev nlohmann-json3-dev
  libcpp-httplib-dev libdcmtk-dev libcurl4-openssl-dev
  catch2
)
# Reference implementations used only by tests and benchmarks (Debian's /usr/bin/python3), and
# the browser, PACS server and load generator the serving tests and benchmarks drive.
test_packages=(
  python3-numpy python3-torch python3-torchvision python3-pydicom python3-gdcm
  python3-opencv python3-scipy python3-sklearn
  chromium chromium-driver python3-selenium orthanc wrk
)

# The sanitizer and fuzzing build (tools/sanitize.sh).
sanitizer_packages=(clang-14 libclang-rt-14-dev)

wanted=("${build_packages[@]}")
for arg in "$@"; do
  case "$arg" in
    --tests) wanted+=("${test_packages[@]}") ;;
    --sanitizers) wanted+=("${sanitizer_packages[@]}") ;;
    *) echo "usage: $0 [--tests] [--sanitizers]" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#wanted[@]} Debian packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null 2>&1; then
  apt_get=(sudo apt-get)
else
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root or install sudo, then re-run" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" update -q
"${apt_get[@]}" install -y -q --no-install-recommends "${missing[@]}"
