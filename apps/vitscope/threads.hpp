#pragma once
// --threads K, shared by every command that computes: the threads of vitscope's pool, of the
// BLAS library and of OpenCV (include/vitscope/image/threads.hpp).

#include <CLI/CLI.hpp>

namespace vitscope::cli {

// Registers --threads on command, bound to threads, which starts at the number of cores.
void add_threads_option(CLI::App& command, int& threads);

// Makes every later parallel part (vitscope's kernels, BLAS and OpenCV calls) use `threads` threads.
void use_threads(int threads);

}  // namespace vitscope::cli
