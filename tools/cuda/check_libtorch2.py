#!/usr/bin/env python3
"""Compiles every pneumo source against a CUDA build of LibTorch 2.x's headers.

This machine's LibTorch is Debian bookworm's 1.13 (CPU only), but pneumo must also build against
the CUDA LibTorch 2.x of a Python torch install on a GPU machine. Debian trixie ships LibTorch
2.6 built with CUDA 12.4 (contrib: libtorch-cuda-dev; non-free: nvidia-cuda-dev, libnccl-dev; main: libcu++-dev).
This script fetches those packages' headers into a cache (nothing is installed), then compiles
each translation unit of build/compile_commands.json with them (-fsyntax-only, through one
precompiled header), plus the sources a CUDA build compiles differently (CUDA_VARIANTS below:
the NCCL process group). It catches API differences between LibTorch versions and CUDA-only
code that the CPU build never compiles. It does not link (trixie's libraries need a newer
glibc than bookworm's) and it does not run anything.

usage: tools/cuda/check_libtorch2.py [--build build] [--cache .cache/libtorch2-cuda] [--jobs N]
                                     [--werror] [SOURCE-SUBSTRING ...]

The first run downloads about 1 GB from deb.debian.org (nvidia-cuda-dev is 934 MB; only its
headers are kept) and takes about 10 minutes on 2 cores; later runs reuse the cache.
Exit status: 0 when every source compiles, 1 otherwise (with --werror, also on a warning in
pneumo's own code), 2 on a usage or setup error.
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Trixie packages whose headers a CUDA LibTorch 2.x build of pneumo compiles with.
PACKAGES = ["libtorch-cuda-dev", "nvidia-cuda-dev", "libcu++-dev", "libnccl-dev"]

# What CMake's Caffe2Targets (torch_cpu, torch_cuda) add to every consumer of a CUDA LibTorch 2.6.
TORCH_DEFINITIONS = ["USE_DISTRIBUTED", "USE_C10D_GLOO", "USE_RPC", "USE_TENSORPIPE", "USE_C10D_NCCL"]

# What Debian's LibTorch 1.13 adds (glog and gflags), removed from the CPU build's commands.
CPU_TORCH_DEFINITIONS = ["GFLAGS_IS_A_DLL", "GLOG_CUSTOM_PREFIX_SUPPORT"]

# Sources a CUDA build compiles with other settings than the CPU build (see their CMakeLists):
# path relative to the repository root -> (extra definitions, uses the shared precompiled header).
CUDA_VARIANTS = {
    "train/src/distributed.cpp": (["PNEUMO_WITH_NCCL", "USE_C10D_NCCL"], False),
    "infer/src/cuda_graphs.cpp": (["PNEUMO_WITH_CUDA"], True),
}


def fetch_headers(cache):
    """Unpacks the packages' ./usr/include into cache/usr/include (once)."""
    marker = os.path.join(cache, ".fetched")
    if os.path.exists(marker) and open(marker).read().split() == PACKAGES:
        return
    command = [os.path.join(ROOT, "tools/cuda/apt_fetch.sh"), "--suite", "trixie", "--components",
               "main contrib non-free", "--only", "./usr/include", cache] + PACKAGES
    print("check_libtorch2: fetching " + " ".join(PACKAGES) + " (Debian trixie) into " + cache, flush=True)
    subprocess.run(command, check=True)
    # Keep the headers, drop the 1 GB of .deb files.
    shutil.rmtree(os.path.join(cache, ".debs"), ignore_errors=True)
    with open(marker, "w") as f:
        f.write(" ".join(PACKAGES))


def torch_version(include):
    version = {}
    for line in open(os.path.join(include, "torch/csrc/api/include/torch/version.h")):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("TORCH_VERSION_"):
            version[parts[1]] = parts[2]
    return "{}.{}.{}".format(version.get("TORCH_VERSION_MAJOR"), version.get("TORCH_VERSION_MINOR"),
                             version.get("TORCH_VERSION_PATCH"))


def rewrite(command, include, pch_header, variant):
    """Turns a compile command of the CPU build into a syntax check against the cached headers."""
    args = shlex.split(command)
    out = [args[0]]
    uses_pch = False
    i = 1
    while i < len(args):
        a = args[i]
        if a in ("-o", "-MF", "-MT", "-MQ"):
            i += 2
            continue
        if a == "-include" and args[i + 1].endswith("cmake_pch.hxx"):
            uses_pch = True
            i += 2
            continue
        if a == "-isystem" and "torch" in args[i + 1]:
            i += 2
            continue
        if a in ("-c", "-Winvalid-pch", "-MD", "-MMD") or a.startswith("-O"):
            i += 1
            continue
        if a.startswith("-D") and a[2:].split("=")[0] in TORCH_DEFINITIONS + CPU_TORCH_DEFINITIONS:
            i += 1
            continue
        out.append(a)
        i += 1
    source = out.pop()  # compile_commands.json puts the source last
    extra_definitions, variant_uses_pch = variant if variant else ([], uses_pch)
    out += ["-O0", "-fsyntax-only", "-isystem", include, "-isystem", os.path.join(include, "torch/csrc/api/include")]
    out += ["-D" + d for d in TORCH_DEFINITIONS + [d for d in extra_definitions if d not in TORCH_DEFINITIONS]]
    if variant_uses_pch:
        out += ["-Winvalid-pch", "-include", pch_header]
    return out + [source]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--cache", default=os.path.join(ROOT, ".cache/libtorch2-cuda"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--werror", action="store_true", help="fail on warnings in pneumo's own code")
    parser.add_argument("filters", nargs="*", help="check only sources whose path contains one of these")
    args = parser.parse_args()

    database = os.path.join(args.build, "compile_commands.json")
    if not os.path.exists(database):
        sys.exit(f"check_libtorch2: {database} not found; configure first (tools/build.sh)")
    cache = os.path.abspath(args.cache)
    fetch_headers(cache)
    include = os.path.join(cache, "usr/include")
    print(f"check_libtorch2: LibTorch {torch_version(include)} (CUDA) headers in {include}", flush=True)

    entries = []
    seen = set()
    for entry in json.load(open(database)):
        source = os.path.relpath(entry["file"], ROOT)
        if source.startswith("..") or source.startswith("build") or source == "core/src/pch.cpp":
            continue
        if args.filters and not any(f in source for f in args.filters):
            continue
        if source in seen:
            continue
        seen.add(source)
        entries.append((source, entry))
    if not entries:
        sys.exit("check_libtorch2: no source matches " + " ".join(args.filters))

    # One precompiled header made from core/src/pch.h, as in the real build.
    pch_dir = os.path.join(cache, "pch")
    os.makedirs(pch_dir, exist_ok=True)
    pch_header = os.path.join(pch_dir, "pch.h")
    with open(os.path.join(ROOT, "core/src/pch.h")) as source, open(pch_header, "w") as copy:
        copy.writelines(line for line in source if line.strip() != "#pragma once")
    sample = rewrite(entries[0][1]["command"], include, pch_header, None)
    pch_command = [a for a in sample[:-1] if a not in ("-fsyntax-only", "-Winvalid-pch")]
    pch_command = [a for i, a in enumerate(pch_command) if not (a == "-include" or (i and pch_command[i - 1] == "-include"))]
    pch_command += ["-x", "c++-header", pch_header, "-o", pch_header + ".gch"]
    started = time.time()
    subprocess.run(pch_command, check=True, cwd=entries[0][1]["directory"])
    print(f"check_libtorch2: precompiled header made in {time.time() - started:.0f} s; checking "
          f"{len(entries)} sources on {args.jobs} jobs", flush=True)

    def check(item):
        source, entry = item
        command = rewrite(entry["command"], include, pch_header, CUDA_VARIANTS.get(source))
        t = time.time()
        result = subprocess.run(command, cwd=entry["directory"], capture_output=True, text=True)
        return source, result.returncode, result.stderr, time.time() - t

    failed, warned = [], []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for source, code, stderr, seconds in pool.map(check, entries):
            own_warnings = [l for l in stderr.splitlines() if "warning:" in l and l.startswith(ROOT)]
            status = "FAILED" if code else "warnings" if own_warnings else "ok"
            print(f"  {status:8} {source} ({seconds:.1f} s)", flush=True)
            if code:
                failed.append((source, stderr))
            elif own_warnings:
                warned.append((source, stderr))
    for source, stderr in failed + warned:
        print(f"\n--- {source}\n" + "\n".join(stderr.splitlines()[:60]))
    print(f"\ncheck_libtorch2: {len(entries) - len(failed)} of {len(entries)} sources compile against LibTorch "
          f"{torch_version(include)} (CUDA); {len(warned)} with warnings in pneumo's code; "
          f"{time.time() - started:.0f} s")
    return 1 if failed or (args.werror and warned) else 0


if __name__ == "__main__":
    sys.exit(main())
