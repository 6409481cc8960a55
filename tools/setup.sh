#!/usr/bin/env bash
# Sets up what pneumo builds and tests with, installing only what is missing, so it is quick and
# safe to re-run:
#   - the Debian packages (Catch2 included: tests build by default), with apt-get as root or
#     through sudo;
#   - the project's Python environment .venv (tools/python/make_env.sh): the PyPI torch wheel,
#     whose LibTorch pneumo builds against, and with --tests the pinned Python references.
set -euo pipefail

# libgloo-dev: the torch wheel leaves out the Gloo headers its ProcessGroupGloo.hpp includes.
# python3-venv: the project environment is made with Debian's Python 3.11.
build_packages=(
  cmake ninja-build ccache g++ python3-venv
  libgloo-dev libyaml-cpp-dev libcli11-dev
  libgdcm-dev libgdcm-tools libopencv-dev nlohmann-json3-dev
  libcpp-httplib-dev libdcmtk-dev libcurl4-openssl-dev
  catch2
)
# The browser (driven from Debian's Python by python3-selenium), PACS server and load generator
# the serving tests and benchmarks use, and David Clunie's DICOM validator dciodvfy (dicom3tools)
# the DICOM result tests run. The Python references are in .venv (--tests).
test_packages=(
  chromium chromium-driver python3-selenium orthanc orthanc-dicomweb wrk dicom3tools
)

# The sanitizer and fuzzing build (tools/sanitize.sh).
sanitizer_packages=(clang-14 libclang-rt-14-dev)

wanted=("${build_packages[@]}")
env_mode=()
for arg in "$@"; do
  case "$arg" in
    --tests) wanted+=("${test_packages[@]}"); env_mode=(--tests) ;;
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
else
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
fi

"$(dirname "${BASH_SOURCE[0]}")/python/make_env.sh" ${env_mode[@]+"${env_mode[@]}"}
