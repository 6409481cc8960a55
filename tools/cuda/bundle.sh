#!/usr/bin/env bash
# Packs the C++ dependencies pneumo builds and runs with, all but LibTorch, from this Debian 12
# machine into one archive for a GPU machine that has a Python torch (its CUDA LibTorch) but no
# Debian packages: headers, CMake and pkg-config files, and every shared library they load.
#
#   tools/cuda/bundle.sh [--build build] [--out .gpu/deps.tar.xz]
#
# Then, on the GPU machine (the device tool carries `.gpu`; see README, "Against a CUDA LibTorch"):
#   tools/cuda/build_on_gpu.sh .gpu/deps.tar.xz
#
# What goes in:
# - every file of the -dev packages below, except documentation and programs;
# - the shared libraries pneumo's build loads through them: the closure (ldd) of the libraries
#   build/bin/pneumo needs, apart from LibTorch's and the C/C++ runtime's (glibc, libstdc++,
#   libgcc_s: the GPU machine's own are newer);
# - pydicom's Python package (deps/python), for bench_infer's Python side;
# - Debian's CMake package files check that every file their targets name exists (OpenCV names
#   all its modules, GDCM its programs). Files named there that pneumo neither links nor loads
#   are packed as empty files and listed in deps/PLACEHOLDERS.txt.
# The archive must fit the device tool's 64 MiB with the working tree: about 55 MB (xz).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$root/build" out="$root/.gpu/deps.tar.xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$(cd "${2:?}" && pwd)"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
binary="$build/bin/pneumo"
[ -x "$binary" ] || { echo "bundle: $binary not found; build first (tools/build.sh)" >&2; exit 1; }

dev_packages=(
  libyaml-cpp-dev libgloo-dev libcli11-dev libgdcm-dev nlohmann-json3-dev
  libopencv-dev libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-calib3d-dev
  libopencv-features2d-dev libopencv-flann-dev
  libcpp-httplib-dev libdcmtk-dev libcurl4-openssl-dev zlib1g-dev catch2
)
# Present on any machine that compiles C++; the GPU machine's are newer than Debian 12's.
base_libraries='^(libc|libm|libdl|librt|libpthread|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
# LibTorch and what only it loads come from the GPU machine's torch.
torch_libraries='^(libtorch|libc10|libcaffe2|libgomp)'

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/deps"
mkdir -p "$stage"

# 1. The -dev packages' files (headers, CMake and pkg-config files, .so links).
for package in "${dev_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    { echo "bundle: $package is not installed (run tools/setup.sh)" >&2; exit 1; }
  dpkg -L "$package" | while read -r path; do
    [ -f "$path" ] || [ -L "$path" ] || continue
    case "$path" in /usr/share/doc/*|/usr/share/man/*|/usr/bin/*|/usr/share/lintian/*) continue ;; esac
    mkdir -p "$stage$(dirname "$path")"
    cp -a "$path" "$stage$path"
  done
done

# 2. The shared libraries: pneumo's direct needs other than LibTorch's, with all they load.
libdir="$stage/usr/lib/x86_64-linux-gnu"
mkdir -p "$libdir"
resolved="$(ldd "$binary")"
mapfile -t direct < <(
  readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v -E "$base_libraries|$torch_libraries" |
    while read -r name; do awk -v n="$name" '$1 == n {print $3}' <<<"$resolved"; done)
{
  for library in "${direct[@]}"; do
    echo "$library"
    ldd "$library" | awk '$3 ~ /^\// {print $3}'
  done
} | sort -u | while read -r library; do
  name="$(basename "$library")"
  if echo "$name" | grep -q -E "$base_libraries"; then continue; fi
  real="$(readlink -f "$library")"
  cp -a "$real" "$libdir/"
  [ "$(basename "$real")" = "$name" ] || ln -sf "$(basename "$real")" "$libdir/$name"
done

# 2b. Libraries the CMake files name by absolute path (e.g. DCMTK's libxml2.so), where the bundle
# has the library but not the unversioned link.
grep -rhoE '/usr/lib/x86_64-linux-gnu/lib[A-Za-z0-9_.+-]+\.so' "$stage/usr/lib/x86_64-linux-gnu/cmake" \
    "$stage/usr/lib/x86_64-linux-gnu/gdcm-3.0" 2>/dev/null | sort -u | while read -r path; do
  [ -e "$stage$path" ] || [ ! -e "$path" ] && continue
  real="$(readlink -f "$path")"
  [ -e "$libdir/$(basename "$real")" ] || cp -a "$real" "$libdir/"
  ln -sf "$(basename "$real")" "$stage$path"
done

# 2c. Until nothing is missing: what the bundled libraries load (those of 2b included).
while true; do
  missing="$(find "$libdir" -maxdepth 1 -name '*.so*' -type f -size +0 -print0 |
    xargs -0 -n 20 env LD_LIBRARY_PATH="$libdir" ldd 2>/dev/null | awk '$3 ~ /^\// {print $1" "$3}' |
    grep -v -F "$libdir" | grep -v -E "$base_libraries" | awk '{print $2}' | sort -u || true)"
  [ -z "$missing" ] && break
  for library in $missing; do
    real="$(readlink -f "$library")"
    cp -a "$real" "$libdir/"
    [ "$(basename "$real")" = "$(basename "$library")" ] || ln -sf "$(basename "$real")" "$libdir/$(basename "$library")"
  done
done

# 3. Empty stand-ins for files the CMake packages name but pneumo does not use.
: >"$stage/PLACEHOLDERS.txt"
grep -rhoE '"\$\{_IMPORT_PREFIX\}/[^"]+"' "$stage/usr/lib/x86_64-linux-gnu/cmake" "$stage/usr/lib/x86_64-linux-gnu/gdcm-3.0" \
    2>/dev/null | sed -E 's#^"\$\{_IMPORT_PREFIX\}#/usr#; s#"$##' | sort -u | while read -r path; do
  [ -e "$stage$path" ] && continue
  mkdir -p "$stage$(dirname "$path")"
  : >"$stage$path"
  echo "$path" >>"$stage/PLACEHOLDERS.txt"
done

# 3b. pydicom (pure Python) for bench_infer's Python side: the GPU machine's Python lacks it.
mkdir -p "$stage/python"
cp -a /usr/lib/python3/dist-packages/pydicom "$stage/python/"
rm -rf "$stage/python/pydicom/tests" "$stage/python/pydicom/data/test_files"

# 4. Provenance: the packages and their versions.
dpkg-query -W -f='${Package} ${Version}\n' "${dev_packages[@]}" python3-pydicom >"$stage/PACKAGES.txt"
{
  echo "made by tools/cuda/bundle.sh on $(date -u +%Y-%m-%dT%H:%MZ) from $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "libraries: $(find "$libdir" -maxdepth 1 -name '*.so*' -type f | wc -l), placeholders: $(wc -l <"$stage/PLACEHOLDERS.txt")"
} >"$stage/README.txt"

mkdir -p "$(dirname "$out")"
tar -C "$work" -cf - deps | xz -T0 -6 >"$out.partial"
mv "$out.partial" "$out"
echo "bundle: $out ($(du -m "$out" | cut -f1) MB; $(cat "$stage/README.txt" | tail -1))"
