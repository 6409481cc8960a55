#!/usr/bin/env bash
# Builds pneumo on a machine whose LibTorch comes from a Python torch install (a CUDA one) and
# whose other C++ dependencies come from tools/cuda/bundle.sh's archive, carried with the tree.
# Needs CMake, ninja (or make) and a C++17 compiler there; installs nothing.
#
#   tools/cuda/build_on_gpu.sh [--bundle .gpu/deps.tar.xz] [--python python3] [--torch-prefix DIR]
#                              [--deps-dir /tmp/pneumo-deps] [--build build-cuda] [--configure-only]
#                              [TARGET ...]
#
# --python        the interpreter whose torch to build against (its torch.utils.cmake_prefix_path)
# --torch-prefix  a LibTorch CMake prefix instead (a libtorch zip, or Debian's /usr)
# TARGET          build only these (e.g. pneumo test_augment bench_train); default: everything
#
# The bundle is unpacked to --deps-dir, its CMake and pkg-config files are pointed at it there, and
# pneumo's programs get an RPATH (DT_RPATH, which the libraries they load also use) to its
# libraries, so nothing needs LD_LIBRARY_PATH. CMAKE_CXX_STANDARD can be raised through
# PNEUMO_CMAKE_ARGS if a newer LibTorch's headers ask for it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bundle="$root/.gpu/deps.tar.xz" python=python3 torch_prefix="" deps_dir=/tmp/pneumo-deps build="$root/build-cuda"
configure_only=0 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="${2:?}"; shift 2 ;;
    --python) python="${2:?}"; shift 2 ;;
    --torch-prefix) torch_prefix="${2:?}"; shift 2 ;;
    --deps-dir) deps_dir="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --configure-only) configure_only=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build_on_gpu: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ -f "$bundle" ] || { echo "build_on_gpu: no bundle at $bundle (make it with tools/cuda/bundle.sh)" >&2; exit 1; }

# 1. Unpack once per bundle.
deps="$deps_dir/deps"
stamp="$(stat -c %s-%Y "$bundle")"
if [ "$(cat "$deps/.unpacked" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$deps"
  mkdir -p "$deps_dir"
  tar -C "$deps_dir" -xJf "$bundle"
  # Absolute /usr/... paths in the CMake and pkg-config files that the bundle holds now point
  # into it; the rest (the system's) stay.
  "$python" - "$deps" <<'EOF'
import os, re, sys
deps = sys.argv[1]
for top in ("usr/lib/x86_64-linux-gnu/cmake", "usr/lib/x86_64-linux-gnu/gdcm-3.0", "usr/lib/cmake", "usr/share/cmake",
            "usr/lib/x86_64-linux-gnu/pkgconfig", "usr/share/pkgconfig"):
    for folder, _, files in os.walk(os.path.join(deps, top)):
        for name in files:
            path = os.path.join(folder, name)
            if not (name.endswith(".cmake") or name.endswith(".pc")) or os.path.islink(path):
                continue
            text = open(path, encoding="utf-8", errors="surrogateescape").read()
            def move(m):
                p = m.group(0)
                return deps + p if os.path.lexists(deps + p.rstrip("/")) else p
            new = re.sub(r"(?<![\w.$}])/usr/[^\s\"';)]*", move, text)
            new = new.replace('"/usr"', '"' + deps + '/usr"')  # install prefixes
            if name.endswith(".pc"):
                new = re.sub(r"^prefix=/usr$", "prefix=" + deps + "/usr", new, flags=re.M)
            if new != text:
                open(path, "w", encoding="utf-8", errors="surrogateescape").write(new)
EOF
  echo "$stamp" >"$deps/.unpacked"
fi
cat "$deps/README.txt"

# 2. LibTorch from the Python torch, which must use the C++11 string ABI as Debian's libraries do.
if [ -z "$torch_prefix" ]; then
  torch_prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  abi="$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  if [ "$abi" != 1 ]; then
    echo "build_on_gpu: this torch ($("$python" -c 'import torch; print(torch.__version__)')) uses the pre-C++11" \
         "string ABI; Debian's C++ libraries in the bundle cannot link with it" >&2
    exit 1
  fi
  echo "build_on_gpu: torch $("$python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
fi

# 3. Configure and build.
libs="$deps/usr/lib/x86_64-linux-gnu"
generator=Ninja
command -v ninja >/dev/null 2>&1 || generator="Unix Makefiles"
# shellcheck disable=SC2086
PKG_CONFIG_LIBDIR="$libs/pkgconfig:$deps/usr/share/pkgconfig" \
  cmake -S "$root" -B "$build" -G "$generator" \
    -DCMAKE_PREFIX_PATH="$deps/usr;$torch_prefix" \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$libs -Wl,-rpath-link,$libs" \
    -DCMAKE_SHARED_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$libs -Wl,-rpath-link,$libs" \
    ${PNEUMO_CMAKE_ARGS:-}
[ "$configure_only" = 1 ] && exit 0
cmake --build "$build" --parallel "$(nproc)" ${targets[@]:+--target "${targets[@]}"}
echo "build_on_gpu: built in $build (programs in $build/bin)"
