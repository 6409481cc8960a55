// How the process hands freed memory back to the kernel (glibc's malloc). No LibTorch here: the
// decoder processes (tools/decoder) use it too.
#pragma once

namespace pneumo::core {

// Keeps memory the process frees for its own later allocations instead of handing it back to
// the kernel. glibc serves blocks above its mmap threshold (at most 32 MiB) with their own
// mappings and unmaps them on free, and trims the heap's top; a training or inference loop
// allocates tensors of the same sizes every step, so each step then faults every page in again,
// zero-filled by the kernel. On this project's 2-core machine that was more than half of a
// U-Net training step (see README, Performance). Called first thing by pneumo's programs;
// PNEUMO_RELEASE_MEMORY=1 in the environment leaves glibc's defaults. The resident memory then
// stays at its peak until the process ends. Returns whether the setting was applied.
bool keep_freed_memory();

// Hands the memory freed so far back to the kernel once (glibc's malloc_trim over every arena),
// for the rare moments a long-running program frees much it will not need again: `pneumo
// serve` after a model version it replaced is freed.
void return_freed_memory();

}  // namespace pneumo::core
